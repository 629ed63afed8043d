"""Group-level alignment from the same per-doc scores: answer distributions, representativeness,
total variation, their human ceilings and nulls, survey-weighted accuracy and subgroup disparity.

For a group (everyone, or the eval people with one value of one trait, e.g. ``POLPARTY=Democrat``)
and a question the group answered in the scored docs:

* ``D_model``: the mean of the members' predicted option distributions (a method's scores turned
  into a distribution by :func:`option_distributions`);
* ``D_humans``: the same members' held-out answers, weighted by their survey weights.

Representativeness (Santurkar et al. 2023) is ``1 - mean over questions of WD(D_model, D_humans)``,
the 1-Wasserstein distance on the options' ordinal positions divided by the largest distance on that
scale (the gap between its extreme positions: N - 1 for positions 1..N; an unordered scale such as
``[1.0, 2.0, 1.5]`` keeps its positions; a nominal question, whose options all sit at one position,
such as W26's IMPREASONGUN, has no distances and counts for TV only). Total variation is ``mean of 0.5 * sum |D_model - D_humans|``.
Beside each: the human ceiling (two random halves of the group's members compared the same way,
averaged over ``halves`` draws; questions both halves answered) and two nulls (the uniform
distribution; the survey-weighted distribution of every train answer to the question).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.survey import REFUSED, Survey
from .registry import BOOTSTRAP_SAMPLES, bootstrap_ci

SCORES_ARE = ("logits", "counts")  # what a method's scores are: logits or log-probabilities (softmax), or counts (normalised)

MIN_GROUP_PEOPLE = 10  # smaller trait groups are not reported (their distributions are mostly noise)


def option_distributions(scores: np.ndarray, scores_are: str = "logits", add_one: bool = False) -> np.ndarray:
    """Each row's distribution over its options (``-inf`` = not an option): a softmax of logits or
    log-probabilities, or counts normalised (``add_one``: plus one each first, Laplace smoothing, so
    that no option has probability 0 and a log-loss stays finite)."""
    scores = np.asarray(scores, dtype=float)
    valid = np.isfinite(scores)
    if scores_are == "counts":
        mass = np.where(valid, np.maximum(scores, 0.0) + (1.0 if add_one else 0.0), 0.0)
        total = mass.sum(axis=1, keepdims=True)
        uniform = valid / valid.sum(axis=1, keepdims=True)
        return np.where(total > 0, mass / np.where(total > 0, total, 1.0), uniform)
    if scores_are != "logits":
        raise ValueError(f"scores_are must be one of {SCORES_ARE}, got {scores_are!r}")
    shifted = np.where(valid, scores - np.where(valid, scores, -np.inf).max(axis=1, keepdims=True), -np.inf)
    weights = np.exp(shifted)
    return weights / weights.sum(axis=1, keepdims=True)


def wasserstein(p: np.ndarray, q: np.ndarray, ordinal: tuple[float, ...]) -> float:
    """1-Wasserstein distance between two distributions on a question's ordinal positions,
    divided by the distance between the scale's extremes (so it lies in [0, 1])."""
    from scipy.stats import wasserstein_distance  # scipy.stats takes a second to import: only where it is used

    positions = np.asarray(ordinal, dtype=float)
    span = positions.max() - positions.min()
    return float(wasserstein_distance(positions, positions, p, q) / span) if span > 0 else 0.0


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance between two distributions."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def answer_distribution(options: np.ndarray, weights: np.ndarray, width: int) -> np.ndarray:
    """Weighted share of each option index among answers."""
    counts = np.bincount(np.asarray(options, dtype=int), weights=np.asarray(weights, dtype=float), minlength=width)[:width]
    return counts / counts.sum()


