"""Memory (and, on a GPU, speed) of SPM training through the paper's models: Falcon-7B-Instruct
and GPT-J-6B at their public shapes with random weights (nothing downloaded).

Memory per batch size is counted, not guessed: the tensors autograd saves for the backward pass
of one steered training forward (prefix keys/values that require grad, frozen LM in bfloat16)
are summed with ``torch.autograd.graph.saved_tensors_hooks`` on the same architecture cut to 1
and 2 decoder layers at full width, for one batch row; a layer's share is the difference, so the
full model's is ``rest + layers x per-layer``, times the batch size (activations are linear in it). With ``--gradient-checkpointing`` a layer keeps only its input,
plus one layer's activations while it is recomputed. The total adds the frozen bf16 weights
(parameter count x 2 bytes) and the steering module; it is an estimate of the peak (allocator
slack and kernels' workspace come on top). On a GPU (``--device cuda``) the script also builds
the full model and measures peak memory and training examples/s per batch size.

    python benchmarks/bench_paper_models.py [--models falcon-7b-instruct,gpt-j-6b] [--batches 1,4,16] [--tokens 64]
"""
from __future__ import annotations

import argparse
import gc
import os
import time
from functools import lru_cache

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from tabulate import tabulate  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

from persona_bench.harness.scoring.models import model_config, parameter_counts  # noqa: E402
from persona_bench.harness.scoring.steering import Steering, checkpointed, kv_shapes, token_logprobs  # noqa: E402

GIB = 2**30
LAYER_FIELDS = ("num_hidden_layers", "n_layer")


def with_layers(name: str, layers: int):
    """``name``'s public configuration cut to ``layers`` decoder layers (full width)."""
    config = model_config(name)
    for field in LAYER_FIELDS:
        if hasattr(config, field):
            setattr(config, field, layers)
    return config


def layer_count(name: str) -> int:
    config = model_config(name)
    return next(getattr(config, field) for field in LAYER_FIELDS if hasattr(config, field))


def steered_step(model, batch: int, tokens: int, device: str, checkpointing: bool) -> torch.Tensor:
    """One training forward with a one-token prefix that requires grad; returns the loss."""
    prefix = tuple(
        (torch.zeros(batch, heads, 1, dim, device=device, dtype=torch.bfloat16, requires_grad=True),
         torch.zeros(batch, heads, 1, dim, device=device, dtype=torch.bfloat16, requires_grad=True))
        for heads, dim in kv_shapes(model)
    )
    ids = torch.randint(0, model.config.vocab_size, (batch, tokens), device=device)
    mask = torch.ones_like(ids)
    rows, positions = torch.arange(batch, device=device), torch.full((batch,), tokens - 1, device=device)
    letters = torch.randint(0, model.config.vocab_size, (batch, 4), device=device)
    with checkpointed(model, checkpointing):
        picked, _ = token_logprobs(model, ids, mask, Steering(prefix=prefix), rows, positions, letters)
    return -torch.log_softmax(picked, -1)[:, 0].mean()


@lru_cache(maxsize=None)
def saved_bytes(name: str, layers: int, batch: int, tokens: int, checkpointing: bool) -> int:
    """Bytes autograd keeps for the backward pass of one steered step on ``layers`` layers."""
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(with_layers(name, layers), dtype=torch.bfloat16).eval().requires_grad_(False)
    total = 0
    seen = {p.untyped_storage().data_ptr() for p in model.parameters()}  # frozen weights are counted apart

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        nonlocal total
        key = tensor.untyped_storage().data_ptr()
        if key not in seen:
            seen.add(key)
            total += tensor.untyped_storage().nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        steered_step(model, batch, tokens, "cpu", checkpointing)
    return total


def activations_per_row(name: str, tokens: int, checkpointing: bool) -> int:
    """Saved bytes of the full model for one batch row (activations grow linearly with the batch)."""
    one, two = (saved_bytes(name, n, 1, tokens, checkpointing) for n in (1, 2))
    per_layer, rest = two - one, 2 * one - two
    found = rest + layer_count(name) * per_layer
    if checkpointing:  # one layer's full activations exist again while it is recomputed
        plain_one, plain_two = (saved_bytes(name, n, 1, tokens, False) for n in (1, 2))
        found += plain_two - plain_one
    return found


def measured(name: str, batches: list[int], tokens: int, checkpointing: bool, steps: int = 5) -> dict[int, tuple[float, float]]:
    """On a GPU: the full model's peak GiB and training examples/s per batch size."""
    from persona_bench.harness.scoring.models import random_model

    model = random_model(name, device="cuda", dtype="bfloat16")
    found = {}
    for batch in batches:
        torch.cuda.reset_peak_memory_stats()
        steered_step(model, batch, tokens, "cuda", checkpointing).backward()
        torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(steps):
            steered_step(model, batch, tokens, "cuda", checkpointing).backward()
        torch.cuda.synchronize()
        found[batch] = (torch.cuda.max_memory_allocated() / GIB, steps * batch / (time.perf_counter() - started))
    del model
    gc.collect()  # else the next model's peak can include this one (seen: GPT-J measured 12.5 GiB high after Falcon)
    torch.cuda.empty_cache()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="falcon-7b-instruct,gpt-j-6b")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--tokens", type=int, default=64, help="prompt length in tokens (W26 raw prompts: ~46 with the chat template off)")
    parser.add_argument("--device", default="cpu", help="cuda: also build the full models and measure")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for name in args.models.split(","):
        for checkpointing in (False, True):
            gpu = measured(name, batches, args.tokens, checkpointing) if args.device.startswith("cuda") else {}
            per_row = activations_per_row(name, args.tokens, checkpointing)
            weights = 2 * parameter_counts(name)[0]
            for batch in batches:
                activations = batch * per_row
                peak, speed = gpu.get(batch, (None, None))
                rows.append([name, "yes" if checkpointing else "no", batch, f"{weights / GIB:.1f}", f"{activations / GIB:.2f}",
                             f"{(weights + activations) / GIB:.1f}", f"{peak:.1f}" if peak else "not run", f"{speed:.1f}" if speed else "not run"])
    print(f"SPM training, bfloat16 frozen LM, {args.tokens}-token prompts, one virtual token; estimate = weights + saved activations")
    print(tabulate(rows, headers=["model", "gradient checkpointing", "batch", "weights GiB", "activations GiB (estimate)",
                                  "total GiB (estimate)", "measured peak GiB", "examples/s"], tablefmt="github"))


if __name__ == "__main__":
    main()
