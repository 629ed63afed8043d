"""persona-bench as a library: the public names at the package root, ``evaluate`` (the same
pipeline as ``persona-bench run``), and a context through which a method cannot read held-out
answers (a method that tries fails with one clear line)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import persona_bench
from persona_bench.app.cli import main
from persona_bench.harness.core.errors import HeldOutAnswerError
from persona_bench.harness.method.base import METHODS
from persona_bench.harness.runner import build_context


def test_public_names_load_on_first_use_and_import_stays_light():
    code = ("import sys, persona_bench; heavy = [m for m in ('torch', 'pandas', 'lm_eval') if m in sys.modules]; "
            "print(heavy); print(persona_bench.evaluate.__module__, persona_bench.RunConfig.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "[]", "import persona_bench loads nothing heavy"
    assert out[1] == "persona_bench.harness.runner persona_bench.harness.runs.config"
    for name in persona_bench.__all__:
        assert getattr(persona_bench, name) is not None
    with pytest.raises(AttributeError):
        persona_bench.not_a_public_name  # noqa: B018


def test_evaluate_is_the_run_commands_pipeline(tmp_path, capsys):
    config = persona_bench.RunConfig(method="majority", data="demo:300", max_eval_people=30)
    record = persona_bench.evaluate(config, tmp_path / "api", log=lambda message: None)
    assert main(["run", "--method", "majority", "--data", "demo:300", "--max-eval-people", "30", "--no-references",
                 "--out", str(tmp_path / "cli")]) == 0
    from_cli = json.loads((tmp_path / "cli" / config.run_id() / "results.json").read_text())
    assert record.run_id == from_cli["run_id"] == config.run_id()
    assert (record.accuracy, list(record.ci95)) == (from_cli["accuracy"], from_cli["ci95"])
    assert record == persona_bench.RunRecord.from_dict(from_cli).with_fields(
        wall_seconds=record.wall_seconds, finished_at=record.finished_at)


def context_of(tmp_path, **settings):
    config = persona_bench.RunConfig(method="majority", data="demo:300", **settings)
    return build_context(config, tmp_path, log=lambda message: None)


def test_a_context_gives_no_held_out_answer(tmp_path):
    context = context_of(tmp_path)
    assert len(context.survey.questions) and len(context.survey.respondents) and context.survey.traits
    with pytest.raises(HeldOutAnswerError, match=r"context.survey.responses.*context.train_answers\(\)"):
        context.survey.responses  # noqa: B018
    with pytest.raises(HeldOutAnswerError):
        context.survey.select_waves(None)
    held_out = context.split.scored_answers("seen")
    with pytest.raises(HeldOutAnswerError, match="held-out answers stay inside scoring"):
        context.with_answers(held_out.head(3))
    train = context.split.train_answers().head(5)
    assert context.with_answers(train)["option"].notna().all()
    values = context.personas.values  # the persona space folds in from train and revealed answers only
    held_out_pairs = set(zip(held_out["respondent"], held_out["question"]))
    assert not held_out_pairs & set(values.index)


def test_an_unseen_run_reveals_its_k_answers_and_no_more(tmp_path):
    context = context_of(tmp_path, users="unseen", k=5)
    known = context.known_answers()
    assert known.groupby("respondent").size().max() <= 5 and known["option"].notna().all()
    assert len(context.with_answers(known[["respondent", "question"]])) == len(known)
    revealed_later = context.split.fold_in_answers(None)
    beyond_k = revealed_later[revealed_later["rank"] >= 5]
    with pytest.raises(HeldOutAnswerError):
        context.with_answers(beyond_k.head(2))


CHEAT = textwrap.dedent('''
    """A method that reads the answers it is scored on."""
    import numpy as np

    from persona_bench.harness.method.base import Method, register_method


    @register_method
    class Cheat(Method):
        name = "cheat"
        kind = "reference"

        def score(self, docs, context):
            answers = context.survey.responses.set_index(["respondent", "question"])["option"]
            scores = np.full((len(docs), int(docs["n_options"].max())), -np.inf)
            for row, (person, question, n) in enumerate(zip(docs["respondent"], docs["question"], docs["n_options"])):
                scores[row, :n] = 0.0
                scores[row, answers[(person, question)]] = 1.0
            return scores
''')


def test_a_method_reading_held_out_answers_fails_with_one_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "cheating.py").write_text(CHEAT)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        code = main(["run", "--import", "cheating", "--method", "cheat", "--data", "demo:300", "--max-eval-people", "10",
                     "--no-references", "--out", str(tmp_path / "runs")])
    finally:
        METHODS.pop("cheat", None)
        sys.modules.pop("cheating", None)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("persona-bench: error: a method read context.survey.responses")
    assert not list((tmp_path / "runs").glob("cheat-*/results.json")), "nothing scored"


def test_one_answer_cue_ends_every_scored_prompt():
    import yaml

    from persona_bench.tasks import TASKS_DIR
    from persona_bench.tasks.prompts import ANSWER_CUE, scored_prompt

    class Tagged(yaml.SafeLoader):
        pass

    Tagged.add_multi_constructor("!", lambda loader, tag, node: None)
    template = yaml.load((TASKS_DIR / "_opinionqa_persona_template.yaml").read_text(), Loader=Tagged)
    assert template["gen_prefix"] == ANSWER_CUE == "\nAnswer:"
    assert scored_prompt("Question: Is it?") == "Question: Is it?\nAnswer:"


def test_output_piped_into_a_reader_that_leaves_is_not_an_error(tmp_path):
    shell = f"{sys.executable} -m persona_bench methods | true"  # `true` leaves before anything is written
    done = subprocess.run(shell, shell=True, capture_output=True, text=True, timeout=120)
    assert done.stderr == ""


def test_an_unseen_run_s_persona_space_folds_in_its_k_answers_only(tmp_path):
    import copy

    context = context_of(tmp_path, users="unseen", k=5)
    values = context.personas.values
    revealed_later = context.split.fold_in_answers(None)
    beyond_k = set(zip(*revealed_later[revealed_later["rank"] >= 5][["respondent", "question"]].to_numpy().T))
    assert beyond_k and not beyond_k & set(values.index)
    assert copy.copy(context.survey).questions is context.survey.questions and not hasattr(context.survey, "_private")


def test_a_broken_plugin_stops_with_one_line_naming_it():
    from importlib.metadata import EntryPoint

    from persona_bench.harness.core.plugins import load_plugins

    broken = EntryPoint(name="broken", value="no_such_module_anywhere", group="persona_bench.metrics")
    with pytest.raises(persona_bench.ConfigError, match=r"^metric plugin 'broken' \(no_such_module_anywhere\) failed to load: ModuleNotFoundError"):
        load_plugins([broken], "metric plugin")
    load_plugins([broken], "metric plugin", skip={"broken"})  # registered already: not imported again
