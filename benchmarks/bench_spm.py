"""Benchmark the soft-prompting model with SmolLM2-135M: training speed and steered scoring speed.

Prints, for prefix-tuning and prompt-tuning (1 virtual token, batch 16, length-bucketed):
training steps/second and examples/second over ``--steps`` steps (after one warm-up step), against
the ceiling (the frozen LM's forward and backward on the same batches, nothing else), and
steered docs/second when every doc has its own persona (individual personas: no two rows share
a forward) through the ``persona-bench-spm`` lm-eval model, beside the same docs unsteered.
Uses W26 from ../shared/data when present, else the demo survey. Run from the repository root:

    python benchmarks/bench_spm.py [--steps 20] [--docs 400]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from tabulate import tabulate  # noqa: E402

from persona_bench.harness.scoring.lm import LetterScoringLM, SteeredLM  # noqa: E402
from persona_bench.harness.data.loaders import load_survey  # noqa: E402
from persona_bench.harness.scoring.steering import body_of, token_batch  # noqa: E402
from persona_bench.harness.training.loop import build_examples, length_bucketed_batches, letter_logprobs  # noqa: E402
from persona_bench.methods.spm.model import SoftPromptModel  # noqa: E402
from persona_bench.tasks.prompts import ANSWER_PREFIX, LETTERS, raw_prompt  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "opinionqa"
DIM = 17


def training_speed(lm, spm, examples, steps: int, batch_size: int = 16, parameters: list | None = None) -> tuple[float, float]:
    """(steps/s, examples/s) of AdamW steps on length-bucketed batches (``parameters``: what the
    optimiser trains, by default the steering module's)."""
    optimiser = torch.optim.AdamW(parameters or list(spm.parameters()), lr=1e-3, weight_decay=1e-3)
    batches = length_bucketed_batches(examples, batch_size, np.random.default_rng(0))[: steps + 1]
    done = 0
    for number, rows in enumerate(batches):
        if number == 1:
            started, done = time.perf_counter(), 0
        batch = examples.subset(rows)
        loss = torch.nn.functional.cross_entropy(letter_logprobs(spm, lm.model, batch, lm.tokenizer.pad_token_id), batch.targets)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        done += len(rows)
    seconds = time.perf_counter() - started
    return steps / seconds, done / seconds


def ceiling_speed(lm, examples, steps: int, batch_size: int = 16) -> float:
    """Examples/s of the least any prefix training must do per step: the frozen LM's forward on the
    same batches with gradients flowing back to the input embeddings, the head at the last real
    position only, and the backward pass (no steerer, no optimiser)."""
    body, head = body_of(lm.model), lm.model.get_output_embeddings()
    batches = length_bucketed_batches(examples, batch_size, np.random.default_rng(0))[: steps + 1]
    done = 0
    for number, rows in enumerate(batches):
        if number == 1:
            started, done = time.perf_counter(), 0
        ids, mask = token_batch([examples.prompts[r] for r in rows], lm.tokenizer.pad_token_id, "cpu")
        embeds = body.get_input_embeddings()(ids).detach().requires_grad_(True)
        hidden = body(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        last = hidden[torch.arange(len(rows)), mask.sum(1) - 1]
        torch.log_softmax(head(last).float(), -1)[:, 0].mean().backward()
        done += len(rows)
    return done / (time.perf_counter() - started)


def scoring_speed(lm, requests: list[Instance], n_docs: int) -> float:
    """Docs/second of loglikelihood over ``requests`` (all letters of each doc)."""
    started = time.perf_counter()
    lm.loglikelihood(requests, disable_tqdm=True)
    return n_docs / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--docs", type=int, default=400)
    args = parser.parse_args()
    survey = load_survey(f"opinionqa:{SHARED}", ["W26"]) if SHARED.is_dir() else load_survey("demo")
    answers = survey.responses.sample(max(args.docs, 17 * (args.steps + 1)), random_state=0).reset_index(drop=True)
    personas = np.random.default_rng(0).normal(size=(len(answers), DIM)).astype(np.float32)
    lm = LetterScoringLM(pretrained="smollm2-135m", device="cpu", score_cache=None)
    examples = build_examples(answers, survey, personas, lm)
    requests = []
    for i, row in answers.head(args.docs).iterrows():
        question = survey.questions[row["question"]]
        context = raw_prompt({"question": question.text, "options": list(question.options)}) + "\n" + ANSWER_PREFIX
        requests += [Instance("loglikelihood", {"persona": personas[i].tolist()}, (context, f" {letter}"), 0)
                     for letter in LETTERS[: len(question.options)]]
    ceiling = ceiling_speed(lm, examples, args.steps)
    rows = [["unsteered (same docs)", "", "", "", f"{scoring_speed(lm, requests, args.docs):.1f}"],
            ["ceiling: LM forward + backward to the inputs", "", f"{ceiling:.1f}", "100%", ""]]
    for mode in ("prefix", "prompt"):
        torch.manual_seed(0)
        spm = SoftPromptModel.for_model(lm.model, DIM, mode=mode)
        steps_per_second, examples_per_second = training_speed(lm, spm, examples, args.steps)
        steered = SteeredLM(steerer=spm.eval(), model=lm.model, tokenizer=lm.tokenizer, score_cache=None)
        rows.append([f"spm {mode}", f"{steps_per_second:.2f}", f"{examples_per_second:.1f}", f"{100 * examples_per_second / ceiling:.0f}%",
                     f"{scoring_speed(steered, requests, args.docs):.1f}"])
    print(f"SmolLM2-135M, {survey.name}, CPU threads {torch.get_num_threads()}, batch 16, {args.steps} timed steps, {args.docs} docs")
    print(tabulate(rows, headers=["model", "train steps/s", "train examples/s", "of ceiling", "scoring docs/s"], tablefmt="github"))


if __name__ == "__main__":
    main()
