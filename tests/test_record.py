"""The typed run record: every older results.json layout is read by one upgrade(), a record
round-trips through results.json, and a runs folder holding every layout renders."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from persona_bench import write_leaderboard
from persona_bench.harness.runs.config import RunConfig
from persona_bench.harness.runs.record import SCHEMA_VERSION, MethodInfo, MetricValue, RecordError, RunRecord, Training, upgrade
from persona_bench.harness.runs.store import StoreError, read_results, write_samples

CONFIG = {"method": "cf", "model": None, "data": "demo", "waves": [], "persona": "individual", "users": "seen", "k": None,
          "max_eval_people": 20, "seed": 0, "people_train": 0.8, "answers_train": 0.8, "cf_solver": "als", "cf_dim": 16,
          "dtype": "auto", "method_options": {}}

# 0.1: no self-description, variant, resolved options, protocol or group figures
EARLIEST = {"run_id": "cf-nollm-0000000001", **CONFIG, "accuracy": 0.5, "ci95": [0.4, 0.6], "n_people": 20, "n_answers": 80,
            "wall_seconds": 1.0, "finished_at": "2026-11-01T00:00:00+00:00"}
# 0.2: a prompting run that described itself, with its variant and options, before group figures
DESCRIBED = {"run_id": "context-m-0000000002", **CONFIG, "method": "context", "model": "m", "method_options": {"k_context": 3},
             "method_info": {"kind": "prompting", "uses_persona": False, "needs_model": True, "description": "K answers"},
             "options": {"k_context": 3}, "variant": {"k_context": 3}, "accuracy": 0.4, "ci95": [0.3, 0.5], "n_people": 20,
             "n_answers": 80, "wall_seconds": 2.0, "processes": 1, "finished_at": "2026-11-10T00:00:00+00:00", "persona_bench_version": "0.2.0"}
# 0.3: a trained steering run with its budget, recipe, audit, group figures and a method's own report field
TRAINED = {"run_id": "spm-m-0000000003", **CONFIG, "method": "spm", "model": "m", "method_options": {"max_train_answers": 100},
           "method_info": {"kind": "steering", "uses_persona": True, "needs_model": True, "description": "SPM", "scores_are": "logits",
                           "protocols": ["answers"]},
           "options": {"weights": "trained", "max_train_answers": 100}, "variant": {}, "recipe": "default", "settings": {"lr": 0.01},
           "budget": {"train_answers": 100, "epochs": 1}, "training_history": [{"epoch": 1}],
           "membership_audit": {"members": 10, "non_members": 10, "non_member_source": "x", "answers": 5,
                                "loss": {"auc": 0.5, "ci95": [0.4, 0.6]}, "calibrated": {"auc": 0.5, "ci95": [0.5, 0.5]}},
           "unsteered_docs": 0, "accuracy": 0.45, "ci95": [0.35, 0.55], "n_people": 20, "n_answers": 80,
           "weighted_accuracy": 0.44, "question_sets": {}, "disparity": {},
           "groups": [{"group": "everyone", "n_people": 20, "n_questions": 4, "rep": 0.86, "tv": 0.26, "rep_uniform": 0.76,
                       "tv_uniform": 0.40, "rep_population": 0.85, "tv_population": 0.26, "rep_ceiling": 0.72, "tv_ceiling": 0.53}],
           "wall_seconds": 3.0, "processes": 1, "finished_at": "2026-12-01T00:00:00+00:00", "persona_bench_version": "0.3.0"}


def test_the_earliest_layout_is_upgraded_with_what_it_implied():
    record = upgrade(EARLIEST)
    assert record.config == RunConfig.from_dict(CONFIG) and record.config.protocol == "answers"
    assert record.method_info == MethodInfo("reference") and record.variant == {} and record.training is None
    assert not record.has_group_figures and record.schema_version == 1 and record.outdated and record.metrics == {}
    assert upgrade({**EARLIEST, "model": "m", "method": "raw"}).kind == "prompting"


def test_a_described_run_keeps_its_description_and_variant():
    record = upgrade(DESCRIBED)
    assert record.method_info.kind == "prompting" and record.method_info.needs_model and record.variant == {"k_context": 3}
    assert record.config.method_options == {"k_context": 3} and not record.untrained_control


def test_a_trained_run_has_a_typed_training_and_keeps_its_own_report_fields():
    record = upgrade(TRAINED)
    assert record.training == Training("default", {"lr": 0.01}, {"train_answers": 100, "epochs": 1}, [{"epoch": 1}],
                                       TRAINED["membership_audit"])
    assert record.training.train_answers == 100 and record.report == {"unsteered_docs": 0}
    assert record.method_info.protocols == ("answers",) and record.has_group_figures
    assert record.method_info.option_roles == {"max_train_answers": "budget"}  # from before options declared their roles
    written = record.as_dict()
    assert written["method_info"].pop("option_roles") == {"max_train_answers": "budget"}
    assert {k: v for k, v in written.items() if k not in ("schema_version", "metrics")} == TRAINED
    control = upgrade({**TRAINED, "method_options": {"weights": "random"}})
    assert control.untrained_control


def test_a_record_round_trips_through_results_json():
    record = RunRecord(run_id="x", config=RunConfig(method="majority"), method_info=MethodInfo("reference"), accuracy=0.6,
                       ci95=(0.5, 0.7), n_people=3, n_answers=9, metrics={"brier": MetricValue(0.4, (0.3, 0.5), False)})
    assert upgrade(json.loads(json.dumps(record.as_dict()))) == record
    assert record.metric("brier").higher_is_better is False and record.metric("accuracy").value == 0.6
    with pytest.raises(RecordError, match="no metric 'nope'"):
        record.metric("nope")


@pytest.mark.parametrize("raw, message", [
    ({**EARLIEST, "schema_version": SCHEMA_VERSION + 1}, "a newer one wrote it"),
    ({"run_id": "x", "accuracy": 0.5}, "needs run_id, method and accuracy"),
    ({**EARLIEST, "ci95": [0.1]}, "must be finite numbers"),
    ({**EARLIEST, "method_info": {"kind": "reference", "colour": "red"}}, "does not fit its layout"),
    ({**EARLIEST, "data_identity": ["opinionqa", "x"]}, r"data_identity must be text, got \['opinionqa', 'x'\]"),
    ({**EARLIEST, "finished_at": 20260101}, "finished_at must be text"),
])
def test_what_no_layout_explains_is_named(raw, message):
    with pytest.raises(RecordError, match=message):
        upgrade(raw)


def write_samples_of(run_dir, seed: int) -> None:
    """Samples of 20 people x 4 two-option questions (the leaderboard's paired tests read them)."""
    rng = np.random.default_rng(seed)
    people, questions = np.repeat([f"p{i}" for i in range(20)], 4), np.tile(["q1", "q2", "q3", "q4"], 20)
    docs = pd.DataFrame({"doc_id": [f"{p}|{q}" for p, q in zip(people, questions)], "respondent": people, "question": questions,
                         "target": rng.integers(0, 2, 80), "n_options": 2})
    scores = rng.normal(size=(80, 2))
    write_samples(run_dir, docs, scores, scores.argmax(axis=1))


def test_a_runs_folder_of_every_layout_renders(tmp_path):
    runs = tmp_path / "runs"
    for seed, raw in enumerate((EARLIEST, DESCRIBED, TRAINED)):
        (runs / raw["run_id"]).mkdir(parents=True)
        (runs / raw["run_id"] / "results.json").write_text(json.dumps(raw))
        write_samples_of(runs / raw["run_id"], seed)
    assert read_results(runs / TRAINED["run_id"]) == upgrade(TRAINED)
    written = write_leaderboard(runs, tmp_path / "board.md")
    board = written[0].read_text()
    assert "50.0 [40.0, 60.0]" in board and "40.0 [30.0, 50.0]" in board and "45.0 [35.0, 55.0]" in board
    (runs / "broken").mkdir()
    (runs / "broken" / "results.json").write_text(json.dumps({**EARLIEST, "run_id": "broken", "schema_version": 99}))
    with pytest.raises(StoreError, match=r"broken/results.json: schema_version 99"):
        read_results(runs / "broken")
