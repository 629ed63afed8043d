"""``--preset paper``: every setting of Li et al. 2023 reaches the code that uses it; the paper's
fold-in (optimise a person's vector, questions fixed) and loss (Eq. 2, the response token) on
planted data and by hand."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from persona_bench.app.cli import main, parse_command_line, run_config
from persona_bench.harness.personas import cf
from persona_bench.harness.personas.cf import ALSFactorizer, AdamFactorizer, Ratings, optimise_rows
from persona_bench.harness.runs.record import RunRecord
from persona_bench.harness.training.loop import TrainOptions, answer_loss
from persona_bench.tasks.prompts import PROMPTS, context_prompt, demographics_prompt, raw_prompt, styled


ROOT = Path(__file__).resolve().parents[1]


def config_of(argv: list[str]):
    _, args, extra = parse_command_line(["run", *argv])
    return run_config(args, extra)


def test_the_paper_preset_stands_for_the_paper_settings_and_explicit_flags_win():
    paper = config_of(["--method", "spm", "--preset", "paper"])
    assert (paper.cf_solver, paper.fold_in, paper.prompt_texts) == ("adam", "optimise", "paper")
    assert paper.method_options == {"recipe": "paper", "standardise": False, "loss": "response"}  # prefix, 1 token, 32 units: the defaults
    assert paper.as_dict()["fold_in"] == "optimise" and "fold_in" not in config_of(["--method", "spm"]).as_dict()
    raw = config_of(["--method", "raw", "--preset", "paper"])
    assert raw.prompt_texts == "paper" and raw.method_options == {}, "a prompting method takes the paper's prompts and nothing else"
    mine = config_of(["--method", "spm", "--preset", "paper", "--loss", "letters", "--fold-in", "ridge"])
    assert mine.fold_in == "ridge" and "loss" not in mine.method_options
    majority = config_of(["--method", "majority", "--preset", "paper"])
    assert (majority.prompt_texts, majority.fold_in) == ("default", "ridge") and majority.run_id() == config_of(["--method", "majority", "--cf-solver", "adam"]).run_id()
    finetune = config_of(["--method", "finetune", "--preset", "paper"])  # no paper recipe there: it keeps its own
    assert "recipe" not in finetune.method_options and finetune.prompt_texts == "paper" and finetune.fold_in == "ridge"


def test_every_paper_setting_reaches_the_code_that_uses_it(tiny_model_path, tmp_path, monkeypatch):
    folds = []
    original = cf.optimise_rows
    monkeypatch.setattr(cf, "optimise_rows", lambda *a, **k: folds.append(a[0].n_users) or original(*a, **k))
    flags = ["run", "--method", "spm", "--preset", "paper", "--model", str(tiny_model_path), "--data", "demo:600",
             "--max-train-answers", "64", "--epochs", "1", "--max-eval-people", "5", "--out", str(tmp_path), "--no-references"]
    assert main([*flags, "--users", "unseen", "--k", "5"]) == 0
    record = json.loads(next(tmp_path.glob("spm-*/results.json")).read_text())
    # the record names the preset and lists what it resolved to
    assert record["preset"] == "paper" and RunRecord.from_dict(record).preset == "paper"
    assert (record["cf_solver"], record["fold_in"], record["prompt_texts"]) == ("adam", "optimise", "paper")
    assert {k: record["settings"][k] for k in ("recipe", "mode", "virtual_tokens", "hidden", "placement", "init", "lr", "standardise", "loss")} == {
        "recipe": "paper", "mode": "prefix", "virtual_tokens": 1, "hidden": 32, "placement": "start", "init": "paper", "lr": 1e-3,
        "standardise": False, "loss": "response"}
    shared = next((tmp_path / "_shared").iterdir())
    # CF: the paper's objective and optimiser
    assert json.loads((shared / "personas-adam-d16" / "personas.json").read_text())["solver"] == "adam"
    # fold-in: the unseen people (and the training's validation people) were optimised in
    assert folds and max(folds) >= 5
    # SPM shape and input: prefix, one virtual token, 32 hidden units, raw persona vectors
    module = next(shared.glob("steering/spm-*/best"))
    config = json.loads((module / "steerer.json").read_text())["config"]
    assert (config["mode"], config["virtual_tokens"], config["hidden"], config["placement"]) == ("prefix", 1, 32, "start")
    weights = load_file(str(module / "steerer.safetensors"))
    assert torch.equal(weights["mlp.persona_mean"], torch.zeros(16)) and torch.equal(weights["mlp.persona_scale"], torch.ones(16))
    # loss: Eq. 2's, on the response token
    training = json.loads(next(shared.glob("steering/spm-*/training.json")).read_text())
    assert training["options"]["loss"] == "response" and record["membership_audit"]["objective"] == "response"  # the audit attacks that loss
    # prompt: the paper's words, in the docs lm-eval scored (its doc_to_text is the task's prompt builder)
    doc = json.loads(next(tmp_path.glob("spm-*/docs.jsonl")).read_text().splitlines()[0])
    assert doc["prompt_texts"] == "paper" and "\nPlease respond solely with A/B/" in PROMPTS["opinionqa_persona_raw"](doc)


def test_paper_prompt_texts_follow_figure_4():
    doc = {"question": "How often, if ever, do you attend gun shows", "options": ["Often", "Sometimes", "Hardly ever", "Never"],
           "traits": {"AGE": "65+", "SEX": "Female", "RACE": "Refused"},
           "context": [{"question": "Have you ever owned a gun?", "options": ["Yes", "No"], "answer": 0}]}
    [paper] = styled([doc], 1, "paper")
    assert raw_prompt(paper) == "How often, if ever, do you attend gun shows\nPlease respond solely with A/B/C/D:\nA. Often\nB. Sometimes\nC. Hardly ever\nD. Never"
    assert demographics_prompt(paper).startswith("A person can be described as follows:\n\nAGE: 65+\nSEX: Female\n\nBased on the above demographic information")
    assert context_prompt(paper).startswith("The person has the following opinions:\n\nHave you ever owned a gun?\nA. Yes\nB. No\nAnswer: A\n\nBased on the above list of opinions")
    assert styled([doc], 1, "default") == [doc] and raw_prompt(doc).startswith("Question: ")


@pytest.mark.parametrize("solver", [ALSFactorizer, AdamFactorizer])
def test_fold_in_by_optimising_recovers_a_planted_person(solver):
    rng = np.random.default_rng(0)
    n_items, dim = 40, 4
    model = solver(dim=dim)
    model.item_factors = rng.normal(size=(n_items, dim))
    if solver is ALSFactorizer:
        model.mean, model.item_bias = np.asarray(0.5), rng.normal(0, 0.1, n_items)
    model.prior_mean = np.zeros(model.item_features().shape[1])
    model.prior_penalty = np.ones_like(model.prior_mean)
    planted = rng.normal(size=(3, model.item_features().shape[1]))
    users, items = np.repeat(np.arange(3), n_items), np.tile(np.arange(n_items), 3)
    values = model.predict(planted[users], items)
    found = model.fold_in(Ratings(users, items, values, 3, n_items), "optimise")
    np.testing.assert_allclose(found, planted, atol=1e-6)
    ridge = model.fold_in(Ratings(users, items, values, 3, n_items), "ridge")
    assert np.abs(ridge - planted).max() > 1e-3, "the ridge pulls toward its prior; optimising does not"


def test_fold_in_with_fewer_answers_than_dimensions_stays_near_the_start():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(10, 6))
    start = rng.normal(size=6)
    ratings = Ratings(np.zeros(2, dtype=int), np.array([0, 1]), np.array([0.3, 0.9]), 1, 10)
    found = optimise_rows(ratings, ratings.values, features, start)
    np.testing.assert_allclose(found[0] @ features[[0, 1]].T, [0.3, 0.9], atol=1e-6)  # fits both answers
    minimal = start + np.linalg.lstsq(features[[0, 1]], ratings.values - features[[0, 1]] @ start, rcond=None)[0]
    assert np.linalg.norm(found[0] - start) <= np.linalg.norm(minimal - start) * 1.5  # about the nearest such vector


def test_the_response_loss_is_the_answer_tokens_negative_log_probability():
    vocabulary_logits = torch.tensor([[2.0, 0.5, -1.0, 0.0, 3.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    logprobs_all = torch.log_softmax(vocabulary_logits, -1)
    letters = torch.tensor([[0, 1, 2], [3, 4, -1]])  # token ids of each doc's option letters (-1: no option)
    picked = logprobs_all.gather(1, letters.clamp(min=0)).masked_fill(letters < 0, float("-inf"))
    targets = torch.tensor([1, 0])
    by_hand = [-(0.5 - np.log(np.exp([2.0, 0.5, -1.0, 0.0, 3.0]).sum())), -(0.4 - np.log(np.exp([0.1, 0.2, 0.3, 0.4, 0.5]).sum()))]
    np.testing.assert_allclose(answer_loss(picked, targets, "response").numpy(), by_hand, rtol=1e-6)
    among_letters = [-(0.5 - np.log(np.exp([2.0, 0.5, -1.0]).sum())), -(0.4 - np.log(np.exp([0.4, 0.5]).sum()))]
    np.testing.assert_allclose(answer_loss(picked, targets, "letters").numpy(), among_letters, rtol=1e-6)
    assert (answer_loss(picked, targets, "response") > answer_loss(picked, targets, "letters")).all()
    with pytest.raises(Exception, match="loss 'tokens'"):
        TrainOptions(loss="tokens")


def paper_grid_on_the_demo(tmp_path):
    """grids/paper.yaml as committed, its data swapped for a small demo (path, configs)."""
    import yaml

    from persona_bench.app.sweep import load_grid

    spec = yaml.safe_load((ROOT / "grids" / "paper.yaml").read_text())
    spec["defaults"].update(data="demo:300", max_eval_people=3)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    return tmp_path / "grid.yaml", load_grid(tmp_path / "grid.yaml")


def test_the_paper_grid_runs_every_table_under_the_preset(tmp_path):
    """Every run of grids/paper.yaml carries the paper's settings, and Tables 3-11 are all there."""
    _, configs = paper_grid_on_the_demo(tmp_path)
    assert {c.cf_solver for c in configs} == {"adam"}
    assert {c.prompt_texts for c in configs if c.method in ("spm", "raw", "demographics", "context")} == {"paper"}
    assert {c.fold_in for c in configs if c.method in ("spm", "cf")} == {"optimise"}
    assert {(c.fold_in, c.prompt_texts) for c in configs if c.method == "majority"} == {("ridge", "default")}  # settings it does not use
    spm = [c for c in configs if c.method == "spm"]
    assert all(c.method_options.get("loss") == "response" and c.method_options.get("standardise") is False for c in spm)
    personas = {c.persona for c in spm}
    assert {"cluster:20", "cluster:30", "cluster:50", "demographic:INCOME", "demographic:RACE", "demographic:RELIG",
            "demographic:INCOMExPOLPARTY", "demographic:RELIGxPOLPARTY"} <= personas  # Tables 9-11
    unseen_baselines = {c.method for c in configs if c.users == "unseen" and c.model == "gpt-j-6b"}
    assert unseen_baselines == {"spm", "raw", "demographics", "context"}  # Table 6


