"""Group-level tables from the figures each run stores (:mod:`persona_bench.harness.metrics.groups`).

* Group alignment, per scope (all questions, then each question subset the data names, e.g.
  OpinionQA's disagreement questions): each method's (and variant's) representativeness (Rep, 1 - normalised Wasserstein
  distance between its answer distribution and the eval people's survey-weighted answers) and total
  variation for everyone, its worst trait group, and its survey-weighted macro accuracy; below the
  methods, the human split-half ceiling and the two nulls (uniform; the train population's answers).
* Steerability toward groups, per scope where a run steers toward a trait's groups (its options
  name a ``trait``, as ``group-prompt`` does): every method's Rep for each value of that trait,
  beside each group's ceiling and nulls, on all questions and on each named subset (Santurkar et
  al.'s steerability, with the persona methods on the same groups and questions).
* Subgroup disparity, per scope: for each trait, each method's gap in macro accuracy between its
  best and worst trait value, with a bootstrap CI.

Only runs that stored group figures (results.json ``groups``) are shown.
"""
from __future__ import annotations

import pandas as pd

from .frame import latest, method_label, method_rank
from .tables import SCOPE, Table, percent, scope_title

ROWS_WITHOUT_A_METHOD = {"human split-half ceiling": "ceiling", "uniform null": "uniform", "population null": "population"}


def everyone(groups: list[dict]) -> dict:
    return next(g for g in groups if g["group"] == "everyone")


def run_label(run: pd.Series) -> str:
    """``spm (smollm2-135m)``, ``group-prompt [style=qa] (smollm2-135m)``."""
    model = "" if run["model"] == "-" else f" ({run['model']})"
    return method_label(run["method"], run["variant"]) + model


def figure(value: float | None, digits: int = 3) -> str:
    return "" if value is None or pd.isna(value) else f"{value:.{digits}f}"


def alignment_rows(runs: pd.DataFrame, groups_of) -> list[dict]:
    rows = []
    for _, run in runs.iterrows():
        groups = groups_of(run)
        whole = everyone(groups)
        traits = [g for g in groups if g["group"] != "everyone" and g["rep"] is not None]
        worst = min(traits, key=lambda g: g["rep"]) if traits else None
        rows.append({
            "method": run_label(run), "Rep": figure(whole["rep"]), "TV": figure(whole["tv"]),
            "Rep, worst trait group": f"{figure(worst['rep'])} ({worst['group']})" if worst else "",
            "macro acc %": percent(run["accuracy"]), "weighted macro acc %": percent(run["weighted_accuracy"]),
        })
    first = everyone(groups_of(runs.iloc[0]))  # the same docs in one scope: one ceiling and one pair of nulls
    for label, key in ROWS_WITHOUT_A_METHOD.items():
        rows.append({"method": label, "Rep": figure(first[f"rep_{key}"]), "TV": figure(first[f"tv_{key}"]),
                     "Rep, worst trait group": "", "macro acc %": "", "weighted macro acc %": ""})
    return rows


def alignment_table(runs: pd.DataFrame, scope: dict, subset: str | None = None) -> Table | None:
    """Rep and TV by method on every scored question, or on the named question subset."""
    groups_of = (lambda run: run["groups"]) if subset is None else (lambda run: run["question_sets"][subset])
    if subset is not None:
        runs = runs[runs["question_sets"].map(lambda sets: isinstance(sets, dict) and subset in sets)]
    if runs.empty:
        return None
    whole = everyone(groups_of(runs.iloc[0]))
    on = "" if subset is None else f", {subset} questions"
    title = f"Group alignment{on} — {scope_title(scope, runs)}"
    note = (f"Rep = 1 - mean over {whole['n_questions']} {subset + ' ' if subset else ''}questions of the Wasserstein "
            f"distance between the method's answer distribution (mean over the {whole['n_people']} eval people) and their "
            "survey-weighted held-out answers, on each question's ordinal scale divided by its span (Santurkar et al. 2023); TV: "
            "mean total variation (lower is better). Ceiling: two random halves of the people compared the same way (10 draws; "
            "halves are half as large, so a method can pass it). Worst trait group: the lowest Rep among trait values held by 10 "
            "or more eval people. The accuracy columns are over all scored questions.")
    cells = [{"table": title, "method": r["method"], "model": r["model"], "run_id": r["run_id"], **group}
             for _, r in runs.iterrows() for group in groups_of(r)]
    return Table(title, note, pd.DataFrame(alignment_rows(runs, groups_of)), cells)


