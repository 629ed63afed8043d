"""Prompt baselines and the no-LLM reference predictors, registered as methods."""
from . import prompting, references  # noqa: F401  (registering: raw, demographics, context; majority, demographic-majority, cf)
