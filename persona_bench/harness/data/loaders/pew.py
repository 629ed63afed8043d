"""Loader for raw Pew American Trends Panel waves (SPSS files), converted with OpinionQA metadata.

    PATH/<any folder>/ATP W26.sav                  e.g. pew_raw/W26_Apr17/ATP W26.sav
    METADATA/human_resp/American_Trends_Panel_W26/{info.csv, metadata.csv}
    METADATA/topic_mapping.json                    (optional: coarse topic per question)

``METADATA`` is an OpinionQA folder (default: ``opinionqa`` beside ``PATH``). Every info.csv
question that is a column of the .sav is converted with its ``option_mapping`` (Pew code ->
answer label): codes mapped to "Refused" are non-answers, empty cells were not asked. The
traits metadata.csv lists are derived from Pew's ``F_*`` variables through their value labels
(see ``TRAIT_VARIABLES``). Respondent ids are ``W26:QKEY`` and weights come from ``WEIGHT_W26``,
as in the OpinionQA loader, so a wave loads to the same Survey from either layout.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd
import pyreadstat

from ..survey import REFUSED, Question, Survey, SurveyError
from .model_input import with_question_sets
from .opinionqa import (
    answers_from_labels,
    combine_waves,
    parse_literal,
    pick_waves,
    read_csv_checked,
    read_info,
    read_metadata,
    respondent_table,
    topics_of,
    wave_dirs,
)

SAV_NAME = re.compile(r"^ATP (W\d+)\.sav$")

# Pew variable stems per trait; a wave names each stem bare or with one of VARIABLE_SUFFIXES.
TRAIT_VARIABLES = {
    "CREGION": ("F_CREGION",),
    "AGE": ("F_AGECAT",),
    "SEX": ("F_SEX",),
    "EDUCATION": ("F_EDUCCAT2",),
    "CITIZEN": ("F_CITIZEN", "F_CITIZEN_RECODE"),
    "MARITAL": ("F_MARITAL",),
    "RELIG": ("F_RELIG",),
    "RELIGATTEND": ("F_ATTEND",),
    "POLPARTY": ("F_PARTY",),
    "INCOME": ("F_INCOME",),
    "POLIDEOLOGY": ("F_IDEO",),
    "RACE": ("F_RACECMB",),
}
VARIABLE_SUFFIXES = ("", "_FINAL", "_RECRUITMENT")
HISPANIC_VARIABLE = "F_HISP"

# Pew labels (after clean_label) that OpinionQA spells differently.
LABEL_ALIASES = {
    "CITIZEN": {"US Citizen": "Yes", "Not US Citizen": "No"},
    "EDUCATION": {"College graduate/some post grad": "College graduate/some postgrad"},
    "RELIG": {"Something else": "Other", "Something else, Specify": "Other"},
    "POLPARTY": {"Something else": "Other"},
    "RACE": {
        "Black or African American": "Black",
        "Black or African-American": "Black",
        "Asian or Asian-American": "Asian",
        "Or some other race": "Other",
    },
}
# Pew labels OpinionQA's responses keep although metadata.csv does not list them.
EXTRA_LABELS = {
    "MARITAL": ("Living with a partner",),
    "RELIG": ("Christian", "Unitarian"),
    "RACE": ("Mixed Race",),
}
# Traits whose don't-know/refused answers OpinionQA leaves empty (the others say "Refused").
BLANK_NON_ANSWERS = {"CREGION", "AGE", "SEX", "EDUCATION"}
NON_ANSWER = re.compile(r"refused|don't know|^dk\b", re.IGNORECASE)
# Races that stay as they are for Hispanic respondents; the rest become "Hispanic".
RACES_BEFORE_ETHNICITY = ("White", "Black", "Asian")
INCOME_BRACKETS = (
    (30_000, "Less than $30,000"),
    (50_000, "$30,000-$50,000"),
    (75_000, "$50,000-$75,000"),
    (100_000, "$75,000-$100,000"),
    (math.inf, "$100,000 or more"),
)


def sav_files(path: Path) -> dict[str, Path]:
    """Map wave name (``W26``) to its ``<folder>/ATP W26.sav`` under ``path``."""
    if not path.is_dir():
        raise SurveyError(f"{path}: no such folder")
    found: dict[str, Path] = {}
    for file in sorted(path.glob("*/ATP W*.sav")):
        if not (match := SAV_NAME.match(file.name)):
            continue
        wave = match.group(1)
        if wave in found:
            raise SurveyError(f"{path}: wave {wave} has two files, {found[wave]} and {file}")
        found[wave] = file
    if not found:
        raise SurveyError(f"{path}: no '<folder>/ATP W*.sav' files (expected Pew's American Trends Panel layout)")
    return dict(sorted(found.items(), key=lambda item: int(item[0][1:])))


def read_sav(path: Path) -> tuple[pd.DataFrame, dict[str, dict]]:
    """The .sav's data (numeric codes) and its value labels per variable."""
    try:
        frame, meta = pyreadstat.read_sav(str(path))
    except (pyreadstat.PyreadstatError, pyreadstat.ReadstatError, OSError) as exc:
        raise SurveyError(f"{path}: unreadable SPSS file ({exc})") from None
    return frame, meta.variable_value_labels


