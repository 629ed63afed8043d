"""Leaderboard tables: the main comparison (paper Table 3 layout) and sweeps, for any method.

Main tables: one per (data, users[, K], persona kind); rows are models, columns methods (the
no-LLM references first, then prompting, then steering methods; a method that ran there only in
variants gets a column per trained variant); each cell is macro accuracy in
percent with its 95% CI (or the metric ``--metric`` names, averaged over people, with its CI). The references are in every row; the best cell of a row is bold; ``°``
marks a method that does not beat the table's best reference significantly (paired permutation test
of the per-person difference on the same docs, p-values Holm-adjusted over the table's comparisons). Where a method has runs at
several training budgets, the main table shows the largest and the budget sweep shows them all.

Sweeps, for every method that has runs at several values (nothing here names a method):
persona kind (the paper's Table 5 personas), cluster k, demographic trait, unseen-user K, and each option that changes what a method is
(context K, prefix vs prompt, random vs trained weights, steered layers...), recipes at
equal training budget, and trained methods at equal training budget. Training budgets are learning curves (:mod:`persona_bench.leaderboard.curves`).
Every table also yields its cells as plain records for the machine-readable CSV.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..harness.metrics.registry import holm, paired_comparison, paired_person_values
from ..harness.training.audit import describe_audit
from ..tasks.prompts import LETTERS
from .frame import latest, method_label, method_rank, options_label, person_metrics, samples

SCOPE = ["data", "waves_label", "protocol", "option_order", "users", "k", "max_eval_people", "seed"]
NOT_SIGNIFICANT = "°"
CELL_FIELDS = ["model", "method", "kind", "persona", "users", "k", "variant", "budget_label", "recipe", "accuracy", "metric", "score",
               "n_people", "n_answers", "run_id"]


@dataclass(frozen=True)
class Table:
    """A titled table: ``frame`` to display, ``cells`` (one record per shown run) to export."""

    title: str
    note: str
    frame: pd.DataFrame
    cells: list[dict] = field(default_factory=list)


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def score_text(row: pd.Series, value: float) -> str:
    """A value of the ranked metric: percent for accuracy, three decimals for other metrics."""
    return percent(value) if row["metric"] == "accuracy" else f"{value:.3f}"


def cell_text(row: pd.Series) -> str:
    """``61.2 [58.3, 64.0]`` (the ranked metric with its CI)."""
    low, high = row["score_ci95"]
    return f"{score_text(row, row['score'])} [{score_text(row, low)}, {score_text(row, high)}]"


def cell_record(table: str, row: pd.Series, **extra) -> dict:
    """One exported cell: the run's identity and its figures (accuracy in [0, 1], CI of the ranked metric)."""
    record = {"table": table, **{k: row.get(k) for k in CELL_FIELDS}, "ci_low": row["score_ci95"][0], "ci_high": row["score_ci95"][1]}
    return {**record, **extra}


def best_of(frame: pd.DataFrame) -> pd.Series:
    """The run with the best score (highest, or lowest for a metric where lower is better)."""
    return frame.loc[frame["score"].idxmax() if frame["higher_is_better"].iloc[0] else frame["score"].idxmin()]


def beats_after_holm(runs_dir: Path, challengers: list[pd.Series], reference: pd.Series, level: float = 0.05) -> list[bool]:
    """Whether each run beats ``reference`` on the same people: a paired difference in the better
    direction whose permutation p-value, Holm-adjusted over the table's comparisons, is below
    ``level`` (accuracy: per person over the same docs; other metrics: their per-person values;
    a run without them is not shown to beat it)."""
    comparisons = [compared(runs_dir, run, reference) for run in challengers]
    adjusted = holm([c.p_value if c else 1.0 for c in comparisons])
    sign = 1 if reference["higher_is_better"] else -1
    return [c is not None and sign * c.difference > 0 and p < level for c, p in zip(comparisons, adjusted)]


