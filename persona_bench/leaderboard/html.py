"""The leaderboard as one self-contained HTML page (``persona-bench leaderboard --html``).

The page holds the markdown's tables, its plots (PNG, embedded as data URIs) and, on demand, each
run's configuration; nothing is fetched when it is viewed (inline CSS and script, no links out).
Every table sorts by any column (click its header; again to reverse): a cell sorts by its first
number, so ``61.2 [58.3, 64.0]`` by 61.2 and ``10,000`` by 10000, else by its text. A cell with a CI
gets a bar: the CI as a band and the figure as a dot, on one scale for its whole table. Aggregates
only, like the markdown: the run configurations hold no per-person data.
"""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import pandas as pd

from ..harness.core.atomic import atomic_write_text
from ..harness.runs.record import RunRecord
from .frame import data_key, display_names, shown_model
from .tables import Table

FIGURE = r"[+-]?\d+(?:\.\d+)?"
LEADING_NUMBER = re.compile(r"^\s*\**\s*([+-]?\d[\d,]*(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![\w.-])")
WITH_CI = re.compile(rf"^\s*\**(?P<value>{FIGURE})\**\s*\[(?P<low>{FIGURE}),\s*(?P<high>{FIGURE})\]")
INLINE = [(re.compile(r"\*\*(.+?)\*\*"), r"<strong>\1</strong>"), (re.compile(r"`(.+?)`"), r"<code>\1</code>")]

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } h3 { font-size: 1.02em; margin-top: 1.6em; }
.provenance, .note, .legend { color: #555; font-size: 0.92em; }
table { border-collapse: collapse; margin: 0.5em 0; font-variant-numeric: tabular-nums; }
.wide { max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; cursor: pointer; user-select: none; }
td.figure { white-space: nowrap; }
th[aria-sort="ascending"]::after { content: " \\25B2"; } th[aria-sort="descending"]::after { content: " \\25BC"; }
.ci { position: relative; height: 6px; min-width: 90px; background: #f0f0f0; margin-top: 3px; }
.ci .band { position: absolute; top: 0; height: 6px; background: #9ecae1; }
.ci .dot { position: absolute; top: -1px; width: 3px; height: 8px; margin-left: -1px; background: #08519c; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
details pre { background: #f8f8f8; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
nav a { margin-right: 1em; }
"""

SCRIPT = """
function sortKey(cell) {
  const key = cell.dataset.sort;
  return key === undefined || key === "" ? null : (isNaN(Number(key)) ? key : Number(key));
}
function sortTable(th) {
  const table = th.closest("table"), column = th.cellIndex, body = table.tBodies[0];
  const descending = th.getAttribute("aria-sort") === "ascending";
  table.querySelectorAll("th").forEach(h => h.removeAttribute("aria-sort"));
  th.setAttribute("aria-sort", descending ? "descending" : "ascending");
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = sortKey(a.cells[column]), y = sortKey(b.cells[column]);
    if (x === null || y === null) return (x === null) - (y === null);  // empty cells last either way
    const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1);
    return descending ? -order : order;
  });
  rows.forEach(row => body.appendChild(row));
}
document.querySelectorAll("table.sortable th").forEach(th => th.addEventListener("click", () => sortTable(th)));
"""


def inline(text: str) -> str:
    """Markdown text of a title, note or cell as escaped HTML (bold and code kept)."""
    out = html.escape(str(text), quote=False)
    for pattern, replacement in INLINE:
        out = pattern.sub(replacement, out)
    return out


def sort_value(text: str) -> str:
    """What a cell sorts by: the number it starts with (thousands separators dropped; ``61.2 [58.3,
    64.0]`` by 61.2), else its text without markdown marks (``W26``, ``gpt-j-6b`` sort as text)."""
    match = LEADING_NUMBER.match(text)
    return match.group(1).replace(",", "") if match else text.replace("*", "").replace("`", "").strip().lower()


def ci_scales(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """The columns whose cells with a figure all read ``value [low, high]``, each with the span its bars
    are drawn on: one span for the whole table, so bars compare across its columns (a main table's
    methods) as well as down them."""
    found = {}
    for column in frame.columns:
        matches = [WITH_CI.match(str(v)) for v in frame[column] if LEADING_NUMBER.match(str(v))]
        if matches and all(matches):
            found[column] = matches
    numbers = [float(m[name]) for matches in found.values() for m in matches for name in ("low", "high", "value")]
    if not numbers:
        return {}
    low, high = min(numbers), max(numbers)
    return dict.fromkeys(found, (low, high if high > low else low + 1))


def ci_bar(text: str, scale: tuple[float, float]) -> str:
    """The CI band and the figure's dot of one cell, on its table's scale."""
    match = WITH_CI.match(text)
    if not match:
        return ""
    low, span = scale[0], scale[1] - scale[0]
    at = [min(100.0, max(0.0, 100 * (float(match[name]) - low) / span)) for name in ("low", "high", "value")]
    return (f'<div class="ci" title="95% CI {match["low"]} to {match["high"]}"><span class="band" style="left:{at[0]:.1f}%;'
            f'width:{max(at[1] - at[0], 0.5):.1f}%"></span><span class="dot" style="left:{at[2]:.1f}%"></span></div>')


def cell_html(value: str, scale: tuple[float, float] | None) -> str:
    """One cell: its sort key, its text (markdown bold and code kept) and, given its table's scale, its CI bar."""
    figure = ' class="figure"' if scale else ""  # a figure and its CI stay on one line; a wide table scrolls on its own
    return f'<td{figure} data-sort="{html.escape(sort_value(value))}">{inline(value)}{ci_bar(value, scale) if scale else ""}</td>'


def table_html(table: Table) -> str:
    """A titled, sortable table with CI bars and its note."""
    frame = table.frame.astype(str).replace({"nan": "", "None": ""})
    scales = ci_scales(frame)
    head = "".join(f"<th>{inline(column)}</th>" for column in frame.columns)
    rows = []
    for _, row in frame.iterrows():
        rows.append(f"<tr>{''.join(cell_html(value, scales.get(column)) for column, value in row.items())}</tr>")
    note = f'<p class="note">{inline(table.note)}</p>' if table.note else ""
    return (f"<h3>{inline(table.title)}</h3>\n<div class=\"wide\"><table class=\"sortable\"><thead><tr>{head}</tr></thead><tbody>\n"
            + "\n".join(rows) + f"\n</tbody></table></div>\n{note}")


def image_html(path: Path) -> str:
    """A plot embedded as a data URI (the page needs no file beside it)."""
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(path.stem)}</figcaption></figure>'


def runs_html(records: list[RunRecord], names: dict[tuple, str] | None = None) -> str:
    """Every run in one sortable table; its configuration (settings, options, training budget) on
    demand; ``names`` (:func:`~persona_bench.leaderboard.frame.display_names`) names the data."""
    names = names or display_names(records)
    rows = []
    for record in sorted(records, key=lambda r: r.run_id):
        shown = {**record.config.as_dict(), "data": names[data_key(record)], "model": shown_model(record.config.model), "options": record.options, "variant": record.variant,
                 **({"budget": record.training.budget, "recipe": record.training.recipe} if record.training else {}),
                 **({"preset": record.preset} if record.preset else {}), "persona_bench_version": record.persona_bench_version}
        configuration = html.escape(json.dumps(shown, indent=1, sort_keys=True, default=str))
        rows.append({"run": record.run_id, "method": record.method, "model": shown_model(record.config.model),
                     "waves": "+".join(record.config.waves) or "all", "users": record.config.users,
                     "macro acc % [95% CI]": f"{100 * record.accuracy:.1f} [{100 * record.ci95[0]:.1f}, {100 * record.ci95[1]:.1f}]",
                     "people": str(record.n_people), "_configuration": configuration})
    frame = pd.DataFrame(rows)
    scales = ci_scales(frame)
    body = []
    for row in rows:
        run = html.escape(row["run"])
        cells = [f'<td data-sort="{run}"><details><summary>{run}</summary><pre>{row["_configuration"]}</pre></details></td>']
        cells += [cell_html(value, scales.get(column)) for column, value in row.items() if column not in ("run", "_configuration")]
        body.append(f"<tr>{''.join(cells)}</tr>")
    head = "".join(f"<th>{html.escape(column)}</th>" for column in ["run (click for its configuration)", *list(frame.columns)[1:-1]])
    return f'<div class="wide"><table class="sortable" id="runs"><thead><tr>{head}</tr></thead><tbody>\n' + "\n".join(body) + "\n</tbody></table></div>"


def write_html(path: Path, provenance: str, legends: list[str], sections: list[tuple[str, list[Table]]], plots: list[Path],
               records: list[RunRecord], preamble: list[str] = (), names: dict[tuple, str] | None = None) -> Path:
    """Write the page: provenance, legends, each (heading, tables) section, the plots and every run
    (its data by ``names``)."""
    shown = [(heading, tables) for heading, tables in sections if tables]
    anchors = [(heading, f"s{number}") for number, (heading, _) in enumerate(shown)]
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>persona-bench leaderboard</title>", f"<style>{STYLE}</style></head><body>", "<h1>persona-bench leaderboard</h1>",
        *(f'<p class="provenance">{inline(line)}</p>' for line in [provenance, *preamble] if line),
        *(f'<p class="legend">{inline(legend)}</p>' for legend in legends if legend),
        "<nav>" + "".join(f'<a href="#{anchor}">{html.escape(heading)}</a>' for heading, anchor in
                          [*anchors, *([("Plots", "plots")] if plots else []), ("Runs", "runs-section")]) + "</nav>",
    ]
    for (heading, tables), (_, anchor) in zip(shown, anchors):
        parts += [f'<h2 id="{anchor}">{html.escape(heading)}</h2>', *(table_html(t) for t in tables)]
    if plots:
        parts += ['<h2 id="plots">Plots</h2>', *(image_html(p) for p in plots)]
    parts += ['<h2 id="runs-section">Runs</h2>', runs_html(records, names), f"<script>{SCRIPT}</script>", "</body></html>"]
    atomic_write_text(path, "\n".join(parts) + "\n")
    return path
