"""Benchmark LoRA training (peft) with SmolLM2-135M against the frozen LM's forward and backward.

Prints, on the same length-bucketed batches of Raw Q prompts (batch 16, ``--steps`` steps after a
warm-up step): examples/second and the process's peak memory for

* ``ceiling``: the frozen LM's forward with gradients flowing back to the input embeddings and the
  backward pass, nothing else (the least any training through the LM must do; bench_spm.py's);
* ``frozen SPM``: prefix SPM (1 virtual token, before the prompt) trained through the frozen LM;
* ``finetune rank R``: a LoRA adapter (peft's default targets, q_proj and v_proj) trained alone;
* ``SPM + LoRA rank R``: both trained jointly (``spm --lora-rank R``);

each in every ``--dtypes`` (default float32 and bf16-mixed: float32 weights, products under
torch.autocast(bfloat16), which CPUs with AMX or AVX512-BF16 run fast), with its speed beside the
same configuration's in the first dtype.

Each configuration runs in a fresh process, so each peak is its own (the resident set's high-water
mark: the model, the batches and the backward pass). Uses W26 from ../shared/data when present,
else the demo survey. Run from the repository root:

    python benchmarks/bench_lora.py [--steps 20] [--rank 8] [--dtypes float32 bf16-mixed]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

CONFIGURATIONS = ("ceiling", "frozen SPM", "finetune", "SPM + LoRA")


def measure(name: str, steps: int, rank: int, dtype: str) -> dict:
    """Examples/s and peak memory of one configuration (in this process)."""
    import numpy as np
    import torch
    from bench_spm import DIM, SHARED, ceiling_speed, training_speed

    from persona_bench.harness.data.loaders import load_survey
    from persona_bench.harness.scoring.adapters import LoraSettings, attach_lora, trainable_parameters
    from persona_bench.harness.scoring.lm import LetterScoringLM
    from persona_bench.harness.training.loop import build_examples
    from persona_bench.methods.finetune.model import NoSteering
    from persona_bench.methods.spm.model import SoftPromptModel

    torch.manual_seed(0)
    survey = load_survey(f"opinionqa:{SHARED}", ["W26"]) if SHARED.is_dir() else load_survey("demo")
    lm = LetterScoringLM(pretrained="smollm2-135m", device="cpu", dtype=dtype, score_cache=None)
    answers = survey.responses.sample(n=16 * (steps + 1), random_state=0).reset_index(drop=True)
    examples = build_examples(answers, survey, np.random.default_rng(0).normal(size=(len(answers), DIM)), lm)
    if name == "ceiling":
        speed = ceiling_speed(lm, examples, steps)
    else:
        steerer = SoftPromptModel.for_model(lm.model, DIM) if "SPM" in name else NoSteering(NoSteering.Config(DIM))
        if name != "frozen SPM":
            attach_lora(lm.model, LoraSettings(rank))
        _, speed = training_speed(lm, steerer, examples, steps, parameters=[*steerer.parameters(), *trainable_parameters(lm.model)])
    return {"configuration": f"{name} rank {rank}" if name in ("finetune", "SPM + LoRA") else name, "dtype": dtype,
            "examples/s": speed, "peak memory (GiB)": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bf16-mixed"], help="the --dtype values to compare")
    parser.add_argument("--only", choices=CONFIGURATIONS, help=argparse.SUPPRESS)  # one configuration, in this process
    args = parser.parse_args()
    if args.only:
        print(json.dumps(measure(args.only, args.steps, args.rank, args.dtypes[0])))
        return
    from tabulate import tabulate

    rows = []
    for name in CONFIGURATIONS:
        for dtype in args.dtypes:
            done = subprocess.run([sys.executable, __file__, "--only", name, "--steps", str(args.steps), "--rank", str(args.rank),
                                   "--dtypes", dtype], capture_output=True, text=True, check=True, cwd=Path(__file__).parent)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    ceiling = {row["dtype"]: row["examples/s"] for row in rows if row["configuration"] == "ceiling"}
    first = {row["configuration"]: row["examples/s"] for row in rows if row["dtype"] == args.dtypes[0]}
    for row in rows:
        row["of the ceiling"] = f"{row['examples/s'] / ceiling[row['dtype']]:.0%}"
        row[f"vs {args.dtypes[0]}"] = f"{row['examples/s'] / first[row['configuration']]:.2f}x"
    print(tabulate(rows, headers="keys", tablefmt="github", floatfmt=".2f"))
    print(f"\n{args.steps} steps of 16 Raw Q answers each, after a warm-up step; torch threads: {__import__('torch').get_num_threads()}")


if __name__ == "__main__":
    main()
