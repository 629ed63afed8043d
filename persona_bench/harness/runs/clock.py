"""A run's wall time over every attempt that made it (results.json ``wall_seconds``).

A long run stopped part-way (a closed laptop, a killed sweep) resumes in a later sitting from its
checkpoints and score cache; its time is the sum of its attempts. Each attempt keeps its running total
in the run folder's ``clock.json``, written atomically every :data:`TICK` seconds, so a killed
attempt loses at most one tick. Each tick counts the time since the previous one but at most
:data:`PAUSE_AFTER` seconds: a process that was stopped (``kill -STOP``, a suspended machine) counts
at most that much of its stop. The file goes when the run's results are written.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from ..core.atomic import atomic_write_json

CLOCK = "clock.json"
TICK = 10.0  # seconds between saves of the running total
PAUSE_AFTER = 30.0  # a gap between ticks longer than this was a stopped process: it counts this much


def earlier_seconds(run_dir: Path) -> float:
    """The seconds earlier attempts at the run in ``run_dir`` counted (0 when none did, or their clock
    file is unreadable: a wall time is worth less than the run it times)."""
    try:
        seconds = json.loads((Path(run_dir) / CLOCK).read_text())["seconds"]
        return float(seconds) if seconds >= 0 else 0.0
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


class RunClock:
    """``with RunClock(run_dir) as clock:``, then ``clock.stop()``: this attempt's wall time plus the
    earlier attempts' (``fresh``: none, for a run done again from scratch), saved while it runs;
    ``clock.remove()`` once the run's results hold it. Leaving the block by an error saves it for the next attempt."""

    def __init__(self, run_dir: Path, fresh: bool = False, tick: float = TICK, pause_after: float = PAUSE_AFTER):
        self.path = Path(run_dir) / CLOCK
        self.earlier = 0.0 if fresh else earlier_seconds(run_dir)
        self.tick, self.pause_after = tick, pause_after
        self.counted, self.last = 0.0, time.monotonic()
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self.keep, name="persona-bench run clock", daemon=True)

    def __enter__(self) -> "RunClock":
        self.save()
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if not self.stopped.is_set():  # the attempt failed or was interrupted: the next one goes on from here
            self.stop()
            self.save()

    def seconds(self) -> float:
        """Wall time so far over every attempt, pauses of a stopped process left out."""
        with self.lock:
            now = time.monotonic()
            self.counted += min(now - self.last, self.pause_after)
            self.last = now
            return self.earlier + self.counted

    def stop(self) -> float:
        """Stop saving; the wall time over every attempt."""
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join()
        return self.seconds()

    def remove(self) -> None:
        """The run's results hold its wall time: the clock file goes (a later ``--force`` starts from zero)."""
        self.path.unlink(missing_ok=True)

    def save(self) -> None:
        try:
            atomic_write_json(self.path, {"seconds": round(self.seconds(), 2)})
        except OSError:  # a full disk fails the run at its next own write, with that file's name
            pass

    def keep(self) -> None:
        while not self.stopped.wait(self.tick):
            self.save()