def group_tables(results: pd.DataFrame) -> list[Table]:
    """Per scope: group alignment (all questions, then each question subset the data names) and
    subgroup disparity, for every method and variant with individual personas (or none)."""
    if "groups" not in results.columns:
        return []
    with_groups = results[results["groups"].map(lambda g: isinstance(g, list) and len(g) > 0)]
    tables = []
    for values, scope_runs in with_groups.groupby(SCOPE, dropna=False, sort=True):
        scope = dict(zip(SCOPE, values))
        individual = scope_runs[~scope_runs["uses_persona"] | (scope_runs["persona"] == "individual")]
        runs = latest(individual, ["model", "method", "variant"])
        if runs.empty:
            continue
        runs = runs.assign(_rank=[method_rank(k, m) for k, m in zip(runs["kind"], runs["method"])]).sort_values(["_rank", "model", "variant"])
        subsets = sorted({name for sets in runs.get("question_sets", pd.Series(dtype=object)) if isinstance(sets, dict) for name in sets})
        tables += [alignment_table(runs, scope), *(alignment_table(runs, scope, name) for name in subsets)]
        tables += [steered_table(runs, scope, trait, name) for trait in steered_traits(runs) for name in [None, *subsets]]
        tables.append(disparity_table(runs, scope))
    return [t for t in tables if t is not None]


def steered_traits(runs: pd.DataFrame) -> list[str]:
    """The traits some run in ``runs`` steers toward (its options name a ``trait``)."""
    return sorted({options["trait"] for options in runs["options"] if isinstance(options, dict) and "trait" in options})


def steered_table(runs: pd.DataFrame, scope: dict, trait: str, subset: str | None = None) -> Table | None:
    """Rows: methods, then each group's ceiling and nulls; columns: the values of ``trait``; cells: Rep."""
    if subset is not None:
        runs = runs[runs["question_sets"].map(lambda sets: isinstance(sets, dict) and subset in sets)]
    groups_of = (lambda run: run["groups"]) if subset is None else (lambda run: run["question_sets"][subset])
    if runs.empty:
        return None
    prefix = f"{trait}="
    values = [g["group"] for g in groups_of(runs.iloc[0]) if g["group"].startswith(prefix)]
    if not values:
        return None
    rows = []
    for _, run in runs.iterrows():
        by_group = {g["group"]: g for g in groups_of(run)}
        rows.append({"method": run_label(run), **{v.removeprefix(prefix): figure(by_group.get(v, {}).get("rep")) for v in values}})
    first = {g["group"]: g for g in groups_of(runs.iloc[0])}
    for label, key in ROWS_WITHOUT_A_METHOD.items():
        rows.append({"method": label, **{v.removeprefix(prefix): figure(first[v][f"rep_{key}"]) for v in values}})
    on = "" if subset is None else f", {subset} questions"
    title = f"Steerability toward {trait} groups{on} — {scope_title(scope, runs)}"
    note = (f"Rep (as in the group alignment table) of each method's answer distribution for the eval people of each {trait} value "
            f"(values held by 10 or more eval people), against those people's survey-weighted answers. A run that steers toward "
            f"{trait} groups prompts each person with their own group's context (Santurkar et al. 2023's steerability); the persona "
            "methods steer by each person's persona. Compare down a column; the ceiling and nulls are the group's own.")
    cells = [{"table": title, "method": r["method"], "model": r["model"], "run_id": r["run_id"], **g}
             for _, r in runs.iterrows() for g in groups_of(r) if g["group"].startswith(prefix)]
    return Table(title, note, pd.DataFrame(rows), cells)


def disparity_table(runs: pd.DataFrame, scope: dict) -> Table | None:
    """Rows: traits; columns: methods; cells: best - worst value's macro accuracy [CI] (worst value)."""
    runs = runs[runs["disparity"].map(lambda d: isinstance(d, dict) and len(d) > 0)] if "disparity" in runs.columns else runs.iloc[:0]
    if runs.empty:
        return None
    labels = [run_label(run) for _, run in runs.iterrows()]
    traits = sorted({trait for d in runs["disparity"] for trait in d})
    rows = []
    for trait in traits:
        row = {"trait": trait}
        for label, (_, run) in zip(labels, runs.iterrows()):
            gap = run["disparity"].get(trait)
            row[label] = (f"{percent(gap['gap'])} [{percent(gap['gap_ci95'][0])}, {percent(gap['gap_ci95'][1])}] (low: {gap['worst']})"
                          if gap else "")
        rows.append(row)
    title = f"Subgroup disparity — {scope_title(scope, runs)}"
    note = ("Gap in macro accuracy (points) between a method's best and worst value of each trait (values held by 10 or more "
            "eval people), with a 95% bootstrap CI resampling people within both groups; low: the worst value. Per-value figures "
            "are in each run's results.json (disparity).")
    cells = [{"table": title, "method": r["method"], "model": r["model"], "run_id": r["run_id"], "trait": trait, "gap": gap["gap"],
              "ci_low": gap["gap_ci95"][0], "ci_high": gap["gap_ci95"][1], "best": gap["best"], "worst": gap["worst"]}
             for _, r in runs.iterrows() for trait, gap in r["disparity"].items()]
    return Table(title, note, pd.DataFrame(rows), cells)