class Scales:
    """The ordinal scales of a list of questions, padded to one width, for distances on many
    questions at once (the same figures as :func:`wasserstein` and :func:`total_variation`)."""

    def __init__(self, questions: list, width: int):
        positions = np.zeros((len(questions), width))
        for row, question in enumerate(questions):
            ordinal = np.asarray(question.ordinal, dtype=float)
            positions[row] = np.concatenate([ordinal, np.full(width - len(ordinal), ordinal.max())])  # padding: no mass, no gap
        self.order = np.argsort(positions, axis=1, kind="stable")
        ordered = np.take_along_axis(positions, self.order, axis=1)
        self.span = ordered[:, -1] - ordered[:, 0]
        self.gaps = np.diff(ordered, axis=1) / np.where(self.span > 0, self.span, 1.0)[:, None]

    def distances(self, p: np.ndarray, q: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalised 1-Wasserstein distance and total variation, pair by pair (``rows``: question rows)."""
        order = self.order[rows]
        cdf_gap = np.cumsum(np.take_along_axis(p, order, axis=1) - np.take_along_axis(q, order, axis=1), axis=1)[:, :-1]
        return (np.abs(cdf_gap) * self.gaps[rows]).sum(axis=1), 0.5 * np.abs(p - q).sum(axis=1)


def rep_tv(scales: Scales, p: np.ndarray, q: np.ndarray, rows: np.ndarray) -> tuple[float | None, float | None]:
    """Mean representativeness (1 - WD) over the given questions that have an ordinal scale, and
    mean total variation over all of them."""
    if len(rows) == 0:
        return None, None
    wd, tv = scales.distances(p, q, rows)
    ordered = scales.span[rows] > 0  # a scale whose options all sit at one position has no distances
    return (1 - float(wd[ordered].mean()) if ordered.any() else None), float(tv.mean())


def histograms(question_rows: np.ndarray, options: np.ndarray, weights: np.ndarray, n_questions: int, width: int) -> np.ndarray:
    """Per question, the weighted count of each option (rows: questions)."""
    counts = np.zeros((n_questions, width))
    np.add.at(counts, (question_rows, options), weights)
    return counts


def normalised(counts: np.ndarray) -> np.ndarray:
    total = counts.sum(axis=1, keepdims=True)
    return counts / np.where(total > 0, total, 1.0)


def population_distributions(train_answers: pd.DataFrame, survey: Survey) -> dict[str, np.ndarray]:
    """Per question, the survey-weighted distribution of every train answer (the population null)."""
    weights = survey.respondents["weight"].reindex(train_answers["respondent"]).to_numpy(dtype=float)
    frame = train_answers.assign(_weight=weights)
    return {
        question: answer_distribution(rows["option"].to_numpy(), rows["_weight"].to_numpy(), len(survey.questions[question].options))
        for question, rows in frame.groupby("question")
    }


def group_members(survey: Survey, people: pd.Index) -> dict[str, pd.Index]:
    """``everyone`` and ``TRAIT=value`` for each trait value held by at least MIN_GROUP_PEOPLE of
    ``people`` (a trait "Refused" or left empty is no group)."""
    traits = survey.respondents.loc[people]
    groups = {"everyone": people}
    for trait in survey.traits:
        for value, members in traits.groupby(trait).groups.items():
            if value not in ("", REFUSED) and len(members) >= MIN_GROUP_PEOPLE:
                groups[f"{trait}={value}"] = pd.Index(members)
    return groups


def alignment(
    docs: pd.DataFrame, distributions: np.ndarray, survey: Survey, population: dict[str, np.ndarray], seed: int = 0, halves: int = 10
) -> list[dict]:
    """Per group: Rep and TV of the method, of the human split-half ceiling and of the two nulls.

    ``docs`` holds ``respondent``, ``question`` and ``target`` (the held-out answer's option index),
    one row per scored doc, aligned with ``distributions`` (one column per option, padded).
    """
    frame = docs[["respondent", "question", "target"]].reset_index(drop=True)
    question_codes, question_keys = pd.factorize(frame["question"])
    questions = [survey.questions[key] for key in question_keys]
    width = distributions.shape[1]
    scales = Scales(questions, width)
    n_options = np.array([len(q.options) for q in questions])
    uniform = (np.arange(width)[None, :] < n_options[:, None]) / n_options[:, None]
    common = np.array([np.pad(population[k], (0, width - len(population[k]))) if k in population else np.full(width, np.nan) for k in question_keys])
    weights = survey.respondents["weight"].reindex(frame["respondent"]).to_numpy(dtype=float)
    targets = frame["target"].to_numpy(dtype=int)
    people, person_ids = pd.factorize(frame["respondent"])
    rng = np.random.default_rng(seed)
    records = []
    for group, members in group_members(survey, pd.Index(person_ids)).items():
        member_codes = person_ids.get_indexer(members)
        rows = np.flatnonzero(np.isin(people, member_codes))
        codes = question_codes[rows]
        answered = np.flatnonzero(np.bincount(codes, minlength=len(questions)))
        humans = normalised(histograms(codes, targets[rows], weights[rows], len(questions), width))[answered]
        model = np.zeros((len(questions), width))
        np.add.at(model, codes, distributions[rows])
        model = normalised(model)[answered]  # the mean of the members' distributions
        record = {"group": group, "n_people": len(members), "n_questions": len(answered)}
        record["rep"], record["tv"] = rep_tv(scales, model, humans, answered)
        record["rep_uniform"], record["tv_uniform"] = rep_tv(scales, uniform[answered], humans, answered)
        known = ~np.isnan(common[answered]).any(axis=1)
        record["rep_population"], record["tv_population"] = rep_tv(scales, common[answered][known], humans[known], answered[known])
        draws = []
        for _ in range(halves):
            in_first = np.zeros(len(person_ids), dtype=bool)
            in_first[member_codes[rng.permutation(len(members)) < len(members) // 2]] = True
            first = in_first[people[rows]]
            a = histograms(codes[first], targets[rows][first], weights[rows][first], len(questions), width)
            b = histograms(codes[~first], targets[rows][~first], weights[rows][~first], len(questions), width)
            both = np.flatnonzero((a.sum(axis=1) > 0) & (b.sum(axis=1) > 0))
            if len(both):
                draws.append(rep_tv(scales, normalised(a)[both], normalised(b)[both], both))
        reps = [rep for rep, _ in draws if rep is not None]
        record["rep_ceiling"] = float(np.mean(reps)) if reps else None
        record["tv_ceiling"] = float(np.mean([tv for _, tv in draws])) if draws else None
        records.append(record)
    return records


def weighted_macro_accuracy(accuracy: pd.Series, survey: Survey) -> float:
    """Macro accuracy with each person weighted by their survey weight (``accuracy``: per person)."""
    weights = survey.respondents["weight"].reindex(accuracy.index).to_numpy(dtype=float)
    return float(np.average(accuracy.to_numpy(), weights=weights))


def resampled_means(values: np.ndarray, rng: np.random.Generator, samples: int = BOOTSTRAP_SAMPLES) -> np.ndarray:
    """Means of ``samples`` bootstrap resamples of ``values``."""
    return values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)


def disparity(accuracy: pd.Series, survey: Survey, seed: int = 0) -> dict[str, dict]:
    """Per trait: macro accuracy per value (groups of at least MIN_GROUP_PEOPLE, with bootstrap CIs)
    and the gap between the best and the worst value, its CI from resampling people within both
    (``accuracy``: per person, indexed by person)."""
    traits = survey.respondents.loc[accuracy.index]
    result = {}
    for trait in survey.traits:
        values = {value: accuracy.loc[members].to_numpy() for value, members in traits.groupby(trait).groups.items()
                  if value not in ("", REFUSED) and len(members) >= MIN_GROUP_PEOPLE}
        if len(values) < 2:
            continue
        means = {value: float(v.mean()) for value, v in values.items()}
        best, worst = max(means, key=means.get), min(means, key=means.get)
        rng = np.random.default_rng(seed)
        gaps = resampled_means(values[best], rng) - resampled_means(values[worst], rng)
        result[trait] = {
            "groups": {value: {"accuracy": means[value], "ci95": list(bootstrap_ci(v, seed=seed)), "n_people": len(v)} for value, v in values.items()},
            "best": best, "worst": worst, "gap": means[best] - means[worst], "gap_ci95": [float(np.quantile(gaps, 0.025)), float(np.quantile(gaps, 0.975))],
        }
    return result
