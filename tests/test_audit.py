"""The membership audit of trained steerers (persona_bench.harness.training.audit): a planted over-fitted
module is caught (AUC well above 0.5, a warning in the output, on the leaderboard), the untrained
control is not, and the audit of a normal demo SPM run is in its record and its printed output."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from persona_bench.app.cli import main
from persona_bench.harness.runner import method_in_context
from persona_bench.harness.training.audit import AUDIT_FILE, auc_with_ci, leaks
from persona_bench.harness.runs.config import RunConfig
from persona_bench.harness.training.loop import TrainOptions, train_steerer


def test_auc_with_ci_separates_and_does_not_separate():
    rng = np.random.default_rng(0)
    apart = auc_with_ci(rng.normal(1.0, 1, 200), rng.normal(-1.0, 1, 200), seed=0)
    alike = auc_with_ci(rng.normal(0, 1, 200), rng.normal(0, 1, 200), seed=0)
    assert apart["auc"] > 0.85 and apart["ci95"][0] > 0.8
    assert alike["ci95"][0] < 0.5 < alike["ci95"][1]


def planted_overfit(run_dir: Path) -> dict:
    """The run's module trained on its own training set for many epochs, validated on it (so
    the last, most over-fitted epoch is kept), then audited."""
    saved = json.loads((run_dir / "config.json").read_text())
    method, context = method_in_context(RunConfig.from_dict(saved), run_dir.parent)
    method.prepare(context)
    (train, personas), _ = method.training_rows(context)
    examples = method.examples(context, train, personas)
    options = TrainOptions(epochs=30, lr=0.02, weight_decay=0.0, patience=1000, checkpoint_minutes=0)
    method.steerer, _ = train_steerer(method.steerer.train(), method.lm.model, 0, examples, examples, options, run_dir.parent / "planted")
    return method.membership_audit(context)


def test_the_audit_catches_a_planted_overfitted_module_and_not_the_untrained_control(tiny_model_path, tmp_path, capsys):
    runs = tmp_path / "runs"
    argv = ["run", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:300", "--max-eval-people", "8",
            "--max-train-answers", "150", "--epochs", "1", "--hidden", "256", "--out", str(runs)]
    assert main(argv) == 0
    assert "Membership audit of the trained module (100 members vs 100 train people not trained on)" in capsys.readouterr().out
    trained, control = (next(p.parent for p in runs.glob("spm-*/results.json") if ("random" in p.read_text()) == random) for random in (False, True))
    audit = json.loads((trained / "results.json").read_text())["membership_audit"]
    assert {"loss", "calibrated"} <= set(audit) and audit["members"] == audit["non_members"] == 100

    assert main(["audit", "membership", str(control), "--max-train-answers", "150"]) == 0  # against the set its sibling trains on
    untrained = json.loads((control / "results.json").read_text())["membership_audit"]
    assert untrained["non_member_source"] == audit["non_member_source"] == "train people not trained on"
    assert untrained["loss"]["ci95"][0] < 0.5 < untrained["loss"]["ci95"][1]
    assert untrained["calibrated"] == {"auc": 0.5, "ci95": [0.5, 0.5]}  # the control minus itself: no signal at all

    planted = planted_overfit(trained)
    assert planted["loss"]["auc"] > 0.65 and planted["loss"]["ci95"][0] > 0.5 and planted["calibrated"]["ci95"][0] > 0.6 and leaks(planted)
    folder = next(runs.glob("_shared/*/steering/spm-*"))
    (folder / AUDIT_FILE).write_text(json.dumps(planted))  # as if the module published were the over-fitted one
    capsys.readouterr()
    assert main(["audit", "membership", str(trained)]) == 0
    captured = capsys.readouterr()
    assert "its people can be told from others" in captured.out
    assert "warning: membership AUC" in captured.err and "do not publish it" in captured.err
    board = tmp_path / "board.md"
    assert main(["leaderboard", "--runs", str(runs), "--out", str(board)]) == 0
    assert f"membership AUC {planted['loss']['auc']:.2f}" in board.read_text()
    assert "Training: spm [hidden=256] (" in board.read_text()  # which variant trained on what


def test_auditing_a_run_without_a_trained_module_is_one_line(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["run", "--method", "majority", "--data", "demo:300", "--out", str(runs), "--no-references"]) == 0
    assert main(["audit", "membership", str(next(runs.glob("majority-*")))]) == 2
    assert "only a steering run's module was trained on people" in capsys.readouterr().err
    assert main(["audit", "membership", str(tmp_path / "nowhere")]) == 2
