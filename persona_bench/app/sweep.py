"""Experiment grids: a YAML file of run settings expanded into runs, run in order, resumable.

    defaults:                     # applied to every run (any RunConfig field, plus options)
      model: smollm2-135m
      max_eval_people: 100
    grid:                         # each entry expands to the product of its list values
      - data: opinionqa:../shared/data/opinionqa
        waves: [[W26], [W41]]     # a list of wave lists
        method: [majority, cf, raw, demographics]
      - method: context
        options: {k_context: [3, 5, 8, 10]}
      - preset: paper             # a named preset (persona-bench methods lists them): fills what the entry leaves unset; named in the runs' records
        method: spm

Runs already finished in the runs folder are reused, so an interrupted sweep continues where it
stopped. A run that fails (say, a paper model missing here) is reported and the sweep goes on.
Runs execute here one after another, as Ray tasks or as SLURM job arrays (:mod:`.executors`);
each is claimed atomically, so any number of sweeps on one grid and runs folder do each run once.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable

import yaml

from ..harness.core.errors import ConfigError, PersonaBenchError
from ..harness.method.base import resolve_config
from ..harness.runs.config import RunConfig
from ..harness.runs.store import claim_holder, holder_alive, read_results, run_folder
from .executors import describe, execute

CONFIG_FIELDS = {f.name for f in fields(RunConfig)} - {"method_options"}


def with_preset(settings: dict) -> dict:
    """One expanded run's settings with its ``preset`` (if any) filling the run settings and the
    method options it leaves unset (method options only where the method declares them)."""
    name = settings.pop("preset", None)
    if name is None:
        return settings
    from ..harness.method.base import get_method
    from ..harness.runs.presets import get_preset

    preset = get_preset(name)
    filled = {**preset.run, **settings}
    if "method" in filled:  # as on the command line: an option at its default stays out of the run's identity
        method = get_method(filled["method"])
        defaults = {f.name: f.default for f in fields(method.Options)}
        merged = {**preset.method_options(method.Options, getattr(method, "recipes", None)), **settings.get("method_options", {})}
        preset_keys = set(preset.method)  # an option at its default stays out only where the preset set it, so other ids stay
        filled["method_options"] = {k: v for k, v in merged.items() if not (k in preset_keys and v == defaults.get(k))}
    return filled


def expand(entry: dict) -> list[dict]:
    """All combinations of an entry's list-valued settings (``waves`` and ``options`` included)."""
    options = entry.get("options", {}) or {}
    settings = {k: v for k, v in entry.items() if k != "options"}
    keys = list(settings) + [f"options.{k}" for k in options]
    values = [as_choices(k, v) for k, v in settings.items()] + [as_choices(k, v) for k, v in options.items()]
    runs = []
    for combination in itertools.product(*values):
        chosen = dict(zip(keys, combination))
        runs.append(
            {
                **{k: v for k, v in chosen.items() if not k.startswith("options.")},
                "method_options": {k.split(".", 1)[1]: v for k, v in chosen.items() if k.startswith("options.")},
            }
        )
    return runs


def as_choices(key: str, value: object) -> list:
    """A setting's alternatives: ``waves`` is a list of wave lists; other lists are choices."""
    if key == "waves":
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return [tuple(v) for v in value]
        return [tuple(value) if isinstance(value, list) else (value,)]
    return value if isinstance(value, list) else [value]


def mapping(section: object, where: str) -> None:
    """A grid section (and its ``options``) must be ``key: value`` pairs."""
    if not isinstance(section, dict):
        raise ConfigError(f"{where}: expected 'key: value' settings, got {type(section).__name__}")
    if not isinstance(section.get("options") or {}, dict):
        raise ConfigError(f"{where}: options: expected 'option: value' pairs, got {type(section['options']).__name__}")


@dataclass(frozen=True)
class GridRun:
    """One run of a grid: its configuration and the preset its entry named (recorded in the run's
    results as ``--preset`` is; not part of its identity)."""

    config: RunConfig
    preset: str | None = None


def load_grid(path: Path) -> list[RunConfig]:
    """The run configurations a grid file describes, in file order, duplicates removed."""
    return [run.config for run in grid_runs(path)]


