"""No space left on the device during a run: one line naming the file and the OS's reason (exit 1),
and a rerun with space gives the uninterrupted run's files byte for byte (samples) and its record
(results, but for its clock readings). Simulated at several points of a run (an ENOSPC
where a file is put in place), and on a real 150 KB tmpfs where this machine may mount one."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from persona_bench.app.cli import main
from persona_bench.harness.core import atomic

TIMING = ("wall_seconds", "finished_at", "seconds")


def without_timing(value):
    """A results record without its clock readings (run and training times)."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def spm_run(tiny_model_path: Path, out: Path) -> list[str]:
    """A small SPM run with every companion (the references, raw, the untrained control)."""
    return ["run", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:300", "--max-eval-people", "8",
            "--max-train-answers", "200", "--epochs", "1", "--out", str(out)]


def run_files(runs: Path) -> dict[str, bytes | dict]:
    """Each run's samples (bytes) and results (without timing), by run folder."""
    found: dict[str, bytes | dict] = {}
    for results in sorted(runs.glob("*/results.json")):
        found[f"{results.parent.name}/results.json"] = without_timing(json.loads(results.read_text()))
        found[f"{results.parent.name}/samples.jsonl.gz"] = (results.parent / "samples.jsonl.gz").read_bytes()
    return found


@pytest.fixture(scope="module")
def uninterrupted(tiny_model_path, tmp_path_factory) -> dict[str, bytes | dict]:
    runs = tmp_path_factory.mktemp("uninterrupted") / "runs"
    assert main(spm_run(tiny_model_path, runs)) == 0
    return run_files(runs)


def check_one_line_then_resume(tiny_model_path: Path, runs: Path, capsys, uninterrupted: dict, then=lambda: None) -> str:
    """The failed run's error line; after ``then`` (making space) the rerun's files equal the uninterrupted run's."""
    capsys.readouterr()
    assert main(spm_run(tiny_model_path, runs)) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in captured.out + captured.err, captured.err[-3000:]
    then()
    assert main(spm_run(tiny_model_path, runs)) == 0
    resumed = run_files(runs)
    assert resumed.keys() == uninterrupted.keys()
    for name, expected in uninterrupted.items():
        assert resumed[name] == expected, name
    return errors[0]


@pytest.mark.parametrize("full_at", ["cf.safetensors", "optimizer.pt", "samples.jsonl.gz"])
def test_no_space_is_one_line_and_the_rerun_is_the_uninterrupted_run(full_at, tiny_model_path, tmp_path, capsys, uninterrupted, monkeypatch):
    """The disk fills when ``full_at`` is put in place (the persona space, a training checkpoint, a run's samples)."""
    replace = os.replace

    def full(source, target):
        if Path(target).name == full_at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        replace(source, target)

    monkeypatch.setattr(atomic.os, "replace", full)
    line = check_one_line_then_resume(tiny_model_path, tmp_path / "runs", capsys, uninterrupted, then=monkeypatch.undo)
    assert f"{full_at}: No space left on device" in line and "rerun to resume" in line
    assert not list((tmp_path / "runs").rglob(f".{full_at}.*.tmp"))  # no temporary file left behind


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 150 KB tmpfs (its size changed by remounting), or a skip where this machine cannot mount one."""
    mount_point = tmp_path / f"tmpfs-{uuid.uuid4().hex[:6]}"
    mount_point.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=150k", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()[:80]}); the simulated test covers the same path")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=True)


def test_a_full_tmpfs_is_one_line_and_the_rerun_with_space_is_the_uninterrupted_run(tiny_model_path, small_tmpfs, capsys, uninterrupted):
    grow = lambda: subprocess.run(["mount", "-o", "remount,size=10m", str(small_tmpfs)], check=True)  # noqa: E731
    line = check_one_line_then_resume(tiny_model_path, small_tmpfs / "runs", capsys, uninterrupted, then=grow)
    assert str(small_tmpfs / "runs") in line and "No space left on device" in line
