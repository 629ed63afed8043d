"""Prompt formats, letter scoring equal to stock lm-eval HFLM, macro aggregation inside lm-eval,
context retrieval order, the score cache, model aliases, and end-to-end prompt runs."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from persona_bench.baselines.prompting import Context
from persona_bench.app.cli import main
from persona_bench.harness.scoring.evaluation import evaluate_records
from persona_bench.harness.scoring.lm import LetterScoringLM
from persona_bench.harness.scoring.models import ModelUnavailable, resolve_model
from persona_bench.tasks.prompts import context_prompt, demographics_prompt, raw_prompt

DOC = {
    "question": "How safe is your community?",
    "options": ["Very safe", "Not safe"],
    "traits": {"AGE": "65+", "SEX": "", "POLPARTY": "Refused", "RELIG": "Jewish"},
    "context": [{"question": "Do you worry?", "options": ["A lot", "Not at all"], "answer": 1}],
}


def test_raw_prompt_is_the_lettered_question():
    assert raw_prompt(DOC) == "Question: How safe is your community?\nA. Very safe\nB. Not safe"


def test_demographics_prompt_lists_known_traits_only():
    prompt = demographics_prompt(DOC)
    assert "Age: 65+" in prompt and "Religion: Jewish" in prompt
    assert "Sex" not in prompt and "Political party" not in prompt
    assert prompt.endswith(raw_prompt(DOC))


def test_context_prompt_shows_earlier_answers_as_letters():
    prompt = context_prompt(DOC)
    assert "Question: Do you worry?\nA. A lot\nB. Not at all\nAnswer: B" in prompt
    assert prompt.endswith(raw_prompt(DOC))


def requests_for(contexts: list[str], letters: str = "ABCD") -> list[Instance]:
    return [
        Instance("loglikelihood", doc={}, arguments=(context, f" {letter}"), idx=i)
        for context in contexts
        for i, letter in enumerate(letters)
    ]


@pytest.mark.parametrize("architecture", ["llama", "gpt2", "falcon"])
def test_letter_log_probs_equal_stock_hflm(architecture, tmp_path):
    from lm_eval.models.huggingface import HFLM

    from .tiny_models import make_tiny_model

    folder = make_tiny_model(architecture, tmp_path / architecture)
    contexts = [raw_prompt(DOC) + "\nAnswer:", demographics_prompt(DOC) + "\nAnswer:", "Question: short?\nAnswer:"]
    requests = requests_for(contexts) + [Instance("loglikelihood", doc={}, arguments=(contexts[2], " Very safe"), idx=9)]
    ours = LetterScoringLM(pretrained=str(folder), device="cpu", score_cache=None, batch_tokens=64).loglikelihood(requests)
    stock = HFLM(pretrained=str(folder), device="cpu", batch_size=4).loglikelihood(requests)
    np.testing.assert_allclose([s for s, _ in ours], [s for s, _ in stock], atol=1e-4)
    assert [g for _, g in ours] == [g for _, g in stock]


def test_score_cache_is_reused_and_keyed_by_steering(tiny_model_path, tmp_path):
    requests = requests_for([raw_prompt(DOC) + "\nAnswer:"])
    lm = LetterScoringLM(pretrained=str(tiny_model_path), device="cpu", score_cache=str(tmp_path / "scores.sqlite"))
    first = lm.loglikelihood(requests)
    again = LetterScoringLM(pretrained=str(tiny_model_path), device="cpu", score_cache=str(tmp_path / "scores.sqlite"))

    def no_forward(*args, **kwargs):
        raise AssertionError("cached requests must not run the model")

    again.score_rows = no_forward
    assert again.loglikelihood(requests) == first
    again.steering_for = lambda request: ("persona-1", None)
    with pytest.raises(AssertionError, match="must not run"):
        again.loglikelihood(requests)


class FixedLM(LM):
    """Scores the doc's 'favourite' letter highest: a known pattern of right and wrong."""

    def loglikelihood(self, requests, disable_tqdm=False):
        return [(0.0 if r.arguments[1].strip() == r.doc["favourite"] else -1.0, False) for r in requests]

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def generate_until(self, requests, disable_tqdm=False):
        raise NotImplementedError


