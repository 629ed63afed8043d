"""Repeating runs over split seeds: ``run --seeds``, ``sweep --seeds`` and the leaderboard's seed table."""
from __future__ import annotations

import json

from persona_bench.app.cli import main


def test_run_over_seeds_prints_the_spread_and_the_leaderboard_shows_it(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", "--method", "majority", "--data", "demo:300", "--max-eval-people", "30", "--seeds", "0,1,2", "--no-references", "--out", str(runs)]) == 0
    printed = capsys.readouterr().out
    assert "Over 3 split seeds (0, 1, 2)" in printed and "seed 2" in printed and "sd" in printed
    seeds = sorted(json.loads(p.read_text())["seed"] for p in runs.glob("majority-*/results.json"))
    assert seeds == [0, 1, 2]
    assert main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "L.md")]) == 0
    board = (tmp_path / "L.md").read_text()
    section = board[board.index("### Split seeds"):]
    header = section.splitlines()[2]
    assert all(column in header for column in ("| 0 ", "| 1 ", "| 2 ", "mean", "sd", "range")) and "| majority " in section
    assert main(["run", "--method", "cf", "--data", "demo:300", "--max-eval-people", "30", "--no-references", "--out", str(runs)]) == 0
    assert main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "L.md")]) == 0
    board = (tmp_path / "L.md").read_text()
    section = board[board.index("### Split seeds"):].split("\n\n### ")[0]
    assert "| majority " in section and "| cf " not in section  # a method run at one seed has no spread to show


def test_sweep_seeds_multiply_the_grid(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("defaults: {data: 'demo:300', max_eval_people: 20}\ngrid:\n  - method: [majority]\n")
    assert main(["sweep", str(grid), "--seeds", "3,4", "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "L.md")]) == 0
    assert sorted(json.loads(p.read_text())["seed"] for p in (tmp_path / "runs").glob("*/results.json")) == [3, 4]


def test_a_training_seed_draws_the_module_again_beside_the_split_seed(tiny_model_path, tmp_path):
    from safetensors.torch import load_file

    common = ["run", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:300", "--max-eval-people", "10",
              "--max-train-answers", "48", "--epochs", "1", "--no-references", "--out", str(tmp_path / "runs")]
    for extra in ([], ["--train-seed", "0"], ["--train-seed", "1"]):
        assert main([*common, *extra]) == 0
    # --train-seed 0 under split seed 0 is the default's training: one module for both, another for seed 1
    modules = sorted((tmp_path / "runs").glob("_shared/*/steering/spm-*"))
    assert len(modules) == 2 and len(list((tmp_path / "runs").glob("spm-*/results.json"))) == 3
    first, second = (load_file(str(next(m.glob("best/steerer.safetensors")))) for m in modules)
    assert any(not (first[name] == second[name]).all() for name in first)  # initialised and trained anew
    records = {json.loads(p.read_text())["options"]["train_seed"]: json.loads(p.read_text()) for p in (tmp_path / "runs").glob("spm-*/results.json")}
    assert set(records) == {None, 0, 1} and records[None]["variant"] == records[1]["variant"] == {}  # not a variant
    assert main(["leaderboard", "--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "L.md")]) == 0
    board = (tmp_path / "L.md").read_text()
    section = board[board.index("### Training seeds"):].split("\n### ")[0]
    header = section.splitlines()[2]
    assert all(column in header for column in ("| 0 ", "| 1 ", "mean", "sd", "range")) and "spm (" in section
    main_table = board[board.index("## Main comparison"):board.index("## Every metric")]
    shown = f"{100 * records[None]['accuracy']:.1f} ["
    assert shown in main_table and (f"{100 * records[1]['accuracy']:.1f} [" == shown or f"{100 * records[1]['accuracy']:.1f} [" not in main_table)


def test_a_lone_redrawn_run_stays_on_the_tables_and_a_negative_training_seed_is_refused(tmp_path, capsys):
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import shown_elsewhere
    from tests.test_curves import spm_record

    def trained(run_id: str, accuracy: float, answers: int, epochs_run: int, epochs: int, **options):
        record = spm_record(run_id, f"2026-12-01T0{len(run_id)}:00:00", accuracy, answers, epochs_run, max_train_answers=answers, **options)
        return record.with_fields(options={**record.options, "epochs": epochs})

    default = trained("spm-a", 0.50, 1000, 3, 3)
    redrawn = trained("spm-b", 0.52, 1000, 2, 3, train_seed=1)  # stopped early: another epoch count run, the same asked for
    lone = trained("spm-c", 0.55, 3000, 1, 1, train_seed=2)  # no run at the split's seed
    control = spm_record("spm-d", "2026-12-01T01:00:00", 0.30, weights="random")
    redrawn_control = spm_record("spm-eee", "2026-12-01T09:00:00", 0.31, weights="random", train_seed=1)  # --train-seed 1's, finished last
    frame = results_frame([default, redrawn, lone, control, redrawn_control])
    assert frame["requested_budget"].tolist()[:3] == ["1,000 answers x 3 epochs"] * 2 + ["3,000 answers x 1 epochs"]
    assert sorted(shown_elsewhere(frame)["run_id"]) == ["spm-a", "spm-c", "spm-d"]  # a redraw of a shown run or control: only in its own table
    assert main(["run", "--method", "spm", "--train-seed", "-1", "--out", str(tmp_path)]) == 2
    assert "--train-seed -1: a seed is 0 or more" in capsys.readouterr().err
