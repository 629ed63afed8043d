"""The evaluation protocol: who trains, who is scored, on which answers (Li et al. 2023, Sec. 5).

1. People are split into ``train`` and ``eval`` groups (per wave, seeded).
2. Each person's answers are split again into a ``train`` part and an ``eval`` part.
3. Seen users (train group) are scored on their eval part; everything that learns (CF,
   clusters, group centroids, SPM) sees only the train group's train part.
4. Unseen users (eval group) reveal the first K answers of their train part, in a seeded
   order, for fold-in (K capped by what they answered) and are scored on their eval part,
   the same answers for every K, so results across K are paired.

Protocol ``heldout-questions`` (``SplitConfig.protocol``): step 2 splits the *questions* instead
(seeded; ``answers_train`` of them train): every person's answers to the eval questions are the
eval part, so learners never see an eval question answered, and a persona must carry to
questions nobody in the train split answered.

Protocol ``cross-wave`` (``target_wave``), on a panel survey (:meth:`Survey.panel`: people who
answered two waves): train people's answers to both waves are learned from; eval people reveal
only their answers to the earlier wave (their train part, folded in: unseen users, every answer)
and are scored on the later wave (their eval part): a persona must carry to a later survey on
other topics.

A Split is saved as ``split.json`` (config and fingerprint) plus ``split.csv.gz`` (one row per
answer) and reloads only against the survey it was made from.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import atomic_write_text, atomic_writer
from .pseudonyms import NO_PSEUDONYMS, Pseudonyms
from .survey import Survey, SurveyError

UNSEEN_K = (1, 5, 10, 20, 50, 100)
USERS = ("seen", "unseen")
PROTOCOLS = ("answers", "heldout-questions", "cross-wave")


@dataclass(frozen=True)
class SplitConfig:
    """How to split: seed, the train shares of people and of each person's answers (of the
    questions under ``heldout-questions``), and the protocol."""

    seed: int = 0
    people_train: float = 0.8
    answers_train: float = 0.8
    protocol: str = "answers"
    target_wave: str = ""  # cross-wave: the wave eval people are scored on

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"--protocol {self.protocol!r}: choose from {', '.join(PROTOCOLS)}")
        if (self.protocol == "cross-wave") != bool(self.target_wave):
            raise ValueError("the cross-wave protocol, and it alone, names the wave people are scored on")
        for name in ("people_train", "answers_train"):
            share = getattr(self, name)
            if not 0.0 < share < 1.0:
                raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {share}")


def survey_fingerprint(survey: Survey) -> str:
    """A short hash of who answered what, to refuse reloading a split onto other data."""
    pairs = survey.responses[["respondent", "question", "option"]].sort_values(["respondent", "question"])
    digest = hashlib.sha256()
    for column in pairs.columns:
        digest.update("\x1f".join(map(str, pairs[column].to_numpy())).encode())
    return digest.hexdigest()[:16]


@dataclass
class Split:
    """One seeded split of a survey; ``answers`` has respondent, question, group, part, rank."""

    config: SplitConfig
    fingerprint: str
    answers: pd.DataFrame

    # ------------------------------------------------------------ selections
    def people(self, group: str) -> list[str]:
        """Respondent ids of the ``train`` or ``eval`` group, sorted."""
        return sorted(self.answers.loc[self.answers["group"] == group, "respondent"].unique())

    def train_answers(self) -> pd.DataFrame:
        """What learners may see: the train group's train part."""
        return self._select("train", "train")

    def scored_answers(self, users: str) -> pd.DataFrame:
        """The answers a run is scored on: the eval part of seen (train) or unseen (eval) people."""
        if users not in USERS:
            raise ValueError(f"users must be one of {USERS}, got {users!r}")
        return self._select("train" if users == "seen" else "eval", "eval")

    def fold_in_answers(self, k: int | None) -> pd.DataFrame:
        """The first ``k`` train-part answers of each unseen person (all of them if fewer; None: all)."""
        revealed = self._select("eval", "train")
        if k is None:
            return revealed
        if k < 1:
            raise ValueError(f"fold-in needs k >= 1, got {k}")
        return revealed[revealed["rank"] < k]

    def _select(self, group: str, part: str) -> pd.DataFrame:
        mask = (self.answers["group"] == group) & (self.answers["part"] == part)
        return self.answers.loc[mask, ["respondent", "question", "rank"]].reset_index(drop=True)

    # ------------------------------------------------------------ persistence
    def save(self, folder: Path, names: Pseudonyms = NO_PSEUDONYMS) -> None:
        """Write split.json and split.csv.gz into ``folder`` atomically (respondents as ``names`` writes them)."""
        folder.mkdir(parents=True, exist_ok=True)
        written = self.answers.assign(respondent=names.names(self.answers["respondent"]))
        if names.hides_ids:  # in the pseudonyms' order: the ids' order would name them
            written = written.sort_values(["respondent", "part", "rank"], kind="stable")
        with atomic_writer(folder / "split.csv.gz", binary=True) as handle:
            written.to_csv(handle, index=False, compression={"method": "gzip", "mtime": 0, "compresslevel": 1})
        meta = {"config": asdict(self.config), "fingerprint": self.fingerprint, "n_answers": len(self.answers)}
        atomic_write_text(folder / "split.json", json.dumps(meta, indent=2))

    @classmethod
    def load(cls, folder: Path, survey: Survey, names: Pseudonyms = NO_PSEUDONYMS) -> "Split":
        """Reload a saved split, refusing one that was made from different data."""
        meta_path = folder / "split.json"
        try:
            meta = json.loads(meta_path.read_text())
            config = SplitConfig(**meta["config"])
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SurveyError(f"{meta_path}: not a saved split ({exc})") from None
        fingerprint = survey_fingerprint(survey)
        if meta["fingerprint"] != fingerprint:
            raise SurveyError(f"{meta_path}: split was made from other data (fingerprint {meta['fingerprint']} != {fingerprint})")
        answers = pd.read_csv(folder / "split.csv.gz", dtype={"respondent": str, "question": str, "group": str, "part": str})
        if names.hides_ids:
            written = answers["respondent"].unique()
            ids = dict(zip(written, names.reveal(written, survey.respondents.index, folder / "split.csv.gz")))
            answers["respondent"] = answers["respondent"].map(ids)
            answers = answers.sort_values(["respondent", "part", "rank"], kind="stable").reset_index(drop=True)  # as made
        return cls(config, fingerprint, answers)


