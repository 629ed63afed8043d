"""persona-bench: steering language models toward data-driven personas (OpinionQA)."""
__version__ = "0.3.0"
