"""Training a steering module: letter cross-entropy through a frozen LM (a nanoGPT-style loop).

Examples are (prompt tokens, the question's answer-letter tokens, the chosen option, a persona
vector). The prompt is exactly the one lm-eval scores (Raw Q, or a prompting method's style, +
"\\nAnswer:"); the loss is the
cross-entropy of the person's letter among the question's letters, read at the last prompt
position through the one steered forward. Only the steering module learns, and the LM's LoRA
adapter where one is attached (:mod:`persona_bench.harness.scoring.adapters`; the ``finetune``
family trains an adapter alone, behind a steering module that steers nothing).

* Optimiser: AdamW with a linear warmup and then constant or cosine learning rate
  (:class:`TrainOptions`); early stopping on the validation loss, the best epoch kept.
* Validation examples are given by the caller, who keeps them out of everything the training
  personas were fitted on (see :mod:`persona_bench.harness.training.learned`).
* Checkpoints: the module, the optimiser and the progress (epoch, step, running loss) every
  ``checkpoint_minutes`` of training and at every epoch end, from rank 0, atomically. A killed
  training resumes at its last checkpoint, mid-epoch included, and ends exactly where an
  uninterrupted one would (batches are a function of the seed and the epoch).
* Data parallel (torchrun / accelerate launch): DistributedDataParallel averages the gradients of
  the steering module and the adapter (:class:`Trainee`; the LM's frozen weights are left out of
  its synchronisation); each global batch is cut into
  one slice per rank and each rank's loss is scaled so that the averaged gradient is that of
  the global batch, whatever the number of ranks.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from ...tasks.prompts import LETTERS, raw_prompt, scored_prompt
from ..core.atomic import atomic_write_bytes, atomic_write_json
from ..core.distributed import World
from ..core.errors import ConfigError
from ..core.options import option
from ..scoring.adapters import ADAPTER_FOLDER, adapter_training, load_adapter_weights, save_adapter, trainable_parameters
from ..scoring.option_order import display_order, positions
from ..scoring.steerer import Steerer, load_steerer
from ..scoring.steering import checkpointed, token_batch, token_logprobs

SCHEDULES = ("constant", "cosine")
LOSSES = ("letters", "response")


def answer_loss(logprobs: torch.Tensor, targets: torch.Tensor, loss: str = "letters", reduction: str = "none") -> torch.Tensor:
    """The training objective from the LM's log-probabilities of each option's letter token (full
    vocabulary, ``-inf`` past a question's options): ``letters``, cross-entropy of the answer among
    the option letters (renormalised over them); ``response``, the paper's Eq. 2, cross-entropy of
    the response token over the whole vocabulary (``-log p(answer letter)``: probability the LM puts
    on other tokens counts against it)."""
    if loss == "response":
        return torch.nn.functional.nll_loss(logprobs, targets, reduction=reduction)
    return torch.nn.functional.cross_entropy(logprobs, targets, reduction=reduction)


@dataclass(frozen=True)
class TrainOptions:
    """How a steering module is trained (the paper: AdamW lr 1e-3, wd 1e-3, batch 16, 10 epochs,
    early stopping with patience 2, constant learning rate)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 1e-3
    batch_size: int = 16
    patience: int = 2
    warmup: float = 0.0  # share of all optimiser steps spent warming the learning rate up linearly
    schedule: str = "constant"  # constant | cosine (decay to zero after the warmup)
    lora_lr: float = 5e-4  # peak learning rate of a LoRA adapter on the LM, when one trains (same warmup and schedule)
    seed: int = 0
    loss: str = "letters"  # the objective (answer_loss); chosen by the method's options, not by a recipe
    checkpoint_minutes: float = option(5.0, "wall time between mid-epoch checkpoints (0: epoch ends only)", role="operational")
    gradient_checkpointing: bool = option(False, "recompute the LM's activations in the backward pass (less memory, ~1/3 more compute)",
                                          role="operational")

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 0:
            raise ConfigError("training needs epochs >= 1, batch_size >= 1 and patience >= 0")
        if self.lr <= 0 or self.lora_lr <= 0 or not 0 <= self.warmup < 1:
            raise ConfigError("training needs lr > 0, lora_lr > 0 and 0 <= warmup < 1")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r}: choose from {', '.join(SCHEDULES)}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss {self.loss!r}: choose from {', '.join(LOSSES)}")

    def lr_at(self, step: int, total: int) -> float:
        """The learning rate of optimiser step ``step`` (0-based) of ``total``."""
        warm = int(self.warmup * total)
        if step < warm:
            return self.lr * (step + 1) / warm
        if self.schedule == "constant":
            return self.lr
        return self.lr * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


