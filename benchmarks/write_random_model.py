"""Write a paper model (Falcon-7B-Instruct, GPT-J-6B, GPT-Neo) at full size with random weights into a
local model folder, from its public configuration (nothing downloaded): right for measuring what a
run costs in memory and time at full size, meaningless for accuracy.

The folder is a normal model folder (config.json, bfloat16 safetensors shards, a tokenizer) that
``persona-bench run --model FOLDER`` loads. With ``--hf-cache`` it is written where the Hugging Face
cache keeps the model's hub id instead (``$HF_HUB_CACHE/models--org--name/snapshots/<revision>``, with
``refs/main``), so the alias itself (``--model falcon-7b-instruct``) resolves to it through the
documented route: a model in the HF cache, nothing downloaded.

The real tokenizers cannot be fetched offline; the folder gets the bundled SmolLM2 tokenizer (a
49,152-token byte-level BPE, smaller than either model's vocabulary, so every id is a valid row of
the full-size embedding) without its chat template (neither paper model has one). Prompts tokenise
to about as many tokens as with GPT-J's GPT-2 BPE; the weights' shapes, hence memory and FLOPs, are
the real model's.

    python benchmarks/write_random_model.py falcon-7b-instruct --out models/falcon-7b-random
    python benchmarks/write_random_model.py falcon-7b-instruct --hf-cache        # then --model falcon-7b-instruct
    python benchmarks/write_random_model.py gpt-j-6b --out models/gpt-j-2-layers --layers 2   # a quick slice
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from persona_bench.harness.scoring.models import ALIASES, model_config, pick_device, resolve_model  # noqa: E402

LAYER_FIELDS = ("num_hidden_layers", "n_layer", "num_layers")
RANDOM_REVISION = "0" * 40  # the snapshot name in the HF cache; no real revision has it
NOTE = "Random weights at {name}'s public shape (persona-bench benchmarks/write_random_model.py): for cost, not accuracy.\n"


def hf_cache_repo(hub_id: str) -> Path:
    """The folder the HF cache keeps ``hub_id`` in."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / ("models--" + hub_id.replace("/", "--"))


def write_random_model(name: str, out: Path, tokenizer_from: str = "smollm2-135m", layers: int | None = None,
                       device: str = "auto") -> Path:
    """Build ``name`` (an alias) with random bfloat16 weights and save it, with a tokenizer, to ``out``
    (atomically: a half-written folder is never left under that name)."""
    config = model_config(name)
    if layers:
        for field in LAYER_FIELDS:
            if hasattr(config, field):
                setattr(config, field, layers)
    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model(tokenizer_from)), local_files_only=True)
    if len(tokenizer) > config.vocab_size:
        sys.exit(f"write_random_model: the tokenizer of {tokenizer_from} has {len(tokenizer)} tokens, more than {name}'s {config.vocab_size}")
    tokenizer.chat_template = None
    config.bos_token_id = config.eos_token_id = tokenizer.eos_token_id
    config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(0)
    with torch.device(pick_device(device)):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    staging = out.with_name(out.name + f".tmp{os.getpid()}")
    model.save_pretrained(staging, max_shard_size="2GB")
    tokenizer.save_pretrained(staging)
    (staging / "RANDOM_WEIGHTS.txt").write_text(NOTE.format(name=name))
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=[name for name, alias in ALIASES.items() if alias.hub_id])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="the model folder to write")
    where.add_argument("--hf-cache", action="store_true", help="write it as the alias's hub id in the HF cache")
    parser.add_argument("--layers", type=int, help="cut to this many decoder layers (full width): a quick slice")
    parser.add_argument("--tokenizer", default="smollm2-135m", help="the model (alias or folder) whose tokenizer to copy")
    parser.add_argument("--device", default="auto", help="where to draw the weights (a GPU is faster; they are saved either way)")
    args = parser.parse_args()
    repo = hf_cache_repo(ALIASES[args.model].hub_id) if args.hf_cache else None
    out = repo / "snapshots" / RANDOM_REVISION if repo else args.out
    started = time.perf_counter()
    written = write_random_model(args.model, out, args.tokenizer, args.layers, args.device)
    if repo:  # the cache's pointer to the snapshot, once the snapshot is complete
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(RANDOM_REVISION)
    size = sum(f.stat().st_size for f in written.glob("*.safetensors"))
    print(f"{args.model}: {size / 2**30:.1f} GiB of random bfloat16 weights in {written} ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
