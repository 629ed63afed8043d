"""The stock lm-eval command line with persona-bench's models registered and its tasks included.

    python -m persona_bench.tasks run --tasks opinionqa_persona_raw \\
        --metadata '{"docs_path": "runs/<run-id>/docs.jsonl"}' \\
        --model persona-bench-lm --model_args pretrained=smollm2-135m,device=cpu

Any ``lm_eval`` arguments work; ``--include_path`` defaults to this package's task folder.
"""
from __future__ import annotations

import sys

from lm_eval.__main__ import cli_evaluate

from ..harness import lm  # noqa: F401  (registers persona-bench-lm)
from ..harness.models import enforce_offline
from ..methods.spm import lm as steered  # noqa: F401  (registers persona-bench-spm)
from . import TASKS_DIR


def main() -> None:
    """Run lm-eval's CLI with ``--include_path`` pointing at the opinionqa_persona tasks."""
    enforce_offline()
    if "--include_path" not in sys.argv:
        sys.argv += ["--include_path", str(TASKS_DIR)]
    cli_evaluate()


if __name__ == "__main__":
    main()