def compared(runs_dir: Path, run: pd.Series, reference: pd.Series):
    """The paired comparison of ``run`` with ``reference`` on the ranked metric (None where a run kept no
    per-person values); computed once per pair (:func:`paired_runs`), as the main table's significance
    marks and the paired-differences table ask for the same pairs."""
    return paired_runs(str(runs_dir), run["run_id"], reference["run_id"], run["metric"], int(run["seed"]))


@lru_cache(maxsize=1024)
def paired_runs(runs_dir: str, run_id: str, reference_id: str, metric: str, seed: int):
    """:func:`compared` by run ids (cached: a bootstrap over every eval person is not free)."""
    if metric == "accuracy":
        return paired_comparison(samples(runs_dir, run_id), samples(runs_dir, reference_id), seed=seed)
    mine, theirs = person_metrics(runs_dir, run_id), person_metrics(runs_dir, reference_id)
    if mine is None or theirs is None or metric not in mine or metric not in theirs:
        return None
    return paired_person_values(mine[metric], theirs[metric], seed=seed)


def main_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs a main table may show, each with its ``column``: a method's default-variant runs under
    its name, each trained variant (e.g. ``spm [mode=prompt, ...]`` beside ``spm``) under its own label,
    and a method's other variants where it has no default run (``context [k_context=5]`` alone); so every
    trained method a scope ran is compared with the references, while sweeps of an untrained method's
    option (``context`` by ``k_context``) and untrained controls (``weights=random``) stay in the sweeps."""
    plain = frame[frame["variant"] == ""]
    trained = frame["train_answers"].fillna(0) > 0
    variants = frame[(frame["variant"] != "") & ~frame["untrained_control"].astype(bool) & (trained | ~frame["method"].isin(plain["method"]))]
    return pd.concat([plain.assign(column=plain["method"]), variants.assign(column=variant_label(variants))])


def main_table(frame: pd.DataFrame, runs_dir: Path, title: str) -> tuple[pd.DataFrame, list[dict]]:
    """Rows = models, columns = methods (see :func:`main_columns`), for one scope and persona kind."""
    chosen = latest(main_columns(frame), ["model", "column"])
    references = chosen[chosen["kind"] == "reference"]
    without_llm = chosen[chosen["model"] == "-"]
    best_reference = best_of(references) if len(references) else None
    models = sorted(m for m in chosen["model"].unique() if m != "-") or ["-"]
    kinds = dict(zip(chosen["column"], chosen["kind"]))
    methods = sorted(kinds, key=lambda m: method_rank(kinds[m], m))
    placed = []  # (model, column, run) in table order
    for model in models:
        in_row = pd.concat([chosen[chosen["model"] == model], without_llm]).drop_duplicates("run_id")
        placed += [(model, method, in_row[in_row["column"] == method].iloc[-1]) for method in methods if (in_row["column"] == method).any()]
    compared = [run for _, _, run in placed if best_reference is not None and run["kind"] != "reference"]
    verdicts = dict(zip([run["run_id"] for run in compared], beats_after_holm(runs_dir, compared, best_reference) if compared else []))
    rows, cells = [], []
    for model in models:
        in_model = [(method, run) for m, method, run in placed if m == model]
        top = best_of(pd.DataFrame([run for _, run in in_model]))["score"]
        row = {"model": model, **{method: "" for method in methods}}
        for method, run in in_model:
            significant = verdicts.get(run["run_id"]) if run["kind"] != "reference" else None
            text = cell_text(run) + ("" if significant in (None, True) else NOT_SIGNIFICANT)
            row[method] = f"**{text}**" if run["score"] == top else text
            cells.append(cell_record(title, run, row_model=model, beats_best_reference=significant))
        rows.append(row)
    return pd.DataFrame(rows), cells


def scope_title(scope: dict, runs: pd.DataFrame | None = None) -> str:
    """``data [waves], users, eval people, seed`` of a table whose ``runs`` share ``scope``."""
    users = "seen users" if scope["users"] != "unseen" else (
        "unseen users, every earlier answer folded in" if pd.isna(scope["k"]) else "unseen users, K=%d" % scope["k"])
    return f"{where_label(scope)}, {users}{people_label(scope, runs)}, seed {int(scope['seed'])}"


def people_label(scope: dict, runs: pd.DataFrame | None = None) -> str:
    """``, 50 eval people`` (a run capped at 50), ``, all 3,334 eval people`` (every eval person of the
    split: the runs' own count), or empty where neither is known."""
    if pd.notna(scope["max_eval_people"]):
        return f", {int(scope['max_eval_people'])} eval people"
    counts = sorted(set(runs["n_people"].dropna().astype(int))) if runs is not None and "n_people" in runs else []
    if not counts:
        return ""
    return f", all {counts[0]:,} eval people" if len(counts) == 1 else f", all eval people ({counts[0]:,}-{counts[-1]:,})"


def where_label(scope: dict) -> str:
    """``data [waves]``, with the protocol and the option order where they are not the default."""
    return f"{scope['data']} [{scope['waves_label']}]{settings_label(scope)}"


def settings_label(scope: dict) -> str:
    """``, protocol P, options O`` for the settings of ``scope`` that are not the default (else empty)."""
    protocol = "" if scope.get("protocol", "answers") == "answers" else f", protocol {scope['protocol']}"
    return protocol + ("" if scope.get("option_order", "given") == "given" else f", options {scope['option_order']}")


SERIES = ["data", "waves_label", "protocol", "option_order", "max_eval_people", "seed"]  # what a sweep or plot never mixes


def series_label(scope: dict, runs: pd.DataFrame | None = None) -> str:
    """``data [waves], eval people, seed`` of a sweep or plot whose ``runs`` share ``scope`` (``SERIES``)."""
    return f"{where_label(scope)}{people_label(scope, runs)}, seed {int(scope['seed'])}"


def budget_note(frame: pd.DataFrame) -> str:
    """``Training: spm [placement=answer] (smollm2-135m): 1,000 answers x 3 epochs, recipe default, membership AUC ...``
    for the trained cells of a table (the membership audit where the run has one)."""
    trained = frame[frame["budget_label"] != ""]
    parts = [
        f"{method_label(r['method'], r['variant'])} ({r['model']}): {r['budget_label']}" + (f", recipe {r['recipe']}" if r["recipe"] else "")
        + (f", {describe_audit(r['membership_audit'])}" if isinstance(r.get("membership_audit"), dict) else "")
        for _, r in trained.iterrows()
    ]
    return "Training: " + "; ".join(dict.fromkeys(parts)) + "." if parts else ""


def main_scopes(results: pd.DataFrame):
    """``(title, runs)`` of each main table: one per (scope, persona kind).

    The individual-persona table holds every method; a cluster or demographic table holds the
    persona methods and the references, and is drawn where a method other than a reference ran
    with that persona (the references alone are in the sweeps).
    """
    for values, group in results.groupby(SCOPE, dropna=False, sort=True):
        scope = dict(zip(SCOPE, values))
        for persona in sorted(group["persona"].unique(), key=lambda p: (p != "individual", p)):
            subset = group[~group["uses_persona"] | (group["persona"] == persona)]
            if persona != "individual":
                subset = subset[subset["uses_persona"] | (subset["kind"] == "reference")]
                if not ((subset["persona"] == persona) & (subset["kind"] != "reference")).any():
                    continue
            yield f"{scope_title(scope, group)} — persona: {persona}", subset


def main_tables(results: pd.DataFrame, runs_dir: Path) -> list[Table]:
    """One main table per (scope, persona kind) (:func:`main_scopes`)."""
    tables = []
    for title, subset in main_scopes(results):
        frame, cells = main_table(subset, runs_dir, title)
        shown = subset[subset["run_id"].isin([c["run_id"] for c in cells])]
        tables.append(Table(title, budget_note(shown), frame, cells))
    return tables


def difference_text(comparison, metric: str, significant: bool) -> str:
    """``-2.7 [-3.3, -2.2]*``: a paired difference in points (accuracy) or in the metric's units, with
    its CI; ``*`` where it is significant after Holm's adjustment."""
    if metric == "accuracy":
        text = comparison.in_points()
    else:
        low, high = comparison.ci95
        text = f"{comparison.difference:+.3f} [{low:+.3f}, {high:+.3f}]"
    return text + ("*" if significant else "")


def difference_tables(results: pd.DataFrame, runs_dir: Path, level: float = 0.05) -> list[Table]:
    """Per main table with an LLM method and a reference: each method's paired difference with each
    reference of the table (rows: the table's model and method columns; columns: the references),
    in points of the ranked metric with its 95% bootstrap CI over people; ``*`` marks a difference whose
    sign-flip p-value, Holm-adjusted over the table's comparisons, is below ``level``."""
    tables = []
    for title, subset in main_scopes(results):
        chosen = latest(main_columns(subset), ["model", "column"])
        chosen = chosen.assign(_rank=[method_rank(k, m) for k, m in zip(chosen["kind"], chosen["column"])]).sort_values(["model", "_rank"])
        references, challengers = chosen[chosen["kind"] == "reference"], chosen[chosen["kind"] != "reference"]
        if references.empty or challengers.empty:
            continue
        pairs = [(run, reference) for _, run in challengers.iterrows() for _, reference in references.iterrows()]
        comparisons = [compared(runs_dir, run, reference) for run, reference in pairs]
        adjusted = holm([c.p_value if c else 1.0 for c in comparisons])
        rows: dict[tuple[str, str], dict] = {}
        cells = []
        for (run, reference), comparison, p in zip(pairs, comparisons, adjusted):
            row = rows.setdefault((run["model"], run["column"]), {"model": run["model"], "method": run["column"]})
            if comparison is None:
                row[reference["column"]] = ""
                continue
            row[reference["column"]] = difference_text(comparison, run["metric"], p < level)
            cells.append(cell_record(f"Paired differences — {title}", run, reference=reference["column"],
                                     reference_run_id=reference["run_id"], difference=comparison.difference,
                                     difference_ci_low=comparison.ci95[0], difference_ci_high=comparison.ci95[1],
                                     p_value=comparison.p_value, p_holm=p))
        note = ("Method minus reference, paired over the same people and docs: the difference of macro accuracy in points"
                if (challengers["metric"] == "accuracy").all() else "Method minus reference on the ranked metric, paired over the same people")
        note += (f" with its 95% bootstrap CI over people; * where its sign-flip permutation p-value, Holm-adjusted over this "
                 f"table's {len(pairs)} comparisons, is below {level:g}: a difference resolved at this scale.")
        tables.append(Table(f"Paired differences — {title}", note, pd.DataFrame(list(rows.values())), cells))
    return tables


def individual_runs_by_scope(results: pd.DataFrame):
    """Per scope (``SCOPE``): the latest run of each model, method and variant with individual
    personas, references first (as the main tables order methods); scopes without one are skipped."""
    for values, group in results.groupby(SCOPE, dropna=False, sort=True):
        runs = latest(group[group["persona"] == "individual"], ["model", "method", "variant"])
        if not runs.empty:
            rank = [method_rank(kind, method) for kind, method in zip(runs["kind"], runs["method"])]
            yield dict(zip(SCOPE, values)), runs.assign(_rank=rank).sort_values(["_rank", "variant", "model"])


def metric_tables(results: pd.DataFrame) -> list[Table]:
    """Per scope, every metric each run kept (its mean over people), with the A-rate: one line per
    method, so gains in accuracy can be read beside confidence, near misses and letter bias."""
    tables = []
    for scope, runs in individual_runs_by_scope(results):
        names = sorted({name for kept in runs["metrics"] if isinstance(kept, dict) for name in kept})
        if not names:
            continue
        title = f"Every metric — {scope_title(scope, runs)}"
        rows = []
        for _, run in runs.iterrows():
            kept = run["metrics"] if isinstance(run["metrics"], dict) else {}
            positions = run.get("answer_positions")
            rows.append({"method": method_label(run["method"], run["variant"]), "model": run["model"],
                         "accuracy %": percent(run["accuracy"]),
                         **{name: (percent(kept[name]["value"]) if name.endswith("accuracy") else f"{kept[name]['value']:.3f}")
                            if name in kept else "" for name in names},
                         "A-rate %": percent(positions["predicted"][0]) if isinstance(positions, dict) else ""})
        tables.append(Table(title, "Means over people (CIs in results.json and in the tables ranked with --metric NAME). Lower is "
                            "better for ordinal_error, brier, log_loss and ece; the accuracies in percent.", pd.DataFrame(rows)))
    return tables


def position_tables(results: pd.DataFrame) -> list[Table]:
    """Bias diagnostics per scope: the share of predicted answers at each shown position (A, B, ...)
    beside the share of the people's own answers there. A method that answers "A" whatever the
    question has an A-rate near 100%; under ``cyclic`` order a letter rule has no position to exploit."""
    tables = []
    known = results[results["answer_positions"].notna()] if "answer_positions" in results else results.iloc[:0]
    for scope, runs in individual_runs_by_scope(known):
        width = max(len(p["chosen"]) for p in runs["answer_positions"])  # runs differ: the widest question scored, or in the survey
        shares = [{side: p[side] + [0.0] * (width - len(p[side])) for side in ("predicted", "chosen")} for p in runs["answer_positions"]]
        used = max([i + 1 for p in shares for i in range(width) if max(p["predicted"][i], p["chosen"][i]) > 0] or [1])
        rows, title = [], f"Answer positions — {scope_title(scope, runs)}"
        for (_, run), shown in zip(runs.iterrows(), shares):
            rows.append({"method": method_label(run["method"], run["variant"]), "model": run["model"],
                         **{f"{letter} %": percent(shown["predicted"][i]) for i, letter in enumerate(LETTERS[:used])}})
        chosen = shares[0]["chosen"]
        rows.append({"method": "the people's own answers", "model": "",
                     **{f"{letter} %": percent(chosen[i]) for i, letter in enumerate(LETTERS[:used])}})
        cells = [cell_record(title, run, a_rate=run["answer_positions"]["predicted"][0], a_rate_chosen=chosen[0])
                 for _, run in runs.iterrows()]
        tables.append(Table(title, "Share of scored answers (every shown copy under cyclic order) whose top-scored option sits at "
                            "each position, and where the chosen answers sit. A is the A-rate.", pd.DataFrame(rows), cells))
    return tables


def sort_key(value: str) -> tuple[float, str]:
    """Numbers by value, also leading a label (``10,000 answers x 1 epochs`` after ``3,000 ...``); text after."""
    try:
        return (float(value), value)  # 5e-05, 0.001
    except ValueError:
        number = re.match(r"\d{1,3}(,\d{3})+\b|\d+(\.\d+)?\b", value)
        return (float(number.group().replace(",", "")) if number else float("inf"), value)


def sweep(frame: pd.DataFrame, rows: list[str], column: pd.Series, title: str, note: str = "",
          order: list[str] | None = None) -> Table | None:
    """Pivot ``frame`` into rows x ``column`` values with formatted cells (None below two values);
    columns in ``order`` where given, else by :func:`sort_key`."""
    if frame.empty or column.nunique() < 2:
        return None
    data = frame.assign(_column=column.astype(str), _cell=frame.apply(cell_text, axis=1))
    data = data.drop_duplicates([*rows, "_column"], keep="last")
    pivot = data.pivot(index=rows, columns="_column", values="_cell").sort_index(key=lambda level: level.map(lambda v: sort_key(str(v))))
    ordered = sorted(pivot.columns, key=lambda value: (order.index(value) if value in order else len(order), sort_key(value))
                     if order else sort_key(value))
    cells = [cell_record(title, row, value=row["_column"]) for _, row in data.iterrows()]
    return Table(title, note, pivot[ordered].fillna("").reset_index(), cells)


def label_with_model(frame: pd.DataFrame) -> pd.Series:
    return frame["method"] + frame["model"].map(lambda m: "" if m == "-" else f" ({m})")


def option_sweeps(seen: pd.DataFrame, where: str) -> list[Table | None]:
    """Per method and option: runs that differ in that option alone, from the defaults or from a variant
    (its other options in a ``variant`` column; e.g. an answer-placed SPM beside its untrained control);
    a trained method's at each training budget, within one recipe."""
    tables = []
    for method, runs in seen.groupby("method"):
        keys = sorted({k for variant in runs["variant_options"] for k in variant})
        for key in keys:
            rest = runs["variant_options"].map(lambda options: options_label({k: v for k, v in options.items() if k != key}))
            alike = runs.assign(_rest=rest, _value=runs["options"].map(lambda o: (o or {}).get(key)).astype(str))
            rows = ["model", "_rest"] if (rest != "").any() else ["model"]
            if (alike["recipe"] != "").any():  # compared within one recipe
                rows.append("recipe")
                if not alike["untrained_control"].astype(bool).any():  # and at one training budget, unless the sweep
                    rows.insert(rows.index("recipe"), "budget_label")  # sets a module beside its untrained control, whose budget is none
            alike = latest(alike, [*rows, "_value"])
            alike = alike[alike.groupby(rows)["_value"].transform("nunique") > 1]  # a row compares two values or more
            table = sweep(alike, rows, alike["_value"], f"{method} by {key} — {where}")
            tables.append(table and replace(table, frame=table.frame.rename(columns={"_rest": "variant"})))
    return tables


def variant_label(frame: pd.DataFrame) -> pd.Series:
    """:func:`method_label` of every run."""
    return pd.Series([method_label(m, v) for m, v in zip(frame["method"], frame["variant"])], index=frame.index, dtype=object)


def recipe_sweeps(individual: pd.DataFrame, where: str) -> list[Table | None]:
    """Per method and variant: recipes compared at equal training budgets (rows: model and budget)."""
    tables = []
    with_recipe = individual[individual["recipe"] != ""]
    for label, runs in with_recipe.groupby(variant_label(with_recipe)):
        runs = latest(runs, ["model", "budget_label", "recipe"])
        compared = runs.groupby(["model", "budget_label"])["recipe"].transform("nunique") > 1
        runs = runs[compared].sort_values("train_answers")
        tables.append(sweep(runs, ["model", "budget_label"], runs["recipe"], f"{label} by recipe at equal training budget — {where}"))
    return tables


def budget_matched_methods(individual: pd.DataFrame, where: str) -> Table | None:
    """Trained methods and their variants (e.g. ``spm [mode=prompt, ...]``) side by side where two or
    more ran at the same training budget and recipe name (rows: model, budget, recipe): the fair
    comparison the main table, which shows each column's latest run whatever its budget, is not."""
    trained = individual[(individual["budget_label"] != "") & (individual["train_answers"].fillna(0) > 0)]
    trained = trained.assign(_label=variant_label(trained))
    trained = latest(trained, ["model", "budget_label", "recipe", "_label"])
    shared = trained.groupby(["model", "budget_label", "recipe"])["_label"].transform("nunique") > 1
    runs = trained[shared].sort_values("train_answers")
    return sweep(runs, ["model", "budget_label", "recipe"], runs["_label"], f"Trained methods at equal training budget — {where}")


def seed_tables(results: pd.DataFrame) -> list[Table]:
    """Per scope run at several split seeds: each method's macro accuracy per seed, mean and spread."""
    tables = []
    where = [c for c in SCOPE if c != "seed"]
    for values, group in results.groupby(where, dropna=False, sort=True):
        plain = group[(group["variant"] == "") & (~group["uses_persona"] | (group["persona"] == "individual"))]
        plain = at_several_seeds(latest(plain, ["model", "method", "seed"]), ["model", "method"], "seed")
        if plain.empty:
            continue
        scope = {**dict(zip(where, values)), "seed": 0}
        title = f"Split seeds — {scope_title(scope, group).rsplit(', seed', 1)[0]}"
        tables.append(spread_table(plain, ["model", "method"], plain["seed"].astype(int), title,
                                   "Macro accuracy per split seed (its own people and held-out answers), then the mean over seeds, their "
                                   "standard deviation and range: how much of a difference between methods the split alone can make."))
    return tables


def at_several_seeds(runs: pd.DataFrame, rows: list[str], seed: str) -> pd.DataFrame:
    """The runs of each ``rows`` group run at two or more values of ``seed`` (one seed has no spread)."""
    return runs[runs.groupby(rows)[seed].transform("nunique") > 1]


def spread_table(runs: pd.DataFrame, rows: list[str], column: pd.Series, title: str, note: str) -> Table:
    """:func:`sweep` of ``runs`` over the seeds in ``column``, then each row's mean over them, their
    standard deviation and range (in the ranked metric's units)."""
    table = sweep(runs, rows, column, title, note)
    spread = runs.groupby(rows)["score"].agg(["mean", "std", "min", "max"]).reset_index()
    frame = table.frame.merge(spread, on=rows)
    shown = runs.iloc[0]
    frame["mean"], frame["sd"] = frame["mean"].map(lambda v: score_text(shown, v)), frame["std"].map(lambda v: score_text(shown, v))
    frame["range"] = (frame["max"] - frame["min"]).map(lambda v: score_text(shown, v))
    return Table(title, table.note, frame.drop(columns=["std", "min", "max"]), table.cells)


REDRAW_KEYS = ["_label", "requested_budget", "recipe", "persona"]  # one trained run, whatever its training seed


def redraw_groups(results: pd.DataFrame, controls: bool = False):
    """Per scope, the trained runs (with ``controls`` their untrained controls too, which keep the
    training seed their module was drawn with) labelled for :data:`REDRAW_KEYS` (method, variant and model)."""
    untrained = results["variant_options"].map(lambda options: options.get("weights") == "random")
    trained = results[(results["train_answers"].fillna(0) > 0) | (controls & untrained)]
    for values, group in trained.groupby(SCOPE, dropna=False, sort=True):
        labels = [f"{method_label(m, v)} ({model})" for m, v, model in zip(group["method"], group["variant"], group["model"])]
        yield values, group.assign(_label=labels)


def shown_elsewhere(results: pd.DataFrame) -> pd.DataFrame:
    """The runs the tables other than the training-seed ones show: all but a redrawn run or control
    (another training seed than its split's) whose run at the split's seed is there too."""
    hidden = set()
    for _, group in redraw_groups(results, controls=True):
        has_default = group.groupby(REDRAW_KEYS)["redrawn"].transform(lambda redrawn: not redrawn.all())
        hidden.update(group.index[group["redrawn"] & has_default])
    return results.drop(index=list(hidden))


def training_seed_tables(results: pd.DataFrame) -> list[Table]:
    """Per scope, each trained method (variant, budget, recipe) trained at several training seeds with
    the split fixed: macro accuracy at each seed with its CI, then the mean, standard deviation and range."""
    tables = []
    for values, group in redraw_groups(results):
        scope = dict(zip(SCOPE, values))
        runs = at_several_seeds(latest(group, [*REDRAW_KEYS, "train_seed"]), REDRAW_KEYS, "train_seed")
        if runs.empty:
            continue
        title = f"Training seeds — {scope_title(scope, runs)}"
        table = spread_table(runs, REDRAW_KEYS, runs["train_seed"].astype(int), title,
                             "The same method, budget and recipe trained again with another training seed (--train-seed: the module's "
                             "initialisation and the order of its answers), split, people and answers fixed: macro accuracy with its CI "
                             "per training seed (columns), then the mean over seeds, their standard deviation and range, to read beside a CI.")
        tables.append(replace(table, frame=table.frame.rename(columns={"_label": "method", "requested_budget": "budget"})))
    return tables


TABLE5_PERSONAS = ["demographic:POLPARTY", "cluster:6", "individual"]  # the paper's Table 5 columns, in its order


def persona_kinds(plain: pd.DataFrame, where: str) -> Table | None:
    """Paper Table 5: each persona method (cf, the no-LLM one, among them) with the paper's demographic
    (party), cluster (6) and individual personas, where it ran with individual ones and one of the others."""
    runs = plain[plain["uses_persona"] & plain["persona"].isin(TABLE5_PERSONAS)]
    if runs.empty:
        return None
    runs = runs[runs.groupby(["model", "method"])["persona"].transform(lambda personas: "individual" in set(personas) and personas.nunique() > 1)]
    return sweep(runs, ["model", "method"], runs["persona"], f"Persona kinds (paper Table 5) — {where}",
                 "The same people and held-out answers under each persona: the party group's centroid, the person's cluster's "
                 "(6 K-Means clusters) and the person's own; the references that take no persona are in the main tables.",
                 order=TABLE5_PERSONAS)


def unseen_runs(group: pd.DataFrame) -> pd.DataFrame:
    """Paper Table 6's runs in ``group``: unseen people with individual personas at each K, the latest
    of each method and variant, labelled as the main tables label them (``_label``: e.g.
    ``demographics [dtype=bf16-mixed]``)."""
    unseen = group[(group["users"] == "unseen") & (group["persona"] == "individual") & group["k"].notna()]
    return latest(unseen.assign(_label=variant_label(unseen)), ["model", "_label", "k"])


def sweep_tables(results: pd.DataFrame) -> list[Table]:
    """Sweeps per data scope (see module docstring)."""
    tables = []
    for values, group in results.sort_values("finished_at").groupby(SERIES, dropna=False, sort=True):
        where = series_label(dict(zip(SERIES, values)), group)
        seen = group[group["users"] == "seen"]
        plain = latest(seen[seen["variant"] == ""], ["model", "method", "persona"])
        tables.append(persona_kinds(plain, where))
        clusters = plain[plain["persona"].str.startswith("cluster:") & plain["uses_persona"]]
        tables.append(sweep(clusters, ["model", "method"], clusters["persona"].str.split(":").str[1],
                            f"Cluster personas by number of clusters k (paper Table 11) — {where}"))
        traits = plain[plain["persona"].str.startswith("demographic:") & plain["uses_persona"]]
        tables.append(sweep(traits, ["persona"], label_with_model(traits),
                            f"Demographic personas by trait and trait combination (paper Tables 9, 10) — {where}"))
        unseen = unseen_runs(group)
        table = sweep(unseen, ["model", "_label"], unseen["k"].astype(int),
                      f"Unseen users by number of answers folded in, K (paper Table 6) — {where}",
                      "K is capped by the train-part answers each person gave, so large K can coincide.")
        tables.append(table and replace(table, frame=table.frame.rename(columns={"_label": "method"})))
        tables += option_sweeps(seen[seen["persona"] == "individual"], where)
        tables += recipe_sweeps(seen[seen["persona"] == "individual"], where)
        tables.append(budget_matched_methods(seen[seen["persona"] == "individual"], where))
    return [t for t in tables if t is not None]