@dataclass
class Examples:
    """Tokenised examples: prompt ids, option-letter token ids, target option, persona vector."""

    prompts: list[tuple[int, ...]]
    letter_ids: torch.Tensor  # (n, max options), -1 past a question's options
    targets: torch.Tensor
    personas: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, rows: np.ndarray | list[int]) -> "Examples":
        rows = np.asarray(rows, dtype=np.int64)
        return Examples([self.prompts[i] for i in rows], self.letter_ids[rows], self.targets[rows], self.personas[rows])


def rotations_of(respondents: pd.Series, questions: pd.Series, n_options: np.ndarray, seed: int) -> np.ndarray:
    """The rotation each answer is shown under in cyclic training: a hash of (seed, respondent,
    question), so an answer gets the same rotation in whatever frame it is built (training,
    validation, the membership audit)."""
    keys = [f"{seed}|{respondent}|{question}".encode() for respondent, question in zip(respondents, questions)]
    return np.array([int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") % int(n)
                     for key, n in zip(keys, n_options)], dtype=int)


def build_examples(answers: pd.DataFrame, survey, personas: np.ndarray, lm, option_order: str = "given", seed: int = 0,
                   prompt: Callable[[dict], str] = raw_prompt, fields: list[dict] | None = None) -> Examples:
    """Tokenise ``answers`` (respondent, question, option rows; ``personas`` row-aligned) with the
    scorer ``lm``'s own pair encoding, so training sees exactly the tokens scoring sees: the doc
    rendered by ``prompt`` (a :mod:`persona_bench.tasks.prompts` builder) with the row's ``fields``
    (traits, context answers) as lm-eval's task renders it, options shown in ``option_order``
    (cyclic: each answer under its own rotation, :func:`rotations_of`), letters by option."""
    width = max(len(q.options) for q in survey.questions.values())
    n_options = answers["question"].map(lambda key: len(survey.questions[key].options)).to_numpy()
    rotations = (rotations_of(answers["respondent"], answers["question"], n_options, seed) if option_order == "cyclic"
                 else np.zeros(len(answers), dtype=int))
    prompt_cache: dict[str, tuple[tuple[int, ...], list[int]]] = {}
    prompts, letter_rows = [], []
    for row, (key, n, rotation) in enumerate(zip(answers["question"], n_options, rotations)):
        order = display_order(int(n), option_order, int(rotation))
        question = survey.questions[key]
        doc = {**(fields[row] if fields else {}), "question": question.text, "options": [question.options[i] for i in order]}
        context = scored_prompt(prompt(doc))
        if context not in prompt_cache:
            encoded = [lm.encode_pair(context, f" {letter}") for letter in LETTERS[: len(question.options)]]
            if any(len(continuation) != 1 for _, continuation in encoded):
                raise ConfigError(f"model tokenizer splits an answer letter of {key} into several tokens")
            by_position = [continuation[0] for _, continuation in encoded]
            prompt_cache[context] = (tuple(encoded[0][0]), [by_position[position] for position in positions(order)])
        tokens, letters = prompt_cache[context]
        prompts.append(tokens)
        letter_rows.append(letters + [-1] * (width - len(letters)))
    return Examples(
        prompts,
        torch.tensor(letter_rows, dtype=torch.long).reshape(len(prompts), width),
        torch.tensor(np.ascontiguousarray(answers["option"].to_numpy()), dtype=torch.long),
        torch.tensor(np.ascontiguousarray(personas), dtype=torch.float32).reshape(len(prompts), -1),
    )


def letter_logprobs(steerer: torch.nn.Module, model: torch.nn.Module, batch: Examples, pad_id: int) -> torch.Tensor:
    """Log-probabilities of each example's option letters at its last prompt position (-inf past
    its options), the LM steered by ``steerer`` (a :class:`Steerer`, possibly DDP-wrapped)."""
    device = next(model.parameters()).device
    input_ids, attention_mask = token_batch(batch.prompts, pad_id, device)
    rows = torch.arange(len(batch), device=device)
    last = torch.tensor([len(p) - 1 for p in batch.prompts], device=device)
    logprobs, _ = token_logprobs(model, input_ids, attention_mask, steerer(batch.personas.to(device)), rows, last, batch.letter_ids.to(device))
    return logprobs


