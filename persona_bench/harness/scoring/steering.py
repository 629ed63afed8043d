"""The one steered forward: a frozen causal LM run with per-row steering, scored at chosen positions.

A :class:`Steering` holds, for every row of a batch, any of

* ``prefix``: per attention layer, T virtual key/value pairs the prompt attends to
  (prefix-tuning), handed to the model as its key/value cache;
* ``embeddings``: T virtual input embeddings before the prompt (prompt-tuning);
* ``residual``: per chosen decoder layer, a vector added to that layer's output at every
  position (activation steering), through forward hooks removed when the call returns.

Virtual tokens (``prefix`` or ``embeddings``) sit before the prompt, as in the paper, or, where
``Steering.before`` names the prompt's closing tokens (the answer cue ``"\nAnswer:"``), between
the question and that cue. The question's own keys/values then do not depend on the persona:
they are computed once per distinct question by the frozen LM and kept (:class:`HeadCache`),
and a steered row runs only its virtual tokens and the cue, forward and backward.

:func:`token_logprobs` runs the model once with the steering and returns the log-probabilities
(over the whole vocabulary) of chosen tokens at chosen positions, applying the LM head only
there. Every scorer (``persona-bench-lm``, ``persona-bench-steered``) and every trainer calls it;
nothing else runs a steered model. The LM's own weights never get gradients: trainers
differentiate through it to the steering tensors and, where one is attached, to the LM's LoRA
adapter (:mod:`persona_bench.harness.scoring.adapters`).

Helpers read the LM's shapes and scales from real forwards (:func:`kv_shapes`,
:func:`activation_scales`), so steering modules can match what the model itself produces.
"""
from __future__ import annotations

import inspect
import weakref
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Iterator, Sequence

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from .adapters import adapter_state, trainable_parameters


@dataclass
class Steering:
    """Per-row steering of one batch (see module docstring); every tensor has the batch first."""

    prefix: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None  # per layer: (rows, kv heads, T, head dim) x 2
    embeddings: torch.Tensor | None = None  # (rows, T, embedding size)
    residual: dict[int, torch.Tensor] | None = None  # decoder layer index -> (rows, hidden size)
    before: tuple[int, ...] = ()  # virtual tokens go before these closing prompt tokens (empty: before the prompt)

    @property
    def prefix_tokens(self) -> int:
        return self.prefix[0][0].shape[2] if self.prefix else 0

    @property
    def embedding_tokens(self) -> int:
        return self.embeddings.shape[1] if self.embeddings is not None else 0


def body_of(model: torch.nn.Module) -> torch.nn.Module:
    """The transformer body of a causal LM (without the LM head)."""
    return getattr(model, model.base_model_prefix)


@lru_cache(maxsize=None)
def cache_argument(body_class: type) -> str:
    """The keyword under which a body takes its key/value cache (``cache`` in current transformers)."""
    return "cache" if "cache" in inspect.signature(body_class.forward).parameters else "past_key_values"


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The stack of decoder layers (``model.layers``, ``transformer.h``, ``gpt_neox.layers``...)."""
    config = model.config
    count = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or getattr(config, "num_layers", None)
    for module in body_of(model).children():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise ValueError(f"cannot find the {count} decoder layers of {type(model).__name__}")


@contextmanager
def residual_additions(model: torch.nn.Module, additions: dict[int, torch.Tensor] | None) -> Iterator[None]:
    """Add ``additions[layer]`` (rows, hidden) to the output of those decoder layers while inside."""
    if not additions:
        yield
        return
    layers = decoder_layers(model)

    def hook_for(vector: torch.Tensor):
        def hook(module, inputs, output):
            hidden = output[0] if isinstance(output, tuple) else output
            shifted = hidden + vector[:, None, :].to(device=hidden.device, dtype=hidden.dtype)
            return (shifted, *output[1:]) if isinstance(output, tuple) else shifted

        return hook

    handles = [layers[index].register_forward_hook(hook_for(vector)) for index, vector in additions.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def prefix_cache(model: torch.nn.Module, prefix: tuple[tuple[torch.Tensor, torch.Tensor], ...]) -> DynamicCache:
    """A key/value cache holding the prefix that the model reads but never writes to: each layer
    returns prefix + the new keys/values without storing them, so running a layer twice (as
    gradient checkpointing does) sees the same prefix. Sliding-window layers (GPT-Neo's local
    attention) keep transformers' own behaviour. Each layer's tensors go to that layer's device."""
    dtype = body_of(model).get_input_embeddings().weight.dtype
    devices = layer_devices(model)
    layers = [(k.to(dtype=dtype, device=d), v.to(dtype=dtype, device=d)) for (k, v), d in zip(prefix, devices)]
    cache = DynamicCache(ddp_cache_data=layers, config=model.config)
    for layer, (keys, values) in zip(cache.layers, layers):
        if type(layer) is DynamicLayer:
            layer.update = read_only_update(keys, values)
    return cache


