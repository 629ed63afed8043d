"""Option order as a run setting (--option-order given|reversed|cyclic), the letter-prior reference
and the answer-position diagnostics: what tells a persona from a letter prior."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from persona_bench import RunConfig, evaluate
from persona_bench.harness.runs.store import read_samples
from persona_bench.harness.scoring.lm import LetterScoringLM
from persona_bench.harness.scoring.option_order import display_order, merged_scores, ordered_docs, positions

PEOPLE = 10


def run(method: str, order: str, runs_dir, model: str | None = None):
    config = RunConfig(method=method, data="demo:300", max_eval_people=PEOPLE, option_order=order, model=model)
    return evaluate(config, runs_dir, log=lambda message: None)


def test_orders_show_the_options_as_named():
    assert display_order(4, "given") == (0, 1, 2, 3)
    assert display_order(4, "reversed") == (3, 2, 1, 0)
    assert display_order(4, "cyclic", 1) == (1, 2, 3, 0)
    assert positions((1, 2, 3, 0)) == [3, 0, 1, 2]  # option 0 is shown last, at D


def test_cyclic_scores_every_rotation_of_every_doc(tmp_path, tiny_model_path, monkeypatch):
    requests = []
    scored = LetterScoringLM.loglikelihood

    def counted(self, batch, disable_tqdm=False):
        requests.extend(request.args for request in batch)
        return scored(self, batch, disable_tqdm)

    monkeypatch.setattr(LetterScoringLM, "loglikelihood", counted)
    given = run("raw", "given", tmp_path, str(tiny_model_path))
    given_requests, requests[:] = list(requests), []
    cyclic = run("raw", "cyclic", tmp_path, str(tiny_model_path))
    docs = read_samples(tmp_path / cyclic.run_id)
    n_options = np.array([np.isfinite(scores).sum() for scores in docs["scores"]])
    assert len(given_requests) == n_options.sum()  # one letter per option of each doc
    assert len(requests) == (n_options ** 2).sum()  # each of a doc's n rotations, n letters each
    prompts = pd.DataFrame({"context": [context for context, _ in requests]}).drop_duplicates()
    prompts["question"] = prompts["context"].str.split("\n").str[0]
    shown = prompts.groupby("question").size()  # distinct option orders shown per question
    widths = pd.Series(n_options, index=docs["question"]).groupby(level=0).first()
    assert len(shown) == len(widths) and sorted(shown.tolist()) == sorted(widths.tolist())
    assert cyclic.n_answers == given.n_answers == len(docs)  # scored on the same docs, rotations merged
    assert not np.array_equal(read_samples(tmp_path / given.run_id)["scores"].tolist(), docs["scores"].tolist())


@pytest.mark.parametrize("method", ["majority", "cf"])
def test_references_that_answer_by_option_are_unaffected(tmp_path, method):
    records = {order: run(method, order, tmp_path) for order in ("given", "reversed", "cyclic")}
    assert len({r.run_id for r in records.values()}) == 3  # the order is part of the run's identity
    samples = {order: read_samples(tmp_path / r.run_id) for order, r in records.items()}
    for order in ("reversed", "cyclic"):
        assert samples[order]["scores"].tolist() == samples["given"]["scores"].tolist()
        assert records[order].metrics == records["given"].metrics and records[order].accuracy == records["given"].accuracy
    assert records["cyclic"].config.option_order == "cyclic"
    from persona_bench import write_leaderboard

    write_leaderboard(tmp_path, tmp_path / "board.md")
    board = (tmp_path / "board.md").read_text()
    assert "### Every metric — demo:300 [all], options cyclic" in board and "### Answer positions — demo:300 [all], options reversed" in board
    assert "log_loss" in board and "collapsed_accuracy" in board and "A-rate %" in board


def test_letter_prior_is_a_rule_about_positions(tmp_path):
    records = {order: run("letter-prior", order, tmp_path) for order in ("given", "reversed", "cyclic")}
    given = read_samples(tmp_path / records["given"].run_id)
    width = given["scores"].map(lambda scores: int(np.isfinite(scores).sum()))
    assert (given.groupby(width)["prediction"].nunique() == 1).all()  # one letter per number of options, whatever the question
    assert records["given"].answer_positions["predicted"] != records["given"].answer_positions["chosen"]
    # reversed: trained and scored on reversed options, the rule picks the same options from the other end
    assert records["reversed"].accuracy == records["given"].accuracy
    # cyclic: every position is as common, nothing to exploit: no better than the first option everywhere
    assert records["cyclic"].accuracy < records["given"].accuracy


def test_merging_rotations_averages_distributions_and_keeps_alike_copies():
    docs = pd.DataFrame({"doc_id": ["a", "b"], "n_options": [2, 3]})
    shown = ordered_docs(docs, "cyclic")
    assert shown["doc_id"].tolist() == ["a#0", "a#1", "b#0", "b#1", "b#2"] and shown["source"].tolist() == [0, 0, 1, 1, 1]
    scores = np.array([[np.log(0.8), np.log(0.2), -np.inf], [np.log(0.4), np.log(0.6), -np.inf],
                       [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    merged = merged_scores(shown, scores, "logits", 2)
    assert np.exp(merged[0, :2]) == pytest.approx([0.6, 0.4]) and merged[0, 2] == -np.inf
    assert merged[1].tolist() == [1.0, 2.0, 3.0]  # copies alike: the scores themselves


def test_an_unknown_option_order_is_one_line():
    done = subprocess.run([sys.executable, "-m", "persona_bench", "run", "--method", "majority", "--option-order", "shuffled"],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "--option-order" in done.stderr and "given" in done.stderr and "cyclic" in done.stderr and "Traceback" not in done.stderr


def test_training_examples_show_the_options_in_the_runs_order(tiny_model_path, demo_survey):
    from persona_bench.harness.training.loop import build_examples

    lm = LetterScoringLM(pretrained=str(tiny_model_path), device="cpu", score_cache=None)
    answers = demo_survey.responses.head(40)[["respondent", "question", "option"]].reset_index(drop=True)
    personas = np.zeros((len(answers), 2))
    letter = {position: lm.encode_pair("x", f" {chr(65 + position)}")[1][0] for position in range(6)}
    given, flipped = (build_examples(answers, demo_survey, personas, lm, order) for order in ("given", "reversed"))
    cyclic = build_examples(answers, demo_survey, personas, lm, "cyclic", seed=3)
    for row, key in enumerate(answers["question"]):
        n = len(demo_survey.questions[key].options)
        assert given.letter_ids[row, :n].tolist() == [letter[p] for p in range(n)]
        assert flipped.letter_ids[row, :n].tolist() == [letter[n - 1 - p] for p in range(n)]  # option 0 is shown last
        text = lm.tokenizer.decode(flipped.prompts[row])
        options = demo_survey.questions[key].options
        assert text.index(f"A. {options[-1]}") < text.index(f"B. {options[-2]}")
    assert given.targets.tolist() == flipped.targets.tolist() == cyclic.targets.tolist()  # targets stay options
    rotated = [row for row in range(len(answers)) if cyclic.letter_ids[row, 0] != letter[0]]
    assert rotated and len(rotated) < len(answers)  # a rotation per answer, drawn with the seed
    subset = answers.iloc[::-3].reset_index(drop=True)  # another frame (the audit's): each answer keeps its rotation
    again = build_examples(subset, demo_survey, personas[: len(subset)], lm, "cyclic", seed=3)
    assert again.letter_ids.tolist() == cyclic.letter_ids[np.arange(len(answers))[::-3].copy()].tolist()


def test_contextual_calibration_divides_out_the_content_free_distribution():
    from persona_bench.baselines.prompting import calibrated

    scores = np.log(np.array([[0.6, 0.4, 1e-300], [0.5, 0.3, 0.2]]))
    scores[0, 2] = -np.inf
    free = np.log(np.array([[0.75, 0.25, 1.0], [0.2, 0.3, 0.5]]))
    free[0, 2] = -np.inf
    result = np.exp(calibrated(scores, free))
    assert result[0] == pytest.approx([1 / 3, 2 / 3, 0.0])
    ratio = np.array([0.5 / 0.2, 1.0, 0.4])
    assert result[1] == pytest.approx(ratio / ratio.sum())


def test_a_calibrated_prompt_scores_the_content_free_prompt_too(tmp_path, tiny_model_path):
    config = RunConfig(method="raw", data="demo:300", max_eval_people=PEOPLE, model=str(tiny_model_path),
                       method_options={"calibrate": "content-free"})
    record = evaluate(config, tmp_path, log=lambda message: None)
    plain = evaluate(RunConfig(method="raw", data="demo:300", max_eval_people=PEOPLE, model=str(tiny_model_path)), tmp_path,
                     log=lambda message: None)
    blank = [json.loads(line) for line in (tmp_path / record.run_id / "docs-content-free.jsonl").read_text().splitlines()]
    assert len(blank) == record.n_answers and {d["question"] for d in blank} == {"N/A"}
    assert all(set(d["options"]) == {"N/A"} for d in blank)
    assert record.variant == {"calibrate": "content-free"} and record.run_id != plain.run_id
    assert read_samples(tmp_path / record.run_id)["scores"].tolist() != read_samples(tmp_path / plain.run_id)["scores"].tolist()


def test_the_answer_position_table_reads_runs_of_different_widths():
    from persona_bench.leaderboard.tables import position_tables

    def row(method: str, kind: str, predicted: list, chosen: list) -> dict:
        return {"data": "demo", "waves_label": "all", "protocol": "heldout-questions", "option_order": "given", "users": "seen",
                "k": None, "max_eval_people": 10, "seed": 0, "persona": "individual", "model": "-", "method": method, "variant": "",
                "kind": kind, "train_answers": None, "finished_at": "2026-12-04", "answer_positions": {"predicted": predicted, "chosen": chosen},
                "metric": "accuracy", "score": 0.5, "score_ci95": [0.4, 0.6], "accuracy": 0.5, "run_id": method}

    frame = pd.DataFrame([row("raw", "prompting", [1.0, 0.0, 0.0], [0.5, 0.3, 0.2]),  # the widest question scored: 3
                          row("letter-prior", "reference", [0.0, 1.0, 0.0, 0.0, 0.0], [0.5, 0.3, 0.2, 0.0, 0.0])])  # the survey's: 5
    [table] = position_tables(frame)
    assert list(table.frame.columns) == ["method", "model", "A %", "B %", "C %"]
    assert table.frame["method"].tolist() == ["letter-prior", "raw", "the people's own answers"]
    assert table.frame.iloc[1]["A %"] == "100.0" and [c["a_rate"] for c in table.cells] == [0.0, 1.0]
