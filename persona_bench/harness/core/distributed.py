"""The process group of a data-parallel launch (torchrun, accelerate launch), or a single process.

:class:`World` is what the rest of the harness asks: this process's rank, how many there are,
whether it is rank 0 (the only one that writes run folders, checkpoints and leaderboards), and
the collective operations it needs (barrier, gather and broadcast of picklable Python objects
between our own ranks). Under ``torchrun`` the process group is started on first use from the
launcher's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...): NCCL when a GPU is
present, gloo otherwise.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass

import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel launch."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> "World":
        """The launch this process belongs to (starting the process group when a launcher set one up)."""
        if not dist.is_available():
            return cls()
        if not dist.is_initialized():
            if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
                return cls()
            import atexit

            import torch

            if "TORCHELASTIC_RUN_ID" in os.environ:  # a worker of torchrun / accelerate launch (from before the rendezvous)
                watch_launcher(os.environ.get("RANK", "?"))
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
            atexit.register(shutdown)
            sys.excepthook = failing(sys.excepthook)
        return cls(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.distributed:
            dist.barrier()

    def gather(self, value: object) -> list[object] | None:
        """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
        if not self.distributed:
            return [value]
        gathered = [None] * self.size if self.is_main else None
        dist.gather_object(value, gathered, dst=0)
        return gathered

    def all_gather(self, value: object) -> list[object]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.distributed:
            return [value]
        gathered: list[object] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: object) -> object:
        """Rank 0's ``value`` on every rank."""
        if not self.distributed:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def watch_launcher(rank: str, every_seconds: float = 1.0) -> None:
    """Stop this worker when its launcher dies. A worker outlives a killed parent (a ``kill -9`` of
    one process never takes its children, and torchrun starts each worker in its own session, so a
    kill of the launcher's process group misses them too): it would train on, and a rerun would
    train beside it into the same checkpoints. A worker whose parent is gone exits instead, as if
    killed (its last checkpoint stays whole, and the rerun resumes from it)."""
    launcher = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(every_seconds)
            if os.getppid() != launcher:
                with contextlib.suppress(OSError):  # stderr may be a pipe whose reader died with the launcher
                    os.write(2, f"persona-bench rank {rank}: the launcher (pid {launcher}) is gone; stopping\n".encode())
                os._exit(1)

    threading.Thread(target=watch, name="persona-bench-launcher-watch", daemon=True).start()


FAILED = {"rank": False}  # set when this rank dies of an exception or exits with an error status


def failing(hook):
    """``sys.excepthook`` that first marks this rank as failed (so it leaves without waiting)."""

    def marked(*exc_info):
        mark_failed()
        hook(*exc_info)

    return marked


def mark_failed() -> None:
    """This rank is leaving because of an error: at exit it must not wait for the others."""
    FAILED["rank"] = True


def shutdown() -> None:
    """Leave the process group at exit: after a normal end every rank first waits for the others;
    a failed rank leaves at once (its launcher, e.g. torchrun, then stops the others), never
    waiting at a barrier the others will not reach."""
    if dist.is_available() and dist.is_initialized():
        if not FAILED["rank"]:
            dist.barrier()
        dist.destroy_process_group()
