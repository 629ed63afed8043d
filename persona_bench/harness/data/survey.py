"""The survey data model every loader produces and every other module reads.

A :class:`Survey` holds

* ``questions``: :class:`Question` objects (key, wave, text, answer options without
  "Refused", the ordinal position of each option and its value in [0, 1], topic);
* ``respondents``: a DataFrame indexed by respondent id with ``wave``, ``weight`` and one
  column per demographic trait (missing trait values are empty strings);
* ``question_sets``: named subsets of question keys the data defines (OpinionQA: ``disagreement``);
* ``steering_contexts``: the group steering texts the data defines, per style, each read when
  first asked for (OpinionQA's ``qa``, ``bio``, ``portray``: (trait, value) -> text);
* ``responses``: a long DataFrame with one row per answer: ``respondent``, ``question``,
  ``option`` (index into ``Question.options``) and ``value`` (that option's value in [0, 1]).

"Refused" is never an option: it is a non-answer and loaders drop it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from ..core.errors import SurveyError

REFUSED = "Refused"
RESPONSE_COLUMNS = ("respondent", "question", "option", "value")


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``options`` never contains "Refused"."""

    key: str
    wave: str
    text: str
    options: tuple[str, ...]
    ordinal: tuple[float, ...]
    topic: str = "other"

    def __post_init__(self) -> None:
        if len(self.options) < 2:
            raise SurveyError(f"question {self.key}: needs at least two answer options, got {self.options}")
        if len(self.ordinal) != len(self.options):
            raise SurveyError(
                f"question {self.key}: {len(self.options)} options but {len(self.ordinal)} ordinal values"
            )
        if REFUSED in self.options:
            raise SurveyError(f"question {self.key}: '{REFUSED}' is a non-answer, not an option")

    @property
    def nominal(self) -> bool:
        """Whether the options have no order (OpinionQA gives them one ordinal position, e.g. IMPREASONGUN_W26)."""
        return min(self.ordinal) == max(self.ordinal)

    @property
    def values(self) -> tuple[float, ...]:
        """Each option's position on the question's ordinal scale, mapped to [0, 1] (0.5 each for a nominal question)."""
        if self.nominal:
            return tuple(0.5 for _ in self.ordinal)
        low, high = min(self.ordinal), max(self.ordinal)
        return tuple((o - low) / (high - low) for o in self.ordinal)

    def with_options_text(self) -> str:
        """The question followed by its options in brackets, as OpinionQA writes it."""
        return f"{self.text} [{'/'.join(self.options)}]"


