"""Data-parallel scoring: docs/s with 2 processes x 1 thread against 1 process x 1 thread, same docs.

Each configuration is launched the way a user would (``torchrun --standalone --nproc_per_node N``
for N = 2, plain ``python`` for N = 1); inside, every rank loads SmolLM2-135M, builds the same
docs (demographics prompts: no two alike, so nothing is shared or cached), waits at a barrier,
and times lm-eval's evaluation alone (the score cache off). Rank 0 reports docs/s; the table
gives the speed-up, measured in one run. Run from the repository root:

    python benchmarks/bench_parallel.py [--people 40] [--method demographics|spm]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def worker(people: int, method: str, out: Path) -> None:
    """One rank: prepare everything, then time the scoring only."""
    import torch

    from persona_bench.harness.runs.config import RunConfig
    from persona_bench.harness.core.distributed import World
    from persona_bench.harness.data.loaders import load_survey
    from persona_bench.harness.method.base import build_options, get_method, resolve_config
    from persona_bench.harness.data.protocol import make_split, scored_docs
    from persona_bench.harness.runner import build_context

    torch.set_num_threads(1)
    world = World.current()
    options = {"weights": "random"} if method == "spm" else {}
    config = resolve_config(RunConfig(method=method, data="demo", method_options=options))
    survey = load_survey("demo")
    split = make_split(survey)
    scratch = out.parent / "scratch"  # shared by the ranks, as a run folder is
    context = build_context(config, scratch, survey, split, device="cpu", log=lambda m: None, world=world)
    method_class = get_method(method)
    instance = method_class(build_options(method_class, options))
    instance.prepare(context)
    docs = scored_docs(survey, split, "seen", people, 0).drop(columns="target")
    world.barrier()
    started = time.perf_counter()
    instance.score(docs, context)
    world.barrier()
    seconds = time.perf_counter() - started
    if world.is_main:
        out.write_text(json.dumps({"processes": world.size, "docs": len(docs), "seconds": seconds}))


def launch(processes: int, people: int, method: str) -> dict:
    """Run the workers with a fresh cache (the converted model linked in, no scores) and read rank 0's timing."""
    from persona_bench.harness.scoring.models import cache_root, smollm2_folder

    smollm2_folder()
    out = Path(tempfile.mkdtemp()) / "result.json"
    (out.parent / "cache").mkdir()
    (out.parent / "cache" / "models").symlink_to(cache_root() / "models", target_is_directory=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PERSONA_BENCH_CACHE": str(out.parent / "cache")}
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    command = [*prefix, __file__, "--worker", "--people", str(people), "--method", method, "--out", str(out)]
    subprocess.run(command, check=True, env=env, capture_output=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--method", default="demographics", choices=["demographics", "spm"])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.people, args.method, args.out)
        return
    from tabulate import tabulate

    one, two = launch(1, args.people, args.method), launch(2, args.people, args.method)
    rows = [[f"{r['processes']} x 1 thread", r["docs"], f"{r['seconds']:.1f}", f"{r['docs'] / r['seconds']:.1f}"] for r in (one, two)]
    speedup = one["seconds"] / two["seconds"]
    print(f"SmolLM2-135M, {args.method} on the demo survey, {args.people} people, CPU cores {os.cpu_count()}, load average {os.getloadavg()[0]:.1f}")
    print(tabulate(rows, headers=["processes", "docs", "scoring s", "docs/s"], tablefmt="github"))
    print(f"speed-up with 2 processes: {speedup:.2f}x")


if __name__ == "__main__":
    main()
