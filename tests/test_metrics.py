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


def hand_made_person():
    """Three docs of one person: an ordinal 4-point question twice, a nominal 3-option one once."""
    from persona_bench.harness.metrics.registry import PersonDocs

    probabilities = np.array([[0.5, 0.3, 0.1, 0.1],      # predicts 0, chose 1 (same side: both below the middle)
                              [0.1, 0.2, 0.3, 0.4],      # predicts 3, chose 3
                              [0.2, 0.7, 0.1, 0.0]])     # nominal: predicts 1, chose 2
    scores = np.log(np.where(probabilities > 0, probabilities, 1.0))
    scores[2, 3] = -np.inf
    values = np.array([[0, 1 / 3, 2 / 3, 1], [0, 1 / 3, 2 / 3, 1], [np.nan] * 4])
    return PersonDocs(scores, probabilities, np.array([1, 3, 2]), values, 1.0)


def test_each_metric_equals_its_direct_computation_on_a_hand_made_person():
    from persona_bench.harness.metrics.registry import registered_metrics

    person = hand_made_person()
    values = {name: metric.per_person(person) for name, metric in registered_metrics().items()}
    assert values["accuracy"] == pytest.approx(1 / 3)
    assert values["ordinal_error"] == pytest.approx((1 / 3 + 0) / 2)  # the nominal doc has no scale
    assert values["collapsed_accuracy"] == pytest.approx(1.0)  # 0 and 1/3 are both below the middle
    brier = ((0.5**2 + 0.7**2 + 0.1**2 + 0.1**2) + (0.1**2 + 0.2**2 + 0.3**2 + 0.6**2) + (0.2**2 + 0.7**2 + 0.9**2)) / 3
    assert values["brier"] == pytest.approx(brier)
    assert values["log_loss"] == pytest.approx(-(np.log(0.3) + np.log(0.4) + np.log(0.1)) / 3)
    # confidences 0.5 (bin 5, wrong), 0.4 (bin 4, right), 0.7 (bin 7, wrong): each bin holds a third
    assert values["ece"] == pytest.approx((abs(0 - 0.5) + abs(1 - 0.4) + abs(0 - 0.7)) / 3)


def test_a_metric_that_does_not_apply_to_a_person_leaves_them_out_of_its_mean():
    from persona_bench.harness.metrics.registry import metric_summaries, paired_person_values, registered_metrics

    per_person = pd.DataFrame({"accuracy": [0.5, 1.0, 0.0], "ordinal_error": [0.2, np.nan, 0.4]}, index=["a", "b", "c"])
    summaries = metric_summaries(per_person, metrics=registered_metrics())
    assert summaries["ordinal_error"]["value"] == pytest.approx(0.3) and not np.isnan(summaries["ordinal_error"]["ci95"]).any()
    paired = paired_person_values(per_person["ordinal_error"], per_person["ordinal_error"] / 2)
    assert paired.n_people == 2 and paired.difference == pytest.approx(0.15)


def test_counts_get_add_one_smoothing_for_proper_scores_only():
    from persona_bench.harness.metrics.groups import option_distributions

    counts = np.array([[3.0, 0.0, -np.inf]])
    assert option_distributions(counts, "counts").tolist() == [[1.0, 0.0, 0.0]]  # the group figures' distribution
    assert option_distributions(counts, "counts", add_one=True) == pytest.approx(np.array([[0.8, 0.2, 0.0]]))
