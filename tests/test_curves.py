"""Learning curves: where a curve crosses a reference (interpolated or extrapolated, and said
so), and the curve command's runs, companions and leaderboard section."""
from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest

from persona_bench.app.cli import main
from persona_bench.harness.runs.config import RunConfig
from persona_bench.harness.method.base import get_method
from persona_bench.harness.runs.record import MethodInfo, RunRecord, Training
from persona_bench.leaderboard.curves import crossing


def test_crossing_is_interpolated_between_measured_budgets():
    text = crossing([(1000, 0.40), (3000, 0.55), (10000, 0.60)], 0.50, "majority")
    assert "between 1,000 and 3,000" in text and "~2,080" in text and "interpolation" in text


def test_crossing_beyond_the_largest_budget_is_labelled_an_extrapolation():
    text = crossing([(1000, 0.40), (10000, 0.45)], 0.50, "cf")
    assert "below cf at every budget up to 10,000" in text and "~100,000" in text and "an extrapolation, not a measurement" in text
    assert "not rising" in crossing([(1000, 0.45), (10000, 0.40)], 0.50, "cf")
    assert "from the smallest budget" in crossing([(1000, 0.55), (10000, 0.60)], 0.50, "majority")
    flat = crossing([(3000, 0.590), (10000, 0.592)], 0.623, "majority")  # the W26 SPM + LoRA curve
    assert "nearly flat over the last two (+0.12 points per doubling" in flat and "~" not in flat


def test_curve_command_runs_budgets_and_companions_and_draws_the_curve(tiny_model_path, tmp_path, capsys):
    argv = ["curve", "--method", "spm", "--model", str(tiny_model_path), "--data", "demo:600", "--budgets", "40,120",
            "--epochs", "1", "--max-eval-people", "8", "--out", str(tmp_path / "runs"), "--leaderboard", str(tmp_path / "board" / "L.md")]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "spm: " in printed and ("majority" in printed and "cf" in printed)
    results = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*/results.json")]
    budgets = sorted(r["budget"]["train_answers"] for r in results if r["method"] == "spm" and r["variant"] == {})
    assert budgets == [40, 120]
    assert {r["method"] for r in results} == {"spm", "majority", "cf", "letter-prior", "raw"}
    assert any(r["variant"] == {"weights": "random"} for r in results)
    board = (tmp_path / "board" / "L.md").read_text()
    assert "## Learning curves" in board and "spm untrained" in board and "raw (unsteered)" in board
    assert list((tmp_path / "board").glob("curve_*.png"))


@pytest.mark.parametrize("text", ["0", "x,1"])
def test_curve_budgets_must_be_answer_counts(text, tmp_path):
    with pytest.raises(SystemExit):
        main(["curve", "--budgets", text, "--out", str(tmp_path)])


SPM_ROLES = get_method("spm").describe()["option_roles"]


def spm_record(run_id: str, finished: str, accuracy: float, train_answers: int = 0, epochs: int | None = None, **options) -> RunRecord:
    """A minimal record of an spm run on one scope."""
    return RunRecord(
        run_id=run_id, config=RunConfig(method="spm", model="m", max_eval_people=10, method_options=options),
        method_info=MethodInfo("steering", uses_persona=True, option_roles=SPM_ROLES), accuracy=accuracy, ci95=(accuracy - 0.05, accuracy + 0.05),
        n_people=10, n_answers=50, options={"weights": "trained", **options}, variant={k: v for k, v in options.items() if k == "weights"},
        training=Training(recipe=options.get("recipe", "default"),
                          budget={"train_answers": train_answers, "epochs": (1 if train_answers else 0) if epochs is None else epochs}),
        finished_at=finished,
    )


def as_method(record: RunRecord, method: str) -> RunRecord:
    """The same record, of another method."""
    return record.with_fields(config=replace(record.config, method=method))


