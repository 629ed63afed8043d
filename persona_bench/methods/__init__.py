"""Steering families, one package each (peft-style): every sub-package is imported and registers itself."""
from ..harness.method.base import import_children

import_children(__name__)
