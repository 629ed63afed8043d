"""``group-prompt``: steer the frozen LM toward the person's group with OpinionQA's own steering
contexts (Santurkar et al. 2023: ``steer-qa``, ``steer-bio``, ``steer-portray``), read from the
data folder's ``model_input`` (never copied into the repository).

A person is prompted with the context of their value of ``--trait`` (e.g. POLPARTY=Democrat),
then the question; a value OpinionQA wrote no context for (e.g. "Other", "Refused") gets the Raw
Q prompt, and results.json counts those docs. Scored like every method (macro accuracy), its
group-level figures (representativeness of each steered group, on all questions and on the
disagreement questions) sit beside the persona methods' in the leaderboard's group tables:
Santurkar's steerability, comparable with persona steering on the same groups and questions.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..harness.context import RunContext
from ..harness.errors import ConfigError
from ..harness.loaders.model_input import STEERING_STYLES, steering_contexts
from ..harness.method import register_method
from .prompting import PromptMethod


@register_method
class GroupPrompt(PromptMethod):
    name = "group-prompt"
    description = "OpinionQA's steering context for the person's group (trait value), then the question"
    task = "opinionqa_persona_steered"
    unsteered_docs: int | None = None  # docs of people whose group has no steering context (set when scoring)

    @dataclass(frozen=True)
    class Options(PromptMethod.Options):
        trait: str = "POLPARTY"  # the trait whose groups are steered toward
        style: str = "portray"  # qa | bio | portray (OpinionQA's steer-*.csv)

    @classmethod
    def check(cls, options: "GroupPrompt.Options") -> None:
        if options.style not in STEERING_STYLES:
            raise ConfigError(f"--style {options.style!r}: choose from {', '.join(STEERING_STYLES)}")

    def contexts(self, context: RunContext) -> dict[str, str]:
        """The trait's value -> steering text."""
        kind, _, path = context.config.data.partition(":")
        if kind != "opinionqa":
            raise ConfigError(f"group-prompt reads OpinionQA's model_input/steer-{self.options.style}.csv: use --data opinionqa:PATH")
        if self.options.trait not in context.survey.traits:
            raise ConfigError(f"--trait {self.options.trait}: unknown trait (known: {', '.join(context.survey.traits)})")
        texts = {value: text for (trait, value), text in steering_contexts(Path(path), self.options.style).items() if trait == self.options.trait}
        if not texts:
            raise ConfigError(f"--trait {self.options.trait}: OpinionQA has no {self.options.style} steering context for it")
        return texts

    def doc_fields(self, docs: pd.DataFrame, context: RunContext) -> list[dict]:
        texts = self.contexts(context)
        values = context.survey.respondents.loc[docs["respondent"], self.options.trait]
        self.unsteered_docs = int((~values.isin(list(texts))).sum())
        return [{"steer": texts.get(value, "")} for value in values]

    def report(self) -> dict:
        return {"unsteered_docs": self.unsteered_docs}
