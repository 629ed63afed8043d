"""Sweeps expand and resume; the leaderboard renders tables, markers and plots; a toy method
registered in a test appears on it like any built-in method."""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from persona_bench.app.cli import main
from persona_bench.harness.core.errors import ConfigError
from persona_bench.harness.method.base import METHODS, Method, register_method
from persona_bench.app.sweep import expand, load_grid
from persona_bench.leaderboard import write_leaderboard


class FirstOption(Method):
    """Toy method for the test: always the first listed option."""

    name = "toy-first-option"
    kind = "prompting"  # stands in for an LLM method here: compared against the references

    @dataclass(frozen=True)
    class Options:
        bias: float = 1.0

    def score(self, docs, context):
        scores = np.full((len(docs), int(docs["n_options"].max())), -np.inf)
        for i, n in enumerate(docs["n_options"]):
            scores[i, :n] = 0.0
            scores[i, 0] = self.options.bias
        return scores


@pytest.fixture(scope="module")
def toy_registered():
    register_method(FirstOption)
    yield
    METHODS.pop(FirstOption.name)


GRID = """
defaults:
  data: demo:600
  max_eval_people: 60
grid:
  - method: [majority, cf, toy-first-option]
  - method: cf
    persona: [cluster:2, cluster:6, demographic:POLPARTY]
  - method: [majority, cf]
    users: unseen
    k: [1, 10]
"""


@pytest.fixture(scope="module")
def swept(tmp_path_factory, toy_registered):
    root = tmp_path_factory.mktemp("sweep")
    (root / "grid.yaml").write_text(GRID)
    assert main(["sweep", str(root / "grid.yaml"), "--out", str(root / "runs"), "--leaderboard", str(root / "board" / "LEADERBOARD.md")]) == 0
    return root


def test_grid_expands_lists_and_options():
    runs = expand({"method": ["a", "b"], "waves": [["W26"], ["W41"]], "options": {"k_context": [3, 5]}})
    assert len(runs) == 8
    assert {r["waves"] for r in runs} == {("W26",), ("W41",)}
    assert {r["method_options"]["k_context"] for r in runs} == {3, 5}


