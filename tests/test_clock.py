"""A run's wall time over its attempts (harness/runs/clock): earlier attempts count, a stopped
process's pause does not, an interrupted attempt leaves its time for the next, a forced rerun starts at zero."""
from __future__ import annotations

import json

import pytest

from persona_bench.harness import runner
from persona_bench.harness.runner import evaluate
from persona_bench.harness.runs import clock as clock_module
from persona_bench.harness.runs.clock import CLOCK, RunClock, earlier_seconds
from persona_bench.harness.runs.config import RunConfig
from persona_bench.harness.runs.store import run_folder

MAJORITY = RunConfig(method="majority", data="demo:300", max_eval_people=20)


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(clock_module.time, "monotonic", fake.monotonic)
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


def test_an_interrupted_attempt_saves_its_time_and_a_fresh_clock_ignores_it(tmp_path, fake_time):
    with pytest.raises(KeyboardInterrupt):
        with RunClock(tmp_path, tick=3600):
            fake_time.now += 40
            raise KeyboardInterrupt
    assert earlier_seconds(tmp_path) == pytest.approx(min(40, clock_module.PAUSE_AFTER))
    with RunClock(tmp_path, fresh=True, tick=3600) as clock:
        fake_time.now += 3
        assert clock.stop() == 3


@pytest.mark.parametrize("text", ["", "{", '{"seconds": "many"}', '{"seconds": -5}', "[1]"])
def test_an_unreadable_clock_file_counts_no_earlier_time(tmp_path, text):
    (tmp_path / CLOCK).write_text(text)
    assert earlier_seconds(tmp_path) == 0.0


def test_a_run_s_wall_time_counts_its_earlier_attempts_and_a_forced_rerun_starts_at_zero(tmp_path, monkeypatch):
    folder = run_folder(tmp_path, MAJORITY)
    folder.mkdir(parents=True)
    (folder / CLOCK).write_text(json.dumps({"seconds": 5000.0}))  # an earlier sitting, killed
    record = evaluate(MAJORITY, tmp_path, log=lambda _: None)
    assert 5000 <= record.wall_seconds < 5000 + 60
    assert not (folder / CLOCK).exists()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "scored_docs", interrupted)
    with pytest.raises(KeyboardInterrupt):
        evaluate(MAJORITY, tmp_path, force=True, log=lambda _: None)
    assert 0 <= earlier_seconds(folder) < 60  # the forced attempt started from zero and left its time
    monkeypatch.undo()
    again = evaluate(MAJORITY, tmp_path, log=lambda _: None)
    assert again.wall_seconds == record.wall_seconds  # finished: reused as it was
