"""The ``opinionqa_persona`` lm-eval task family: YAML configs, prompt formats and hooks.

``TASKS_DIR`` is the folder to pass to lm-eval as ``include_path``.
"""
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
