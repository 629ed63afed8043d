"""The results store: one ``results.json`` per run folder, plus its per-doc samples.

Records are read as a DataFrame with a few derived columns: ``waves_label`` (``W26`` or
``W26+W41``; ``all`` when no waves were chosen), ``variant`` (the options that change *what*
a method is, e.g. ``k_context=3``, or a non-default CF space; empty for the defaults) and ``budget`` (options
that only change how long it trains, e.g. ``epochs=3``).
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd

from ..harness.runner import read_samples

BUDGET_OPTIONS = ("epochs", "lr", "weight_decay", "batch_size", "patience", "max_train_answers")
REFERENCES = ("majority", "cf")


def options_label(options: dict, keep) -> str:
    """``key=value`` pairs of the options that ``keep`` accepts, sorted."""
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items()) if keep(k))


def load_results(runs_dir: Path) -> pd.DataFrame:
    """Every finished run under ``runs_dir`` as one row (empty frame when there are none)."""
    records = []
    for path in sorted(Path(runs_dir).glob("*/results.json")):
        try:
            record = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # a run being written elsewhere; atomic writes make this rare
        options = dict(record.get("method_options") or {})
        if record.get("cf_solver", "als") != "als" or record.get("cf_dim", 16) != 16:
            options.update(cf_solver=record["cf_solver"], cf_dim=record["cf_dim"])  # a different persona space
        record["variant"] = options_label(options, lambda k: k not in BUDGET_OPTIONS)
        record["budget"] = options_label(options, lambda k: k in BUDGET_OPTIONS)
        record["waves_label"] = "+".join(record.get("waves") or []) or "all"
        record["model"] = record.get("model") or "-"
        record["k"] = record.get("k") if record.get("users") == "unseen" else None
        record.setdefault("finished_at", "")
        records.append(record)
    return pd.DataFrame(records)


@lru_cache(maxsize=256)
def samples(runs_dir: str, run_id: str) -> pd.DataFrame:
    """A run's per-doc samples (cached: leaderboards compare the same references often)."""
    return read_samples(Path(runs_dir) / run_id)
