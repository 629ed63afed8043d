"""Atomic file writes: write to a temporary file beside the target, then rename over it.

A killed process leaves either the old file or the new one, never half a file; an OSError
(no space, no permission) names the file it was writing. The file gets the permissions a plain
``open()`` would give it (the replaced file's, or 0o666 less the umask), not the temporary file's
owner-only ones, so a runs folder or leaderboard shared with a group stays readable. Arrays and tensors are serialised in
memory (safetensors' ``save``, ``torch.save`` to a buffer) and written with
:func:`atomic_write_bytes`, so they are atomic too.
"""
from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Iterator


def current_umask() -> int:
    """The process's umask: read from /proc on Linux, which leaves it alone; elsewhere set and put back
    (process-wide for that instant, as no reading API exists there)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        status = ""
    found = re.search(r"^Umask:\s*([0-7]+)", status, re.MULTILINE)
    if found:
        return int(found.group(1), 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def new_file_mode(path: Path) -> int:
    """The permissions ``path`` gets when written: those of the file it replaces, else 0o666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def give_plain_mode(handle: IO, path: Path) -> None:
    """Give the open temporary file ``handle`` (mkstemp's: owner-only) the mode ``path`` gets
    (:func:`new_file_mode`); a filesystem without permissions (some network mounts) keeps its own."""
    with suppress(OSError):
        os.fchmod(handle.fileno(), new_file_mode(path))


@contextmanager
def atomic_writer(path: Path, binary: bool = False) -> Iterator[IO]:
    """Open a temporary file for writing; on success it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # owner-only until renamed
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as handle:
            give_plain_mode(handle, path)
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:  # no space, a read-only or vanished folder: said with the file it was writing
        Path(tmp).unlink(missing_ok=True)
        if exc.filename is None:
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path, binary=True) as handle:
        handle.write(data)


def atomic_write_gzip_text(path: Path, text: str) -> None:
    """Write ``text`` gzip-compressed to ``path`` atomically, with no timestamp in the gzip header (the
    same text gives the same bytes)."""
    atomic_write_bytes(path, gzip.compress(text.encode("utf-8"), mtime=0))


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(text)


def atomic_write_json(path: Path, payload: object) -> None:
    """Write ``payload`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")
