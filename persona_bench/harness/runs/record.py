"""RunRecord: what a finished run's ``results.json`` holds, typed and versioned.

The file stays one flat JSON object (what earlier versions wrote and read); :meth:`RunRecord.as_dict`
writes it and :func:`upgrade` reads every layout written before, so the leaderboard, curves, the
command line and the tests read typed records only:

* schema 1 (no ``schema_version``; persona-bench before 0.4): runs from before methods described
  themselves (no ``method_info``: a run with a model was prompting, one without a reference),
  before variants (``variant`` missing: every option given was the variant), before protocols
  (``answers``), before group figures (none), before the resolved ``options`` (the options given).
  Runs from before options declared their roles get the roles the built-in trainer's options had
  (``LEGACY_ROLES``): any option given that is not in the variant is a recipe setting, except
  the recipe's name, the budget (answers, epochs) and how training runs.
* schema 2: ``schema_version``, ``metrics`` (every registered per-person metric with its CI) and
  the method's ``option_roles``.
* schema 3: ``option_order`` (in the config, written when not ``given``), ``answer_positions``
  (the shares of predicted and chosen answers at each shown position); the metrics ``log_loss``,
  ``ece`` and ``collapsed_accuracy``, ``ordinal_error`` on ordinal questions only, and the proper
  scores of a counts method from add-one smoothed counts. A record of an earlier layout reads as
  before and is :attr:`RunRecord.outdated`: a run that reuses it recomputes these from its samples.

The untrained control of a steering method (its module left at initialisation) is
:attr:`RunRecord.untrained_control`, the one place that knows it is written ``weights=random``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..core.errors import PersonaBenchError
from .config import RunConfig

SCHEMA_VERSION = 3
UNTRAINED = {"weights": "random"}  # the method option that makes a steering method its own untrained control
TRAINING_FIELDS = ("recipe", "settings", "budget", "training_history", "membership_audit")
GROUP_FIELDS = ("weighted_accuracy", "groups", "question_sets", "disparity")
LEGACY_ROLES = {"recipe": "recipe", "max_train_answers": "budget", "epochs": "budget", "checkpoint_minutes": "operational",
                "gradient_checkpointing": "operational"}


class RecordError(PersonaBenchError, ValueError):
    """A results record that no layout of any version explains."""


@dataclass(frozen=True)
class MethodInfo:
    """A method's self-description (:meth:`persona_bench.harness.method.base.Method.describe`)."""

    kind: str
    uses_persona: bool = False
    needs_model: bool = False
    description: str = ""
    scores_are: str = "logits"
    protocols: tuple[str, ...] = ()
    option_roles: dict = field(default_factory=dict)  # option -> shape | budget | recipe | operational (harness.core.options)

    def recipe_settings(self) -> frozenset[str]:
        """The options a recipe sets and a run may override (not the recipe's name itself)."""
        return frozenset(name for name, role in self.option_roles.items() if role == "recipe" and name != "recipe")


@dataclass(frozen=True)
class Training:
    """What a learning method reports: its recipe and settings, the budget it trained on (answers,
    epochs, steps, seconds...), the validation history and the membership audit of its module."""

    recipe: str = ""
    settings: dict = field(default_factory=dict)
    budget: dict = field(default_factory=dict)
    training_history: list = field(default_factory=list)
    membership_audit: dict | None = None

    @property
    def train_answers(self) -> int | None:
        """How many train answers it trained on (0: untrained)."""
        return self.budget.get("train_answers")

    @property
    def epochs(self) -> float | None:
        return self.budget.get("epochs")


@dataclass(frozen=True)
class MetricValue:
    """A registered metric's mean over people with its 95% bootstrap CI (and which way is better,
    so a leaderboard ranks by it without the metric installed)."""

    value: float
    ci95: tuple[float, float]
    higher_is_better: bool = True


