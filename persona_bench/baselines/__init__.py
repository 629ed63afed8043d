"""Prompt baselines and the no-LLM reference predictors, registered as methods."""
from . import references  # noqa: F401  (registers majority, demographic-majority, cf)