def read_option_mappings(path: Path, questions: dict[str, Question]) -> dict[str, dict[float, str]]:
    """Each question's ``option_mapping`` (Pew code -> one of its options or "Refused")."""
    frame = read_csv_checked(path, ["key", "option_mapping"])
    mappings: dict[str, dict[float, str]] = {}
    for row_number, row in enumerate(frame.itertuples(index=False), start=2):
        where = f"{path}, row {row_number} ({row.key}), column option_mapping"
        mapping = parse_literal(row.option_mapping, where, dict)
        known = (*questions[str(row.key)].options, REFUSED)
        for code, label in mapping.items():
            if not isinstance(code, (int, float)) or label not in known:
                raise SurveyError(f"{where}: entry {code!r}: {label!r} needs a numeric code and one of {known}")
        mappings[str(row.key)] = {float(code): label for code, label in mapping.items()}
    return mappings


def find_variable(columns: pd.Index, stems: tuple[str, ...], trait: str, source: Path) -> str:
    """The first of ``stems`` (bare or with a VARIABLE_SUFFIXES suffix) that is a column."""
    for stem in stems:
        for suffix in VARIABLE_SUFFIXES:
            if stem + suffix in columns:
                return stem + suffix
    tried = ", ".join(stem + suffix for stem in stems for suffix in VARIABLE_SUFFIXES)
    raise SurveyError(f"{source}: no variable for trait {trait} (tried {tried})")


def clean_label(label: str) -> str:
    """A Pew value label without notes in parentheses (even cut-off ones) and with plain quotes."""
    text = re.sub(r"\s*\([^)]*(\)|$)", "", label.replace("\u2019", "'"))
    return " ".join(text.split())


def income_bracket(label: str) -> str | None:
    """OpinionQA's income bracket for a Pew income label, or None when it straddles brackets."""
    amounts = [float(a.replace(",", "")) for a in re.findall(r"\$([\d,]+)", label)]
    if not amounts:
        return None
    if "or more" in label.lower():
        return next(name for upper, name in INCOME_BRACKETS if amounts[0] < upper)
    brackets = {next(name for upper, name in INCOME_BRACKETS if amounts[-1] <= upper)}
    if len(amounts) > 1:
        brackets.add(next(name for upper, name in INCOME_BRACKETS if amounts[0] < upper))
    return brackets.pop() if len(brackets) == 1 else None


def trait_label(trait: str, pew_label: str, options: tuple[str, ...]) -> str | None:
    """OpinionQA's label of ``trait`` for a Pew value label, or None when there is none."""
    label = clean_label(pew_label)
    if NON_ANSWER.search(label):
        return "" if trait in BLANK_NON_ANSWERS else REFUSED
    if trait == "INCOME":
        return income_bracket(label)
    if label in LABEL_ALIASES.get(trait, {}):
        return LABEL_ALIASES[trait][label]
    return label if label in (*options, *EXTRA_LABELS.get(trait, ())) else None


def show(value: object) -> str:
    """A .sav cell as SPSS shows it: ``3`` rather than ``np.float64(3.0)``."""
    return f"{value:g}" if isinstance(value, (int, float)) else repr(value)


def first_row(mask: pd.Series, qkeys: pd.Series) -> str:
    """``row N (QKEY k)`` for the first true entry of ``mask`` (rows count from 1)."""
    row = int(mask.to_numpy().nonzero()[0][0])
    return f"row {row + 1} (QKEY {show(qkeys.iloc[row])})"


def trait_column(
    frame: pd.DataFrame, value_labels: dict[str, dict], trait: str, options: tuple[str, ...], source: Path
) -> pd.Series:
    """One trait's OpinionQA labels per respondent ("" where Pew has no value)."""
    if trait not in TRAIT_VARIABLES:
        known = ", ".join(TRAIT_VARIABLES)
        raise SurveyError(f"{source}: no Pew variable known for metadata.csv trait {trait} (known: {known})")
    variable = find_variable(frame.columns, TRAIT_VARIABLES[trait], trait, source)
    pew_labels = value_labels.get(variable, {})
    codes = frame[variable]
    labels = codes.map({code: trait_label(trait, text, options) for code, text in pew_labels.items()})
    unknown = codes.notna() & labels.isna()
    if unknown.any():
        code = codes[unknown].iloc[0]
        raise SurveyError(
            f"{source}, {first_row(unknown, frame['QKEY'])}, column {variable}: code {show(code)} "
            f"({pew_labels.get(code, 'no value label')!r}) has no OpinionQA {trait} label"
        )
    labels = labels.fillna("")
    if trait == "RACE":
        hispanic = is_hispanic(frame, value_labels, source) & ~labels.isin(RACES_BEFORE_ETHNICITY)
        labels = labels.mask(hispanic, "Hispanic")
    return labels


