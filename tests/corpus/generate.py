"""A corpus of damaged inputs, arguments and states, one folder per case, each with the command
that meets it and what the user must be told (generated, never committed):

    python tests/corpus/generate.py OUT        # OUT/<case>/{case.json, ...the damaged files}

``case.json``: ``argv`` (the ``persona-bench`` arguments, ``{case}`` standing for the case folder),
``env`` (environment variables set for the command, ``{case}`` likewise),
``expect`` (a fragment of the one error line), ``exit`` (2) and ``absent`` (strings that must appear
in no output, e.g. work done before a bad argument was noticed). ``tests/test_corpus.py`` runs
every case. A case is a function below; adding one is adding a function.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.test_opinionqa_loader import INFO, METADATA, RESPONSES, write_wave  # noqa: E402

CASES: dict[str, Callable[[Path], dict]] = {}


def case(function: Callable[[Path], dict]) -> Callable[[Path], dict]:
    """Register a case: ``function(folder)`` writes its files and returns its case.json fields."""
    CASES[function.__name__.replace("_", "-")] = function
    return function


def summary(expect: str, **extra) -> dict:
    """``data summary`` over the OpinionQA layout in ``folder``."""
    return {"argv": ["data", "summary", "--data", "opinionqa:{case}"], "expect": expect, **extra}


# ------------------------------------------------------------------ damaged survey files
@case
def empty_responses(folder: Path) -> dict:
    write_wave(folder, responses="")
    return summary("responses.csv: empty file")


@case
def header_only_responses(folder: Path) -> dict:
    write_wave(folder, responses=RESPONSES.splitlines()[0] + "\n")
    return summary("responses.csv: a header but no rows")


@case
def header_only_responses_in_a_run(folder: Path) -> dict:
    write_wave(folder, responses=RESPONSES.splitlines()[0] + "\n")
    return {"argv": ["run", "--method", "majority", "--data", "opinionqa:{case}", "--out", "{case}/runs"], "expect": "a header but no rows"}


@case
def truncated_gzip_responses(folder: Path) -> dict:
    wave = write_wave(folder, gz=True)
    data = (wave / "responses.csv.gz").read_bytes()
    (wave / "responses.csv.gz").write_bytes(data[: len(data) // 2])
    return summary("responses.csv.gz: unreadable CSV (EOFError")


@case
def not_gzip_at_all(folder: Path) -> dict:
    wave = write_wave(folder, responses=None)
    (wave / "responses.csv.gz").write_bytes(b"this is not gzip")
    return summary("responses.csv.gz: unreadable CSV")


@case
def duplicated_question_row(folder: Path) -> dict:
    write_wave(folder, info=INFO + INFO.splitlines()[1].replace("0,0,", "2,2,", 1) + "\n")
    return summary("info.csv, row 4, column key: 'DANGER_W9' repeats row 2")


@case
def duplicated_trait_row(folder: Path) -> dict:
    write_wave(folder, metadata=METADATA + METADATA.splitlines()[1].replace("0,", "2,", 1) + "\n")
    return summary("metadata.csv, row 4, column key: 'SEX' repeats row 2")


@case
def duplicated_respondent(folder: Path) -> dict:
    write_wave(folder, responses=RESPONSES + RESPONSES.splitlines()[1] + "\n")
    return summary("duplicate respondent id 'W9:11'")


@case
def missing_info_column(folder: Path) -> dict:
    write_wave(folder, info=INFO.replace(",option_ordinal", ",ordinal_typo"))
    return summary("info.csv: missing column(s) option_ordinal")


@case
def unknown_answer_label(folder: Path) -> dict:
    write_wave(folder, responses=RESPONSES.replace("Neither", "Maybe"))
    return summary("row 3, column DANGER_W9: unknown answer label 'Maybe'")


@case
def malformed_option_literal(folder: Path) -> dict:
    write_wave(folder, info=INFO.replace("\"['A lot', 'Some', 'Refused']\"", "\"['A lot', 'Some',\""))
    return summary("column references: cannot parse")


@case
def malicious_option_literal(folder: Path) -> dict:
    payload = "__import__('pathlib').Path('{}').write_text('pwned')".format(folder / "PWNED")
    write_wave(folder, info=INFO.replace("\"['A lot', 'Some', 'Refused']\"", json.dumps(payload)))
    return summary("column references: cannot parse", never_created="PWNED")


@case
def non_utf8_responses(folder: Path) -> dict:
    wave = write_wave(folder, responses=None)
    (wave / "responses.csv").write_bytes(RESPONSES.encode().replace(b"Safer", b"S\xff\xfeer"))
    return summary("responses.csv: unreadable CSV (UnicodeDecodeError")


@case
def weight_not_a_number(folder: Path) -> dict:
    write_wave(folder, responses=RESPONSES.replace("0.5,Male", "heavy,Male"))
    return summary("row 2, column WEIGHT_W9: weight is not a number")


@case
def negative_weight(folder: Path) -> dict:
    write_wave(folder, responses=RESPONSES.replace("0.5,Male", "-3,Male"))
    return summary("row 2, column WEIGHT_W9: weight '-3' is not a finite positive number")


@case
def repeated_question_column(folder: Path) -> dict:
    write_wave(folder, responses=RESPONSES.replace("QKEY,DANGER_W9,TRUST_W9,", "QKEY,DANGER_W9,DANGER_W9,", 1))
    return summary("column 'DANGER_W9' appears twice (columns 2 and 3)")


@case
def repeated_trait_persona(folder: Path) -> dict:
    return {"argv": ["run", "--method", "cf", "--persona", "demographic:POLPARTYxPOLPARTY", "--out", "{case}/runs"],
            "expect": "name each trait once"}


@case
def repeated_seed(folder: Path) -> dict:
    return {"argv": ["run", "--method", "majority", "--seeds", "0,0", "--out", "{case}/runs"], "expect": "seed 0 is given twice"}


@case
def device_that_does_not_exist(folder: Path) -> dict:
    return {"argv": ["run", "--method", "raw", "--device", "cuda:7", "--out", "{case}/runs"],
            "expect": "--device 'cuda:7': no such device here (available: auto, cpu", "absent": ["preparing"]}


@case
def runs_folder_is_a_file(folder: Path) -> dict:
    (folder / "runs").write_text("not a folder\n")
    return {"argv": ["run", "--method", "majority", "--data", "demo:200", "--out", "{case}/runs"], "expect": "Not a directory", "exit": 1}


@case
def cache_is_a_file(folder: Path) -> dict:
    (folder / "cache").write_text("not a folder\n")
    return {"argv": ["run", "--method", "raw", "--data", "demo:200", "--max-eval-people", "3", "--no-references", "--out", "{case}/runs"],
            "env": {"PERSONA_BENCH_CACHE": "{case}/cache"}, "expect": "PERSONA_BENCH_CACHE=", "absent": ["scoring"]}


@case
def unknown_wave(folder: Path) -> dict:
    write_wave(folder)
    return {"argv": ["data", "summary", "--data", "opinionqa:{case}", "--waves", "W99"], "expect": "no wave folder for W99"}


@case
def missing_data_folder(folder: Path) -> dict:
    return {"argv": ["data", "summary", "--data", "opinionqa:{case}/nowhere"], "expect": "nowhere: no such folder"}


@case
def corrupt_sav(folder: Path) -> dict:
    (folder / "pew" / "W9_x").mkdir(parents=True)
    (folder / "pew" / "W9_x" / "ATP W9.sav").write_bytes(b"not an SPSS file" * 10)
    write_wave(folder / "meta")
    return {"argv": ["data", "summary", "--data", "pew:{case}/pew", "--metadata", "{case}/meta"], "expect": "unreadable SPSS file"}


@case
def pew_without_metadata(folder: Path) -> dict:
    (folder / "pew" / "W9_x").mkdir(parents=True)
    (folder / "pew" / "W9_x" / "ATP W9.sav").write_bytes(b"")
    return {"argv": ["data", "summary", "--data", "pew:{case}/pew"], "expect": "pass --metadata PATH"}


# ------------------------------------------------------------------ bad arguments
@case
def unknown_data_kind(folder: Path) -> dict:
    return {"argv": ["data", "summary", "--data", "csv:{case}"], "expect": "unknown kind 'csv'"}


@case
def unknown_method(folder: Path) -> dict:
    return {"argv": ["run", "--method", "telepathy", "--out", "{case}/runs"], "expect": "unknown method 'telepathy'"}


@case
def unknown_method_option(folder: Path) -> dict:
    return {"argv": ["run", "--method", "cf", "--lr", "1", "--out", "{case}/runs"], "expect": "unrecognized arguments for method cf: --lr 1"}


@case
def unknown_persona_kind(folder: Path) -> dict:
    return {"argv": ["run", "--method", "cf", "--persona", "tribe", "--data", "demo:300", "--out", "{case}/runs"], "expect": "persona"}


@case
def unknown_trait(folder: Path) -> dict:
    return {"argv": ["run", "--method", "cf", "--persona", "demographic:SHOESIZE", "--data", "demo:300", "--out", "{case}/runs"],
            "expect": "SHOESIZE"}


@case
def unknown_model(folder: Path) -> dict:
    return {"argv": ["run", "--method", "raw", "--model", "no-such-model", "--data", "demo:300", "--out", "{case}/runs"],
            "expect": "no-such-model", "absent": ["preparing"]}


@case
def absent_paper_model_before_any_work(folder: Path) -> dict:
    return {"argv": ["run", "--method", "spm", "--model", "falcon-7b-instruct", "--out", "{case}/runs"],
            "expect": "falcon-7b-instruct", "absent": ["preparing", "training"]}


# ------------------------------------------------------------------ grids
def grid(folder: Path, text: str | bytes, expect: str, **extra) -> dict:
    path = folder / "grid.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return {"argv": ["sweep", "{case}/grid.yaml", "--out", "{case}/runs", "--dry-run"], "expect": expect, **extra}


@case
def grid_value_of_the_wrong_type(folder: Path) -> dict:
    return grid(folder, "grid:\n  - method: majority\n    max_eval_people: ten\n", "max_eval_people: expected a whole number")


@case
def grid_option_of_the_wrong_type(folder: Path) -> dict:
    return grid(folder, "grid:\n  - method: spm\n    options: {epochs: three}\n", "option epochs: expected a whole number or nothing, got 'three'")


@case
def grid_options_not_a_mapping(folder: Path) -> dict:
    return grid(folder, "grid:\n  - method: spm\n    options: [1]\n", "options: expected 'option: value' pairs")


@case
def grid_entry_not_a_mapping(folder: Path) -> dict:
    return grid(folder, "grid:\n  - 7\n", "grid entry 1: expected 'key: value' settings")


@case
def grid_unknown_key(folder: Path) -> dict:
    return grid(folder, "grid:\n  - method: cf\n    colour: blue\n", "unknown setting(s) colour")


@case
def grid_yaml_syntax_error(folder: Path) -> dict:
    return grid(folder, "grid:\n  - method: [cf\n", "cannot read grid")


@case
def grid_python_tag(folder: Path) -> dict:
    payload = f"grid: !!python/object/apply:os.system ['touch {folder / 'PWNED'}']\n"
    return grid(folder, payload, "cannot read grid", never_created="PWNED")


@case
def grid_not_utf8(folder: Path) -> dict:
    return grid(folder, b"\xff\xfe grid", "cannot read grid")


@case
def grid_empty(folder: Path) -> dict:
    return grid(folder, "grid: []\n", "a 'grid:' list of at least one entry")


@case
def grid_of_no_runs(folder: Path) -> dict:
    return grid(folder, "grid:\n  - method: []\n", "the grid expands to no runs")


# ------------------------------------------------------------------ damaged state
@case
def truncated_results_file(folder: Path) -> dict:
    run = folder / "runs" / "cf-nollm-0123456789"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"run_id": "cf-nollm-0123456789", "method": "cf", "accur')
    return {"argv": ["leaderboard", "--runs", "{case}/runs", "--out", "{case}/board/LEADERBOARD.md"],
            "expect": "cf-nollm-0123456789/results.json: not a readable results file"}


def results_record(folder: Path, run_folder: str, **fields) -> dict:
    """A runs folder with one cf results.json in ``run_folder`` (fields override the record's)."""
    run = folder / "runs" / run_folder
    run.mkdir(parents=True)
    record = {"run_id": run_folder, "method": "cf", "accuracy": 0.5, "ci95": [0.4, 0.6], **fields}
    (run / "results.json").write_text(json.dumps(record))
    return {"argv": ["leaderboard", "--runs", "{case}/runs", "--out", "{case}/board/LEADERBOARD.md"]}


@case
def results_accuracy_not_finite(folder: Path) -> dict:
    return {**results_record(folder, "cf-nollm-0123456789", accuracy=float("nan")), "expect": "accuracy and ci95 must be finite numbers"}


@case
def results_run_id_leaving_its_folder(folder: Path) -> dict:
    return {**results_record(folder, "cf-nollm-0123456789", run_id="../../../etc/passwd"), "expect": "is not its folder's name"}


def generate(out: Path) -> list[Path]:
    """Write every case under ``out``; return their folders."""
    folders = []
    for name, build in CASES.items():
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        spec = {"exit": 2, "absent": [], "env": {}, **build(folder)}
        (folder / "case.json").write_text(json.dumps(spec, indent=1))
        folders.append(folder)
    return folders


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/corpus/generate.py OUT")
    print(f"{len(generate(Path(sys.argv[1])))} cases in {sys.argv[1]}")
