"""Where a sweep's runs execute: here one after another (``local``), as Ray tasks (``ray``), or
as a SLURM job array through submitit (``slurm``). No scheduling of our own: Ray and SLURM place
the work; persona-bench only says what each run needs.

Every executor calls :func:`run_claimed` once per run. It claims the run folder atomically
first (see :func:`persona_bench.harness.runs.store.claim`), so two sweeps on the same grid and runs
folder, or a sweep and a stray Ray task, never do a run twice; a finished run is reused; a
failure releases the claim, is reported with its error, and is retried by the next sweep.

* ``ray``: ``ray.init(address)`` (a local Ray when no address; ``--workers N`` CPUs); one task
  per run asking for one CPU, and one GPU for language-model runs when the cluster has GPUs.
  Ray is an optional extra: ``pip install 'persona-bench[ray]'``.
* ``slurm``: submitit ``AutoExecutor`` job arrays (one for runs with a language model, asking
  ``--gpus-per-run`` GPUs, one for the rest), ``--workers`` as the array parallelism. With
  ``--slurm-local`` the arrays run through submitit's local executor (how the tests run it).
  submitit is an optional extra: ``pip install 'persona-bench[slurm]'``.
"""
from __future__ import annotations

import importlib
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..harness.core.errors import ConfigError, PersonaBenchError
from ..harness.method.base import get_method, load_methods
from ..harness.runner import evaluate_here
from ..harness.runs.config import RunConfig
from ..harness.runs.record import RunRecord
from ..harness.runs.store import claim, claim_holder, holder_alive, read_results, release, run_folder

EXECUTORS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class Outcome:
    """What became of one run: ``done``, ``reused``, ``elsewhere`` (claimed by another live process) or ``failed``."""

    run_id: str
    status: str
    error: str = ""
    results: RunRecord | None = None


def run_claimed(config: dict, runs_dir: str, imports: tuple[str, ...] = (), preset: str | None = None,
                log: Callable[[str], None] | None = None) -> Outcome:
    """Run one configuration if no one else is running it (importable by Ray and submitit workers);
    ``preset``: the one its grid entry named, for its record."""
    load_methods(tuple(imports))
    config = RunConfig.from_dict(config)
    try:
        run_dir = run_folder(Path(runs_dir), config)  # reads the data (its content identifies the run)
    except PersonaBenchError as exc:
        return Outcome(config.legacy_run_id(), "failed", error=str(exc))
    finished = read_results(run_dir)
    if finished is not None:
        (log or print)(f"reusing finished run {run_dir}")
        return Outcome(run_dir.name, "reused", results=finished)
    if not claim(run_dir):
        return Outcome(run_dir.name, "elsewhere")
    try:
        return Outcome(run_dir.name, "done", results=evaluate_here(config, Path(runs_dir), log=log or print, preset=preset))
    except PersonaBenchError as exc:
        return Outcome(run_dir.name, "failed", error=str(exc))
    except Exception as exc:  # a crash in one run must not stop the sweep: report it, keep the traceback's last line
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return Outcome(run_dir.name, "failed", error=last)
    finally:
        release(run_dir)


def wait_for_others(configs: list[RunConfig], outcomes: list[Outcome], runs_dir: Path, log: Callable[[str], None], poll: float = 10.0) -> list[Outcome]:
    """Replace ``elsewhere`` outcomes by the other process's result once it finishes (or a failure if it died)."""
    settled = list(outcomes)
    while any(o.status == "elsewhere" for o in settled):
        for i, (config, outcome) in enumerate(zip(configs, settled)):
            if outcome.status != "elsewhere":
                continue
            run_dir = run_folder(runs_dir, config)
            finished = read_results(run_dir)
            holder = claim_holder(run_dir)
            if finished is not None:
                settled[i] = Outcome(outcome.run_id, "reused", results=finished)
            elif holder is None or not holder_alive(holder):
                settled[i] = Outcome(outcome.run_id, "failed", error="the process running it stopped without results (rerun the sweep to retry)")
        pending = [c for c, o in zip(configs, settled) if o.status == "elsewhere"]
        if pending:
            waited = run_folder(runs_dir, pending[0])
            holder = claim_holder(waited) or {}
            log(f"waiting for {len(pending)} run(s) other processes are doing, e.g. {waited.name} (pid {holder.get('pid')} "
                f"on {holder.get('host')}; if that process is gone, delete {waited / 'claim.json'})")
            time.sleep(poll)
    return settled


