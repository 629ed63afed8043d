"""Leaderboard tables: the main comparison (paper Table 3 layout) and the paper's sweeps.

Main tables: one per (data, users[, K], persona kind); rows are models, columns methods; each
cell is macro accuracy in percent with its 95% CI. The no-LLM references (majority, cf) are in
every row; the best cell of a row is bold; ``°`` marks a method that does not beat the row's
best reference significantly (paired bootstrap CI of the per-person difference, on the same
docs, not above zero).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..harness.method import load_methods
from ..harness.metrics import paired_comparison
from .store import REFERENCES, samples

SCOPE = ["data", "waves_label", "users", "k", "max_eval_people", "seed"]
METHOD_ORDER = ("majority", "cf", "demographic-majority", "raw", "demographics", "context", "spm")
NOT_SIGNIFICANT = "°"


@dataclass(frozen=True)
class Table:
    """A titled markdown-ready table."""

    title: str
    note: str
    frame: pd.DataFrame


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def cell(row: pd.Series) -> str:
    """``61.2 [58.3, 64.0]``."""
    low, high = row["ci95"]
    return f"{percent(row['accuracy'])} [{percent(low)}, {percent(high)}]"


def method_rank(method: str) -> tuple[int, str]:
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER), method)


def persona_runs(frame: pd.DataFrame, persona: str) -> pd.DataFrame:
    """Runs that belong in a table for ``persona``: persona methods with it, the rest as they are."""
    return frame[~frame["method"].map(uses_persona) | (frame["persona"] == persona)]


def beats(runs_dir: Path, run_id: str, reference_id: str, seed: int) -> bool:
    """Whether a run beats a reference significantly on the same docs."""
    comparison = paired_comparison(samples(str(runs_dir), run_id), samples(str(runs_dir), reference_id), seed=seed)
    return comparison.significant and comparison.difference > 0


def main_table(frame: pd.DataFrame, runs_dir: Path) -> pd.DataFrame:
    """Rows = models, columns = methods, for runs of one scope and persona kind."""
    chosen = frame[frame["variant"] == ""].sort_values("finished_at").drop_duplicates(["model", "method"], keep="last")
    references = chosen[chosen["method"].isin(REFERENCES)]
    without_llm = chosen[chosen["model"] == "-"]
    best_reference = references.loc[references["accuracy"].idxmax()] if len(references) else None
    models = sorted(m for m in chosen["model"].unique() if m != "-") or ["-"]
    methods = sorted(chosen["method"].unique(), key=method_rank)
    rows = []
    for model in models:
        in_row = pd.concat([chosen[chosen["model"] == model], without_llm]).drop_duplicates("run_id")
        top = in_row["accuracy"].max()
        row = {"model": model}
        for method in methods:
            match = in_row[in_row["method"] == method]
            if match.empty:
                row[method] = ""
                continue
            run = match.iloc[-1]
            text = cell(run)
            if best_reference is not None and method not in REFERENCES:
                if not beats(runs_dir, run["run_id"], best_reference["run_id"], int(run["seed"])):
                    text += NOT_SIGNIFICANT
            row[method] = f"**{text}**" if run["accuracy"] == top else text
        rows.append(row)
    return pd.DataFrame(rows)


def scope_title(scope: dict) -> str:
    users = "unseen users, K=%d" % scope["k"] if scope["users"] == "unseen" else "seen users"
    people = f", {int(scope['max_eval_people'])} eval people" if pd.notna(scope["max_eval_people"]) else ""
    return f"{scope['data']} [{scope['waves_label']}], {users}{people}, seed {int(scope['seed'])}"


def uses_persona(method: str) -> bool:
    return getattr(load_methods().get(method), "uses_persona", False)


def main_tables(results: pd.DataFrame, runs_dir: Path) -> list[Table]:
    """One main table per (scope, persona kind) in which a method other than the references ran.

    The individual-persona table holds every method; a cluster or demographic table holds the
    persona methods and the references only (the other methods do not change with the persona).
    """
    tables = []
    for values, group in results.groupby(SCOPE, dropna=False, sort=True):
        scope = dict(zip(SCOPE, values))
        personas = sorted(group["persona"].unique(), key=lambda p: (p != "individual", p))
        for persona in personas:
            subset = persona_runs(group, persona)
            if persona != "individual":
                subset = subset[subset["method"].map(uses_persona) | subset["method"].isin(REFERENCES)]
            if set(subset["method"]) <= set(REFERENCES):
                continue
            budgets = sorted({b for b in subset["budget"] if b})
            note = "Training budget: " + "; ".join(budgets) + "." if budgets else ""
            tables.append(Table(f"{scope_title(scope)} — persona: {persona}", note, main_table(subset, runs_dir)))
    return tables


def option_value(variant: str, key: str, default):
    """The value of ``key`` in a variant label like ``k_context=3`` (``default`` when absent)."""
    match = re.search(rf"(?:^|, ){key}=([^,]+)", variant)
    return match.group(1) if match else default


def sweep(frame: pd.DataFrame, rows: list[str], column: pd.Series, title: str, note: str = "") -> Table | None:
    """Pivot ``frame`` into rows x ``column`` values with formatted cells."""
    if frame.empty or column.nunique() < 2:
        return None
    data = frame.assign(_column=column.astype(str), _cell=frame.apply(cell, axis=1))
    pivot = data.drop_duplicates([*rows, "_column"], keep="last").pivot(index=rows, columns="_column", values="_cell")
    ordered = sorted(pivot.columns, key=lambda c: (float(c) if re.fullmatch(r"[\d.]+", c) else float("inf"), c))
    return Table(title, note, pivot[ordered].fillna("").reset_index())


def sweep_tables(results: pd.DataFrame) -> list[Table]:
    """The paper's sweeps, per data scope: context K, cluster k, traits, unseen K, prefix vs prompt, random vs trained."""
    tables = []
    for (data, waves), group in results.sort_values("finished_at").groupby(["data", "waves_label"]):
        where = f"{data} [{waves}]"
        seen = group[group["users"] == "seen"]
        context = seen[(seen["method"] == "context") & seen["variant"].str.fullmatch(r"(k_context=\d+)?")]
        tables.append(sweep(context, ["model"], context["variant"].map(lambda v: option_value(v, "k_context", 5)),
                            f"Context + Raw Q by number of earlier answers shown (paper Table 8) — {where}"))
        steer = seen[seen["method"].isin(["spm", "cf"]) & (seen["variant"] == "")]
        clusters = steer[steer["persona"].str.startswith("cluster:")]
        tables.append(sweep(clusters, ["model", "method"], clusters["persona"].str.split(":").str[1],
                            f"Cluster personas by number of clusters k (paper Table 11) — {where}"))
        traits = steer[steer["persona"].str.startswith("demographic:")]
        tables.append(sweep(traits, ["persona"], traits["method"] + traits["model"].map(lambda m: "" if m == "-" else f" ({m})"),
                            f"Demographic personas by trait and trait combination (paper Tables 9, 10) — {where}"))
        unseen = group[(group["users"] == "unseen") & (group["variant"] == "") & (group["persona"] == "individual")]
        tables.append(sweep(unseen, ["model", "method"], unseen["k"].astype(int),
                            f"Unseen users by number of answers folded in, K (paper Table 6) — {where}",
                            "K is capped by the train-part answers each person gave, so large K can coincide."))
        spm = seen[(seen["method"] == "spm") & (seen["persona"] == "individual")]
        modes = spm[spm["variant"].isin(["", "mode=prompt"])]
        tables.append(sweep(modes, ["model"], modes["variant"].map(lambda v: option_value(v, "mode", "prefix")),
                            f"Prefix-tuning vs prompt-tuning (paper Table 7) — {where}"))
        weights = spm[spm["variant"].isin(["", "spm_weights=random"])]
        tables.append(sweep(weights, ["model"], weights["variant"].map(lambda v: option_value(v, "spm_weights", "trained")),
                            f"Trained vs random SPM weights (paper Table 4) — {where}"))
    return [t for t in tables if t is not None]
