"""Learning curves: where a curve crosses a reference (interpolated or extrapolated, and said
so), and the curve command's runs, companions and leaderboard section."""
from __future__ import annotations

import json

import pytest

from persona_bench.app.cli import main
from persona_bench.leaderboard.curves import crossing


def test_crossing_is_interpolated_between_measured_budgets():
    text = crossing([(1000, 0.40), (3000, 0.55), (10000, 0.60)], 0.50, "majority")
    assert "between 1,000 and 3,000" in text and "~2,080" in text and "interpolation" in text


def test_crossing_beyond_the_largest_budget_is_labelled_an_extrapolation():
    text = crossing([(1000, 0.40), (10000, 0.45)], 0.50, "cf")
    assert "below cf at every budget up to 10,000" in text and "~100,000" in text and "an extrapolation, not a measurement" in text
    assert "not rising" in crossing([(1000, 0.45), (10000, 0.40)], 0.50, "cf")
    assert "from the smallest budget" in crossing([(1000, 0.55), (10000, 0.60)], 0.50, "majority")


def test_curve_command_runs_budgets_and_companions_and_draws_the_curve(tiny_model_path, tmp_path, capsys):
    argv = ["curve", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:600", "--budgets", "40,120",
            "--epochs", "1", "--max-eval-people", "8", "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "board" / "L.md")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "spm: " in printed and ("majority" in printed and "cf" in printed)
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/results.json")]
    budgets = sorted(r["budget"]["train_answers"] for r in results if r["method"] == "spm" and r["variant"] == {})
    assert budgets == [40, 120]
    assert {r["method"] for r in results} == {"spm", "majority", "cf", "raw"}
    assert any(r["variant"] == {"weights": "random"} for r in results)
    board = (tmp_path / "board" / "L.md").read_text()
    assert "## Learning curves" in board and "spm untrained" in board and "raw (unsteered)" in board
    assert list((tmp_path / "board").glob("curve_*.png"))


@pytest.mark.parametrize("text", ["0", "x,1"])
def test_curve_budgets_must_be_answer_counts(text, tmp_path):
    with pytest.raises(SystemExit):
        main(["curve", "--budgets", text, "--out", str(tmp_path)])