@dataclass(frozen=True)
class RunRecord:
    """One finished run (see module docstring)."""

    run_id: str
    config: RunConfig
    method_info: MethodInfo
    accuracy: float
    ci95: tuple[float, float]
    n_people: int
    n_answers: int
    options: dict = field(default_factory=dict)  # the method's resolved options
    variant: dict = field(default_factory=dict)  # the options that say what the method is (not how much it trained)
    training: Training | None = None
    preset: str | None = None  # the preset named by the command or grid entry that made the run (``--preset``, ``preset:``; not its identity)
    data_identity: str | None = None  # what the run's data is apart from its path (``KIND:FINGERPRINT``; None before 0.9)
    report: dict = field(default_factory=dict)  # the method's other report fields (e.g. group-prompt's steering_contexts)
    metrics: dict[str, MetricValue] = field(default_factory=dict)
    answer_positions: dict | None = None  # {"predicted": [...], "chosen": [...]}: shares per shown position (0: "A")
    weighted_accuracy: float | None = None
    groups: dict | None = None
    question_sets: dict | None = None
    disparity: dict | None = None
    wall_seconds: float | None = None  # over every attempt at the run (harness/runs/clock; before 0.11 the last attempt's)
    processes: int = 1
    finished_at: str = ""
    persona_bench_version: str = ""
    schema_version: int = SCHEMA_VERSION

    # -------------------------------------------------------------- views
    @property
    def method(self) -> str:
        return self.config.method

    @property
    def kind(self) -> str:
        return self.method_info.kind

    @property
    def untrained_control(self) -> bool:
        """A steering method's untrained control (module at initialisation, same variant)."""
        return all(self.config.method_options.get(k) == v for k, v in UNTRAINED.items())

    @property
    def has_group_figures(self) -> bool:
        return self.groups is not None

    @property
    def outdated(self) -> bool:
        """Written by an older persona-bench (an earlier layout, or without group figures): its figures
        are brought up to date from its samples when the run is reused."""
        return self.schema_version < SCHEMA_VERSION or not self.has_group_figures

    def metric(self, name: str) -> MetricValue:
        """A metric's value and CI (``accuracy`` is always there)."""
        if name == "accuracy":
            return MetricValue(self.accuracy, tuple(self.ci95))
        if name not in self.metrics:
            raise RecordError(f"run {self.run_id} has no metric {name!r} (has: {', '.join(['accuracy', *self.metrics])})")
        return self.metrics[name]

    def with_fields(self, **changes: Any) -> "RunRecord":
        """A copy with ``changes`` (dataclass fields)."""
        return replace(self, **changes)

    # -------------------------------------------------------------- JSON
    def as_dict(self) -> dict:
        """The flat ``results.json`` object."""
        training = asdict(self.training) if self.training else {}
        if training and training.get("membership_audit") is None:
            training.pop("membership_audit")
        return {
            "run_id": self.run_id,
            **{k: v for k, v in self.config.as_dict().items() if k != "method_options"},
            "method_options": self.config.method_options,
            "method_info": {**asdict(self.method_info), "protocols": list(self.method_info.protocols)},
            "options": self.options,
            "variant": self.variant,
            **training,
            **({"preset": self.preset} if self.preset else {}),
            **({"data_identity": self.data_identity} if self.data_identity else {}),
            **self.report,
            "accuracy": self.accuracy,
            "ci95": list(self.ci95),
            "n_people": self.n_people,
            "n_answers": self.n_answers,
            "metrics": {name: {**asdict(m), "ci95": list(m.ci95)} for name, m in self.metrics.items()},
            **({"answer_positions": self.answer_positions} if self.answer_positions is not None else {}),
            **{name: getattr(self, name) for name in GROUP_FIELDS if getattr(self, name) is not None},
            "wall_seconds": self.wall_seconds,
            "processes": self.processes,
            "finished_at": self.finished_at,
            "persona_bench_version": self.persona_bench_version,
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> "RunRecord":
        """:func:`upgrade`."""
        return upgrade(raw)


CONFIG_FIELDS = frozenset(f.name for f in fields(RunConfig))
KNOWN = frozenset({
    "run_id", *CONFIG_FIELDS, "method_info", "options", "variant", *TRAINING_FIELDS, "preset", "data_identity", "accuracy", "ci95", "n_people", "n_answers",
    "metrics", "answer_positions", *GROUP_FIELDS, "wall_seconds", "processes", "finished_at", "persona_bench_version", "schema_version",
})


def finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def upgrade(raw: dict) -> RunRecord:
    """The RunRecord of a results object of any version (see module docstring); :class:`RecordError`
    names what no version explains."""
    if not isinstance(raw, dict) or not {"run_id", "method", "accuracy"} <= set(raw):
        raise RecordError("not a results record (needs run_id, method and accuracy)")
    version = raw.get("schema_version", 1)
    if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
        raise RecordError(f"schema_version {version!r}: this persona-bench reads 1 to {SCHEMA_VERSION} (a newer one wrote it?)")
    figures = [raw["accuracy"], *(raw.get("ci95") or [])]
    if not all(finite(v) for v in figures) or len(raw.get("ci95") or []) not in (0, 2):
        raise RecordError(f"accuracy and ci95 must be finite numbers, got {raw['accuracy']!r} and {raw.get('ci95')!r}")
    texts = {name: raw[name] for name in ("preset", "data_identity", "finished_at", "persona_bench_version") if raw.get(name) is not None}
    if wrong := next((name for name, value in texts.items() if not isinstance(value, str)), None):
        raise RecordError(f"{wrong} must be text, got {texts[wrong]!r}")
    try:
        config = RunConfig.from_dict(raw)
        info = raw.get("method_info") or {"kind": "reference" if not raw.get("model") else "prompting"}
        variant = raw["variant"] if "variant" in raw else raw.get("method_options") or {}
        roles = info.get("option_roles") or {name: LEGACY_ROLES.get(name, "shape" if name in variant else "recipe")
                                             for name in raw.get("method_options") or {}}
        method_info = MethodInfo(**{**info, "protocols": tuple(info.get("protocols", ())), "option_roles": roles})
        training = Training(**{k: raw[k] for k in TRAINING_FIELDS if k in raw}) if "budget" in raw else None
        metrics = {name: MetricValue(float(m["value"]), tuple(m["ci95"]), bool(m.get("higher_is_better", True)))
                   for name, m in (raw.get("metrics") or {}).items()}
    except (TypeError, KeyError, ValueError) as exc:
        raise RecordError(f"a field does not fit its layout ({type(exc).__name__}: {exc})") from None
    ci95 = tuple(raw.get("ci95") or (math.nan, math.nan))
    return RunRecord(
        run_id=raw["run_id"], config=config, method_info=method_info, accuracy=float(raw["accuracy"]), ci95=ci95,
        n_people=int(raw.get("n_people", 0)), n_answers=int(raw.get("n_answers", 0)),
        options=dict(raw.get("options") or raw.get("method_options") or {}),
        variant=dict(variant),
        training=training, preset=raw.get("preset"), data_identity=raw.get("data_identity"), report={k: v for k, v in raw.items() if k not in KNOWN or (k in TRAINING_FIELDS and training is None)}, metrics=metrics,
        answer_positions=raw.get("answer_positions"),
        **{name: raw.get(name) for name in GROUP_FIELDS},
        wall_seconds=raw.get("wall_seconds"), processes=int(raw.get("processes", 1)), finished_at=raw.get("finished_at", ""),
        persona_bench_version=raw.get("persona_bench_version", ""), schema_version=version,  # the layout it was written in
    )
