"""Reference predictors by hand, the runner's artifacts and reuse, and the CLI contract."""
from __future__ import annotations

import json
from contextlib import nullcontext

import numpy as np
import pandas as pd
import pytest

from persona_bench.app.cli import main
from persona_bench.harness.core.errors import ConfigError
from persona_bench import evaluate
from persona_bench.harness.runs.config import RunConfig
from persona_bench.harness.method.base import resolve_config
from persona_bench.harness.runs.store import read_samples

REQUIRED = {"method", "model", "data", "persona", "users", "k", "seed", "accuracy", "ci95", "n_people", "n_answers", "wall_seconds"}
quiet = lambda message: None  # noqa: E731


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def test_majority_predicts_each_questions_most_common_train_answer(runs):
    result = evaluate(RunConfig(method="majority", data="demo:600"), runs, log=quiet)
    samples = read_samples(runs / result.run_id)
    from persona_bench.harness.data.loaders import load_survey
    from persona_bench.harness.data.protocol import Split

    survey = load_survey("demo:600")
    split = Split.load(next((runs / "_shared").iterdir()), survey)
    train = split.train_answers().merge(survey.responses, on=["respondent", "question"])
    mode = train.groupby("question")["option"].agg(lambda o: o.value_counts().sort_index().idxmax())
    assert (samples["prediction"].to_numpy() == samples["question"].map(mode).to_numpy()).all()
    per_person = samples.groupby("respondent")["correct"].mean()
    assert result.accuracy == pytest.approx(per_person.mean())
    assert REQUIRED <= set(result.as_dict())


def test_references_rank_sensibly_on_the_demo(runs):
    accuracy = {
        m: evaluate(RunConfig(method=m, data="demo:600"), runs, log=quiet).accuracy
        for m in ("majority", "demographic-majority", "cf")
    }
    assert accuracy["cf"] > accuracy["demographic-majority"] >= accuracy["majority"] - 0.01
    assert accuracy["cf"] > accuracy["majority"] + 0.05


def test_cf_on_unseen_people_improves_with_more_answers(runs):
    accuracy = [evaluate(RunConfig(method="cf", data="demo:600", users="unseen", k=k), runs, log=quiet).accuracy for k in (1, 20)]
    assert accuracy[1] > accuracy[0]


def test_a_finished_run_is_reused_and_force_recomputes(runs):
    config = RunConfig(method="majority", data="demo:600", max_eval_people=30)
    first = evaluate(config, runs, log=quiet)
    messages = []
    assert evaluate(config, runs, log=messages.append) == first
    assert messages and "reusing" in messages[0]
    again = evaluate(config, runs, force=True, log=quiet)
    assert again.accuracy == first.accuracy and again.n_people == 30


def test_config_validation():
    with pytest.raises(ConfigError, match="needs --k"):
        resolve_config(RunConfig(method="cf", users="unseen"))
    with pytest.raises(ConfigError, match="unseen only"):
        resolve_config(RunConfig(method="cf", k=3))
    with pytest.raises(ConfigError, match="unknown method"):
        resolve_config(RunConfig(method="telepathy"))
    with pytest.raises(ConfigError, match="no option"):
        resolve_config(RunConfig(method="majority", method_options={"k_context": 3}))
    assert resolve_config(RunConfig(method="majority", model="gpt-j-6b", persona="cluster:3")).model is None


def test_cli_run_writes_results_and_prints_references(tmp_path, capsys):
    code = main(["run", "--method", "demographic-majority", "--traits", "POLPARTYxSEX", "--data", "demo:600", "--out", str(tmp_path)])
    assert code == 0
    output = capsys.readouterr().out
    assert "demographic-majority" in output and "majority" in output and "cf" in output
    assert "(the best no-LLM reference)" in output
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*/results.json")]
    assert {r["method"] for r in results} == {"demographic-majority", "majority", "cf", "letter-prior"}
    options = [r["method_options"] for r in results if r["method"] == "demographic-majority"]
    assert options == [{"traits": "POLPARTYxSEX"}]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["run", "--method", "nope"], "unknown method 'nope'"),
        (["run", "--method", "cf", "--users", "unseen"], "needs --k"),
        (["run", "--method", "cf", "--persona", "cluster:zero"], "--persona 'cluster:zero'"),
        (["data", "summary", "--data", "opinionqa:/no/such/place"], "no such folder"),
        (["run", "--method", "majority", "--k-context", "3"], None),
    ],
)
def test_cli_errors_are_one_line_with_status_2(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) if message is None else nullcontext():
        code = main([*argv, *(["--out", str(tmp_path)] if argv[0] == "run" else [])])
        assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    if message:
        assert len(err) == 1 and message in err[0]


def test_cli_data_summary_and_methods(capsys):
    assert main(["data", "summary"]) == 0
    assert "DEMO" in capsys.readouterr().out
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("majority", "demographic-majority", "cf"))


def test_personas_fit_writes_artifacts(tmp_path, capsys):
    assert main(["personas", "fit", "--data", "demo:600", "--out", str(tmp_path), "--ks", "1-6"]) == 0
    for name in ("personas.json", "cf.safetensors", "clusters.csv", "personas.md", "split.json"):
        assert (tmp_path / name).is_file()
    assert "Elbow pick: k =" in (tmp_path / "personas.md").read_text()
    clusters = pd.read_csv(tmp_path / "clusters.csv")
    assert clusters["cluster"].nunique() >= 2


def test_real_w26_references(opinionqa_path, tmp_path):
    data = f"opinionqa:{opinionqa_path}"
    majority = evaluate(RunConfig(method="majority", data=data, waves=("W26",)), tmp_path, log=quiet)
    cf = evaluate(RunConfig(method="cf", data=data, waves=("W26",)), tmp_path, log=quiet)
    assert 0.58 < majority.accuracy < 0.65
    assert cf.accuracy > majority.accuracy + 0.02
    assert np.isclose(sum(majority.ci95) / 2, majority.accuracy, atol=0.01)
