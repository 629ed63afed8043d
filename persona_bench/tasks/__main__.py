"""``python -m persona_bench.tasks``: lm-eval's command line with persona-bench's models and tasks."""
from ..app.lm_eval_cli import main

main()