def placed_record(run_id: str, finished: str, accuracy: float, train_answers: int = 0, **options) -> RunRecord:
    """An spm run of the variant ``placement=answer`` (``options`` part of the variant too)."""
    record = spm_record(run_id, finished, accuracy, train_answers, placement="answer", **options)
    return record.with_fields(variant={"placement": "answer", **options})


def majority_record(run_id: str, finished: str, accuracy: float) -> RunRecord:
    """A minimal record of a majority run on the same scope."""
    record = spm_record(run_id, finished, accuracy)
    return record.with_fields(config=replace(record.config, method="majority", model=None, method_options={}), variant={}, options={},
                              method_info=MethodInfo("reference"), training=None)


def test_a_curve_holds_one_recipe_and_its_own_untrained_control(tmp_path):
    from persona_bench.leaderboard.curves import learning_curves
    from persona_bench.leaderboard.frame import results_frame

    records = [
        spm_record("a", "2026-01-01", 0.40, 1000), spm_record("b", "2026-01-02", 0.50, 3000),
        spm_record("c", "2026-01-03", 0.30, 1000, init="scaled"),  # same budget, overridden recipe, later
        spm_record("d", "2026-01-01", 0.21, weights="random"),
        spm_record("e", "2026-01-04", 0.25, weights="random", init="scaled"),  # a later control of the other recipe
        spm_record("f", "2026-01-05", 0.27, weights="random", recipe="paper"),
        spm_record("g", "2026-01-06", 0.35, 3000, lr=0.001),  # a training-only override: the plain control fits it
        spm_record("h", "2026-01-07", 0.45, 10000, lr=0.001),
    ]
    frame = results_frame(records)
    assert list(frame["recipe"]) == ["default", "default", "default, init=scaled", "default", "default, init=scaled",
                                     "paper", "default, lr=0.001", "default, lr=0.001"]
    tables, plots = learning_curves(frame, tmp_path)
    by_recipe = {t.title.split("recipe ")[1].split(")")[0]: t for t in tables}
    assert set(by_recipe) == {"default", "default, lr=0.001"} and len(plots) == 2
    default = {c["value"]: c["run_id"] for c in by_recipe["default"].cells}
    assert default == {1000: "a", 3000: "b", "spm untrained": "d"}
    assert {c["value"]: c["run_id"] for c in by_recipe["default, lr=0.001"].cells}["spm untrained"] == "d"


def test_recipes_are_compared_at_equal_budget_and_controls_within_their_recipe():
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import sweep_tables

    records = [spm_record("a", "1", 0.40, 1000), spm_record("c", "2", 0.30, 1000, init="scaled"), spm_record("b", "3", 0.50, 3000),
               spm_record("d", "1", 0.21, weights="random"), spm_record("e", "2", 0.25, weights="random", init="scaled")]
    tables = {t.title.split(" — ")[0]: t for t in sweep_tables(results_frame(records))}
    recipes = tables["spm by recipe at equal training budget"]
    assert list(recipes.frame.columns) == ["model", "budget_label", "default", "default, init=scaled"]
    assert list(recipes.frame["budget_label"]) == ["1,000 answers x 1 epochs"]  # 3,000 has one recipe only
    weights = tables["spm by weights"].frame.set_index("recipe")
    assert weights.loc["default", "random"].startswith("21.0") and weights.loc["default", "trained"].startswith("50.0")
    assert weights.loc["default, init=scaled", "random"].startswith("25.0") and weights.loc["default, init=scaled", "trained"].startswith("30.0")


