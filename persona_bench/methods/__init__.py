"""Steering methods (the soft-prompting model), registered as methods."""
