"""The OpinionQA loader on a tiny hand-written layout (good and bad input) and on the real data."""
from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from persona_bench.harness.data.loaders import load_survey
from persona_bench.harness.data.survey import SurveyError

INFO = """\
,Unnamed: 0,key,option_mapping,question,references,option_ordinal
0,0,DANGER_W9,"{1.0: 'Safer', 2.0: 'More dangerous', 3.0: 'Neither', 99.0: 'Refused'}",Compared to 50 years ago?,"['Safer', 'More dangerous', 'Neither', 'Refused']","[1.0, 2.0, 1.5]"
1,1,TRUST_W9,"{1.0: 'A lot', 2.0: 'Some', 99.0: 'Refused'}",Trust?,"['A lot', 'Some', 'Refused']","[1.0, 2.0]"
"""
METADATA = """\
,key,options
0,SEX,"['Male', 'Female']"
1,POLPARTY,"['Republican', 'Democrat']"
"""
RESPONSES = """\
QKEY,DANGER_W9,TRUST_W9,WEIGHT_W9,SEX,POLPARTY
11,Safer,A lot,0.5,Male,Democrat
12,Neither,,1.5,Female,Refused
13,Refused,Some,1.0,,Republican
"""


def write_wave(root: Path, wave: str = "W9", info: str = INFO, metadata: str = METADATA, responses: str | None = RESPONSES, gz: bool = False) -> Path:
    folder = root / "human_resp" / f"American_Trends_Panel_{wave}"
    folder.mkdir(parents=True)
    (folder / "info.csv").write_text(info.replace("_W9", f"_{wave}"))
    (folder / "metadata.csv").write_text(metadata)
    if responses is not None:
        text = responses.replace("_W9", f"_{wave}")
        if gz:
            (folder / "responses.csv.gz").write_bytes(gzip.compress(text.encode()))
        else:
            (folder / "responses.csv").write_text(text)
    return folder


def test_loads_options_ordinals_traits_and_drops_refused(tmp_path):
    write_wave(tmp_path)
    survey = load_survey(f"opinionqa:{tmp_path}")
    danger = survey.questions["DANGER_W9"]
    assert danger.options == ("Safer", "More dangerous", "Neither")
    assert danger.values == (0.0, 1.0, 0.5)  # from option_ordinal, not list position
    answers = survey.responses.set_index(["respondent", "question"])
    assert answers.loc[("W9:12", "DANGER_W9"), "value"] == pytest.approx(0.5)
    assert ("W9:13", "DANGER_W9") not in answers.index  # Refused is a non-answer
    assert ("W9:12", "TRUST_W9") not in answers.index  # empty = not asked
    assert len(survey.responses) == 4
    people = survey.respondents
    assert list(survey.traits) == ["SEX", "POLPARTY"]
    assert people.loc["W9:13", "SEX"] == "" and people.loc["W9:12", "POLPARTY"] == "Refused"
    assert people.loc["W9:12", "weight"] == 1.5


def test_accepts_gzip_and_the_human_resp_folder_itself(tmp_path):
    write_wave(tmp_path, gz=True)
    survey = load_survey(f"opinionqa:{tmp_path / 'human_resp'}")
    assert len(survey.responses) == 4


def test_selects_waves_and_skips_waves_without_responses(tmp_path):
    write_wave(tmp_path, "W9")
    write_wave(tmp_path, "W10")
    write_wave(tmp_path, "W11", responses=None)
    assert load_survey(f"opinionqa:{tmp_path}").waves == ["W9", "W10"]
    assert load_survey(f"opinionqa:{tmp_path}", ["W10"]).waves == ["W10"]
    with pytest.raises(SurveyError, match="W11 has no responses.csv"):
        load_survey(f"opinionqa:{tmp_path}", ["W11"])
    with pytest.raises(SurveyError, match="no wave folder for W99"):
        load_survey(f"opinionqa:{tmp_path}", ["W99"])


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(responses=RESPONSES.replace("Neither", "Maybe")), r"responses.csv, row 3, column DANGER_W9: unknown answer label 'Maybe'"),
        (dict(responses=RESPONSES.replace("WEIGHT_W9", "W")), r"responses.csv: missing column\(s\) WEIGHT_W9"),
        (dict(responses=RESPONSES.replace(",POLPARTY", ",PARTY")), r"missing column\(s\) POLPARTY"),
        (dict(responses=RESPONSES.replace("0.5,Male", "heavy,Male")), r"row 2, column WEIGHT_W9: weight is not a number"),
        (dict(info=INFO.replace('"[1.0, 2.0]"', '"[1.0, 2.0"')), r"info.csv, row 3 \(TRUST_W9\), column option_ordinal: cannot parse"),
        (dict(info=INFO.replace('"[1.0, 2.0, 1.5]"', '"[1.0, 2.0]"')), r"row 2 \(DANGER_W9\): 3 non-Refused options but 2 option_ordinal"),
        (dict(info=INFO.replace("option_ordinal", "ordinal")), r"info.csv: missing column\(s\) option_ordinal"),
        (dict(responses=RESPONSES.replace("TRUST_W9,", "TRUST_W9,EXTRA_W9,").replace("A lot,", "A lot,x,")), r"EXTRA_W9 are not questions"),
        (dict(responses=RESPONSES.replace("12,", "11,")), r"duplicate respondent id 'W9:11'"),
    ],
)
def test_bad_input_names_file_row_and_column(tmp_path, change, message):
    write_wave(tmp_path, **change)
    with pytest.raises(SurveyError, match=message):
        load_survey(f"opinionqa:{tmp_path}")


def test_bad_data_specs():
    with pytest.raises(SurveyError, match="unknown kind 'csv'"):
        load_survey("csv:/x")
    with pytest.raises(SurveyError, match="expected opinionqa:PATH"):
        load_survey("opinionqa")
    with pytest.raises(SurveyError, match="no such folder"):
        load_survey("opinionqa:/definitely/not/here")
    with pytest.raises(SurveyError, match="no wave W26"):
        load_survey("demo", ["W26"])


def test_real_waves_w26_and_w41(opinionqa_path):
    survey = load_survey(f"opinionqa:{opinionqa_path}")
    summary = survey.summary().set_index("wave")
    assert summary.loc["W26", "people"] == 4168 and summary.loc["W26", "questions"] == 78
    assert summary.loc["W41", "people"] == 2524 and summary.loc["W41", "questions"] == 90
    assert len(survey.traits) == 12
    assert survey.questions["WORLDDANGER_W26"].values == (0.0, 1.0, 0.5)
    assert all(q.topic != "other" for q in survey.questions.values())
