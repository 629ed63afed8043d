"""Slow tests on ../shared/data and the real SmolLM2-135M (run with ``pytest -m slow``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from lm_eval.api.instance import Instance

from persona_bench.app.cli import main
from persona_bench.harness.lm import LetterScoringLM
from persona_bench.harness.loaders import load_survey
from persona_bench.tasks.prompts import demographics_prompt, raw_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def w26(opinionqa_path):
    return load_survey(f"opinionqa:{opinionqa_path}", ["W26"])


def test_smollm2_letter_scores_equal_stock_hflm(w26):
    from lm_eval.models.huggingface import HFLM

    from persona_bench.harness.models import resolve_model

    folder = resolve_model("smollm2-135m")
    person = w26.respondents.iloc[0][list(w26.traits)].to_dict()
    contexts = []
    for question in list(w26.questions.values())[:6]:
        doc = {"question": question.text, "options": list(question.options), "traits": person}
        contexts += [raw_prompt(doc) + "\nAnswer:", demographics_prompt(doc) + "\nAnswer:"]
    requests = [Instance("loglikelihood", {}, (c, f" {letter}"), 0) for c in contexts for letter in "ABCD"]
    ours = LetterScoringLM(pretrained="smollm2-135m", device="cpu", score_cache=None).loglikelihood(requests)
    stock = HFLM(pretrained=str(folder), device="cpu", batch_size=8).loglikelihood(requests)
    np.testing.assert_allclose([s for s, _ in ours], [s for s, _ in stock], atol=1e-4)


@pytest.mark.parametrize("method, extra", [("raw", []), ("demographics", []), ("context", ["--k-context", "3"]),
                                           ("spm", ["--max-train-answers", "48", "--epochs", "1"])])
def test_smollm2_methods_on_w26(method, extra, opinionqa_path, tmp_path):
    argv = ["run", "--method", method, "--model", "smollm2-135m", "--data", f"opinionqa:{opinionqa_path}", "--waves", "W26",
            "--max-eval-people", "8", "--out", str(tmp_path), *extra]
    assert main(argv) == 0
    result = json.loads(next(tmp_path.glob(f"{method}-*/results.json")).read_text())
    assert result["n_people"] == 8 and 0 <= result["accuracy"] <= 1


def test_pew_and_opinionqa_give_the_same_reference_accuracy(opinionqa_path, tmp_path):
    shared = opinionqa_path.parent
    for data in (f"opinionqa:{opinionqa_path}", f"pew:{shared / 'pew_raw'}"):
        assert main(["run", "--method", "cf", "--data", data, "--waves", "W41", "--out", str(tmp_path / data[:3])]) == 0
    results = [json.loads(p.read_text()) for p in tmp_path.glob("*/cf-*/results.json")]
    assert len(results) == 2 and results[0]["accuracy"] == results[1]["accuracy"]
