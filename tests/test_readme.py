"""The README's promises: its first lines are the two set-up commands, CI runs its test
command, and its worked example of a new method runs as printed."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from persona_bench.app.cli import main
from persona_bench.harness.method import METHODS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_test_one():
    commands = [line.strip() for line in README.splitlines()[:10] if line.startswith("    pip install")]
    assert len(commands) == 2
    assert "persona-bench run" in commands[0] and "pytest" in commands[1]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()


def test_worked_example_method_runs_and_is_scored(tmp_path, monkeypatch, capsys):
    code = re.search(r"```python\n(.*?)```", README, re.S).group(1)
    (tmp_path / "my_methods.py").write_text(code)
    monkeypatch.syspath_prepend(str(tmp_path))
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
