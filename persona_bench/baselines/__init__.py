"""Prompt baselines and the no-LLM reference predictors, registered as methods (every module
here is imported: raw, demographics, context, group-prompt; majority, demographic-majority, cf,
question-knn)."""
from ..harness.method.base import import_children

import_children(__name__)
