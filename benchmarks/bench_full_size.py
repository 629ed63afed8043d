"""The flagship command at full model size: ``persona-bench run --method spm --model M`` through
Falcon-7B-Instruct and GPT-J-6B (random bfloat16 weights at their public shapes, written by
``write_random_model.py``), a tiny budget, to completion; with and without gradient checkpointing.

Each run is a separate process (the command a user types, ``--no-references`` so only SPM runs)
with its own runs folder and score cache (gradient checkpointing does not change a run's identity,
so a shared folder would reuse the first training, and a shared cache the first run's scores).
Measured: its peak resident memory (``os.wait4``), on a GPU the peak GPU memory in use (nvidia-smi,
polled twice a second, less what was in use before), and, from the time each log line arrives,
the seconds to load and prepare (on a CPU with the cost line's timed step), per training step (from the training's first log line to the
audit's, validation included, over its steps), for the membership audit and per scored doc.

    python benchmarks/bench_full_size.py --models models/falcon-7b-random,models/gpt-j-random [--dtype bfloat16]
    python benchmarks/bench_full_size.py --models falcon-7b-instruct      # the alias, from the HF cache
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tabulate import tabulate

GIB = 2**30
PHASES = {  # log line -> the phase that starts there
    "cost": re.compile(r"takes ((?:about [\d.]+ (?:h|min))|under a minute) here"),  # on a CPU: the cost line, before training
    "train": re.compile(r"training on (\d+) answers"),
    "audit": re.compile(r"membership audit of the trained module"),
    "score": re.compile(r"scoring (\d+) docs"),
    "table": re.compile(r"^\| method"),
}


def gpu_memory_used() -> float | None:
    """GiB in use on GPU 0 now (nvidia-smi), or None without one."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-i", "0"],
                             capture_output=True, text=True, timeout=10)
        return float(out.stdout.strip()) / 1024 if out.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None


def run_flagship(model: str, runs: Path, dtype: str, checkpointing: bool, train_answers: int, eval_people: int,
                 log: Path) -> dict:
    """Run the flagship command once; its phases' seconds and peak memory."""
    command = [sys.executable, "-m", "persona_bench", "run", "--method", "spm", "--model", model, "--data", "demo",
               "--max-train-answers", str(train_answers), "--epochs", "1", "--max-eval-people", str(eval_people),
               "--dtype", dtype, "--out", str(runs), "--no-references"] + (["--gradient-checkpointing"] if checkpointing else [])
    baseline, peak_gpu, done = gpu_memory_used(), [0.0], threading.Event()

    def poll() -> None:
        while not done.wait(0.5):
            used = gpu_memory_used()
            peak_gpu[0] = max(peak_gpu[0], used or 0.0)

    if baseline is not None:
        threading.Thread(target=poll, daemon=True).start()
    started, stamps, found = time.perf_counter(), {}, {}
    # its own score cache: the runs with and without checkpointing train identical modules, whose scores would be reused
    environment = {**os.environ, "PERSONA_BENCH_CACHE": str(runs / "cache")}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environment)
    with open(log, "ab") as sink:
        sink.write(("$ " + " ".join(command) + "\n").encode())
        for raw in process.stdout:
            sink.write(raw)
            line = raw.decode(errors="replace").split("\r")[-1].strip()
            for phase, pattern in PHASES.items():
                match = pattern.search(line)
                if match and phase not in stamps:
                    stamps[phase] = time.perf_counter() - started
                    found[phase] = match.groups()
    _, status, usage = os.wait4(process.pid, 0)
    done.set()
    total = time.perf_counter() - started
    if status != 0 or not {"train", "audit", "score", "table"} <= set(stamps):
        return {"model": model, "checkpointing": checkpointing, "failed": f"exit status {status >> 8}, see {log}"}
    steps = math.ceil(int(found["train"][0]) / 16)  # the default recipe's batch of 16
    docs = int(found["score"][0])
    return {
        "model": model, "checkpointing": checkpointing, "total_s": total,
        "load_s": stamps["train"], "train_step_s": (stamps["audit"] - stamps["train"]) / steps, "steps": steps,
        "train_s": stamps["audit"] - stamps["train"], "cost_line": found["cost"][0] if "cost" in found else None,
        "audit_s": stamps["score"] - stamps["audit"], "doc_s": (stamps["table"] - stamps["score"]) / docs,
        "docs": docs, "peak_rss_gib": usage.ru_maxrss * 1024 / GIB,
        "peak_gpu_gib": (peak_gpu[0] - baseline) if baseline is not None else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated model folders or aliases")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--checkpointing", default="no,yes", help="no, yes or both (no,yes)")
    parser.add_argument("--train-answers", type=int, default=32)
    parser.add_argument("--eval-people", type=int, default=2)
    parser.add_argument("--runs", type=Path, help="runs folder (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--log", type=Path, default=Path("bench_full_size.log"), help="the runs' output")
    args = parser.parse_args()
    runs = args.runs or Path(tempfile.mkdtemp(prefix="bench-full-size-"))
    rows = []
    for model in args.models.split(","):
        for checkpointing in [value == "yes" for value in args.checkpointing.split(",")]:
            fresh = runs / f"{Path(model).name}-{'checkpointing' if checkpointing else 'plain'}"  # else the 2nd reuses the 1st's training
            row = run_flagship(model, fresh, args.dtype, checkpointing, args.train_answers, args.eval_people, args.log)
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    table = [[Path(r["model"]).name, "yes" if r["checkpointing"] else "no"]
             + ([r["failed"]] + [""] * 7 if "failed" in r else
                [f"{r['load_s']:.0f}", f"{r['train_step_s']:.1f}", f"{r['cost_line'] or 'no line (GPU)'} / {r['train_s']:.0f} s", f"{r['audit_s']:.0f}", f"{r['doc_s']:.2f}",
                 f"{r['total_s']:.0f}", f"{r['peak_rss_gib']:.1f}", f"{r['peak_gpu_gib']:.1f}" if r["peak_gpu_gib"] is not None else "no GPU"])
             for r in rows]
    print(f"persona-bench run --method spm, demo, {args.train_answers} train answers x 1 epoch, {args.eval_people} eval people, "
          f"{args.dtype}, --no-references")
    print(tabulate(table, headers=["model", "gradient checkpointing", "load + prepare s", "s per training step (batch 16)",
                                   "training: cost line said / took",
                                   "membership audit s", "s per scored doc", "total s", "peak RSS GiB", "peak GPU GiB"],
                   tablefmt="github"))


if __name__ == "__main__":
    main()
