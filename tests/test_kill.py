"""kill -9 at many points of a sweep (data preparation, CF, SPM and LoRA training mid-epoch, scoring,
leaderboard writing), then a plain rerun: the results equal an uninterrupted sweep's. Slow: it
runs the sweep about a dozen times (``pytest -m slow``)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

GRID = """\
defaults:
  data: demo:600
  max_eval_people: 12
grid:
  - method: [majority, cf]
  - model: {model}
    method: spm
    options: {{max_train_answers: 240, epochs: 2, checkpoint_minutes: 0.00001, batch_size: 8}}
  - model: {model}
    method: finetune
    options: {{prompt: demographics, max_train_answers: 160, epochs: 2, checkpoint_minutes: 0.00001, batch_size: 8}}
"""


def sweep(folder: Path, kill_after: float | None = None) -> int:
    """``persona-bench sweep`` in its own process and cache; SIGKILL after ``kill_after`` seconds."""
    env = {**os.environ, "PERSONA_BENCH_CACHE": str(folder / "cache"), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "persona_bench", "sweep", str(folder / "grid.yaml"), "--out", str(folder / "runs"),
               "--leaderboard", str(folder / "board" / "LEADERBOARD.md")]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is None:
        _, err = process.communicate(timeout=900)
        assert process.returncode == 0, err[-2000:]
        return 0
    try:
        process.wait(timeout=kill_after)
        return process.returncode  # finished before the kill
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return -9


def outcome(folder: Path) -> dict:
    """Each run's accuracy and per-doc predictions, and the leaderboard's cells."""
    runs = {}
    for path in sorted((folder / "runs").glob("*/results.json")):
        result = json.loads(path.read_text())
        runs[path.parent.name] = (result["accuracy"], (path.parent / "samples.jsonl.gz").read_bytes())
    return {"runs": runs, "board": (folder / "board" / "LEADERBOARD.csv").read_text()}


def test_killed_at_any_point_then_rerun_gives_the_uninterrupted_results(tiny_model_path, tmp_path):
    whole = tmp_path / "whole"
    whole.mkdir()
    (whole / "grid.yaml").write_text(GRID.format(model=tiny_model_path))
    started = time.monotonic()
    sweep(whole)
    duration = time.monotonic() - started
    expected = outcome(whole)
    assert len(expected["runs"]) == 4  # majority, cf, spm, finetune
    killed = 0
    for fraction in (0.05, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9):
        folder = tmp_path / f"killed-{fraction}"
        folder.mkdir()
        (folder / "grid.yaml").write_text((whole / "grid.yaml").read_text())
        killed += sweep(folder, kill_after=fraction * duration) == -9
        sweep(folder)
        got = outcome(folder)
        assert got["runs"].keys() == expected["runs"].keys(), fraction
        for run, (accuracy, samples) in expected["runs"].items():
            assert got["runs"][run][0] == accuracy, (fraction, run)
            assert got["runs"][run][1] == samples, (fraction, run)
        assert got["board"] == expected["board"], fraction
    assert killed >= 5  # the kills landed while the sweep was running
