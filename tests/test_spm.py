"""The SPM and the shared steering machinery: the batched per-row prefix equals an explicit past
cache, our pair encoding equals lm-eval's, the SPM learns a planted persona -> answer rule on
every architecture, training resumes mid-epoch exactly, and the CLI runs it."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from lm_eval.api.instance import Instance
from transformers import DynamicCache

from persona_bench.app.cli import main
from persona_bench.harness.training import loop as training
from persona_bench.harness.scoring.adapters import LoraSettings, attach_lora
from persona_bench.harness.scoring.lm import LetterScoringLM, SteeredLM
from persona_bench.harness.scoring.steering import cache_argument
from persona_bench.harness.training.loop import TrainOptions, build_examples, evaluate, train_steerer
from persona_bench.methods.spm.model import SoftPromptModel

from .tiny_models import ARCHITECTURES, make_tiny_model, randomise_lora_b, training_architectures


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {a: make_tiny_model(a, root / a) for a in ARCHITECTURES}


def random_spm(lm: LetterScoringLM, mode: str, dim: int = 4, tokens: int = 2) -> SoftPromptModel:
    torch.manual_seed(0)
    spm = SoftPromptModel.for_model(lm.model, dim, mode=mode, virtual_tokens=tokens)
    with torch.no_grad():
        spm.mlp.net[2].weight.mul_(20)  # make the virtual tokens matter
    return spm.eval()


def test_pair_encoding_equals_lm_eval(tiny_model_path):
    """Our encode_pair is lm-eval's TemplateLM._encode_pair (a private method we do not call: pinned here)."""
    lm = LetterScoringLM(pretrained=str(tiny_model_path), device="cpu", score_cache=None)
    for context, continuation in [("Question: Is it safe?\nAnswer:", " A"), ("Answer: ", "B"), ("x  ", " D"), ("Q", "uestion")]:
        assert lm.encode_pair(context, continuation) == lm._encode_pair(context, continuation)


@pytest.mark.parametrize("lora", [False, True])
@pytest.mark.parametrize("mode", ["prefix", "prompt"])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_batched_steering_equals_an_explicit_past_cache(architecture, mode, lora, tiny_models):
    """Every person's own steering in one batch, with and without a (shared) LoRA adapter on the LM."""
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    if lora:
        attach_lora(lm.model, LoraSettings(4))
        randomise_lora_b(lm.model, 1)  # an adapter that changes the model
    spm = random_spm(lm, mode)
    steered = SteeredLM(steerer=spm, model=lm.model, tokenizer=lm.tokenizer, score_cache=None, batch_tokens=4096)
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
            target = lm.encode_pair(context, continuation)[1][0]
            steering = spm.steering(torch.tensor([request.doc["persona"]]))
            if mode == "prefix":
                cache = DynamicCache(ddp_cache_data=list(steering.prefix), config=lm.model.config)
                mask = torch.ones((1, steering.prefix_tokens + ids.shape[1]), dtype=torch.long)
                logits = lm.model(input_ids=ids, attention_mask=mask, **{cache_argument(type(lm.model)): cache}).logits[0, -1]
            else:
                embeds = torch.cat([steering.embeddings, lm.model.get_input_embeddings()(ids)], dim=1)
                logits = lm.model(inputs_embeds=embeds).logits[0, -1]
            expected.append(torch.log_softmax(logits, -1)[target].item())
    np.testing.assert_allclose(batched, expected, atol=1e-4)
    assert batched[0] != batched[2]  # two personas, same prompt: their own forwards and scores