def test_grid_rejects_unknown_settings(tmp_path):
    (tmp_path / "grid.yaml").write_text("grid:\n  - method: majority\n    colour: blue\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_grid(tmp_path / "grid.yaml")
    (tmp_path / "bad.yaml").write_text("runs: []\n")
    with pytest.raises(ConfigError, match="needs a 'grid:' list"):
        load_grid(tmp_path / "bad.yaml")


def test_an_empty_options_section_is_no_options(tmp_path):
    (tmp_path / "grid.yaml").write_text("defaults:\n  options:\ngrid:\n  - method: majority\n    options:\n")
    assert [config.method_options for config in load_grid(tmp_path / "grid.yaml")] == [{}]


def test_toy_method_appears_on_the_leaderboard_with_a_marker(swept):
    board = (swept / "board" / "LEADERBOARD.md").read_text()
    header = next(line for line in board.splitlines() if line.startswith("| model"))
    assert "toy-first-option" in header and "majority" in header and "cf" in header
    toy_row = next(line for line in board.splitlines() if line.startswith("|") and "°" in line)
    assert "**" in toy_row  # the best cell of the row (cf) is bold
    assert "Cluster personas by number of clusters k" in board
    assert "Unseen users by number of answers folded in" in board
    for png in swept.glob("board/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(list(swept.glob("board/*.png"))) == 3


def test_the_persona_kinds_table_has_the_paper_table_5_columns_in_its_order(swept):
    board = (swept / "board" / "LEADERBOARD.md").read_text()
    section = board.split("### Persona kinds (paper Table 5)")[1].split("\n### ")[0]
    header, _, *rows = [line for line in section.splitlines() if line.startswith("|")]
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["model", "method", "demographic:POLPARTY", "cluster:6", "individual"]
    assert [row.split("|")[2].strip() for row in rows] == ["cf"]  # the one persona method; cluster:2 only in Table 11's sweep
    cells = pd.read_csv(swept / "board" / "LEADERBOARD.csv")
    table5 = cells[cells["table"].str.startswith("Persona kinds")]
    assert sorted(table5["value"]) == ["cluster:6", "demographic:POLPARTY", "individual"]


def test_the_paired_differences_table_holds_each_method_minus_each_reference(swept):
    from persona_bench.harness.metrics.registry import holm, paired_comparison
    from persona_bench.harness.runs.store import read_results, read_samples

    board = (swept / "board" / "LEADERBOARD.md").read_text()
    section = board.split("## Paired differences with the references")[1].split("\n## ")[0]
    assert section.count("### Paired differences — ") == 1  # the seen-users table; the unseen ones hold references only
    configs = {folder: read_results(folder).config for folder in (swept / "runs").iterdir() if (folder / "results.json").is_file()}
    runs = {config.method: folder for folder, config in configs.items() if config.users == "seen" and config.persona == "individual"}
    toy = read_samples(runs["toy-first-option"])
    expected = {name: paired_comparison(toy, read_samples(runs[name]), seed=0) for name in ("cf", "majority")}
    adjusted = dict(zip(expected, holm([c.p_value for c in expected.values()])))
    row = next(line for line in section.splitlines() if line.startswith("|") and "toy-first-option" in line)
    for name, comparison in expected.items():
        assert comparison.in_points() + ("*" if adjusted[name] < 0.05 else "") in row
    cells = pd.read_csv(swept / "board" / "LEADERBOARD.csv")
    differences = cells[cells["table"].str.startswith("Paired differences")].set_index("reference")
    assert set(differences.index) == {"cf", "majority"}
    assert differences.loc["majority", "difference"] == pytest.approx(expected["majority"].difference)


def test_sweep_resumes_without_recomputing(swept, capsys):
    assert main(["sweep", str(swept / "grid.yaml"), "--out", str(swept / "runs"), "--leaderboard", str(swept / "board" / "LEADERBOARD.md")]) == 0
    log = capsys.readouterr().err
    assert log.count("reusing finished run") == len(list((swept / "runs").glob("*/results.json")))


def test_leaderboard_holds_aggregates_only(swept, demo_survey):
    files = [path for path in (swept / "board").rglob("*") if path.is_file()]
    assert {path.suffix for path in files} >= {".md", ".csv"}
    ids = [str(respondent).encode() for respondent in demo_survey.respondents.index]
    assert ids[0].startswith(b"DEMO:")
    assert (swept / "board" / "LEADERBOARD_groups.csv.gz") in files
    for path in files:  # no respondent id leaves the runs folder, in any file of the leaderboard
        content = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        assert b"DEMO:" not in content and not any(respondent in content for respondent in ids[:200]), path


def test_group_cells_go_to_their_own_compressed_csv(swept, tmp_path, monkeypatch):
    board = swept / "board"
    groups, tables = pd.read_csv(board / "LEADERBOARD_groups.csv.gz"), pd.read_csv(board / "LEADERBOARD.csv")
    assert groups["group"].notna().any() and groups["table"].str.startswith(("Group alignment", "Steerability", "Subgroup")).all()
    assert "group" not in tables.columns and not tables["table"].isin(groups["table"]).any()
    markdown = (board / "LEADERBOARD.md").read_text()
    assert all(f"### {title}" in markdown for title in groups["table"].unique())
    again = [write_leaderboard(swept / "runs", tmp_path / name / "LEADERBOARD.md") for name in ("first", "second")]
    assert all(tmp_path / name / "LEADERBOARD_groups.csv.gz" in paths for name, paths in zip(("first", "second"), again))
    assert (tmp_path / "first" / "LEADERBOARD_groups.csv.gz").read_bytes() == (tmp_path / "second" / "LEADERBOARD_groups.csv.gz").read_bytes()
    monkeypatch.setattr("persona_bench.leaderboard.render.group_tables", lambda frame: [])
    write_leaderboard(swept / "runs", tmp_path / "first" / "LEADERBOARD.md")
    assert not (tmp_path / "first" / "LEADERBOARD_groups.csv.gz").exists()  # no cells of an earlier render left behind


def test_leaderboard_needs_runs(tmp_path):
    with pytest.raises(ConfigError, match="no finished runs"):
        write_leaderboard(tmp_path, tmp_path / "LEADERBOARD.md")


@pytest.mark.parametrize("grid", sorted((Path(__file__).resolve().parents[1] / "grids").glob("*.yaml")), ids=lambda p: p.name)
def test_committed_grids_resolve(grid):
    """Every grid in grids/ names existing methods, options and values (no data or model needed)."""
    assert load_grid(grid)


def test_a_table_of_every_eval_person_says_how_many_in_its_title():
    import pandas as pd

    from persona_bench.leaderboard.tables import scope_title

    scope = {"data": "opinionqa", "waves_label": "W26", "protocol": "answers", "option_order": "given", "users": "seen", "k": float("nan"),
             "max_eval_people": float("nan"), "seed": 0}
    assert scope_title(scope, pd.DataFrame({"n_people": [3334, 3334]})) == "opinionqa [W26], seen users, all 3,334 eval people, seed 0"
    assert scope_title(scope, pd.DataFrame({"n_people": [3333, 3334]})).endswith("all eval people (3,333-3,334), seed 0")
    assert scope_title({**scope, "max_eval_people": 50.0}, pd.DataFrame({"n_people": [48]})) == "opinionqa [W26], seen users, 50 eval people, seed 0"


def test_sweep_writes_the_page_with_html_and_never_hides_a_failed_run(tmp_path, monkeypatch, capsys):
    import persona_bench.app.sweep as sweep_module

    (tmp_path / "grid.yaml").write_text("defaults:\n  data: demo:300\n  max_eval_people: 20\ngrid:\n  - method: majority\n")
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "runs"), "--html"]) == 0
    assert (tmp_path / "runs" / "LEADERBOARD.html").is_file()
    assert "--html" in (tmp_path / "runs" / "LEADERBOARD.md").read_text().split("\n", 3)[2]
    import persona_bench.app.cli as cli_module

    def unwritable(*args, **kwargs):
        raise ConfigError("board/LEADERBOARD.md: cannot be written")

    monkeypatch.setattr(sweep_module, "sweep", lambda *args, **kwargs: ([object()], ["spm on demo: out of memory"]))
    monkeypatch.setattr(cli_module, "refresh_leaderboard", unwritable)
    capsys.readouterr()
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "failed: spm on demo: out of memory" in err and "cannot be written" in err


def test_sweep_refuses_a_data_name_that_names_no_data_before_running(tmp_path, capsys):
    (tmp_path / "grid.yaml").write_text("defaults:\n  data: demo:300\n  max_eval_people: 20\ngrid:\n  - method: majority\n")
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "runs"), "--data-name", "nosuch=Name"]) == 2
    assert "neither the grid nor" in capsys.readouterr().err and not (tmp_path / "runs").exists()
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--out", str(tmp_path / "runs"), "--data-name", "demo:300=Demo"]) == 0
    assert "### Demo [" in (tmp_path / "runs" / "LEADERBOARD.md").read_text()