@dataclass
class Survey:
    """Questions, respondents and their answers (see module docstring)."""

    name: str
    questions: dict[str, Question]
    traits: dict[str, tuple[str, ...]]
    respondents: pd.DataFrame
    responses: pd.DataFrame
    question_sets: dict[str, frozenset[str]] = field(default_factory=dict)  # named subsets, e.g. disagreement
    steering_contexts: dict[str, Callable[[], dict[tuple[str, str], str]]] = field(default_factory=dict)  # style -> reader
    _question_values: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check that responses point at known people, questions and options."""
        missing = [c for c in RESPONSE_COLUMNS if c not in self.responses.columns]
        if missing:
            raise SurveyError(f"survey {self.name}: responses lack columns {missing}")
        for column in ("wave", "weight", *self.traits):
            if column not in self.respondents.columns:
                raise SurveyError(f"survey {self.name}: respondents lack column '{column}'")
        unknown_people = ~self.responses["respondent"].isin(self.respondents.index)
        if unknown_people.any():
            bad = self.responses.loc[unknown_people, "respondent"].iloc[0]
            raise SurveyError(f"survey {self.name}: response from unknown respondent '{bad}'")
        unknown_questions = ~self.responses["question"].isin(list(self.questions))
        if unknown_questions.any():
            bad = self.responses.loc[unknown_questions, "question"].iloc[0]
            raise SurveyError(f"survey {self.name}: response to unknown question '{bad}'")
        n_options = self.responses["question"].map({k: len(q.options) for k, q in self.questions.items()}).astype(float)
        out_of_range = (self.responses["option"] < 0) | (self.responses["option"] >= n_options)
        if out_of_range.any():
            row = self.responses[out_of_range].iloc[0]
            raise SurveyError(
                f"survey {self.name}: option index {row['option']} out of range for question {row['question']}"
            )

    # ----------------------------------------------------------------- views
    @property
    def waves(self) -> list[str]:
        """Waves in the order they appear among the questions."""
        return list(dict.fromkeys(q.wave for q in self.questions.values()))

    def option_values(self, key: str) -> np.ndarray:
        """The [0, 1] values of a question's options, as an array (cached)."""
        if key not in self._question_values:
            self._question_values[key] = np.asarray(self.questions[key].values, dtype=float)
        return self._question_values[key]

    def select_waves(self, waves: list[str] | None) -> "Survey":
        """The same survey restricted to ``waves`` (None keeps all); unknown waves are an error."""
        if not waves:
            return self
        unknown = sorted(set(waves) - set(self.waves))
        if unknown:
            raise SurveyError(f"survey {self.name}: no wave {', '.join(unknown)} (has {', '.join(self.waves)})")
        keep_people = self.respondents["wave"].isin(waves)
        questions = {k: q for k, q in self.questions.items() if q.wave in waves}
        responses = self.responses[self.responses["question"].isin(list(questions))].reset_index(drop=True)
        subsets = {name: keys & frozenset(questions) for name, keys in self.question_sets.items()}
        return Survey(self.name, questions, self.traits, self.respondents[keep_people], responses, {n: k for n, k in subsets.items() if k},
                      self.steering_contexts)

    def panel(self, first: str, then: str) -> "Survey":
        """The panelists who answered both waves, each one respondent ``FIRST+THEN:QKEY`` holding
        their answers to both (ids are ``WAVE:QKEY``: Pew's panelist key is shared across waves);
        traits, weight and wave come from the later wave ``then``, on which they are scored."""
        if first == then:
            raise SurveyError(f"a panel needs two different waves, got {first} twice")
        people = self.respondents.assign(qkey=[str(i).partition(":")[2] for i in self.respondents.index])
        earlier, later = people[people["wave"] == first], people[people["wave"] == then]
        shared = set(earlier["qkey"]) & set(later["qkey"])
        if not shared:
            raise SurveyError(f"survey {self.name}: no panelist answered both {first} and {then} (respondent ids WAVE:QKEY)")
        linked = {old: f"{first}+{then}:{qkey}" for frame in (earlier, later) for old, qkey in frame["qkey"].items() if qkey in set(shared)}
        respondents = later[later["qkey"].isin(shared)].drop(columns="qkey").rename(index=linked)
        responses = self.responses[self.responses["respondent"].isin(list(linked))].assign(
            respondent=lambda f: f["respondent"].map(linked)).reset_index(drop=True)
        questions = {k: q for k, q in self.questions.items() if q.wave in (first, then)}
        subsets = {name: keys & frozenset(questions) for name, keys in self.question_sets.items()}
        return Survey(f"{self.name} panel {first}->{then}", questions, self.traits, respondents, responses, {n: k for n, k in subsets.items() if k},
                      self.steering_contexts)

    def summary(self) -> pd.DataFrame:
        """People, questions and answers per wave, plus a total row."""
        answers = self.responses.merge(self.respondents[["wave"]], left_on="respondent", right_index=True)
        rows = []
        for wave in self.waves:
            n_people = int((self.respondents["wave"] == wave).sum())
            n_questions = sum(q.wave == wave for q in self.questions.values())
            n_answers = int((answers["wave"] == wave).sum())
            rows.append((wave, n_people, n_questions, n_answers))
        table = pd.DataFrame(rows, columns=["wave", "people", "questions", "answers"])
        cells = table["people"] * table["questions"]  # a wave's people were asked only its questions
        table.loc[len(table)] = ("total", len(self.respondents), len(self.questions), len(self.responses))
        table["answered share"] = (table["answers"] / pd.concat([cells, pd.Series([cells.sum()])], ignore_index=True).where(lambda c: c > 0)).round(3)
        return table


def responses_frame(respondent: list[str], question: list[str], option: list[int], values: list[float]) -> pd.DataFrame:
    """Build a responses table with the canonical column names and dtypes."""
    return pd.DataFrame(
        {
            "respondent": pd.Series(respondent, dtype=str),
            "question": pd.Series(question, dtype=str),
            "option": pd.Series(option, dtype=np.int16),
            "value": pd.Series(values, dtype=np.float32),
        }
    )
