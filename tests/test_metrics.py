"""Per-individual macro accuracy, bootstrap CI and paired comparison, checked by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_bench.harness.metrics.registry import bootstrap_ci, macro_score, paired_comparison, per_person_accuracy


def test_macro_accuracy_weights_people_not_answers():
    people = ["a", "a", "a", "a", "b"]
    correct = [1, 1, 1, 1, 0]
    score = macro_score(people, correct)
    assert score.accuracy == pytest.approx(0.5)  # micro accuracy would be 0.8
    assert score.n_people == 2 and score.n_answers == 5
    assert per_person_accuracy(people, correct).to_dict() == {"a": 1.0, "b": 0.0}


def test_bootstrap_ci_brackets_the_mean_and_is_seeded():
    values = np.random.default_rng(0).random(300)
    low, high = bootstrap_ci(values, seed=1)
    assert low < values.mean() < high
    standard_error = values.std() / np.sqrt(len(values))
    assert high - low == pytest.approx(2 * 1.96 * standard_error, rel=0.15)
    assert bootstrap_ci(values, seed=1) == (low, high)
    assert bootstrap_ci(np.full(10, 0.7)) == pytest.approx((0.7, 0.7))


def frame(correct: list[int]) -> pd.DataFrame:
    people = [f"p{i // 2}" for i in range(len(correct))]
    return pd.DataFrame({"doc_id": range(len(correct)), "respondent": people, "correct": correct})


def test_paired_comparison_detects_a_real_difference():
    rng = np.random.default_rng(0)
    base = rng.random(400) < 0.5
    better = base | (rng.random(400) < 0.3)
    result = paired_comparison(frame(better.astype(int).tolist()), frame(base.astype(int).tolist()))
    assert result.difference > 0 and result.significant and result.p_value < 0.01
    same = paired_comparison(frame(base.astype(int).tolist()), frame(base.astype(int).tolist()))
    assert same.difference == 0 and not same.significant and same.p_value == 1.0


def test_paired_comparison_needs_the_same_docs():
    with pytest.raises(ValueError, match="same docs"):
        paired_comparison(frame([1, 0, 1, 1]), frame([1, 0]))


def test_holm_adjusts_step_down_and_stays_monotone():
    from persona_bench.harness.metrics.registry import holm

    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.04]) == [0.04] and holm([0.5, 0.6]) == [1.0, 1.0] and holm([]) == []