def grid_runs(path: Path) -> list[GridRun]:
    """:func:`load_grid`'s runs with the preset each entry named (the first entry's where two give one run)."""
    try:
        spec = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read grid ({' '.join(str(exc).split())})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("grid"), list) or not spec["grid"]:
        raise ConfigError(f"{path}: a grid file needs a 'grid:' list of at least one entry (and optionally 'defaults:')")
    defaults = spec.get("defaults") or {}
    mapping(defaults, f"{path}: defaults")
    runs: dict[str, GridRun] = {}
    for number, entry in enumerate(spec["grid"], start=1):
        mapping(entry, f"{path}: grid entry {number}")
        for expanded in expand({**defaults, **entry, "options": {**(defaults.get("options") or {}), **(entry.get("options") or {})}}):
            unknown = set(expanded) - CONFIG_FIELDS - {"method_options", "preset"}
            preset = expanded.get("preset")
            if unknown:
                raise ConfigError(f"{path}: grid entry {number} has unknown setting(s) {', '.join(sorted(unknown))}")
            try:
                settings = with_preset(expanded)  # adds only RunConfig fields (get_preset checks them) and method options
            except ConfigError as exc:
                raise ConfigError(f"{path}: grid entry {number}: {exc}") from None
            try:
                config = resolve_config(RunConfig(**settings))
                runs.setdefault(config.run_id(), GridRun(config, preset))  # the id reads the data (its content identifies it)
            except (PersonaBenchError, TypeError) as exc:
                raise ConfigError(f"{path}: grid entry {number}: {exc}") from None
    if not runs:
        raise ConfigError(f"{path}: the grid expands to no runs (an empty list of choices?)")
    return list(runs.values())


def with_seeds(runs: list[GridRun], seeds: list[int] | None) -> list[GridRun]:
    """Every run at each seed (``None``: as the grid says), duplicates removed."""
    if not seeds:
        return runs
    seeded = (replace(run, config=replace(run.config, seed=seed)) for run in runs for seed in seeds)
    unique: dict[str, GridRun] = {}
    for run in seeded:
        unique.setdefault(run.config.run_id(), run)
    return list(unique.values())


def run_state(runs_dir: Path, config: RunConfig) -> str:
    """Where a grid's run stands in ``runs_dir``: ``done`` (its results are there), ``running`` (a live
    process holds its claim), ``started`` (begun and stopped: it resumes) or ``to run``."""
    folder = run_folder(runs_dir, config)
    if read_results(folder) is not None:
        return "done"
    holder = claim_holder(folder)
    if holder is not None and holder_alive(holder):
        return f"running (pid {holder.get('pid')} on {holder.get('host')})"
    return "started" if folder.is_dir() else "to run"


def measured_hours(runs_dir: Path, config: RunConfig) -> float | None:
    """A done run's own wall time in hours (its results.json ``wall_seconds``: every sitting's, see
    :mod:`persona_bench.harness.runs.clock`; a run finished before 0.11 recorded its last sitting's);
    ``None`` for a run not done or a record without it."""
    record = read_results(run_folder(runs_dir, config))
    return record.wall_seconds / 3600 if record is not None and record.wall_seconds is not None else None


def sweep(
    path: Path, runs_dir: Path, log: Callable[[str], None] = print, dry_run: bool = False, seeds: list[int] | None = None, **executor
) -> tuple[list, list[str]]:
    """Run every configuration of the grid (at each of ``seeds`` when given; reusing finished runs)
    with the chosen executor (:func:`persona_bench.app.executors.execute` options); return results and failures."""
    runs = with_seeds(grid_runs(path), seeds)
    configs = [run.config for run in runs]
    if dry_run:
        states = [run_state(runs_dir, config) for config in configs]
        for number, (config, state) in enumerate(zip(configs, states), start=1):
            log(f"[{number}/{len(configs)}] {state}: {describe(config)}")
        counts = {kind: sum(state.startswith(kind) for state in states) for kind in ("done", "running", "started", "to run")}
        log(f"{runs_dir}: " + ", ".join(f"{count} {kind}" for kind, count in counts.items()) + f" of {len(configs)} runs")
        return [], []
    outcomes = execute(configs, runs_dir, log=log, presets=[run.preset for run in runs], **executor)
    failures = [f"{describe(c)}: {o.error}" for c, o in zip(configs, outcomes) if o.status == "failed"]
    return [o.results for o in outcomes if o.results is not None], failures
