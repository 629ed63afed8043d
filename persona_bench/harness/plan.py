"""A cost plan before spending: what each run of a grid will take, and the total.

Per run: the docs to score; the forward passes left after the scorer's deduplication (one per
distinct prompt for prompting methods, less those an earlier run of the grid scores, which the
score cache serves: the ``cached`` column; one per distinct persona and question for steering
methods; none for the no-LLM references); their prompt tokens; the training examples x epochs
(steering methods: the recipe's epochs, an upper bound when early stopping ends sooner, plus
the validation forwards); and the FLOPs they cost (a steering family that shares part of each
prompt across personas, e.g. SPM placed before the answer, counts that part once per prompt): 2 x N per token for a forward and 4 x N for a
training step through the frozen LM (forward plus the backward pass to its inputs, no weight
gradients; a LoRA adapter's own weight gradients are small beside it, but a head shared across
personas is recomputed at every step while its adapter trains), N the parameters outside the input embedding. Hours come from FLOPs at a measured
rate on this machine (a short calibration in each precision the grid's runs use: SmolLM2-135M
forwards, or matrix products when it is absent) and at a named GPU's dense bf16 peak times an assumed utilisation. Everything here is an
estimate and says so; the prompt texts are built exactly as the runs would build them, and the
tokens are counted with the run's tokenizer when its model is here (else SmolLM2's, a proxy).
"""
from __future__ import annotations

import hashlib
import inspect
import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from ..tasks.prompts import PROMPTS, scored_prompt, styled
from .core.atomic import atomic_write_json
from .data.loaders import load_survey
from .data.protocol import SplitConfig, make_split, scored_docs, survey_for
from .method.base import build_options, get_method
from .runner import build_context
from .runs.config import RunConfig
from .scoring.models import ModelUnavailable, active_parameters, resolve_model
from .scoring.option_order import ordered_docs
from .training.cost import training_flops as training_cost
from .training.learned import MAX_VALIDATION, VALIDATION_SHARE, LearnedSteering

GPUS = {"h100": 989e12, "a100": 312e12, "l40s": 362e12}  # dense bf16 peak FLOP/s (vendor figures)
UTILISATION = {"scoring": 0.35, "training": 0.25}  # assumed share of the peak a run achieves


@dataclass(frozen=True)
class RunCost:
    """The estimated cost of one run."""

    run_id: str
    label: str
    docs: int
    forwards: int
    prompt_tokens: int
    train_examples: int
    epochs: int
    scoring_flops: float
    training_flops: float
    reuses_training: bool = False  # another run of the grid trains the same module: no training here
    cached_forwards: int = 0  # prompts an earlier run of the grid scores (the score cache serves them): not in ``forwards``
    dtype: str = "float32"  # the precision its forwards run in on the CPU: which measured rate its hours use


def cpu_dtype(dtype: str) -> str:
    """The precision a ``--dtype`` runs in on the CPU (``auto`` is float32 there)."""
    return "float32" if dtype == "auto" else dtype


@lru_cache(maxsize=16)
def survey_and_split(data: str, waves: tuple[str, ...], split: SplitConfig):
    survey = survey_for(load_survey(data, list(waves) or None), waves, split.protocol)
    return survey, make_split(survey, split)


PROMPT_TEXTS: dict[str, list[str]] = {}  # prompts per configuration apart from the model
TOKENS: dict[str, dict[str, int]] = {}  # token counts per tokenizer and text


@lru_cache(maxsize=8)
def tokenizer_for(model: str):
    """The model's own tokenizer when it is here, else SmolLM2's (a proxy for counting tokens)."""
    from transformers import AutoTokenizer

    try:
        folder = resolve_model(model)
    except ModelUnavailable:
        folder = resolve_model("smollm2-135m")
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def prompt_texts(config: RunConfig, context: RunContext, docs: pd.DataFrame) -> list[str]:
    """Each doc's prompt, built as the run would build it, options in the doc's order (trained methods: the prompt
    they train on, Raw Q for steering); a calibrated prompting method's content-free prompts after them."""
    method_class = get_method(config.method)
    method = method_class(build_options(method_class, config.method_options))
    if isinstance(method, LearnedSteering):
        task, extra = method.prompt_task(), method.prompt_fields(context, docs, context.known_answers())
    else:
        task = getattr(method, "task", "opinionqa_persona_raw")
        extra = method.doc_fields(docs, context) if hasattr(method, "doc_fields") else None
    blank = method.content_free_fields(docs, extra) if hasattr(method, "content_free_fields") else None
    passes = [styled(fields, len(docs), config.prompt_texts) for fields in ([extra] if blank is None else [extra, blank])]  # --calibrate: a content-free pass
    build = PROMPTS[task]
    texts = []
    for fields_of in passes:
        for i, doc in enumerate(docs.itertuples(index=False)):
            question = context.survey.questions[doc.question]
            fields = {"question": question.text, "options": [question.options[index] for index in doc.order], **(fields_of[i] if fields_of else {})}
            texts.append(scored_prompt(build(fields)))
    return texts


