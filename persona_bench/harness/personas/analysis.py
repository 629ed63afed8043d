"""Who the cluster personas are and where they differ (Li et al. 2023, Sec. 4.2).

Inputs everywhere: a :class:`Survey`, the train people (``PersonaSpace.people``) and one
cluster label per train person (``kmeans(space.vectors, k).labels``). All shares are weighted
by ``respondents['weight']``; the population is all of ``people``.

* :func:`cluster_composition`: each cluster's trait make-up vs. the population (Figures 2, 3);
* :func:`answer_distributions` and :func:`total_variation`: weighted answer distributions per
  (group, question) and the TV distance between two of them;
* :func:`cluster_distinctive_questions`: per cluster, the questions whose answers differ most
  from the population's (Table 1);
* :func:`question_disagreement`, :func:`topic_disagreement`, :func:`topic_summary`: TV_ave,
  the mean TV over all cluster pairs, per question and per topic (Tables 2, 17, 18);
* :func:`write_analysis`: all of the above as ``analysis.md`` plus PNG bar charts.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from tabulate import tabulate

from ..core.atomic import atomic_write_text, atomic_writer
from ..core.errors import ConfigError
from ..data.survey import Survey

POPULATION = "population"
MIN_ANSWERS = 10


# ---------------------------------------------------------------- inputs
def labelled_people(survey: Survey, people: Sequence[str], labels: ArrayLike) -> pd.DataFrame:
    """The respondents rows of ``people`` with a ``cluster`` column holding ``labels``."""
    labels = np.asarray(labels)
    if len(labels) != len(people):
        raise ConfigError(f"{len(labels)} cluster labels for {len(people)} people")
    unknown = pd.Index(people).difference(survey.respondents.index)
    if len(unknown):
        raise ConfigError(f"{len(unknown)} people are not respondents of survey {survey.name}, e.g. {unknown[0]}")
    return survey.respondents.loc[list(people)].assign(cluster=labels)


def value_order(survey: Survey, trait: str, values: Sequence[str]) -> list[str]:
    """``values`` in the survey's listed order for ``trait``, unlisted ones (e.g. Refused) last."""
    listed = {value: i for i, value in enumerate(survey.traits.get(trait, ()))}
    return sorted(values, key=lambda v: (listed.get(v, len(listed)), v))


# ---------------------------------------------------------------- composition
def cluster_composition(
    survey: Survey, people: Sequence[str], labels: ArrayLike, traits: Sequence[str] | None = None
) -> pd.DataFrame:
    """Weighted share of each trait value in each cluster and in the population, and their difference.

    One row per (trait, value, cluster): ``cluster_share``, ``population_share`` and
    ``difference`` (cluster minus population), shares in [0, 1] over the people whose value is
    known (empty = missing; "Refused" counts as a value).
    """
    traits = list(traits or survey.traits)
    unknown = [t for t in traits if t not in survey.traits]
    if unknown:
        raise ConfigError(f"unknown trait(s) {', '.join(unknown)} (known: {', '.join(survey.traits)})")
    frame = labelled_people(survey, people, labels)
    long = frame.melt(id_vars=["cluster", "weight"], value_vars=traits, var_name="trait", value_name="value")
    long = long[long["value"].fillna("").astype(str) != ""]
    mass = long.pivot_table(index=["trait", "value"], columns="cluster", values="weight", aggfunc="sum", fill_value=0.0)
    ordered = [(t, v) for t in traits if t in mass.index for v in value_order(survey, t, mass.loc[t].index)]
    mass = mass.reindex(pd.MultiIndex.from_tuples(ordered, names=["trait", "value"]))
    totals = mass.groupby(level="trait", sort=False).transform("sum")
    population = (mass.sum(axis=1) / totals.sum(axis=1)).rename("population_share")
    shares = (mass / totals).stack(future_stack=True).rename("cluster_share").reset_index()
    shares = shares.join(population, on=["trait", "value"])
    shares["difference"] = shares["cluster_share"] - shares["population_share"]
    return shares.reset_index(drop=True)


