"""persona-bench: steering language models toward data-driven personas (OpinionQA)."""
__version__ = "0.2.0"
