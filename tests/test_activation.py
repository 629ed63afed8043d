"""Activation steering: per-row residual additions in one batch equal each row alone, hooks are
gone after the call, it learns a planted persona -> answer rule on every architecture, and the
CLI runs it for every persona kind."""
from __future__ import annotations

import json

import pytest
import torch

from persona_bench.app.cli import main
from persona_bench.harness.core.errors import ConfigError
from persona_bench.harness.scoring.lm import LetterScoringLM
from persona_bench.harness.scoring.steering import Steering, steered_hidden, token_batch
from persona_bench.harness.training.loop import TrainOptions, evaluate, train_steerer
from persona_bench.methods.activation.model import ActivationSteerer, parse_layers

from .test_spm import planted_examples, tiny_models  # noqa: F401  (fixture)
from .tiny_models import ARCHITECTURES, training_architectures


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_per_row_additions_in_a_batch_equal_each_row_alone(architecture, tiny_models):  # noqa: F811
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    rows = [lm.tok_encode("Question: Is it safe?\nA. Yes\nB. No\nAnswer:"), lm.tok_encode("Question: Short?\nAnswer:")]
    input_ids, mask = token_batch(rows, lm.tokenizer.pad_token_id, "cpu")
    torch.manual_seed(0)
    additions = {0: torch.randn(2, lm.model.config.hidden_size), 1: torch.randn(2, lm.model.config.hidden_size)}
    with torch.no_grad():
        plain = steered_hidden(lm.model, input_ids, mask)
        batched = steered_hidden(lm.model, input_ids, mask, Steering(residual=additions))
        for i, tokens in enumerate(rows):
            ids, row_mask = token_batch([tokens], lm.tokenizer.pad_token_id, "cpu")
            alone = steered_hidden(lm.model, ids, row_mask, Steering(residual={k: v[i : i + 1] for k, v in additions.items()}))
            torch.testing.assert_close(batched[i, : len(tokens)], alone[0], atol=1e-5, rtol=1e-4)
        assert not torch.allclose(plain, batched)
        torch.testing.assert_close(steered_hidden(lm.model, input_ids, mask), plain)  # hooks removed


def test_layer_choice():
    assert parse_layers("middle", 30) == (15,) and parse_layers("all", 3) == (0, 1, 2) and parse_layers("4,-1", 30) == (4, 29)
    with pytest.raises(ConfigError, match="--layers"):
        parse_layers("40", 30)


@pytest.mark.parametrize("architecture", training_architectures())
def test_activation_steering_learns_a_planted_persona_rule(architecture, tiny_models, demo_survey, tmp_path):  # noqa: F811
    """Camp c always answers option c. (Per-question camp permutations, the SPM's planted rule, are
    beyond an additive shift through two random layers: it then reaches the best camp-only rule, 50%.)"""
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    train = planted_examples(lm, demo_survey, 200, seed=0, per_question=False)
    held_out = planted_examples(lm, demo_survey, 40, seed=1, per_question=False)
    torch.manual_seed(0)
    steerer = ActivationSteerer.for_model(lm.model, 6, layers="all")
    steerer.initialise(train.personas, lm.model, train.prompts[:8])
    pad = lm.tokenizer.pad_token_id
    assert evaluate(steerer, lm.model, held_out, pad, 64)[1] < 0.5  # untrained: the LM's own letter preference
    options = TrainOptions(epochs=12, lr=3e-2, weight_decay=0.0, batch_size=16, patience=12)
    trained, _ = train_steerer(steerer, lm.model, pad, train, held_out, options, tmp_path, log=lambda m: None)
    assert evaluate(trained, lm.model, held_out, pad, 64)[1] > 0.95


def test_activation_runs_for_every_persona_kind(tiny_model_path, tmp_path):
    base = ["run", "--method", "activation", "--model", str(tiny_model_path), "--data", "demo:600", "--max-eval-people", "10",
            "--out", str(tmp_path), "--no-references", "--epochs", "1", "--max-train-answers", "200", "--layers", "0,1"]
    for extra in ([], ["--persona", "cluster:3"], ["--persona", "demographic:POLPARTY"], ["--users", "unseen", "--k", "5"]):
        assert main([*base, *extra]) == 0
    results = [json.loads(p.read_text()) for p in tmp_path.glob("activation-*/results.json")]
    assert len(results) == 4 and {r["method_info"]["kind"] for r in results} == {"steering"}
    assert len(list((tmp_path / "_shared").glob("*/steering/activation-*/training.json"))) == 1
