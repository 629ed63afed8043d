"""``group-prompt``: steer the frozen LM toward the person's group with OpinionQA's own steering
contexts (Santurkar et al. 2023: ``steer-qa``, ``steer-bio``, ``steer-portray``), which the
``opinionqa`` loader attaches to the Survey from the data folder's ``model_input`` (never copied
into the repository). Data without that bundle (demo, pew) gets contexts of the same three shapes written from the trait's name
(:func:`~persona_bench.tasks.prompts.group_context`); ``--contexts`` picks the source and
results.json records the one used.

A person is prompted with the context of their value of ``--trait`` (e.g. POLPARTY=Democrat),
then the question; a value OpinionQA wrote no context for (e.g. "Other", "Refused") gets the Raw
Q prompt, and results.json counts those docs. Scored like every method (macro accuracy), its
group-level figures (representativeness of each steered group, on all questions and on the
disagreement questions) sit beside the persona methods' in the leaderboard's group tables:
Santurkar's steerability, comparable with persona steering on the same groups and questions.
"""
from __future__ import annotations

from dataclasses import dataclass
import pandas as pd

from ..harness.core.errors import ConfigError
from ..harness.core.options import option
from ..harness.data.loaders.model_input import STEERING_STYLES
from ..harness.method.base import register_method
from ..harness.method.context import RunContext
from ..tasks.prompts import NON_VALUES, group_context
from .prompting import PromptMethod


CONTEXT_SOURCES = ("auto", "opinionqa", "generated")


@register_method
class GroupPrompt(PromptMethod):
    name = "group-prompt"
    description = "OpinionQA's steering context for the person's group (trait value), then the question"
    task = "opinionqa_persona_steered"
    unsteered_docs: int | None = None  # docs of people whose group has no steering context (set when scoring)
    contexts_used: str | None = None  # opinionqa | generated (set when scoring)

    @dataclass(frozen=True)
    class Options(PromptMethod.Options):
        trait: str = option("POLPARTY", "the trait whose groups are steered toward")
        style: str = option("portray", "OpinionQA's steering style (steer-qa, steer-bio, steer-portray)", choices=STEERING_STYLES)
        contexts: str = option("auto", "opinionqa: model_input/steer-*.csv; generated: written from the trait's name; auto: "
                                       "opinionqa where the data has it", choices=CONTEXT_SOURCES)

    def contexts(self, context: RunContext) -> dict[str, str]:
        """The trait's value -> steering text."""
        if self.options.trait not in context.survey.traits:
            raise ConfigError(f"--trait {self.options.trait}: unknown trait (known: {', '.join(context.survey.traits)})")
        bundle = context.survey.steering_contexts.get(self.options.style)
        if self.options.contexts == "opinionqa" and bundle is None:
            raise ConfigError(f"--contexts opinionqa reads model_input/steer-{self.options.style}.csv of an OpinionQA folder: use --data opinionqa:PATH with that bundle")
        self.contexts_used = "opinionqa" if bundle is not None and self.options.contexts != "generated" else "generated"
        if self.contexts_used == "generated":
            values = list(context.survey.traits[self.options.trait])
            return {value: group_context(self.options.trait, value, values, self.options.style) for value in values if value not in NON_VALUES}
        texts = {value: text for (trait, value), text in bundle().items() if trait == self.options.trait}
        if not texts:
            raise ConfigError(f"--trait {self.options.trait}: OpinionQA has no {self.options.style} steering context for it (--contexts generated writes one)")
        return texts

    def doc_fields(self, docs: pd.DataFrame, context: RunContext) -> list[dict]:
        texts = self.contexts(context)
        values = context.survey.respondents.loc[docs["respondent"], self.options.trait]
        self.unsteered_docs = int((~values.isin(list(texts))).sum())
        return [{"steer": texts.get(value, "")} for value in values]

    def report(self) -> dict:
        return {"unsteered_docs": self.unsteered_docs, "steering_contexts": self.contexts_used}
