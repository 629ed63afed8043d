"""RunConfig: everything that defines one run; its hash is the run id.

A config names the data, the split, the method and its options, the model, the persona kind
and the users scored. :meth:`RunConfig.check` validates what needs no method registry (types,
protocol arguments); :func:`persona_bench.harness.method.resolve_config` fills the defaults that
depend on the method (the model only for methods that use one, and so on).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

from .errors import ConfigError
from .personas import PersonaKind
from .protocol import USERS, SplitConfig

DEFAULT_MODEL = "smollm2-135m"
CF_SOLVERS = ("als", "adam")
DTYPES = ("auto", "float32", "bfloat16", "float16")
TEXT, WHOLE, NUMBER, OPTIONAL_TEXT, OPTIONAL_WHOLE = (
    ((str,), "text"), ((int,), "a whole number"), ((float, int), "a number"),
    ((str, type(None)), "text or nothing"), ((int, type(None)), "a whole number or nothing"),
)
FIELD_TYPES = {
    "method": TEXT, "model": OPTIONAL_TEXT, "data": TEXT, "persona": TEXT, "users": TEXT, "k": OPTIONAL_WHOLE,
    "max_eval_people": OPTIONAL_WHOLE, "seed": WHOLE, "people_train": NUMBER, "answers_train": NUMBER,
    "cf_solver": TEXT, "cf_dim": WHOLE, "dtype": TEXT, "method_options": ((dict,), "a mapping of option names to values"),
    "pseudonymize": ((bool,), "true or false"), "protocol": TEXT,
}
# Fields a run id leaves out while they hold their default, so ids from before they existed stay valid.
OMITTED_AT_DEFAULT = {"pseudonymize": False, "protocol": "answers"}


def accepts(allowed: tuple[type, ...], value: object) -> bool:
    """Whether ``value`` fits ``allowed`` (run settings and method options alike): an int is a
    float, a bool is not a number."""
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed) or (float in allowed and isinstance(value, int))


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run (see module docstring)."""

    method: str
    model: str | None = None
    data: str = "demo"
    waves: tuple[str, ...] = ()
    persona: str = "individual"
    users: str = "seen"
    k: int | None = None
    max_eval_people: int | None = None
    seed: int = 0
    people_train: float = 0.8
    answers_train: float = 0.8
    cf_solver: str = "als"
    cf_dim: int = 16
    dtype: str = "auto"
    method_options: dict = field(default_factory=dict)
    pseudonymize: bool = False  # respondent ids in docs and samples replaced by salted hashes
    protocol: str = "answers"  # answers | heldout-questions | cross-wave (waves: from, to) (harness.protocol)

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
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in FIELD_TYPES:
                types, description = FIELD_TYPES[item.name]
                if not accepts(types, value):
                    raise ConfigError(f"{item.name}: expected {description}, got {value!r}")
        if not all(isinstance(w, str) for w in self.waves):
            raise ConfigError(f"waves: expected wave names such as W26, got {list(self.waves)!r}")
        PersonaKind.parse(self.persona)
        if self.users not in USERS:
            raise ConfigError(f"--users {self.users!r}: expected one of {', '.join(USERS)}")
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
        if self.cf_solver not in CF_SOLVERS:
            raise ConfigError(f"--cf-solver {self.cf_solver!r}: choose from {', '.join(CF_SOLVERS)}")
        if self.cf_dim < 1:
            raise ConfigError("--cf-dim must be at least 1")
        if self.dtype not in DTYPES:
            raise ConfigError(f"--dtype {self.dtype!r}: choose from {', '.join(DTYPES)}")
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
        """``<method>-<model>-<hash>``: readable, and unique per configuration."""
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:10]
        model = (self.model or "nollm").replace("/", "_")
        return f"{self.method}-{model}-{digest}"

    def split_key(self) -> str:
        """Identity of the shared split (data, waves, seed, shares)."""
        parts = [self.data, ",".join(self.waves), self.seed, self.people_train, self.answers_train]
        if self.protocol != "answers":
            parts.append(self.protocol)
        if self.pseudonymize:  # its shared files name people by the folder's pseudonyms
            parts.append("pseudonymized")
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]

