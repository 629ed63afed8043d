"""Learning curves: macro accuracy against the number of answers a method trained on.

For every method and variant (its non-budget options, e.g. ``mode=prompt``) that has runs at
several training budgets in one scope (``tables.SCOPE``: same data, users, K, eval people and seed; individual
personas), a table and a PNG: one point per budget with its 95% CI (a budget trained for several
epoch counts: each is a row of the table, and the line and the crossing note follow the fewest
epochs, that budget's cheapest training), beside reference lines from the same scope and docs: the no-LLM references
(majority, cf, ...), the same model unsteered (``raw``) and the method's untrained control
(the same variant with ``weights=random``, same recipe). The note says where the curve crosses majority and cf: between two
measured budgets (log-linear interpolation), or, beyond the largest budget, a log-linear
extrapolation from the last two budgets, labelled as such.
"""
from __future__ import annotations

import hashlib
import math
import os
import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .frame import latest, method_label
from .plots import save, slug
from .tables import SCOPE, Table, cell_record, cell_text, scope_title, settings_label
CROSSED = ("majority", "cf")
FAR_DECADES = 2  # an extrapolated crossing beyond 100x the largest budget is not stated as a number


def crossing(points: list[tuple[int, float]], level: float, name: str) -> str:
    """Where accuracy (points: budget, accuracy; budgets ascending) reaches ``level``."""
    above = [i for i, (_, accuracy) in enumerate(points) if accuracy >= level]
    if above and above[0] == 0:
        return f"above {name} from the smallest budget ({points[0][0]:,} answers)"
    if above:
        (b0, a0), (b1, a1) = points[above[0] - 1], points[above[0]]
        at = 10 ** (math.log10(b0) + (level - a0) / (a1 - a0) * (math.log10(b1) - math.log10(b0)))
        return f"crosses {name} between {b0:,} and {b1:,} answers (~{at:,.0f}, log-linear interpolation)"
    (b0, a0), (b1, a1) = points[-2], points[-1]
    slope = (a1 - a0) / (math.log10(b1) - math.log10(b0))
    if slope <= 0:
        return f"below {name} at every budget up to {b1:,} answers, and not rising over the last two"
    decades = (level - a1) / slope
    if decades > FAR_DECADES:  # a nearly flat curve: the "crossing" would be a number of no meaning
        return (f"below {name} at every budget up to {b1:,} answers, and nearly flat over the last two "
                f"({100 * slope * math.log10(2):+.2f} points per doubling of the answers)")
    needed = 10 ** (math.log10(b1) + decades)
    return (f"below {name} at every budget up to {b1:,} answers; extrapolating the last two budgets log-linearly "
            f"it would reach {name} at ~{needed:,.0f} answers (an extrapolation, not a measurement)")


def untrained_control(scope_runs: pd.DataFrame, trained: pd.Series) -> pd.Series | None:
    """The method's untrained control for ``trained``: same model and recipe, and of the recipe
    overrides only those the control keeps (it drops what only shapes training, e.g. the learning
    rate), so the candidate whose overrides are the largest subset of the trained run's, then the latest."""
    untrained = {**trained["variant_options"], "weights": "random"}
    control = scope_runs[(scope_runs["method"] == trained["method"]) & (scope_runs["model"] == trained["model"])
                         & scope_runs["variant_options"].map(lambda options: options == untrained) & (scope_runs["recipe_name"] == trained["recipe_name"])]
    kept = trained["recipe_overrides"].items()
    control = control[control["recipe_overrides"].map(lambda o: o.items() <= kept)]
    if control.empty:
        return None
    return control.assign(_kept=control["recipe_overrides"].map(len)).sort_values(["_kept", "finished_at"]).iloc[-1]


def reference_lines(scope_runs: pd.DataFrame, trained: pd.Series) -> dict[str, pd.Series]:
    """The runs a curve of runs like ``trained`` is drawn beside (see module docstring), by label."""
    plain = scope_runs[(scope_runs["persona"] == "individual") & (scope_runs["variant"] == "")]
    lines = {r["method"]: r for _, r in latest(plain[plain["kind"] == "reference"], ["method"]).iterrows()}
    raw = latest(plain[(plain["method"] == "raw") & (plain["model"] == trained["model"])], ["method"])
    if len(raw):
        lines["raw (unsteered)"] = raw.iloc[-1]
    control = untrained_control(scope_runs, trained)
    if control is not None:
        lines[f"{trained['method']} untrained"] = control
    return lines


