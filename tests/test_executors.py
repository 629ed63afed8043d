"""Sweeps on existing engines: a grid run as Ray tasks (local Ray, 2 workers) and as a submitit
job array (its local executor) gives the same results as the sequential sweep, and two sweeps
started together on one grid and runs folder do every run exactly once."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from persona_bench.harness.runs.store import claim, claim_holder, release

GRID = """
defaults:
  data: demo:600
  max_eval_people: 30
grid:
  - method: [majority, cf, demographic-majority]
    preset: quick  # sets nothing these runs lack (max_eval_people is the defaults'): named in their records
  - method: [majority, cf, demographic-majority]
    users: unseen
    k: 5
"""
SAME = ("run_id", "method", "accuracy", "ci95", "n_people", "n_answers", "persona", "users", "k", "preset")


def sweep(grid: Path, runs: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "persona_bench", "sweep", str(grid), "--out", str(runs),
                             "--leaderboard", str(runs.parent / f"{runs.name}.md"), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finished(process: subprocess.Popen) -> str:
    out, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]
    return err


def results(runs: Path) -> dict[str, dict]:
    found = [json.loads(p.read_text()) for p in runs.glob("*/results.json")]
    return {r["run_id"]: {k: r.get(k) for k in SAME} for r in found}


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    root = tmp_path_factory.mktemp("executors")
    (root / "grid.yaml").write_text(GRID)
    finished(sweep(root / "grid.yaml", root / "sequential"))
    return root, results(root / "sequential")


@pytest.mark.slow  # Ray's and submitit's local twins start their own workers (about 2 minutes)
@pytest.mark.parametrize("engine", [["--executor", "ray", "--workers", "2"], ["--executor", "slurm", "--slurm-local"]])
def test_engines_give_the_sequential_results(sequential, engine):
    root, expected = sequential
    pytest.importorskip("ray" if "ray" in engine else "submitit")
    runs = root / engine[1]
    finished(sweep(root / "grid.yaml", runs, *engine))
    assert len(expected) == 6 and results(runs) == expected
    assert (root / f"{runs.name}.md").is_file()  # the leaderboard, written once all runs are done


def test_two_sweeps_together_do_every_run_once(sequential):
    root, expected = sequential
    runs = root / "together"
    logs = [finished(p) for p in [sweep(root / "grid.yaml", runs), sweep(root / "grid.yaml", runs)]]
    prepared = sum(log.count(": preparing on") for log in logs)
    assert prepared == 6 and results(runs) == expected
    assert sum(log.count(" minutes (its wall time over every attempt)") for log in logs) == 6  # each run's end, said once
    assert sorted(str(run["preset"]) for run in expected.values()) == ["None"] * 3 + ["quick"] * 3  # as `run --preset` records it


def test_a_claim_is_exclusive_and_a_dead_holder_is_taken_over(tmp_path):
    assert claim(tmp_path) and not claim(tmp_path)
    release(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout.strip()
    (tmp_path / "claim.json").write_text(json.dumps({**claim_holder_like(), "pid": int(dead)}))
    assert claim(tmp_path) and claim_holder(tmp_path)["pid"] == os.getpid()


def claim_holder_like() -> dict:
    import socket

    return {"host": socket.gethostname(), "since": 0}


@pytest.mark.slow  # measures the model's speed on the grid's prompts (about 40 s)
def test_plan_costs_a_grid_from_the_runs_own_prompts(tiny_model_path, tmp_path, capsys):
    from persona_bench.app.cli import main
    from persona_bench.harness.plan import run_cost
    from persona_bench.app.sweep import load_grid

    grid = tmp_path / "grid.yaml"
    grid.write_text(f"""defaults: {{data: "demo:300", max_eval_people: 10}}
grid:
  - method: majority
  - model: {tiny_model_path}
    method: raw
  - model: {tiny_model_path}
    method: spm
    options: {{max_train_answers: 50, epochs: 2}}
    persona: [individual, cluster:3]
