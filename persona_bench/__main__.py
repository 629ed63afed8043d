"""``python -m persona_bench`` is the ``persona-bench`` command (handy under torchrun: ``torchrun ... -m persona_bench run ...``)."""
import sys

from .app.cli import main

sys.exit(main())
