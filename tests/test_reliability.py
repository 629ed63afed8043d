"""Damaged state a run recovers from (a corrupt score cache), and no deprecated transformers
argument on the steering path (transformers warns before it removes one)."""
from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import torch

from persona_bench.app.cli import main
from persona_bench.harness.scoring.lm import LetterScoringLM, SteeredLM
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
        from persona_bench.harness.scoring.steering import token_batch, token_logprobs

        ids, mask = token_batch([lm.tok_encode("Question: Safe?\nAnswer:")], 0, "cpu")
        picked, _ = token_logprobs(lm.model, ids, mask, steering, torch.tensor([0]), torch.tensor([ids.shape[1] - 1]), torch.tensor([[5]]))
        picked.sum().backward()
    deprecations = [str(w.message) for w in caught if issubclass(w.category, (FutureWarning, DeprecationWarning))]
    assert not deprecations, deprecations


def every_file_text(folder: Path) -> dict[Path, bytes]:
    """Every file under ``folder`` as bytes, gzip files decompressed."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found[path] = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    return found


def test_pseudonymize_leaves_no_respondent_id_in_any_file_and_keeps_the_scores(tiny_model_path, tmp_path):
    """Every method family with its companions (references, raw, untrained control): no file of
    the runs folder (run folders and _shared: split, personas, trained steerers, checkpoints)
    holds a survey respondent id, runs still pair person by person, and the scores are the plain run's."""
    from persona_bench.harness.data.loaders import load_survey
    from persona_bench.harness.metrics.registry import paired_comparison
    from persona_bench.harness.runs.store import read_samples

    base = ["run", "--model", str(tiny_model_path), "--data", "demo:300", "--max-eval-people", "8"]
    spm = ["--method", "spm", "--max-train-answers", "200", "--epochs", "1"]
    assert main([*base, *spm, "--out", str(tmp_path / "plain")]) == 0
    for method in (spm, ["--method", "context", "--embedder", "wordllama"], ["--method", "question-knn", "--embedder", "wordllama"],
                   ["--method", "demographic-majority"]):
        assert main([*base, *method, "--out", str(tmp_path / "private"), "--pseudonymize"]) == 0
    private = tmp_path / "private"
    ids = [respondent.encode() for respondent in load_survey("demo:300").respondents.index]
    files = every_file_text(private)
    assert any(p.name == "split.csv.gz" for p in files) and any(p.name == "personas.json" for p in files)
    leaks = {str(path.relative_to(private)) for path, data in files.items() if any(i in data for i in ids)}
    assert not leaks, leaks
    for path, data in files.items():  # nor the ids' order: files list people in their pseudonyms' order
        if path.name == "split.csv.gz":
            written = list(dict.fromkeys(line.split(",")[0] for line in data.decode().splitlines()[1:]))
        elif path.name == "personas.json":
            written = json.loads(data)["people"]
        elif path.name in ("samples.jsonl.gz", "docs.jsonl"):
            written = [json.loads(line)["doc_id"] for line in data.decode().splitlines()]
        else:
            continue
        assert written == sorted(written), path
    runs = sorted(path for path in private.glob("*-*") if path.is_dir())
    assert len(runs) >= 8 and all(json.loads((run / "config.json").read_text())["pseudonymize"] for run in runs)
    samples = {run.name.split("-")[0]: read_samples(run) for run in runs}
    assert paired_comparison(samples["spm"], samples["majority"]).n_people == 8  # one salt per folder: runs still pair
    plain, hidden = (json.loads(next((tmp_path / n).glob("spm-*/results.json")).read_text()) for n in ("plain", "private"))
    assert plain["accuracy"] == hidden["accuracy"] and plain["run_id"] != hidden["run_id"]
    assert "pseudonymize" not in json.loads(next((tmp_path / "plain").glob("spm-*/config.json")).read_text())
    assert any(i in data for data in every_file_text(tmp_path / "plain").values() for i in ids)  # the search can fail


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
    assert "Left out (unreadable, --skip-bad)" in text and f"{damaged.parent.name}/results.json: not a readable" in text and "majority" in text
    assert str(tmp_path) not in text  # the note names the run's folder, not this machine's directories


def test_a_run_outside_a_git_checkout_prints_no_git_noise(tiny_model_path, tmp_path):
    """lm-eval asks git for the current folder's commit; outside a checkout (an installed package)
    git printed ``fatal: not a git repository`` on every run."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GIT_CEILING_DIRECTORIES": str(tmp_path.parent)}
    argv = [sys.executable, "-m", "persona_bench", "run", "--method", "raw", "--model", str(tiny_model_path), "--data", "demo:300",
            "--max-eval-people", "4", "--no-references", "--out", str(tmp_path / "runs")]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert subprocess.run(["git", "rev-parse"], cwd=tmp_path, capture_output=True).returncode != 0  # truly outside a checkout
    assert "not a git repository" not in done.stderr and "fatal" not in done.stderr


def test_written_files_get_the_permissions_a_plain_open_gives(tmp_path):
    """Not the owner-only mode of the temporary file they were written to (a runs folder or leaderboard
    shared with a group stays readable); a replaced file keeps its own."""
    from persona_bench.harness.core.atomic import atomic_write_text
    from persona_bench.harness.runs.store import CLAIM, claim, release

    runs, umask = tmp_path / "runs", os.umask(0o022)  # a group- and world-readable umask, whatever this shell's
    try:
        assert main(["run", "--method", "majority", "--data", "demo:300", "--max-eval-people", "5", "--no-references", "--out", str(runs)]) == 0
        assert main(["leaderboard", "--runs", str(runs), "--out", str(tmp_path / "board" / "LEADERBOARD.md"), "--html"]) == 0
        assert claim(tmp_path / "claimed")  # another user's sweep can read whose run it is
    finally:
        os.umask(umask)
    written = [*runs.glob("majority-*/*"), *(tmp_path / "board").iterdir(), tmp_path / "claimed" / CLAIM]
    assert {path.suffix for path in written} >= {".json", ".gz", ".md", ".csv", ".html"}
    assert {oct(path.stat().st_mode & 0o777) for path in written} == {oct(0o644)}
    release(tmp_path / "claimed")
    kept = tmp_path / "board" / "LEADERBOARD.md"
    kept.chmod(0o640)
    atomic_write_text(kept, "again")
    assert kept.stat().st_mode & 0o777 == 0o640 and kept.read_text() == "again"
