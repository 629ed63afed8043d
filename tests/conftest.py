"""Shared fixtures: the real data folder (skipped when absent) and small surveys."""
from __future__ import annotations

from pathlib import Path

import pytest

from persona_bench.harness.data.loaders.demo import generate_demo
from persona_bench.harness.data.protocol import make_split
from persona_bench.harness.data.survey import Survey

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


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Score and embedding caches in a fresh folder, so no test passes on an earlier run's cache."""
    import os

    previous = os.environ.get("PERSONA_BENCH_CACHE")
    os.environ["PERSONA_BENCH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if previous is None:
        os.environ.pop("PERSONA_BENCH_CACHE")
    else:
        os.environ["PERSONA_BENCH_CACHE"] = previous


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A tiny random llama with a tiny BPE, for methods that steer a language model."""
    from .tiny_models import make_tiny_model

    return make_tiny_model("llama", tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def empty_hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache: a paper model this machine's cache holds (say, one written by
    benchmarks/write_random_model.py --hf-cache) must not be loaded by a test of its absence."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
