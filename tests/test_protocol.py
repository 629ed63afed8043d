"""Split invariants: disjoint people, per-person answer splits, fold-in caps, persistence."""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest

from persona_bench.harness.data.loaders.demo import generate_demo
from persona_bench.harness.data.protocol import Split, SplitConfig, make_split, scored_docs
from persona_bench.harness.data.survey import SurveyError


def test_people_are_split_per_wave_and_disjoint(demo_split, demo_survey):
    train, evaluation = set(demo_split.people("train")), set(demo_split.people("eval"))
    assert not train & evaluation
    assert train | evaluation == set(demo_survey.responses["respondent"])
    assert len(train) == pytest.approx(0.8 * len(train | evaluation), abs=2)


def test_each_person_keeps_about_a_fifth_of_answers_for_scoring(demo_split):
    answers = demo_split.answers
    per_person = answers.groupby("respondent")["part"].apply(lambda p: (p == "eval").mean())
    assert per_person.mean() == pytest.approx(0.2, abs=0.02)
    counts = answers.groupby("respondent").size()
    has_eval = answers[answers["part"] == "eval"].groupby("respondent").size()
    assert (has_eval.reindex(counts[counts >= 2].index) >= 1).all()


def test_learners_see_only_train_people_train_answers(demo_split):
    train = demo_split.train_answers()
    assert set(train["respondent"]) <= set(demo_split.people("train"))
    seen = demo_split.scored_answers("seen")
    unseen = demo_split.scored_answers("unseen")
    keys = lambda f: set(zip(f["respondent"], f["question"]))  # noqa: E731
    assert not keys(train) & keys(seen)
    assert not keys(train) & keys(unseen)
    assert set(unseen["respondent"]) <= set(demo_split.people("eval"))


def test_fold_in_reveals_the_first_k_and_is_capped(demo_split):
    unseen_scored = demo_split.scored_answers("unseen")
    for k in (1, 5, 100):
        revealed = demo_split.fold_in_answers(k)
        sizes = revealed.groupby("respondent").size()
        assert sizes.max() <= k
        assert not set(zip(revealed["respondent"], revealed["question"])) & set(
            zip(unseen_scored["respondent"], unseen_scored["question"])
        )
    five, one = demo_split.fold_in_answers(5), demo_split.fold_in_answers(1)
    assert set(zip(one["respondent"], one["question"])) <= set(zip(five["respondent"], five["question"]))
    everything = demo_split.answers.query("group == 'eval' and part == 'train'").groupby("respondent").size()
    assert (demo_split.fold_in_answers(100).groupby("respondent").size() == everything).all()
    with pytest.raises(ValueError):
        demo_split.fold_in_answers(0)


def test_split_is_seeded(demo_survey, demo_split):
    pd.testing.assert_frame_equal(make_split(demo_survey).answers, demo_split.answers)
    other = make_split(demo_survey, SplitConfig(seed=1))
    assert other.people("train") != demo_split.people("train")


def test_save_and_reload(tmp_path, demo_survey, demo_split):
    demo_split.save(tmp_path)
    again = Split.load(tmp_path, demo_survey)
    pd.testing.assert_frame_equal(again.answers, demo_split.answers)
    assert again.config == demo_split.config
    other_survey = generate_demo(n_people=300).survey
    with pytest.raises(SurveyError, match="made from other data"):
        Split.load(tmp_path, other_survey)


def test_scored_docs_are_the_held_out_answers(demo_survey, demo_split):
    docs = scored_docs(demo_survey, demo_split, "seen")
    assert len(docs) == len(demo_split.scored_answers("seen"))
    answers = demo_survey.responses.set_index(["respondent", "question"])["option"]
    assert (docs["target"].to_numpy() == answers.loc[list(zip(docs["respondent"], docs["question"]))].to_numpy()).all()
    subset = scored_docs(demo_survey, demo_split, "unseen", max_people=10, seed=3)
    assert subset["respondent"].nunique() == 10
    assert subset.equals(scored_docs(demo_survey, demo_split, "unseen", max_people=10, seed=3))


def test_config_rejects_bad_shares():
    with pytest.raises(ValueError, match="people_train"):
        SplitConfig(people_train=1.0)
    assert dataclasses.asdict(SplitConfig()) == {"seed": 0, "people_train": 0.8, "answers_train": 0.8, "protocol": "answers", "target_wave": ""}


def test_heldout_questions_split_the_questions_not_the_answers(demo_survey):
    from persona_bench.harness.data.protocol import SplitConfig, make_split

    split = make_split(demo_survey, SplitConfig(seed=3, protocol="heldout-questions"))
    train_questions = set(split.train_answers()["question"])
    eval_questions = set(split.scored_answers("seen")["question"]) | set(split.scored_answers("unseen")["question"])
    assert train_questions.isdisjoint(eval_questions) and len(eval_questions) == round(0.2 * len(demo_survey.questions))
    # every answer to an eval question is scored (seen or unseen people), none is learned from or folded in
    answered = demo_survey.responses[demo_survey.responses["question"].isin(eval_questions)]
    assert len(split.scored_answers("seen")) + len(split.scored_answers("unseen")) == len(answered)
    assert set(split.fold_in_answers(5)["question"]).isdisjoint(eval_questions)
    again = make_split(demo_survey, SplitConfig(seed=3, protocol="heldout-questions"))
    pd.testing.assert_frame_equal(split.answers, again.answers)


