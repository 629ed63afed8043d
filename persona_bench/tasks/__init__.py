"""persona-bench tasks."""
