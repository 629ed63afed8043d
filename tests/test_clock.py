"""A run's wall time over its attempts (harness/runs/clock): earlier attempts count, a stopped
process's pause does not, an interrupted attempt leaves its time for the next (a forced rerun's too),
and a finished attempt's leftover clock counts nothing."""
from __future__ import annotations

import json
import os

import pytest

from persona_bench.harness import runner
from persona_bench.harness.runner import evaluate
from persona_bench.harness.runs import clock as clock_module
from persona_bench.harness.runs.clock import CLOCK, RunClock, earlier_seconds
from persona_bench.harness.runs.config import RunConfig
from persona_bench.harness.runs.store import RESULTS, run_folder

MAJORITY = RunConfig(method="majority", data="demo:300", max_eval_people=20)


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(clock_module, "monotonic", fake.monotonic)  # the clock's own reference: nothing else sees it
    return fake


def test_the_clock_adds_earlier_attempts_and_leaves_out_a_stopped_process_s_pause(tmp_path, fake_time):
    (tmp_path / CLOCK).write_text(json.dumps({"seconds": 100.0}))
    with RunClock(tmp_path, tick=3600) as clock:
        fake_time.now += 12
        assert clock.seconds() == 112
        fake_time.now += 600  # kill -STOP for ten minutes, then kill -CONT
        assert clock.seconds() == 112 + clock_module.PAUSE_AFTER
        fake_time.now += 5
        assert clock.stop() == 117 + clock_module.PAUSE_AFTER
    assert json.loads((tmp_path / CLOCK).read_text())["seconds"] == 100  # saved at the start; the next save is the next tick's
    clock.remove()
    assert not (tmp_path / CLOCK).exists()


def test_an_interrupted_attempt_saves_its_time_even_after_its_clock_stopped(tmp_path, fake_time):
    with pytest.raises(KeyboardInterrupt):
        with RunClock(tmp_path, tick=3600):
            fake_time.now += 20
            raise KeyboardInterrupt
    assert earlier_seconds(tmp_path) == 20
    with pytest.raises(OSError):
        with RunClock(tmp_path, tick=3600) as clock:
            fake_time.now += 7
            clock.stop()  # the record is built with its wall time, then writing the results fails
            raise OSError("disk full")
    assert earlier_seconds(tmp_path) == 27


def test_a_clock_older_than_the_run_s_results_is_a_finished_attempt_s(tmp_path):
    (tmp_path / CLOCK).write_text(json.dumps({"seconds": 100.0}))
    (tmp_path / RESULTS).write_text("{}")
    os.utime(tmp_path / CLOCK, ns=(1, 1))
    assert earlier_seconds(tmp_path, tmp_path / RESULTS) == 0.0
    os.utime(tmp_path / CLOCK)  # written after the results: a forced rerun's attempt
    os.utime(tmp_path / RESULTS, ns=(1, 1))
    assert earlier_seconds(tmp_path, tmp_path / RESULTS) == 100.0


@pytest.mark.parametrize("text", ["", "{", '{"seconds": "many"}', '{"seconds": -5}', "[1]"])
def test_an_unreadable_clock_file_counts_no_earlier_time(tmp_path, text):
    (tmp_path / CLOCK).write_text(text)
    assert earlier_seconds(tmp_path) == 0.0


def test_a_run_s_wall_time_counts_every_attempt_a_forced_rerun_s_included(tmp_path, monkeypatch):
    folder = run_folder(tmp_path, MAJORITY)
    folder.mkdir(parents=True)
    (folder / CLOCK).write_text(json.dumps({"seconds": 5000.0}))  # an earlier sitting, killed
    record = evaluate(MAJORITY, tmp_path, log=lambda _: None)
    assert 5000 <= record.wall_seconds < 5000 + 60
    assert not (folder / CLOCK).exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    (folder / CLOCK).write_text(json.dumps({"seconds": 5000.0}))  # left by the finished attempt (killed before removing it)
    os.utime(folder / CLOCK, ns=(1, 1))
    monkeypatch.setattr(runner, "scored_docs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(MAJORITY, tmp_path, force=True, log=lambda _: None)
    assert (folder / CLOCK).stat().st_mtime_ns > (folder / RESULTS).stat().st_mtime_ns  # the forced attempt left its time,
    assert earlier_seconds(folder, folder / RESULTS) < 60  # counted from zero (not from the finished attempt's clock)
    (folder / CLOCK).write_text(json.dumps({"seconds": 777.0}))  # say it had run longer
    monkeypatch.undo()
    again = evaluate(MAJORITY, tmp_path, force=True, log=lambda _: None)
    assert 777 <= again.wall_seconds < 777 + 60  # the forced rerun resumed goes on from its interrupted attempt
    assert evaluate(MAJORITY, tmp_path, log=lambda _: None).wall_seconds == again.wall_seconds  # finished: reused as it is
