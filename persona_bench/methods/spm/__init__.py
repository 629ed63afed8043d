"""The soft-prompting model (SPM): config/model, training loop, steered lm-eval model, method."""
from . import method  # noqa: F401  (registers "spm")