def test_a_variant_s_untrained_control_is_swept_beside_it_in_a_row_of_its_own():
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import sweep_tables

    records = [spm_record("a", "1", 0.43, 10000), spm_record("b", "2", 0.31, weights="random"),
               placed_record("c", "3", 0.58, 10000), placed_record("d", "4", 0.32, weights="random")]
    weights = {t.title.split(" — ")[0]: t for t in sweep_tables(results_frame(records))}["spm by weights"].frame
    assert weights.to_dict("records") == [
        {"model": "m", "variant": "", "recipe": "default", "random": "31.0 [26.0, 36.0]", "trained": "43.0 [38.0, 48.0]"},
        {"model": "m", "variant": "placement=answer", "recipe": "default", "random": "32.0 [27.0, 37.0]", "trained": "58.0 [53.0, 63.0]"}]


def test_an_option_sweep_of_a_trained_method_compares_runs_at_one_budget_in_budget_order():
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import sweep_tables

    records = [spm_record(f"{mode}{answers}", str(answers), accuracy, answers, mode=mode).with_fields(variant={"mode": mode})
               for mode, answers, accuracy in (("prefix", 10000, 0.40), ("prompt", 10000, 0.45), ("prefix", 3000, 0.50), ("prompt", 3000, 0.55),
                                               ("prefix", 1000, 0.30))]  # 1,000: one value, no row
    modes = {t.title.split(" — ")[0]: t for t in sweep_tables(results_frame(records))}["spm by mode"].frame
    assert modes.to_dict("records") == [
        {"model": "m", "budget_label": "3,000 answers x 1 epochs", "recipe": "default", "prefix": "50.0 [45.0, 55.0]", "prompt": "55.0 [50.0, 60.0]"},
        {"model": "m", "budget_label": "10,000 answers x 1 epochs", "recipe": "default", "prefix": "40.0 [35.0, 45.0]", "prompt": "45.0 [40.0, 50.0]"}]


def test_trained_methods_are_set_side_by_side_only_at_a_shared_budget_and_recipe():
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import sweep_tables

    activation = as_method(spm_record("x", "4", 0.35, 1000), "activation")
    records = [spm_record("a", "1", 0.40, 1000), spm_record("b", "3", 0.50, 3000), activation,
               as_method(spm_record("y", "5", 0.33, 1000, init="scaled"), "activation")]
    tables = {t.title.split(" — ")[0]: t for t in sweep_tables(results_frame(records))}
    matched = tables["Trained methods at equal training budget"].frame
    assert list(matched.columns) == ["model", "budget_label", "recipe", "activation", "spm"]
    assert matched.to_dict("records") == [{"model": "m", "budget_label": "1,000 answers x 1 epochs", "recipe": "default",
                                           "activation": "35.0 [30.0, 40.0]", "spm": "40.0 [35.0, 45.0]"}]


def test_a_variant_gets_its_own_curve_and_control_and_sits_beside_the_default_at_equal_budget(tmp_path):
    from persona_bench.leaderboard.curves import learning_curves
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import sweep_tables

    records = [spm_record("a", "1", 0.40, 1000), spm_record("b", "2", 0.50, 3000), spm_record("d", "1", 0.21, weights="random"),
               placed_record("v1", "3", 0.45, 1000), placed_record("v2", "4", 0.55, 3000), placed_record("vc", "5", 0.23, weights="random")]
    frame = results_frame(records)
    tables, plots = learning_curves(frame, tmp_path)
    curves = {t.title.split(" (")[0]: {c["value"]: c["run_id"] for c in t.cells} for t in tables}
    assert curves == {"Learning curve: spm": {1000: "a", 3000: "b", "spm untrained": "d"},
                      "Learning curve: spm [placement=answer]": {1000: "v1", 3000: "v2", "spm untrained": "vc"}}
    assert len(set(plots)) == 2
    matched = {t.title.split(" — ")[0]: t for t in sweep_tables(frame)}["Trained methods at equal training budget"].frame
    assert list(matched.columns) == ["model", "budget_label", "recipe", "spm", "spm [placement=answer]"]
    assert list(matched["spm [placement=answer]"].str[:4]) == ["45.0", "55.0"]


