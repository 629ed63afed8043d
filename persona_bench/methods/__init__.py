"""Steering families, one package each (peft-style): every sub-package is imported and registers itself."""