def curve_plot(points: pd.DataFrame, lines: dict[str, pd.Series], title: str, path: Path) -> Path:
    """Accuracy (CI band) against answers trained on (log scale), with horizontal reference lines."""
    figure = Figure(figsize=(6.5, 4))
    axes = figure.subplots()
    x = points["train_answers"].astype(float)
    axes.plot(x, points["accuracy"] * 100, marker="o", color="#c44e52", label=points["method"].iloc[0])
    axes.fill_between(x, points["ci95"].str[0] * 100, points["ci95"].str[1] * 100, color="#c44e52", alpha=0.15)
    for (label, run), style in zip(lines.items(), ["--", "-.", ":", (0, (5, 1)), (0, (1, 3))]):
        axes.axhline(run["accuracy"] * 100, linestyle=style, color="0.35", linewidth=1, label=f"{label} ({100 * run['accuracy']:.1f})")
    axes.set_xscale("log")
    axes.minorticks_off()  # log-scale minor labels (3x10^3, 4x10^3, ...) overlap: the axis names the budgets themselves
    axes.set_xticks(x, [f"{int(v):,}" for v in x])
    axes.set_title(textwrap.fill(title, 70), fontsize=9)  # a variant's and recipe's names run long
    axes.set(xlabel="answers trained on (log scale)", ylabel="macro accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return save(figure, path)


def learning_curves(results: pd.DataFrame, folder: Path) -> tuple[list[Table], list[Path]]:
    """A table and a plot per (scope, model, method, variant, recipe) with runs at two or more budgets."""
    tables, plots = [], []
    for values, scope_runs in results.groupby(SCOPE, dropna=False, sort=True):
        scope = dict(zip(SCOPE, values))
        trained = scope_runs[(scope_runs["persona"] == "individual") & (scope_runs["train_answers"].fillna(0) > 0)]
        for (model, method, variant, recipe), runs in trained.groupby(["model", "method", "variant", "recipe"]):
            listed = runs.sort_values("finished_at").drop_duplicates(["train_answers", "epochs"], keep="last").sort_values(["train_answers", "epochs"])
            points = listed.drop_duplicates("train_answers", keep="first")
            if len(points) < 2:
                continue
            lines = reference_lines(scope_runs, points.iloc[-1])
            where = scope_title(scope, listed)
            label = method_label(method, variant)
            title = f"Learning curve: {label} ({model}, recipe {recipe}) — {where}"
            rows = [{"answers trained on": f"{int(r['train_answers']):,}", "epochs": int(r["epochs"]) if pd.notna(r["epochs"]) else "",
                     "macro acc % [95% CI]": cell_text(r)} for _, r in listed.iterrows()]
            rows += [{"answers trained on": label, "epochs": "", "macro acc % [95% CI]": cell_text(r)} for label, r in lines.items()]
            pairs = [(int(r["train_answers"]), float(r["accuracy"])) for _, r in points.iterrows()]
            notes = [crossing(pairs, float(lines[name]["accuracy"]), name) for name in CROSSED if name in lines]
            note = (f"{label}: " + "; ".join(notes) + ".") if notes else ""
            cells = [cell_record(title, r, value=int(r["train_answers"])) for _, r in listed.iterrows()]
            cells += [cell_record(title, r, value=label) for label, r in lines.items()]
            tables.append(Table(title, note, pd.DataFrame(rows), cells))
            name = slug(f"curve_{os.path.basename(str(scope['data']).rstrip('/'))}_{scope['waves_label']}{settings_label(scope)}_{method}_{model}_{recipe}")
            # slugs are cut short: a hash of everything that tells this curve from another keeps its file apart
            name += "_" + hashlib.sha256("|".join(map(str, [*values, model, method, variant, recipe])).encode()).hexdigest()[:8]
            shown_recipe = "" if recipe in ("", "default") else f", recipe {recipe}"  # e.g. ``default, lora_lr=0.0005``
            plots.append(curve_plot(points, lines, f"{label} ({model}{shown_recipe}) — {scope['waves_label']}", folder / f"{name}.png"))
    return tables, plots
