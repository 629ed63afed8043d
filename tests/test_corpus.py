"""Every case of the damaged-input corpus (tests/corpus/generate.py) gets one clear error line
naming what is wrong, with exit status 2: never a traceback, never a silent success, and nothing
written or executed that the damaged input asked for."""
from __future__ import annotations

import json

import pytest

from persona_bench.app.cli import main

from .corpus.generate import CASES, generate


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return {folder.name: folder for folder in generate(tmp_path_factory.mktemp("corpus"))}


@pytest.mark.parametrize("name", list(CASES))
def test_damaged_input_gets_one_clear_line(name, corpus, capsys, monkeypatch, empty_hf_cache):
    folder = corpus[name]
    spec = json.loads((folder / "case.json").read_text())
    for variable, value in spec["env"].items():
        monkeypatch.setenv(variable, value.replace("{case}", str(folder)))
    argv = [part.replace("{case}", str(folder)) for part in spec["argv"]]
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse's own errors (usage line, then the error line)
        status = exc.code
    assert status == spec["exit"]
    captured = capsys.readouterr()
    output = captured.out + captured.err
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1, captured.err
    assert spec["expect"] in errors[0]
    assert "Traceback" not in output
    for text in spec["absent"]:
        assert text not in output
    if "never_created" in spec:
        assert not (folder / spec["never_created"]).exists()
