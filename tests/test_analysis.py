"""Cluster persona analysis (Sec. 4.2): hand-computed shares and TV, planted skew, written files."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_bench.harness.personas.analysis import (
    POPULATION,
    answer_distributions,
    cell,
    cluster_composition,
    cluster_distinctive_questions,
    distribution_text,
    question_disagreement,
    topic_disagreement,
    topic_summary,
    total_variation,
    write_analysis,
)
from persona_bench.harness.core.errors import ConfigError
from persona_bench.harness.personas.space import elbow_curve, fit_personas, kmeans, pick_elbow
from persona_bench.harness.data.survey import Question, Survey, responses_frame

PEOPLE = ["p1", "p2", "p3", "p4", "p5"]
LABELS = np.array([0, 0, 1, 1, 1])


@pytest.fixture(scope="module")
def tiny() -> Survey:
    """Five analysed people (clusters 0,0,1,1,1) plus p6, who is not analysed and must not count."""
    questions = {
        "Q1": Question("Q1", "W1", "Agree?", ("Yes", "No"), (1.0, 2.0), "alpha"),
        "Q2": Question("Q2", "W1", "How much?", ("Low", "Mid", "High"), (1.0, 2.0, 3.0), "beta"),
    }
    respondents = pd.DataFrame(
        {
            "wave": "W1",
            "weight": [1.0, 3.0, 2.0, 2.0, 2.0, 10.0],
            "POLPARTY": ["Republican", "Democrat", "Democrat", "", "Refused", "Republican"],
        },
        index=pd.Index([*PEOPLE, "p6"], name="respondent"),
    )
    answers = [("p1", "Q1", 0), ("p2", "Q1", 1), ("p3", "Q1", 1), ("p4", "Q1", 0), ("p6", "Q1", 0),
               ("p1", "Q2", 0), ("p2", "Q2", 2), ("p3", "Q2", 1), ("p5", "Q2", 2), ("p6", "Q2", 0)]
    who, question, option = (list(column) for column in zip(*answers))
    values = [questions[q].values[o] for q, o in zip(question, option)]
    traits = {"POLPARTY": ("Republican", "Democrat")}
    return Survey("tiny", questions, traits, respondents, responses_frame(who, question, option, values))


def test_total_variation_is_half_the_l1_distance():
    assert total_variation([1, 0], [0, 1]) == 1.0
    assert total_variation([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert total_variation([0.25, 0.0, 0.75], [0.0, 0.5, 0.5]) == pytest.approx(0.5)
    rows = total_variation(np.array([[1, 0], [0.5, 0.5]]), np.array([[0, 1], [0.25, 0.75]]))
    np.testing.assert_allclose(rows, [1.0, 0.25])


def test_weighted_answer_distributions_by_hand(tiny):
    clusters = answer_distributions(tiny, PEOPLE, LABELS)
    np.testing.assert_allclose(clusters.shares.loc[(0, "Q1")].to_numpy(), [0.25, 0.75, 0.0])  # Q1 has 2 options: padded
    np.testing.assert_allclose(clusters.shares.loc[(1, "Q1")].to_numpy(), [0.5, 0.5, 0.0])
    np.testing.assert_allclose(clusters.shares.loc[(0, "Q2")].to_numpy(), [0.25, 0.0, 0.75])
    np.testing.assert_allclose(clusters.shares.loc[(1, "Q2")].to_numpy(), [0.0, 0.5, 0.5])
    assert clusters.counts.loc[(1, "Q1")] == 2
    population = answer_distributions(tiny, PEOPLE)  # p6 (weight 10) is not among the people
    np.testing.assert_allclose(population.shares.loc[(POPULATION, "Q1")].to_numpy(), [3 / 8, 5 / 8, 0.0])
    np.testing.assert_allclose(population.shares.loc[(POPULATION, "Q2")].to_numpy(), [1 / 8, 2 / 8, 5 / 8])


def test_composition_shares_by_hand(tiny):
    table = cluster_composition(tiny, PEOPLE, LABELS).set_index(["value", "cluster"])
    # cluster 1: p4's empty value is missing, Refused is a value; population over known values (weight 8)
    expected = {
        ("Republican", 0): (0.25, 1 / 8), ("Democrat", 0): (0.75, 5 / 8), ("Refused", 0): (0.0, 2 / 8),
        ("Republican", 1): (0.0, 1 / 8), ("Democrat", 1): (0.5, 5 / 8), ("Refused", 1): (0.5, 2 / 8),
    }
    assert list(dict.fromkeys(table.index.get_level_values("value"))) == ["Republican", "Democrat", "Refused"]
    for key, (cluster_share, population_share) in expected.items():
        row = table.loc[key]
        assert (row["cluster_share"], row["population_share"]) == pytest.approx((cluster_share, population_share))
        assert row["difference"] == pytest.approx(cluster_share - population_share)


def test_distinctive_questions_and_minimum_answers(tiny):
    table = cluster_distinctive_questions(tiny, PEOPLE, LABELS, top=2, min_answers=1)
    first = table[table["cluster"] == 0]
    assert list(first["question"]) == ["Q2", "Q1"]
    assert list(first["tv"]) == pytest.approx([0.25, 0.125])
    assert list(first["cluster_answer"]) == ["High", "No"]
    assert list(first["population_answer"]) == ["High", "No"]
    assert distribution_text(tiny, "Q2", first["cluster_shares"].iloc[0]) == "Low: 25.0%, Mid: 0.0%, High: 75.0%"  # p1 (weight 1), p2 (3)
    assert cluster_distinctive_questions(tiny, PEOPLE, LABELS, min_answers=3).empty


def test_topic_disagreement_by_hand(tiny):
    per_question = question_disagreement(tiny, PEOPLE, LABELS, min_answers=1)
    assert list(per_question["question"]) == ["Q2", "Q1"]
    assert list(per_question["tv_ave"]) == pytest.approx([0.5, 0.25])
    summary = topic_summary(topic_disagreement(tiny, PEOPLE, LABELS, min_answers=1))
    assert list(summary["topic"]) == ["beta", "alpha"]
    assert list(summary["tv_ave"]) == pytest.approx([0.5, 0.25])
    assert question_disagreement(tiny, PEOPLE, LABELS, min_answers=3).empty


def test_bad_inputs_are_clear_errors(tiny):
    with pytest.raises(ConfigError, match="labels"):
        cluster_composition(tiny, PEOPLE, LABELS[:3])
    with pytest.raises(ConfigError, match="unknown trait"):
        cluster_composition(tiny, PEOPLE, LABELS, traits=["NOPE"])
    assert cell("a | b\n c", width=100) == "a \\| b c"


def test_planted_camps_show_their_party_skew(demo_truth):
    survey, camps = demo_truth.survey, demo_truth.camps
    table = cluster_composition(survey, camps.index, camps.to_numpy(), traits=["POLPARTY"])
    share = table.set_index(["value", "cluster"])
    population = share.xs(0, level="cluster")["population_share"]
    for camp in (0, 1):  # religious conservatives, economic populists: the right
        assert share.loc[("Republican", camp), "cluster_share"] > population["Republican"] + 0.15
        assert share.loc[("Democrat", camp), "cluster_share"] < population["Democrat"] / 2
    for camp in (2, 3):  # educated and young progressives: the left
        assert share.loc[("Democrat", camp), "cluster_share"] > population["Democrat"] + 0.15
        assert share.loc[("Republican", camp), "cluster_share"] < population["Republican"] / 2
    totals = table.groupby("cluster")["cluster_share"].sum()
    np.testing.assert_allclose(totals.to_numpy(), 1.0)


def test_demo_distributions_and_topics_are_consistent(demo_truth):
    survey, camps = demo_truth.survey, demo_truth.camps
    population = answer_distributions(survey, camps.index)
    np.testing.assert_allclose(population.shares.sum(axis=1).to_numpy(), 1.0)
    assert population.counts.sum() == len(survey.responses)
    table = topic_disagreement(survey, camps.index, camps.to_numpy(), top=2)
    assert table.groupby("topic").size().max() <= 2
    assert table["topic_tv_ave"].is_monotonic_decreasing
    means = question_disagreement(survey, camps.index, camps.to_numpy()).groupby("topic")["tv_ave"].mean()
    summary = topic_summary(table).set_index("topic")
    np.testing.assert_allclose(summary["tv_ave"].to_numpy(), means.reindex(summary.index).to_numpy())


def test_write_analysis_writes_every_table_and_figure_of_the_paper(demo_survey, demo_split, tmp_path):
    space = fit_personas(demo_survey, demo_split)
    labels = kmeans(space.vectors, 4).labels
    curve = elbow_curve(space, demo_split, ks=(1, 2, 3, 4, 5, 6))
    paths = write_analysis(demo_survey, space.people, labels, tmp_path / "analysis", elbow=(curve, pick_elbow(curve)))
    names = sorted(p.name for p in paths)
    expected = [f"composition_{t}.png" for t in demo_survey.traits]  # Figures 2 and 3: every trait, RACE included
    assert "composition_RACE.png" in expected and len(expected) == 12
    assert names == sorted(["analysis.md", "topic_disagreement.png", "elbow.png", *expected])
    markdown = (tmp_path / "analysis" / "analysis.md").read_text()
    for heading in ("## Clusters", f"## Elbow: k = {pick_elbow(curve)}", "## Composition: RACE", "## Cluster 3 vs. the overall population",
                    "## Disagreement between clusters per topic", "## Most contested questions per topic"):
        assert heading in markdown
    # Tables 1, 12-16: a cluster's top 3 questions with both full distributions
    cluster_0 = markdown.split("## Cluster 0 vs. the overall population")[1].split("## ")[0]
    rows = [line for line in cluster_0.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == 3 and all(row.count("%") >= 4 for row in rows)
    # Tables 2, 17, 18: each cluster's modal answer and share beside TV_ave
    contested = markdown.split("## Most contested questions per topic")[1]
    assert "| cluster 3 " in contested.splitlines()[4] and "%)" in contested
    for path in paths[1:]:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in (tmp_path / "analysis").iterdir() if p.name.endswith(".tmp")]


def test_personas_analyze_writes_the_paper_analyses_and_no_per_person_file(tmp_path, monkeypatch, capsys):
    from persona_bench.app.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["personas", "analyze", "--data", "demo:600", "--k", "4"]) == 0  # --out defaults to personas-analysis
    written = sorted(p.name for p in (tmp_path / "personas-analysis").iterdir())
    assert "analysis.md" in written and "elbow.png" in written and "composition_RACE.png" in written
    assert not [name for name in written if name.startswith("split")], "a published analysis names no person"
    out = capsys.readouterr().out
    assert "wrote personas-analysis/analysis.md" in out
