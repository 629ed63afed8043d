"""Prompt formats of the OpinionQA persona tasks (Li et al. 2023, Figure 4).

Every prompt ends with the lettered question; lm-eval appends the task's ``gen_prefix``
("Answer:") and scores each answer letter as the continuation (" A", " B", ...). Raw Q::

    Question: How safe, if at all, would you say your local community is from crime? Would you say it is
    A. Very safe
    B. Somewhat safe
    C. Not too safe
    D. Not at all safe
    Answer: A

Demographics + Raw Q puts the person's traits first; Context + Raw Q puts K of the person's own
earlier answers (most similar questions first) before the question; a group-steered prompt puts
the OpinionQA steering context of the person's group (Santurkar et al. 2023) first.
"""
from __future__ import annotations

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ANSWER_PREFIX = "Answer:"
ANSWER_CUE = "\n" + ANSWER_PREFIX  # ends every scored prompt; the task YAML's gen_prefix repeats it (a test holds them equal)


def scored_prompt(body: str) -> str:
    """A prompt as the language model scores it: ``body`` followed by the answer cue."""
    return body + ANSWER_CUE


TRAIT_NAMES = {
    "CREGION": "Region",
    "AGE": "Age",
    "SEX": "Sex",
    "EDUCATION": "Education",
    "CITIZEN": "US citizen",
    "MARITAL": "Marital status",
    "RELIG": "Religion",
    "RELIGATTEND": "Religious attendance",
    "POLPARTY": "Political party",
    "INCOME": "Income",
    "POLIDEOLOGY": "Political ideology",
    "RACE": "Race",
}
NON_VALUES = ("", "Refused")


def letters(n: int) -> list[str]:
    """The first ``n`` answer letters."""
    return list(LETTERS[:n])


def question_block(question: str, options: list[str]) -> str:
    """``Question: ...`` followed by one lettered line per option."""
    return "\n".join([f"Question: {question}", *(f"{letter}. {option}" for letter, option in zip(LETTERS, options))])


def raw_prompt(doc: dict) -> str:
    """Raw Q: the question and its lettered options."""
    return question_block(doc["question"], doc["options"])


def demographics_prompt(doc: dict) -> str:
    """Demographics + Raw Q: the person's known traits, then the question."""
    traits = [f"{TRAIT_NAMES.get(k, k.title())}: {v}" for k, v in doc["traits"].items() if v not in NON_VALUES]
    header = "Answer the following question as a person with these characteristics would.\n" + "\n".join(traits)
    return f"{header}\n\n{raw_prompt(doc)}"


def context_prompt(doc: dict) -> str:
    """Context + Raw Q: the person's K most similar earlier answers, then the question."""
    shown = [
        f"{question_block(c['question'], c['options'])}\n{ANSWER_PREFIX} {LETTERS[c['answer']]}" for c in doc["context"]
    ]
    header = "Here are your answers to some earlier survey questions.\n\n" + "\n\n".join(shown)
    return f"{header}\n\nAnswer the next question the way you answered those.\n\n{raw_prompt(doc)}"


def group_context(trait: str, value: str, values: list[str], style: str) -> str:
    """A steering context toward the group ``trait = value`` written from the trait's name, in the
    shape of OpinionQA's styles, for data that ships none: ``qa`` (the group's answer to a question
    about the trait), ``bio`` (a first-person statement), ``portray`` (an instruction)."""
    name = TRAIT_NAMES.get(trait, trait.title()).lower()
    if style == "qa":
        return f"{question_block(f'What is your {name}?', values)}\n{ANSWER_PREFIX} {LETTERS[values.index(value)]}"
    if style == "bio":
        return f"My {name} is {value}."
    return f"Answer the following question as if your {name} were {value}."


def steered_prompt(doc: dict) -> str:
    """Group steering + Raw Q: the steering context of the person's group (none: Raw Q alone)."""
    return f"{doc['steer']}\n\n{raw_prompt(doc)}" if doc.get("steer") else raw_prompt(doc)


PROMPTS = {  # task name -> prompt builder, as the task YAML files reference them
    "opinionqa_persona_raw": raw_prompt,
    "opinionqa_persona_demographics": demographics_prompt,
    "opinionqa_persona_context": context_prompt,
    "opinionqa_persona_steered": steered_prompt,
}
