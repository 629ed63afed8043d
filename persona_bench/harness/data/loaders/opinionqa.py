"""Loader for the official OpinionQA layout (Santurkar et al. 2023).

    PATH/human_resp/American_Trends_Panel_W26/{info.csv, metadata.csv, responses.csv[.gz]}
    PATH/topic_mapping.json            (optional: coarse topic per question)

``PATH`` may also be the ``human_resp`` folder itself. ``responses.csv`` has one row per
respondent: ``QKEY``, one column per question key holding the answer label exactly as listed
in info.csv ``references`` (empty = not asked), ``WEIGHT_W26`` and the demographic traits that
metadata.csv lists. "Refused" answers are non-answers and are dropped.
"""
from __future__ import annotations

import ast
import json
import re
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..survey import REFUSED, Question, Survey, SurveyError, responses_frame

WAVE_DIR = re.compile(r"^American_Trends_Panel_(W\d+)$")
RESPONSE_FILES = ("responses.csv", "responses.csv.gz")
UNREADABLE = (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, zlib.error)  # a damaged CSV, plain or gzip


def wave_dirs(path: Path) -> dict[str, Path]:
    """Map wave name (``W26``) to its folder under ``path`` (which holds or is ``human_resp``)."""
    root = path / "human_resp" if (path / "human_resp").is_dir() else path
    if not root.is_dir():
        raise SurveyError(f"{path}: no such folder")
    found = {m.group(1): d for d in sorted(root.iterdir()) if (m := WAVE_DIR.match(d.name)) and d.is_dir()}
    if not found:
        raise SurveyError(f"{root}: no American_Trends_Panel_W* folders (expected the OpinionQA human_resp layout)")
    return dict(sorted(found.items(), key=lambda item: int(item[0][1:])))


def responses_file(wave_dir: Path) -> Path | None:
    """The wave's responses file (.csv or .csv.gz), or None when it has none."""
    for name in RESPONSE_FILES:
        if (wave_dir / name).is_file():
            return wave_dir / name
    return None


def parse_literal(text: object, where: str, kind: type) -> object:
    """Parse a Python literal from a CSV cell with ``ast.literal_eval`` (never ``eval``)."""
    try:
        value = ast.literal_eval(str(text))
    except (ValueError, SyntaxError) as exc:
        raise SurveyError(f"{where}: cannot parse {str(text)[:80]!r} as a {kind.__name__} literal ({exc})") from None
    if not isinstance(value, kind):
        raise SurveyError(f"{where}: expected a {kind.__name__} literal, got {type(value).__name__}")
    return value


def read_csv_checked(path: Path, required: list[str], unique: str | None = None, allow_no_rows: bool = False, **kwargs) -> pd.DataFrame:
    """Read a CSV (plain or gzip) that must have ``required`` columns and at least one row (unless
    ``allow_no_rows``), and
    no repeated value in column ``unique``; fail with one line naming the file (and row) otherwise.
    Every damaged file (empty, header only, truncated, not UTF-8, not CSV) ends here, not in a
    traceback further on."""
    try:
        frame = pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError:
        raise SurveyError(f"{path}: empty file (no header, no rows)") from None
    except UNREADABLE as exc:
        raise SurveyError(f"{path}: unreadable CSV ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'damaged'})") from None
    try:  # the header as written (pandas renames a repeated column KEY.1, and one question's answers would vanish)
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    except UNREADABLE as exc:
        raise SurveyError(f"{path}: unreadable CSV header ({type(exc).__name__})") from None
    first: dict[str, int] = {}
    for position, name in enumerate(header, start=1):
        if name in first and name != "":
            raise SurveyError(f"{path}: column {name!r} appears twice (columns {first[name]} and {position})")
        first.setdefault(name, position)
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise SurveyError(f"{path}: missing column(s) {', '.join(missing)}")
    if frame.empty and not allow_no_rows:
        raise SurveyError(f"{path}: a header but no rows")
    if unique is not None:
        keys = frame[unique].astype(str).tolist()
        seen: dict[str, int] = {}
        for row, key in enumerate(keys):
            if key in seen:
                raise SurveyError(f"{path}, row {row + 2}, column {unique}: {frame[unique].iloc[row]!r} repeats row {seen[key] + 2}")
            seen[key] = row
    return frame


