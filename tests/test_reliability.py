"""Damaged state a run recovers from (a corrupt score cache), and no deprecated transformers
argument on the steering path (transformers warns before it removes one)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import torch

from persona_bench.app.cli import main
from persona_bench.harness.lm import LetterScoringLM, SteeredLM
from persona_bench.methods.spm.model import SoftPromptModel


def test_a_corrupt_score_cache_is_moved_aside_and_the_run_repeats_its_scores(tiny_model_path, tmp_path):
    """As a user meets it: a run, the cache file damaged, a new process running again."""
    env = {**os.environ, "PERSONA_BENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    argv = [sys.executable, "-m", "persona_bench", "run", "--method", "raw", "--model", str(tiny_model_path), "--data", "demo:300",
            "--max-eval-people", "8", "--no-references"]
    first = subprocess.run([*argv, "--out", str(tmp_path / "first")], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    cache = tmp_path / "cache" / "scores.sqlite"
    for leftover in tmp_path.glob("cache/scores.sqlite-*"):
        leftover.unlink()
    cache.write_bytes(os.urandom(4096))
    second = subprocess.run([*argv, "--out", str(tmp_path / "second")], capture_output=True, text=True, env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    warning = [line for line in second.stderr.splitlines() if "warning:" in line]
    assert len(warning) == 1 and "is damaged" in warning[0] and "moved aside" in warning[0]
    assert list(tmp_path.glob("cache/scores.sqlite.corrupt-*"))
    first, second = (json.loads(next((tmp_path / name).glob("raw-*/results.json")).read_text()) for name in ("first", "second"))
    assert first["accuracy"] == second["accuracy"] and first["n_answers"] == second["n_answers"]


def test_steered_scoring_and_training_use_no_deprecated_argument(tiny_model_path):
    lm = LetterScoringLM(pretrained=str(tiny_model_path), device="cpu", score_cache=None)
    spm = SoftPromptModel.for_model(lm.model, 3, virtual_tokens=2)
    steered = SteeredLM(steerer=spm, model=lm.model, tokenizer=lm.tokenizer, score_cache=None)
    from lm_eval.api.instance import Instance

    requests = [Instance("loglikelihood", doc={"persona": [0.1, 0.2, 0.3]}, arguments=("Question: Safe?\nAnswer:", " A"), idx=0)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        steered.loglikelihood(requests)
        steering = spm.steering(torch.zeros(1, 3))
        from persona_bench.harness.steering import token_batch, token_logprobs

        ids, mask = token_batch([lm.tok_encode("Question: Safe?\nAnswer:")], 0, "cpu")
        picked, _ = token_logprobs(lm.model, ids, mask, steering, torch.tensor([0]), torch.tensor([ids.shape[1] - 1]), torch.tensor([[5]]))
        picked.sum().backward()
    deprecations = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not deprecations, deprecations


def test_pseudonymize_hides_respondent_ids_and_keeps_the_scores(tiny_model_path, tmp_path):
    from persona_bench.harness.loaders import load_survey
    from persona_bench.harness.metrics import paired_comparison
    from persona_bench.harness.store import read_samples

    base = ["run", "--model", str(tiny_model_path), "--data", "demo:300", "--max-eval-people", "8", "--no-references"]
    assert main([*base, "--method", "raw", "--out", str(tmp_path / "plain")]) == 0
    for method in ("raw", "majority"):
        assert main([*base, "--method", method, "--out", str(tmp_path / "private"), "--pseudonymize"]) == 0
    ids = set(load_survey("demo:300").respondents.index)
    runs = sorted((tmp_path / "private").glob("*-*"))
    for run in runs:
        samples = read_samples(run)
        assert samples["respondent"].str.startswith("p-").all() and not ids & set(samples["respondent"])
        assert json.loads((run / "config.json").read_text())["pseudonymize"] is True
    assert paired_comparison(read_samples(runs[0]), read_samples(runs[1])).n_people == 8  # one salt per folder: runs still pair
    docs = (next((tmp_path / "private").glob("raw-*")) / "docs.jsonl").read_text()
    assert not any(f'"{respondent}"' in docs for respondent in ids)
    plain, private = (json.loads(next((tmp_path / n).glob("raw-*/results.json")).read_text()) for n in ("plain", "private"))
    assert plain["accuracy"] == private["accuracy"] and plain["run_id"] != private["run_id"]
    assert "pseudonymize" not in json.loads(next((tmp_path / "plain").glob("raw-*/config.json")).read_text())


def test_a_new_runs_folder_on_real_data_says_what_it_will_hold(tmp_path, capsys):
    from .test_opinionqa_loader import write_wave

    write_wave(tmp_path / "data")
    argv = ["run", "--method", "majority", "--data", f"opinionqa:{tmp_path / 'data'}", "--out", str(tmp_path / "runs"), "--no-references"]
    assert main(argv) == 0
    assert "will hold real respondents' answers" in capsys.readouterr().err
    assert main([*argv, "--force"]) == 0
    assert "real respondents" not in capsys.readouterr().err  # once, when the folder is created


def test_leaderboard_names_a_truncated_results_file_and_skip_bad_lists_it_in_the_note(tmp_path, capsys):
    runs = tmp_path / "runs"
    for method in ("majority", "cf"):
        assert main(["run", "--method", method, "--data", "demo:300", "--out", str(runs), "--no-references"]) == 0
    damaged = next(runs.glob("cf-*/results.json"))
    damaged.write_text(damaged.read_text()[:80])
    board = tmp_path / "board" / "LEADERBOARD.md"
    capsys.readouterr()
    assert main(["leaderboard", "--runs", str(runs), "--out", str(board)]) == 2
    assert f"{damaged}: not a readable results file" in capsys.readouterr().err
    assert not board.exists()
    assert main(["leaderboard", "--runs", str(runs), "--out", str(board), "--skip-bad"]) == 0
    text = board.read_text()
    assert "Left out (unreadable, --skip-bad)" in text and str(damaged) in text and "majority" in text
