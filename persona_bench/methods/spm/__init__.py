"""The soft-prompting model (SPM, Li et al. 2023): persona vector -> MLP -> virtual tokens for a frozen LM."""
from . import method  # noqa: F401  (registers the method "spm" and the steering family "spm")
