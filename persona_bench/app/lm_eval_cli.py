"""The stock lm-eval command line with persona-bench's models registered and its tasks included.

    python -m persona_bench.tasks run --tasks opinionqa_persona_raw \\
        --metadata '{"docs_path": "runs/<run-id>/docs.jsonl"}' \\
        --model persona-bench-lm --model_args pretrained=smollm2-135m,device=cpu

Any ``lm_eval`` arguments work; ``--include_path`` defaults to the task folder. Models:
``persona-bench-lm`` (a frozen LM) and ``persona-bench-steered`` (``steerer=FOLDER`` of a trained
steering module of any installed family). Under ``torchrun --nproc_per_node N`` lm-eval splits
the requests across ranks and gathers them on rank 0.
"""
from __future__ import annotations

import sys

from lm_eval.__main__ import cli_evaluate

from ..harness.method.base import load_methods
from ..harness.scoring import lm  # noqa: F401  (registers persona-bench-lm and persona-bench-steered)
from ..harness.scoring.models import enforce_offline
from ..tasks import TASKS_DIR


def main() -> None:
    """Run lm-eval's CLI with ``--include_path`` pointing at the opinionqa_persona tasks."""
    enforce_offline()
    load_methods()  # steering families register their modules for persona-bench-steered
    if "--include_path" not in sys.argv:
        sys.argv += ["--include_path", str(TASKS_DIR)]
    cli_evaluate()
