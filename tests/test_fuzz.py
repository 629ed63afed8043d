"""Property-based fuzzing (hypothesis) of the OpinionQA loader and the grid reader: any input gives
a valid Survey / list of runs, or one error line of persona-bench's own (exit 2 on the command
line), never another exception. Examples are bounded to keep the suite fast."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pandas as pd
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from persona_bench.app.sweep import load_grid
from persona_bench.harness.core.errors import PersonaBenchError
from persona_bench.harness.data.loaders import load_survey

from .test_opinionqa_loader import INFO, METADATA, RESPONSES, write_wave

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

labels = st.sampled_from(["Safer", "More dangerous", "Neither", "Refused", "A lot", "Some", "", "Maybe", "0", "nan"])
words = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)


def loads_or_fails_cleanly(root: Path) -> None:
    """The one property: a Survey whose answers match its questions, or our error in one line."""
    try:
        survey = load_survey(f"opinionqa:{root}")
    except PersonaBenchError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
        return
    assert set(survey.responses["question"]) <= set(survey.questions)
    for key, question in survey.questions.items():
        options = survey.responses.loc[survey.responses["question"] == key, "option"]
        assert options.between(0, len(question.options) - 1).all()


@st.composite
def opinionqa_folders(draw) -> dict[str, str]:
    """A small wave: info rows (some with mismatched ordinals or odd literals), trait rows, and
    responses whose cells are real labels, Refused, empty or unknown."""
    questions = draw(st.lists(st.sampled_from(["DANGER_W9", "TRUST_W9", "OTHER_W9"]), min_size=1, max_size=3))
    info = ["key,question,references,option_ordinal"]
    for key in questions:
        options = draw(st.lists(st.sampled_from(["Safer", "More dangerous", "Neither", "A lot", "Some"]), min_size=0, max_size=4, unique=True))
        references = options + (["Refused"] if draw(st.booleans()) else [])
        ordinal = draw(st.one_of(st.just([float(i) for i in range(len(options))]), st.lists(st.floats(allow_nan=False, width=16), max_size=4)))
        reference_text = draw(st.one_of(st.just(repr(references)), words))
        info.append(f'{key},"{draw(words).replace(chr(34), "")}","{reference_text.replace(chr(34), "")}","{ordinal!r}"')
    traits = draw(st.lists(st.sampled_from(["SEX", "POLPARTY"]), max_size=2))
    metadata = ["key,options", *[f"{t},\"['a', 'b']\"" for t in traits]]
    columns = ["QKEY", *questions, "WEIGHT_W9", *traits]
    rows = draw(st.lists(st.tuples(st.integers(0, 5), st.lists(labels, min_size=len(questions), max_size=len(questions)),
                                   st.one_of(st.floats(0.1, 3.0), st.just("x")), st.lists(st.sampled_from(["a", "b", ""]), min_size=len(traits), max_size=len(traits))),
                         max_size=6))
    body = [",".join([str(q), *answers, str(weight), *values]) for q, answers, weight, values in rows]
    return {"info": "\n".join(info) + "\n", "metadata": "\n".join(metadata) + "\n", "responses": "\n".join([",".join(columns), *body]) + "\n"}


@FUZZ
@given(opinionqa_folders())
def test_random_small_opinionqa_folders(files):
    root = Path(tempfile.mkdtemp())
    try:
        write_wave(root, info=files["info"], metadata=files["metadata"], responses=files["responses"])
        loads_or_fails_cleanly(root)
    finally:
        shutil.rmtree(root)


@FUZZ
@given(st.sampled_from(["info.csv", "metadata.csv", "responses.csv"]), st.binary(max_size=300), st.integers(0, 400))
def test_random_bytes_in_any_file(name, noise, cut):
    """A file replaced by random bytes, or cut short, or with random bytes spliced in."""
    root = Path(tempfile.mkdtemp())
    try:
        folder = write_wave(root)
        original = (folder / name).read_bytes()
        (folder / name).write_bytes(original[:cut] + noise + original[cut:] if cut % 3 else noise)
        loads_or_fails_cleanly(root)
    finally:
        shutil.rmtree(root)


settings_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 200), st.floats(allow_nan=False), words,
              st.sampled_from(["cf", "majority", "spm", "W26", "cluster:4", "unseen", "demo:300", "individual"])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(words, children, max_size=3)),
    max_leaves=8,
)
grid_keys = st.sampled_from(["method", "persona", "users", "k", "seed", "max_eval_people", "waves", "data", "options", "model", "colour"])


@FUZZ
@given(st.one_of(
    st.dictionaries(st.sampled_from(["grid", "defaults"]), st.one_of(settings_values, st.lists(st.dictionaries(grid_keys, settings_values, max_size=4), max_size=3)), max_size=2),
    settings_values,
))
def test_random_grid_structures(spec):
    path = Path(tempfile.mkdtemp()) / "grid.yaml"
    path.write_text(yaml.safe_dump(spec))
    try:
        configs = load_grid(path)
    except PersonaBenchError as exc:
        assert str(exc) and "\n" not in str(exc).strip()
    else:
        assert all(config.run_id() for config in configs)


@FUZZ
@given(st.text(max_size=200))
def test_random_grid_text(text):
    path = Path(tempfile.mkdtemp()) / "grid.yaml"
    path.write_text(text)
    try:
        load_grid(path)
    except PersonaBenchError as exc:
        assert "\n" not in str(exc).strip()


def test_the_fuzzed_files_start_from_a_valid_wave(tmp_path):
    write_wave(tmp_path, info=INFO, metadata=METADATA, responses=RESPONSES)
    assert isinstance(load_survey(f"opinionqa:{tmp_path}").responses, pd.DataFrame)
