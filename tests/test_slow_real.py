"""Slow tests on ../shared/data and the real SmolLM2-135M (run with ``pytest -m slow``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from lm_eval.api.instance import Instance

from persona_bench.app.cli import main
from persona_bench.harness.scoring.lm import LetterScoringLM
from persona_bench.harness.data.loaders import load_survey
from persona_bench.tasks.prompts import demographics_prompt, raw_prompt

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def w26(opinionqa_path):
    return load_survey(f"opinionqa:{opinionqa_path}", ["W26"])


def test_smollm2_letter_scores_equal_stock_hflm(w26):
    from lm_eval.models.huggingface import HFLM

    from persona_bench.harness.scoring.models import resolve_model

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


def independent_group_figures(run_dir, survey, scores_are: str, seed: int = 0, halves: int = 10) -> dict[str, dict]:
    """Rep and TV per group recomputed from a run's samples with plain loops and scipy, following the
    definitions in harness/metrics/groups.py (the split-half draws follow its documented order)."""
    import gzip

    import pandas as pd
    from scipy.special import softmax
    from scipy.stats import wasserstein_distance

    samples = pd.DataFrame([json.loads(line) for line in gzip.open(run_dir / "samples.jsonl.gz", "rt")])
    weight = survey.respondents["weight"]

    def distance(p, q, ordinal):
        span = max(ordinal) - min(ordinal)
        return (wasserstein_distance(ordinal, ordinal, p, q) / span if span else np.nan), 0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum()

    def humans(rows, question):
        counts = np.zeros(len(survey.questions[question].options))
        for person, target in zip(rows["respondent"], rows["target"]):
            counts[target] += weight[person]
        return counts / counts.sum()

    def predicted(row):
        scores = np.asarray(row, dtype=float)
        return softmax(scores) if scores_are == "logits" else scores / scores.sum()

    people = list(dict.fromkeys(samples["respondent"]))
    groups = {"everyone": people}
    traits = survey.respondents.loc[people]
    for trait in survey.traits:
        for value in sorted(traits[trait].unique()):
            members = [p for p in people if traits.at[p, trait] == value]
            if value not in ("", "Refused") and len(members) >= 10:
                groups[f"{trait}={value}"] = members
    rng = np.random.default_rng(seed)
    figures = {}
    for name, members in groups.items():
        rows = samples[samples["respondent"].isin(members)]
        own = [distance(np.mean([predicted(s) for s in q_rows["scores"]], axis=0), humans(q_rows, q), survey.questions[q].ordinal)
               for q, q_rows in rows.groupby("question")]  # (nan, tv) for a nominal question: Rep skips it
        draws = []
        for _ in range(halves):
            first = {p for p, drawn in zip(pd.Index(members), rng.permutation(len(members)) < len(members) // 2) if drawn}
            pairs = []
            for q, q_rows in rows.groupby("question"):
                a, b = q_rows[q_rows["respondent"].isin(first)], q_rows[~q_rows["respondent"].isin(first)]
                if len(a) and len(b):
                    pairs.append(distance(humans(a, q), humans(b, q), survey.questions[q].ordinal))
            if pairs:
                draws.append((1 - np.nanmean([p[0] for p in pairs]), np.mean([p[1] for p in pairs])))
        figures[name] = {"rep": 1 - np.nanmean([o[0] for o in own]), "tv": np.mean([o[1] for o in own]),
                         "rep_ceiling": np.mean([d[0] for d in draws]), "tv_ceiling": np.mean([d[1] for d in draws])}
    return figures


def test_group_figures_match_an_independent_computation_on_w26(w26, opinionqa_path, tmp_path):
    data = ["--data", f"opinionqa:{opinionqa_path}", "--waves", "W26", "--max-eval-people", "100", "--out", str(tmp_path)]
    assert main(["run", "--method", "spm", "--model", "smollm2-135m", "--max-train-answers", "200", "--epochs", "1", *data]) == 0
    checked = set()
    for path in tmp_path.glob("*/results.json"):  # spm, its untrained control, raw, majority and cf
        result = json.loads(path.read_text())
        theirs = independent_group_figures(path.parent, w26, result["method_info"]["scores_are"], seed=result["seed"])
        for group in result["groups"]:
            for key in ("rep", "tv", "rep_ceiling", "tv_ceiling"):
                assert abs(group[key] - theirs[group["group"]][key]) < 0.005, (result["method"], group["group"], key)
        assert set(theirs) == {g["group"] for g in result["groups"]}
        checked.add(result["method"])
    assert {"majority", "cf", "raw", "spm"} <= checked
