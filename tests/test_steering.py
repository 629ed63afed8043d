"""The one steered forward's machinery: gradient checkpointing recomputes the layers and gives
the same gradients to a prefix, the prefix cache is read-only, and a model loaded with a device
map scores like one placed on a device."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from persona_bench.harness.scoring.lm import LetterScoringLM
from persona_bench.harness.scoring.steering import Steering, checkpointed, decoder_layers, kv_shapes, prefix_cache, token_batch, token_logprobs

from .test_spm import tiny_models  # noqa: F401  (fixture)


@pytest.mark.parametrize("architecture", ["llama", "falcon", "gptj", "gpt_neox", "gpt2"])
def test_gradient_checkpointing_recomputes_and_keeps_the_gradients(architecture, tiny_models):  # noqa: F811
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    rows = [lm.tok_encode("Question: Is it safe?\nA. Yes\nB. No\nAnswer:"), lm.tok_encode("Question: Short?\nAnswer:")]
    ids, mask = token_batch(rows, lm.tokenizer.pad_token_id, "cpu")
    torch.manual_seed(0)
    prefix = [(torch.randn(2, h, 2, d, requires_grad=True), torch.randn(2, h, 2, d, requires_grad=True)) for h, d in kv_shapes(lm.model)]
    residual = {0: torch.randn(2, lm.model.config.hidden_size, requires_grad=True)}
    calls = []
    inner = next(m for m in decoder_layers(lm.model)[0].modules() if getattr(m, "weight", None) is not None and m.weight.dim() == 2)
    handle = inner.register_forward_pre_hook(lambda module, args: calls.append(1))

    def gradients(enabled: bool) -> torch.Tensor:
        for tensor in [*[t for kv in prefix for t in kv], *residual.values()]:
            tensor.grad = None
        with checkpointed(lm.model, enabled):
            logprobs, _ = token_logprobs(lm.model, ids, mask, Steering(prefix=tuple(prefix), residual=residual),
                                         torch.arange(2), torch.tensor([len(r) - 1 for r in rows]), torch.tensor([[5], [6]]))
            logprobs.sum().backward()
        return torch.cat([t.grad.flatten() for t in [*[t for kv in prefix for t in kv], *residual.values()]])

    plain = gradients(False)
    assert len(calls) == 1
    calls.clear()
    recomputed = gradients(True)
    handle.remove()
    assert len(calls) == 2  # the layer ran again in the backward pass
    torch.testing.assert_close(plain, recomputed, atol=1e-7, rtol=0)
    assert plain.abs().sum() > 0


def test_the_prefix_cache_is_never_written(tiny_models):  # noqa: F811
    lm = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
    prefix = tuple((torch.randn(1, h, 3, d), torch.randn(1, h, 3, d)) for h, d in kv_shapes(lm.model))
    cache = prefix_cache(lm.model, prefix)
    ids, mask = token_batch([lm.tok_encode("Question: Is it safe?")], lm.tokenizer.pad_token_id, "cpu")
    with torch.no_grad():
        lm.model.model(input_ids=ids, attention_mask=torch.cat([torch.ones(1, 3, dtype=torch.long), mask], 1), cache=cache, use_cache=False)
    assert cache.get_seq_length() == 3


def test_a_device_map_scores_like_a_device(tiny_model_path):
    from lm_eval.api.instance import Instance

    requests = [Instance("loglikelihood", doc={}, arguments=("Question: Is it safe?\nAnswer:", f" {x}"), idx=0) for x in "AB"]
    placed = LetterScoringLM(pretrained=str(tiny_model_path), device="cpu", score_cache=None).loglikelihood(requests)
    mapped = LetterScoringLM(pretrained=str(tiny_model_path), device_map="auto", score_cache=None).loglikelihood(requests)
    assert [round(s, 5) for s, _ in placed] == [round(s, 5) for s, _ in mapped]


def own_states(lm: LetterScoringLM, tokens: list[int], start: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the keys/values the model itself computes at positions start .. start+count-1 of ``tokens``."""
    from persona_bench.harness.scoring.steering import output_cache

    with torch.no_grad():
        cache = output_cache(lm.model.base_model(input_ids=torch.tensor([tokens]), use_cache=True))
    return [(layer.keys[0, :, start : start + count], layer.values[0, :, start : start + count]) for layer in cache.layers]


