"""Per-individual macro accuracy, its bootstrap CI over people, and paired comparisons.

Macro accuracy = the mean over people of each person's accuracy on their scored answers, so
a person with many answers counts as much as one with few (Li et al. 2023, Sec. 5). The CI
resamples people, the unit the metric averages over.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

BOOTSTRAP_SAMPLES = 2000


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
