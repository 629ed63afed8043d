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


def test_sweep_seeds_multiply_the_grid(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text("defaults: {data: 'demo:300', max_eval_people: 20}\ngrid:\n  - method: [majority]\n")
    assert main(["sweep", str(grid), "--seeds", "3,4", "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "L.md")]) == 0
    assert sorted(json.loads(p.read_text())["seed"] for p in (tmp_path / "runs").glob("*/results.json")) == [3, 4]
