"""``spm``: steer a frozen LM with a soft-prompting model fed the run's persona vectors.

``prepare`` trains the SPM on the train split (individual personas only) or loads it: the
trained SPM is shared by every run on the same data, split, CF space, model and SPM options
(so cluster, demographic and unseen-user runs evaluate the same SPM). ``--spm-weights random``
evaluates an untrained, seeded SPM (paper Table 4). Scoring goes through lm-eval's
``opinionqa_persona_raw`` task with the ``persona-bench-spm`` model; each doc carries its
persona vector (individual, cluster centroid or demographic centroid, per ``--persona``).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from ...harness.errors import ConfigError
from ...harness.lm import LetterScoringLM
from ...harness.method import Method, register_method
from ...harness.runner import RunContext
from .lm import SteeredLM
from .model import SoftPromptModel, SPMConfig, SPMShape
from .train import TrainOptions, build_examples, train_spm


@register_method
class SoftPromptSteering(Method):
    """The paper's soft-prompting model (prefix- or prompt-tuning)."""

    name = "spm"
    description = "soft-prompting model: persona vector -> MLP -> virtual tokens for the frozen LM"
    needs_model = True
    uses_persona = True
    quick_options = {"epochs": 1, "max_train_answers": 300, "virtual_tokens": 4}

    @dataclass(frozen=True)
    class Options:
        mode: str = "prefix"  # prefix (prefix-tuning) | prompt (prompt-tuning)
        virtual_tokens: int = 1
        hidden: int = 32
        epochs: int = 10
        lr: float = 1e-3
        weight_decay: float = 1e-3
        batch_size: int = 16
        patience: int = 2
        max_train_answers: int = 0  # 0 = all of the train split's train answers
        spm_weights: str = "trained"  # trained | random (untrained control, paper Table 4)

    def train_options(self, seed: int) -> TrainOptions:
        o = self.options
        return TrainOptions(o.epochs, o.lr, o.weight_decay, o.batch_size, o.patience, 0.1, o.max_train_answers, seed)

    def checkpoint_key(self, context: RunContext) -> str:
        """Identity of a trained SPM: model, dtype, CF space and every training option."""
        payload = [context.config.model, context.config.dtype, context.config.cf_solver, context.config.cf_dim, asdict(self.options)]
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:12]

    def prepare(self, context: RunContext) -> None:
        o = self.options
        if o.spm_weights not in ("trained", "random"):
            raise ConfigError(f"--spm-weights {o.spm_weights!r}: choose trained or random")
        if o.epochs < 1:
            raise ConfigError("--epochs must be at least 1")
        self.lm = LetterScoringLM(pretrained=context.config.model, device=context.device, dtype=context.config.dtype)
        space = context.personas
        vectors = torch.tensor(space.vectors, dtype=torch.float32)
        config = SPMConfig(vectors.shape[1], SPMShape.probe(self.lm.model), o.mode, o.virtual_tokens, o.hidden)
        torch.manual_seed(context.seed)
        spm = SoftPromptModel(config, vectors.mean(0), vectors.std(0) + 1e-6)
        if o.spm_weights == "random":
            self.spm = spm.to(self.lm.device).eval()
            return
        folder = context.shared_dir / "spm" / f"{self.checkpoint_key(context)}-{context.config.model.replace('/', '_')}"
        self.checkpoint = folder
        if (folder / "training.json").is_file():
            self.spm = SoftPromptModel.load(folder / "best").to(self.lm.device).eval()
            return
        answers = context.train_answers()
        personas = space.vectors[space.people.get_indexer(answers["respondent"])]
        examples = build_examples(answers, context.survey, personas, self.lm)
        self.spm = train_spm(spm, self.lm, examples, self.train_options(context.seed), folder, log=context.log)

    def score(self, docs: pd.DataFrame, context: RunContext) -> np.ndarray:
        steered = SteeredLM(spm=self.spm, model=self.lm.model, tokenizer=self.lm.tokenizer)
        personas = context.persona_vectors(docs["respondent"]).astype(np.float32)
        return context.evaluate("opinionqa_persona_raw", docs, steered, [{"persona": p.tolist()} for p in personas])
