"""The README's promises: its first lines are the two set-up commands, CI runs its test
command, and its worked example of a new method runs as printed."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from persona_bench.app.cli import main
from persona_bench.harness.method.base import METHODS
from persona_bench.harness.scoring.steerer import STEERERS

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_opens_with_the_two_setup_commands_and_ci_runs_the_test_one():
    commands = [line.strip() for line in README.splitlines()[:10] if line.startswith("    ./install.sh")]
    assert len(commands) == 2
    assert "persona-bench run" in commands[0] and "pytest" in commands[1]
    assert len(commands[0]) <= 118, "at most half the 236 characters of the first command before --preset quick"
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


def test_use_as_a_library_example_runs(tmp_path, monkeypatch, capsys):
    import runpy

    readme_module(tmp_path, monkeypatch, "library_example")
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(tmp_path / "library_example.py"), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["majority", "cf", "letter-prior"]
    assert all(line.endswith("over 50 people") for line in lines)
    board = (tmp_path / "runs-library" / "leaderboard.md").read_text()
    assert "majority" in board and "cf" in board


# Flags of other tools the README names (pip, install.sh, lm-eval's CLI, torchrun, accelerate).
FOREIGN_FLAGS = {
    "pip": {"--no-deps", "--index-url", "--extra-index-url"},
    "install.sh": {"--cpu", "--dev"},
    "lm_eval": {"--include_path", "--tasks", "--metadata", "--model", "--model_args", "--device", "--use_cache", "--log_samples"},
    "torchrun": {"--nproc_per_node"},
    "accelerate": {"--num_processes", "--cpu"},
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


def sub_parsers(parser, prefix: str = "") -> dict:
    """Every persona-bench sub-command's parser, by its words (``"personas fit"``)."""
    import argparse

    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words = f"{prefix} {name}".strip()
                found[words] = child
                found.update(sub_parsers(child, words))
    return found


def method_flags(method) -> set[str]:
    from dataclasses import fields

    names = {f.name.replace("_", "-") for f in fields(method.Options)}
    return {f"--{n}" for n in names} | {f"--no-{n}" for n in names}


def readme_commands() -> list[str]:
    """Every persona-bench command line the README shows (code blocks and inline code)."""
    spans = re.findall(r"`([^`\n]+)`", README) + [line.strip() for line in README.splitlines() if line.startswith("    ")]
    commands = []
    for span in spans:
        for part in re.split(r"&&|\|", span):
            match = re.search(r"(?:persona-bench|-m persona_bench)\s+(.*)", part)
            if match:
                commands.append(match.group(1).split("#")[0])
    return commands


def test_every_flag_the_readme_names_is_accepted_by_the_cli(tmp_path, monkeypatch):
    """Flags in a persona-bench command are checked against that sub-command (and its method's
    options; the README's worked examples are imported for theirs); any other flag must belong to
    some persona-bench command or method, or to a tool in FOREIGN_FLAGS."""
    from persona_bench.app.cli import build_parser
    from persona_bench.harness.method.base import load_methods

    readme_module(tmp_path, monkeypatch, "my_methods")
    readme_module(tmp_path, monkeypatch, "my_steering")
    try:
        methods = dict(load_methods(("my_methods", "my_steering")))
    finally:
        METHODS.pop("nearest-neighbour", None)
        METHODS.pop("last-layer-shift", None)
        STEERERS.pop("last-layer-shift", None)
        sys.modules.pop("my_methods", None)
        sys.modules.pop("my_steering", None)
    parsers = sub_parsers(build_parser())
    own = {words: {s for a in p._actions for s in a.option_strings} for words, p in parsers.items()}
    every_method_flag = set().union(*(method_flags(m) for m in methods.values()))
    problems, checked = [], 0
    for command in readme_commands():
        words = command.split()
        sub = next((w for w in (" ".join(words[:2]), words[0] if words else "") if w in parsers), None)
        if sub is None:
            if words and not words[0].startswith("-"):
                problems.append(f"unknown sub-command in `persona-bench {command}`")
            continue
        allowed = set(own[sub])
        if sub in ("run", "train", "curve"):
            named = re.search(r"--method\s+([\w-]+)", command)
            method = named.group(1) if named else ("spm" if sub != "run" else None)
            allowed |= method_flags(methods[method]) if method in methods else every_method_flag
        for flag in FLAG.findall(command):
            checked += 1
            if flag not in allowed:
                problems.append(f"`persona-bench {sub}` does not accept {flag} (README: {command.strip()})")
    anywhere = set().union(*own.values(), every_method_flag, *FOREIGN_FLAGS.values())
    for flag in sorted(set(FLAG.findall(README))):
        checked += 1
        if flag not in anywhere:
            problems.append(f"the README names {flag}, which no persona-bench command or method accepts")
    assert checked > 50
    assert not problems, "\n".join(problems)


def test_the_version_is_one_in_the_package_its_metadata_the_citation_and_the_changelog():
    from persona_bench.version import __version__

    assert re.search(r'^version = "(\S+)"$', (ROOT / "pyproject.toml").read_text(), re.M).group(1) == __version__  # no tomllib on 3.10
    assert re.search(r"^version: (\S+)$", (ROOT / "CITATION.cff").read_text(), re.M).group(1) == __version__
    latest = re.search(r"^## (\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)  # past any "## Unreleased"
    assert latest == __version__, "the CHANGELOG's latest release names the package's version"
