"""Render the leaderboard markdown (aggregates only: no per-person data leaves the runs folder)."""
from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from ..harness.atomic import atomic_write_text
from ..harness.errors import ConfigError
from .plots import write_plots
from .store import load_results
from .tables import NOT_SIGNIFICANT, Table, main_tables, sweep_tables

LEGEND = (
    "Macro accuracy in percent (accuracy per person, averaged over people) with its 95% bootstrap CI over "
    f"people. Bold: best in the row. {NOT_SIGNIFICANT}: does not beat the row's best no-LLM reference "
    "(majority, cf) significantly (paired bootstrap over people on the same docs). The references need no "
    "language model and appear in every row."
)


def render_table(table: Table) -> str:
    body = tabulate(table.frame, headers="keys", showindex=False, tablefmt="github")
    return f"### {table.title}\n\n{body}\n" + (f"\n{table.note}\n" if table.note else "")


def write_leaderboard(runs_dir: Path, out: Path, provenance: str = "") -> list[Path]:
    """Write the leaderboard markdown and its plots next to it; return the written paths."""
    results = load_results(runs_dir)
    if results.empty:
        raise ConfigError(f"{runs_dir}: no finished runs (results.json) found")
    plots = write_plots(results, out.parent)
    sections = [
        "# persona-bench leaderboard\n",
        provenance.strip() + "\n" if provenance else "",
        LEGEND + "\n",
        "## Main comparison (paper Table 3 layout)\n",
        *(render_table(t) for t in main_tables(results, runs_dir)),
        "## Sweeps\n",
        *(render_table(t) for t in sweep_tables(results)),
        "## Plots\n",
        *(f"![{p.stem}]({p.name})\n" for p in plots),
    ]
    atomic_write_text(out, "\n".join(s for s in sections if s))
    return [out, *plots]
