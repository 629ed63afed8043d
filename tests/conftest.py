"""Shared fixtures: the real data folder (skipped when absent) and small surveys."""
from __future__ import annotations

from pathlib import Path

import pytest

from persona_bench.harness.loaders.demo import generate_demo
from persona_bench.harness.protocol import make_split
from persona_bench.harness.survey import Survey

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OPINIONQA = SHARED_DATA / "opinionqa"


@pytest.fixture(scope="session")
def opinionqa_path() -> Path:
    """../shared/data/opinionqa, or skip the test when this checkout has no shared data."""
    if not (OPINIONQA / "human_resp").is_dir():
        pytest.skip("../shared/data is absent")
    return OPINIONQA


@pytest.fixture(scope="session")
def demo_truth():
    """A 600-person demo survey with its planted camps."""
    return generate_demo(n_people=600)


@pytest.fixture(scope="session")
def demo_survey(demo_truth) -> Survey:
    return demo_truth.survey


@pytest.fixture(scope="session")
def demo_split(demo_survey):
    return make_split(demo_survey)


@pytest.fixture(scope="session")
def tiny_model_path():
    """A tiny random causal LM for methods that steer one (none registered yet)."""
    return None