def read_topics(path: Path) -> dict[str, str]:
    """Map ``"question [opt/opt/...]"`` to its first coarse topic from topic_mapping.json."""
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())
        return {e["question_with_options"]: (e.get("coarse_topics") or ["other"])[0] for e in entries}
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SurveyError(f"{path}: not an OpinionQA topic mapping ({exc})") from None


def read_info(path: Path, wave: str, topics: dict[str, str] | None = None) -> dict[str, Question]:
    """Questions of one wave from its info.csv (options without "Refused", ordinal from option_ordinal)."""
    frame = read_csv_checked(path, ["key", "question", "references", "option_ordinal"], unique="key")
    questions: dict[str, Question] = {}
    for row_number, row in enumerate(frame.itertuples(index=False), start=2):
        where = f"{path}, row {row_number} ({row.key})"
        references = parse_literal(row.references, f"{where}, column references", list)
        ordinal = parse_literal(row.option_ordinal, f"{where}, column option_ordinal", list)
        options = [str(r) for r in references if r != REFUSED]
        if len(ordinal) != len(options):
            raise SurveyError(
                f"{where}: {len(options)} non-Refused options but {len(ordinal)} option_ordinal values"
            )
        topic_key = f"{row.question} [{'/'.join(str(r) for r in references)}]"
        questions[str(row.key)] = Question(
            key=str(row.key),
            wave=wave,
            text=str(row.question),
            options=tuple(options),
            ordinal=tuple(float(o) for o in ordinal),
            topic=(topics or {}).get(topic_key, "other"),
        )
    return questions


def read_metadata(path: Path) -> dict[str, tuple[str, ...]]:
    """Demographic traits and their listed options from metadata.csv."""
    frame = read_csv_checked(path, ["key", "options"], unique="key", allow_no_rows=True)  # no traits: allowed
    return {
        str(row.key): tuple(str(o) for o in parse_literal(row.options, f"{path}, row {i} ({row.key}), column options", list))
        for i, row in enumerate(frame.itertuples(index=False), start=2)
    }


def answers_from_labels(
    table: pd.DataFrame, questions: dict[str, Question], people: list[str], source: str
) -> pd.DataFrame:
    """Long responses from a wide table of answer labels (one column per question key).

    Empty cells are unanswered, "Refused" is a non-answer; any other label that is not one of
    the question's options is an error naming ``source``, the row and the column.
    """
    respondent, question, option, value = [], [], [], []
    ids = np.asarray(people, dtype=object)
    for key, q in questions.items():
        if key not in table.columns:
            continue
        labels = table[key]
        answered = labels.notna() & (labels.astype(str).str.strip() != "")
        lookup = {label: i for i, label in enumerate(q.options)}
        codes = labels[answered].map(lookup)
        refused = labels[answered] == REFUSED
        unknown = codes.isna() & ~refused
        if unknown.any():
            position = int(np.flatnonzero(answered.to_numpy())[np.flatnonzero(unknown.to_numpy())[0]])
            raise SurveyError(
                f"{source}, row {position + 2}, column {key}: unknown answer label "
                f"{labels.iloc[position]!r} (options: {', '.join(q.options)}, {REFUSED})"
            )
        valid = codes.notna()
        rows = np.flatnonzero(answered.to_numpy())[valid.to_numpy()]
        chosen = codes[valid].to_numpy(dtype=int)
        respondent.extend(ids[rows])
        question.extend([key] * len(rows))
        option.extend(chosen)
        value.extend(np.asarray(q.values)[chosen])
    return responses_frame(respondent, question, option, value)


def respondent_table(
    table: pd.DataFrame, ids: list[str], wave: str, weight_column: str, traits: list[str], source: str
) -> pd.DataFrame:
    """Respondents (index: id) with wave, weight and trait columns from a per-respondent table."""
    weights = pd.to_numeric(table[weight_column], errors="coerce")
    if weights.isna().any():
        row = int(np.flatnonzero(weights.isna().to_numpy())[0])
        raise SurveyError(f"{source}, row {row + 2}, column {weight_column}: weight is not a number")
    values = weights.to_numpy(dtype=float)
    unusable = ~np.isfinite(values) | (values <= 0)
    if unusable.any():
        row = int(np.flatnonzero(unusable)[0])
        raise SurveyError(f"{source}, row {row + 2}, column {weight_column}: weight {table[weight_column].iloc[row]!r} is not a finite positive number")
    people = pd.DataFrame({"wave": wave, "weight": values}, index=pd.Index(ids, name="respondent"))
    for trait in traits:
        people[trait] = table[trait].fillna("").astype(str).to_numpy()
    if people.index.duplicated().any():
        raise SurveyError(f"{source}: duplicate respondent id {people.index[people.index.duplicated()][0]!r}")
    return people


