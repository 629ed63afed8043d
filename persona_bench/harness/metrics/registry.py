"""Per-person metrics, their registry, bootstrap CIs over people, and paired comparisons.

Macro accuracy = the mean over people of each person's accuracy on their scored answers, so
a person with many answers counts as much as one with few (Li et al. 2023, Sec. 5). The CI
resamples people, the unit the metric averages over.

Every metric is per person: a function registered with :func:`register_metric` (or through the
``persona_bench.metrics`` entry-point group) that reads one person's scored docs
(:class:`PersonDocs`: option scores, answer distributions, targets, each option's ordinal value,
the person's survey weight) and returns a number; a run averages it over people with a bootstrap
CI (:func:`metric_summaries`), keeps the per-person values beside its samples, and the leaderboard
ranks, marks and tests by any of them (``persona-bench leaderboard --metric NAME``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..core.errors import ConfigError
from ..core.plugins import METRIC_ENTRY_POINT_GROUP, load_plugins, plugins

BOOTSTRAP_SAMPLES = 2000


@dataclass(frozen=True)
class PersonDocs:
    """One person's scored docs, what a per-person metric reads (one row per doc)."""

    scores: np.ndarray  # (docs, options) the method's option scores, -inf past a question's last option
    probabilities: np.ndarray  # (docs, options) the scores as answer distributions (0 past the last option; counts add-one smoothed)
    target: np.ndarray  # (docs,) the index of the option the person chose
    values: np.ndarray  # (docs, options) each option's ordinal value in [0, 1]; NaN past the last option and for nominal questions
    weight: float  # the person's survey weight

    @property
    def prediction(self) -> np.ndarray:
        """The option each doc's scores put first."""
        return self.scores.argmax(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.prediction == self.target

    @property
    def ordinal(self) -> np.ndarray:
        """Which docs ask an ordinal question (nominal ones, whose options share one position, have no scale)."""
        return ~np.isnan(self.values[:, 0])


@dataclass(frozen=True)
class Metric:
    """A registered per-person metric."""

    name: str
    per_person: Callable[[PersonDocs], float]
    higher_is_better: bool = True
    description: str = ""


METRICS: dict[str, Metric] = {}


def register_metric(name: str, higher_is_better: bool = True, description: str = "") -> Callable:
    """Decorator registering ``function(person: PersonDocs) -> float`` as the metric ``name``:
    every run then computes it for every person and reports its mean over people with a CI."""
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError(f"metric name {name!r}: letters, digits, - and _ only")

    def register(function: Callable[[PersonDocs], float]) -> Callable[[PersonDocs], float]:
        existing = METRICS.get(name)
        if existing is not None and existing.per_person.__qualname__ != function.__qualname__:
            raise ConfigError(f"metric name {name!r} is already registered by {existing.per_person.__module__}")
        METRICS[name] = Metric(name, function, higher_is_better, description or (function.__doc__ or "").strip().split("\n")[0])
        return function

    return register


def registered_metrics() -> dict[str, Metric]:
    """Every registered metric, the entry-point plugins' included (``accuracy`` first)."""
    load_plugins(plugins(METRIC_ENTRY_POINT_GROUP), "metric plugin", skip=METRICS)
    return METRICS


@register_metric("accuracy", description="share of the person's answers predicted exactly (macro accuracy over people)")
def accuracy_metric(person: PersonDocs) -> float:
    return float(person.correct.mean())


@register_metric("ordinal_error", higher_is_better=False,
                 description="mean distance on the question's [0, 1] ordinal scale between the predicted and the chosen option "
                             "(ordinal questions only)")
def ordinal_error(person: PersonDocs) -> float:
    rows = np.flatnonzero(person.ordinal)
    if len(rows) == 0:
        return float("nan")  # no ordinal question: the person does not count
    return float(np.abs(person.values[rows, person.prediction[rows]] - person.values[rows, person.target[rows]]).mean())


def side(values: np.ndarray) -> np.ndarray:
    """An ordinal value's side of its scale: -1 below the middle, 0 at it, +1 above."""
    return np.sign(np.round(values - 0.5, 9))


@register_metric("collapsed_accuracy",
                 description="share of answers predicted on the right side of the scale (below, at or above its middle; "
                             "Hwang et al. 2023; ordinal questions only)")
def collapsed_accuracy(person: PersonDocs) -> float:
    rows = np.flatnonzero(person.ordinal)
    if len(rows) == 0:
        return float("nan")
    return float((side(person.values[rows, person.prediction[rows]]) == side(person.values[rows, person.target[rows]])).mean())


@register_metric("brier", higher_is_better=False,
                 description="Brier score of the answer distribution (squared error against the chosen option, summed over options)")
def brier(person: PersonDocs) -> float:
    truth = np.zeros_like(person.probabilities)
    truth[np.arange(len(person.target)), person.target] = 1.0
    return float(((person.probabilities - truth) ** 2).sum(axis=1).mean())


@register_metric("log_loss", higher_is_better=False,
                 description="mean negative log-probability (nats) the answer distribution gives the chosen option")
def log_loss(person: PersonDocs) -> float:
    chosen = person.probabilities[np.arange(len(person.target)), person.target]
    return float(-np.log(np.maximum(chosen, 1e-300)).mean())


CALIBRATION_BINS = 10


@register_metric("ece", higher_is_better=False,
                 description=f"expected calibration error: the gap between accuracy and confidence of the top answer in "
                             f"{CALIBRATION_BINS} equal-width confidence bins, weighted by the bins' shares of the person's answers")
def expected_calibration_error(person: PersonDocs) -> float:
    confidence = person.probabilities.max(axis=1)
    bins = np.minimum((confidence * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    correct = person.correct.astype(float)
    gap = 0.0
    for b in np.unique(bins):
        members = bins == b
        gap += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(gap)


def per_person_metrics(
    people: np.ndarray, scores: np.ndarray, probabilities: np.ndarray, target: np.ndarray, values: np.ndarray,
    weights: pd.Series, metrics: dict[str, Metric] | None = None,
) -> pd.DataFrame:
    """Every metric's value for every person (rows: people, sorted; columns: metrics)."""
    metrics = registered_metrics() if metrics is None else metrics
    groups = pd.Series(np.arange(len(people))).groupby(np.asarray(people)).indices
    rows = {}
    for person in sorted(groups):
        index = groups[person]
        docs = PersonDocs(scores[index], probabilities[index], target[index], values[index], float(weights.get(person, 1.0)))
        rows[person] = {name: float(metric.per_person(docs)) for name, metric in metrics.items()}
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(metrics))


def metric_summaries(per_person: pd.DataFrame, seed: int = 0, metrics: dict[str, Metric] | None = None) -> dict[str, dict]:
    """Per metric: the mean over the people it applies to (its value is not NaN), its 95% bootstrap CI,
    and which direction is better."""
    metrics = registered_metrics() if metrics is None else metrics
    summaries = {}
    for name in per_person.columns:
        counted = per_person[name].dropna()  # a person a metric does not apply to (e.g. no ordinal question) is left out
        summaries[name] = {"value": float(counted.mean()) if len(counted) else float("nan"),
                           "ci95": list(bootstrap_ci(counted.to_numpy(), seed=seed)), "higher_is_better": metrics[name].higher_is_better}
    return summaries


@dataclass(frozen=True)
class MacroScore:
    """Macro accuracy in [0, 1] with its 95% bootstrap CI and the counts behind it."""

    accuracy: float
    ci95: tuple[float, float]
    n_people: int
    n_answers: int

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {**asdict(self), "ci95": list(self.ci95)}


def per_person_accuracy(people: np.ndarray | pd.Series, correct: np.ndarray | pd.Series) -> pd.Series:
    """Accuracy of each person over their answers, indexed by person."""
    return pd.Series(np.asarray(correct, dtype=float)).groupby(np.asarray(people)).mean()


def bootstrap_ci(
    per_person: np.ndarray, seed: int = 0, samples: int = BOOTSTRAP_SAMPLES, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``per_person`` values, resampling people."""
    values = np.asarray(per_person, dtype=float)
    if len(values) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for start in range(0, samples, 256):
        stop = min(samples, start + 256)
        means[start:stop] = values[rng.integers(0, len(values), (stop - start, len(values)))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return (float(low), float(high))


def macro_score(people: np.ndarray | pd.Series, correct: np.ndarray | pd.Series, seed: int = 0) -> MacroScore:
    """Macro accuracy over people with a 95% bootstrap CI."""
    accuracy = per_person_accuracy(people, correct)
    return MacroScore(
        accuracy=float(accuracy.mean()) if len(accuracy) else float("nan"),
        ci95=bootstrap_ci(accuracy.to_numpy(), seed=seed),
        n_people=len(accuracy),
        n_answers=len(np.asarray(correct)),
    )


@dataclass(frozen=True)
class PairedComparison:
    """Difference of macro accuracies (a - b) on the same people, CI and two-sided p-value."""

    difference: float
    ci95: tuple[float, float]
    p_value: float
    n_people: int

    @property
    def significant(self) -> bool:
        """Whether the 95% CI of the difference excludes zero."""
        return self.ci95[0] > 0 or self.ci95[1] < 0

    def in_points(self) -> str:
        """``+8.8 [+1.6, +15.9]``: the difference and its CI in percentage points."""
        return f"{100 * self.difference:+.1f} [{100 * self.ci95[0]:+.1f}, {100 * self.ci95[1]:+.1f}]"


def paired_comparison(a: pd.DataFrame, b: pd.DataFrame, seed: int = 0, samples: int = 10000) -> PairedComparison:
    """Compare two runs scored on the same docs (frames with ``doc_id``, ``respondent``, ``correct``).

    Per-person accuracy differences are bootstrapped over people for the CI; the p-value comes
    from a sign-flip permutation test of the mean difference. Docs present in only one run are
    an error: a paired comparison needs the same docs.
    """
    merged = a[["doc_id", "respondent", "correct"]].merge(
        b[["doc_id", "correct"]], on="doc_id", how="outer", suffixes=("_a", "_b"), indicator=True
    )
    if (merged["_merge"] != "both").any():
        raise ValueError(f"paired comparison needs the same docs; {int((merged['_merge'] != 'both').sum())} differ")
    diff = (
        merged.groupby("respondent")["correct_a"].mean().astype(float) - merged.groupby("respondent")["correct_b"].mean()
    ).to_numpy()
    return paired_differences(diff, seed, samples)


def paired_person_values(a: pd.Series, b: pd.Series, seed: int = 0, samples: int = 10000) -> PairedComparison:
    """Compare two runs' per-person values of one metric (indexed by person; the same people)."""
    if set(a.index) != set(b.index):
        raise ValueError(f"paired comparison needs the same people; {len(set(a.index) ^ set(b.index))} differ")
    diff = (a.sort_index().astype(float) - b.sort_index().astype(float)).dropna()  # people the metric does not apply to
    return paired_differences(diff.to_numpy(), seed, samples)


def paired_differences(diff: np.ndarray, seed: int = 0, samples: int = 10000) -> PairedComparison:
    """Mean of per-person differences, its bootstrap CI and a sign-flip permutation p-value."""
    if len(diff) == 0:  # no person the metric applies to: nothing to test
        return PairedComparison(float("nan"), (float("nan"), float("nan")), 1.0, 0)
    rng = np.random.default_rng(seed)
    extreme = 0
    for start in range(0, samples, 256):
        signs = rng.choice([-1.0, 1.0], size=(min(256, samples - start), len(diff)))
        extreme += int(np.sum(np.abs((signs * diff).mean(axis=1)) >= abs(diff.mean()) - 1e-15))
    p_value = (1 + extreme) / (samples + 1)
    return PairedComparison(float(diff.mean()), bootstrap_ci(diff, seed=seed), float(p_value), len(diff))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control over one family of tests):
    the i-th smallest p times (m - i), made monotone and capped at 1; compare each with 0.05."""
    order = np.argsort(p_values, kind="stable")
    m = len(p_values)
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
