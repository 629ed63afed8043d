"""Leaderboard plots (PNG beside the markdown): accuracy vs unseen K, vs cluster k, per method."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from ..harness.core.atomic import atomic_writer
from .frame import latest
from .tables import SERIES, main_columns, series_label, unseen_runs


def save(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG atomically."""
    with atomic_writer(path, binary=True) as handle:
        figure.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    return path


def line_plot(frame: pd.DataFrame, x: str, title: str, xlabel: str, path: Path) -> Path | None:
    """Accuracy (with CI band) against ``x``, one line per (model, method)."""
    if frame.empty or frame[x].nunique() < 2:
        return None
    figure = Figure(figsize=(6.5, 4))
    axes = figure.subplots()
    for (model, method), group in frame.groupby(["model", "method"]):
        group = group.sort_values(x)
        low = group["ci95"].str[0] * 100
        high = group["ci95"].str[1] * 100
        axes.plot(group[x], group["accuracy"] * 100, marker="o", label=f"{method} ({model})" if model != "-" else method)
        axes.fill_between(group[x], low, high, alpha=0.15)
    axes.set(title=title, xlabel=xlabel, ylabel="macro accuracy (%)")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    return save(figure, path)


def method_bars(frame: pd.DataFrame, title: str, path: Path) -> Path | None:
    """Per-method accuracy with 95% CI error bars, one horizontal bar per method and model (best on top;
    labelled by ``column`` where the frame has one, e.g. a variant's ``spm [placement=answer]``)."""
    if frame.empty:
        return None
    frame = frame.sort_values("accuracy")
    names = frame["column"] if "column" in frame else frame["method"]
    labels = [textwrap.fill(m, 34) + ("" if model == "-" else f"\n{model}") for m, model in zip(names, frame["model"])]
    accuracy = frame["accuracy"] * 100
    errors = [accuracy - frame["ci95"].str[0] * 100, frame["ci95"].str[1] * 100 - accuracy]
    figure = Figure(figsize=(8, 1.2 + 0.25 * sum(label.count("\n") + 1 for label in labels)))  # room for every label's lines
    axes = figure.subplots()
    axes.barh(range(len(frame)), accuracy, xerr=errors, capsize=3, color="#4c72b0")
    axes.set_yticks(range(len(frame)), labels, fontsize=7)
    axes.set(xlabel="macro accuracy (%)")
    axes.set_title(textwrap.fill(title, 90), fontsize=9)
    axes.grid(axis="x", alpha=0.3)
    figure.tight_layout()
    return save(figure, path)


def slug(text: str) -> str:
    """A file-name-safe version of ``text``."""
    return "".join(c if c.isalnum() else "_" for c in text).strip("_")[:60] or "plot"


def write_plots(results: pd.DataFrame, folder: Path) -> list[Path]:
    """All plots for the results, one set per series (``tables.SERIES``: data, waves, protocol, option
    order, eval people, split seed); a capped or reseeded series says so in its file name."""
    written = []
    for values, group in results.sort_values("finished_at").groupby(SERIES, dropna=False, sort=True):
        scope = dict(zip(SERIES, values))
        label = series_label(scope, group)
        name = slug(" ".join([os.path.basename(str(scope["data"]).rstrip("/")), scope["waves_label"],
                              *(setting for setting in (scope["protocol"], scope["option_order"]) if setting not in ("answers", "given"))]))
        name += (f"_{int(scope['max_eval_people'])}people" if pd.notna(scope["max_eval_people"]) else "") + (f"_seed{int(scope['seed'])}" if scope["seed"] else "")
        plain = group[group["variant"] == ""]
        unseen = unseen_runs(group)
        clusters = plain[(plain["users"] == "seen") & plain["persona"].str.startswith("cluster:")]
        clusters = latest(clusters.assign(clusters=lambda f: f["persona"].str.split(":").str[1].astype(int)), ["model", "method", "clusters"])
        individual = group[(group["users"] == "seen") & (group["persona"] == "individual")]
        individual = latest(main_columns(individual), ["model", "column"])  # the main table's columns: every trained variant too
        written += [
            line_plot(unseen.assign(k=unseen["k"].astype(float), method=unseen["_label"]), "k", f"Unseen users — {label}", "answers folded in (K)", folder / f"unseen_k_{name}.png"),
            line_plot(clusters, "clusters", f"Cluster personas — {label}", "clusters (k)", folder / f"cluster_k_{name}.png"),
            method_bars(individual, f"Seen users, individual personas — {label}", folder / f"methods_{name}.png"),
        ]
    return [p for p in written if p is not None]