def cluster_sizes(survey: Survey, people: Sequence[str], labels: ArrayLike) -> pd.DataFrame:
    """People per cluster and the cluster's weighted share of the population."""
    frame = labelled_people(survey, people, labels)
    sizes = frame.groupby("cluster").agg(people=("weight", "size"), weight=("weight", "sum"))
    sizes["share"] = sizes["weight"] / sizes["weight"].sum()
    return sizes.drop(columns="weight").reset_index()


def overrepresented(composition: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Per cluster, the ``top`` trait values with the largest share above the population's."""
    ranked = composition.sort_values(["cluster", "difference", "trait", "value"], ascending=[True, False, True, True])
    return ranked.groupby("cluster").head(top).reset_index(drop=True)


# ---------------------------------------------------------------- answers
@dataclass(frozen=True)
class Distributions:
    """Weighted answer distributions: ``shares`` is (group, question) x option index, rows sum
    to 1 (options a question lacks hold 0); ``counts`` holds the unweighted answers per row."""

    shares: pd.DataFrame
    counts: pd.Series


def answer_distributions(survey: Survey, people: Sequence[str], groups: ArrayLike | None = None) -> Distributions:
    """Weighted distribution over each question's options per (group, question).

    ``groups`` gives one label per person in ``people``; None puts everyone in one group,
    ``POPULATION``.
    """
    groups = np.full(len(people), POPULATION, dtype=object) if groups is None else groups
    frame = labelled_people(survey, people, groups)
    answers = survey.responses[survey.responses["respondent"].isin(frame.index)]
    long = pd.DataFrame(
        {
            "group": answers["respondent"].map(frame["cluster"]).to_numpy(),
            "question": answers["question"].to_numpy(),
            "option": answers["option"].to_numpy(),
            "weight": answers["respondent"].map(frame["weight"]).to_numpy(),
        }
    )
    mass = long.groupby(["group", "question", "option"])["weight"].sum().unstack("option", fill_value=0.0)
    shares = mass.div(mass.sum(axis=1), axis=0)
    return Distributions(shares, long.groupby(["group", "question"]).size().rename("answers"))


def total_variation(p: ArrayLike, q: ArrayLike) -> np.ndarray | float:
    """Total variation distance, 0.5 * L1, along the last axis (one value per distribution pair)."""
    distance = 0.5 * np.abs(np.asarray(p, dtype=float) - np.asarray(q, dtype=float)).sum(axis=-1)
    return float(distance) if np.ndim(distance) == 0 else distance


def modal_answers(survey: Survey, questions: Sequence[str], shares: np.ndarray) -> list[str]:
    """The text of the most chosen option (lowest index on ties) for each row of ``shares``."""
    return [survey.questions[q].options[i] for q, i in zip(questions, shares.argmax(axis=1))]


def cluster_shares(survey: Survey, people: Sequence[str], labels: ArrayLike, min_answers: int) -> pd.DataFrame:
    """Per-cluster answer distributions, keeping (cluster, question) cells with enough answers."""
    clusters = answer_distributions(survey, people, labels)
    return clusters.shares[clusters.counts.reindex(clusters.shares.index) >= min_answers]


# ---------------------------------------------------------------- cluster vs population
def cluster_distinctive_questions(
    survey: Survey, people: Sequence[str], labels: ArrayLike, top: int = 5, min_answers: int = MIN_ANSWERS
) -> pd.DataFrame:
    """Per cluster, the ``top`` questions whose answers differ most (TV) from the population's.

    Columns: cluster, question, text, cluster_answer and population_answer (modal options),
    cluster_shares and population_shares (the full distributions, one share per option), tv.
    """
    clusters = cluster_shares(survey, people, labels, min_answers)
    population = answer_distributions(survey, people).shares.xs(POPULATION, level="group")
    questions = clusters.index.get_level_values("question")
    population = population.reindex(index=questions, columns=clusters.columns, fill_value=0.0).to_numpy()
    table = pd.DataFrame(
        {
            "cluster": clusters.index.get_level_values("group"),
            "question": questions,
            "text": [survey.questions[q].text for q in questions],
            "cluster_answer": modal_answers(survey, questions, clusters.to_numpy()),
            "population_answer": modal_answers(survey, questions, population),
            "cluster_shares": list(clusters.to_numpy()),
            "population_shares": list(population),
            "tv": total_variation(clusters.to_numpy(), population),
        }
    )
    table = table.sort_values(["cluster", "tv", "question"], ascending=[True, False, True])
    return table.groupby("cluster").head(top).reset_index(drop=True)


# ---------------------------------------------------------------- between clusters
def question_disagreement(
    survey: Survey, people: Sequence[str], labels: ArrayLike, min_answers: int = MIN_ANSWERS
) -> pd.DataFrame:
    """TV_ave per question: the mean TV distance over all pairs of clusters that answered it.

    Columns: topic, question, text, tv_ave, clusters (how many had ``min_answers`` answers),
    modal (per cluster: its most chosen option and that option's share, None without enough answers);
    questions answered by fewer than two such clusters are left out. Sorted by tv_ave, descending.
    """
    shares = cluster_shares(survey, people, labels, min_answers)
    groups = np.unique(np.asarray(labels))
    questions = [q for q in survey.questions if q in shares.index.get_level_values("question")]
    grid = shares.reindex(pd.MultiIndex.from_product([groups, questions])).to_numpy()
    grid = grid.reshape(len(groups), len(questions), shares.shape[1])
    first, second = np.triu_indices(len(groups), k=1)
    pairwise = total_variation(grid[first], grid[second])
    compared = ~np.isnan(pairwise)
    tv_ave = np.where(compared, pairwise, 0.0).sum(axis=0) / np.maximum(compared.sum(axis=0), 1)
    answered = (~np.isnan(grid[:, :, 0])).sum(axis=0)
    modal = [{group: None if np.isnan(grid[g, j, 0]) else (survey.questions[q].options[int(np.argmax(grid[g, j]))], float(np.max(grid[g, j])))
              for g, group in enumerate(groups)} for j, q in enumerate(questions)]
    table = pd.DataFrame(
        {
            "topic": [survey.questions[q].topic for q in questions],
            "question": questions,
            "text": [survey.questions[q].text for q in questions],
            "tv_ave": tv_ave,
            "clusters": answered,
            "modal": modal,
        }
    )
    table = table[table["clusters"] >= 2]
    return table.sort_values(["tv_ave", "question"], ascending=[False, True]).reset_index(drop=True)


def topic_disagreement(
    survey: Survey, people: Sequence[str], labels: ArrayLike, top: int = 3, min_answers: int = MIN_ANSWERS
) -> pd.DataFrame:
    """Per topic, the ``top`` questions with the largest TV_ave, topics by mean TV_ave (descending).

    Each row also carries its topic's ``topic_tv_ave`` (mean TV_ave over all the topic's
    questions) and ``topic_questions`` (how many there are); see :func:`topic_summary`.
    """
    per_question = question_disagreement(survey, people, labels, min_answers)
    topics = per_question.groupby("topic")["tv_ave"].agg(topic_tv_ave="mean", topic_questions="size")
    table = per_question.join(topics, on="topic")
    table = table.sort_values(["topic_tv_ave", "topic", "tv_ave", "question"], ascending=[False, True, False, True])
    return table.groupby("topic", sort=False).head(top).reset_index(drop=True)


def topic_summary(disagreement: pd.DataFrame) -> pd.DataFrame:
    """One row per topic of a :func:`topic_disagreement` table: questions and mean TV_ave, descending."""
    summary = disagreement.drop_duplicates("topic")[["topic", "topic_questions", "topic_tv_ave"]]
    return summary.rename(columns={"topic_questions": "questions", "topic_tv_ave": "tv_ave"}).reset_index(drop=True)


# ---------------------------------------------------------------- rendering
def percent(share: float) -> str:
    """A share in [0, 1] as a percentage with one decimal."""
    return f"{100 * share:.1f}%"


def cell(text: str, width: int = 100) -> str:
    """Text safe for one markdown table cell: one line, no bare pipes, at most ``width`` characters."""
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


def section(title: str, explanation: str, table: pd.DataFrame) -> str:
    """A markdown section: heading, one-line explanation, the table (cells already formatted)."""
    body = tabulate(table, headers="keys", showindex=False, tablefmt="github", disable_numparse=True)
    return f"## {title}\n\n{explanation}\n\n{body}\n"


def clusters_table(sizes: pd.DataFrame, composition: pd.DataFrame, top: int = 3) -> pd.DataFrame:
    """Cluster sizes with the trait values most over-represented in each (in percentage points)."""
    standouts = overrepresented(composition, top)
    points = (100 * standouts["difference"]).map("{:+.1f}".format)
    labels = (standouts["trait"] + "=" + standouts["value"] + " (" + points + ")").groupby(standouts["cluster"]).agg(", ".join)
    return pd.DataFrame(
        {
            "cluster": sizes["cluster"].astype(str),
            "people": sizes["people"].astype(str),
            "weighted share": sizes["share"].map(percent),
            "most over-represented (points above population)": sizes["cluster"].map(labels),
        }
    )


def composition_table(composition: pd.DataFrame, trait: str) -> pd.DataFrame:
    """One trait's values (rows) with population and per-cluster shares (columns), as percentages."""
    rows = composition[composition["trait"] == trait]
    values = list(dict.fromkeys(rows["value"]))
    wide = rows.pivot(index="value", columns="cluster", values="cluster_share").reindex(values)
    wide.columns = [f"cluster {c}" for c in wide.columns]
    wide.insert(0, "population", rows.drop_duplicates("value").set_index("value")["population_share"].reindex(values))
    return wide.map(percent).rename_axis(trait).reset_index()


def distribution_text(survey: Survey, question: str, shares: np.ndarray) -> str:
    """``Always acceptable: 87.4%, Sometimes acceptable: 12.5%, ...``: every option of ``question`` with its share."""
    options = survey.questions[question].options
    return ", ".join(f"{option}: {percent(share)}" for option, share in zip(options, shares))


def distinctive_table(survey: Survey, distinctive: pd.DataFrame, cluster) -> pd.DataFrame:
    """One cluster's rows of :func:`cluster_distinctive_questions` in the paper's shape (Tables 1,
    12-16): the question, its answer distribution in the cluster and in the population, the TV."""
    rows = distinctive[distinctive["cluster"] == cluster]
    return pd.DataFrame(
        {
            "question": [cell(f"{key}: {text}", 100) for key, text in zip(rows["question"], rows["text"])],
            f"cluster {cluster}": [cell(distribution_text(survey, q, v), 160) for q, v in zip(rows["question"], rows["cluster_shares"])],
            "overall population": [cell(distribution_text(survey, q, v), 160) for q, v in zip(rows["question"], rows["population_shares"])],
            "TV": rows["tv"].map("{:.3f}".format),
        }
    )


def contested_table(disagreement: pd.DataFrame) -> pd.DataFrame:
    """:func:`topic_disagreement` formatted for markdown in the paper's shape (Tables 2, 17, 18):
    each question with its TV_ave and every cluster's most chosen answer and its share."""
    clusters = list(disagreement["modal"].iloc[0]) if len(disagreement) else []
    return pd.DataFrame(
        {
            "topic": disagreement["topic"],
            "question": [cell(f"{key}: {text}", 100) for key, text in zip(disagreement["question"], disagreement["text"])],
            "TV_ave": disagreement["tv_ave"].map("{:.3f}".format),
            **{f"cluster {c}": disagreement["modal"].map(lambda modal, c=c: "-" if modal[c] is None else f"{cell(modal[c][0], 40)} ({percent(modal[c][1])})")
               for c in clusters},
        }
    )


def elbow_table(curve: pd.DataFrame, chosen: int) -> pd.DataFrame:
    """The elbow curve (k, Eq. 1 loss with centroids, K-Means inertia), the picked k marked."""
    return pd.DataFrame(
        {
            "k": [f"**{k}** (elbow)" if k == chosen else str(k) for k in curve["k"]],
            "Eq. 1 loss (centroid MSE)": curve["loss"].map("{:.5f}".format),
            "K-Means inertia": curve["inertia"].map("{:.2f}".format),
        }
    )


def save_png(figure, path: Path) -> Path:
    """Save a matplotlib figure as PNG atomically (temporary file beside ``path``, then rename)."""
    with atomic_writer(path, binary=True) as handle:
        figure.savefig(handle, format="png", dpi=110)
    return path


def plot_composition(composition: pd.DataFrame, trait: str, path: Path) -> Path:
    """Bar chart per cluster: the share of each ``trait`` value in the cluster vs. the population."""
    from matplotlib.figure import Figure

    rows = composition[composition["trait"] == trait]
    values = list(dict.fromkeys(rows["value"]))
    clusters = sorted(rows["cluster"].unique())
    population = 100 * rows.drop_duplicates("value").set_index("value")["population_share"].reindex(values)
    columns = min(3, len(clusters))
    lines = -(-len(clusters) // columns)
    figure = Figure(figsize=(4.2 * columns + 1.5, (0.42 * len(values) + 0.9) * lines + 0.8), layout="constrained")
    axes = figure.subplots(lines, columns, sharex=True, sharey=True, squeeze=False).flat
    y = np.arange(len(values))
    for n, (ax, cluster) in enumerate(zip(axes, clusters)):
        share = 100 * rows[rows["cluster"] == cluster].set_index("value")["cluster_share"].reindex(values)
        ax.barh(y - 0.2, share, height=0.4, color=f"C{n % 10}", label="cluster")
        ax.barh(y + 0.2, population, height=0.4, color="0.75", label="population")
        ax.set_title(f"cluster {cluster}")
        ax.set_yticks(y, values)
        ax.grid(axis="x", alpha=0.3)
    for ax in axes[len(clusters):]:
        ax.remove()
    axes[0].invert_yaxis()
    axes[0].legend(loc="lower right", fontsize="small")
    figure.suptitle(f"{trait}: cluster composition vs. population")
    figure.supxlabel("weighted share of people with a known value (%)")
    return save_png(figure, path)


def plot_elbow(curve: pd.DataFrame, chosen: int, path: Path) -> Path:
    """Eq. 1's loss with cluster centroids per k, the elbow pick marked."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.6), layout="constrained")
    ax = figure.subplots()
    ax.plot(curve["k"], curve["loss"], marker="o", color="C0")
    picked = curve[curve["k"] == chosen]
    ax.plot(picked["k"], picked["loss"], marker="o", markersize=11, fillstyle="none", color="C3", label=f"elbow: k = {chosen}")
    ax.set_xlabel("clusters k")
    ax.set_ylabel("Eq. 1 loss with centroids (MSE)")
    ax.set_title("Elbow of the cluster personas")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_png(figure, path)


def plot_topics(summary: pd.DataFrame, path: Path) -> Path:
    """Horizontal bar chart of the mean TV_ave per topic, largest on top."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 0.4 * len(summary) + 1.4), layout="constrained")
    ax = figure.subplots()
    bars = ax.barh(np.arange(len(summary)), summary["tv_ave"], color="C0")
    counts = [f"{v:.3f} ({n} q)" for v, n in zip(summary["tv_ave"], summary["questions"])]
    ax.bar_label(bars, labels=counts, padding=3, fontsize="small")
    ax.set_yticks(np.arange(len(summary)), summary["topic"])
    ax.invert_yaxis()
    ax.margins(x=0.25)
    ax.set_xlabel("mean TV_ave (average TV distance between cluster pairs)")
    ax.set_title("Disagreement between clusters per topic")
    return save_png(figure, path)


def write_analysis(
    survey: Survey,
    people: Sequence[str],
    labels: ArrayLike,
    out_dir: Path,
    traits: Sequence[str] | None = None,
    top: int = 3,
    top_per_topic: int = 3,
    min_answers: int = MIN_ANSWERS,
    elbow: tuple[pd.DataFrame, int] | None = None,
) -> list[Path]:
    """Write ``analysis.md``, ``composition_<TRAIT>.png`` per trait, ``topic_disagreement.png`` and,
    given ``elbow`` (its curve and the picked k), ``elbow.png``: the paper's Sec. 4.2 and appendix
    analyses (Tables 1, 2, 12-18 in its shape, Figures 2 and 3 for every trait).

    ``traits`` picks the composition tables and charts (default: every trait of the survey; those it
    lacks are skipped); the cluster overview uses every trait. Returns the written paths.
    """
    out_dir = Path(out_dir)
    shown = [t for t in (survey.traits if traits is None else traits) if t in survey.traits]
    composition = cluster_composition(survey, people, labels)
    disagreement = topic_disagreement(survey, people, labels, top_per_topic, min_answers)
    summary = topic_summary(disagreement)
    sizes = cluster_sizes(survey, people, labels)
    distinctive = cluster_distinctive_questions(survey, people, labels, top, min_answers)
    sections = [
        section(
            "Clusters", "Size of each cluster and the trait values most over-represented in it.", clusters_table(sizes, composition)
        ),
        *([section(
            f"Elbow: k = {elbow[1]}",
            "Eq. 1's loss on the train answers with each person's vector replaced by their K-Means centroid, per k; "
            "the elbow is the k farthest below the line from the first point to the last (paper Sec. 4.2: k = 6).",
            elbow_table(*elbow),
        )] if elbow else []),
        *(
            section(
                f"Composition: {trait}",
                f"Weighted share of each {trait} value in each cluster vs. the whole train population (paper Figures 2, 3).",
                composition_table(composition, trait),
            )
            for trait in shown
        ),
        *(
            section(
                f"Cluster {cluster} vs. the overall population",
                f"The {top} questions whose answer distribution in cluster {cluster} is farthest (TV distance) from the "
                "population's, with both distributions (paper Tables 1, 12-16).",
                distinctive_table(survey, distinctive, cluster),
            )
            for cluster in sorted(distinctive["cluster"].unique())
        ),
        section(
            "Disagreement between clusters per topic",
            "Mean over each topic's questions of TV_ave, the TV distance averaged over all cluster pairs.",
            summary.assign(tv_ave=summary["tv_ave"].map("{:.3f}".format), questions=summary["questions"].astype(str)),
        ),
        section(
            "Most contested questions per topic",
            f"Per topic, the {top_per_topic} questions with the largest TV_ave between clusters, with each cluster's most "
            "chosen answer and its share (paper Tables 2, 17, 18).",
            contested_table(disagreement),
        ),
    ]
    header = (
        f"# Cluster personas of {survey.name}\n\n{len(people)} train people in {len(sizes)} clusters; shares are "
        f"weighted by survey weights; (cluster, question) cells with fewer than {min_answers} answers are skipped.\n\n"
    )
    markdown = out_dir / "analysis.md"
    atomic_write_text(markdown, header + "\n".join(sections))
    charts = [plot_composition(composition, trait, out_dir / f"composition_{trait}.png") for trait in shown]
    extra = [plot_elbow(*elbow, out_dir / "elbow.png")] if elbow else []
    return [markdown, *charts, plot_topics(summary, out_dir / "topic_disagreement.png"), *extra]