def test_every_trained_variant_gets_a_main_table_column_beside_the_default_and_untrained_ones_only_alone():
    from persona_bench.leaderboard.frame import latest, results_frame
    from persona_bench.leaderboard.tables import main_columns

    variants_only = [majority_record("r", "1", 0.6), placed_record("v1", "3", 0.45, 1000), placed_record("v2", "2", 0.55, 3000),
                     placed_record("vc", "5", 0.23, weights="random")]
    shown = latest(main_columns(results_frame(variants_only)), ["model", "column"])
    assert dict(zip(shown["column"], shown["run_id"])) == {"majority": "r", "spm [placement=answer]": "v2"}
    with_default = [*variants_only, spm_record("a", "1", 0.40, 1000), spm_record("c", "6", 0.21, weights="random")]
    shown = latest(main_columns(results_frame(with_default)), ["model", "column"])  # the grid's headline is a variant
    assert dict(zip(shown["column"], shown["run_id"])) == {"majority": "r", "spm": "a", "spm [placement=answer]": "v2"}

    def context(run_id: str, **variant) -> RunRecord:  # a prompting method: nothing trained
        record = majority_record(run_id, "7", 0.3)
        return record.with_fields(config=replace(record.config, method="context", model="m", method_options=variant),
                                  variant=variant, options=variant, method_info=MethodInfo("prompting"))

    swept = [majority_record("r", "1", 0.6), context("c5", k_context=5), context("c3", k_context=3)]
    shown = latest(main_columns(results_frame(swept)), ["model", "column"])  # no default run: each variant its column
    assert sorted(shown["column"]) == ["context [k_context=3]", "context [k_context=5]", "majority"]
    shown = latest(main_columns(results_frame([*swept, context("c")])), ["model", "column"])  # beside the default: the sweeps'
    assert dict(zip(shown["column"], shown["run_id"])) == {"majority": "r", "context": "c"}


def test_a_budget_trained_for_several_epoch_counts_is_listed_whole_and_drawn_at_its_fewest(tmp_path):
    from persona_bench.leaderboard.curves import learning_curves
    from persona_bench.leaderboard.frame import results_frame

    twice = spm_record("b2", "2026-01-05", 0.45, 3000, epochs=2)
    records = [spm_record("a", "2026-01-01", 0.40, 1000), spm_record("b1", "2026-01-02", 0.55, 3000), twice,
               spm_record("c", "2026-01-03", 0.50, 10000), majority_record("r", "2026-01-01", 0.6)]
    (table,), _ = learning_curves(results_frame(records), tmp_path)
    assert [c["run_id"] for c in table.cells] == ["a", "b1", "b2", "c", "r"]
    assert list(table.frame["epochs"])[:4] == [1, 1, 2, 1]
    assert "not rising over the last two" in table.note  # 0.55 at 3,000 (1 epoch) then 0.50: the 2-epoch run is not on the line


def test_a_variant_s_recipes_are_compared_at_equal_budget():
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import sweep_tables

    def placed(run_id: str, finished: str, accuracy: float, train_answers: int, **overrides) -> RunRecord:
        return spm_record(run_id, finished, accuracy, train_answers, placement="answer", **overrides).with_fields(variant={"placement": "answer"})

    records = [placed("v1", "1", 0.45, 1000), placed("v2", "2", 0.41, 1000, lr=0.003), placed("v3", "3", 0.55, 3000)]
    tables = {t.title.split(" — ")[0]: t for t in sweep_tables(results_frame(records))}
    recipes = tables["spm [placement=answer] by recipe at equal training budget"].frame
    assert recipes.to_dict("records") == [{"model": "m", "budget_label": "1,000 answers x 1 epochs",
                                           "default": "45.0 [40.0, 50.0]", "default, lr=0.003": "41.0 [36.0, 46.0]"}]