@pytest.mark.parametrize("mode", ["prefix", "prompt"])
@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_sink_init_starts_as_the_model_reading_its_own_opening_twice(architecture, mode, tiny_models):
    """Untrained, a sink-initialised SPM is the model's own first T tokens (prompts sharing them):
    steered scores equal the unsteered model's on those T tokens followed by the prompt."""
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    prompts = ["Question: Is it safe?\nA. Yes\nB. No\nAnswer:", "Question: A much longer question about the community?\nA. Yes\nB. No\nAnswer:"]
    rows = [lm.tok_encode(prompt) for prompt in prompts]
    assert rows[0][:2] == rows[1][:2]
    torch.manual_seed(0)
    spm = SoftPromptModel.for_model(lm.model, 2, mode=mode, virtual_tokens=2, init="sink")
    spm.initialise(torch.randn(10, 2), lm.model, rows)
    steered = SteeredLM(steerer=spm.eval(), model=lm.model, tokenizer=lm.tokenizer, score_cache=None, batch_tokens=4096)
    requests = [Instance("loglikelihood", doc={"persona": [0.5, -1.0]}, arguments=(p, f" {c}"), idx=0) for p in prompts for c in "AB"]
    scores = [score for score, _ in steered.loglikelihood(requests)]
    expected = []
    with torch.no_grad():
        for request in requests:
            context, continuation = request.arguments
            ids = lm.tok_encode(context)
            target = lm.encode_pair(context, continuation)[1][0]
            logits = lm.model(input_ids=torch.tensor([ids[:2] + ids])).logits[0, -1]
            expected.append(torch.log_softmax(logits.float(), -1)[target].item())
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def planted_answers(survey, n_people: int, seed: int, per_question: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    """Four planted camps; on each 4-option question a camp picks its own option (a different
    camp-to-option assignment per question, so the answer depends on persona and question; or,
    with ``per_question=False``, camp c always picks option c)."""
    rng = np.random.default_rng(seed)
    keys = [k for k, q in survey.questions.items() if len(q.options) == 4][:4]
    assignment = {k: np.random.default_rng(i).permutation(4) if per_question else np.arange(4) for i, k in enumerate(keys)}
    camps = rng.integers(0, 4, n_people)
    personas = np.eye(4, 6)[camps] * 2 + rng.normal(0, 0.3, (n_people, 6))
    rows = [(f"p{i}", k, int(assignment[k][camps[i]])) for i in range(n_people) for k in keys]
    answers = pd.DataFrame(rows, columns=["respondent", "question", "option"])
    return answers, personas[answers["respondent"].str[1:].astype(int).to_numpy()]


def planted_examples(lm, survey, n_people: int, seed: int, per_question: bool = True):
    answers, personas = planted_answers(survey, n_people, seed, per_question)
    return build_examples(answers, survey, personas, lm)


@pytest.mark.parametrize("architecture", training_architectures())
def test_spm_learns_a_planted_persona_rule(architecture, tiny_models, demo_survey, tmp_path):
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    train, held_out = planted_examples(lm, demo_survey, 200, seed=0), planted_examples(lm, demo_survey, 40, seed=1)
    torch.manual_seed(0)
    # Tiny random LMs have a narrow logit range: one virtual token reaches ~92% on llama, four reach ~100%.
    spm = SoftPromptModel.for_model(lm.model, 6, mode="prefix", virtual_tokens=4, hidden=32)
    spm.initialise(train.personas, lm.model, train.prompts[:8])
    options = TrainOptions(epochs=12, lr=3e-2, weight_decay=0.0, batch_size=16, patience=12)
    trained, _ = train_steerer(spm, lm.model, lm.tokenizer.pad_token_id, train, held_out, options, tmp_path, log=lambda m: None)
    _, accuracy = evaluate(trained, lm.model, held_out, lm.tokenizer.pad_token_id, 64)
    assert accuracy > 0.95


@pytest.mark.parametrize("mode, per_question", [("prefix", True), ("prompt", False)])
def test_spm_placed_before_the_answer_learns_a_planted_rule(mode, per_question, tiny_models, demo_survey, tmp_path):
    """Answer-placed virtual tokens, trained through the cached question heads, learn a planted rule.
    Key/values: each camp's option differs by question, learned almost perfectly. Input embeddings:
    a tiny random 2-layer LM passes them on weakly (before the prompt too: 0.65 on the simpler rule
    where each camp keeps its option), so they must only learn clearly (0.33 -> 0.49 here)."""
    lm = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
    train, held_out = (planted_examples(lm, demo_survey, n, seed=seed, per_question=per_question) for n, seed in ((200, 0), (40, 1)))
    torch.manual_seed(0)
    spm = SoftPromptModel.for_model(lm.model, 6, mode=mode, virtual_tokens=4, hidden=32, placement="answer", answer_cue=lm.answer_cue())
    spm.initialise(train.personas, lm.model, train.prompts[:8])
    options = TrainOptions(epochs=12, lr=3e-2, weight_decay=0.0, batch_size=16, patience=12)
    _, untrained = evaluate(spm, lm.model, held_out, lm.tokenizer.pad_token_id, 64)
    trained, _ = train_steerer(spm, lm.model, lm.tokenizer.pad_token_id, train, held_out, options, tmp_path, log=lambda m: None)
    _, accuracy = evaluate(trained, lm.model, held_out, lm.tokenizer.pad_token_id, 64)
    assert accuracy > (0.9 if mode == "prefix" else untrained + 0.1)


def interrupted_at_step_three(monkeypatch, train) -> None:
    """Call ``train()`` with its third training forward raising KeyboardInterrupt (it stands in for
    kill -9 after the step-2 checkpoint), then put the forward back."""
    calls, forward = {"n": 0}, training.letter_logprobs

    def dies_at_step_three(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return forward(*args, **kwargs)

    monkeypatch.setattr(training, "letter_logprobs", dies_at_step_three)
    with pytest.raises(KeyboardInterrupt):
        train()
    monkeypatch.setattr(training, "letter_logprobs", forward)


def test_training_killed_mid_epoch_resumes_to_the_same_result(tiny_models, demo_survey, tmp_path, monkeypatch):
    lm = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
    train, held_out = planted_examples(lm, demo_survey, 30, seed=0), planted_examples(lm, demo_survey, 10, seed=1)
    options = TrainOptions(epochs=2, batch_size=16, lr=1e-2, warmup=0.3, schedule="cosine", checkpoint_minutes=1e-9)

    def fresh() -> SoftPromptModel:
        torch.manual_seed(0)
        spm = SoftPromptModel.for_model(lm.model, 6, init="scaled")
        spm.initialise(train.personas, lm.model, train.prompts[:8])
        return spm

    pad = lm.tokenizer.pad_token_id
    whole, whole_record = train_steerer(fresh(), lm.model, pad, train, held_out, options, tmp_path / "whole", log=lambda m: None)
    interrupted_at_step_three(monkeypatch, lambda: train_steerer(fresh(), lm.model, pad, train, held_out, options, tmp_path / "killed",
                                                                 log=lambda m: None))
    progress = json.loads((tmp_path / "killed" / "last.json").read_text())["progress"]
    assert (progress["epoch"], progress["step"]) == (1, 2)
    messages = []
    resumed, record = train_steerer(fresh(), lm.model, pad, train, held_out, options, tmp_path / "killed", log=messages.append)
    assert messages[0].startswith("training: resuming at epoch 1, step 2")
    for a, b in zip(whole_record["history"], record["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6) and a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
    for (name, a), (_, b) in zip(whole.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=name)


def test_spm_runs_for_every_persona_kind_and_the_random_control(tiny_model_path, tmp_path):
    base = ["run", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:600", "--max-eval-people", "10",
            "--out", str(tmp_path), "--no-references", "--epochs", "1", "--max-train-answers", "200"]
    for extra in ([], ["--persona", "cluster:3"], ["--persona", "demographic:POLPARTYxSEX"], ["--users", "unseen", "--k", "5"],
                  ["--weights", "random"], ["--mode", "prompt"], ["--mode", "prompt", "--placement", "answer"]):
        assert main([*base, *extra]) == 0
    results = [json.loads(p.read_text()) for p in tmp_path.glob("spm-*/results.json")]
    assert len(results) == 7
    assert {r["method_info"]["kind"] for r in results} == {"steering"}
    trained = [r for r in results if r["variant"] == {}]
    assert {r["budget"]["train_answers"] for r in trained} == {200} and {r["recipe"] for r in trained} == {"default"}
    assert next(r for r in results if r["variant"] == {"weights": "random"})["budget"]["train_answers"] == 0
    assert len(list((tmp_path / "_shared").glob("*/steering/*/training.json"))) == 3  # prefix, prompt, answer-placed; the rest reused one
    assert next(r for r in results if r["variant"].get("placement") == "answer")["settings"]["placement"] == "answer"


def test_train_command_trains_once_and_run_reuses_it(tiny_model_path, tmp_path, capsys):
    flags = ["--model", str(tiny_model_path), "--data", "demo:600", "--out", str(tmp_path), "--epochs", "1", "--max-train-answers", "64"]
    assert main(["train", *flags]) == 0
    folder = capsys.readouterr().out.strip().split("trained spm: ")[1]
    assert (tmp_path / "_shared").exists() and folder.endswith(tiny_model_path.name)
    assert main(["run", "--method", "spm", *flags, "--max-eval-people", "5", "--no-references"]) == 0
    assert "training: epoch" not in capsys.readouterr().err  # the trained module was loaded, not retrained


def test_untrained_control_keeps_the_initialisation_and_drops_the_budget():
    from persona_bench.harness.runner import companions
    from persona_bench.harness.runs.config import RunConfig
    from persona_bench.harness.method.base import resolve_config

    for options, kept in [({"recipe": "paper", "epochs": 3, "max_train_answers": 900}, {"recipe": "paper"}),
                          ({"init": "scaled", "lr": 3e-3, "mode": "prompt"}, {"init": "scaled", "mode": "prompt"})]:
        config = resolve_config(RunConfig(method="spm", data="demo", method_options=options))
        control = companions(config)["spm untrained"]
        assert control.method_options == {**kept, "weights": "random"}


def test_a_checkpoint_becomes_current_only_when_complete(tmp_path, tiny_models):
    from persona_bench.harness.training.loop import Checkpoint

    lm = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
    spm = SoftPromptModel.for_model(lm.model, 2)
    optimiser = torch.optim.AdamW(spm.parameters())
    checkpoint = Checkpoint(tmp_path)
    checkpoint.save_last(spm, optimiser, {"epoch": 1, "step": 3})
    first = checkpoint.pointer()["folder"]
    checkpoint.save_last(spm, optimiser, {"epoch": 1, "step": 6})
    assert checkpoint.progress()["step"] == 6 and not (tmp_path / first).exists()
    (tmp_path / "last-99999999999999999999").mkdir()  # a kill while the next one was written: not current
    assert checkpoint.progress()["step"] == 6
    checkpoint.restore_last(spm, optimiser)
    legacy = tmp_path / "legacy"  # the layout before: last/progress.json beside the module
    legacy.mkdir()
    (tmp_path / checkpoint.pointer()["folder"]).rename(legacy / "last")
    (legacy / "last" / "progress.json").write_text(json.dumps({"epoch": 2, "step": 1}))
    assert Checkpoint(legacy).progress() == {"epoch": 2, "step": 1}
    Checkpoint(legacy).restore_last(spm, optimiser)