def seconds_per_example(steerer: Steerer, model: torch.nn.Module, examples: Examples, pad_id: int, loss: str = "letters",
                        rows: int = 8, gradient_checkpointing: bool = False) -> float:
    """Wall seconds one training example takes here (forward and backward through the LM, with
    gradient checkpointing as training will use it), timed on ``rows`` examples of about the median
    prompt length (training batches are length-bucketed, so little padding) after an untimed one-row
    warm-up; gradients are discarded."""
    by_length = np.argsort([len(p) for p in examples.prompts], kind="stable")
    middle = max(0, len(examples) // 2 - rows // 2)
    batch = examples.subset(by_length[middle : middle + rows])
    device = next(model.parameters()).device
    steerer.to(device)
    for timed in (batch.subset([0]), batch):  # the first pass allocates; the second is timed
        started = time.perf_counter()
        with checkpointed(model, gradient_checkpointing):
            answer_loss(letter_logprobs(steerer, model, timed, pad_id), timed.targets.to(device), loss).sum().backward()
    elapsed = time.perf_counter() - started
    steerer.zero_grad(set_to_none=True)
    model.zero_grad(set_to_none=True)
    return elapsed / len(batch)


@torch.no_grad()
def example_losses(
    steerer: Steerer, model: torch.nn.Module, examples: Examples, pad_id: int, batch_size: int = 32, rows: np.ndarray | None = None,
    loss: str = "letters",
) -> tuple[np.ndarray, np.ndarray]:
    """Per example of ``rows`` (default: all), in that order: the loss (:func:`answer_loss` ``loss``)
    and whether the top letter is the answer (batched by prompt length)."""
    rows = np.arange(len(examples)) if rows is None else np.asarray(rows, dtype=np.int64)
    order = rows[np.argsort([len(examples.prompts[i]) for i in rows], kind="stable")]
    losses, hits = np.zeros(len(examples)), np.zeros(len(examples), dtype=bool)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        logprobs = letter_logprobs(steerer, model, examples.subset(chunk), pad_id)
        targets = examples.targets[chunk].to(logprobs.device)
        losses[chunk] = answer_loss(logprobs, targets, loss).float().cpu().numpy()
        hits[chunk] = (logprobs.argmax(1) == targets).cpu().numpy()
    return losses[rows], hits[rows]


@torch.no_grad()
def evaluate(steerer: Steerer, model: torch.nn.Module, examples: Examples, pad_id: int, batch_size: int = 32, world: World | None = None,
             loss_kind: str = "letters") -> tuple[float, float]:
    """(mean loss, accuracy) on ``examples`` (each rank a share, summed over ranks; summed per batch,
    so the validation losses of earlier trainings are reproduced bit for bit); the loss is the
    training objective ``loss_kind`` (:func:`answer_loss`)."""
    world = world or World()
    order = np.argsort([len(p) for p in examples.prompts], kind="stable")[world.rank :: world.size]
    loss, hits = 0.0, 0
    for start in range(0, len(order), batch_size):
        batch = examples.subset(order[start : start + batch_size])
        logprobs = letter_logprobs(steerer, model, batch, pad_id)
        targets = batch.targets.to(logprobs.device)
        loss += answer_loss(logprobs, targets, loss_kind, reduction="sum").item()
        hits += int((logprobs.argmax(1) == targets).sum().item())
    totals = np.sum(world.all_gather((loss, hits)), axis=0)
    return float(totals[0] / max(len(examples), 1)), float(totals[1] / max(len(examples), 1))


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


def epoch_batches(examples: Examples, options: TrainOptions, epoch: int) -> list[np.ndarray]:
    """The global batches of ``epoch``: a function of the seed and the epoch only."""
    return length_bucketed_batches(examples, options.batch_size, np.random.default_rng(options.seed * 1000 + epoch))


class Checkpoint:
    """A training folder: ``last.json`` (the progress, naming the ``last-<n>/`` folder that holds
    the module and optimiser saved with it), ``best/`` and, once finished, ``training.json``.
    With a LoRA adapter on the LM (``adapter``: peft's model around it), each saved module has the
    adapter beside it (``adapter/``, peft's format).

    A checkpoint is written into a fresh ``last-<n>/`` and becomes current only when ``last.json``
    is replaced (atomically) to name it, so a kill at any moment leaves the previous checkpoint
    whole: progress never names a module saved at another step."""

    POINTER = "last.json"

    def __init__(self, folder: Path, adapter=None):
        self.folder, self.adapter = folder, adapter
        self.best = folder / "best"

    @property
    def finished(self) -> bool:
        return (self.folder / "training.json").is_file()

    def pointer(self) -> dict | None:
        """``{"folder": ..., "progress": ...}`` of the current checkpoint (an older layout's ``last/progress.json`` too)."""
        path = self.folder / self.POINTER
        if path.is_file():
            return json.loads(path.read_text())
        legacy = self.folder / "last" / "progress.json"
        return {"folder": "last", "progress": json.loads(legacy.read_text())} if legacy.is_file() else None

    def progress(self) -> dict | None:
        pointer = self.pointer()
        return pointer["progress"] if pointer else None

    def save_module(self, steerer: Steerer, target: Path) -> None:
        """The steering module (and the adapter, if any) into ``target``."""
        steerer.save(target)
        if self.adapter is not None:
            save_adapter(self.adapter, target / ADAPTER_FOLDER)

    def load_module(self, steerer: Steerer, source: Path, model: torch.nn.Module) -> None:
        """Weights saved by :meth:`save_module` into ``steerer`` (and the adapter of ``model``)."""
        steerer.load_state_dict(load_steerer(source).state_dict())
        if self.adapter is not None:
            load_adapter_weights(model, source / ADAPTER_FOLDER)

    def best_module(self, model: torch.nn.Module) -> Steerer:
        """The best epoch's steering module, its adapter (if any) loaded into ``model``."""
        if self.adapter is not None:
            load_adapter_weights(model, self.best / ADAPTER_FOLDER)
        return load_steerer(self.best)

    def save_last(self, steerer: Steerer, optimiser: torch.optim.Optimizer, progress: dict) -> None:
        """Module and optimiser into a fresh folder, then the pointer names it; older folders go."""
        target = self.folder / f"last-{time.time_ns()}"
        self.save_module(steerer, target)
        buffer = io.BytesIO()
        torch.save(optimiser.state_dict(), buffer)
        atomic_write_bytes(target / "optimizer.pt", buffer.getvalue())
        atomic_write_json(self.folder / self.POINTER, {"folder": target.name, "progress": progress})
        for old in self.folder.glob("last*"):
            if old.is_dir() and old != target:
                shutil.rmtree(old, ignore_errors=True)

    def restore_last(self, steerer: Steerer, optimiser: torch.optim.Optimizer, model: torch.nn.Module | None = None) -> None:
        last = self.folder / self.pointer()["folder"]
        self.load_module(steerer, last, model)
        optimiser.load_state_dict(torch.load(last / "optimizer.pt", weights_only=True))


class Trainee(torch.nn.Module):
    """What a training step runs: the steering module and the LM (whose LoRA adapter, if any, trains
    too), as one module so that DistributedDataParallel averages the gradients of both. The LM's
    frozen weights and its buffers are left out of DDP's synchronisation (they never change)."""

    def __init__(self, steerer: torch.nn.Module, model: torch.nn.Module):
        super().__init__()
        self.steerer, self.model = steerer, model

    def forward(self, batch: Examples, pad_id: int) -> torch.Tensor:
        return letter_logprobs(self.steerer, self.model, batch, pad_id)

    def distributed(self) -> torch.nn.parallel.DistributedDataParallel:
        """This module wrapped for data-parallel training."""
        frozen = [f"model.{name}" for name, parameter in self.model.named_parameters() if not parameter.requires_grad]
        frozen += [f"model.{name}" for name, _ in self.model.named_buffers()]
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self, frozen)
        return torch.nn.parallel.DistributedDataParallel(self)


