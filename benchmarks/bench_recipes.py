"""SPM recipe table: each optimisation setting at one fixed budget, its validation accuracy per
epoch, test macro accuracy with CI, the paired difference from the unsteered LM, and seconds.

Every setting is an ordinary ``persona-bench run --method spm`` (same data, split, eval people,
training answers and epochs), so a row can be reproduced from its flags alone; runs land in
``--out`` and a rerun reuses them (interrupt and continue at will). The references (majority,
cf, the unsteered LM, the untrained control) are the runs' own companions. Run from the
repository root:

    python benchmarks/bench_recipes.py [--data demo] [--waves W26] [--answers 1000] [--epochs 2] \\
        [--eval-people 60] [--settings paper,scaled,sink] [--out runs-recipes]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SETTINGS: dict[str, tuple[str, list[str]]] = {
    "paper": ("the paper's: paper init, AdamW lr 1e-3, constant", ["--recipe", "paper"]),
    "paper-fast": ("paper init, lr 1e-2, warmup 10% + cosine", ["--recipe", "paper", "--lr", "1e-2", "--warmup", "0.1", "--schedule", "cosine"]),
    "scaled": ("outputs in the LM's own units, zero start, lr 1e-2 cosine", ["--init", "scaled"]),
    "sink": ("default: scaled units, start at the LM's own opening key/values, lr 1e-2 cosine", []),
    "sink-3e-3": ("default with lr 3e-3", ["--lr", "3e-3"]),
    "sink-4-tokens": ("default with 4 virtual tokens", ["--virtual-tokens", "4"]),
    "sink-prompt": ("default in prompt mode (virtual input embeddings)", ["--mode", "prompt"]),
    "answer": ("default, the virtual key/values placed before the answer cue", ["--placement", "answer"]),
    "answer-prompt-4": ("default in prompt mode, 4 virtual tokens placed before the answer cue",
                        ["--mode", "prompt", "--virtual-tokens", "4", "--placement", "answer"]),
    "prompt-4": ("default in prompt mode, 4 virtual tokens before the prompt", ["--mode", "prompt", "--virtual-tokens", "4"]),
}


def setting_argv(name: str, args: argparse.Namespace) -> list[str]:
    """The ``persona-bench run`` arguments of one setting."""
    argv = ["run", "--method", "spm", "--data", args.data, "--max-eval-people", str(args.eval_people),
            "--max-train-answers", str(args.answers), "--epochs", str(args.epochs), "--out", str(args.out), *SETTINGS[name][1]]
    return argv + (["--waves", args.waves] if args.waves else [])


def run_setting(name: str, args: argparse.Namespace) -> tuple[dict, dict[str, dict]]:
    """Run (or reuse) one setting; its results and its companions' (label -> results)."""
    from persona_bench.app.cli import build_parser, run_config
    from persona_bench.app.cli import main as cli
    from persona_bench.harness.runner import companions
    from persona_bench.harness.runs.store import read_results, run_folder

    argv = setting_argv(name, args)
    if cli(argv) != 0:
        raise SystemExit(f"setting {name} failed: persona-bench {' '.join(argv)}")
    parsed, extra = build_parser().parse_known_args(argv)
    config = run_config(parsed, extra)
    others = {label: read_results(run_folder(args.out, other)) for label, other in companions(config).items()}
    return read_results(run_folder(args.out, config)), others


def comparison(result, other, runs: Path) -> str:
    """Paired difference in points with its 95% CI."""
    from persona_bench.harness.metrics.registry import paired_comparison
    from persona_bench.harness.runs.store import read_samples

    return paired_comparison(read_samples(runs / result.run_id), read_samples(runs / other.run_id)).in_points()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="demo")
    parser.add_argument("--waves", default="")
    parser.add_argument("--answers", type=int, default=1000, help="training answers (the budget)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--eval-people", type=int, default=60)
    parser.add_argument("--settings", default="paper,paper-fast,scaled,sink", help=f"comma-separated, from: {', '.join(SETTINGS)}")
    parser.add_argument("--out", type=Path, default=Path("runs-recipes"))
    args = parser.parse_args()
    names = [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting(s) {', '.join(unknown)}: choose from {', '.join(SETTINGS)}")
    rows, references = [], {}
    for name in names:
        result, others = run_setting(name, args)
        history = result.training.training_history if result.training else []
        raw = others["raw (unsteered LM)"]
        lo, hi = result.ci95
        rows.append([
            name, SETTINGS[name][0], " / ".join(f"{h['val_accuracy']:.3f}" for h in history),
            f"{100 * result.accuracy:.1f} [{100 * lo:.1f}, {100 * hi:.1f}]", comparison(result, raw, args.out),
            comparison(result, others["spm untrained"], args.out),
            f"{sum(h['seconds'] for h in history):.0f}",
        ])
        references.update({label: r for label, r in others.items() if label != "spm untrained"})
    print(f"data {args.data} {args.waves}, {args.answers:,} training answers x {args.epochs} epochs, {args.eval_people} eval people\n")
    print("| setting | what | val acc per epoch | test macro acc % [95% CI] | vs raw (points) | vs its untrained control | train s |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nReferences: " + ", ".join(f"{label} {100 * r.accuracy:.1f}% [{100 * r.ci95[0]:.1f}, {100 * r.ci95[1]:.1f}]"
                                       for label, r in references.items()))


if __name__ == "__main__":
    main()
