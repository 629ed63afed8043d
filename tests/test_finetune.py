"""LoRA through peft: the ``finetune`` family (every prompt style) and steering with an unfrozen LM
(``--lora-rank``). The shared conformance suite passes for both; the saved adapter loads with peft's
own API and scores what the run scored; the answer-placed head cache follows the adapter's weights
and lets gradients reach the adapter at the question's positions; a killed training resumes to the
uninterrupted result; bad LoRA input is one line, exit 2."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from persona_bench.harness.conformance import check_method
from persona_bench.harness.core.errors import ConfigError
from persona_bench.harness.scoring.adapters import LoraSettings, adapter_state, attach_lora, trainable_parameters
from persona_bench.harness.scoring.lm import LetterScoringLM, model_fingerprint
from persona_bench.harness.scoring.steering import HeadCache, Steering, token_batch, token_logprobs
from persona_bench.harness.training.loop import TrainOptions, train_steerer
from persona_bench.methods.finetune.model import NoSteering
from persona_bench.tasks.prompts import ANSWER_CUE, PROMPTS

from .test_spm import interrupted_at_step_three, planted_examples, tiny_models  # noqa: F401  (fixture)
from .tiny_models import ARCHITECTURES, randomise_lora_b


def adapted_lm(path, rank: int = 4, seed: int = 0, dtype: str = "auto") -> tuple[LetterScoringLM, object]:
    """A tiny LM with a LoRA adapter whose B weights are random (so the adapter changes the model)."""
    lm = LetterScoringLM(pretrained=str(path), device="cpu", dtype=dtype, score_cache=None)
    wrapped = attach_lora(lm.model, LoraSettings(rank), seed)
    randomise_lora_b(lm.model, seed)
    return lm, wrapped


@pytest.mark.slow  # about 50 s; the raw style is in the default suite (test_conformance)
@pytest.mark.parametrize("prompt", ["demographics", "context"])
def test_finetune_conforms_under_each_prompt_style(prompt, demo_survey, demo_split, tiny_model_path, tmp_path):
    """``raw`` is in the suite of every registered method (test_conformance); the other two styles here."""
    check_method("finetune", demo_survey, demo_split, tmp_path, model=str(tiny_model_path),
                 options={"epochs": 1, "max_train_answers": 200, "prompt": prompt, "k_context": 2})


def test_spm_with_a_lora_adapter_conforms(demo_survey, demo_split, tiny_model_path, tmp_path):
    check_method("spm", demo_survey, demo_split, tmp_path, model=str(tiny_model_path),
                 options={"epochs": 1, "max_train_answers": 200, "virtual_tokens": 2, "placement": "answer", "lora_rank": 4})


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")  # peft asks transformers' old name
def test_the_saved_adapter_loads_with_peft_and_scores_what_the_run_scored(tiny_model_path, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "runs"
    args = ["run", "--method", "finetune", "--prompt", "demographics", "--model", str(tiny_model_path), "--data", "demo:600",
            "--max-eval-people", "5", "--max-train-answers", "160", "--epochs", "1", "--lora-lr", "0.05", "--no-references", "--out", str(out)]
    done = subprocess.run([sys.executable, "-m", "persona_bench", *args], capture_output=True, text=True, timeout=600,
                          env={"PERSONA_BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                               "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    run = next(out.glob("finetune-*"))
    adapter = next(out.glob("_shared/*/steering/finetune-*/best/adapter"))
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in adapter.iterdir()}
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model_path)), str(adapter)).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_path))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_path)).eval()
    docs = [json.loads(line) for line in (run / "docs.jsonl").read_text().splitlines()]
    with gzip.open(run / "samples.jsonl.gz", "rt") as handle:
        samples = [json.loads(line) for line in handle]
    moved = 0.0
    for doc, sample in zip(docs[:12], samples[:12]):
        context = PROMPTS["opinionqa_persona_demographics"](doc) + ANSWER_CUE
        context_ids = tokenizer.encode(context)
        letters = [tokenizer.encode(context + " " + letter)[len(context_ids)] for letter in doc["choices"]]
        with torch.no_grad():
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([context_ids])).logits[0, -1].float(), -1)[letters]
            untrained = torch.log_softmax(base(input_ids=torch.tensor([context_ids])).logits[0, -1].float(), -1)[letters]
        np.testing.assert_allclose(logprobs.numpy(), sample["scores"], atol=1e-4)
        moved = max(moved, float((logprobs - untrained).abs().max()))
    assert moved > 1e-3  # the adapter learned something: the comparison is not the base model's


@pytest.mark.parametrize("prompt", ["raw", "demographics", "context"])
def test_the_untrained_finetune_is_the_base_lm_under_the_same_prompt(prompt, tiny_model_path, tmp_path):
    """Its control (``--weights random``: the adapter as training starts, B = 0) scores every doc as the
    prompting method of that style does on the base LM."""
    from persona_bench.app.cli import main
    from persona_bench.harness.runs.store import read_samples

    common = ["--model", str(tiny_model_path), "--data", "demo:300", "--max-eval-people", "4", "--no-references", "--out", str(tmp_path)]
    # --max-train-answers: the control builds (never trains on) the set it would train on; a small one is quicker
    assert main(["run", "--method", "finetune", "--prompt", prompt, "--weights", "random", "--max-train-answers", "100", *common]) == 0
    assert main(["run", "--method", prompt, *common]) == 0
    control, prompting = (read_samples(next(tmp_path.glob(f"{name}-*"))) for name in ("finetune", prompt))
    assert list(control["doc_id"]) == list(prompting["doc_id"]) and len(control) > 10
    np.testing.assert_allclose(np.concatenate(control["scores"].tolist()), np.concatenate(prompting["scores"].tolist()), atol=1e-5)


def test_answer_placed_scores_follow_the_adapter_and_equal_the_whole_sequence(tiny_models):  # noqa: F811
    lm, _ = adapted_lm(tiny_models["llama"])
    cue = list(lm.answer_cue())
    heads = [lm.tok_encode("Question: Is it safe?\nA. Yes\nB. No"), lm.tok_encode("Question: A longer question about it?\nA. Yes\nB. No\nC. Maybe")]
    inserted = lm.tok_encode(" maybe so")[:2]
    ids, mask = token_batch([h + cue for h in heads], lm.tokenizer.pad_token_id, "cpu")

    def whole_sequence() -> torch.Tensor:
        with torch.no_grad():
            return torch.stack([torch.log_softmax(lm.model(input_ids=torch.tensor([h + inserted + cue])).logits[0, -1].float(), -1)[[5, 7]]
                                for h in heads])

    def answer_placed() -> torch.Tensor:
        with torch.no_grad():
            steering = Steering(embeddings=lm.model.get_input_embeddings()(torch.tensor([inserted, inserted])), before=tuple(cue))
            return token_logprobs(lm.model, ids, mask, steering, torch.arange(2), mask.sum(1) - 1, torch.tensor([[5, 7], [5, 7]]))[0]

    first = whole_sequence()
    for _ in range(2):  # the second time from the head cache
        torch.testing.assert_close(answer_placed(), first, atol=1e-4, rtol=0)
    state = adapter_state(lm.model)
    with torch.no_grad():
        for parameter in trainable_parameters(lm.model):
            parameter.mul_(-1.5)  # as an optimiser step would: in place
    assert adapter_state(lm.model) != state and len(HeadCache.of(lm.model).entries) == 2
    second = whole_sequence()
    assert (second - first).abs().max() > 1e-3
    torch.testing.assert_close(answer_placed(), second, atol=1e-4, rtol=0)  # not the cached heads of the old weights


def test_gradients_reach_the_adapter_through_the_question_head(tiny_models):  # noqa: F811
    """Answer-placed training with an adapter runs the head with autograd: the adapter's gradients equal
    those of the whole sequence run at once."""
    lm, _ = adapted_lm(tiny_models["llama"])
    cue = list(lm.answer_cue())
    head = lm.tok_encode("Question: Is it safe?\nA. Yes\nB. No")
    inserted = lm.tok_encode(" maybe so")[:2]
    weights = trainable_parameters(lm.model)

    def gradients(loss: torch.Tensor) -> list[torch.Tensor]:
        return [g.clone() for g in torch.autograd.grad(loss, weights)]

    whole = torch.log_softmax(lm.model(input_ids=torch.tensor([head + inserted + cue])).logits[0, -1].float(), -1)[5]
    ids, mask = token_batch([head + cue], lm.tokenizer.pad_token_id, "cpu")
    steering = Steering(embeddings=lm.model.get_input_embeddings()(torch.tensor([inserted])), before=tuple(cue))
    placed = token_logprobs(lm.model, ids, mask, steering, torch.arange(1), mask.sum(1) - 1, torch.tensor([[5]]))[0][0, 0]
    for a, b in zip(gradients(whole), gradients(placed)):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


def test_the_score_cache_tells_adapters_apart(tiny_models):  # noqa: F811
    plain = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
    lm, _ = adapted_lm(tiny_models["llama"])
    before = model_fingerprint(lm.model)
    assert before != model_fingerprint(plain.model)
    with torch.no_grad():
        trainable_parameters(lm.model)[1].add_(1.0)
    assert model_fingerprint(lm.model) != before


def test_an_adapter_training_killed_mid_epoch_resumes_to_the_same_result(tiny_models, demo_survey, tmp_path, monkeypatch):  # noqa: F811
    options = TrainOptions(epochs=2, batch_size=16, lr=1e-2, warmup=0.3, schedule="cosine", checkpoint_minutes=1e-9)

    def fresh():
        lm = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
        wrapped = attach_lora(lm.model, LoraSettings(4), seed=0)
        return lm, wrapped, NoSteering(NoSteering.Config(6))

    lm, wrapped, none = fresh()
    train, held_out = planted_examples(lm, demo_survey, 30, seed=0), planted_examples(lm, demo_survey, 10, seed=1)
    pad = lm.tokenizer.pad_token_id
    _, whole_record = train_steerer(none, lm.model, pad, train, held_out, options, tmp_path / "whole", log=lambda m: None, adapter=wrapped)
    whole_weights = [p.detach().clone() for p in trainable_parameters(lm.model)]
    lm, wrapped, none = fresh()
    interrupted_at_step_three(monkeypatch, lambda: train_steerer(none, lm.model, pad, train, held_out, options, tmp_path / "killed",
                                                                 log=lambda m: None, adapter=wrapped))
    lm, wrapped, none = fresh()
    messages = []
    _, record = train_steerer(none, lm.model, pad, train, held_out, options, tmp_path / "killed", log=messages.append, adapter=wrapped)
    assert messages[0].startswith("training: resuming at epoch 1, step 2")
    for a, b in zip(whole_record["history"], record["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-6) and a["val_loss"] == pytest.approx(b["val_loss"], abs=1e-6)
    for a, b in zip(whole_weights, trainable_parameters(lm.model)):
        torch.testing.assert_close(a, b.detach(), atol=1e-6, rtol=0)
    assert max(float(w.abs().max()) for w in whole_weights if w.shape[0] > 4) > 0  # B moved off zero: the adapter trained


def test_lora_targets_that_the_model_lacks_name_its_modules(tiny_models):  # noqa: F811
    lm = LetterScoringLM(pretrained=str(tiny_models["falcon"]), device="cpu", score_cache=None)
    with pytest.raises(ConfigError, match=r"--lora-targets q_proj: FalconForCausalLM has no module named q_proj \(its linear modules: .*query_key_value"):
        attach_lora(lm.model, LoraSettings(4, targets=("q_proj",)))
    attach_lora(lm.model, LoraSettings(4))  # peft's default for falcon: query_key_value


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_lora_attaches_with_peft_defaults_on_every_tested_architecture(architecture, tiny_models):  # noqa: F811
    """Each architecture's default targets (peft's table) exist in it, adapt only the adapter's weights, and
    leave the model's scores as they were until the adapter trains (B starts at zero)."""
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    tokens = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        before = lm.model(tokens).logits
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*fan_in_fan_out")  # GPT-2's Conv1D: configured, not fixed up by peft
        attach_lora(lm.model, LoraSettings(4))
    trained = trainable_parameters(lm.model)
    assert trained and all("lora_" in name for name, p in lm.model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        torch.testing.assert_close(lm.model(tokens).logits, before)


@pytest.mark.parametrize("args, message", [
    (["--method", "finetune", "--lora-rank", "0"], "--lora-rank 0: finetune trains a LoRA adapter, of rank 1 or more"),
    (["--method", "spm", "--lora-rank", "-2"], "--lora-rank -2: a LoRA rank is 1 or more"),
    (["--method", "finetune", "--lora-rank", "-2"], "--lora-rank -2: finetune trains a LoRA adapter, of rank 1 or more"),
    (["--method", "spm", "--lora-targets", "q_proj"], "--lora-targets: settings of a LoRA adapter, and --lora-rank is 0"),
    (["--method", "finetune", "--lora-targets", "nope"], "--lora-targets nope: LlamaForCausalLM has no module named nope (its linear modules:"),
    (["--method", "finetune", "--prompt", "bio"], "--prompt"),
    (["--method", "finetune", "--lr", "0.01"], "--lr 0.01: finetune trains its LoRA adapter alone, whose learning rate is --lora-lr"),
])
def test_bad_lora_input_is_one_line_and_exit_2(args, message, tiny_model_path, tmp_path):
    done = subprocess.run([sys.executable, "-m", "persona_bench", "run", *args, "--model", str(tiny_model_path), "--data", "demo:600",
                           "--max-eval-people", "3", "--max-train-answers", "40", "--epochs", "1", "--no-references", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600,
                          env={"PERSONA_BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in done.stderr, done.stderr[-2000:]