def test_a_curve_labels_its_budget_axis_with_the_budgets(monkeypatch, tmp_path):
    from persona_bench.leaderboard import curves

    drawn = []
    monkeypatch.setattr(curves, "save", lambda figure, path: drawn.append(figure) or path)
    points = pd.DataFrame({"train_answers": [1000, 2000, 4000], "accuracy": [0.5, 0.55, 0.6], "method": "spm",  # one decade: log
                           "ci95": [(0.45, 0.55), (0.5, 0.6), (0.55, 0.65)]})  # scale alone would label minor ticks 2x10^3, 3x10^3...
    curves.curve_plot(points, {}, "spm", tmp_path / "curve.png")
    axis = drawn[0].axes[0].xaxis
    assert [label.get_text() for label in axis.get_ticklabels()] == ["1,000", "2,000", "4,000"]
    assert not [label.get_text() for label in axis.get_ticklabels(minor=True) if label.get_text()]  # no overlapping 3x10^3 labels


def reseeded(record: RunRecord, run_id: str, seed: int, accuracy: float) -> RunRecord:
    """The same run on the split drawn with another seed."""
    return record.with_fields(run_id=run_id, config=replace(record.config, seed=seed), accuracy=accuracy,
                              ci95=(accuracy - 0.05, accuracy + 0.05))


def test_plots_and_sweeps_never_mix_split_seeds_or_eval_people(tmp_path):
    """A grid runs its references at seeds 0-2: each seed's bars, and each seed's sweep, stand apart."""
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.plots import write_plots
    from persona_bench.leaderboard.tables import sweep_tables

    majority = majority_record("m0", "2026-01-01", 0.60)
    unseen = [spm_record(f"u{k}", "2026-01-01", 0.40 + k / 100).with_fields(config=RunConfig(method="spm", model="m", max_eval_people=10, users="unseen", k=k))
              for k in (1, 5)]
    records = [majority, reseeded(majority, "m1", 1, 0.70), *unseen,
               *(reseeded(r, f"{r.run_id}s1", 1, 0.10) for r in unseen)]  # seed 1 finished last
    frame = results_frame(records)
    plots = sorted(p.name for p in write_plots(frame, tmp_path))
    assert plots == ["methods_demo_all_10people.png", "methods_demo_all_10people_seed1.png",
                     "unseen_k_demo_all_10people.png", "unseen_k_demo_all_10people_seed1.png"]
    k_sweeps = [t for t in sweep_tables(frame) if t.title.startswith("Unseen users by number")]
    assert [t.title.split(" — ")[1] for t in k_sweeps] == ["demo [all], 10 eval people, seed 0", "demo [all], 10 eval people, seed 1"]
    assert [c["run_id"] for c in k_sweeps[0].cells] == ["u1", "u5"]


def test_the_unseen_k_sweep_gives_a_variant_its_own_row_and_line(tmp_path, monkeypatch):
    """Paper Table 6 where a method ran only as a variant (the benchmark scores Demographics + Raw Q in
    bf16-mixed; here the answer-placed SPM) beside the defaults: a row each, labelled as the main tables
    label them, and a line each in the plot."""
    from persona_bench.leaderboard import plots
    from persona_bench.leaderboard.frame import results_frame
    from persona_bench.leaderboard.tables import sweep_tables

    def unseen(record: RunRecord, k: int) -> RunRecord:
        return record.with_fields(run_id=f"{record.run_id}{k}", config=replace(record.config, users="unseen", k=k))

    records = [unseen(spm_record("d", "2026-01-01", 0.40 + k / 100), k) for k in (1, 5)]
    records += [unseen(placed_record("p", "2026-01-01", 0.50 + k / 100), k) for k in (1, 5)]
    frame = results_frame(records)
    [table] = [t for t in sweep_tables(frame) if t.title.startswith("Unseen users by number")]
    assert table.frame.to_dict("records") == [
        {"model": "m", "method": "spm", "1": "41.0 [36.0, 46.0]", "5": "45.0 [40.0, 50.0]"},
        {"model": "m", "method": "spm [placement=answer]", "1": "51.0 [46.0, 56.0]", "5": "55.0 [50.0, 60.0]"},
    ]
    assert sorted(c["run_id"] for c in table.cells) == ["d1", "d5", "p1", "p5"]
    drawn = {}
    monkeypatch.setattr(plots, "line_plot", lambda frame, x, *rest: drawn.setdefault(x, frame))
    plots.write_plots(frame, tmp_path)
    assert sorted(drawn["k"]["method"].unique()) == ["spm", "spm [placement=answer]"]


