"""OpinionQA's ``model_input`` bundle beside ``human_resp``: the disagreement question set and the
group steering contexts (Santurkar et al. 2023). Read from the data folder, never copied.

    PATH/model_input/Pew_American_Trends_Panel_disagreement_500.csv   (TAB-separated; column key)
    PATH/model_input/steer-{qa,bio,portray}.csv                        (TAB-separated; md = trait, subgroup = value)
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

from ....tasks.prompts import ANSWER_PREFIX, LETTERS, question_block
from ..survey import Survey, SurveyError
from .opinionqa import parse_literal, read_csv_checked

DISAGREEMENT = "Pew_American_Trends_Panel_disagreement_500.csv"
STEERING_STYLES = ("qa", "bio", "portray")


def model_input_dir(path: Path) -> Path:
    """``model_input`` of an OpinionQA folder (``path`` holds or is ``human_resp``)."""
    root = path if (path / "human_resp").is_dir() else path.parent
    return root / "model_input"


def question_sets(path: Path) -> dict[str, frozenset[str]]:
    """Named question subsets the data folder defines (``disagreement``: OpinionQA's 500 questions
    on which groups disagree most); empty when the bundle is absent."""
    source = model_input_dir(path) / DISAGREEMENT
    if not source.is_file():
        return {}
    return {"disagreement": frozenset(read_csv_checked(source, ["key"], sep="\t", dtype=str)["key"])}


def with_question_sets(survey: Survey, path: Path) -> Survey:
    """``survey`` with the question subsets of the OpinionQA folder ``path`` that it asks (empty ones dropped)."""
    kept = {name: keys & frozenset(survey.questions) for name, keys in question_sets(path).items()}
    survey.question_sets = {name: keys for name, keys in kept.items() if keys}
    return survey


def with_bundles(survey: Survey, path: Path) -> Survey:
    """``survey`` with the bundles of the OpinionQA folder ``path``: its question subsets and a
    reader of each steering-context style the folder has."""
    with_question_sets(survey, path)
    survey.steering_contexts = {style: partial(steering_contexts, path, style) for style in STEERING_STYLES
                                if (model_input_dir(path) / f"steer-{style}.csv").is_file()}
    return survey


def steering_contexts(path: Path, style: str) -> dict[tuple[str, str], str]:
    """(trait, value) -> the text that steers a model toward that group, in one of OpinionQA's styles:
    ``qa`` (the group's answer to a question about itself), ``bio`` (a first-person description),
    ``portray`` ("Answer the following question as if ...")."""
    if style not in STEERING_STYLES:
        raise SurveyError(f"steering style {style!r}: choose from {', '.join(STEERING_STYLES)}")
    source = model_input_dir(path) / f"steer-{style}.csv"
    if not source.is_file():
        raise SurveyError(f"{source}: no such file (group steering needs OpinionQA's model_input folder beside human_resp)")
    required = ["question", "md", "subgroup", *(["options", "correct"] if style == "qa" else [])]
    table = read_csv_checked(source, required, sep="\t", dtype=str, keep_default_na=False)
    contexts = {}
    for row, entry in enumerate(table.itertuples(index=False), start=2):
        text = entry.question.strip().strip('"').strip()
        if style == "qa":
            options = parse_literal(entry.options, f"{source}, row {row}, column options", list)
            if entry.correct not in options:
                raise SurveyError(f"{source}, row {row}: answer {entry.correct!r} is not among its options")
            text = f"{question_block(text, options)}\n{ANSWER_PREFIX} {LETTERS[options.index(entry.correct)]}"
        contexts[(entry.md, entry.subgroup)] = text
    return contexts