def train_steerer(
    steerer: Steerer,
    model: torch.nn.Module,
    pad_id: int,
    train: Examples,
    validation: Examples,
    options: TrainOptions,
    folder: Path,
    log: Callable[[str], None] = print,
    world: World | None = None,
    adapter=None,
) -> tuple[Steerer, dict]:
    """Train ``steerer`` (checkpoints in ``folder``); return the best epoch's module and the training
    record. With ``adapter`` (peft's model around ``model``, whose LoRA weights then train jointly),
    the model ends with the best epoch's adapter weights."""
    world = world or World()
    device = next(model.parameters()).device
    steerer.to(device).train()
    checkpoint = Checkpoint(folder, adapter)
    groups = [{"params": list(steerer.parameters()), "peak": options.lr}, {"params": trainable_parameters(model), "peak": options.lora_lr}]
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise ConfigError("nothing to train: the steering module has no weights and the LM has no LoRA adapter")
    optimiser = torch.optim.AdamW(groups, lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train) / options.batch_size)
    total_steps = steps_per_epoch * options.epochs
    state = {"epoch": 1, "step": 0, "loss_sum": 0.0, "seconds": 0.0, "best_loss": float("inf"), "best_epoch": 0, "history": []}
    if (saved := checkpoint.progress()) is not None:
        state = saved
        checkpoint.restore_last(steerer, optimiser, model)
        log(f"training: resuming at epoch {state['epoch']}, step {state['step']} of {steps_per_epoch}")
    trainee = Trainee(steerer, model)
    trainable = trainee.distributed() if world.distributed else trainee
    last_save = time.monotonic()
    while state["epoch"] <= options.epochs and not stopped_early(state, options):
        epoch, started = state["epoch"], time.monotonic() - state["seconds"]
        batches = epoch_batches(train, options, epoch)
        steerer.train()
        adapter_training(model, True)
        for rows in tqdm(batches[state["step"] :], desc=f"epoch {epoch}", unit="step", leave=False, disable=None if world.is_main else True):
            share = rows[world.rank :: world.size]
            for group in optimiser.param_groups:
                scale = group.get("peak", options.lr) / options.lr  # the adapter's own peak; 1.0 for the steering module
                group["lr"] = options.lr_at((epoch - 1) * steps_per_epoch + state["step"], total_steps) * scale
            batch = train.subset(share)
            with checkpointed(model, options.gradient_checkpointing):
                losses = answer_loss(trainable(batch, pad_id), batch.targets.to(device), options.loss)
                (losses.sum() * world.size / len(rows)).backward()
            optimiser.step()
            optimiser.zero_grad(set_to_none=True)
            state["loss_sum"] += float(np.sum(world.all_gather(losses.sum().item())))
            state["step"] += 1
            state["seconds"] = time.monotonic() - started
            if options.checkpoint_minutes and time.monotonic() - last_save > 60 * options.checkpoint_minutes and state["step"] < len(batches):
                if world.is_main:
                    checkpoint.save_last(steerer, optimiser, state)
                last_save = time.monotonic()
        steerer.eval()
        adapter_training(model, False)
        val_loss, val_accuracy = evaluate(steerer, model, validation, pad_id, 2 * options.batch_size, world, options.loss)
        record = {
            "epoch": epoch, "train_loss": state["loss_sum"] / len(train), "val_loss": val_loss, "val_accuracy": val_accuracy,
            "seconds": round(time.monotonic() - started, 1),
        }
        state["history"].append(record)
        log(f"training: epoch {epoch} train loss {record['train_loss']:.4f} val loss {val_loss:.4f} val acc {val_accuracy:.3f} ({record['seconds']:.0f} s)")
        if val_loss < state["best_loss"]:
            state.update(best_loss=val_loss, best_epoch=epoch)
            if world.is_main:
                checkpoint.save_module(steerer, checkpoint.best)
        state.update(epoch=epoch + 1, step=0, loss_sum=0.0, seconds=0.0)
        if world.is_main:
            checkpoint.save_last(steerer, optimiser, state)
        last_save = time.monotonic()
        world.barrier()
    record = {"options": asdict(options), "n_train": len(train), "n_validation": len(validation), **state}
    if world.is_main:
        atomic_write_json(folder / "training.json", record)
    world.barrier()
    return checkpoint.best_module(model).to(device).eval(), record


def stopped_early(state: dict, options: TrainOptions) -> bool:
    """Whether the validation loss has not improved for more than ``patience`` epochs."""
    return state["best_epoch"] > 0 and state["epoch"] - 1 - state["best_epoch"] >= options.patience
