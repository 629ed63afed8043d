"""Run artifacts: the module that writes and reads a runs folder (the runner and the leaderboard alike; a run's
clock.json is harness.runs.clock's).

    RUNS_DIR/<run-id>/config.json        the RunConfig
                      docs.jsonl          the lm-eval docs of LLM methods (real answers: stays here)
                      docs-content-free.jsonl  --calibrate content-free: the N/A prompts (targets: stays here)
                      samples.jsonl.gz    per-doc option scores and predictions (real answers: stays here)
                      metrics.csv.gz      every registered metric per person (stays here too)
                      results.json        a RunRecord (harness.runs.record), aggregates only: accuracy,
                                          metrics, CIs, counts, the method's self-description,
                                          budget and recipe, provenance
                      clock.json          while the run is unfinished: its wall time so far (harness.runs.clock)
    RUNS_DIR/_shared/<split-key>/         split, persona spaces and trained modules shared by runs
    RUNS_DIR/_shared/pseudonym-salt       the salt of --pseudonymize (respondent ids -> hashes;
                                          with it, no file of the folder holds a respondent id)

Every write is atomic. ``results.json`` is self-describing: a leaderboard renders from it alone,
with no method installed.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..core.atomic import atomic_write_gzip_text, atomic_write_json, give_plain_mode
from ..core.errors import PersonaBenchError
from ..data.identity import split_fingerprint
from ..data.pseudonyms import NO_PSEUDONYMS, Pseudonyms
from .record import RecordError, RunRecord, upgrade

CONFIG, DOCS, SAMPLES, RESULTS, CLAIM = "config.json", "docs.jsonl", "samples.jsonl.gz", "results.json", "claim.json"
PERSON_METRICS = "metrics.csv.gz"
SHARED = "_shared"


class StoreError(PersonaBenchError):
    """A run artifact that cannot be read; the message names the file."""


def run_folder(runs_dir: Path, config) -> Path:
    """The folder of ``config``'s run: ``runs_dir/<run id>``, or the folder an earlier persona-bench
    made for the same configuration under its older id (data by path, before 0.8) when only that
    exists and the data at that path is still what its split was drawn from (:func:`legacy_still_fits`),
    so a runs folder made before keeps resuming and reusing its runs."""
    return _current_or_legacy(Path(runs_dir), Path(runs_dir), config.run_id(), config.legacy_run_id(), config)


def shared_folder(runs_dir: Path, config) -> Path:
    """Where runs on the same data and split share their split, personas and trained modules:
    ``runs_dir/_shared/<split key>`` (the legacy one on the terms of :func:`run_folder`)."""
    return _current_or_legacy(Path(runs_dir), Path(runs_dir) / SHARED, config.split_key(), config.legacy_split_key(), config)


def _current_or_legacy(runs_dir: Path, parent: Path, current: str, legacy: str, config) -> Path:
    if current != legacy and not (parent / current).exists() and (parent / legacy).exists() and legacy_still_fits(runs_dir, config):
        return parent / legacy
    return parent / current


def legacy_still_fits(runs_dir: Path, config) -> bool:
    """Whether the split a pre-0.8 run drew (``_shared/<legacy split key>/split.json``) was drawn from
    the data at ``config.data`` as it is now: a changed answer there makes other data and new runs."""
    try:
        recorded = json.loads((runs_dir / SHARED / config.legacy_split_key() / "split.json").read_text())["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return recorded == split_fingerprint(config.data, config.waves, config.protocol)


def write_config(run_dir: Path, config: dict) -> None:
    atomic_write_json(run_dir / CONFIG, config)


def pseudonyms_for(pseudonymize: bool, runs_dir: Path) -> Pseudonyms:
    """What the runs folder calls a respondent: salted hashes with ``--pseudonymize``, else the ids."""
    return Pseudonyms.for_runs_folder(Path(runs_dir) / SHARED) if pseudonymize else NO_PSEUDONYMS


def write_samples(
    run_dir: Path, docs: pd.DataFrame, scores: np.ndarray, predictions: np.ndarray, names: Pseudonyms = NO_PSEUDONYMS
) -> None:
    """Per-doc scores as gzipped JSON lines (respondents, and the doc ids that hold them, as ``names`` writes them)."""
    buffer = io.StringIO()
    rows = list(docs.itertuples(index=False))
    written = [names.doc_id(doc.respondent, doc.question) for doc in rows]
    for i in np.argsort(written, kind="stable") if names.hides_ids else range(len(rows)):  # pseudonyms: in their order
        doc, row, prediction = rows[i], scores[i], predictions[i]
        record = {
            "doc_id": written[i],
            "respondent": names.name(doc.respondent),
            "question": doc.question,
            "target": int(doc.target),
            "prediction": int(prediction),
            "correct": bool(prediction == doc.target),
            "scores": [round(float(s), 6) for s in row[: doc.n_options]],
        }
        buffer.write(json.dumps(record) + "\n")
    atomic_write_gzip_text(run_dir / SAMPLES, buffer.getvalue())


def write_person_metrics(run_dir: Path, per_person: pd.DataFrame, names: Pseudonyms = NO_PSEUDONYMS) -> None:
    """Every metric per person (rows: people as ``names`` writes them, in that order when they hide ids)."""
    table = per_person.rename_axis("respondent").reset_index()
    table["respondent"] = names.names(table["respondent"])
    if names.hides_ids:
        table = table.sort_values("respondent", kind="stable")
    atomic_write_gzip_text(run_dir / PERSON_METRICS, table.to_csv(index=False, float_format="%.9g"))


def read_person_metrics(run_dir: Path) -> pd.DataFrame | None:
    """A run's metrics per person, indexed by person (None for runs from before they were kept)."""
    path = Path(run_dir) / PERSON_METRICS
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype={"respondent": str}).set_index("respondent")
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(f"{path}: not a readable per-person metrics file ({type(exc).__name__}: {exc})") from None