def test_lm_eval_reports_per_person_macro_accuracy(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from persona_bench.tasks import TASKS_DIR

    # person a: 1 of 1 right; person b: 1 of 3 right -> macro 2/3 (micro would be 1/2)
    plan = [("a", 0, "A"), ("b", 0, "A"), ("b", 1, "A"), ("b", 0, "B")]
    records = [
        {"doc_id": f"{p}|Q{i}", "respondent": p, "question": "Q?", "options": ["x", "y"], "choices": ["A", "B"],
         "target": t, "favourite": f}
        for i, (p, t, f) in enumerate(plan)
    ]
    scores = evaluate_records(records, "opinionqa_persona_raw", FixedLM(), tmp_path / "docs.jsonl")
    assert scores.argmax(axis=1).tolist() == [0, 0, 0, 1]
    manager = TaskManager(include_path=str(TASKS_DIR), include_defaults=False, metadata={"docs_path": str(tmp_path / "docs.jsonl")})
    output = simple_evaluate(model=FixedLM(), tasks=["opinionqa_persona_raw"], task_manager=manager, bootstrap_iters=0)
    assert output["results"]["opinionqa_persona_raw"]["macro_acc,none"] == pytest.approx(2 / 3)


def test_context_retrieval_picks_the_most_similar_other_questions():
    method = Context(Context.Options(k_context=2))
    keys = ["Q1", "Q2", "Q3", "Q4"]
    similarity = pd.DataFrame(
        [[1.0, 0.2, 0.9, 0.5], [0.2, 1.0, 0.1, 0.3], [0.9, 0.1, 1.0, 0.4], [0.5, 0.3, 0.4, 1.0]], index=keys, columns=keys
    )
    answered = pd.DataFrame({"question": ["Q1", "Q2", "Q3", "Q4"], "option": [0, 1, 2, 3]})
    assert method.most_similar(answered, "Q1", similarity) == [("Q3", 2), ("Q4", 3)]
    assert method.most_similar(answered.iloc[:2], "Q4", similarity) == [("Q1", 0), ("Q2", 1)]
    assert method.most_similar(answered.iloc[:0], "Q4", similarity) == []


def test_model_aliases_fail_clearly_offline(tmp_path, empty_hf_cache):
    with pytest.raises(ModelUnavailable, match="gpt-j-6b.*not in the Hugging Face cache"):
        resolve_model("gpt-j-6b")
    with pytest.raises(ModelUnavailable, match="unknown model 'gpt-7'"):
        resolve_model("gpt-7")
    with pytest.raises(ModelUnavailable, match="no config.json"):
        resolve_model(str(tmp_path))


def test_models_list_shows_every_alias(capsys):
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    for alias in ("smollm2-135m", "gpt-neo-1.3b", "gpt-neo-2.7b", "gpt-j-6b", "falcon-7b-instruct"):
        assert alias in listing


@pytest.mark.parametrize("method, extra", [("raw", []), ("demographics", []), ("context", ["--k-context", "3"]), ("raw", ["--chat-template"])])
def test_prompt_methods_run_end_to_end(method, extra, tiny_model_path, tmp_path, capsys):
    argv = ["run", "--method", method, "--model", str(tiny_model_path), "--data", "demo:600", "--max-eval-people", "15",
            "--out", str(tmp_path), "--no-references", *extra]
    assert main(argv) == 0
    result = json.loads(next(tmp_path.glob(f"{method}-*/results.json")).read_text())
    assert result["n_people"] == 15 and 0 <= result["accuracy"] <= 1
    docs = [json.loads(line) for line in next(tmp_path.glob(f"{method}-*/docs.jsonl")).read_text().splitlines()]
    assert len(docs) == result["n_answers"]
    if method == "context":
        assert all(len(d["context"]) <= 3 for d in docs) and any(d["context"] for d in docs)


def test_paper_model_fails_with_one_line(capsys, tmp_path, empty_hf_cache):
    assert main(["run", "--method", "raw", "--model", "falcon-7b-instruct", "--out", str(tmp_path), "--no-references"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1 and "falcon-7b-instruct" in err[-1] and "not in the Hugging Face cache" in err[-1]


@pytest.mark.slow  # lm-eval's own CLI in a subprocess (about 20 s); the same task through simple_evaluate runs by default
def test_lm_eval_cli_runs_the_task_with_our_model(tiny_model_path, tmp_path):
    import subprocess
    import sys

    records = [
        {"doc_id": f"p{i}|Q", "respondent": f"p{i}", "question": "Is it safe?", "options": ["Yes", "No"], "choices": ["A", "B"], "target": i % 2}
        for i in range(4)
    ]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    command = [sys.executable, "-m", "persona_bench.tasks", "run", "--tasks", "opinionqa_persona_raw",
               "--metadata", json.dumps({"docs_path": str(tmp_path / "docs.jsonl")}), "--model", "persona-bench-lm",
               "--model_args", f"pretrained={tiny_model_path},device=cpu,score_cache="]
    output = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert output.returncode == 0, output.stderr[-2000:]
    assert re.search(r"macro_acc\|\S*\s*\|\s*0\.5\s*\|", output.stdout), output.stdout  # one prompt for all: 2 of 4 right


def test_steering_contexts_are_read_from_the_model_input_folder(tmp_path):
    from persona_bench.harness.data.loaders.model_input import steering_contexts
    from persona_bench.harness.data.survey import SurveyError
    from persona_bench.tasks.prompts import steered_prompt

    folder = tmp_path / "opinionqa"
    (folder / "human_resp").mkdir(parents=True)
    (folder / "model_input").mkdir()
    (folder / "model_input" / "steer-qa.csv").write_text(
        "\tUnnamed: 0\tquestion\toptions\tcorrect\tmd\tsubgroup\n"
        "0\t0\tIn politics today, do you consider yourself a\t['Republican', 'Democrat', 'Refused']\tDemocrat\tPOLPARTY\tDemocrat\n")
    (folder / "model_input" / "steer-portray.csv").write_text(
        '\tUnnamed: 0\tquestion\tmd\tsubgroup\toptions\n0\t0\t"Answer as if you were a Democrat.\n"\tPOLPARTY\tDemocrat\t[]\n')
    qa = steering_contexts(folder, "qa")[("POLPARTY", "Democrat")]
    assert qa == "Question: In politics today, do you consider yourself a\nA. Republican\nB. Democrat\nC. Refused\nAnswer: B"
    assert steering_contexts(folder, "portray") == {("POLPARTY", "Democrat"): "Answer as if you were a Democrat."}
    with pytest.raises(SurveyError, match="steer-bio.csv: no such file"):
        steering_contexts(folder, "bio")
    doc = {"question": "Q?", "options": ["Yes", "No"], "steer": "Answer as if you were a Democrat."}
    assert steered_prompt(doc) == "Answer as if you were a Democrat.\n\nQuestion: Q?\nA. Yes\nB. No"
    assert steered_prompt({**doc, "steer": ""}) == "Question: Q?\nA. Yes\nB. No"


@pytest.mark.slow
def test_group_prompt_on_w26_reaches_the_group_tables(opinionqa_path, tiny_model_path, tmp_path):
    import json

    from persona_bench.app.cli import main

    runs = tmp_path / "runs"
    argv = ["run", "--method", "group-prompt", "--model", str(tiny_model_path), "--data", f"opinionqa:{opinionqa_path}",
            "--waves", "W26", "--max-eval-people", "30", "--style", "qa", "--out", str(runs)]
    assert main(argv) == 0
    result = json.loads(next(runs.glob("group-prompt-*/results.json")).read_text())
    assert 0 <= result["unsteered_docs"] < result["n_answers"] and "disagreement" in result["question_sets"]
    assert main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "L.md")]) == 0
    board = (tmp_path / "L.md").read_text()
    table = board[board.index("### Group alignment, disagreement questions"):]
    assert "group-prompt" in table.split("###")[1]


def test_group_prompt_writes_its_contexts_from_the_trait_name_where_the_data_has_none(tiny_model_path, tmp_path, capsys):
    import json

    from persona_bench.app.cli import main
    from persona_bench.tasks.prompts import group_context

    values = ["Republican", "Democrat", "Independent"]
    assert group_context("POLPARTY", "Democrat", values, "qa") == (
        "Question: What is your political party?\nA. Republican\nB. Democrat\nC. Independent\nAnswer: B")
    assert group_context("POLPARTY", "Democrat", values, "bio") == "My political party is Democrat."
    assert group_context("POLPARTY", "Democrat", values, "portray") == "Answer the following question as if your political party were Democrat."
    common = ["run", "--method", "group-prompt", "--model", str(tiny_model_path), "--data", "demo:300", "--max-eval-people", "8", "--out", str(tmp_path)]
    assert main([*common, "--contexts", "opinionqa"]) == 2
    assert "--contexts opinionqa reads model_input/steer-portray.csv" in capsys.readouterr().err
    assert main(common) == 0
    result = json.loads(next(tmp_path.glob("group-prompt-*/results.json")).read_text())
    assert result["steering_contexts"] == "generated" and 0 <= result["unsteered_docs"] < result["n_answers"]
