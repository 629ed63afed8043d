"""Membership audit of a trained steerer: can its losses tell the people it was trained on from
people it never saw? If so, a published module leaks who took part in its training data.

Two attacks, each an AUC (the chance that a random member scores as "more member-like" than a
random non-member; ties count half) with a 95% bootstrap CI over people, read beside 0.5 (no
leak):

* ``loss``: the loss-threshold attack (Yeom et al. 2018): a person's mean loss under the trained
  steerer, by the objective it trained on (the letters' cross-entropy, or the response token's
  under ``--loss response``); lower means member.
* ``calibrated``: the difficulty-calibrated loss (Watson et al. 2022): the same minus the
  person's mean loss under the untrained control (the same module, initialised alike, never
  trained), which removes how hard the person's answers are for the LM and is the stronger attack.

Members are people with answers in the training set (at most ``max_people``, drawn at random),
each scored on the answers trained on. Non-members are train people none of whose answers were
trained or validated on, personas from the same CF fit (so the only difference is the steerer's
training); where the budget used every train person, the eval people, personas folded in from
their revealed answers. Each non-member is scored on as many of their answers as a random member
has. All draws take the run's seed.

Limits: training draws answers uniformly, so members lean toward people with many answers (on a
survey of several waves, toward the larger waves' questions), and with the eval-people fallback
non-members' personas are folded in rather than fitted; a module that merely generalises better
on those questions can then score above 0.5 without memorising anyone. The untrained control's
own audit (``persona-bench audit membership`` on the control run) is the null to read beside it.
"""
from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Callable

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # the leaderboard formats audits without loading torch
    from ..method.context import RunContext
    from ..scoring.steerer import Steerer
    from .loop import Examples

MAX_AUDIT_PEOPLE = 100
MIN_NON_MEMBERS = 20
BOOTSTRAP_ROUNDS = 1000
AUDIT_FILE = "membership.json"


def auc_with_ci(member_scores: np.ndarray, outsider_scores: np.ndarray, seed: int, rounds: int = BOOTSTRAP_ROUNDS) -> dict:
    """AUC of ``score`` for telling members (higher) from outsiders, with a 95% bootstrap CI
    (people resampled within each group)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.ones(len(member_scores)), np.zeros(len(outsider_scores))]
    auc = roc_auc_score(labels, np.r_[member_scores, outsider_scores])
    rng = np.random.default_rng(seed)
    draws = [
        roc_auc_score(labels, np.r_[rng.choice(member_scores, len(member_scores)), rng.choice(outsider_scores, len(outsider_scores))])
        for _ in range(rounds)
    ]
    low, high = np.percentile(draws, [2.5, 97.5])
    return {"auc": round(float(auc), 4), "ci95": [round(float(low), 4), round(float(high), 4)]}


def leaks(audit: dict) -> bool:
    """Whether either attack's CI lies above 0.5."""
    return any(audit[attack]["ci95"][0] > 0.5 for attack in ("loss", "calibrated"))


def describe_audit(audit: dict) -> str:
    """``membership AUC 0.51 [0.43, 0.59] (loss), 0.50 [0.42, 0.58] (calibrated)``."""
    parts = [f"{audit[a]['auc']:.2f} [{audit[a]['ci95'][0]:.2f}, {audit[a]['ci95'][1]:.2f}] ({a})" for a in ("loss", "calibrated")]
    return "membership AUC " + ", ".join(parts)


def audit_membership(
    context: RunContext, trained: Steerer, untrained: Steerer, model, pad_id: int,
    train: pd.DataFrame, validation: pd.DataFrame, examples: Callable[[pd.DataFrame, np.ndarray], Examples],
    max_people: int = MAX_AUDIT_PEOPLE, loss: str = "letters",
) -> dict:
    """The audit of the module docstring. ``train`` and ``validation`` are the answers (respondent,
    question, option rows) the steerer was trained and validated on; ``examples(answers,
    personas)`` tokenises answers as training did; ``loss`` is the objective it was trained on
    (:func:`~persona_bench.harness.training.loop.answer_loss`), the loss the attacks read."""
    from ..personas.space import answer_values
    from ..scoring.adapters import adapters_off
    from .loop import example_losses

    rng = np.random.default_rng(context.seed)
    space = context.personas
    members = np.sort(rng.choice(train["respondent"].unique(), min(max_people, train["respondent"].nunique()), replace=False))
    member_answers = train[train["respondent"].isin(members)]
    counts = member_answers.groupby("respondent").size().to_numpy()

    pool = context.train_answers()
    untouched = np.setdiff1d(pool["respondent"].unique(), np.r_[train["respondent"].unique(), validation["respondent"].unique()])
    if len(untouched) >= MIN_NON_MEMBERS:
        source, candidates = "train people not trained on", pool[pool["respondent"].isin(untouched)]
        people, vectors = space.people, space.vectors
    else:
        source, candidates = "eval people (personas folded in)", context._answers_of(context.split.fold_in_answers(None))
        whole = replace(space, values=answer_values(context._survey))  # the audit's own: every fold-in answer of the eval people
        people, vectors = whole.fold_in(candidates[["respondent", "question"]])
        candidates = candidates[candidates["respondent"].isin(people)]
    chosen = np.sort(rng.choice(candidates["respondent"].unique(), min(len(members), candidates["respondent"].nunique()), replace=False))
    outsider_answers = pd.concat([
        group.iloc[np.sort(rng.choice(len(group), min(len(group), int(rng.choice(counts))), replace=False))]
        for _, group in candidates[candidates["respondent"].isin(chosen)].groupby("respondent", sort=True)
    ])

    scored = pd.concat([member_answers, outsider_answers], ignore_index=True)
    member_rows = np.arange(len(scored)) < len(member_answers)
    personas = np.where(
        member_rows[:, None],
        space.vectors[np.maximum(space.people.get_indexer(scored["respondent"]), 0)],
        vectors[np.maximum(people.get_indexer(scored["respondent"]), 0)],
    )
    batch = examples(scored, personas)
    losses = {}
    for name, steerer in (("trained", trained), ("untrained", untrained)):
        with adapters_off(model, off=name == "untrained"):  # a LoRA adapter starts at zero: untrained, the LM alone
            losses[name] = example_losses(steerer, model, batch, pad_id, loss=loss)[0]
    per_person = pd.DataFrame({"respondent": scored["respondent"], "member": member_rows, **losses}).groupby("respondent").mean()
    is_member = per_person["member"].to_numpy(dtype=bool)
    scores = {"loss": -per_person["trained"].to_numpy(), "calibrated": (per_person["untrained"] - per_person["trained"]).to_numpy()}
    return {
        "members": int(is_member.sum()), "non_members": int((~is_member).sum()), "non_member_source": source,
        "answers": len(scored), "objective": loss,
        **{attack: auc_with_ci(score[is_member], score[~is_member], context.seed) for attack, score in scores.items()},
    }
