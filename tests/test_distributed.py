"""Data parallel under torchrun (the CPU twin of a GPU node: gloo, 2 processes) against 1 process.

Scoring: the same accuracy and per-doc scores, one run folder, each rank scoring its own share of
the requests. Training: the same per-epoch train and validation losses (a steering module; a LoRA
adapter). lm-eval's own command
line with our model: requests split across ranks, the same result.
"""
from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest


def launch_command(args: list[str], processes: int, cache: Path, module: str = "persona_bench") -> tuple[list[str], dict]:
    """The command line (torchrun where ``processes`` > 1) and environment (its own cache, offline) of a launch."""
    env = {**os.environ, "PERSONA_BENCH_CACHE": str(cache), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    prefix = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else [sys.executable]
    return [*prefix, "-m", module, *args], env


def launch(args: list[str], processes: int, cache: Path, cwd: Path, module: str = "persona_bench") -> subprocess.CompletedProcess:
    command, env = launch_command(args, processes, cache, module)
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (read from /proc: Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        tree.append(pid := todo.pop())
        todo += children.get(pid, [])
    return tree


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (read from /proc: Linux)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="follows processes through /proc (Linux)")


def kill_launcher(launcher: subprocess.Popen, workers: list[int], seconds: float = 10.0) -> list[int]:
    """kill -9 of ``launcher`` alone; the ``workers`` still running ``seconds`` later."""
    launcher.kill()
    launcher.wait()
    deadline = time.monotonic() + seconds
    while (alive := [pid for pid in workers if running(pid)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def kill_all(launcher: subprocess.Popen, workers: list[int]) -> None:
    """kill -9 of the launcher, its processes and ``workers``, those still there (a failing test leaves nothing running)."""
    pids = process_tree(launcher.pid)[1:] if launcher.poll() is None else []
    launcher.kill()  # nothing once it has been waited for
    launcher.wait()
    for pid in {*pids, *workers}:
        if running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def samples(run_dir: Path) -> list[dict]:
    with gzip.open(run_dir / "samples.jsonl.gz", "rt") as handle:
        return [json.loads(line) for line in handle]


def rank_counts(stderr: str) -> dict[int, int]:
    """Requests each rank reported scoring (persona-bench-lm's per-rank line)."""
    counts: dict[int, int] = {}
    for rank, requests in re.findall(r"persona-bench-lm rank (\d+)/2: (\d+) requests", stderr):
        counts[int(rank)] = counts.get(int(rank), 0) + int(requests)
    return counts


@pytest.fixture(scope="module")
def launched(tiny_model_path, tmp_path_factory):
    """raw and spm runs, each with 2 processes and with 1, in separate folders and caches."""
    root = tmp_path_factory.mktemp("dp")
    common = ["--model", str(tiny_model_path), "--data", "demo:600", "--max-eval-people", "40", "--no-references"]
    spm = ["--max-train-answers", "160", "--epochs", "2"]
    out = {}
    for processes in (2, 1):
        folder = root / f"p{processes}"
        out[processes] = {
            "raw": launch(["run", "--method", "raw", *common, "--out", str(folder / "runs")], processes, folder / "cache", root),
            "spm": launch(["run", "--method", "spm", *common, *spm, "--out", str(folder / "runs")], processes, folder / "cache", root),
            "folder": folder,
        }
    return out


@pytest.mark.parametrize("method", ["raw", "spm"])
def test_scoring_with_two_processes_equals_one(launched, method):
    runs = {p: [d for d in (launched[p]["folder"] / "runs").iterdir() if d.name.startswith(f"{method}-")] for p in (1, 2)}
    assert len(runs[1]) == len(runs[2]) == 1  # one run folder each, written once
    two, one = runs[2][0], runs[1][0]
    assert two.name == one.name
    results = [json.loads((d / "results.json").read_text()) for d in (two, one)]
    assert results[0]["accuracy"] == results[1]["accuracy"] and results[0]["processes"] == 2
    for a, b in zip(samples(two), samples(one)):
        assert a["doc_id"] == b["doc_id"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    counts = rank_counts(launched[2][method].stderr)
    total = sum(len(s["scores"]) for s in samples(one))  # one request per answer letter
    # each rank scores its half; lm-eval pads the shorter rank with a few repeated requests
    assert set(counts) == {0, 1} and all(abs(c - total / 2) <= 20 for c in counts.values()) and sum(counts.values()) >= total


@pytest.mark.slow  # two more torchrun launches (about 25 s)
def test_a_calibrated_cyclic_prompt_with_two_processes_equals_one(tiny_model_path, tmp_path):
    """Each rank scores its share of every rotation and of the content-free prompts (no rank waits alone)."""
    args = ["run", "--method", "raw", "--model", str(tiny_model_path), "--data", "demo:600", "--max-eval-people", "20", "--no-references",
            "--calibrate", "content-free", "--option-order", "cyclic"]
    for processes in (2, 1):
        launch([*args, "--out", str(tmp_path / f"p{processes}")], processes, tmp_path / f"cache{processes}", tmp_path)
    two, one = ([d for d in (tmp_path / f"p{p}").iterdir() if d.name.startswith("raw-")] for p in (2, 1))
    assert len(two) == len(one) == 1 and two[0].name == one[0].name
    for a, b in zip(samples(two[0]), samples(one[0])):
        assert a["doc_id"] == b["doc_id"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-5)
    assert (two[0] / "docs-content-free.jsonl").is_file()


def test_training_with_two_processes_equals_one(launched):
    histories = [
        json.loads(next((launched[p]["folder"] / "runs" / "_shared").glob("*/steering/*/training.json")).read_text())["history"]
        for p in (2, 1)
    ]
    assert len(histories[0]) == len(histories[1]) == 2
    for a, b in zip(*histories):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4


@pytest.mark.slow  # two more launches (about 40 s)
def test_fine_tuning_with_two_processes_equals_one(tiny_model_path, tmp_path):
    """DDP averages the LoRA adapter's gradients: per-epoch losses of 2 processes equal 1 process's."""
    args = ["run", "--method", "finetune", "--prompt", "demographics", "--model", str(tiny_model_path), "--data", "demo:600",
            "--max-eval-people", "10", "--no-references", "--max-train-answers", "160", "--epochs", "2", "--lora-lr", "0.01"]
    for processes in (2, 1):
        launch([*args, "--out", str(tmp_path / f"p{processes}")], processes, tmp_path / f"cache{processes}", tmp_path)
    histories = [json.loads(next((tmp_path / f"p{p}" / "_shared").glob("*/steering/finetune-*/training.json")).read_text())["history"]
                 for p in (2, 1)]
    assert len(histories[0]) == len(histories[1]) == 2
    for a, b in zip(*histories):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4
    assert histories[1][1]["train_loss"] < histories[1][0]["train_loss"]  # it trained


@pytest.mark.slow  # three more torchrun launches (about 90 s)
@needs_proc
def test_fine_tuning_whose_launcher_is_killed_mid_epoch_resumes_to_the_uninterrupted_result(tiny_model_path, tmp_path):
    """kill -9 of torchrun alone after a mid-epoch checkpoint of a 2-rank fine-tune: its workers stop
    (they run in their own sessions, and exit when their launcher is gone), and the same launch
    again resumes mid-epoch and ends with the losses, accuracy and per-doc scores of a launch never
    killed."""
    args = ["run", "--method", "finetune", "--prompt", "demographics", "--model", str(tiny_model_path), "--data", "demo:600",
            "--max-eval-people", "10", "--no-references", "--max-train-answers", "480", "--epochs", "2", "--lora-lr", "0.01",
            "--batch-size", "8", "--checkpoint-minutes", "0.00001"]
    launch([*args, "--out", str(tmp_path / "whole")], 2, tmp_path / "cache-whole", tmp_path)
    command, env = launch_command([*args, "--out", str(tmp_path / "killed")], 2, tmp_path / "cache-killed")
    launcher = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress, workers, survivors = None, [], []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and launcher.poll() is None:
            pointers = list((tmp_path / "killed" / "_shared").glob("*/steering/finetune-*/last.json"))
            if pointers and (progress := json.loads(pointers[0].read_text())["progress"])["step"] > 0:
                break  # a mid-epoch checkpoint exists: training is under way
            time.sleep(0.02)
        workers = process_tree(launcher.pid)[1:]
        survivors = kill_launcher(launcher, workers)
    finally:
        kill_all(launcher, workers)
    assert progress is not None and progress["step"] > 0, "the launch ended before a mid-epoch checkpoint"
    assert workers and not survivors, f"workers {survivors} outlived their launcher"
    assert not list((tmp_path / "killed").glob("*/results.json"))  # killed before its run finished
    resumed = launch([*args, "--out", str(tmp_path / "killed")], 2, tmp_path / "cache-killed", tmp_path)
    epoch, step, steps = map(int, re.search(r"training: resuming at epoch (\d+), step (\d+) of (\d+)", resumed.stdout + resumed.stderr).groups())
    assert 0 < step < steps, (epoch, step, steps)  # mid-epoch
    histories = [json.loads(next((tmp_path / name / "_shared").glob("*/steering/finetune-*/training.json")).read_text())["history"]
                 for name in ("whole", "killed")]
    assert len(histories[0]) == len(histories[1]) == 2
    for a, b in zip(*histories):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-6 and abs(a["val_loss"] - b["val_loss"]) < 1e-6
    runs = [next((tmp_path / name).glob("finetune-*")) for name in ("whole", "killed")]
    accuracies = [json.loads((run / "results.json").read_text())["accuracy"] for run in runs]
    assert accuracies[0] == accuracies[1]
    for a, b in zip(*(samples(run) for run in runs)):
        assert a["doc_id"] == b["doc_id"]
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-6)


@pytest.mark.slow  # a torchrun launch of lm-eval's own CLI (about 50 s); scoring across ranks is tested by default above
def test_lm_eval_cli_splits_requests_across_ranks(launched, tiny_model_path, tmp_path):
    docs = next((launched[1]["folder"] / "runs").glob("raw-*")) / "docs.jsonl"
    args = ["run", "--tasks", "opinionqa_persona_raw", "--metadata", json.dumps({"docs_path": str(docs)}),
            "--model", "persona-bench-lm", "--model_args", f"pretrained={tiny_model_path},score_cache=", "--output_path", "out"]
    two = launch(args, 2, tmp_path / "cache2", tmp_path, module="persona_bench.tasks")
    one = launch(args, 1, tmp_path / "cache1", tmp_path, module="persona_bench.tasks")
    counts = rank_counts(two.stderr)
    requests = sum(len(json.loads(line)["choices"]) for line in docs.read_text().splitlines())
    assert set(counts) == {0, 1} and all(abs(c - requests / 2) <= 20 for c in counts.values()) and sum(counts.values()) >= requests
    score = lambda text: re.search(r"macro_acc\s*\|[^|]*\|\s*([\d.]+)", text).group(1)  # noqa: E731
    assert score(two.stdout) == score(one.stdout)


RANK_DIES = """
import time
from persona_bench.harness.core.distributed import World
world = World.current()
if world.rank == 1:
    raise RuntimeError("rank 1 fails")
time.sleep(2)
world.all_gather("rank 0 carries on")  # a collective rank 1 never reaches
"""


def test_a_failing_rank_ends_the_launch_instead_of_hanging_it(tmp_path):
    """A rank that dies of an exception leaves without waiting at the exit barrier, so torchrun
    stops the others: the launch fails within seconds (it used to hang: the dead rank waited at
    its exit barrier while rank 0 waited in a different collective)."""
    script = tmp_path / "dies.py"
    script.write_text(RANK_DIES)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode != 0 and "rank 1 fails" in done.stderr


SLEEPS = """
import os, sys, time
from persona_bench.harness.core.distributed import World
world = World.current()
with open(os.path.join(sys.argv[1], f"rank{world.rank}.pid"), "w") as handle:
    handle.write(str(os.getpid()))
time.sleep(120)
"""


@needs_proc
def test_workers_stop_when_their_launcher_is_killed(tmp_path):
    """kill -9 of torchrun alone (its workers run in their own sessions): the workers notice that
    their launcher is gone, say so and exit within seconds instead of working on beside a rerun."""
    script = tmp_path / "sleeps.py"
    script.write_text(SLEEPS)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)]
    pid_files = [tmp_path / f"rank{rank}.pid" for rank in (0, 1)]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        launcher = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env={**os.environ, "OMP_NUM_THREADS": "1"})
    workers, survivors = [], []
    try:
        deadline = time.monotonic() + 120
        while not all(path.is_file() and path.read_text() for path in pid_files):
            assert time.monotonic() < deadline and launcher.poll() is None, "the workers never started"
            time.sleep(0.1)
        workers = [int(path.read_text()) for path in pid_files]
        survivors = kill_launcher(launcher, workers)
    finally:
        kill_all(launcher, workers)
    assert not survivors, f"workers {survivors} still running 10 s after their launcher was killed"
    said = (tmp_path / "stderr.txt").read_text()
    assert all(f"persona-bench rank {rank}: the launcher (pid {launcher.pid}) is gone; stopping" in said for rank in (0, 1)), said[-2000:]