def read_only_update(keys: torch.Tensor, values: torch.Tensor):
    """A cache layer's ``update`` that returns prefix + new without storing the new."""

    def update(key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.cat([keys, key_states], dim=-2), torch.cat([values, value_states], dim=-2)

    return update


def layer_devices(model: torch.nn.Module) -> list[torch.device]:
    """The device of each decoder layer (several when the model is spread with a device map)."""
    return [next(layer.parameters()).device for layer in decoder_layers(model)]


@contextmanager
def checkpointed(model: torch.nn.Module, enabled: bool = True) -> Iterator[None]:
    """Gradient checkpointing of every decoder layer while inside: activations are recomputed in the
    backward pass instead of kept (less memory for a long prompt through a large frozen model)."""
    if not enabled:
        yield
        return
    from torch.utils.checkpoint import checkpoint

    layers = decoder_layers(model)
    originals = [layer.forward for layer in layers]
    for layer, forward in zip(layers, originals):
        layer.forward = lambda *args, _forward=forward, **kwargs: checkpoint(_forward, *args, use_reentrant=False, **kwargs)
    try:
        yield
    finally:
        for layer, forward in zip(layers, originals):
            layer.forward = forward


def token_batch(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``input_ids`` and ``attention_mask`` for token rows."""
    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, tokens in enumerate(rows):
        input_ids[i, : len(tokens)] = torch.as_tensor(tokens)
        attention_mask[i, : len(tokens)] = 1
    return input_ids.to(device), attention_mask.to(device)


def steered_hidden(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, steering: Steering | None = None
) -> torch.Tensor:
    """Final hidden states (rows, width, hidden), one per input token, under ``steering``."""
    body = body_of(model)
    steering = steering or Steering()
    rows = len(input_ids)
    virtual = steering.prefix_tokens + steering.embedding_tokens
    mask = torch.cat([attention_mask.new_ones((rows, virtual)), attention_mask], dim=1) if virtual else attention_mask
    inputs: dict = {"attention_mask": mask, "use_cache": False}
    if steering.embeddings is not None:
        embeddings = body.get_input_embeddings()(input_ids)
        inputs["inputs_embeds"] = torch.cat([steering.embeddings.to(embeddings.dtype).to(embeddings.device), embeddings], dim=1)
    else:
        inputs["input_ids"] = input_ids
    if steering.prefix:
        inputs[cache_argument(type(body))] = prefix_cache(model, steering.prefix)
    with residual_additions(model, steering.residual):
        hidden = body(**inputs).last_hidden_state
    return hidden[:, steering.embedding_tokens :]


def token_logprobs(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    steering: Steering | None,
    rows: torch.Tensor,
    positions: torch.Tensor,
    tokens: torch.Tensor,
    stems: Sequence[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``tokens[n, c]`` as the next token after ``positions[n]`` of row ``rows[n]``
    (``-inf`` where ``tokens`` is -1), and whether each is the model's greedy choice there.

    ``stems`` (unsteered rows only): per row, how many of its first tokens are a stem it shares with
    other rows (the question and whatever comes before it, under every rotation of the options): their
    key/values come from :func:`head_states`, and only the rest of the row runs."""
    if stems is not None:
        if steering is not None:
            raise ValueError("shared stems are for unsteered rows (answer placement shares its own heads)")
        hidden, first = stem_shared_hidden(model, input_ids, attention_mask, stems)
    elif steering is not None and steering.before:
        hidden, first = answer_placed_hidden(model, input_ids, attention_mask, steering)
    else:
        hidden, first = steered_hidden(model, input_ids, attention_mask, steering), None
    if first is not None:
        positions = positions.to(first.device) - first[rows.to(first.device)]
        if bool((positions < 0).any()):
            raise ValueError("a scored position lies before the answer cue or inside a row's shared stem, where nothing is computed")
    head = model.get_output_embeddings()
    logits = head(hidden[rows.to(hidden.device), positions.to(hidden.device)].to(head.weight.device)).float()
    tokens = tokens.to(logits.device)
    logprobs = torch.log_softmax(logits, dim=-1)
    valid = tokens >= 0
    picked = logprobs.gather(1, tokens.clamp(min=0)).masked_fill(~valid, float("-inf"))
    greedy = (logprobs.argmax(dim=-1, keepdim=True) == tokens) & valid
    return picked, greedy


def stem_shared_hidden(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, stems: Sequence[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states of each row after its stem (rows, rest width, hidden), and each row's stem length."""
    lengths = attention_mask.sum(1).tolist()
    first = torch.as_tensor(list(stems), device=input_ids.device)
    if bool((first < 1).any()) or any(stem >= length for stem, length in zip(stems, lengths)):
        raise ValueError("a shared stem must leave at least one token of its row to run")
    heads = [tuple(input_ids[i, :stem].tolist()) for i, stem in enumerate(stems)]
    tails = [input_ids[i, stem:length].tolist() for i, (stem, length) in enumerate(zip(stems, lengths))]
    tail_ids, tail_mask = token_batch(tails, 0, input_ids.device)
    return hidden_after_heads(model, heads, tail_ids, tail_mask), first


def head_forward(model: torch.nn.Module, heads: Sequence[tuple[int, ...]]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Per head (token rows), per layer, (keys, values) of shape (kv heads, head length, head size)."""
    device = next(model.parameters()).device
    input_ids, attention_mask = token_batch(heads, getattr(model.config, "pad_token_id", None) or 0, device)
    cache = output_cache(body_of(model)(input_ids=input_ids, attention_mask=attention_mask, use_cache=True))
    return [[(layer.keys[i, :, : len(head)], layer.values[i, :, : len(head)]) for layer in cache.layers] for i, head in enumerate(heads)]


def head_states(model: torch.nn.Module, heads: Sequence[tuple[int, ...]]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """The heads' key/values: from :class:`HeadCache`, or, while a LoRA adapter of the model is being
    trained (autograd on), computed afresh with gradients (each step changes them)."""
    if torch.is_grad_enabled() and trainable_parameters(model):
        distinct = list(dict.fromkeys(heads))  # rows of one question share its head's forward (and its gradient)
        computed = dict(zip(distinct, head_forward(model, distinct)))
        return [computed[head] for head in heads]
    return HeadCache.of(model).states(model, heads)


class HeadCache:
    """The LM's key/values of prompt heads (the tokens before the answer cue), per model, keyed by
    the tokens, least recently used dropped past ``max_bytes``. Valid while the model's weights stay
    as they are: every steered row of the same question shares one head forward. A model with a
    LoRA adapter keeps its entries only while the adapter's weights do (:func:`adapter_state`)."""

    max_bytes = 2 * 1024**3
    _per_model: "weakref.WeakKeyDictionary[torch.nn.Module, HeadCache]" = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self.entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.bytes = 0
        self.weights_state: tuple = ()

    @classmethod
    def of(cls, model: torch.nn.Module) -> "HeadCache":
        if model not in cls._per_model:
            cls._per_model[model] = cls()
        return cls._per_model[model]

    @torch.no_grad()
    def states(self, model: torch.nn.Module, heads: Sequence[tuple[int, ...]]) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
        """Per head, per layer, (keys, values) of shape (kv heads, head length, head size)."""
        state = adapter_state(model)
        if state != self.weights_state:  # the adapter changed: what was cached is another model's
            self.entries.clear()
            self.bytes, self.weights_state = 0, state
        missing = list(dict.fromkeys(h for h in heads if h not in self.entries))
        if missing:
            for head, states in zip(missing, head_forward(model, missing)):
                self.entries[head] = [(keys.clone(), values.clone()) for keys, values in states]
                self.bytes += sum(k.numel() * k.element_size() * 2 for k, _ in states)
        found = []
        for head in heads:
            self.entries.move_to_end(head)
            found.append(self.entries[head])
        while self.bytes > self.max_bytes and len(self.entries) > len(set(heads)):
            _, states = self.entries.popitem(last=False)
            self.bytes -= sum(k.numel() * k.element_size() * 2 for k, _ in states)
        return found


def answer_placed_hidden(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, steering: Steering
) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states of each row's answer cue (rows, cue length, hidden) with the virtual
    tokens between the row's head and its cue, and the index of each row's first cue token
    (:func:`hidden_after_heads`, the cue as every row's tail)."""
    if steering.residual:
        raise ValueError("answer-placed virtual tokens do not combine with residual steering")
    if has_sliding_window(model):
        raise ValueError(f"{type(model).__name__} has sliding-window attention layers: place its virtual tokens before the prompt")
    cue = torch.as_tensor(steering.before, device=input_ids.device)
    lengths = attention_mask.sum(1)
    first = lengths - len(cue)
    cue_ids = input_ids.gather(1, first[:, None].clamp(min=0) + torch.arange(len(cue), device=input_ids.device))
    if bool((first < 1).any()) or not bool((cue_ids == cue).all()):
        raise ValueError(f"a prompt does not end with the answer cue tokens {list(steering.before)}")
    heads = [tuple(input_ids[i, : int(first[i])].tolist()) for i in range(len(input_ids))]
    return hidden_after_heads(model, heads, cue_ids, torch.ones_like(cue_ids), steering), first


def hidden_after_heads(
    model: torch.nn.Module, heads: Sequence[tuple[int, ...]], tail_ids: torch.Tensor, tail_mask: torch.Tensor, steering: Steering | None = None
) -> torch.Tensor:
    """Final hidden states of each row's tail tokens (rows, tail width, hidden): the row's head (its
    first tokens) comes as key/values from :func:`head_states`, right-padded to the longest head and
    masked, then ``steering``'s virtual tokens if any, then the tail (right-padded, ``tail_mask``).
    Virtual tokens and the tail take the positions they would have in one whole sequence, so rotary
    and learned positions see the real layout: the result equals the whole sequence's forward."""
    steering = steering or Steering()
    states = head_states(model, heads)
    device = tail_ids.device
    first = torch.tensor([len(head) for head in heads], device=device)
    width = int(first.max())
    layers = []
    for index, virtual in enumerate(steering.prefix or [None] * len(states[0])):
        keys, values = (torch.stack([padded(row[index][part], width) for row in states]) for part in (0, 1))
        if virtual is not None:
            keys, values = torch.cat([keys, virtual[0].to(keys)], dim=2), torch.cat([values, virtual[1].to(values)], dim=2)
        layers.append((keys, values))
    body = body_of(model)
    rows = len(tail_ids)
    head_mask = (torch.arange(width, device=device)[None, :] < first[:, None]).to(tail_mask.dtype)
    current = body.get_input_embeddings()(tail_ids)
    virtual_mask = tail_mask.new_ones((rows, steering.prefix_tokens + steering.embedding_tokens))
    if steering.embeddings is not None:
        current = torch.cat([steering.embeddings.to(current), current], dim=1)
    mask = torch.cat([head_mask, virtual_mask, tail_mask], dim=1)
    position_ids = first[:, None] + steering.prefix_tokens + torch.arange(current.shape[1], device=device)[None, :]
    inputs = {"inputs_embeds": current, "attention_mask": mask, "position_ids": position_ids, "use_cache": False,
              cache_argument(type(body)): prefix_cache(model, tuple(layers))}
    hidden = body(**inputs).last_hidden_state
    return hidden[:, steering.embedding_tokens :]


def has_sliding_window(model: torch.nn.Module) -> bool:
    """Whether some attention layer sees only a window of past tokens (GPT-Neo's local layers, Mistral's window)."""
    config = model.config
    kinds = set(getattr(config, "layer_types", None) or ()) | set(getattr(config, "attention_layers", None) or ())
    return bool(getattr(config, "sliding_window", None)) or bool(kinds & {"local", "sliding_attention"})


def padded(states: torch.Tensor, width: int) -> torch.Tensor:
    """(heads, length, size) zero-padded along the length to ``width``."""
    return torch.nn.functional.pad(states, (0, 0, 0, width - states.shape[1]))


@torch.no_grad()
def kv_shapes(model: torch.nn.Module) -> tuple[tuple[int, int], ...]:
    """Per attention layer, (key/value heads, head size) as the model caches them: read from a real
    one-token forward, not the config (old Falcon configs say multi_query / n_head_kv)."""
    input_ids = torch.zeros((1, 1), dtype=torch.long, device=next(model.parameters()).device)
    cache = output_cache(body_of(model)(input_ids=input_ids, use_cache=True))
    return tuple((layer.keys.shape[1], layer.keys.shape[3]) for layer in cache.layers)


@torch.no_grad()
def activation_scales(model: torch.nn.Module, token_rows: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """Root-mean-square size of what the model itself produces on real prompts, per layer:
    ``keys`` and ``values`` (cached attention key/values), ``residual`` (decoder layer outputs),
    and ``embeddings`` (token embeddings, one number)."""
    device = next(model.parameters()).device
    pad = getattr(model.config, "pad_token_id", None) or 0
    input_ids, attention_mask = token_batch(token_rows, pad, device)
    body = body_of(model)
    outputs = body(input_ids=input_ids, attention_mask=attention_mask, use_cache=True, output_hidden_states=True)
    cache = output_cache(outputs)
    real = attention_mask.bool()
    rms = lambda t: t.float().pow(2).mean().sqrt()  # noqa: E731
    keys = torch.stack([rms(layer.keys.transpose(1, 2)[real]) for layer in cache.layers])
    values = torch.stack([rms(layer.values.transpose(1, 2)[real]) for layer in cache.layers])
    residual = torch.stack([rms(h[real]) for h in outputs.hidden_states[1:]])
    embeddings = rms(body.get_input_embeddings()(input_ids)[real])
    return {"keys": keys.cpu(), "values": values.cpu(), "residual": residual.cpu(), "embeddings": embeddings.cpu()}


def leading_states(model: torch.nn.Module, token_rows: Sequence[Sequence[int]], tokens: int) -> dict[str, list[torch.Tensor] | torch.Tensor]:
    """What the model itself holds at positions ``0 .. tokens-1`` of real prompts, averaged over
    the prompts: per layer ``keys`` and ``values`` (heads, tokens, head size), and ``embeddings``
    (tokens, width). Prompts shorter than ``tokens`` are left out. A prefix equal to these is the
    model's own opening (with rotary positions 0 .. tokens-1, where a prefix sits): a neutral start
    that the prompt already attends to the way it attends to its first tokens."""
    rows = [row for row in token_rows if len(row) >= tokens]
    if not rows:
        raise ValueError(f"no prompt has {tokens} tokens")
    device = next(model.parameters()).device
    input_ids = torch.as_tensor([list(row[:tokens]) for row in rows], device=device)
    body = body_of(model)
    cache = output_cache(body(input_ids=input_ids, use_cache=True))
    keys = [layer.keys.float().mean(0).cpu() for layer in cache.layers]
    values = [layer.values.float().mean(0).cpu() for layer in cache.layers]
    embeddings = body.get_input_embeddings()(input_ids).float().mean(0).cpu()
    return {"keys": keys, "values": values, "embeddings": embeddings}


def output_cache(outputs) -> DynamicCache:
    """The key/value cache of a body's output (``cache`` in current transformers)."""
    cache = getattr(outputs, "cache", None)
    return cache if cache is not None else outputs.past_key_values
