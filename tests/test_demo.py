"""The embedded demo survey: deterministic, realistic shape, planted structure."""
from __future__ import annotations

import pandas as pd

from persona_bench.harness.data.loaders import load_survey
from persona_bench.harness.data.loaders.demo import generate_demo


def test_default_demo_shape():
    survey = load_survey("demo")
    assert len(survey.respondents) == 2000
    assert len(survey.questions) == 60
    assert len(survey.traits) == 12
    assert len({q.topic for q in survey.questions.values()}) >= 8
    share = len(survey.responses) / (2000 * 60)
    assert 0.55 < share < 0.75  # form splits: a third to everyone, the rest to half the sample


def test_demo_is_deterministic(demo_survey):
    again = generate_demo.__wrapped__(n_people=600).survey
    pd.testing.assert_frame_equal(again.responses, demo_survey.responses)
    pd.testing.assert_frame_equal(again.respondents, demo_survey.respondents)


def test_form_splits_and_non_answers(demo_survey):
    per_question = demo_survey.responses.groupby("question").size()
    assert per_question.max() > 1.6 * per_question.min()
    assert (demo_survey.respondents["POLPARTY"] == "Refused").any()
    nominal = [q for q in demo_survey.questions.values() if list(q.ordinal) != sorted(q.ordinal)]
    assert nominal  # some options are listed out of ordinal order, as in real waves


def test_camps_depend_on_but_are_not_determined_by_party(demo_truth):
    table = pd.crosstab(demo_truth.survey.respondents["POLPARTY"], demo_truth.camps, normalize="index")
    assert table.loc["Republican"].max() < 0.9 and table.loc["Democrat"].max() < 0.9
    assert (table.loc["Republican"] - table.loc["Democrat"]).abs().max() > 0.3
