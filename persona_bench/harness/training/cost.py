"""What compute costs on this machine, before it is spent: FLOPs of training through an LM and this
machine's measured rate (for cost plans, :mod:`persona_bench.harness.plan`), and the line a run
prints before it trains (:mod:`persona_bench.harness.training.learned`): its estimated time from a
timed training step and, beyond a few minutes, a budget that fits.

FLOPs: 2 x N per token for a forward, 4 x N for a training step through the frozen LM (forward
plus the backward pass to its inputs, no weight gradients), N the parameters outside the input
embedding. Everything here is an estimate and says so.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

FEW_MINUTES = 5 * 60  # a training estimated longer than this says so and suggests a budget that fits
NICE_BUDGETS = (100, 200, 300, 500, 1000, 2000, 3000, 5000, 10_000, 20_000, 30_000, 50_000, 100_000)


def training_flops(examples: int, validation: int, epochs: int, mean_tokens: float, active: int) -> float:
    """FLOPs of ``epochs`` passes over ``examples`` (a training step each) plus their validation forwards."""
    return epochs * (4 * examples + 2 * validation) * mean_tokens * active


@dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` measured: FLOP/s, and the share of its threads' time the process got
    (near 1 on a quiet machine; well below it when other work shares the cores)."""

    flops_per_second: float
    cpu_share: float
    threads: int

    @property
    def busy(self) -> bool:
        """Other work took a good part of the cores while it measured: the rate reads low."""
        return self.cpu_share < BUSY_SHARE


BUSY_SHARE = 0.75  # below this share of its threads' time the calibration says the machine was busy


def calibrate(seconds: float = 5.0, dtype: str = "float32") -> Calibration:
    """FLOP/s this machine reaches on LM forwards on the CPU in ``dtype`` (a ``--dtype`` value; SmolLM2-135M
    when here, else matrix products), and how much of the CPU it got while measuring."""
    import contextlib

    import torch

    from ..scoring.models import MIXED_PRECISION, ModelUnavailable, active_parameters, load_model, pick_dtype

    try:
        model, _ = load_model("smollm2-135m", "cpu", dtype)
        batch = torch.randint(0, 1000, (8, 64))
        work = lambda: model.model(input_ids=batch)  # noqa: E731
        flops = 2.0 * active_parameters("smollm2-135m") * batch.numel()
    except ModelUnavailable:
        a = torch.randn(1024, 1024, dtype=pick_dtype(dtype, "cpu"))
        mixed = torch.autocast("cpu", dtype=getattr(torch, MIXED_PRECISION[dtype])) if dtype in MIXED_PRECISION else contextlib.nullcontext()

        def work():
            with mixed:
                return a @ a

        flops = 2.0 * 1024**3
    with torch.no_grad():
        work()
        started, cpu_started, done = time.perf_counter(), time.process_time(), 0
        while time.perf_counter() - started < seconds:
            work()
            done += 1
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    threads = torch.get_num_threads()
    return Calibration(flops * done / wall, min(1.0, cpu / (wall * threads)), threads)


def duration(seconds: float) -> str:
    """``about 3.1 h`` / ``about 12 min`` / ``under a minute``."""
    if seconds >= 3600:
        return f"about {seconds / 3600:.1f} h"
    return f"about {seconds / 60:.0f} min" if seconds >= 60 else "under a minute"


def training_estimate(name: str, examples: int, validation: int, epochs: int, seconds_per_example: float) -> str:
    """One line: what training ``name`` will take here at ``seconds_per_example`` (a training step's
    share, timed on the run's own model and examples; a validation answer costs about half), and,
    beyond a few minutes, a budget that fits."""
    per_answer = seconds_per_example * 1.05  # with its tenth of validation
    seconds = epochs * (examples + validation / 2) * seconds_per_example
    line = (f"{name}: training {examples:,} answers x up to {epochs} epoch{'s' if epochs > 1 else ''} takes {duration(seconds)} "
            f"here (an estimate from a timed training step; early stopping may end sooner)")
    if seconds <= FEW_MINUTES:
        return line
    fits = [budget for budget in NICE_BUDGETS if budget * per_answer <= FEW_MINUTES and budget < examples]
    if not fits:
        return line + "; no budget of 100 answers or more fits a few minutes here"
    return line + f"; --max-train-answers {fits[-1]} --epochs 1 takes {duration(fits[-1] * per_answer)}"
