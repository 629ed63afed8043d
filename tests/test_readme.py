"""The README's promises: its first lines are the two set-up commands, CI runs its test
command, and its worked example of a new method runs as printed."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from persona_bench.app.cli import main
from persona_bench.harness.method import METHODS
from persona_bench.harness.steerer import STEERERS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_test_one():
    commands = [line.strip() for line in README.splitlines()[:10] if line.startswith("    pip install")]
    assert len(commands) == 2
    assert "persona-bench run" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def readme_module(tmp_path, monkeypatch, name: str) -> None:
    """Write the README's ``# name.py`` example where Python finds it."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    code = next(block for block in blocks if block.startswith(f"# {name}.py"))
    assert len(code.strip().splitlines()) <= 45
    (tmp_path / f"{name}.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_worked_example_method_runs_and_is_scored(tmp_path, monkeypatch, capsys):
    readme_module(tmp_path, monkeypatch, "my_methods")
    try:
        argv = ["run", "--import", "my_methods", "--method", "nearest-neighbour", "--neighbours", "10",
                "--data", "demo:600", "--max-eval-people", "20", "--out", str(tmp_path / "runs")]
        assert main(argv) == 0
        result = json.loads(next((tmp_path / "runs").glob("nearest-neighbour-*/results.json")).read_text())
        assert result["method_options"] == {"neighbours": 10} and result["n_people"] == 20
        assert "nearest-neighbour" in capsys.readouterr().out
    finally:
        METHODS.pop("nearest-neighbour", None)
        sys.modules.pop("my_methods", None)


def test_worked_example_steering_family_trains_and_is_scored(tmp_path, monkeypatch, tiny_model_path):
    readme_module(tmp_path, monkeypatch, "my_steering")
    try:
        argv = ["run", "--import", "my_steering", "--method", "last-layer-shift", "--model", str(tiny_model_path),
                "--max-train-answers", "200", "--data", "demo:600", "--max-eval-people", "10", "--out", str(tmp_path / "runs")]
        assert main(argv) == 0
        results = [json.loads(path.read_text()) for path in (tmp_path / "runs").glob("last-layer-shift-*/results.json")]
        trained = [result for result in results if result["budget"]["train_answers"]]
        assert len(results) == 2 and len(trained) == 1, "one trained run and its untrained control"
        assert trained[0]["method_info"]["kind"] == "steering" and trained[0]["budget"]["train_answers"] == 200
    finally:
        METHODS.pop("last-layer-shift", None)
        STEERERS.pop("last-layer-shift", None)
        sys.modules.pop("my_steering", None)
