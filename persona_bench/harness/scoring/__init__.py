"""Scoring with an LM: model loading, steering of a frozen LM, saved steering modules, the lm-eval
models and the evaluation of scored docs."""