def read_samples(run_dir: Path) -> pd.DataFrame:
    """A finished run's per-doc samples."""
    path = Path(run_dir) / SAMPLES
    try:
        with gzip.open(path, "rt") as handle:
            return pd.DataFrame([json.loads(line) for line in handle])
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: cannot read the run's samples ({type(exc).__name__}: {exc})") from None


def write_results(run_dir: Path, record: RunRecord) -> None:
    atomic_write_json(run_dir / RESULTS, record.as_dict())


def read_results(run_dir: Path) -> RunRecord | None:
    """A run's results record, of any version (None while the run has not finished)."""
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"{path}: not a readable results file ({type(exc).__name__}: {exc})") from None
    try:
        record = upgrade(raw)
    except RecordError as exc:
        raise StoreError(f"{path}: {exc}") from None
    if record.run_id != Path(run_dir).name:  # a shared folder's record must not steer reads elsewhere
        raise StoreError(f"{path}: run_id {str(record.run_id)[:80]!r} is not its folder's name {Path(run_dir).name!r}")
    return record


def finished_runs(runs_dir: Path, skip_bad: bool = False) -> tuple[list[RunRecord], list[str]]:
    """Every finished run's results under ``runs_dir``, and the problems met (only when ``skip_bad``:
    otherwise the first unreadable results file raises :class:`StoreError`)."""
    records, problems = [], []
    for path in sorted(Path(runs_dir).glob(f"*/{RESULTS}")):
        if path.parent.name == SHARED:
            continue
        try:
            records.append(read_results(path.parent))
        except StoreError as exc:
            if not skip_bad:
                raise
            problems.append(str(exc).replace(str(path), f"{path.parent.name}/{RESULTS}"))  # published: no directory of this machine
    return records, problems


def claim(run_dir: Path) -> bool:
    """Claim a run for this process (atomic: exactly one claimant wins); False when another live
    process holds it. The claim is written whole, then linked into place, so it is never read
    half-written; a claim left by a dead process on this host, or an unreadable one, is taken over."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / CLAIM
    handle, temporary = tempfile.mkstemp(prefix=f".{CLAIM}.", dir=run_dir)
    try:
        try:
            with os.fdopen(handle, "w") as file:
                give_plain_mode(file, path)  # readable as any file written here (another user's sweep reads whose it is)
                json.dump({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}, file)
        except OSError as exc:  # no space: said with the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        for _ in range(2):
            try:
                os.link(temporary, path)
                return True
            except FileExistsError:
                holder = claim_holder(run_dir)
                if holder is not None and holder_alive(holder):
                    return False
                try:  # a dead process's claim: move it aside (only one process can), then claim afresh
                    path.rename(run_dir / f".{CLAIM}.stale.{os.getpid()}")
                except FileNotFoundError:
                    return False
        return False
    finally:
        os.unlink(temporary)


def claim_holder(run_dir: Path) -> dict | None:
    """Who holds a run's claim (None when unclaimed or unreadable)."""
    try:
        return json.loads((run_dir / CLAIM).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def holder_alive(holder: dict) -> bool:
    """Whether a claim's process still runs (claims from other hosts are assumed alive)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, ValueError, TypeError):
        return True
    return True


def release(run_dir: Path) -> None:
    """Give a run's claim up (after it finished or failed)."""
    (run_dir / CLAIM).unlink(missing_ok=True)


def claim_or_wait(folder: Path, finished: Callable[[], bool], log: Callable[[str], None], poll: float = 1.0) -> bool:
    """Claim ``folder`` for work another process may be doing: True when this process now holds
    the claim (do the work, then :func:`release`); False once ``finished()`` says the work is done,
    after waiting while another live process held the claim (a process that stops without
    finishing releases its claim, or leaves a dead one: this process then takes the work over)."""
    said = False
    while not finished():
        if claim(folder):
            if not finished():
                return True
            release(folder)  # finished between the check and the claim
            break
        if not said:
            holder = claim_holder(folder) or {}
            log(f"waiting for pid {holder.get('pid')} on {holder.get('host')}, which is doing {folder.name} "
                f"(if that process is gone, delete {folder / CLAIM})")
            said = True
        time.sleep(poll)
    return False