def survey_for(survey: Survey, waves: tuple[str, ...], protocol: str) -> Survey:
    """The survey a protocol splits: under cross-wave, the panel of ``waves`` (from, to)."""
    return survey.panel(*waves) if protocol == "cross-wave" else survey


def seeded_ranks(person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each row's position among its person's rows (``person``: integer codes), in a seeded random order."""
    order = np.lexsort((rng.random(len(person)), person))
    counts = np.bincount(person) if len(person) else np.zeros(0, dtype=int)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = np.empty(len(person), dtype=np.int64)
    position[order] = np.arange(len(person)) - np.repeat(starts, counts)
    return position


def make_split(survey: Survey, config: SplitConfig | None = None) -> Split:
    """Split people per wave, then each person's answers (the questions, under ``heldout-questions``), with ``config.seed``."""
    config = config or SplitConfig()
    rng = np.random.default_rng(config.seed)
    people = survey.respondents.index.to_numpy()
    waves = survey.respondents["wave"].to_numpy()
    in_train = np.zeros(len(people), dtype=bool)
    for wave in pd.unique(waves):
        members = np.flatnonzero(waves == wave)
        chosen = rng.permutation(members)[: int(round(config.people_train * len(members)))]
        in_train[chosen] = True
    group_of = pd.Series(np.where(in_train, "train", "eval"), index=people)

    answers = survey.responses[["respondent", "question"]].copy()
    person = pd.factorize(answers["respondent"])[0]
    if config.protocol in ("heldout-questions", "cross-wave"):
        if config.protocol == "heldout-questions":
            questions = np.array(sorted(answers["question"].unique()))
            held_out = rng.permutation(questions)[: max(1, int(round((1 - config.answers_train) * len(questions))))]
            is_eval = answers["question"].isin(held_out).to_numpy()
        else:
            later = [key for key, question in survey.questions.items() if question.wave == config.target_wave]
            is_eval = answers["question"].isin(later).to_numpy() & (group_of.loc[answers["respondent"]].to_numpy() == "eval")
        rank = np.empty(len(answers), dtype=np.int64)
        for part in (is_eval, ~is_eval):
            rank[part] = seeded_ranks(person[part], rng)
    else:
        position = seeded_ranks(person, rng)
        counts = np.bincount(person)
        n_eval = np.where(counts >= 2, np.maximum(1, np.rint((1 - config.answers_train) * counts)), 0).astype(int)
        is_eval = position < n_eval[person]
        rank = np.where(is_eval, position, position - n_eval[person])
    answers["group"] = group_of.loc[answers["respondent"]].to_numpy()
    answers["part"] = np.where(is_eval, "eval", "train")
    answers["rank"] = rank
    answers = answers.sort_values(["respondent", "part", "rank"], kind="stable").reset_index(drop=True)
    return Split(config, survey_fingerprint(survey), answers)


def scored_docs(
    survey: Survey, split: Split, users: str, max_people: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """The docs a run is scored on: one per (person, held-out question) of seen or unseen users.

    Columns: ``doc_id`` (``respondent|question``), ``respondent``, ``question``, ``target``
    (the answered option's index) and ``n_options``. ``max_people`` keeps a seeded random
    subset of people (all their docs), the same subset for every method.
    """
    scored = split.scored_answers(users)[["respondent", "question"]]
    if max_people is not None:
        people = np.array(sorted(scored["respondent"].unique()))
        if max_people < len(people):
            keep = np.random.default_rng(seed).choice(people, size=max_people, replace=False)
            scored = scored[scored["respondent"].isin(keep)]
    docs = scored.merge(survey.responses[["respondent", "question", "option"]], on=["respondent", "question"], how="left")
    docs = docs.rename(columns={"option": "target"})
    docs["n_options"] = docs["question"].map({k: len(q.options) for k, q in survey.questions.items()})
    docs.insert(0, "doc_id", docs["respondent"] + "|" + docs["question"])
    return docs.sort_values("doc_id").reset_index(drop=True)
