"""Group-level metrics, each checked on a case small enough to compute by hand."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from persona_bench.harness.metrics.groups import (
    Scales, alignment, disparity, option_distributions, rep_tv, total_variation, wasserstein, weighted_macro_accuracy,
)
from persona_bench.harness.metrics.registry import per_person_accuracy
from persona_bench.harness.data.survey import Question, Survey

WORLDDANGER = (1.0, 2.0, 1.5)  # W26's unordered scale: the third option lies between the first two


def test_wasserstein_on_ordered_and_unordered_scales():
    assert wasserstein(np.array([1, 0, 0]), np.array([0, 0, 1]), (1, 2, 3)) == pytest.approx(1.0)  # 2 / (N - 1)
    assert wasserstein(np.array([1, 0, 0]), np.array([0, 1, 0]), (1, 2, 3)) == pytest.approx(0.5)
    assert wasserstein(np.array([1, 0, 0]), np.array([0, 0, 1]), WORLDDANGER) == pytest.approx(0.5)  # 1.0 -> 1.5, span 1
    assert wasserstein(np.array([1, 0, 0]), np.array([0, 1, 0]), WORLDDANGER) == pytest.approx(1.0)
    assert wasserstein(np.array([0, 0, 1]), np.array([0, 1, 0]), WORLDDANGER) == pytest.approx(0.5)
    assert total_variation(np.array([0.5, 0.5, 0]), np.array([0, 0.5, 0.5])) == pytest.approx(0.5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.01, 1), min_size=4, max_size=4), st.lists(st.floats(0.01, 1), min_size=4, max_size=4),
       st.permutations([1.0, 2.0, 3.0, 4.0]), st.integers(2, 4))
def test_vectorised_distances_equal_the_scipy_ones(p, q, ordinal, n):
    p, q = np.array(p[:n]) / sum(p[:n]), np.array(q[:n]) / sum(q[:n])
    question = Question("Q", "W1", "text", tuple("abcd"[:n]), tuple(ordinal[:n]))
    wd, tv = Scales([question], 4).distances(np.pad(p, (0, 4 - n))[None], np.pad(q, (0, 4 - n))[None], np.array([0]))
    assert wd[0] == pytest.approx(wasserstein(p, q, tuple(ordinal[:n])), abs=1e-12)
    assert tv[0] == pytest.approx(total_variation(p, q), abs=1e-12)


def test_scores_become_distributions():
    inf = -np.inf
    assert option_distributions(np.array([[0.0, np.log(3), inf]])) == pytest.approx(np.array([[0.25, 0.75, 0]]))
    assert option_distributions(np.array([[1.0, 3.0, inf]]), "counts") == pytest.approx(np.array([[0.25, 0.75, 0]]))
    assert option_distributions(np.array([[0.0, 0.0, inf]]), "counts") == pytest.approx(np.array([[0.5, 0.5, 0]]))


def tiny_survey(people: dict[str, tuple[float, str]], answers: list[tuple[str, str, int]], ordinal=(1.0, 2.0, 3.0)) -> Survey:
    """People (id -> weight, party) answering questions Q1 (and Q2) with option indices."""
    questions = {key: Question(key, "W1", key, ("a", "b", "c"), ordinal) for key in ("Q1", "Q2")}
    respondents = pd.DataFrame({"wave": "W1", "weight": [w for w, _ in people.values()], "PARTY": [p for _, p in people.values()]},
                               index=pd.Index(list(people), name="respondent"))
    responses = pd.DataFrame(answers, columns=["respondent", "question", "option"]).assign(value=lambda f: f["option"] / 2)
    return Survey("tiny", questions, {"PARTY": ("x", "y")}, respondents, responses)


def test_representativeness_total_variation_nulls_and_ceiling_by_hand():
    survey = tiny_survey({"a": (1.0, "x"), "b": (3.0, "x")}, [("a", "Q1", 0), ("b", "Q1", 2)])
    docs = pd.DataFrame({"respondent": ["a", "b"], "question": ["Q1", "Q1"], "target": [0, 2]})
    model = np.array([[1.0, 0, 0], [0, 0, 1.0]])  # mean [0.5, 0, 0.5]; humans, weighted 1:3, [0.25, 0, 0.75]
    population = {"Q1": np.array([0.25, 0, 0.75])}
    (everyone,) = alignment(docs, model, survey, population)  # two people: too few for a trait group
    assert everyone["group"] == "everyone" and everyone["n_people"] == 2 and everyone["n_questions"] == 1
    assert everyone["rep"] == pytest.approx(1 - 0.5 / 2) and everyone["tv"] == pytest.approx(0.25)
    # uniform: CDFs [1/3, 2/3] vs [1/4, 1/4] -> (1/12 + 5/12) / 2; TV (1/12 + 1/3 + 5/12) / 2
    assert everyone["rep_uniform"] == pytest.approx(0.75) and everyone["tv_uniform"] == pytest.approx(5 / 12)
    assert everyone["rep_population"] == pytest.approx(1.0) and everyone["tv_population"] == pytest.approx(0.0)
    # halves of one person each: option 0 against option 2, whatever the draw
    assert everyone["rep_ceiling"] == pytest.approx(0.0) and everyone["tv_ceiling"] == pytest.approx(1.0)


def test_weighted_accuracy_and_subgroup_disparity():
    people = {f"x{i}": (1.0, "x") for i in range(10)} | {f"y{i}": (3.0, "y") for i in range(10)}
    survey = tiny_survey(people, [(p, "Q1", 0) for p in people])
    ids = pd.Series(list(people))
    correct = np.array([True] * 10 + [True, False] * 5)  # x: 100%, y: 50%
    assert weighted_macro_accuracy(per_person_accuracy(ids, correct), survey) == pytest.approx((10 * 1.0 + 30 * 0.5) / 40)
    party = disparity(per_person_accuracy(ids, correct), survey)["PARTY"]
    assert party["best"] == "x" and party["worst"] == "y" and party["gap"] == pytest.approx(0.5)
    assert party["groups"]["y"]["n_people"] == 10 and party["gap_ci95"][0] < 0.5 < party["gap_ci95"][1]


def test_a_run_finished_before_group_figures_gets_the_same_ones_from_its_samples(tmp_path):
    import json

    from persona_bench import evaluate
    from persona_bench.harness.runs.config import RunConfig

    config = RunConfig(method="majority", data="demo:300", max_eval_people=60)
    first = evaluate(config, tmp_path, log=lambda _: None)
    assert first.groups[0]["group"] == "everyone" and 0 < first.groups[0]["rep"] <= 1
    path = tmp_path / first.run_id / "results.json"
    older = {k: v for k, v in first.as_dict().items() if k not in ("groups", "disparity", "weighted_accuracy", "schema_version", "metrics")}
    path.write_text(json.dumps(older))
    again = evaluate(config, tmp_path, log=lambda _: None)
    pd.testing.assert_frame_equal(pd.DataFrame(again.groups), pd.DataFrame(first.groups), rtol=1e-5)  # samples keep 6 decimals
    assert again.weighted_accuracy == pytest.approx(first.weighted_accuracy) and again.disparity == first.disparity
    assert json.loads(path.read_text())["groups"] == again.groups



def test_a_run_of_an_older_layout_gets_todays_metrics_and_answer_positions_from_its_samples(tmp_path):
    import json

    from persona_bench import evaluate
    from persona_bench.harness.runs.config import RunConfig
    from persona_bench.harness.runs.record import SCHEMA_VERSION

    config = RunConfig(method="majority", data="demo:300", max_eval_people=60)
    first = evaluate(config, tmp_path, log=lambda _: None)
    path = tmp_path / first.run_id / "results.json"
    schema_2 = {**first.as_dict(), "schema_version": 2, "metrics": {"brier": {"value": 0.9, "ci95": [0.8, 1.0]}}}
    path.write_text(json.dumps({k: v for k, v in schema_2.items() if k != "answer_positions"}))
    again = evaluate(config, tmp_path, log=lambda _: None)
    assert set(again.metrics) == set(first.metrics) and again.metrics["brier"].value == pytest.approx(first.metrics["brier"].value)
    assert again.answer_positions == first.answer_positions and again.schema_version == SCHEMA_VERSION
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION


def test_refreshing_a_cyclic_run_keeps_the_answer_positions_its_rotations_gave(tmp_path):
    """Merged samples (one row per doc) cannot rebuild the per-rotation answer positions."""
    import json

    from persona_bench import evaluate
    from persona_bench.harness.runs.config import RunConfig

    config = RunConfig(method="letter-prior", data="demo:300", max_eval_people=60, option_order="cyclic")
    first = evaluate(config, tmp_path, log=lambda _: None)
    path = tmp_path / first.run_id / "results.json"
    path.write_text(json.dumps({**first.as_dict(), "schema_version": 2}))
    again = evaluate(config, tmp_path, log=lambda _: None)
    assert again.answer_positions == first.answer_positions and again.accuracy == first.accuracy


def test_a_nominal_question_counts_for_total_variation_only():
    nominal = Question("N", "W1", "why", ("a", "b", "c"), (1.0, 1.0, 1.0))
    ordered = Question("O", "W1", "how much", ("a", "b", "c"), (1.0, 2.0, 3.0))
    p, q = np.array([[1.0, 0, 0], [1.0, 0, 0]]), np.array([[0, 0, 1.0], [0, 1.0, 0]])
    rep, tv = rep_tv(Scales([nominal, ordered], 3), p, q, np.array([0, 1]))
    assert rep == pytest.approx(1 - 0.5) and tv == pytest.approx(1.0)
    assert rep_tv(Scales([nominal], 3), p[:1], q[:1], np.array([0])) == (None, pytest.approx(1.0))


def test_steerability_table_shows_every_method_per_value_of_the_steered_trait(tmp_path):
    from persona_bench import evaluate
    from persona_bench.harness.runs.config import RunConfig
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.groups import group_tables

    majority = evaluate(RunConfig(method="majority", data="demo:300", max_eval_people=60), tmp_path, log=lambda _: None)
    steered = majority.with_fields(run_id="steered", config=replace(majority.config, method="steer-test"), options={"trait": "POLPARTY"})
    tables = {t.title.split(" — ")[0]: t for t in group_tables(results_frame([majority, steered]))}
    assert "Steerability toward SEX groups" not in tables  # only the trait a run steers toward
    table = tables["Steerability toward POLPARTY groups"].frame.set_index("method")
    held = {g["group"].split("=")[1]: g for g in majority.groups if g["group"].startswith("POLPARTY=")}
    assert list(table.columns) == list(held) and len(held) >= 2
    assert list(table.index) == ["majority", "steer-test", "human split-half ceiling", "uniform null", "population null"]
    for value, group in held.items():
        assert table.loc["majority", value] == f"{group['rep']:.3f}" == table.loc["steer-test", value]
        assert table.loc["human split-half ceiling", value] == f"{group['rep_ceiling']:.3f}"
