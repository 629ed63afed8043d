"""Training the SPM: cross-entropy on the person's answer letter, LM frozen (nanoGPT-style loop).

Examples are the train people's train answers only, each with that person's *individual*
CF vector (the paper trains on individuals; cluster and demographic personas are used only at
evaluation). The prompt is exactly the one lm-eval scores (``raw_prompt`` + "\\nAnswer:"), and
the loss is the cross-entropy of the answer letter among the question's option letters, read
at the last prompt position. AdamW (lr 1e-3, weight decay 1e-3), up to 10 epochs, early
stopping on a held-out slice of the train answers. After every epoch the SPM, the optimiser and
the progress are checkpointed (safetensors + ``torch.load(weights_only=True)``), so a killed
training resumes from its last finished epoch.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ...harness.atomic import atomic_write_json
from ...harness.errors import ConfigError
from ...tasks.prompts import ANSWER_PREFIX, LETTERS, raw_prompt
from .model import SoftPromptModel


@dataclass(frozen=True)
class TrainOptions:
    """Optimisation settings (paper: AdamW lr 1e-3, wd 1e-3, 10 epochs, early stopping)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 16
    patience: int = 2
    val_share: float = 0.1
    max_train_answers: int = 0  # 0 = all train answers
    seed: int = 0


@dataclass
class Examples:
    """Tokenised training examples: prompt ids, option-letter token ids, target, persona."""

    prompts: list[tuple[int, ...]]
    letter_ids: torch.Tensor  # (n, max options), -1 past a question's options
    targets: torch.Tensor
    personas: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: np.ndarray) -> "Examples":
        return Examples([self.prompts[i] for i in rows], self.letter_ids[rows], self.targets[rows], self.personas[rows])


def build_examples(answers: pd.DataFrame, survey, personas: np.ndarray, lm) -> Examples:
    """Tokenise ``answers`` (respondent, question, option rows; ``personas`` row-aligned)."""
    width = max(len(q.options) for q in survey.questions.values())
    prompt_cache: dict[str, tuple[tuple[int, ...], list[int]]] = {}
    prompts, letter_rows = [], []
    for key in answers["question"]:
        if key not in prompt_cache:
            question = survey.questions[key]
            context = raw_prompt({"question": question.text, "options": list(question.options)}) + "\n" + ANSWER_PREFIX
            encoded = [lm._encode_pair(context, f" {letter}") for letter in LETTERS[: len(question.options)]]
            if any(len(continuation) != 1 for _, continuation in encoded):
                raise ConfigError(f"model tokenizer splits an answer letter of {key} into several tokens")
            prompt_cache[key] = (tuple(encoded[0][0]), [continuation[0] for _, continuation in encoded])
        prompt, letters = prompt_cache[key]
        prompts.append(prompt)
        letter_rows.append(letters + [-1] * (width - len(letters)))
    return Examples(
        prompts,
        torch.tensor(letter_rows, dtype=torch.long),
        torch.tensor(answers["option"].to_numpy(), dtype=torch.long),
        torch.tensor(personas, dtype=torch.float32),
    )


