"""The SPM: the batched per-row prefix equals an explicit past cache, it learns a planted
persona -> answer rule on every architecture, checkpoints resume, and the CLI runs it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from lm_eval.api.instance import Instance

from persona_bench.harness.cli import main
from persona_bench.harness.lm import LetterScoringLM
from persona_bench.methods.spm.lm import SteeredLM
from persona_bench.methods.spm.model import SoftPromptModel, SPMConfig, SPMShape
from persona_bench.methods.spm.train import TrainOptions, build_examples, evaluate, train_spm

from .tiny_models import ARCHITECTURES, make_tiny_model


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {a: make_tiny_model(a, root / a) for a in ARCHITECTURES}


def random_spm(lm: LetterScoringLM, mode: str, dim: int = 4, tokens: int = 2) -> SoftPromptModel:
    torch.manual_seed(0)
    spm = SoftPromptModel(SPMConfig(dim, SPMShape.probe(lm.model), mode, tokens), torch.zeros(dim), torch.ones(dim))
    with torch.no_grad():
        spm.mlp[2].weight.mul_(20)  # make the virtual tokens matter
    return spm.eval()


@pytest.mark.parametrize("mode", ["prefix", "prompt"])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_batched_steering_equals_an_explicit_past_cache(architecture, mode, tiny_models):
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    spm = random_spm(lm, mode)
    steered = SteeredLM(spm=spm, model=lm.model, tokenizer=lm.tokenizer, score_cache=None, batch_tokens=4096)
    prompts = ["Question: Is it safe?\nA. Yes\nB. No\nAnswer:", "Question: A much longer question about the community?\nA. Yes\nB. No\nAnswer:"]
    personas = [[1.0, 0.0, -1.0, 0.5], [-2.0, 1.0, 0.0, 0.0]]
    requests = [
        Instance("loglikelihood", doc={"persona": p}, arguments=(prompt, f" {letter}"), idx=0)
        for prompt in prompts for p in personas for letter in "AB"
    ]
    batched = [score for score, _ in steered.loglikelihood(requests)]
    expected = []
    with torch.no_grad():
        for request in requests:
            context, continuation = request.arguments
            ids = torch.tensor([lm.tok_encode(context)])
            target = lm._encode_pair(context, continuation)[1][0]
            persona = torch.tensor([request.doc["persona"]])
            if mode == "prefix":
                cache = spm.prefix_cache(persona, lm.model.config, torch.float32)
                mask = torch.ones((1, spm.config.virtual_tokens + ids.shape[1]), dtype=torch.long)
                logits = lm.model(input_ids=ids, past_key_values=cache, attention_mask=mask).logits[0, -1]
            else:
                embeds = torch.cat([spm.virtual_embeddings(persona, torch.float32), lm.model.get_input_embeddings()(ids)], dim=1)
                logits = lm.model(inputs_embeds=embeds).logits[0, -1]
            expected.append(torch.log_softmax(logits, -1)[target].item())
    np.testing.assert_allclose(batched, expected, atol=1e-4)
    assert batched[0] != batched[2]  # two personas, same prompt: their own forwards and scores


def planted_answers(survey, n_people: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Four planted camps; on each 4-option question a camp picks its own option (a different
    camp-to-option assignment per question, so the answer depends on persona and question)."""
    rng = np.random.default_rng(seed)
    keys = [k for k, q in survey.questions.items() if len(q.options) == 4][:4]
    assignment = {k: np.random.default_rng(i).permutation(4) for i, k in enumerate(keys)}
    camps = rng.integers(0, 4, n_people)
    personas = np.eye(4, 6)[camps] * 2 + rng.normal(0, 0.3, (n_people, 6))
    rows = [(f"p{i}", k, int(assignment[k][camps[i]])) for i in range(n_people) for k in keys]
    answers = pd.DataFrame(rows, columns=["respondent", "question", "option"])
    return answers, personas[answers["respondent"].str[1:].astype(int).to_numpy()]


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_spm_learns_a_planted_persona_rule(architecture, tiny_models, demo_survey, tmp_path):
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    answers, personas = planted_answers(demo_survey, 200, seed=0)
    examples = build_examples(answers, demo_survey, personas, lm)
    torch.manual_seed(0)
    # Tiny random LMs have a narrow logit range: one virtual token reaches ~92% on llama, four reach ~100%.
    spm = SoftPromptModel(SPMConfig(6, SPMShape.probe(lm.model), "prefix", 4, 32), torch.zeros(6), torch.ones(6))
    options = TrainOptions(epochs=12, lr=3e-2, weight_decay=0.0, batch_size=16, patience=12)
    trained = train_spm(spm, lm, examples, options, tmp_path, log=lambda m: None)
    held_answers, held_personas = planted_answers(demo_survey, 40, seed=1)
    _, accuracy = evaluate(trained, lm, build_examples(held_answers, demo_survey, held_personas, lm), 64)
    assert accuracy > 0.95


def test_training_resumes_from_the_last_epoch(tiny_models, demo_survey, tmp_path):
    lm = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
    answers, personas = planted_answers(demo_survey, 30, seed=0)
    examples = build_examples(answers, demo_survey, personas, lm)
    make = lambda: SoftPromptModel(SPMConfig(6, SPMShape.probe(lm.model)), torch.zeros(6), torch.ones(6))  # noqa: E731
    train_spm(make(), lm, examples, TrainOptions(epochs=1, batch_size=16), tmp_path, log=lambda m: None)
    messages = []
    train_spm(make(), lm, examples, TrainOptions(epochs=2, batch_size=16), tmp_path, log=messages.append)
    assert messages[0] == "spm: resuming after epoch 1"
    history = json.loads((tmp_path / "training.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]
    again = SoftPromptModel.load(tmp_path / "best")
    assert again.config.shape == SPMShape.probe(lm.model)


def test_spm_runs_for_every_persona_kind_and_the_random_control(tiny_model_path, tmp_path):
    base = ["run", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:600", "--max-eval-people", "10",
            "--out", str(tmp_path), "--no-references", "--epochs", "1", "--max-train-answers", "200"]
    for extra in ([], ["--persona", "cluster:3"], ["--persona", "demographic:POLPARTYxSEX"], ["--users", "unseen", "--k", "5"],
                  ["--spm-weights", "random"], ["--mode", "prompt"]):
        assert main([*base, *extra]) == 0
    results = [json.loads(p.read_text()) for p in tmp_path.glob("spm-*/results.json")]
    assert len(results) == 6
    trained = list((tmp_path / "_shared").glob("*/spm/*/training.json"))
    assert len(trained) == 2  # prefix and prompt SPMs; the other runs reused the prefix one


def test_train_command_trains_once_and_run_reuses_it(tiny_model_path, tmp_path, capsys):
    flags = ["--model", str(tiny_model_path), "--data", "demo:600", "--out", str(tmp_path), "--epochs", "1", "--max-train-answers", "64"]
    assert main(["train", *flags]) == 0
    folder = capsys.readouterr().out.strip().split("trained SPM: ")[1]
    assert (tmp_path / "_shared").exists() and folder.endswith(tiny_model_path.name)
    assert main(["run", "--method", "spm", *flags, "--max-eval-people", "5", "--no-references"]) == 0
    assert "spm: epoch" not in capsys.readouterr().err  # the trained SPM was loaded, not retrained
