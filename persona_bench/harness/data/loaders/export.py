"""Write a Survey in the OpinionQA layout that ``opinionqa:PATH`` reads (the template for
bringing another survey to persona-bench; ``persona-bench data example DIR`` writes one).

    PATH/human_resp/American_Trends_Panel_W1/
        info.csv        key, question, references (options + "Refused", a Python list literal),
                        option_mapping (code -> label, a dict literal), option_ordinal (list literal)
        metadata.csv    key, options: each demographic trait and its values
        responses.csv   QKEY, one column per question key (the answer's label; empty: not asked),
                        WEIGHT_W1 (survey weight), one column per trait
    PATH/topic_mapping.json   "question [opt/opt/...]" -> coarse topics (optional)
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from ...core.atomic import atomic_write_text
from ..survey import REFUSED, Survey

REFUSED_CODE = 99.0
WAVE_NAME = re.compile(r"^W\d+$")


def wave_name(wave: str, number: int) -> str:
    """An OpinionQA wave name: ``wave`` itself where it is one (``W26``), else ``W<number>``."""
    return wave if WAVE_NAME.match(wave) else f"W{number}"


def write_opinionqa(survey: Survey, path: Path) -> list[Path]:
    """Write ``survey`` under ``path`` in the OpinionQA layout; return the files written.

    Waves not named like ``W26`` become ``W1``, ``W2``, ...; a question key gets the wave's
    suffix (``_W1``) where it lacks one, as OpinionQA's keys have.
    """
    written, topics = [], []
    waves = list(dict.fromkeys(q.wave for q in survey.questions.values()))
    for number, wave in enumerate(waves, start=1):
        name = wave_name(wave, number)
        folder = path / "human_resp" / f"American_Trends_Panel_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        questions = [q for q in survey.questions.values() if q.wave == wave]
        keys = {q.key: q.key if q.key.endswith(f"_{name}") else f"{q.key}_{name}" for q in questions}
        info = pd.DataFrame({
            "key": [keys[q.key] for q in questions],
            "question": [q.text for q in questions],
            "references": [repr([*q.options, REFUSED]) for q in questions],
            "option_mapping": [repr({**{float(i + 1): o for i, o in enumerate(q.options)}, REFUSED_CODE: REFUSED}) for q in questions],
            "option_ordinal": [repr(list(q.ordinal)) for q in questions],
        })
        metadata = pd.DataFrame({"key": list(survey.traits), "options": [repr(list(v)) for v in survey.traits.values()]})
        people = survey.respondents[survey.respondents["wave"] == wave]
        answers = survey.responses[survey.responses["question"].isin(keys)]
        labels = {q.key: q.options for q in questions}
        answers = answers.assign(label=[labels[k][o] for k, o in zip(answers["question"], answers["option"])])
        wide = answers.pivot(index="respondent", columns="question", values="label").reindex(people.index)
        responses = pd.DataFrame({"QKEY": [str(r).split(":", 1)[-1] for r in people.index]})
        for question in questions:
            responses[keys[question.key]] = wide[question.key].to_numpy() if question.key in wide else None
        responses[f"WEIGHT_{name}"] = people["weight"].to_numpy()
        for trait in survey.traits:
            responses[trait] = people[trait].to_numpy()
        for file, frame in (("info.csv", info), ("metadata.csv", metadata), ("responses.csv", responses)):
            atomic_write_text(folder / file, frame.to_csv(index=False))
            written.append(folder / file)
        topics += [{"question_with_options": f"{q.text} [{'/'.join([*q.options, REFUSED])}]", "coarse_topics": [q.topic]} for q in questions]
    atomic_write_text(path / "topic_mapping.json", json.dumps(topics, indent=1))
    return [*written, path / "topic_mapping.json"]
