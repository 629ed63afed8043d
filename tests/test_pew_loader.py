"""The raw Pew loader: exact agreement with OpinionQA's responses.csv, and clear bad-input errors."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyreadstat
import pytest

from persona_bench.harness.data.loaders import load_survey
from persona_bench.harness.data.loaders.opinionqa import load_opinionqa
from persona_bench.harness.data.loaders.pew import income_bracket, load_pew, trait_label
from persona_bench.harness.data.survey import SurveyError

from .conftest import SHARED_DATA


INFO_CSV = """\
,key,option_mapping,question,references,option_ordinal
0,Q1_W1,"{1.0: 'Yes', 2.0: 'No', 99.0: 'Refused'}",Do you agree?,"['Yes', 'No', 'Refused']","[1.0, 2.0]"
"""
METADATA_CSV = """\
,key,options
0,SEX,"['Male', 'Female']"
1,POLPARTY,"['Republican', 'Democrat', 'Independent', 'Other']"
"""
VALUE_LABELS = {
    "Q1_W1": {1.0: "Yes", 2.0: "No", 99.0: "Refused"},
    "F_SEX_FINAL": {1.0: "Male", 2.0: "Female", 99.0: "Refused"},
    "F_PARTY_FINAL": {1.0: "Republican", 2.0: "Democrat", 3.0: "Independent", 4.0: "Something else", 99.0: "Refused"},
}


def sav_frame(**columns: list[float]) -> pd.DataFrame:
    """Three respondents of wave W1; keyword arguments replace columns."""
    frame = pd.DataFrame(
        {
            "QKEY": [101.0, 102.0, 103.0],
            "WEIGHT_W1": [0.5, 1.0, 1.5],
            "Q1_W1": [1.0, 99.0, float("nan")],
            "F_SEX_FINAL": [1.0, 2.0, 99.0],
            "F_PARTY_FINAL": [4.0, 1.0, 99.0],
        }
    )
    return frame.assign(**columns)


def write_sav(root: Path, frame: pd.DataFrame, wave: str = "W1") -> Path:
    """``root/pew/<wave>_Jan20/ATP <wave>.sav`` with value labels for the columns it has."""
    folder = root / "pew" / f"{wave}_Jan20"
    folder.mkdir(parents=True)
    labels = {k: v for k, v in VALUE_LABELS.items() if k in frame.columns}
    pyreadstat.write_sav(frame, str(folder / f"ATP {wave}.sav"), variable_value_labels=labels)
    return folder / f"ATP {wave}.sav"


def write_metadata(root: Path, wave: str = "W1") -> Path:
    """A one-question OpinionQA metadata folder ``root/opinionqa`` for ``wave``."""
    folder = root / "opinionqa" / "human_resp" / f"American_Trends_Panel_{wave}"
    folder.mkdir(parents=True)
    (folder / "info.csv").write_text(INFO_CSV)
    (folder / "metadata.csv").write_text(METADATA_CSV)
    return root / "opinionqa"


@pytest.mark.parametrize("wave", ["W26", "W41"])
def test_reproduces_opinionqa_responses_exactly(wave: str) -> None:
    if not (SHARED_DATA / "pew_raw").is_dir() or not (SHARED_DATA / "opinionqa").is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    pew = load_pew(SHARED_DATA / "pew_raw", [wave])
    official = load_opinionqa(SHARED_DATA / "opinionqa", [wave])
    assert pew.questions == official.questions
    assert pew.traits == official.traits
    pd.testing.assert_frame_equal(pew.respondents.sort_index(), official.respondents.sort_index())
    order = ["respondent", "question"]
    pd.testing.assert_frame_equal(
        pew.responses.sort_values(order).reset_index(drop=True),
        official.responses.sort_values(order).reset_index(drop=True),
    )


def test_synthetic_wave(tmp_path: Path) -> None:
    write_sav(tmp_path, sav_frame())
    write_metadata(tmp_path)
    survey = load_survey(f"pew:{tmp_path / 'pew'}")
    people = survey.respondents
    assert list(people.index) == ["W1:101", "W1:102", "W1:103"]
    assert list(people["weight"]) == [0.5, 1.0, 1.5]
    assert list(people["SEX"]) == ["Male", "Female", ""]
    assert list(people["POLPARTY"]) == ["Other", "Republican", "Refused"]
    assert survey.responses[["respondent", "question", "option"]].values.tolist() == [["W1:101", "Q1_W1", 0]]


@pytest.mark.parametrize(
    ("trait", "pew_label", "expected"),
    [
        ("RELIG", "Protestant (for example, Baptist, Methodist, Non-denominational, Refo", "Protestant"),
        ("RELIG", "(VOL) Unitarian (Universalist)", "Unitarian"),
        ("RELIG", "Something else, Specify", "Other"),
        ("EDUCATION", "Associate\u2019s degree", "Associate's degree"),
        ("CITIZEN", "DK US Citizen", "Refused"),
        ("AGE", "DK/REF", ""),
        ("INCOME", "10 to under $20,000", "Less than $30,000"),
        ("RELIG", "Pastafarian", None),
    ],
)
def test_trait_label(trait: str, pew_label: str, expected: str | None) -> None:
    options = ("Protestant", "Other", "Associate's degree", "Yes", "No", "18-29")
    assert trait_label(trait, pew_label, options) == expected


def test_income_bracket() -> None:
    assert income_bracket("$75,000 to less than $100,000") == "$75,000-$100,000"
    assert income_bracket("$150,000 or more") == "$100,000 or more"
    assert income_bracket("$40,000 to less than $60,000") is None


def test_no_sav_files(tmp_path: Path) -> None:
    (tmp_path / "pew" / "empty").mkdir(parents=True)
    with pytest.raises(SurveyError, match=r"no '<folder>/ATP W\*\.sav' files"):
        load_pew(tmp_path / "pew")


def test_requested_wave_without_sav(tmp_path: Path) -> None:
    write_sav(tmp_path, sav_frame())
    with pytest.raises(SurveyError, match=r"no \.sav file for wave\(s\) W2 \(found W1\)"):
        load_pew(tmp_path / "pew", ["W2"], write_metadata(tmp_path))


def test_no_info_csv_for_wave(tmp_path: Path) -> None:
    write_sav(tmp_path, sav_frame())
    metadata = write_metadata(tmp_path, wave="W2")
    with pytest.raises(SurveyError, match=r"no info\.csv for wave W1"):
        load_pew(tmp_path / "pew", metadata=metadata)


def test_code_not_in_option_mapping(tmp_path: Path) -> None:
    sav = write_sav(tmp_path, sav_frame(Q1_W1=[1.0, 3.0, 2.0]))
    write_metadata(tmp_path)
    with pytest.raises(SurveyError, match=r"row 2 \(QKEY 102\), column Q1_W1: code 3 is not in info\.csv") as error:
        load_pew(tmp_path / "pew")
    assert str(sav) in str(error.value)


def test_missing_trait_variable(tmp_path: Path) -> None:
    sav = write_sav(tmp_path, sav_frame().drop(columns="F_SEX_FINAL"))
    write_metadata(tmp_path)
    with pytest.raises(SurveyError, match=r"no variable for trait SEX \(tried F_SEX, F_SEX_FINAL") as error:
        load_pew(tmp_path / "pew")
    assert str(sav) in str(error.value)


def test_trait_code_without_opinionqa_label(tmp_path: Path) -> None:
    write_sav(tmp_path, sav_frame(F_PARTY_FINAL=[1.0, 7.0, 2.0]))
    write_metadata(tmp_path)
    with pytest.raises(SurveyError, match=r"row 2 \(QKEY 102\), column F_PARTY_FINAL: code 7 \('no value label'\)"):
        load_pew(tmp_path / "pew")
