"""Mixed precision (``--dtype bf16-mixed``): float32 weights, forward passes under torch.autocast(bfloat16).

Scores stay close to float32 (and differ from it, so autocast is on), outputs and trained parameters stay
float32, gradients reach a LoRA adapter, and the score cache never mixes the two precisions.
"""
from __future__ import annotations

import torch

import pytest

from persona_bench.harness.scoring.adapters import LoraSettings, attach_lora, trainable_parameters
from persona_bench.harness.scoring.lm import LetterScoringLM, model_fingerprint
from persona_bench.harness.scoring.models import autocast_dtype
from persona_bench.harness.scoring.steering import Steering, has_sliding_window, token_batch, token_logprobs

from .test_finetune import adapted_lm
from .test_spm import tiny_models  # noqa: F401  (fixture)
from .tiny_models import ARCHITECTURES


def answer_placed_logprobs(lm: LetterScoringLM) -> torch.Tensor:
    """Letter log-probs of two questions with two inserted tokens before the answer cue (before the prompt
    for sliding-window models): the steering path, which calls the model's body, then its head on the
    scored positions."""
    cue = list(lm.answer_cue())
    heads = [lm.tok_encode("Question: Is it safe?\nA. Yes\nB. No"), lm.tok_encode("Question: A longer question?\nA. Yes\nB. No\nC. Maybe")]
    inserted = lm.tok_encode(" maybe so")[:2]
    ids, mask = token_batch([h + cue for h in heads], lm.tokenizer.pad_token_id, "cpu")
    steering = Steering(embeddings=lm.model.get_input_embeddings()(torch.tensor([inserted, inserted])), before=() if has_sliding_window(lm.model) else tuple(cue))
    return token_logprobs(lm.model, ids, mask, steering, torch.arange(2), mask.sum(1) - 1, torch.tensor([[5, 7], [5, 7]]))[0]


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_bf16_mixed_scores_near_float32_with_float32_weights_and_outputs(architecture, tiny_models):  # noqa: F811
    full = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", dtype="float32", score_cache=None)
    mixed = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", dtype="bf16-mixed", score_cache=None)
    assert autocast_dtype(full.model) is None and autocast_dtype(mixed.model) is torch.bfloat16
    assert {p.dtype for p in mixed.model.parameters()} == {torch.float32}
    ids = torch.tensor([full.tok_encode("Question: Is it safe?\nA. Yes\nB. No\nAnswer:")])
    with torch.no_grad():
        logits = mixed.model(input_ids=ids).logits
        exact = full.model(input_ids=ids).logits
        placed, placed_exact = answer_placed_logprobs(mixed), answer_placed_logprobs(full)
    assert logits.dtype == torch.float32 and placed.dtype == torch.float32
    for low, high in ((logits, exact), (placed, placed_exact)):
        gap = (low - high).abs().max().item()
        assert 0 < gap < 0.1, gap  # bfloat16 products (not the float32 ones), yet the same scores to about 2 digits


def test_an_adapter_trains_under_bf16_mixed_with_float32_gradients_near_float32(tiny_models):  # noqa: F811
    def adapter_gradients(dtype: str) -> list[torch.Tensor]:
        lm, _ = adapted_lm(tiny_models["llama"], dtype=dtype)
        weights = trainable_parameters(lm.model)
        loss = -answer_placed_logprobs(lm)[:, 0].sum()
        return list(torch.autograd.grad(loss, weights))

    mixed, full = adapter_gradients("bf16-mixed"), adapter_gradients("float32")
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in mixed)
    assert any(g.abs().sum() > 0 for g in mixed)
    relative = torch.cat([(a - b).flatten() for a, b in zip(mixed, full)]).norm() / torch.cat([b.flatten() for b in full]).norm()
    assert 0 < relative < 0.1, relative


def test_the_score_cache_tells_precisions_apart_with_and_without_an_adapter(tiny_models):  # noqa: F811
    models = {dtype: LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", dtype=dtype, score_cache=None).model
              for dtype in ("auto", "float32", "bf16-mixed")}
    prints = {dtype: model_fingerprint(model) for dtype, model in models.items()}
    assert prints["auto"] == prints["float32"] != prints["bf16-mixed"]  # float32 keeps the identity it always had
    adapted = {dtype: attach_lora(models[dtype], LoraSettings(4), 0) for dtype in ("float32", "bf16-mixed")}
    assert autocast_dtype(adapted["bf16-mixed"]) is torch.bfloat16 and autocast_dtype(adapted["float32"]) is None  # through peft
    assert model_fingerprint(models["float32"]) != model_fingerprint(models["bf16-mixed"])


def test_a_bf16_mixed_model_deep_copies_and_pickles_with_its_own_weights(tiny_models):  # noqa: F811
    import copy
    import inspect
    import pickle

    model = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", dtype="bf16-mixed", score_cache=None).model
    ids = torch.tensor([[1, 5, 9, 13, 17]])
    with torch.no_grad():
        before = model(input_ids=ids).logits
        twins = {"deepcopy": copy.deepcopy(model), "pickle": pickle.loads(pickle.dumps(model))}  # our own bytes, in memory
        for name, twin in twins.items():
            assert autocast_dtype(twin) is torch.bfloat16, name
            assert torch.equal(twin(input_ids=ids).logits, before), name  # the same mixed-precision forward
            for parameter in twin.parameters():
                parameter.mul_(0.5)
            changed = twin(input_ids=ids).logits
            assert changed.dtype == torch.float32 and not torch.allclose(changed, before), name  # the twin runs its own weights
        assert torch.equal(model(input_ids=ids).logits, before)  # and the original its own
        body = model.get_decoder() if hasattr(model, "get_decoder") else model.model
        inner = body.layers[0].forward
        for stop in (IndexError, KeyboardInterrupt):  # a forward that raises, or is interrupted, leaves no autocast on
            def interrupted(*args, **kwargs):
                raise stop
            body.layers[0].forward = interrupted
            with pytest.raises(stop):
                model(input_ids=ids)
            assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32  # bfloat16 under a CPU autocast left on
        body.layers[0].forward = inner
        assert torch.equal(model(input_ids=ids).logits, before)
        assert inspect.signature(body.forward) == inspect.signature(type(body).forward.__get__(body))  # as transformers reads it