def execute(
    configs: list[RunConfig], runs_dir: Path, executor: str = "local", imports: tuple[str, ...] = (),
    log: Callable[[str], None] = print, workers: int | None = None, address: str | None = None,
    slurm_local: bool = False, slurm_partition: str | None = None, gpus_per_run: int = 1, timeout_min: int = 720,
    presets: list[str | None] | None = None,
) -> list[Outcome]:
    """Run every configuration with ``executor``; every outcome, in the order of ``configs`` (``presets``:
    the preset each one's grid entry named, for its record)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"--executor {executor!r}: choose from {', '.join(EXECUTORS)}")
    presets = presets or [None] * len(configs)
    if len(presets) != len(configs):
        raise ValueError(f"{len(presets)} presets for {len(configs)} runs")
    if executor == "local":
        outcomes = []
        for number, (config, preset) in enumerate(zip(configs, presets), start=1):
            log(f"[{number}/{len(configs)}] {describe(config)}")
            outcomes.append(run_claimed(config.as_dict(), str(runs_dir), imports, preset, log))
            if outcomes[-1].status == "failed":
                log(f"  failed: {outcomes[-1].error}")
            elif outcomes[-1].status == "done" and outcomes[-1].results.wall_seconds is not None:  # when, and how long: a long sweep's log
                log(f"  done at {time.strftime('%H:%M UTC', time.gmtime())} in {outcomes[-1].results.wall_seconds / 60:,.1f} minutes "
                    f"(its wall time over every attempt)")
    elif executor == "ray":
        outcomes = with_ray(configs, presets, runs_dir, imports, workers, address)
    else:
        outcomes = with_submitit(configs, presets, runs_dir, imports, workers, slurm_local, slurm_partition, gpus_per_run, timeout_min)
    return wait_for_others(configs, outcomes, runs_dir, log)


def describe(config: RunConfig) -> str:
    """A one-line label of a run."""
    return " ".join(str(part) for part in (
        config.method, config.model or "", config.persona, config.users, f"k={config.k}", config.data, ",".join(config.waves),
        "" if config.protocol == "answers" else f"protocol={config.protocol}",
        "" if config.option_order == "given" else f"options={config.option_order}", config.method_options or "",
    ) if part != "")


def optional(module: str, extra: str):
    """Import an optional engine, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"this executor needs {module}: pip install 'persona-bench[{extra}]'") from None


def with_ray(configs: list[RunConfig], presets: list[str | None], runs_dir: Path, imports: tuple[str, ...], workers: int | None,
             address: str | None) -> list[Outcome]:
    """One Ray task per run (a local Ray with ``workers`` CPUs when no address is given)."""
    ray = optional("ray", "ray")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False, log_to_driver=False)
    try:
        gpus = ray.cluster_resources().get("GPU", 0) > 0
        task = ray.remote(ray_task)
        refs = [
            task.options(num_cpus=1, num_gpus=1 if gpus and get_method(c.method).needs_model else 0).remote(c.as_dict(), str(runs_dir), imports, preset)
            for c, preset in zip(configs, presets)
        ]
        return ray.get(refs)
    finally:
        if started_here:
            ray.shutdown()


def ray_task(config: dict, runs_dir: str, imports: tuple[str, ...], preset: str | None = None) -> Outcome:
    """A Ray worker: use the CPUs Ray gave it, then run."""
    import ray
    import torch

    torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
    return run_claimed(config, runs_dir, imports, preset, log=lambda message: None)


def with_submitit(
    configs: list[RunConfig], presets: list[str | None], runs_dir: Path, imports: tuple[str, ...], workers: int | None, local: bool,
    partition: str | None, gpus_per_run: int, timeout_min: int,
) -> list[Outcome]:
    """Job arrays through submitit: language-model runs (with GPUs) and the rest (CPU only)."""
    submitit = optional("submitit", "slurm")
    outcomes: dict[str, Outcome] = {}
    groups = {True: [], False: []}
    for config, preset in zip(configs, presets):
        groups[get_method(config.method).needs_model].append((config, preset))
    for needs_gpu, group in groups.items():
        if not group:
            continue
        executor = submitit.AutoExecutor(folder=runs_dir / "_submitit" / "%j", cluster="local" if local else None)
        parameters = {"timeout_min": timeout_min, "cpus_per_task": 1 if local else 4}
        if not local:
            parameters.update(slurm_array_parallelism=workers or 8, gpus_per_node=gpus_per_run if needs_gpu else 0)
            if partition:
                parameters["slurm_partition"] = partition
        executor.update_parameters(**parameters)
        jobs = executor.map_array(run_claimed, [c.as_dict() for c, _ in group], [str(runs_dir)] * len(group), [imports] * len(group),
                                  [preset for _, preset in group])
        for (config, _), job in zip(group, jobs):
            try:
                outcomes[config.run_id()] = job.result()
            except Exception as exc:  # the job itself failed (node lost, time limit): report, the claim is gone with it
                outcomes[config.run_id()] = Outcome(config.run_id(), "failed", error=f"submitit job {job.job_id}: {str(exc).splitlines()[-1]}")
    return [outcomes[c.run_id()] for c in configs]
