"""RunConfig: everything that defines one run; its hash is the run id.

A config names the data, the split, the method and its options, the model, the persona kind
and the users scored. :meth:`RunConfig.check` validates what needs no method registry (types,
protocol arguments); :func:`persona_bench.harness.method.base.resolve_config` fills the defaults that
depend on the method (the model only for methods that use one, and so on).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from ..core.errors import ConfigError
from ..core.options import check_choices, check_types, option
from ..data.identity import data_identity, legacy_identity
from ..data.protocol import PROTOCOLS, USERS, SplitConfig
from ..personas.cf import FOLD_INS
from ..personas.kind import PersonaKind
from ..scoring.models import model_name
from ..scoring.option_order import OPTION_ORDERS

DEFAULT_MODEL = "smollm2-135m"
CF_SOLVERS = ("als", "adam")
PROMPT_STYLES = ("default", "paper")
DTYPES = ("auto", "float32", "bfloat16", "float16", "bf16-mixed")
# Fields a run id leaves out while they hold their default, so ids from before they existed stay valid.
OMITTED_AT_DEFAULT = {"pseudonymize": False, "protocol": "answers", "option_order": "given", "fold_in": "ridge", "prompt_texts": "default"}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (see module docstring)."""

    method: str
    model: str | None = option(None, "language model alias or folder (LLM methods; default smollm2-135m)")
    data: str = option("demo", "demo (embedded), opinionqa:PATH, pew:PATH or KIND:... of a registered loader")
    waves: tuple[str, ...] = ()
    persona: str = option("individual", "individual | cluster | cluster:K | demographic:TRAIT[xTRAIT]")
    users: str = option("seen", "seen people (their held-out answers) or unseen people (K answers folded in)", choices=USERS)
    k: int | None = option(None, "unseen users: answers folded in per person")
    max_eval_people: int | None = option(None, "score a seeded subset of people")
    seed: int = option(0, "the split's seed (and every other random choice)")
    people_train: float = option(0.8, "share of people in the train group")
    answers_train: float = option(0.8, "share of each person's answers in the train part")
    cf_solver: str = option("als", "CF behind the personas", choices=CF_SOLVERS)
    cf_dim: int = option(16, "CF embedding size d")
    dtype: str = option("auto", "auto (bfloat16 on GPU, float32 on CPU), float32, bfloat16, float16, or bf16-mixed "
                                    "(float32 weights, products autocast to bfloat16)", choices=DTYPES)
    method_options: dict = field(default_factory=dict)
    pseudonymize: bool = option(False, "write salted hashes instead of respondent ids in every file of the runs folder")
    protocol: str = option("answers", "answers: score each person's held-out answers; heldout-questions: answers to questions no "
                                      "learner saw answered; cross-wave: panelists on a later wave from their earlier answers",
                           choices=PROTOCOLS)
    option_order: str = option("given", "the order options are shown in: given, reversed, or cyclic (every rotation scored, "
                                         "distributions averaged: a letter prior cannot help)", choices=OPTION_ORDERS)
    fold_in: str = option("ridge", "how a person outside the CF fit gets a persona vector, question side fixed: ridge (closed form, "
                                   "toward the train people's mean) or optimise (the paper: Adam on the person's vector alone)",
                          choices=FOLD_INS)
    prompt_texts: str = option("default", "prompt texts: default, or paper (Li et al. 2023, Figure 4: 'Please respond solely with "
                                     "A/B/C/D', the paper's headers)", choices=PROMPT_STYLES)

    @classmethod
    def from_dict(cls, values: dict) -> "RunConfig":
        """The config a saved ``config.json`` or results record describes (other keys ignored;
        fields it lacks, from before they existed, at their defaults)."""
        known = {item.name for item in fields(cls)}
        kept = {k: v for k, v in values.items() if k in known}
        if "waves" in kept:
            kept["waves"] = tuple(kept["waves"] or ())
        return cls(**kept)

    def check(self) -> "RunConfig":
        """Validate types and protocol arguments; return self (raises :class:`ConfigError`)."""
        check_types(self)
        if not all(isinstance(w, str) for w in self.waves):
            raise ConfigError(f"waves: expected wave names such as W26, got {list(self.waves)!r}")
        PersonaKind.parse(self.persona)
        check_choices(self)
        if self.protocol == "cross-wave":
            if len(self.waves) != 2 or self.waves[0] == self.waves[1] or self.users != "unseen":
                raise ConfigError("--protocol cross-wave needs --from WAVE --to WAVE (two different waves) and scores unseen users")
        elif self.users == "unseen" and self.k is None:
            raise ConfigError("--users unseen needs --k N (answers folded in per person, N >= 1)")
        if self.k is not None and self.k < 1:
            raise ConfigError("--k must be at least 1")
        if self.users == "seen" and self.k is not None:
            raise ConfigError("--k applies to --users unseen only")
        if self.max_eval_people is not None and self.max_eval_people < 1:
            raise ConfigError("--max-eval-people must be at least 1")
        if self.cf_dim < 1:
            raise ConfigError("--cf-dim must be at least 1")
        try:
            self.split_config()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        return self

    def split_config(self) -> SplitConfig:
        """How this run's people and answers are split."""
        target = self.waves[-1] if self.protocol == "cross-wave" and self.waves else ""
        return SplitConfig(self.seed, self.people_train, self.answers_train, self.protocol, target)

    def as_dict(self) -> dict:
        """JSON-ready fields (those of OMITTED_AT_DEFAULT only when set: run ids from before they existed stay valid)."""
        fields_ = {**asdict(self), "waves": list(self.waves)}
        return {k: v for k, v in fields_.items() if k not in OMITTED_AT_DEFAULT or v != OMITTED_AT_DEFAULT[k]}

    def run_id(self) -> str:
        """``<method>-<model>-<hash>``: readable, and unique per configuration; the data counts by its
        content, not its path (:func:`~persona_bench.harness.data.identity.data_identity`)."""
        return self.identified_as(data_identity(self.data, self.waves))

    def legacy_run_id(self) -> str:
        """The id persona-bench before 0.8 gave this configuration (its data by its spec, path and all)."""
        return self.identified_as(legacy_identity(self.data))

    def identified_as(self, data: str) -> str:
        identity = {**self.as_dict(), "data": data}
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]
        model = model_name(self.model).replace("/", "_") if self.model else "nollm"  # a model folder by its name: ids are published
        return f"{self.method}-{model}-{digest}"

    def split_key(self) -> str:
        """Identity of the shared split (data by its content, waves, seed, shares)."""
        return self.split_key_of(data_identity(self.data, self.waves))

    def legacy_split_key(self) -> str:
        """The split key before 0.8 (data by its spec)."""
        return self.split_key_of(legacy_identity(self.data))

    def split_key_of(self, data: str) -> str:
        parts = [data, ",".join(self.waves), self.seed, self.people_train, self.answers_train]
        if self.protocol != "answers":
            parts.append(self.protocol)
        if self.pseudonymize:  # its shared files name people by the folder's pseudonyms
            parts.append("pseudonymized")
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]