def run_cost(config: RunConfig, runs_dir: Path, trainings: set | None = None, scored: set | None = None) -> RunCost:
    """The estimated cost of one run (see module docstring). ``trainings`` collects the trained
    modules costed so far in a grid: a run that reuses one costs no training. ``scored`` collects
    the unsteered prompts scored so far: the score cache serves them to a later run of the grid
    (e.g. Demographics + Raw Q on unseen people at every K), so they cost it nothing."""
    trainings = set() if trainings is None else trainings
    scored = set() if scored is None else scored
    survey, split = survey_and_split(config.data, tuple(config.waves), config.split_config())
    docs = ordered_docs(scored_docs(survey, split, config.users, config.max_eval_people, config.seed), config.option_order)  # cyclic: every rotation
    method = get_method(config.method)
    label = " ".join(str(p) for p in (config.method, config.model or "", config.persona, config.users, config.k or "", config.method_options or "",
                                       config.dtype if config.dtype != "auto" else "") if p != "")
    if not method.needs_model:
        return RunCost(config.run_id(), label, len(docs), 0, 0, 0, 0, 0.0, 0.0)
    context = build_context(config, runs_dir / "_plan", survey, split, log=lambda message: None)
    same_prompts = json.dumps({k: v for k, v in config.as_dict().items() if k not in ("model", "dtype")}, sort_keys=True)
    if same_prompts not in PROMPT_TEXTS:  # the same prompts for every model of a grid: built once
        PROMPT_TEXTS[same_prompts] = prompt_texts(config, context, docs)
    texts = PROMPT_TEXTS[same_prompts]
    keys = [""] * len(texts)
    if method.uses_persona:  # one forward per (persona, prompt)
        keys = [v.tobytes() for v in context.persona_vectors(docs["respondent"]).astype(np.float32)]
    distinct = list(dict.fromkeys(zip(keys, texts)))
    cached = 0
    if not method.uses_persona and not issubclass(method, LearnedSteering):  # unsteered prompts: the score cache's by their text
        precision = cpu_dtype(config.dtype)  # as the score cache tells models apart: auto and float32 are one on the CPU
        seen = {(config.model, precision, text) for _, text in distinct}
        left = seen - scored
        cached, distinct = len(seen) - len(left), [(key, text) for key, text in distinct if (config.model, precision, text) in left]
        scored |= left
    tokenizer = tokenizer_for(config.model)
    counted = TOKENS.setdefault(tokenizer.name_or_path, {})
    missing = list(set(texts) - counted.keys())
    if missing:  # one batched call to the fast tokenizer
        counted.update(zip(missing, map(len, tokenizer(missing)["input_ids"])))
    tokens_of = counted
    prompt_tokens = sum(tokens_of[t] for _, t in distinct)
    active = active_parameters(config.model)
    training_flops, examples, epochs = 0.0, 0, 0
    reused = False
    if issubclass(method, LearnedSteering):
        options = build_options(method, config.method_options)
        settings = method.resolve(options)
        shared = method.shared_prompt_tokens(settings)  # tokens of each prompt that one forward serves for every persona
        tokens_of = {t: counted[t] - shared(counted[t]) for t in set(texts)}
        prompt_tokens = sum(tokens_of[t] for _, t in distinct) + sum(shared(counted[t]) for t in set(texts))
    if issubclass(method, LearnedSteering) and config.method_options.get("weights", "trained") != "random":
        training = (config.split_key(), method(options).checkpoint_key(context))
        reused = training in trainings
        trainings.add(training)
        answers = split.train_answers()
        examples = settings["max_train_answers"] or len(answers)
        validation = max(1, min(MAX_VALIDATION, int(round(VALIDATION_SHARE * examples)), len(answers) // 10))
        epochs = settings["epochs"]
        trained_tokens = counted if settings["lora_rank"] else tokens_of  # an adapter in training changes every head: nothing shared
        mean_tokens = np.mean([trained_tokens.get(t, 0) for t in texts]) if texts else 0
        training_flops = 0.0 if reused else training_cost(examples, validation, epochs, mean_tokens, active)
    return RunCost(config.run_id(), label, len(docs), len(distinct), prompt_tokens, examples, epochs, 2.0 * prompt_tokens * active,
                   training_flops, reused, cached, cpu_dtype(config.dtype))


KEPT_COSTS = 4  # the costs of this many grids (the latest planned) stay in a runs folder's _plan/


def grid_costs(configs: list[RunConfig], runs_dir: Path, log: Callable[[str], None]) -> list[RunCost]:
    """Every run's :func:`run_cost` in grid order (later runs reuse the trainings and cached scores of
    earlier ones), kept in ``runs_dir/_plan/costs-<key>.json`` (:func:`costs_key`): costing the same grid
    again reads them back instead of building and counting every prompt again."""
    run_ids = [config.run_id() for config in configs]
    path = Path(runs_dir) / "_plan" / f"costs-{costs_key(configs, run_ids)}.json"
    try:
        costs = [RunCost(**row) for row in json.loads(path.read_text())]
        if [c.run_id for c in costs] == run_ids:
            log(f"costs of the {len(configs)} runs read from {path} (this grid, costed before by this code)")
            return costs
    except (OSError, ValueError, TypeError):  # not costed yet, or a damaged file: cost again
        pass
    costs, trainings, scored = [], set(), set()
    for number, (config, run_id) in enumerate(zip(configs, run_ids), start=1):
        log(f"[{number}/{len(configs)}] costing {run_id}")
        costs.append(run_cost(config, runs_dir, trainings, scored))
    atomic_write_json(path, [asdict(c) for c in costs])
    for old in sorted(path.parent.glob("costs-*.json"), key=lambda p: p.stat().st_mtime_ns, reverse=True)[KEPT_COSTS:]:
        old.unlink(missing_ok=True)
    return costs


def costs_key(configs: list[RunConfig], run_ids: list[str]) -> str:
    """What a grid's costs depend on: its runs in order (``run_ids``: they count the data by content), the
    tokenizers that count each model's prompts (by content), transformers' version, and the code that
    builds and costs them (persona-bench's sources and each method's module; a method defined where
    there is no source file is keyed by persona-bench's code alone)."""
    import transformers

    package = Path(__file__).resolve().parents[1]
    methods = {c.method: get_method(c.method) for c in configs}
    sources = sorted(set(package.rglob("*.py")) | {Path(file) for file in map(inspect.getsourcefile, methods.values()) if file})
    code = hashlib.sha256(b"".join(path.read_bytes() for path in sources)).hexdigest()
    tokenizers = sorted({tokenizer_identity(c.model) for c in configs if methods[c.method].needs_model})
    payload = [code, transformers.__version__, tokenizers, run_ids]
    return hashlib.sha256(json.dumps(payload).encode()).hexdigest()[:16]


def tokenizer_identity(model: str) -> str:
    """The tokenizer :func:`tokenizer_for` counts ``model``'s prompts with, by its content where it is a fast one."""
    tokenizer = tokenizer_for(model)
    if getattr(tokenizer, "is_fast", False):
        return hashlib.sha256(tokenizer.backend_tokenizer.to_str().encode()).hexdigest()[:16]
    return f"{type(tokenizer).__name__} {tokenizer.name_or_path} {len(tokenizer)}"


def plan_table(costs: list[RunCost], here: dict[str, float], gpu: str) -> tuple[pd.DataFrame, dict]:
    """Per-run rows and the totals (hours here, at the FLOP/s measured in each run's precision, and on ``gpu``)."""
    peak = GPUS[gpu] if gpu in GPUS else None
    rows = []
    for c in costs:
        flops = c.scoring_flops + c.training_flops
        gpu_hours = (c.scoring_flops / UTILISATION["scoring"] + c.training_flops / UTILISATION["training"]) / peak / 3600 if peak else None
        rows.append({
            "run": c.label, "docs": c.docs, "forwards": c.forwards, "cached": c.cached_forwards, "prompt tokens": c.prompt_tokens,
            "train examples x epochs": ("reuses a training" if c.reuses_training else f"{c.train_examples:,} x {c.epochs}") if c.train_examples else "",
            "PFLOP": flops / 1e15, "hours here": flops / here[c.dtype] / 3600 if flops else 0.0,  # no FLOPs: no rate measured for them
            **({f"hours on {gpu}": gpu_hours} if peak else {}),
        })
    frame = pd.DataFrame(rows)
    totals = {"runs": len(costs), "PFLOP": frame["PFLOP"].sum(), "hours here": frame["hours here"].sum()}
    if peak:
        totals[f"hours on {gpu}"] = frame[f"hours on {gpu}"].sum()
    return frame, totals


def measured_pace(frame: pd.DataFrame) -> float | None:
    """Measured over planned hours of the done runs that have both (:func:`plan_table` rows with the
    ``state`` and ``measured hours`` a started runs folder adds); ``None`` where none has."""
    timed = (frame["state"] == "done") & frame["measured hours"].notna() & (frame["hours here"] > 0)
    return float(frame.loc[timed, "measured hours"].sum() / frame.loc[timed, "hours here"].sum()) if timed.any() else None
