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

A doc whose ``prompt_texts`` is ``paper`` (``--prompt-texts paper``) is written in the paper's own words
(Figure 4): the question, "Please respond solely with A/B/C/D:", the options; the demographics
prompt opens "A person can be described as follows:" with the traits as ``AGE: 65+`` lines and
asks "Based on the above demographic information, which answer choice will this person select for
the question:"; the context prompt opens "The person has the following opinions:" and asks "Based
on the above list of opinions, ...". The figure's line breaks are lost in the paper's text; here
each option and each trait is a line of its own.
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
    return "\n".join([f"Question: {question}", *lettered(options)])


def lettered(options: list[str]) -> list[str]:
    """One ``A. option`` line per option."""
    return [f"{letter}. {option}" for letter, option in zip(LETTERS, options)]


def paper_question_block(question: str, options: list[str]) -> str:
    """The paper's question (Figure 4): its text, the instruction to answer with a letter, the options."""
    return "\n".join([question, f"Please respond solely with {'/'.join(letters(len(options)))}:", *lettered(options)])


def in_paper_style(doc: dict) -> bool:
    """Whether ``doc`` asks for the paper's prompt texts."""
    return doc.get("prompt_texts") == "paper"


def raw_prompt(doc: dict) -> str:
    """Raw Q: the question and its lettered options."""
    if in_paper_style(doc):
        return paper_question_block(doc["question"], doc["options"])
    return question_block(doc["question"], doc["options"])


def demographics_prompt(doc: dict) -> str:
    """Demographics + Raw Q: the person's known traits, then the question."""
    known = {k: v for k, v in doc["traits"].items() if v not in NON_VALUES}
    if in_paper_style(doc):
        traits = "\n".join(f"{k}: {v}" for k, v in known.items())
        return (f"A person can be described as follows:\n\n{traits}\n\nBased on the above demographic information, which answer "
                f"choice will this person select for the question:\n{raw_prompt(doc)}")
    traits = [f"{TRAIT_NAMES.get(k, k.title())}: {v}" for k, v in known.items()]
    header = "Answer the following question as a person with these characteristics would.\n" + "\n".join(traits)
    return f"{header}\n\n{raw_prompt(doc)}"


def context_prompt(doc: dict) -> str:
    """Context + Raw Q: the person's K most similar earlier answers, then the question."""
    if in_paper_style(doc):
        shown = ["\n".join([c["question"], *lettered(c["options"]), f"{ANSWER_PREFIX} {LETTERS[c['answer']]}"]) for c in doc["context"]]
        return ("The person has the following opinions:\n\n" + "\n\n".join(shown) + "\n\nBased on the above list of opinions, "
                f"which answer choice will this person select for the question:\n{raw_prompt(doc)}")
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


def styled(fields: list[dict] | None, n: int, texts: str) -> list[dict] | None:
    """Per doc of ``n``, its ``fields`` asking for the prompt ``texts`` (``default`` leaves them as they are)."""
    if texts == "default":
        return fields
    return [{**(fields[i] if fields else {}), "prompt_texts": texts} for i in range(n)]


PROMPTS = {  # task name -> prompt builder, as the task YAML files reference them
    "opinionqa_persona_raw": raw_prompt,
    "opinionqa_persona_demographics": demographics_prompt,
    "opinionqa_persona_context": context_prompt,
    "opinionqa_persona_steered": steered_prompt,
}