def load_wave(wave_dir: Path, wave: str, topics: dict[str, str]) -> tuple[dict, dict, pd.DataFrame, pd.DataFrame]:
    """Questions, traits, respondents and responses of one wave folder."""
    source = responses_file(wave_dir)
    if source is None:
        raise SurveyError(f"{wave_dir}: wave {wave} has no responses.csv")
    questions = read_info(wave_dir / "info.csv", wave, topics)
    traits = read_metadata(wave_dir / "metadata.csv")
    weight_column = f"WEIGHT_{wave}"
    table = read_csv_checked(source, ["QKEY", weight_column, *traits], dtype=str, keep_default_na=False, na_values=[""])
    extra = [c for c in table.columns if c.endswith(f"_{wave}") and c != weight_column and c not in questions]
    if extra:
        raise SurveyError(f"{source}: column(s) {', '.join(extra[:5])} are not questions in {wave_dir / 'info.csv'}")
    ids = [f"{wave}:{k}" for k in table["QKEY"].astype(str)]
    people = respondent_table(table, ids, wave, weight_column, list(traits), str(source))
    answers = answers_from_labels(table, questions, ids, str(source))
    asked = {k: q for k, q in questions.items() if k in table.columns}
    return asked, traits, people, answers


def load_opinionqa(path: str | Path, waves: list[str] | None = None) -> Survey:
    """Load every wave under ``path`` that has responses (or just ``waves``) into one Survey."""
    path = Path(path)
    folders = wave_dirs(path)
    if waves:
        selected = pick_waves(folders, waves, f"{path}: no wave folder for")
    else:
        selected = {w: d for w, d in folders.items() if responses_file(d) is not None}
        if not selected:
            raise SurveyError(f"{path}: no wave has a responses.csv")
    topics = topics_of(path)
    loaded = ((folder / "metadata.csv", load_wave(folder, wave, topics)) for wave, folder in selected.items())
    return combine_waves(f"opinionqa:{path}", loaded)


def pick_waves(found: dict[str, Path], waves: list[str], missing: str) -> dict[str, Path]:
    """The entries of ``found`` for ``waves``; a SurveyError starting with ``missing`` names the
    waves not found (and those that were)."""
    unknown = [w for w in waves if w not in found]
    if unknown:
        raise SurveyError(f"{missing} {', '.join(unknown)} (found {', '.join(found)})")
    return {w: found[w] for w in waves}


def topics_of(path: Path) -> dict[str, str]:
    """The topic mapping of an OpinionQA folder (``path`` holds or is ``human_resp``)."""
    root = path if (path / "human_resp").is_dir() else path.parent
    return read_topics(root / "topic_mapping.json")


def combine_waves(name: str, loaded: Iterable[tuple[Path, tuple]]) -> Survey:
    """One Survey from each wave's (questions, traits, respondents, responses); traits must agree.

    ``loaded`` yields (the wave's metadata.csv, for error messages; its loaded parts).
    """
    questions: dict[str, Question] = {}
    traits: dict[str, tuple[str, ...]] = {}
    people, answers = [], []
    for metadata_csv, (wave_questions, wave_traits, wave_people, wave_answers) in loaded:
        questions.update(wave_questions)
        traits = traits or wave_traits
        if list(wave_traits) != list(traits):
            raise SurveyError(f"{metadata_csv}: traits {list(wave_traits)} differ from other waves' {list(traits)}")
        if wave_answers.empty:
            raise SurveyError(f"{metadata_csv.parent}: no answers (every answer cell is empty or Refused)")
        people.append(wave_people)
        answers.append(wave_answers)
    return Survey(name, questions, traits, pd.concat(people), pd.concat(answers, ignore_index=True))