def test_a_grid_entry_under_a_preset_is_the_run_its_command_line_makes(tmp_path):
    from persona_bench.app.sweep import load_grid

    (tmp_path / "grid.yaml").write_text("defaults: {preset: paper, data: demo}\ngrid:\n  - method: spm\n    options: {loss: letters}\n  - method: majority\n")
    spm, majority = load_grid(tmp_path / "grid.yaml")
    assert spm.run_id() == config_of(["--method", "spm", "--preset", "paper", "--loss", "letters"]).run_id()
    assert majority.run_id() == config_of(["--method", "majority", "--preset", "paper"]).run_id()


@pytest.mark.slow
def test_the_paper_grid_plans(tmp_path, capsys):
    """The whole of grids/paper.yaml is costed (about 150 runs: minutes, hence slow)."""
    grid, configs = paper_grid_on_the_demo(tmp_path)
    assert main(["sweep", str(grid), "--plan", "--out", str(tmp_path / "runs")]) == 0
    assert f"Total: {len(configs)} runs" in capsys.readouterr().out


def test_paper_md_has_a_section_per_table_and_figure():
    text = (ROOT / "PAPER.md").read_text()
    index = text.split("## Index")[1].split("\n## ")[0]
    covered = set()
    for row in index.splitlines():
        first = row.split("|")[1].strip() if row.startswith("|") else ""
        for kind, numbers in ((k, first[len(k):]) for k in ("Tables ", "Table ", "Figure ") if first.startswith(k)):
            if "-" in numbers:
                low, high = numbers.split("-")
                covered |= {f"{kind.strip().rstrip('s')} {n}" for n in range(int(low), int(high) + 1)}
            else:
                covered |= {f"{kind.strip().rstrip('s')} {n.strip()}" for n in numbers.split(",")}
    assert covered == {f"Table {n}" for n in range(1, 19)} | {f"Figure {n}" for n in range(1, 5)}
