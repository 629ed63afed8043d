"""Concurrent load on one runs folder and one score cache: 8 ``persona-bench run`` processes (mixed
methods, overlapping configurations: every one shares references, two share a trained SPM, two
are the same run) and a leaderboard reading while they write. Every run is done exactly once (the
others wait and reuse it), every trained module is trained once, nothing fails or warns ("database
is locked" included), every cached score is readable afterwards, and each run's samples and
results equal those of the same commands run one after another (floats to 1e-6 relative: a score's
last float32 digits depend on which rows share its batch, and which rows are still unscored when a
process reaches them depends on the others' progress through the shared score cache)."""
from __future__ import annotations

import gzip
import json
import math
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from persona_bench.app.cli import main

from .test_no_space import run_files

BASE = ["--data", "demo:300", "--max-eval-people", "6"]
SPM = ["--method", "spm", "--max-train-answers", "200", "--epochs", "1"]
COMMANDS = [
    ["--method", "raw"], ["--method", "raw"], ["--method", "majority"], ["--method", "cf"],
    SPM, SPM, [*SPM, "--max-eval-people", "4"], ["--method", "context", "--embedder", "wordllama"],
]


def close(together, alone, rel: float = 1e-6) -> bool:
    """The same record up to float rounding: equal keys, strings and integers; floats within ``rel``."""
    if isinstance(alone, dict):
        return isinstance(together, dict) and together.keys() == alone.keys() and all(
            close(together[key], alone[key], rel) for key in alone)
    if isinstance(alone, list):
        return isinstance(together, list) and len(together) == len(alone) and all(
            close(a, b, rel) for a, b in zip(together, alone))
    if isinstance(alone, float) and isinstance(together, float):
        return math.isclose(together, alone, rel_tol=rel, abs_tol=1e-9)
    return together == alone


def decoded(files: dict[str, bytes | dict]) -> dict[str, dict | list]:
    """Each run file as a record: results as read, samples as their list of rows."""
    return {name: [json.loads(line) for line in gzip.decompress(content).splitlines()] if isinstance(content, bytes)
            else content for name, content in files.items()}


def argv(command: list[str], model: Path, runs: Path) -> list[str]:
    return ["run", "--model", str(model), *BASE, *command, "--out", str(runs)]


def test_eight_processes_and_a_reading_leaderboard_share_one_runs_folder(tiny_model_path, tmp_path):
    runs, board = tmp_path / "runs", tmp_path / "board" / "LEADERBOARD.md"
    env = {**os.environ, "PERSONA_BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    processes = [
        subprocess.Popen([sys.executable, "-m", "persona_bench", *argv(command, tiny_model_path, runs)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for command in COMMANDS
    ]
    readings = 0
    while any(p.poll() is None for p in processes):  # the leaderboard reads while they write
        if list(runs.glob("*/results.json")):
            assert main(["leaderboard", "--runs", str(runs), "--out", str(board)]) == 0
            readings += 1
        time.sleep(0.5)
    outputs = [p.communicate() for p in processes]
    for process, (out, err) in zip(processes, outputs):
        assert process.returncode == 0, err[-3000:]
        assert "Traceback" not in err and "warning:" not in err and "locked" not in err, err[-3000:]
    assert readings >= 1
    logs = "".join(err for _, err in outputs)
    finished = sorted(runs.glob("*/results.json"))
    assert logs.count("preparing on") == len(finished)  # each run done once; the other processes reused it
    trained = list(runs.glob("_shared/*/steering/*/training.json"))
    assert len(trained) == 1 and logs.count("training on") == 1
    assert not list(runs.rglob("claim.json"))  # every claim released

    with sqlite3.connect(tmp_path / "cache" / "scores.sqlite") as cache:
        assert cache.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = cache.execute("SELECT key, logprob, greedy FROM scores").fetchall()
    assert rows and all(isinstance(logprob, float) for _, logprob, _ in rows)

    sequential = tmp_path / "sequential"
    for command in COMMANDS:
        assert main(argv(command, tiny_model_path, sequential)) == 0
    together, alone = decoded(run_files(runs)), decoded(run_files(sequential))
    assert together.keys() == alone.keys() and len(together) == 2 * len(finished)
    for name, expected in alone.items():
        assert close(together[name], expected), name
