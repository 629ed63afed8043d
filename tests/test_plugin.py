"""Outside plugins: packages persona-bench has never heard of, found through its entry points
(a method; a data source and a metric), run through the command line and reach the leaderboard;
the leaderboard renders again once the plugin is gone; no file of persona-bench is touched. A
metric registered in code reaches results.json, the leaderboard and its CSV the same way."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import persona_bench

PLUGIN = '''
"""A throwaway method: the last listed option, or the first with --first."""
from dataclasses import dataclass

import numpy as np

from persona_bench.harness.method.base import Method, register_method


@register_method
class LastOption(Method):
    name = "outside-last-option"
    description = "always the last listed option (an outside plugin)"
    kind = "reference"

    @dataclass(frozen=True)
    class Options:
        first: bool = False

    def score(self, docs, context):
        scores = np.full((len(docs), int(docs["n_options"].max())), -np.inf)
        for i, n in enumerate(docs["n_options"]):
            scores[i, :n] = np.arange(n)[::-1] if self.options.first else np.arange(n)
        return scores
'''


def package_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted(Path(persona_bench.__file__).parent.rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "persona_bench", *args], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow  # ~27 s of subprocesses; the built-in methods register through the same entry point in every run
def test_an_outside_plugin_runs_and_its_runs_render_without_it(tmp_path):
    before = package_digest()
    site = tmp_path / "site"
    (site / "outside_methods").mkdir(parents=True)
    (site / "outside_methods" / "__init__.py").write_text(PLUGIN)
    info = site / "outside_methods-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-methods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[persona_bench.methods]\noutside-last-option = outside_methods\n")
    base = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    base["PERSONA_BENCH_CACHE"] = str(tmp_path / "cache")
    with_plugin = {**base, "PYTHONPATH": str(site)}

    listing = cli("methods", env=with_plugin)
    assert listing.returncode == 0 and "outside-last-option" in listing.stdout
    runs, board = tmp_path / "runs", tmp_path / "board"
    ran = cli("run", "--method", "outside-last-option", "--data", "demo:600", "--max-eval-people", "20", "--out", str(runs), env=with_plugin)
    assert ran.returncode == 0, ran.stderr
    assert "outside-last-option" in ran.stdout and "majority" in ran.stdout  # printed beside the references
    drawn = cli("leaderboard", "--runs", str(runs), "--out", str(board / "with.md"), env=with_plugin)
    assert drawn.returncode == 0, drawn.stderr

    assert cli("methods", env=base).stdout.count("outside-last-option") == 0  # the plugin is gone
    again = cli("leaderboard", "--runs", str(runs), "--out", str(board / "without.md"), env=base)
    assert again.returncode == 0, again.stderr
    tables = [[line for line in (board / name).read_text().splitlines() if line.startswith("|")] for name in ("with.md", "without.md")]
    assert tables[0] == tables[1] and any("outside-last-option" in line for line in tables[1])
    assert "outside-last-option" in (board / "without.csv").read_text()
    assert package_digest() == before


LOADER_PLUGIN = '''
"""A data source persona-bench has never heard of: one JSON file (questions, people, answers)."""
import json
from pathlib import Path

import pandas as pd

from persona_bench import Question, Survey, register_loader
from persona_bench.harness.data.survey import SurveyError, responses_frame


@register_loader("jsonsurvey")
def load_json_survey(argument, waves):
    path = Path(argument)
    if not path.is_file():
        raise SurveyError(f"{path}: no such file")
    data = json.loads(path.read_text())
    questions = {q["key"]: Question(q["key"], q["wave"], q["text"], tuple(q["options"]), tuple(q["ordinal"])) for q in data["questions"]}
    people = pd.DataFrame(data["people"]).set_index("id")
    rows = data["answers"]
    values = [questions[q].values[o] for _, q, o in rows]
    answers = responses_frame([r for r, _, _ in rows], [q for _, q, _ in rows], [o for _, _, o in rows], values)
    traits = {trait: tuple(sorted(people[trait].unique())) for trait in data["traits"]}
    return Survey(f"json:{path.name}", questions, traits, people, answers).select_waves(waves)
'''


METRIC_PLUGIN = '''
"""A per-person metric persona-bench has never heard of: how sure the method was of its top answer."""
from persona_bench import register_metric


@register_metric("top_probability", description="mean probability the method put on its top answer")
def top_probability(person):
    return float(person.probabilities.max(axis=1).mean())
'''


def test_an_outside_package_s_data_source_and_metric_run_and_rank_without_persona_bench_edits(tmp_path):
    from persona_bench import load_survey

    demo = load_survey("demo:300")
    people = demo.respondents.reset_index(names="id")
    data = {
        "questions": [{"key": q.key, "wave": q.wave, "text": q.text, "options": list(q.options), "ordinal": list(q.ordinal)}
                      for q in demo.questions.values()],
        "people": people.to_dict(orient="records"), "traits": list(demo.traits),
        "answers": [[r, q, int(o)] for r, q, o in zip(demo.responses["respondent"], demo.responses["question"], demo.responses["option"])],
    }
    survey_file = tmp_path / "survey.json"
    survey_file.write_text(json.dumps(data))
    before = package_digest()
    site = tmp_path / "site"
    for name, code in (("outside_loader", LOADER_PLUGIN), ("outside_metric", METRIC_PLUGIN)):
        (site / name).mkdir(parents=True)
        (site / name / "__init__.py").write_text(code)
    info = site / "outside_extras-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: outside-extras\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[persona_bench.loaders]\njsonsurvey = outside_loader\n\n"
                                           "[persona_bench.metrics]\ntop_probability = outside_metric\n")
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(site), "PERSONA_BENCH_CACHE": str(tmp_path / "cache")}

    spec, runs = f"jsonsurvey:{survey_file}", tmp_path / "runs"
    ran = cli("run", "--method", "majority", "--data", spec, "--max-eval-people", "20", "--out", str(runs), env=env)
    assert ran.returncode == 0, ran.stderr
    record = json.loads(next(runs.glob("majority-*/results.json")).read_text())
    assert record["data"] == spec and record["n_people"] == 20
    assert 0 < record["metrics"]["top_probability"]["value"] <= 1 and record["metrics"]["top_probability"]["higher_is_better"]
    without = {**env, "PYTHONPATH": ""}  # the package gone: its runs still render, ranked by its stored metric
    board = tmp_path / "board.md"
    drawn = cli("leaderboard", "--runs", str(runs), "--out", str(board), "--metric", "top_probability", env=without)
    assert drawn.returncode == 0, drawn.stderr
    titles = "\n".join(line for line in board.read_text().splitlines() if line.startswith("#"))
    assert "jsonsurvey:survey.json [all]" in titles and str(survey_file) not in titles  # the data's name, not its path
    assert "Ranked by **top_probability** (higher is better)" in board.read_text()
    assert "top_probability" in (tmp_path / "board.csv").read_text()
    unknown = cli("data", "summary", "--data", "jsonsurvey:x", env=without)
    assert unknown.returncode == 2 and "unknown kind 'jsonsurvey'" in unknown.stderr
    assert package_digest() == before


def test_a_metric_registered_in_code_is_computed_ranked_and_exported(tmp_path, capsys):
    import csv

    from persona_bench.app.cli import main
    from persona_bench.harness.metrics.registry import METRICS, register_metric

    @register_metric("first_option_share", higher_is_better=False, description="test: share of answers predicted as the first option")
    def first_option_share(person):
        return float((person.prediction == 0).mean())

    runs = tmp_path / "runs"
    try:
        assert main(["metrics"]) == 0 and "first_option_share" in capsys.readouterr().out
        assert main(["run", "--method", "cf", "--data", "demo:300", "--max-eval-people", "20", "--out", str(runs)]) == 0
        record = json.loads(next(runs.glob("cf-*/results.json")).read_text())
        assert record["metrics"]["first_option_share"]["higher_is_better"] is False
        assert 0 <= record["metrics"]["first_option_share"]["value"] <= 1 and len(record["metrics"]["first_option_share"]["ci95"]) == 2
        assert main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "board.md"), "--metric", "first_option_share"]) == 0
    finally:
        METRICS.pop("first_option_share", None)
    board = (tmp_path / "board.md").read_text()
    assert "Ranked by **first_option_share** (lower is better)" in board
    cells = list(csv.DictReader((tmp_path / "board.csv").open()))
    assert {c["metric"] for c in cells if c["metric"]} == {"first_option_share"}
    assert main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "x.md"), "--metric", "nope"]) == 2
    assert "--metric nope: no run" in capsys.readouterr().err
