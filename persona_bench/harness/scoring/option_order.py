"""The order a question's options are shown in: a run setting that tells a persona from a letter prior.

``given`` shows the options as the survey lists them; ``reversed`` last to first; ``cyclic`` scores
each doc once under every rotation of its options (letters re-assigned) and averages the answer
distributions, mapped back to the options: the standard debiasing of order and label effects
(Dominguez-Olmedo et al. 2023). A doc's ``order`` is the tuple of option indices shown at
positions A, B, C, ...; whatever renders a question for a doc (the lm-eval records, the trainer's
examples) shows ``options[order[0]]`` as A and asks for the letter of option ``o`` at position
``order.index(o)``, so every score stays indexed by option: a method never maps anything back, and
one that answers by option (majority, cf) gives the same scores under every order by construction.
Only the question scored is reordered; the earlier answers a context prompt shows keep the given order.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..metrics.groups import option_distributions

OPTION_ORDERS = ("given", "reversed", "cyclic")
ROTATION_MARK = "#"  # a rotated copy's doc id: <doc_id>#<rotation>


def display_order(n_options: int, option_order: str, rotation: int = 0) -> tuple[int, ...]:
    """The option index shown at each position (rotation: cyclic's shift)."""
    if option_order == "reversed":
        return tuple(range(n_options - 1, -1, -1))
    if option_order == "cyclic":
        return tuple((position + rotation) % n_options for position in range(n_options))
    return tuple(range(n_options))


def positions(order: tuple[int, ...]) -> list[int]:
    """The position (0: A) each option is shown at."""
    shown = [0] * len(order)
    for position, index in enumerate(order):
        shown[index] = position
    return shown


def ordered_docs(docs: pd.DataFrame, option_order: str) -> pd.DataFrame:
    """``docs`` with an ``order`` column; under ``cyclic`` one copy per rotation of each doc (doc id
    ``<doc_id>#<r>``, ``source``: the original row), rotations of a doc next to each other."""
    n_options = docs["n_options"].to_numpy()
    if option_order != "cyclic":
        return docs.assign(order=[display_order(n, option_order) for n in n_options], source=np.arange(len(docs)))
    source = np.repeat(np.arange(len(docs)), n_options)
    rotation = np.concatenate([np.arange(n) for n in n_options]) if len(docs) else np.zeros(0, dtype=int)
    copies = docs.iloc[source].reset_index(drop=True)
    return copies.assign(doc_id=copies["doc_id"] + ROTATION_MARK + pd.Series(rotation).astype(str),
                         order=[display_order(n, "cyclic", r) for n, r in zip(n_options[source], rotation)], source=source)


def merged_scores(ordered: pd.DataFrame, scores: np.ndarray, scores_are: str, n_docs: int) -> np.ndarray:
    """One row of scores per original doc: a doc whose copies all scored alike keeps those scores (a
    method that answers by option is unaffected, bit for bit); else the mean over its copies of the
    counts (counts) or of the answer distributions, as log-probabilities (logits); ``-inf`` past its
    last option."""
    source = ordered["source"].to_numpy()
    if len(source) == n_docs:
        return scores
    first = scores[np.searchsorted(source, np.arange(n_docs))]
    alike = np.bincount(source, weights=~(scores == first[source]).all(axis=1), minlength=n_docs) == 0
    copies = np.bincount(source, minlength=n_docs)[:, None]
    real = np.isfinite(first)
    mean = np.zeros((n_docs, scores.shape[1]))
    if scores_are == "counts":
        np.add.at(mean, source, np.where(np.isfinite(scores), scores, 0.0))
        merged = np.where(real, mean / copies, -np.inf)
    else:
        np.add.at(mean, source, option_distributions(scores, scores_are))
        with np.errstate(divide="ignore"):
            merged = np.where(real, np.log(mean / copies), -np.inf)
    return np.where(alike[:, None], first, merged)


def position_shares(ordered: pd.DataFrame, scores: np.ndarray, targets: np.ndarray) -> dict:
    """Bias diagnostics: the share of docs (every shown copy) whose top-scored option sits at each
    position, beside the share whose chosen answer does (position 0 is "A": the A-rate)."""
    width = scores.shape[1]
    shown = [positions(order) for order in ordered["order"]]
    predicted = np.bincount([p[i] for p, i in zip(shown, scores.argmax(axis=1))], minlength=width)
    chosen = np.bincount([p[i] for p, i in zip(shown, targets)], minlength=width)
    total = max(1, len(shown))
    return {"predicted": [round(float(c) / total, 4) for c in predicted], "chosen": [round(float(c) / total, 4) for c in chosen]}
