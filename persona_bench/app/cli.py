"""The ``persona-bench`` command line.

    persona-bench data summary     [--data D] [--waves W26,W41]
    persona-bench data example     DIR [--people N] [--questions N]
    persona-bench personas fit     [--data D] --out DIR [--solver als|adam] [--dim 16] [--ks 1-12]
    persona-bench personas analyze [--data D] --out DIR [--k K]
    persona-bench methods | metrics | models list
    persona-bench run --method M [--model NAME] [--data D] [--persona P] [--users seen|unseen]
                      [--k N] [--max-eval-people N] [--seed S] [--out RUNS_DIR] [method flags]
    persona-bench train [--method spm] [run flags] [method flags]
    persona-bench curve [--method spm] --budgets 1000,3000,10000 [run flags] [method flags] [--leaderboard FILE]
    persona-bench sweep GRID.yaml [--out RUNS_DIR] [--leaderboard FILE] [--html] [--data-name [SHORT=]NAME]
    persona-bench leaderboard [--runs RUNS_DIR] [--out FILE] [--metric NAME] [--skip-bad] [--html] [--data-name [SHORT=]NAME]

``python -m persona_bench`` is the same command (``torchrun --nproc_per_node N -m persona_bench run ...``
scores and trains data-parallel).

``--data`` is ``demo`` (default, embedded), ``opinionqa:PATH`` or ``pew:PATH``. Errors in input
or arguments print one line and exit with status 2.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from dataclasses import MISSING, fields, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from tabulate import tabulate

from ..harness.core.errors import ConfigError, PersonaBenchError
from ..harness.core.options import flag, help_text, value_type

COMMANDS: dict[str, Callable[[argparse.Namespace, list[str]], int]] = {}


def command(name: str) -> Callable:
    """Register a sub-command handler under ``name`` (``"personas fit"``)."""

    def wrap(handler: Callable) -> Callable:
        COMMANDS[name] = handler
        return handler

    return wrap


def waves_arg(text: str) -> list[str]:
    """``W26,W41`` -> ["W26", "W41"]."""
    waves = [w.strip() for w in text.split(",") if w.strip()]
    if not waves:
        raise argparse.ArgumentTypeError("expected a comma-separated list such as W26,W41")
    return waves


def budgets_arg(text: str) -> list[int]:
    """``1000,3000`` -> [1000, 3000] (ascending, each at least 1)."""
    try:
        budgets = sorted({int(b) for b in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError("expected a comma-separated list of answer counts such as 1000,3000,10000") from None
    if not budgets or budgets[0] < 1:
        raise argparse.ArgumentTypeError("budgets must be at least 1")
    return budgets


def seeds_arg(text: str) -> list[int]:
    """``0,1,2`` -> [0, 1, 2] (in the order given; a seed named twice is an error)."""
    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("expected a comma-separated list of seeds such as 0,1,2") from None
    if len(set(seeds)) < len(seeds):
        raise argparse.ArgumentTypeError(f"seed {next(s for s in seeds if seeds.count(s) > 1)} is given twice")
    return seeds


# RunConfig fields whose flags are generated as declared (method, data, waves, users and the
# method's options have flags of their own shape)
RUN_FLAGS = ("model", "persona", "k", "max_eval_people", "seed", "protocol", "option_order", "cf_solver", "cf_dim", "fold_in", "prompt_texts", "dtype",
             "pseudonymize")


def config_flag(parser: argparse.ArgumentParser, name: str, **overrides) -> None:
    """The flag of RunConfig field ``name`` from its declaration (type, default, choices, help); ``overrides`` win."""
    from ..harness.runs.config import RunConfig

    item = next(f for f in fields(RunConfig) if f.name == name)
    kind = value_type(RunConfig, name, item.default)
    settings = {"default": item.default, "help": help_text(item, choices=False)}
    if kind is bool:
        settings["action"] = "store_true"
    else:
        settings.update(type=kind, choices=item.metadata.get("choices"))
    parser.add_argument(flag(name), dest=name, **{**settings, **overrides})


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """--data, --waves and --metadata, shared by every data-reading command."""
    config_flag(parser, "data")
    parser.add_argument("--waves", type=waves_arg, default=None, help="comma-separated waves (default: all with answers)")
    parser.add_argument("--metadata", default=None, help="pew: only; OpinionQA folder with info.csv per wave")


def load_data(args: argparse.Namespace):
    """The survey named by the data arguments."""
    from ..harness.data.loaders import data_kind, load_survey

    if args.metadata is None:
        return load_survey(args.data, args.waves)
    if data_kind(args.data) != "pew":
        raise ConfigError(f"--metadata applies to --data pew:PATH only (not {args.data})")
    return load_survey(args.data, args.waves, metadata=args.metadata)


def build_parser(run_defaults: Mapping[str, object] | None = None) -> argparse.ArgumentParser:
    """The top-level parser with every sub-command (``run_defaults``: a preset's run settings,
    the defaults of ``run``, ``train`` and ``curve`` under their explicit flags)."""
    parser = argparse.ArgumentParser(
        prog="persona-bench", description="Steer language models toward data-driven personas.", allow_abbrev=False
    )
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="inspect survey data").add_subparsers(dest="action", required=True)
    add_data_args(data.add_parser("summary", help="people, questions and answers per wave"))
    example = data.add_parser("example", help="write a small survey in the OpinionQA layout: the template for bringing your own")
    example.add_argument("out", type=Path, help="folder to write (then: --data opinionqa:OUT)")
    example.add_argument("--people", type=int, default=300, help="respondents (default 300)")
    example.add_argument("--questions", type=int, default=12, help="questions (default 12)")

    personas = sub.add_parser("personas", help="fit and analyse data-driven personas").add_subparsers(dest="action", required=True)
    fit = personas.add_parser("fit", help="collaborative filtering, elbow curve and clusters")
    analyze = personas.add_parser("analyze", help="cluster composition and distinctive questions (paper Sec. 4.2)")
    fit.add_argument("--out", type=Path, required=True, help="output folder")
    analyze.add_argument("--out", type=Path, default=Path("personas-analysis"),
                         help="output folder (default: personas-analysis; holds no per-person data)")
    for p in (fit, analyze):
        add_data_args(p)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--solver", choices=("als", "adam"), default="als", help="CF solver (default: als)")
        p.add_argument("--dim", type=int, default=16, help="embedding size d (default: 16)")
    fit.add_argument("--ks", default="1-12", help="cluster counts for the elbow curve, e.g. 1-12 or 2,4,6")
    analyze.add_argument("--k", type=int, default=None, help="number of clusters (default: the elbow)")

    audit = sub.add_parser("audit", help="audit a finished run").add_subparsers(dest="action", required=True)
    membership = audit.add_parser("membership", help="can the trained module tell the people it was trained on from others? (AUC beside 0.5)")
    membership.add_argument("run_dir", type=Path, help="a finished steering run's folder, RUNS_DIR/<run-id>")
    membership.add_argument("--device", default="auto", help="where the LM runs (default: auto)")
    membership.add_argument("--max-train-answers", type=int, default=None,
                            help="for an untrained control: the budget of the trained run it controls (whose training set is audited)")

    methods = sub.add_parser("methods", help="list registered methods and their options (METHOD: its options in full)")
    methods.add_argument("name", nargs="?", default=None, metavar="METHOD", help="a method whose options to describe")
    sub.add_parser("metrics", help="list registered per-person metrics (every run computes each)")
    board = sub.add_parser("leaderboard", help="render the leaderboard markdown and plots from a runs folder")
    board.add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (default: ./runs)")
    board.add_argument("--out", type=Path, default=None, help="leaderboard file (default: RUNS_DIR/LEADERBOARD.md)")
    board.add_argument("--note", default="", help="extra words on how these runs were produced (after the standard line)")
    board.add_argument("--metric", default="accuracy", help="rank, mark and test the tables by this registered metric (default: accuracy; "
                       "persona-bench metrics lists them)")
    board.add_argument("--skip-bad", action="store_true", help="leave out unreadable results.json files (named in the leaderboard's note) instead of failing")
    data_name_flag(board)
    board.add_argument("--html", action="store_true", help="also write the leaderboard as one self-contained HTML page beside it "
                       "(sortable tables, CI bars, plots inline, each run's configuration on demand)")
    grid = sub.add_parser("sweep", help="run an experiment grid (resumable), then refresh the leaderboard")
    grid.add_argument("grid", type=Path, help="grid YAML, e.g. grids/cpu.yaml")
    grid.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default: ./runs)")
    grid.add_argument("--leaderboard", type=Path, default=None, help="leaderboard file (default: RUNS_DIR/LEADERBOARD.md)")
    data_name_flag(grid)
    grid.add_argument("--html", action="store_true", help="also write the leaderboard's self-contained HTML page beside it")
    grid.add_argument("--dry-run", action="store_true", help="list the runs and where each stands in the runs folder (done, running, "
                      "started: it resumes, to run) without running them")
    grid.add_argument("--plan", action="store_true", help="print what each run and the whole grid will cost (an estimate), run nothing; with a runs folder (--out) "
                      "begun, also where each run stands and the done runs' measured wall time")
    grid.add_argument("--gpu", default="h100", help="--plan: the GPU to estimate hours on (h100, a100, l40s; cpu: this machine only)")
    grid.add_argument("--executor", choices=("local", "ray", "slurm"), default="local", help="where runs execute (default: here, one after another)")
    grid.add_argument("--workers", type=int, default=None, help="ray: CPUs of a local Ray; slurm: array parallelism")
    grid.add_argument("--address", default=None, help="ray: address of a running Ray cluster (default: start a local one)")
    grid.add_argument("--slurm-partition", default=None, help="slurm: partition")
    grid.add_argument("--slurm-local", action="store_true", help="slurm: run the job arrays with submitit's local executor (testing)")
    grid.add_argument("--gpus-per-run", type=int, default=1, help="slurm: GPUs for each language-model run (default 1)")
    grid.add_argument("--timeout-min", type=int, default=720, help="slurm: time limit per run in minutes (default 720)")
    grid.add_argument("--seeds", type=seeds_arg, default=None, help="run every configuration at each of these split seeds, e.g. 0,1,2")
    grid.add_argument("--import", dest="imports", action="append", default=[], help="module that registers extra methods")
    models = sub.add_parser("models", help="language models").add_subparsers(dest="action", required=True)
    models.add_parser("list", help="model aliases and whether each is available here")

    run = sub.add_parser(
        "run", help="run one method and write results.json", allow_abbrev=False,
        epilog="Method flags (e.g. --k-context 5): see `persona-bench methods`.",
    )
    add_run_args(run, run_defaults)
    run.add_argument("--method", required=True, help="registered method name (see `persona-bench methods`)")
    run.add_argument("--force", action="store_true", help="recompute even if this run already finished")
    run.add_argument("--seeds", type=seeds_arg, default=None, help="repeat over split seeds, e.g. 0,1,2, then the mean and spread (replaces --seed)")
    run.add_argument("--no-references", action="store_true", help="score nothing beside it (by default: the majority and cf references, the unsteered LM for LLM methods, the untrained control for steering methods)")
    curve = sub.add_parser(
        "curve", help="a steering method at several training budgets beside its references, then the leaderboard", allow_abbrev=False,
        epilog="Method flags (--recipe, --epochs, ...): see `persona-bench methods`. Every budget and companion is a normal, resumable run.",
    )
    add_run_args(curve, run_defaults)
    curve.add_argument("--method", default="spm", help="a steering method (default: spm)")
    curve.add_argument("--budgets", type=budgets_arg, required=True, help="answers to train on, e.g. 1000,3000,10000,30000")
    curve.add_argument("--leaderboard", type=Path, default=None, help="leaderboard file (default: RUNS_DIR/LEADERBOARD.md)")
    train = sub.add_parser(
        "train", help="train (or resume training) the steering module of a run configuration, without scoring", allow_abbrev=False,
        epilog="Method flags (--recipe, --epochs, --max-train-answers, ...): see `persona-bench methods`.",
    )
    add_run_args(train, run_defaults)
    train.add_argument("--method", default="spm", help="a steering method (default: spm)")
    return parser


def add_run_args(run: argparse.ArgumentParser, defaults: Mapping[str, object] | None = None) -> None:
    """Flags shared by ``run``, ``train`` and ``curve`` (``defaults``: a preset's run settings)."""
    from ..harness.runs.presets import PRESETS

    run.add_argument("--preset", choices=sorted(PRESETS), default=None,
                     help="named settings, overridden by explicit flags (see `persona-bench methods`); quick: the README's main job")
    add_data_args(run)
    for name in RUN_FLAGS:  # the run settings' flags, generated from RunConfig's declarations
        config_flag(run, name)
    config_flag(run, "users", default=None, help="seen (default) or unseen people (cross-wave: unseen)")
    run.add_argument("--from", dest="from_wave", default=None, help="cross-wave: the wave personas come from, e.g. W26")
    run.add_argument("--to", dest="to_wave", default=None, help="cross-wave: the wave people are scored on, e.g. W41")
    run.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:1, ...")
    run.add_argument("--device-map", default=None, help="auto: spread a model larger than one GPU over the GPUs (transformers/accelerate big-model loading)")
    run.add_argument("--out", type=Path, default=Path("runs"), help="runs folder (default: ./runs)")
    run.add_argument("--import", dest="imports", action="append", default=[], help="module that registers extra methods")
    run.set_defaults(**(defaults or {}))


def method_options(method: type, argv: list[str], parser: argparse.ArgumentParser, preset: dict | None = None) -> dict:
    """Parse a method's own flags (one per field of its Options dataclass) from ``argv``; values
    of ``preset`` fill the flags not given. Returns the options that differ from the defaults."""
    own = argparse.ArgumentParser(prog=f"persona-bench run --method {method.name}", add_help=False, allow_abbrev=False)
    for f in fields(method.Options):
        default = (preset or {}).get(f.name, None if f.default is MISSING else f.default)
        kind = value_type(method.Options, f.name, default)
        if kind is bool:
            own.add_argument(flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_text(f))
        else:
            own.add_argument(flag(f.name), dest=f.name, type=kind, default=default, help=help_text(f))
    values, unknown = own.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments for method {method.name}: {' '.join(unknown)}")
    defaults = {f.name: f.default for f in fields(method.Options)}
    return {k: v for k, v in vars(values).items() if v != defaults.get(k)}


def percent(value: float) -> str:
    return f"{100 * value:.1f}"


def results_row(record) -> list:
    """A RunRecord as a row of RESULT_HEADERS."""
    lo, hi = record.ci95
    config = record.config
    k = config.k if config.users == "unseen" else ""
    variant = ", ".join(f"{key}={value}" for key, value in record.variant.items())
    training = record.training
    trained = f"{training.train_answers:,} x {training.epochs}" if training and training.train_answers else ""
    return [record.method, variant, config.model or "-", config.persona, config.users, k, trained,
            percent(record.accuracy), f"[{percent(lo)}, {percent(hi)}]", record.n_people, record.n_answers]


RESULT_HEADERS = ["method", "variant", "model", "persona", "users", "K", "answers x epochs", "macro acc %", "95% CI", "people", "docs"]


def comparison_line(result, other, label: str, runs_dir: Path, seed: int) -> str:
    """``spm vs raw (unsteered LM): +11.0 points, 95% CI [+8.1, +13.9], p = 0.0001: above``."""
    from ..harness.metrics.registry import paired_comparison
    from ..harness.runs.store import read_samples

    comparison = paired_comparison(read_samples(runs_dir / result.run_id), read_samples(runs_dir / other.run_id), seed=seed)
    verdict = "not significantly different" if not comparison.significant else "above" if comparison.difference > 0 else "below"
    difference, interval = comparison.in_points().split(" ", 1)
    return f"{result.method} vs {label}: {difference} points, 95% CI {interval}, p = {comparison.p_value:.3g}: {verdict}"


@command("data summary")
def data_summary(args: argparse.Namespace, extra: list[str]) -> int:
    survey = load_data(args)
    table = survey.summary()
    print(tabulate(table, headers="keys", showindex=False, tablefmt="github", floatfmt=".3f"))
    return 0


@command("data example")
def data_example(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.data.loaders import load_survey
    from ..harness.data.loaders.export import write_opinionqa

    if args.people < 10 or args.questions < 2:
        raise ConfigError("data example: --people must be at least 10 and --questions at least 2")
    if args.out.exists() and any(args.out.iterdir()):
        raise ConfigError(f"{args.out}: not empty (data example writes a new folder)")
    for path in write_opinionqa(load_survey(f"demo:{args.people}x{args.questions}"), args.out):
        print(f"wrote {path}")
    print(f"\nA survey in the OpinionQA layout (from the embedded demo). Check it: persona-bench data summary --data opinionqa:{args.out}")
    return 0


@command("audit membership")
def audit_membership_command(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.scoring.models import pick_device
    from ..harness.runner import audit_finished_run

    record = audit_finished_run(args.run_dir, log=stderr_log, device=pick_device(args.device), max_train_answers=args.max_train_answers)
    print(membership_line(record.training.membership_audit))
    print(f"stored in {args.run_dir / 'results.json'} (membership_audit)")
    return 0


def parse_ks(text: str) -> tuple[int, ...]:
    """``1-12`` or ``2,4,6`` -> a tuple of cluster counts."""
    try:
        if "-" in text:
            low, high = (int(x) for x in text.split("-"))
            return tuple(range(low, high + 1))
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise PersonaBenchError(f"--ks {text!r}: expected a range like 1-12 or a list like 2,4,6") from None


def fitted_personas(args: argparse.Namespace, save_split: bool = True):
    """Survey, split and persona space for the personas commands (the split, which names people, is
    saved in --out when ``save_split``)."""
    from ..harness.personas.space import fit_personas
    from ..harness.data.protocol import SplitConfig, make_split

    survey = load_data(args)
    split = make_split(survey, SplitConfig(seed=args.seed))
    if save_split:
        split.save(args.out)
    space = fit_personas(survey, split, args.solver, args.dim, args.seed)
    return survey, split, space


@command("personas fit")
def personas_fit(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.core.atomic import atomic_write_text
    from ..harness.personas.space import elbow_curve, kmeans, pick_elbow

    survey, split, space = fitted_personas(args)
    space.save(args.out)
    curve = elbow_curve(space, split, parse_ks(args.ks), seed=args.seed)
    chosen = pick_elbow(curve)
    clusters = kmeans(space.vectors, chosen, seed=args.seed)
    assignments = space.people.to_frame(index=False).assign(cluster=clusters.labels)
    atomic_write_text(args.out / "clusters.csv", assignments.to_csv(index=False))
    rmse = tabulate([[k, f"{v:.4f}"] for k, v in space.rmse.items()], headers=["answers", "RMSE"], tablefmt="github")
    elbow = tabulate(curve, headers="keys", showindex=False, tablefmt="github", floatfmt=".5f")
    report = (
        f"# Personas of {survey.name} ({args.solver}, d={args.dim}, seed {args.seed})\n\n"
        f"{len(space.people)} train people, {len(space.questions)} questions.\n\n## CF RMSE\n\n{rmse}\n\n"
        f"## Elbow of Eq. 1 (centroid MSE on train answers)\n\n{elbow}\n\nElbow pick: k = {chosen} "
        f"(cluster sizes {sorted(np.bincount(clusters.labels).tolist(), reverse=True)}).\n"
    )
    atomic_write_text(args.out / "personas.md", report)
    print(report)
    print(f"wrote {args.out}/personas.json, cf.safetensors, clusters.csv, personas.md, split.*")
    return 0


@command("personas analyze")
def personas_analyze(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.personas.analysis import write_analysis
    from ..harness.personas.space import elbow_curve, kmeans, pick_elbow

    survey, split, space = fitted_personas(args, save_split=False)  # its output is for publishing: no per-person file
    curve = elbow_curve(space, split, seed=args.seed)
    elbow = pick_elbow(curve)
    k = args.k or elbow
    if args.k and args.k != elbow:
        print(f"k = {args.k} as given; the elbow picks k = {elbow}")
    labels = kmeans(space.vectors, k, seed=args.seed).labels
    for path in write_analysis(survey, space.people, labels, args.out, elbow=(curve, elbow)):
        print(f"wrote {path}")
    return 0


@command("methods")
def list_methods(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.method.base import get_method, load_methods
    from ..harness.runs.presets import PRESETS

    if args.name is not None:
        return describe_method(get_method(args.name))
    rows = []
    for name, method in sorted(load_methods().items()):
        options = ", ".join(f"{flag(f.name)} ({f.default})" for f in fields(method.Options)) or "-"
        rows.append([name, method.kind, "yes" if method.needs_model else "no", "yes" if method.uses_persona else "no", options, method.description])
    print(tabulate(rows, headers=["method", "kind", "LLM", "persona", "options", "description"], tablefmt="github"))
    presets = [[name, preset.flags(), preset.description] for name, preset in sorted(PRESETS.items())]
    print("\nPresets (`--preset NAME` on run, train and curve, `preset: NAME` in grids; a method takes the options it has; explicit flags win):\n")
    print(tabulate(presets, headers=["preset", "stands for", "description"], tablefmt="github"))
    return 0


def describe_method(method: type) -> int:
    """One method's options: flag, role, declared choices and help (``persona-bench methods NAME``)."""
    from ..harness.core.options import role

    rows = [[flag(f.name), role(f), "/".join(map(str, f.metadata.get("choices") or ())) or "-",
             None if f.default is MISSING else f.default, f.metadata.get("help", "")] for f in fields(method.Options)]
    print(f"{method.name} ({method.kind}): {method.description}\n")
    print(tabulate(rows, headers=["flag", "role", "choices", "default", "help"], tablefmt="github") if rows else "no options")
    print("\nRoles: shape = what the method is (a variant); budget, recipe = how much and how it trains (a recipe fills the "
          "ones left unset); operational = how it runs (same result); seed = which draw of its training (the same run trained again).")
    return 0


@command("metrics")
def list_metrics(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.metrics.registry import registered_metrics

    rows = [[name, "higher" if metric.higher_is_better else "lower", metric.description] for name, metric in registered_metrics().items()]
    print(tabulate(rows, headers=["metric", "better", "description"], tablefmt="github"))
    print("\nEvery run computes each per person and reports its mean over people with a 95% CI (results.json `metrics`); "
          "`persona-bench leaderboard --metric NAME` ranks by one.")
    return 0


def leaderboard_file(runs_dir: Path, given: Path | None) -> Path:
    """The leaderboard file: ``given``, else ``RUNS_DIR/LEADERBOARD.md`` (never a committed file by default)."""
    return given or runs_dir / "LEADERBOARD.md"


def shown_path(path: Path) -> str:
    """A path as a leaderboard's command line shows it: relative to the working folder when inside it,
    else its name alone (a published leaderboard never shows this machine's directories)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return Path(path).resolve().name


def data_name_flag(parser: argparse.ArgumentParser) -> None:
    """``--data-name [SHORT=]NAME``: what the leaderboard's titles call a data source."""
    parser.add_argument("--data-name", action="append", default=[], metavar="[SHORT=]NAME",
                        help="name the data in the leaderboard's titles (default: its folder's name, e.g. opinionqa); "
                             "SHORT=NAME where the runs hold several data sources; repeatable")


def data_name_args(names: list[str]) -> str:
    """The ``--data-name`` flags as a command line writes them."""
    return "".join(f" --data-name {shlex.quote(name)}" for name in names)


def refresh_leaderboard(runs_dir: Path, out: Path, command: str, note: str = "", skip_bad: bool = False, metric: str = "accuracy",
                        html: bool = False, data_names: list[str] = ()) -> None:
    """Write the leaderboard of ``runs_dir`` to ``out`` (``html``: its page too; ``data_names``:
    ``--data-name``), saying it came from ``command``."""
    from ..leaderboard import write_leaderboard
    from ..leaderboard.render import provenance

    for path in write_leaderboard(runs_dir, out, f"{provenance(command)} {note}".strip(), skip_bad=skip_bad, metric=metric, html=html,
                                  data_names=data_names):
        print(f"wrote {path}")


@command("leaderboard")
def leaderboard_command(args: argparse.Namespace, extra: list[str]) -> int:
    args.out = leaderboard_file(args.runs, args.out)
    command = (f"persona-bench leaderboard --runs {shown_path(args.runs)} --out {shown_path(args.out)}" + (" --skip-bad" if args.skip_bad else "")
               + (f" --metric {args.metric}" if args.metric != "accuracy" else "") + (" --html" if args.html else "")
               + data_name_args(args.data_name))
    refresh_leaderboard(args.runs, args.out, command, args.note, args.skip_bad, args.metric, args.html, args.data_name)
    return 0


@command("sweep")
def sweep_command(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.method.base import load_methods
    from .sweep import sweep

    load_methods(tuple(args.imports))
    if args.plan:
        return plan_command(args)
    if args.data_name and not args.dry_run:
        check_sweep_data_names(args)
    results, failures = sweep(
        args.grid, args.out, log=stderr_log, dry_run=args.dry_run, seeds=args.seeds, executor=args.executor, imports=tuple(args.imports),
        workers=args.workers, address=args.address, slurm_local=args.slurm_local, slurm_partition=args.slurm_partition,
        gpus_per_run=args.gpus_per_run, timeout_min=args.timeout_min,
    )
    args.leaderboard = leaderboard_file(args.out, args.leaderboard)
    try:
        if results:
            seeds = f" --seeds {','.join(map(str, args.seeds))}" if args.seeds else ""
            refresh_leaderboard(args.out, args.leaderboard, f"persona-bench sweep {shown_path(args.grid)}{seeds} --out {shown_path(args.out)} --leaderboard {shown_path(args.leaderboard)}"
                                f"{' --html' if args.html else ''}{data_name_args(args.data_name)}", html=args.html, data_names=args.data_name)
    finally:  # a leaderboard that cannot be written never hides a failed run
        for failure in failures:
            print(f"failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


def hours_text(hours: float) -> str:
    """``35.5 hours``, or in minutes under an hour (``1.0 minutes``: a grid on a GPU)."""
    return f"{hours:,.1f} hours" if hours >= 1 else f"{60 * hours:,.1f} minutes"


def check_sweep_data_names(args: argparse.Namespace) -> None:
    """Refuse a ``--data-name SHORT=NAME`` whose SHORT names no data of the grid or of the runs folder's
    runs before the sweep runs (its leaderboard would refuse it only at the end)."""
    from ..harness.data.identity import data_name
    from ..harness.runs.store import finished_runs
    from ..leaderboard.frame import parse_data_name
    from .sweep import load_grid

    known = {data_name(config.data) for config in load_grid(args.grid)}
    known |= {data_name(record.config.data) for record in finished_runs(args.out, skip_bad=True)[0]} if args.out.is_dir() else set()
    for item in args.data_name:
        short, _ = parse_data_name(item)
        if short is not None and short.split(" (")[0] not in known:  # ``opinionqa (3f2a9c)``: one of two sources of that name
            raise ConfigError(f"--data-name {item}: neither the grid nor {args.out}'s runs have data called {short!r} "
                              f"(they have: {', '.join(sorted(known))})")


def plan_command(args: argparse.Namespace) -> int:
    """``sweep --plan``: the cost table of a grid and its totals."""
    from ..harness.training.cost import calibrate
    from ..harness.plan import GPUS, UTILISATION, grid_costs, measured_pace, plan_table
    from ..harness.runs.store import run_folder
    from .sweep import grid_runs, measured_hours, run_state, with_seeds

    configs = [run.config for run in with_seeds(grid_runs(args.grid), args.seeds)]
    started = any(run_folder(args.out, config).is_dir() for config in configs)  # the sweep has begun there (costing writes only _plan/)
    costs = grid_costs(configs, args.out, stderr_log)
    used = sorted({c.dtype for c in costs if c.scoring_flops or c.training_flops}) or ["float32"]
    calibrations = {dtype: calibrate(dtype=dtype) for dtype in used}
    frame, totals = plan_table(costs, {dtype: c.flops_per_second for dtype, c in calibrations.items()}, args.gpu)
    if started:  # where each run stands, and what the done ones took
        frame.insert(1, "state", [run_state(args.out, config).split(" (")[0] for config in configs])
        frame["measured hours"] = [measured_hours(args.out, config) for config in configs]
    shown = frame.astype(object).where(frame.notna(), None)  # not yet measured: an empty cell
    print(tabulate(shown, headers="keys", showindex=False, tablefmt="github", floatfmt=",.3g", intfmt=",", missingval=""))
    print(f"\nTotal: {totals['runs']} runs, {totals['PFLOP']:,.1f} PFLOP, {hours_text(totals['hours here'])} on this machine "
          f"(measured {', '.join(f'{c.flops_per_second / 1e9:,.0f} GFLOP/s' + (f' in {d}' if len(used) > 1 else '') for d, c in calibrations.items())} "
          f"on LM forwards)")
    if started:
        done = frame["state"] == "done"
        unknown = int((done & frame["measured hours"].isna()).sum())
        left, pace = frame.loc[~done, "hours here"].sum(), measured_pace(frame)
        print(f"In {shown_path(args.out)}: {int(done.sum())} of {len(frame)} runs done, planned {hours_text(frame.loc[done, 'hours here'].sum())}, "
              f"took {hours_text(frame.loc[done, 'measured hours'].sum())} (their results.json wall_seconds over every sitting; a run "
              f"finished before persona-bench 0.11 counts its last{f'; {unknown} recorded none' if unknown else ''}); "
              f"{int((~done).sum())} left, planned {hours_text(left)}"
              + (f", about {hours_text(left * pace)} at the pace of the done runs that had a cost ({pace:.2f}x their plan)" if pace and left else ""))
    measured = min(calibrations.values(), key=lambda c: c.cpu_share)
    if measured.busy:
        print(f"Warning: the machine was busy while it measured (the calibration got {measured.cpu_share:.0%} of its "
              f"{measured.threads} threads' time): the hours here read high; plan on a quiet machine.")
    if args.gpu in GPUS:
        print(f"Total on one {args.gpu}: {hours_text(totals[f'hours on {args.gpu}'])} (dense bf16 peak {GPUS[args.gpu] / 1e12:,.0f} TFLOP/s "
              f"x assumed utilisation {UTILISATION['scoring']:.0%} scoring, {UTILISATION['training']:.0%} training; a model under a "
              f"billion parameters keeps a GPU far less busy than that, so for one it is a floor)")
    print("An estimate: FLOPs from parameter counts and the runs' own prompts; training epochs are the recipe's (early stopping may end sooner).")
    return 0


@command("models list")
def list_models(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.scoring.models import ALIASES, model_status

    rows = [[a.name, a.hub_id or "-", model_status(a.name), a.description] for a in ALIASES.values()]
    print(tabulate(rows, headers=["alias", "hub id", "status", "description"], tablefmt="github"))
    print("\nAlso accepted: a local model folder, or an org/name hub id found in the Hugging Face cache.")
    return 0


def run_config(args: argparse.Namespace, extra: list[str]):
    """The RunConfig described by ``run``/``train`` arguments (method flags parsed from ``extra``)."""
    from ..harness.runs.config import RunConfig
    from ..harness.method.base import get_method, load_methods
    from ..harness.scoring.models import pick_device
    from ..harness.runs.presets import get_preset
    from ..harness.runner import checked

    pick_device(args.device)  # a device that does not exist here is refused before any work
    load_methods(tuple(args.imports))
    method = get_method(args.method)
    preset = {}
    if args.preset:
        chosen = get_preset(args.preset)
        recipes = getattr(method, "recipes", None)
        preset = chosen.method_options(method.Options, recipes)
        stderr_log(f"preset {args.preset} for {args.method}: {chosen.flags(method.Options, recipes)} (flags given explicitly win)")
    cross_wave = args.protocol == "cross-wave"
    if cross_wave != bool(args.from_wave and args.to_wave) or (args.from_wave or args.to_wave) and not cross_wave:
        raise ConfigError("--protocol cross-wave goes with --from WAVE --to WAVE (and they with it)")
    waves = (args.from_wave, args.to_wave) if cross_wave else tuple(args.waves or ())
    return checked(RunConfig(
        method=args.method, data=args.data, waves=waves, users=args.users or ("unseen" if cross_wave else "seen"),
        **{name: getattr(args, name) for name in RUN_FLAGS}, method_options=method_options(method, extra, build_parser(), preset),
    ))


def placement(args: argparse.Namespace) -> dict:
    """Where the run's model goes (never part of a run's identity)."""
    return {"device": args.device, "device_map": args.device_map}


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr)


@command("train")
def train_command(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.runner import prepared_method

    method, context = prepared_method(run_config(args, extra), args.out, stderr_log, **placement(args))
    folder = getattr(method, "checkpoint", None)
    if context.world.is_main:
        print(f"trained {method.name}: {folder}" if folder else f"{method.name}: nothing to train")
    return 0


@command("run")
def run_command(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.core.distributed import World

    config = run_config(args, extra)
    seeds = args.seeds or [config.seed]
    by_seed = [run_with_companions(replace(config, seed=seed), args) for seed in seeds]
    if World.current().is_main and len(seeds) > 1:
        print(f"\nOver {len(seeds)} split seeds ({', '.join(map(str, seeds))}): macro accuracy per seed, mean and spread")
        print(tabulate(seed_summary(by_seed, seeds), headers="keys", tablefmt="github", showindex=False))
    return 0


def run_with_companions(config, args: argparse.Namespace) -> dict:
    """One run and the runs it is read beside; print their table and paired comparisons."""
    from ..harness.core.distributed import World
    from ..harness.runner import REFERENCES, companions, evaluate

    result = evaluate(config, args.out, force=args.force, log=stderr_log, preset=args.preset, **placement(args))
    beside = {} if args.no_references else {label: evaluate(other, args.out, log=stderr_log, preset=args.preset, **placement(args)) for label, other in companions(config).items()}
    if not World.current().is_main:
        return {}
    if args.seeds:
        print(f"\nseed {config.seed}:")
    print(tabulate([results_row(r) for r in (result, *beside.values())], headers=RESULT_HEADERS, tablefmt="github"))
    references = {label: r for label, r in beside.items() if label in REFERENCES}
    lines = [comparison_line(result, r, label, args.out, config.seed) for label, r in beside.items() if label not in REFERENCES]
    if references:
        label, best = max(references.items(), key=lambda item: item[1].accuracy)
        lines.append(comparison_line(result, best, f"{label} (the best no-LLM reference)", args.out, config.seed))
    if lines:
        print("\nPaired over the same people and docs (bootstrap CI of the per-person difference):\n" + "\n".join(lines))
    if result.training and result.training.membership_audit:
        print("\n" + membership_line(result.training.membership_audit))
    print(f"\nresults: {args.out / result.run_id / 'results.json'}")
    return {config.method: result, **beside}


def membership_line(audit: dict) -> str:
    """What the membership audit of a run's trained module found, in one line."""
    from ..harness.training.audit import describe_audit, leaks

    verdict = "its people can be told from others (a CI above 0.5)" if leaks(audit) else "no leak found (each CI includes 0.5 or lies below)"
    return (f"Membership audit of the trained module ({audit['members']} members vs {audit['non_members']} {audit['non_member_source']}): "
            f"{describe_audit(audit)}: {verdict}")


def seed_summary(by_seed: list[dict], seeds: list[int]) -> list[dict]:
    """Per method (and companion): macro accuracy at each seed, mean, standard deviation and range."""
    rows = []
    for label in by_seed[0]:
        values = [100 * results[label].accuracy for results in by_seed]
        rows.append({"method": label, **{f"seed {s}": f"{v:.1f}" for s, v in zip(seeds, values)},
                     "mean": f"{np.mean(values):.1f}", "sd": f"{np.std(values, ddof=1):.1f}", "range": f"{max(values) - min(values):.1f}"})
    return rows


@command("curve")
def curve_command(args: argparse.Namespace, extra: list[str]) -> int:
    from ..harness.core.distributed import World
    from ..leaderboard.curves import CROSSED, crossing
    from ..harness.runner import companions, evaluate

    config = run_config(args, extra)
    results = [
        evaluate(replace(config, method_options={**config.method_options, "max_train_answers": budget}), args.out, log=stderr_log, preset=args.preset, **placement(args))
        for budget in args.budgets
    ]
    beside = {label: evaluate(other, args.out, log=stderr_log, preset=args.preset, **placement(args)) for label, other in companions(config).items()}
    if not World.current().is_main:
        return 0
    print(tabulate([results_row(r) for r in (*results, *beside.values())], headers=RESULT_HEADERS, tablefmt="github"))
    points = [(r.training.train_answers, r.accuracy) for r in results]
    if len(points) > 1:
        print("\n" + "\n".join(f"{config.method}: {crossing(points, beside[name].accuracy, name)}" for name in CROSSED if name in beside))
    command = f"persona-bench curve --method {args.method} --budgets {','.join(map(str, args.budgets))}"
    refresh_leaderboard(args.out, leaderboard_file(args.out, args.leaderboard), command)
    return 0


def parse_command_line(argv: list[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace, list[str]]:
    """(parser, arguments, method flags left over); a ``--preset``'s run settings become the
    defaults under the flags given explicitly."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "preset", None):
        from ..harness.runs.presets import get_preset

        parser = build_parser(get_preset(args.preset).run)
        args, extra = parser.parse_known_args(argv)
    return parser, args, extra


def mark_failed() -> None:
    """Tell a data-parallel launch this rank failed (only where one was started: --help stays free of torch)."""
    distributed = sys.modules.get("persona_bench.harness.core.distributed")
    if distributed is not None:
        distributed.mark_failed()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``persona-bench`` console script."""
    from ..harness.scoring.models import enforce_offline

    enforce_offline()
    parser, args, extra = parse_command_line(argv)
    name = f"{args.command} {getattr(args, 'action', '')}".strip()
    if extra and name not in ("run", "train", "curve"):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return COMMANDS[name](args, extra)
    except PersonaBenchError as exc:
        print(f"persona-bench: error: {exc}", file=sys.stderr)
        mark_failed()
        return 2
    except BrokenPipeError:  # the reader of our output left (e.g. `| head`): nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes at exit
        return 1
    except OSError as exc:  # the environment (a file where a folder belongs, no space, no permission): its reason, exit 1
        print(f"persona-bench: error: {exc.filename or ''}: {exc.strerror or exc} (finished work is kept; rerun to resume)", file=sys.stderr)
        mark_failed()
        return 1
    except KeyboardInterrupt:
        print("persona-bench: interrupted (finished runs are kept; rerun to resume)", file=sys.stderr)
        mark_failed()
        return 130


if __name__ == "__main__":
    sys.exit(main())
