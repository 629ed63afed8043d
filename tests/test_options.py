"""Options declared once: a method's Options fields carry help, choices and role, and the flags,
the choice checks, the budget/variant split and the recipe check all come from them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from persona_bench.app.cli import main
from persona_bench.harness.core.errors import ConfigError
from persona_bench.harness.training.learned import LearnedSteering
from persona_bench.harness.method.base import Method, build_options, get_method
from persona_bench.harness.core.options import option, with_roles


def test_roles_come_from_the_declarations():
    spm = get_method("spm")
    assert spm.budget_options == with_roles(spm.Options, "budget", "recipe", "operational", "seed")
    assert {"init", "lr", "max_train_answers", "checkpoint_minutes"} <= spm.budget_options
    assert not {"mode", "virtual_tokens", "placement", "weights"} & spm.budget_options  # what SPM is: its variant
    assert spm.untrained_options == {"recipe", "init", "train_seed"}  # the control starts as its trained twin did
    assert get_method("context").budget_options == frozenset()


def test_a_declared_choice_is_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(ConfigError, match=r"--embedder 'bert': choose from minilm, wordllama, openai"):
        build_options(get_method("context"), {"embedder": "bert"})
    assert main(["run", "--method", "spm", "--mode", "prompt2", "--out", str(tmp_path)]) == 2
    assert "--mode 'prompt2': choose from prefix, prompt" in capsys.readouterr().err
    assert not (tmp_path).exists() or not any(tmp_path.iterdir())


def test_a_method_s_options_are_described_from_their_declarations(capsys):
    assert main(["methods", "spm"]) == 0
    out = capsys.readouterr().out
    assert "| --mode " in out and "prefix/prompt" in out and "prefix-tuning" in out
    assert any(line.startswith("| --init") and "recipe" in line for line in out.splitlines())


def test_a_recipe_is_a_partial_options_checked_when_the_family_is_defined():
    with pytest.raises(ConfigError, match=r"recipe 'bad' of Bad sets hidden, nonsense"):
        class Bad(LearnedSteering):  # noqa: F841
            name = "test-bad-recipe"
            recipes: ClassVar[dict[str, dict]] = {"bad": {"lr": 0.1, "hidden": 8, "nonsense": 1}}

            @dataclass(frozen=True)
            class Options(LearnedSteering.Options):
                hidden: int = option(32, "hidden units")


def test_a_plain_field_still_works_as_a_shape_option():
    class Plain(Method):
        name, kind = "test-plain", "reference"

        @dataclass(frozen=True)
        class Options:
            neighbours: int = 20

        def score(self, docs, context):
            raise NotImplementedError

    assert Plain.budget_options == frozenset() and build_options(Plain, {"neighbours": 3}).neighbours == 3