""")
    assert main(["sweep", str(grid), "--plan", "--gpu", "h100", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "Total: 4 runs" in out and "reuses a training" in out and "Total on one h100: 0.0 minutes" in out and "An estimate" in out
    assert "| state" not in out and "runs done" not in out  # no run has begun in --out (costing writes only its _plan folder)
    assert not list((tmp_path / "runs").glob("*/results.json"))  # nothing ran
    trainings: set = set()
    majority, raw, spm, clusters = (run_cost(config, tmp_path / "runs", trainings) for config in load_grid(grid))
    assert majority.forwards == 0 and majority.scoring_flops == 0
    assert raw.docs == spm.docs and 0 < raw.forwards < raw.docs  # unsteered: people share a question's prompt
    assert spm.forwards == spm.docs  # steered: every person's own forward
    assert (spm.train_examples, spm.epochs) == (50, 2) and spm.training_flops > 0
    assert clusters.reuses_training and clusters.training_flops == 0  # one trained SPM serves every persona kind
    placed = run_cost(replace(load_grid(grid)[2], method_options={"max_train_answers": 50, "epochs": 2, "placement": "answer"}), tmp_path / "runs")
    assert placed.forwards == spm.forwards and placed.prompt_tokens < spm.prompt_tokens  # question heads once, 3 cue tokens per person
    assert placed.training_flops < spm.training_flops / 5
    calibrated = run_cost(replace(load_grid(grid)[1], method_options={"calibrate": "content-free"}), tmp_path / "runs")
    assert calibrated.forwards > raw.forwards and calibrated.prompt_tokens > raw.prompt_tokens  # the content-free pass counts
    cyclic = run_cost(replace(load_grid(grid)[1], option_order="cyclic"), tmp_path / "runs")
    assert cyclic.docs > 3 * raw.docs and cyclic.forwards > 3 * raw.forwards  # every rotation of each doc
    with_lora = run_cost(replace(load_grid(grid)[2], method_options={"max_train_answers": 50, "epochs": 2, "placement": "answer", "lora_rank": 4}),
                         tmp_path / "runs")
    assert with_lora.prompt_tokens == placed.prompt_tokens and with_lora.training_flops > 5 * placed.training_flops  # heads recomputed in training
    scored: set = set()
    first, again = (run_cost(load_grid(grid)[1], tmp_path / "runs", scored=scored) for _ in range(2))
    assert (first.forwards, first.cached_forwards) == (raw.forwards, 0) and (again.forwards, again.cached_forwards) == (0, raw.forwards)
    assert again.scoring_flops == 0  # a later run's prompts come from the score cache
    tuned = {prompt: run_cost(replace(load_grid(grid)[1], method="finetune", method_options={"prompt": prompt, "max_train_answers": 50, "epochs": 1}),
                              tmp_path / "runs") for prompt in ("raw", "demographics")}
    assert tuned["raw"].prompt_tokens == raw.prompt_tokens and tuned["demographics"].prompt_tokens > 3 * raw.prompt_tokens  # its own prompt


def test_plan_says_when_the_machine_was_busy_while_it_calibrated(tmp_path, capsys, monkeypatch):
    from persona_bench.app.cli import main
    from persona_bench.harness.training import cost

    grid = tmp_path / "grid.yaml"
    grid.write_text('defaults: {data: "demo:300", max_eval_people: 5}\ngrid:\n  - method: majority\n')
    for share, warned in ((0.97, False), (0.45, True)):
        monkeypatch.setattr(cost, "calibrate", lambda dtype="float32", share=share: cost.Calibration(1e11, share, 2))
        assert main(["sweep", str(grid), "--plan", "--out", str(tmp_path / "runs")]) == 0
        out = capsys.readouterr().out
        assert "measured 100 GFLOP/s" in out and ("the machine was busy" in out) == warned
        assert not warned or "got 45% of its 2 threads' time" in out


def test_plan_costs_each_run_at_the_rate_measured_in_its_precision(tmp_path, capsys, monkeypatch, tiny_model_path):
    from persona_bench.app.cli import main
    from persona_bench.harness.training import cost

    grid = tmp_path / "grid.yaml"
    grid.write_text(f'defaults: {{data: "demo:300", max_eval_people: 5, model: "{tiny_model_path}"}}\n'
                    'grid:\n  - method: raw\n    dtype: [auto, bf16-mixed]\n  - method: majority\n')
    asked = []

    def calibrate(dtype="float32"):
        asked.append(dtype)
        return cost.Calibration({"float32": 1e11, "bf16-mixed": 4e11}[dtype], 1.0, 2)

    monkeypatch.setattr(cost, "calibrate", calibrate)
    assert main(["sweep", str(grid), "--plan", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert sorted(asked) == ["bf16-mixed", "float32"]  # once per precision the LM runs use (the reference needs none)
    assert "400 GFLOP/s in bf16-mixed, 100 GFLOP/s in float32" in out
    lines = out.splitlines()
    column = [cell.strip() for cell in next(line for line in lines if line.startswith("| run ")).split("|")].index("hours here")
    hours = {line.split("|")[1].strip(): float(line.split("|")[column]) for line in lines if line.startswith("| raw ")}
    assert len(hours) == 2 and set(hours) == {f"raw {tiny_model_path} individual seen", f"raw {tiny_model_path} individual seen bf16-mixed"}
    assert hours[f"raw {tiny_model_path} individual seen"] == pytest.approx(4 * hours[f"raw {tiny_model_path} individual seen bf16-mixed"], rel=0.02)
    asked.clear()  # a grid whose LM runs are all mixed precision: one calibration, the reference costs nothing
    grid.write_text(f'defaults: {{data: "demo:300", max_eval_people: 5, model: "{tiny_model_path}", dtype: bf16-mixed}}\n'
                    'grid:\n  - method: [raw, majority]\n')
    assert main(["sweep", str(grid), "--plan", "--out", str(tmp_path / "runs")]) == 0
    assert asked == ["bf16-mixed"] and "(measured 400 GFLOP/s on LM forwards)" in capsys.readouterr().out


def test_a_grid_costed_before_is_read_back_and_a_changed_or_damaged_one_is_costed_again(tmp_path, capsys, monkeypatch, tiny_model_path):
    from persona_bench.app.cli import main
    from persona_bench.harness import plan
    from persona_bench.harness.training import cost

    monkeypatch.setattr(cost, "calibrate", lambda dtype="float32": cost.Calibration(1e11, 1.0, 2))
    grid, runs = tmp_path / "grid.yaml", tmp_path / "runs"
    grid.write_text(f'defaults: {{data: "demo:300", max_eval_people: 5, model: "{tiny_model_path}"}}\ngrid:\n  - method: [raw, majority]\n')

    def planned() -> tuple[str, str, int]:
        costed = []
        real = plan.run_cost
        monkeypatch.setattr(plan, "run_cost", lambda *args, **kwargs: costed.append(1) or real(*args, **kwargs))
        assert main(["sweep", str(grid), "--plan", "--out", str(runs)]) == 0
        printed = capsys.readouterr()
        return printed.out, printed.err, len(costed)

    first, _, costed = planned()
    assert costed == 2
    again, err, costed = planned()
    assert costed == 0 and again == first and "read from" in err  # the same table, nothing built or counted again
    (saved,) = (runs / "_plan").glob("costs-*.json")
    saved.write_text("[{")
    assert planned()[2] == 2  # a damaged file: costed again
    grid.write_text(grid.read_text().replace("[raw, majority]", "[raw, majority, cf]"))
    assert planned()[2] == 3  # another grid: its own costs


def test_dry_run_and_plan_say_where_each_run_stands(tmp_path, capsys, monkeypatch):
    from persona_bench.app.cli import main
    from persona_bench.app.sweep import load_grid
    from persona_bench.harness.runs.store import read_results, run_folder
    from persona_bench.harness.training import cost

    grid, runs = tmp_path / "grid.yaml", tmp_path / "runs"
    grid.write_text('defaults: {data: "demo:300", max_eval_people: 5}\ngrid:\n  - method: [majority, cf, letter-prior]\n')
    assert main(["sweep", str(grid), "--dry-run", "--out", str(runs)]) == 0
    printed = capsys.readouterr()
    assert "0 done, 0 running, 0 started, 3 to run of 3 runs" in printed.out + printed.err and not runs.exists()
    assert main(["run", "--method", "majority", "--data", "demo:300", "--max-eval-people", "5", "--no-references", "--out", str(runs)]) == 0
    majority, cf, letter_prior = load_grid(grid)
    run_folder(runs, cf).mkdir(parents=True)  # begun, then stopped
    (run_folder(runs, cf) / "claim.json").write_text(json.dumps({"host": socket.gethostname(), "pid": 2**22 + 1, "since": 0}))  # a dead pid
    run_folder(runs, letter_prior).mkdir(parents=True)
    (run_folder(runs, letter_prior) / "claim.json").write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": 0}))
    capsys.readouterr()
    assert main(["sweep", str(grid), "--dry-run", "--out", str(runs)]) == 0
    printed = capsys.readouterr()
    lines = (printed.out + printed.err).splitlines()
    assert any(line.startswith("[1/3] done: majority") for line in lines) and any(line.startswith("[2/3] started: cf") for line in lines)
    assert any(line.startswith(f"[3/3] running (pid {os.getpid()} on ") for line in lines)
    assert any(line.endswith("1 done, 1 running, 1 started, 0 to run of 3 runs") for line in lines)
    assert not (runs / "LEADERBOARD.md").exists()  # a dry run writes nothing
    monkeypatch.setattr(cost, "calibrate", lambda dtype="float32": cost.Calibration(1e11, 1.0, 2))
    assert main(["sweep", str(grid), "--plan", "--out", str(runs)]) == 0  # the plan beside the runs folder: states and measured time
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip().split()[0]: [cell.strip() for cell in line.split("|")[2:-1]] for line in out.splitlines()
            if line.startswith("| ") and not line.startswith("| run ")}
    assert [rows[name][0] for name in ("majority", "cf", "letter-prior")] == ["done", "started", "running"]
    hours = read_results(run_folder(runs, majority)).wall_seconds / 3600
    assert float(rows["majority"][-1]) == pytest.approx(hours, rel=1e-2) and rows["cf"][-1] == "" and rows["letter-prior"][-1] == ""
    assert "1 of 3 runs done, planned 0.0 minutes, took" in out and "2 left, planned 0.0 minutes" in out
    assert "at the pace of the done runs" not in out  # no run here has a planned cost: no pace, and none to project


def test_the_pace_of_done_runs_is_their_measured_over_planned_hours():
    import pandas as pd

    from persona_bench.harness.plan import measured_pace

    frame = pd.DataFrame({"state": ["done", "done", "done", "done", "started", "to run"],
                          "hours here": [1.0, 2.0, 0.0, 3.0, 1.0, 5.0], "measured hours": [1.5, 2.5, 0.1, None, None, None]})
    assert measured_pace(frame) == pytest.approx(4.0 / 3.0)  # only done runs with a plan and a measurement
    assert measured_pace(frame.assign(state="to run")) is None