def test_the_bar_chart_shows_the_main_tables_columns(tmp_path, monkeypatch):
    """A method run only in variants (answer-placed SPM) gets its bar, as it gets its main-table column;
    its untrained control does not."""
    from persona_bench.leaderboard import plots
    from persona_bench.leaderboard.frame import results_frame

    drawn = {}
    monkeypatch.setattr(plots, "method_bars", lambda frame, title, path: drawn.setdefault(path.name, frame))
    records = [majority_record("m", "2026-01-01", 0.60), placed_record("v", "2026-01-02", 0.55, 3000),
               placed_record("vc", "2026-01-03", 0.23, weights="random")]
    plots.write_plots(results_frame(records), tmp_path)
    assert sorted(drawn["methods_demo_all_10people.png"]["column"]) == ["majority", "spm [placement=answer]"]


def test_curves_keep_unseen_k_apart_and_never_share_a_file(tmp_path):
    from persona_bench.leaderboard.curves import learning_curves
    from persona_bench.leaderboard.frame import results_frame

    def unseen(run_id: str, k: int, answers: int, model: str) -> RunRecord:
        record = spm_record(run_id, "2026-01-01", 0.3 + answers / 1e5, answers)
        return record.with_fields(config=RunConfig(method="spm", model=model, max_eval_people=10, users="unseen", k=k))

    long = "a-model-name-long-enough-to-fill-the-file-name-slug-on-its-own-{}"
    records = [unseen(f"{m}{k}{a}", k, a, long.format(m)) for m in "xy" for k in (1, 5) for a in (1000, 3000)]
    tables, plots = learning_curves(results_frame(records), tmp_path)
    assert len(tables) == 4 and all(len({c["run_id"][1] for c in t.cells}) == 1 for t in tables)  # one K per curve
    assert len(set(plots)) == 4


def test_sweep_values_sort_by_number_also_leading_a_label():
    from persona_bench.leaderboard.tables import sort_key

    values = ["untrained", "10,000 answers x 1 epochs", "0.001", "3,000 answers x 1 epochs", "5e-05", "4,8,12", "cluster:6"]
    assert sorted(values, key=sort_key) == ["5e-05", "0.001", "4,8,12", "3,000 answers x 1 epochs", "10,000 answers x 1 epochs",
                                            "cluster:6", "untrained"]


def test_a_run_in_another_precision_is_its_own_column_labelled_by_its_dtype():
    from persona_bench.leaderboard.frame import latest, results_frame
    from persona_bench.leaderboard.tables import main_columns

    def placed_in(dtype: str, run_id: str, accuracy: float) -> RunRecord:
        record = placed_record(run_id, "1", accuracy, 1000)
        return record.with_fields(config=replace(record.config, dtype=dtype))

    frame = results_frame([placed_record("a", "1", 0.40, 1000), placed_in("bf16-mixed", "b", 0.45), placed_in("float32", "c", 0.42)])
    assert list(frame["variant"]) == ["placement=answer", "dtype=bf16-mixed, placement=answer", "dtype=float32, placement=answer"]
    shown = latest(main_columns(frame), ["model", "column"])
    assert dict(zip(shown["column"], shown["run_id"])) == {
        "spm [placement=answer]": "a", "spm [dtype=bf16-mixed, placement=answer]": "b", "spm [dtype=float32, placement=answer]": "c"}
