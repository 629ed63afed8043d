"""Scores of a run: the metric registry (per-person values, bootstrap CIs, paired differences) and
group figures (alignment, disparity, option distributions)."""