@pytest.mark.parametrize("mode", ["prefix", "embeddings"])
@pytest.mark.parametrize("architecture", ["llama", "falcon", "gptj", "gpt_neox", "gpt2"])
def test_answer_placed_virtual_tokens_equal_the_whole_sequence(architecture, mode, tiny_models):  # noqa: F811
    """Virtual tokens placed before the answer cue, equal to what the model itself holds for two real
    tokens there, score exactly like the whole sequence (head, those tokens, cue): heads of different
    lengths share a batch, come from the head cache, and keep their real positions."""
    lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None)
    cue = list(lm.answer_cue())
    heads = [lm.tok_encode("Question: Is it safe?\nA. Yes\nB. No"), lm.tok_encode("Question: A much longer question about the community?\nA. Yes\nB. No\nC. Maybe")]
    inserted = lm.tok_encode(" maybe so")[:2]
    wholes = [head + inserted + cue for head in heads]
    with torch.no_grad():
        expected = torch.stack([torch.log_softmax(lm.model(input_ids=torch.tensor([w])).logits[0, -1].float(), -1)[[5, 7]] for w in wholes])
        if mode == "prefix":
            states = [own_states(lm, w, len(h), 2) for w, h in zip(wholes, heads)]
            steering = Steering(prefix=tuple((torch.stack([s[i][0] for s in states]), torch.stack([s[i][1] for s in states])) for i in range(len(states[0]))), before=tuple(cue))
        else:
            steering = Steering(embeddings=lm.model.get_input_embeddings()(torch.tensor([inserted, inserted])), before=tuple(cue))
        ids, mask = token_batch([h + cue for h in heads], lm.tokenizer.pad_token_id, "cpu")
        for _ in range(2):  # the second time from the head cache
            picked, _ = token_logprobs(lm.model, ids, mask, steering, torch.arange(2), mask.sum(1) - 1, torch.tensor([[5, 7], [5, 7]]))
            torch.testing.assert_close(picked, expected, atol=1e-4, rtol=0)


def test_answer_placement_refuses_what_it_cannot_compute(tiny_models):  # noqa: F811
    lm = LetterScoringLM(pretrained=str(tiny_models["llama"]), device="cpu", score_cache=None)
    cue = lm.answer_cue()
    ids, mask = token_batch([lm.tok_encode("Question: Is it safe?\nAnswer: A")], lm.tokenizer.pad_token_id, "cpu")
    steering = Steering(embeddings=torch.zeros(1, 1, lm.model.config.hidden_size), before=cue)
    with pytest.raises(ValueError, match="does not end with the answer cue"):
        token_logprobs(lm.model, ids, mask, steering, torch.tensor([0]), torch.tensor([2]), torch.tensor([[5]]))
    ids, mask = token_batch([lm.tok_encode("Question: Is it safe?\nAnswer:")], lm.tokenizer.pad_token_id, "cpu")
    with pytest.raises(ValueError, match="before the answer cue"):
        token_logprobs(lm.model, ids, mask, steering, torch.tensor([0]), torch.tensor([2]), torch.tensor([[5]]))
    neo = LetterScoringLM(pretrained=str(tiny_models["gpt_neo"]), device="cpu", score_cache=None)
    ids, mask = token_batch([neo.tok_encode("Question: Is it safe?\nAnswer:")], neo.tokenizer.pad_token_id, "cpu")
    steering = Steering(embeddings=torch.zeros(1, 1, neo.model.config.hidden_size), before=neo.answer_cue())
    with pytest.raises(ValueError, match="sliding-window"):
        token_logprobs(neo.model, ids, mask, steering, torch.tensor([0]), mask.sum(1) - 1, torch.tensor([[5]]))


@pytest.mark.parametrize("architecture", ["llama", "falcon", "gptj", "gpt_neox", "gpt2"])
def test_rows_sharing_a_stem_score_as_whole_rows_and_run_fewer_tokens(architecture, tiny_models, monkeypatch):  # noqa: F811
    """Every rotation of two questions' options, behind a shared person header: scored with shared stems
    (each stem run once, then only the options and cue) the log-probs equal every row run in full."""
    from persona_bench.harness.scoring import steering
    from persona_bench.tasks.prompts import demographics_prompt, scored_prompt

    questions = [("How safe, if at all, would you say your local community is from crime?", ["Very safe", "Somewhat safe", "Not too safe"]),
                 ("Do you think the gap between rich and poor has grown?", ["Yes, a lot", "Yes, a little", "No"])]
    items = []
    for question, options in questions:
        for shift in range(len(options)):
            shown = options[shift:] + options[:shift]
            context = scored_prompt(demographics_prompt({"question": question, "options": shown, "traits": {"AGE": "30-49", "SEX": "Female"}}))
            for letter in "ABC":
                items.append(("", None, context, f" {letter}"))
    scores, ran = {}, {}
    for share in (False, True):
        lm = LetterScoringLM(pretrained=str(tiny_models[architecture]), device="cpu", score_cache=None, share_stems=share)
        tokens = {"n": 0}
        body_forward = steering.body_of(lm.model).forward

        def counted(*args, _forward=body_forward, **kwargs):
            shape = (kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs["inputs_embeds"]).shape
            tokens["n"] += shape[0] * shape[1]
            return _forward(*args, **kwargs)

        monkeypatch.setattr(steering.body_of(lm.model), "forward", counted)
        scores[share] = lm.score_items([(k, p, c, x, *lm.encode_pair(c, x)) for k, p, c, x in items])
        ran[share] = tokens["n"]
    np.testing.assert_allclose([s for s, _ in scores[True]], [s for s, _ in scores[False]], atol=1e-4)
    assert [g for _, g in scores[True]] == [g for _, g in scores[False]]
    assert ran[True] < 0.7 * ran[False]
