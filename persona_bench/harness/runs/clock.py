"""A run's wall time over every attempt that made it (results.json ``wall_seconds``).

A long run stopped part-way (a closed laptop, a killed sweep) resumes in a later sitting from its
checkpoints and score cache; its time is the sum of its attempts. Each attempt keeps its running total
in the run folder's ``clock.json``, written atomically every :data:`TICK` seconds, so a killed
attempt loses at most one tick. A heartbeat counts the time every :data:`TICK` seconds, each beat at
most :data:`PAUSE_AFTER` seconds since the one before: a process that was stopped (``kill -STOP``, a
suspended machine) counts at most that much of its stop. The heartbeat does no I/O (a separate thread
saves), so a slow disk does not look like a stop. The file goes when the run's results are written;
a ``clock.json`` older than the run's results is a finished attempt's, and counts nothing.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from time import monotonic

from ..core.atomic import atomic_write_json

CLOCK = "clock.json"
TICK = 10.0  # seconds between heartbeats, and between saves of the running total
PAUSE_AFTER = 30.0  # a gap between heartbeats longer than this was a stopped process: it counts this much


def earlier_seconds(run_dir: Path, finished: Path | None = None) -> float:
    """The seconds earlier attempts at the run in ``run_dir`` counted: 0 when none did, when their clock
    file is older than ``finished`` (the results of a finished attempt), or unreadable (a wall time is
    worth less than the run it times)."""
    path = Path(run_dir) / CLOCK
    try:
        if finished is not None and finished.is_file() and path.stat().st_mtime_ns <= finished.stat().st_mtime_ns:
            return 0.0
        seconds = json.loads(path.read_text())["seconds"]
        return float(seconds) if seconds >= 0 else 0.0
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


class RunClock:
    """``with RunClock(run_dir, finished) as clock:``, then ``clock.stop()``: this attempt's wall time plus
    the earlier attempts' (:func:`earlier_seconds`), saved while it runs; ``clock.remove()`` once the run's
    results hold it. Leaving the block by an error (or an interrupt) before that saves it for the next attempt."""

    def __init__(self, run_dir: Path, finished: Path | None = None, tick: float = TICK, pause_after: float = PAUSE_AFTER):
        self.path = Path(run_dir) / CLOCK
        self.earlier = earlier_seconds(run_dir, finished)
        self.tick, self.pause_after = tick, pause_after
        self.counted, self.last, self.removed = 0.0, monotonic(), False
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.every_tick, args=(job,), name=f"persona-bench run clock ({job.__name__})", daemon=True)
                        for job in (self.seconds, self.save)]

    def __enter__(self) -> "RunClock":
        self.save()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, kind, *exc) -> None:
        self.stop()
        if kind is not None and not self.removed:  # the attempt failed or was interrupted: the next one goes on from here
            self.save()

    def seconds(self) -> float:
        """Wall time so far over every attempt, pauses of a stopped process left out."""
        with self.lock:
            now = monotonic()
            self.counted += min(now - self.last, self.pause_after)
            self.last = now
            return self.earlier + self.counted

    def stop(self) -> float:
        """Stop the heartbeat and the saving; the wall time over every attempt."""
        self.stopped.set()
        for thread in self.threads:
            if thread.is_alive():
                thread.join()
        return self.seconds()

    def remove(self) -> None:
        """The run's results hold its wall time: the clock file goes."""
        self.path.unlink(missing_ok=True)
        self.removed = True

    def save(self) -> None:
        try:
            atomic_write_json(self.path, {"seconds": round(self.seconds(), 2)})
        except Exception:  # noqa: BLE001  the clock must never fail the run it times; a full disk fails it at its next own write
            pass

    def every_tick(self, job) -> None:
        while not self.stopped.wait(self.tick):
            job()
