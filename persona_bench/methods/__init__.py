"""Steering methods, one package each (peft-style), registered by name."""
from . import spm  # noqa: F401