def is_hispanic(frame: pd.DataFrame, value_labels: dict[str, dict], source: Path) -> pd.Series:
    """Whether each respondent answered "Yes" to Pew's Hispanic-origin question."""
    variable = find_variable(frame.columns, (HISPANIC_VARIABLE,), "RACE", source)
    yes = [code for code, text in value_labels.get(variable, {}).items() if clean_label(text) == "Yes"]
    return frame[variable].isin(yes)


def answer_labels(codes: pd.Series, mapping: dict[float, str], key: str, qkeys: pd.Series, source: Path) -> pd.Series:
    """A question's Pew codes as answer labels (NaN where not asked); unknown codes are an error."""
    labels = codes.map(mapping)
    unknown = codes.notna() & labels.isna()
    if unknown.any():
        raise SurveyError(
            f"{source}, {first_row(unknown, qkeys)}, column {key}: code {show(codes[unknown].iloc[0])} "
            f"is not in info.csv option_mapping {mapping}"
        )
    return labels


def respondent_ids(frame: pd.DataFrame, wave: str, weight_column: str, source: Path) -> list[str]:
    """``W26:QKEY`` per row; QKEY must be an integer and the weight a number."""
    missing = [c for c in ("QKEY", weight_column) if c not in frame.columns]
    if missing:
        raise SurveyError(f"{source}: missing variable(s) {', '.join(missing)}")
    qkeys = pd.to_numeric(frame["QKEY"], errors="coerce")
    bad = qkeys.isna() | (qkeys.round() != qkeys)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise SurveyError(
            f"{source}, row {row + 1}, column QKEY: {show(frame['QKEY'].iloc[row])} is not an integer id"
        )
    no_weight = pd.to_numeric(frame[weight_column], errors="coerce").isna()
    if no_weight.any():
        row = first_row(no_weight, frame["QKEY"])
        raise SurveyError(f"{source}, {row}, column {weight_column}: weight is not a number")
    return [f"{wave}:{int(k)}" for k in qkeys]


def load_wave(
    sav: Path, wave: str, meta_dir: Path, topics: dict[str, str]
) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Questions, traits, respondents and responses of one .sav, converted with ``meta_dir``'s CSVs."""
    questions = read_info(meta_dir / "info.csv", wave, topics)
    mappings = read_option_mappings(meta_dir / "info.csv", questions)
    traits = read_metadata(meta_dir / "metadata.csv")
    frame, value_labels = read_sav(sav)
    weight_column = f"WEIGHT_{wave}"
    ids = respondent_ids(frame, wave, weight_column, sav)
    asked = {k: q for k, q in questions.items() if k in frame.columns}
    table = pd.DataFrame({k: answer_labels(frame[k], mappings[k], k, frame["QKEY"], sav) for k in asked})
    table[weight_column] = frame[weight_column]
    for trait, options in traits.items():
        table[trait] = trait_column(frame, value_labels, trait, options, sav)
    people = respondent_table(table, ids, wave, weight_column, list(traits), str(sav))
    answers = answers_from_labels(table, asked, ids, str(sav))
    return asked, traits, people, answers


def wave_metadata(metadata: Path, waves: list[str]) -> dict[str, Path]:
    """Each wave's OpinionQA folder under ``metadata``; it must hold info.csv and metadata.csv."""
    if not metadata.is_dir():
        raise SurveyError(f"{metadata}: no OpinionQA metadata folder (needed to convert Pew waves: pass --metadata PATH, the OpinionQA folder with each wave's info.csv and metadata.csv)")
    folders = wave_dirs(metadata)
    for wave in waves:
        for name in ("info.csv", "metadata.csv"):
            if wave not in folders or not (folders[wave] / name).is_file():
                expected = f"American_Trends_Panel_{wave}/{name}"
                raise SurveyError(f"{metadata}: no {name} for wave {wave} (expected {expected})")
    return {wave: folders[wave] for wave in waves}


def load_pew(path: str | Path, waves: list[str] | None = None, metadata: str | Path | None = None) -> Survey:
    """Load every Pew wave under ``path`` (or just ``waves``) into one Survey, using ``metadata``."""
    path = Path(path)
    files = sav_files(path)
    if waves:
        files = pick_waves(files, waves, f"{path}: no .sav file for wave(s)")
    metadata = Path(metadata) if metadata is not None else path.parent / "opinionqa"
    folders = wave_metadata(metadata, list(files))
    topics = topics_of(metadata)
    loaded = ((folders[wave] / "metadata.csv", load_wave(sav, wave, folders[wave], topics)) for wave, sav in files.items())
    return with_question_sets(combine_waves(f"pew:{path}", loaded), metadata)
