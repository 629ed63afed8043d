"""Methods that steer a frozen LM with a trained module: everything a steering family shares.

A family (``methods/<family>/``) subclasses :class:`LearnedSteering`, extends its ``Options``
with the module's own options, names its presets in ``recipes`` and builds its
:class:`~persona_bench.harness.scoring.steerer.Steerer` in :meth:`LearnedSteering.build_steerer`.
The base class does the rest:

* loads the frozen LM (``--model``, ``--dtype``, ``--device``);
* draws the data: ``--max-train-answers N`` of the train people's train answers (0: all) to
  learn from, each with the person's CF persona vector, and a further slice of validation
  answers (10% of N, at most 2,000) that are never trained on and whose personas are folded
  in from the person's *other* train answers, so a validation persona never encodes the
  answer it is asked for (as at test time, where the scored answers were never seen by CF);
* trains with the shared trainer (:mod:`persona_bench.harness.training.loop`) under a named recipe
  (``--recipe``; any single setting can be overridden), or reuses a finished training with
  identical settings (one training serves every persona kind and unseen-K run), or evaluates
  the untrained module (``--weights random``, the control of paper Table 4);
* scores the docs through lm-eval's Raw Q task with ``persona-bench-steered``, each doc carrying
  its persona vector (individual, cluster centroid or trait-group centroid, per ``--persona``);
* audits the trained module for membership leakage (:mod:`persona_bench.harness.training.audit`), once
  per module, into the run's record, with a warning when it leaks.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch

from ...tasks.prompts import PROMPTS, styled
from ..core.atomic import atomic_write_json
from .cost import training_estimate
from ..core.errors import ConfigError, warn
from ..core.options import option, role, with_roles
from ..method.base import Method
from ..method.context import RunContext
from ..runs.config import OMITTED_AT_DEFAULT
from ..runs.store import claim_or_wait, release
from ..scoring.adapters import LoraSettings, attach_lora, parse_targets
from ..scoring.lm import LetterScoringLM, SteeredLM
from ..scoring.steerer import PersonaMLP, Steerer
from .audit import AUDIT_FILE, audit_membership, describe_audit, leaks
from .loop import LOSSES, SCHEDULES, Checkpoint, Examples, TrainOptions, build_examples, seconds_per_example, train_steerer

VALIDATION_SHARE, MAX_VALIDATION = 0.1, 2000
OPERATIONAL = tuple(sorted(with_roles(TrainOptions, "operational")))  # how training runs, not what it computes
TRAINER_SETTINGS = tuple(f.name for f in fields(TrainOptions) if f.name not in ("seed", "loss", *OPERATIONAL))
# options whose default leaves a module's checkpoint key as it was before the option existed
KEYED_ONLY_WHEN_SET = {"loss": "letters", "standardise": True}


class LearnedSteering(Method):
    """Base of the steering families (see module docstring)."""

    kind = "steering"
    needs_model = True
    uses_persona = True
    quick_options = {"epochs": 1, "max_train_answers": 200}
    recipes: ClassVar[dict[str, dict]] = {"paper": {k: v for k, v in asdict(TrainOptions()).items() if k in TRAINER_SETTINGS}}
    default_recipe: ClassVar[str] = "paper"

    @dataclass(frozen=True)
    class Options:
        recipe: str = option("", "named preset of every training setting left unset (empty: the family's default)",
                             role="recipe", untrained=True)  # a recipe may set the initialisation
        max_train_answers: int = option(0, "answers trained on (0: every train answer; validation is extra)", role="budget")
        epochs: int | None = option(None, "passes over the train answers (an upper bound with early stopping)", role="budget")
        lr: float | None = option(None, "peak learning rate", role="recipe")
        weight_decay: float | None = option(None, "AdamW weight decay", role="recipe")
        batch_size: int | None = option(None, "answers per optimiser step", role="recipe")
        patience: int | None = option(None, "validations without improvement before stopping", role="recipe")
        warmup: float | None = option(None, "share of the steps warming the learning rate up", role="recipe")
        schedule: str | None = option(None, "learning-rate schedule after warm-up", role="recipe", choices=SCHEDULES)
        weights: str = option("trained", "random: the untrained control, the module as training starts (paper Table 4)",
                              choices=("trained", "random"))
        lora_rank: int = option(0, "rank of a LoRA adapter on the LM trained jointly (peft; 0: the LM stays frozen)")
        lora_lr: float | None = option(None, "peak learning rate of the LoRA adapter (set by the recipe)", role="recipe")
        lora_alpha: float = option(16.0, "LoRA alpha (the adapter's update is scaled by alpha / rank)")
        lora_dropout: float = option(0.0, "dropout on the LoRA adapter's input while training")
        lora_targets: str = option("", "modules the LoRA adapter adapts, e.g. q_proj,v_proj (empty: peft's default for the architecture)")
        loss: str = option("letters", "letters: cross-entropy among the option letters; response: the paper's Eq. 2, cross-entropy "
                                      "of the answer token over the whole vocabulary", choices=LOSSES)
        standardise: bool = option(True, "centre and scale persona vectors by the train people's before the MLP (false: the "
                                         "paper's raw CF vectors)")
        train_seed: int | None = option(None, "seed of the module's initialisation, the adapter's and the order it sees its answers "
                                              "in (not of the split, of which answers it trains on, nor of their option rotations; "
                                              "none: the split's --seed)",
                                        role="seed", untrained=True)
        checkpoint_minutes: float = option(5.0, "minutes between mid-epoch checkpoints (0: at epoch ends only)", role="operational")
        gradient_checkpointing: bool = option(False, "less memory for large models (same gradients, more compute)", role="operational")

    def __init_subclass__(cls, **kwargs) -> None:
        """A recipe is a partial Options: it may set only the options a run leaves unset (default None),
        and every setting the trainer needs (checked as the family is defined)."""
        super().__init_subclass__(**kwargs)
        fillable = {item.name for item in fields(cls.Options) if item.default is None and role(item) != "seed"}
        for name, recipe in cls.recipes.items():
            unknown = sorted(set(recipe) - fillable)
            if unknown:
                raise ConfigError(f"recipe {name!r} of {cls.__name__} sets {', '.join(unknown)}: not an option of {cls.__name__}.Options "
                                  "that a run leaves to its recipe (default None)")

    # ------------------------------------------------------------ what a family provides
    def build_steerer(self, lm: LetterScoringLM, persona_dim: int, settings: dict) -> Steerer:
        """An untrained steering module for ``lm`` and personas of ``persona_dim`` numbers."""
        raise NotImplementedError

    def prompt_task(self) -> str:
        """The lm-eval task whose prompt the module trains and scores on (Raw Q)."""
        return "opinionqa_persona_raw"

    def prompt_fields(self, context: RunContext, rows: pd.DataFrame, answered: pd.DataFrame) -> list[dict] | None:
        """Per row (respondent, question), what its prompt shows beside the question, drawn from the
        person's answers in ``answered`` (Raw Q: nothing)."""
        return None

    @classmethod
    def shared_prompt_tokens(cls, settings: dict):
        """For cost plans: a function from a prompt's token count to how many of its tokens one
        forward serves for every persona (none here: steering reaches every prompt token)."""
        return lambda tokens: 0

    # ------------------------------------------------------------ recipe
    @classmethod
    def check(cls, options: "LearnedSteering.Options") -> None:
        recipe = options.recipe or cls.default_recipe
        if recipe not in cls.recipes:
            raise ConfigError(f"--recipe {recipe!r}: {cls.name} knows {', '.join(sorted(cls.recipes))}")
        if options.max_train_answers < 0:
            raise ConfigError("--max-train-answers must be 0 (all) or more")
        if options.train_seed is not None and options.train_seed < 0:
            raise ConfigError(f"--train-seed {options.train_seed}: a seed is 0 or more")
        if options.lora_rank < 0:
            raise ConfigError(f"--lora-rank {options.lora_rank}: a LoRA rank is 1 or more (0: no adapter, the LM stays frozen)")
        if options.lora_rank:
            cls.lora_settings(options)
        else:  # an adapter's setting without an adapter would be silently ignored
            defaults = {f.name: f.default for f in fields(options)}
            unused = ["--" + name.replace("_", "-") for name in ("lora_targets", "lora_alpha", "lora_dropout", "lora_lr")
                      if getattr(options, name) != defaults[name]]
            if unused:
                raise ConfigError(f"{', '.join(unused)}: settings of a LoRA adapter, and --lora-rank is 0 (no adapter, the LM stays "
                                  "frozen); add --lora-rank R (lora_rank in a grid; 1 or more) to train one")
        TrainOptions(**{k: v for k, v in cls.resolve(options).items() if k in TRAINER_SETTINGS})

    @classmethod
    def resolve(cls, options: "LearnedSteering.Options") -> dict:
        """Every setting, with those left unset taken from the recipe."""
        recipe = options.recipe or cls.default_recipe
        preset = {"lora_lr": TrainOptions.lora_lr, **cls.recipes[recipe]}  # a recipe written before LoRA need not name its rate
        values = {f.name: getattr(options, f.name) for f in fields(options)}
        resolved = {k: (preset[k] if v is None and k in preset else v) for k, v in values.items()}
        missing = [k for k, v in resolved.items() if v is None and k != "train_seed"]  # no train seed: the split's
        if missing:
            raise ConfigError(f"recipe {recipe!r} of {cls.name} sets no {', '.join(missing)}")
        return {**resolved, "recipe": recipe}

    @staticmethod
    def lora_settings(options: "LearnedSteering.Options") -> LoraSettings | None:
        """The LoRA adapter the options ask for (None: rank 0, the frozen LM)."""
        if not options.lora_rank:
            return None
        return LoraSettings(options.lora_rank, options.lora_alpha, options.lora_dropout, parse_targets(options.lora_targets))

    def train_options(self, seed: int) -> TrainOptions:
        settings = self.settings
        return TrainOptions(**{k: settings[k] for k in (*TRAINER_SETTINGS, *OPERATIONAL)}, seed=seed, loss=settings["loss"])

    @property
    def settings(self) -> dict:
        return self.resolve(self.options)

    # ------------------------------------------------------------ prepare / score
    def checkpoint_key(self, context: RunContext) -> str:
        """Identity of a trained module: family, model, dtype, CF space and every setting that shapes it."""
        settings = {k: v for k, v in self.settings.items() if k not in ("weights", "train_seed", *OPERATIONAL)}
        if not settings["lora_rank"]:  # keys of the frozen LM's modules stay what they were before LoRA existed
            settings = {k: v for k, v in settings.items() if not k.startswith("lora_")}
        settings = {k: v for k, v in settings.items() if k not in KEYED_ONLY_WHEN_SET or v != KEYED_ONLY_WHEN_SET[k]}
        payload = [self.name, context.config.model, context.config.dtype, context.config.cf_solver, context.config.cf_dim, settings]
        if context.config.option_order != "given":  # trained on options shown in that order (keys from before stay valid)
            payload.append(context.config.option_order)
        for name in ("fold_in", "prompt_texts"):  # the validation people's personas; the prompt trained on
            if getattr(context.config, name) != OMITTED_AT_DEFAULT[name]:
                payload.append({name: getattr(context.config, name)})
        if self.training_seed(context) != context.seed:  # another draw of the training (a key from before keeps the split's)
            payload.append({"train_seed": self.training_seed(context)})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def training_seed(self, context: RunContext) -> int:
        """The seed of the module's initialisation, its adapter's and its training order: ``--train-seed``,
        else the split's."""
        return context.seed if self.options.train_seed is None else self.options.train_seed

    def checkpoint_folder(self, context: RunContext) -> Path:
        """Where the run's trained module is (shared by every run that trains it alike)."""
        return context.shared_dir / "steering" / f"{self.name}-{self.checkpoint_key(context)}-{context.config.model.replace('/', '_')}"

    def untrained_steerer(self, context: RunContext, train: Examples) -> Steerer:
        """The module as training starts from it (the untrained control's weights): seeded and initialised."""
        torch.manual_seed(self.training_seed(context))
        steerer = self.build_steerer(self.lm, context.personas.vectors.shape[1], self.settings)
        steerer.initialise(torch.tensor(context.personas.vectors, dtype=torch.float32), self.lm.model, sorted(set(train.prompts))[:64])
        if not self.settings["standardise"]:
            for module in steerer.modules():
                if isinstance(module, PersonaMLP):
                    module.take_raw_personas()
        return steerer

    def prepare(self, context: RunContext) -> None:
        self.lm = LetterScoringLM(**context.model_options)
        lora = self.lora_settings(self.options)
        self.adapter = attach_lora(self.lm.model, lora, self.training_seed(context)) if lora else None
        train, validation = (self.examples(context, answers, personas) for answers, personas in self.training_rows(context))
        steerer = self.untrained_steerer(context, train)
        self.record, self.membership = {"train_answers": 0, "validation_answers": 0, "epochs": 0}, None
        if self.options.weights == "random":
            self.steerer = steerer.to(self.lm.device).eval()
            return
        folder = self.checkpoint = self.checkpoint_folder(context)
        # once across processes: another process training (and auditing) the same module is waited for
        # (the ranks of one launch train together)
        done = lambda: (folder / "training.json").is_file() and (folder / AUDIT_FILE).is_file()  # noqa: E731
        mine = not context.world.distributed and claim_or_wait(folder, done, context.log)
        try:
            record = self.trained_or_loaded(context, steerer, train, validation, folder)
            if context.world.is_main:
                self.membership = self.audited(context, folder)
        finally:
            if mine:
                release(folder)
        self.record = {
            "train_answers": record["n_train"], "validation_answers": record["n_validation"], "epochs": len(record["history"]),
            "best_epoch": record["best_epoch"], "history": record["history"],
        }

    def membership_audit(self, context: RunContext) -> dict:
        """The membership audit (:mod:`persona_bench.harness.training.audit`) of this run's module against
        the people its training set holds (for the untrained control: the set it would train on)."""
        (train, train_personas), (validation, _) = self.training_rows(context)
        untrained = self.untrained_steerer(context, self.examples(context, train, train_personas)).to(self.lm.device).eval()
        return audit_membership(
            context, self.steerer, untrained, self.lm.model, self.lm.tokenizer.pad_token_id or 0, train, validation,
            lambda answers, personas: self.examples(context, answers, personas), loss=self.settings["loss"],
        )

    def audited(self, context: RunContext, folder: Path) -> dict | None:
        """The trained module's membership audit, made once per module and kept beside it; a
        warning when it finds a leak, or when it cannot be made (the run goes on without it)."""
        path = folder / AUDIT_FILE
        audit = json.loads(path.read_text()) if path.is_file() else None
        if audit is None or audit.get("objective", "letters") != self.settings["loss"]:  # none yet, or of another loss
            context.log(f"{self.name}: membership audit of the trained module")
            try:
                audit = self.membership_audit(context)
            except Exception as exc:  # an audit that fails must not fail the run it audits
                warn(f"no membership audit of {folder.name} ({type(exc).__name__}: {exc})")
                return None
            atomic_write_json(path, audit)
        if leaks(audit):
            warn(f"{describe_audit(audit)}: the trained module tells the people it was trained on from others; "
                 f"do not publish it ({folder})")
        return audit

    def trained_or_loaded(self, context: RunContext, steerer, train: Examples, validation: Examples, folder: Path) -> dict:
        """Train the steerer into ``folder``, or load it when it was trained there; the training record."""
        if (folder / "training.json").is_file():
            self.steerer = Checkpoint(folder, self.adapter).best_module(self.lm.model).to(self.lm.device).eval()
            record = json.loads((folder / "training.json").read_text())
        else:
            if self.lm.device.type == "cpu" and context.world.is_main:
                context.log(self.cost_estimate(steerer, train, validation))
            context.log(f"{self.name}: training on {len(train)} answers, validating on {len(validation)} held-out answers")
            self.steerer, record = train_steerer(
                steerer, self.lm.model, self.lm.tokenizer.pad_token_id or 0, train, validation,
                self.train_options(self.training_seed(context)), folder, log=context.log, world=context.world, adapter=self.adapter,
            )
        return record

    def cost_estimate(self, steerer: Steerer, train: Examples, validation: Examples) -> str:
        """What training will take here, from one timed training step on a few of its own examples
        (:mod:`persona_bench.harness.training.cost`), with a budget that fits a few minutes when it is longer."""
        seconds = seconds_per_example(steerer, self.lm.model, train, self.lm.tokenizer.pad_token_id or 0, self.settings["loss"],
                                      gradient_checkpointing=self.settings["gradient_checkpointing"])
        return training_estimate(self.name, len(train), len(validation), self.settings["epochs"], seconds)

    def examples(self, context: RunContext, answers: pd.DataFrame, personas: np.ndarray) -> Examples:
        """``answers`` tokenised as training and scoring see them, one persona vector each; a prompt
        that shows the person's answers shows train answers only, never a validation one."""
        answers = answers.reset_index(drop=True)
        fields = styled(self.prompt_fields(context, answers, self.drawn(context)[1]), len(answers), context.config.prompt_texts)
        return build_examples(answers, context.survey, personas, self.lm, context.config.option_order, context.seed,
                              PROMPTS[self.prompt_task()], fields)

    def training_rows(self, context: RunContext) -> tuple[tuple[pd.DataFrame, np.ndarray], tuple[pd.DataFrame, np.ndarray]]:
        """(train, validation) answers with their persona vectors, drawn as the module docstring says (once per run)."""
        return self.drawn(context)[0]

    def drawn(self, context: RunContext) -> tuple[tuple, pd.DataFrame]:
        """The run's :meth:`training_rows` and the answers a training prompt may show (the train answers
        less the validation ones), made once per run."""
        if getattr(self, "_drawn", (None,))[0] is not context:
            rows = self.drawn_rows(context)
            validation = rows[1][0][["respondent", "question"]]
            shown = context.train_answers().merge(validation, how="left", indicator=True)
            self._drawn = (context, rows, shown[shown["_merge"] == "left_only"].drop(columns="_merge"))
        return self._drawn[1:]

    def drawn_rows(self, context: RunContext) -> tuple[tuple[pd.DataFrame, np.ndarray], tuple[pd.DataFrame, np.ndarray]]:
        answers = context.train_answers()
        space = context.personas
        order = np.random.default_rng(context.seed).permutation(len(answers))
        budget = self.options.max_train_answers or len(answers)
        n_validation = max(1, min(MAX_VALIDATION, int(round(VALIDATION_SHARE * budget)), len(answers) // 10))
        validation, train = answers.iloc[order[:n_validation]], answers.iloc[order[n_validation : n_validation + budget]]
        train_personas = space.vectors[space.people.get_indexer(train["respondent"])]
        others = answers[answers["respondent"].isin(validation["respondent"])].drop(index=validation.index)
        people, folded = space.fold_in(others[["respondent", "question"]])
        validation = validation[validation["respondent"].isin(people)]
        validation_personas = folded[people.get_indexer(validation["respondent"])]
        return (train, train_personas), (validation, validation_personas)

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray | None:
        steered = SteeredLM(steerer=self.steerer, model=self.lm.model, tokenizer=self.lm.tokenizer)
        personas = context.persona_vectors(docs["respondent"]).astype(np.float32)
        fields = self.prompt_fields(context, docs, context.known_answers()) or [{}] * len(docs)
        return context.evaluate(self.prompt_task(), docs, steered, [{**f, "persona": p.tolist()} for f, p in zip(fields, personas)])

    def report(self) -> dict:
        settings = self.settings
        budget = {k: v for k, v in self.record.items() if k != "history"}
        audit = {"membership_audit": self.membership} if self.membership else {}
        return {"recipe": settings["recipe"], "settings": settings, "budget": budget, "training_history": self.record.get("history", []), **audit}
