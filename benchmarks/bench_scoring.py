"""Benchmark letter scoring: persona-bench-lm vs stock lm-eval HFLM vs a bare batched forward.

For the prompt baselines ``raw``, ``demographics`` and ``context`` (k_context=5) with SmolLM2-135M
on W26 (seen users, ``--people`` eval people, seed 0), it prints docs/second of

* ``ours``: lm-eval ``simple_evaluate`` with the ``persona-bench-lm`` model (score cache off),
* ``stock``: lm-eval ``simple_evaluate`` with the stock ``hf`` model (HFLM, batch size 16),
* ``ceiling``: the compute no scorer can skip: a bare batched forward of the transformer body
  over the same distinct prompts (length-sorted batches of the same token budget) plus the LM
  head at each prompt's last position, outside lm-eval,
* ``cached``: ours again with the on-disk score cache warm (a rerun),

and the largest difference between our per-doc letter log-probs and stock's (same dtype). Run
from the repository root (needs ../shared/data; falls back to the demo survey without it):

    python benchmarks/bench_scoring.py [--people 60] [--methods raw demographics context] [--dtype bfloat16]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lm_eval import simple_evaluate  # noqa: E402
from lm_eval.models.huggingface import HFLM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402
from tabulate import tabulate  # noqa: E402

from persona_bench.baselines.prompting import Context, Demographics, RawQuestion  # noqa: E402
from persona_bench.harness.scoring.evaluation import task_records  # noqa: E402
from persona_bench.harness.scoring.lm import LetterScoringLM  # noqa: E402
from persona_bench.harness.data.loaders import load_survey  # noqa: E402
from persona_bench.harness.scoring.models import resolve_model  # noqa: E402
from persona_bench.harness.data.protocol import make_split, scored_docs  # noqa: E402
from persona_bench.harness.runs.config import RunConfig  # noqa: E402
from persona_bench.harness.runner import build_context  # noqa: E402
from persona_bench.harness.method.base import resolve_config  # noqa: E402
from persona_bench.tasks import TASKS_DIR  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "opinionqa"
METHODS = {"raw": RawQuestion, "demographics": Demographics, "context": Context}
BATCH_TOKENS = 8192


def evaluate(lm, task: str, docs_path: Path) -> tuple[float, dict]:
    """Seconds for simple_evaluate, and doc_id -> letter log-probs."""
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"docs_path": str(docs_path)})
    started = time.perf_counter()
    output = simple_evaluate(model=lm, tasks=[task], task_manager=manager, log_samples=True, bootstrap_iters=0)
    seconds = time.perf_counter() - started
    scores = {s["doc"]["doc_id"]: [ll for ll, _ in s["filtered_resps"]] for s in output["samples"][task]}
    contexts = {s["arguments"][0][0] for s in output["samples"][task]}
    return seconds, {"scores": scores, "contexts": contexts}


@torch.no_grad()
def bare_forward_seconds(model, tokenizer, contexts: set[str]) -> float:
    """Seconds for batched body forwards over the distinct prompts (length-sorted, right-padded)
    plus the head at each last position."""
    body, head = getattr(model, model.base_model_prefix), model.get_output_embeddings()
    encoded = sorted((tokenizer.encode(c) for c in contexts), key=len, reverse=True)
    started = time.perf_counter()
    batch: list[list[int]] = []
    for ids in encoded + [None]:
        if ids is None or (batch and (len(batch) + 1) * len(batch[0]) > BATCH_TOKENS):
            width = len(batch[0])
            input_ids = torch.tensor([b + [tokenizer.pad_token_id] * (width - len(b)) for b in batch])
            mask = torch.tensor([[1] * len(b) + [0] * (width - len(b)) for b in batch])
            hidden = body(input_ids=input_ids, attention_mask=mask, use_cache=False).last_hidden_state
            head(hidden[torch.arange(len(batch)), torch.tensor([len(b) - 1 for b in batch])])
            batch = []
        if ids is not None:
            batch.append(ids)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="for every scorer")
    args = parser.parse_args()
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    data = f"opinionqa:{SHARED}" if SHARED.is_dir() else "demo"
    waves = ("W26",) if SHARED.is_dir() else ()
    survey = load_survey(data, list(waves) or None)
    split = make_split(survey)
    docs = scored_docs(survey, split, "seen", max_people=args.people)
    folder = resolve_model("smollm2-135m")
    stock = HFLM(pretrained=str(folder), device="cpu", batch_size=16, dtype=args.dtype)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        os.environ["PERSONA_BENCH_CACHE"] = scratch  # embeddings and the warm score cache live here
        ours = LetterScoringLM(pretrained=str(folder), device="cpu", dtype=args.dtype, score_cache=None, batch_tokens=BATCH_TOKENS)
        cached = LetterScoringLM(pretrained=str(folder), device="cpu", dtype=args.dtype, score_cache=str(Path(scratch) / "scores.sqlite"))
        for name in args.methods:
            method = METHODS[name]()
            config = resolve_config(RunConfig(method=name, data=data, waves=waves))
            context = build_context(config, Path(scratch) / name, survey, split)
            records = task_records(docs, survey, docs["target"], method.doc_fields(docs, context))
            docs_path = Path(scratch) / f"{name}.jsonl"
            docs_path.write_text("".join(json.dumps(r) + "\n" for r in records))
            ours_seconds, ours_out = evaluate(ours, method.task, docs_path)
            stock_seconds, stock_out = evaluate(stock, method.task, docs_path)
            evaluate(cached, method.task, docs_path)
            cached_seconds, _ = evaluate(cached, method.task, docs_path)
            ceiling_seconds = bare_forward_seconds(ours.model, ours.tokenizer, ours_out["contexts"])
            difference = max(
                np.max(np.abs(np.array(ours_out["scores"][d]) - np.array(stock_out["scores"][d]))) for d in ours_out["scores"]
            )
            n = len(records)
            rows.append([name, n, len(ours_out["contexts"]), f"{n / ours_seconds:.1f}", f"{n / stock_seconds:.1f}",
                         f"{n / ceiling_seconds:.1f}", f"{n / cached_seconds:.0f}", f"{stock_seconds / ours_seconds:.2f}x",
                         f"{ceiling_seconds / ours_seconds:.0%}", f"{difference:.1e}"])
    print(f"SmolLM2-135M ({args.dtype}) on {data} {','.join(waves)}, {args.people} seen people, CPU threads {torch.get_num_threads()}")
    print(tabulate(rows, headers=["method", "docs", "distinct prompts", "ours docs/s", "stock docs/s", "ceiling docs/s",
                                  "cached docs/s", "ours vs stock", "ours vs ceiling", "max |Δ log-prob|"], tablefmt="github"))


if __name__ == "__main__":
    main()