def letter_logits(spm: SoftPromptModel, lm, batch: Examples) -> torch.Tensor:
    """Logits of each doc's option letters at the last prompt position (-inf past its options)."""
    device = lm.device
    width = max(len(p) for p in batch.prompts)
    input_ids = torch.full((len(batch), width), lm.tokenizer.pad_token_id or 0, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, prompt in enumerate(batch.prompts):
        input_ids[i, : len(prompt)] = torch.tensor(prompt)
        attention_mask[i, : len(prompt)] = 1
    inputs, offset = spm.steer(lm.body, batch.personas.to(device), input_ids.to(device), attention_mask.to(device))
    hidden = lm.body(**inputs, use_cache=False).last_hidden_state[:, offset:]
    last = torch.tensor([len(p) - 1 for p in batch.prompts], device=device)
    logits = lm.head(hidden[torch.arange(len(batch), device=device), last]).float()
    letters = batch.letter_ids.to(device)
    picked = logits.gather(1, letters.clamp(min=0))
    return picked.masked_fill(letters < 0, float("-inf"))


@torch.no_grad()
def evaluate(spm: SoftPromptModel, lm, examples: Examples, batch_size: int) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) on ``examples``."""
    losses, hits = [], []
    order = np.argsort([len(p) for p in examples.prompts], kind="stable")
    for start in range(0, len(examples), batch_size):
        batch = examples.subset(order[start : start + batch_size])
        logits = letter_logits(spm, lm, batch)
        targets = batch.targets.to(logits.device)
        losses.append(torch.nn.functional.cross_entropy(logits, targets, reduction="sum").item())
        hits.append((logits.argmax(1) == targets).sum().item())
    return sum(losses) / len(examples), sum(hits) / len(examples)


def length_bucketed_batches(examples: Examples, batch_size: int, rng: np.random.Generator, bucket: int = 50) -> list[np.ndarray]:
    """Shuffled batches of similar prompt length: shuffle, sort within buckets of ``bucket``
    batches, cut, shuffle the batch order (less padding, still random)."""
    order = rng.permutation(len(examples))
    lengths = np.array([len(examples.prompts[i]) for i in order])
    batches = []
    for start in range(0, len(order), bucket * batch_size):
        chunk = order[start : start + bucket * batch_size]
        chunk = chunk[np.argsort(lengths[start : start + bucket * batch_size], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def train_spm(
    spm: SoftPromptModel, lm, examples: Examples, options: TrainOptions, folder: Path, log: Callable[[str], None] = print
) -> SoftPromptModel:
    """Train ``spm`` on ``examples`` (checkpoints in ``folder``); return the best epoch's SPM."""
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(examples))
    if options.max_train_answers:
        order = order[: options.max_train_answers]
    n_val = max(1, int(round(options.val_share * len(order))))
    validation, train = examples.subset(order[:n_val]), examples.subset(order[n_val:])
    spm.to(lm.device).train()
    optimiser = torch.optim.AdamW(spm.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    state = {"epoch": 0, "best_loss": float("inf"), "best_epoch": 0, "history": []}
    if (folder / "last" / "progress.json").is_file():
        state = json.loads((folder / "last" / "progress.json").read_text())
        spm.load_state_dict(SoftPromptModel.load(folder / "last").state_dict())
        optimiser.load_state_dict(torch.load(folder / "last" / "optimizer.pt", weights_only=True))
        log(f"spm: resuming after epoch {state['epoch']}")
    for epoch in range(state["epoch"] + 1, options.epochs + 1):
        if epoch - state["best_epoch"] > options.patience and state["best_epoch"] > 0:
            break
        spm.train()
        batches = length_bucketed_batches(train, options.batch_size, np.random.default_rng(options.seed * 1000 + epoch))
        running = 0.0
        for rows in tqdm(batches, desc=f"spm epoch {epoch}", unit="step", leave=False, disable=None):
            batch = train.subset(rows)
            loss = torch.nn.functional.cross_entropy(letter_logits(spm, lm, batch), batch.targets.to(lm.device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            running += loss.item()
        spm.eval()
        val_loss, val_accuracy = evaluate(spm, lm, validation, options.batch_size * 2)
        record = {"epoch": epoch, "train_loss": running / max(len(batches), 1), "val_loss": val_loss, "val_accuracy": val_accuracy}
        state["history"].append(record)
        log(f"spm: epoch {epoch} train loss {record['train_loss']:.4f} val loss {val_loss:.4f} val acc {val_accuracy:.3f}")
        if val_loss < state["best_loss"]:
            state.update(best_loss=val_loss, best_epoch=epoch)
            spm.save(folder / "best")
        state["epoch"] = epoch
        spm.save(folder / "last")
        torch.save(optimiser.state_dict(), folder / "last" / "optimizer.pt")
        atomic_write_json(folder / "last" / "progress.json", state)
    best = SoftPromptModel.load(folder / "best").to(lm.device).eval()
    atomic_write_json(folder / "training.json", {"options": asdict(options), "n_train": len(train), "n_val": len(validation), **state})
    return best