def test_heldout_questions_run_with_its_own_reference_and_a_clear_refusal(tiny_model_path, tmp_path, capsys):
    import json

    from persona_bench.app.cli import main

    runs = tmp_path / "runs"
    common = ["--data", "demo:300", "--max-eval-people", "10", "--protocol", "heldout-questions", "--out", str(runs)]
    assert main(["run", "--method", "majority", *common]) == 2
    assert "cannot score under --protocol heldout-questions" in capsys.readouterr().err
    assert main(["run", "--method", "context", "--model", str(tiny_model_path), *common]) == 0
    results = {r["method"]: r for r in (json.loads(p.read_text()) for p in runs.glob("*/results.json"))}
    assert set(results) == {"context", "raw", "question-knn", "letter-prior"}
    assert all(r["protocol"] == "heldout-questions" for r in results.values()) and results["question-knn"]["accuracy"] > 0
    assert main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "L.md")]) == 0
    board = (tmp_path / "L.md").read_text()
    assert "protocol heldout-questions" in board and "question-knn" in board


def two_wave_survey():
    """Panelists 1 and 2 answered W1 and W2; 3 only W1, 4 only W2."""
    from persona_bench.harness.data.survey import Question, Survey

    questions = {f"Q{i}_{w}": Question(f"Q{i}_{w}", w, "text", ("a", "b"), (1.0, 2.0)) for w in ("W1", "W2") for i in (1, 2)}
    people = {"W1:1": "W1", "W1:2": "W1", "W1:3": "W1", "W2:1": "W2", "W2:2": "W2", "W2:4": "W2"}
    respondents = pd.DataFrame({"wave": list(people.values()), "weight": [1.0, 1, 1, 2, 2, 2], "PARTY": ["x", "y", "x", "x2", "y2", "y"]},
                               index=pd.Index(list(people), name="respondent"))
    answers = [(p, q, 1) for p, w in people.items() for q in questions if q.endswith(w)]
    responses = pd.DataFrame(answers, columns=["respondent", "question", "option"]).assign(value=1.0)
    return Survey("two", questions, {"PARTY": ("x", "y")}, respondents, responses)


def test_a_panel_links_the_people_of_two_waves_by_their_panelist_key():
    panel = two_wave_survey().panel("W1", "W2")
    assert list(panel.respondents.index) == ["W1+W2:1", "W1+W2:2"]
    assert list(panel.respondents["PARTY"]) == ["x2", "y2"] and list(panel.respondents["weight"]) == [2.0, 2.0]  # the later wave's
    assert panel.responses.groupby("respondent").size().to_dict() == {"W1+W2:1": 4, "W1+W2:2": 4}
    with pytest.raises(SurveyError, match="no panelist answered both"):
        two_wave_survey().select_waves(["W1"]).panel("W1", "W2")


def test_cross_wave_scores_eval_panelists_on_the_later_wave_from_the_earlier_one():
    panel = two_wave_survey().panel("W1", "W2")
    split = make_split(panel, SplitConfig(seed=1, people_train=0.5, protocol="cross-wave", target_wave="W2"))
    (learner,), (scored,) = split.people("train"), split.people("eval")
    assert set(split.train_answers()["respondent"]) == {learner} and len(split.train_answers()) == 4  # both waves
    assert set(split.scored_answers("unseen")["question"]) == {"Q1_W2", "Q2_W2"}
    assert set(split.fold_in_answers(None)["question"]) == {"Q1_W1", "Q2_W1"} and set(split.fold_in_answers(None)["respondent"]) == {scored}
    with pytest.raises(ValueError, match="names the wave"):
        SplitConfig(protocol="cross-wave")


def test_cross_wave_arguments_are_checked_before_any_work(tmp_path, capsys):
    from persona_bench.app.cli import main

    assert main(["run", "--method", "majority", "--protocol", "cross-wave", "--from", "W26", "--out", str(tmp_path)]) == 2
    assert "goes with --from WAVE --to WAVE" in capsys.readouterr().err
    assert main(["run", "--method", "majority", "--protocol", "cross-wave", "--from", "W26", "--to", "W26", "--out", str(tmp_path)]) == 2
    assert "two different waves" in capsys.readouterr().err
    assert main(["run", "--method", "majority", "--protocol", "cross-wave", "--from", "W1", "--to", "W2", "--out", str(tmp_path)]) == 2
    assert "no wave W1, W2" in capsys.readouterr().err  # the demo has one wave
