"""Data-driven personas (Li et al. 2023, Sec. 4): individual, cluster and demographic.

:func:`fit_personas` fits collaborative filtering on the train split only and returns a
:class:`PersonaSpace`: the train people's persona vectors, the question factors, and fold-in
for unseen people. On top of it:

* cluster personas: K-Means centroids of the individual vectors (:func:`kmeans`), with ``k``
  picked at the elbow of Eq. 1 evaluated with centroids (:func:`elbow_curve`, :func:`pick_elbow`);
* demographic personas: the centroid of a trait group or a trait combination
  (:func:`group_centroids`);
* :func:`persona_vectors` turns a persona kind (``individual``, ``cluster[:K]``,
  ``demographic:TRAIT[xTRAIT...]``) into one vector per scored person.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load_file, save

from ..core.atomic import atomic_write_bytes, atomic_write_json
from ..core.errors import ConfigError, SurveyError
from ..data.protocol import Split
from ..data.pseudonyms import NO_PSEUDONYMS, Pseudonyms
from ..data.survey import Survey
from .cf import SOLVERS, Factorizer, Ratings, make_factorizer
from .kind import PersonaKind

ELBOW_KS = tuple(range(1, 13))


@dataclass
class PersonaSpace:
    """CF fitted on the train split: train people's persona vectors and fold-in for others."""

    model: Factorizer
    people: pd.Index
    questions: pd.Index
    values: pd.Series = field(repr=False)
    rmse: dict[str, float] = field(default_factory=dict)
    fold_in_by: str = "ridge"  # how people outside the fit get vectors (a run's --fold-in; cf.FOLD_INS)

    @property
    def vectors(self) -> np.ndarray:
        """Persona vectors of the train people, in ``people`` order."""
        return self.model.user_vectors()

    def ratings(self, answers: pd.DataFrame, people: pd.Index) -> Ratings:
        """Integer-coded ratings of ``answers`` (respondent, question rows) for ``people``."""
        rows = pd.MultiIndex.from_frame(answers[["respondent", "question"]])
        values = self.values.reindex(rows).to_numpy(dtype=float)
        users = people.get_indexer(answers["respondent"])
        items = self.questions.get_indexer(answers["question"])
        if (users < 0).any() or (items < 0).any() or np.isnan(values).any():
            raise SurveyError("answers refer to people or questions outside the persona space")
        return Ratings(users, items, values, len(people), len(self.questions))

    def fold_in(self, answers: pd.DataFrame) -> tuple[pd.Index, np.ndarray]:
        """Persona vectors for the people in ``answers`` from those answers alone."""
        people = pd.Index(sorted(answers["respondent"].unique()), name="respondent")
        return people, self.model.fold_in(self.ratings(answers, people), self.fold_in_by)

    def for_users(self, split: Split, users: str, k: int | None = None) -> tuple[pd.Index, np.ndarray]:
        """Individual vectors of the people a run scores: seen people's own, unseen folded in from K (None: all)."""
        if users == "seen":
            return self.people, self.vectors
        return self.fold_in(split.fold_in_answers(k))

    # ------------------------------------------------------------ persistence
    def save(self, folder: Path, names: Pseudonyms = NO_PSEUDONYMS) -> None:
        """Write personas.json and cf.safetensors into ``folder`` (atomically, arrays first; people as ``names`` writes them)."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays, people = self.model.arrays(), names.names(self.people)
        if names.hides_ids:  # people (and their rows) in the pseudonyms' order: the ids' order would name them
            order = np.argsort(people, kind="stable")
            arrays["users"], people = arrays["users"][order], [people[i] for i in order]
        atomic_write_bytes(folder / "cf.safetensors", save(arrays))
        atomic_write_json(
            folder / "personas.json",
            {
                "solver": next(name for name, cls in SOLVERS.items() if isinstance(self.model, cls)),
                "params": self.model.params(),
                "people": people,
                "questions": list(self.questions),
                "rmse": self.rmse,
            },
        )

    @classmethod
    def load(cls, folder: Path, survey: Survey, names: Pseudonyms = NO_PSEUDONYMS) -> "PersonaSpace":
        """Reload a saved persona space (safetensors, no pickle)."""
        try:
            meta = json.loads((folder / "personas.json").read_text())
            arrays = load_file(str(folder / "cf.safetensors"))
            people = names.reveal(meta["people"], survey.respondents.index, folder / "personas.json")
            if names.hides_ids:  # back in the ids' order, as fitted
                order = np.argsort(people, kind="stable")
                arrays["users"], people = arrays["users"][order], [people[i] for i in order]
            model = SOLVERS[meta["solver"]].restore(meta["params"], arrays)
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise SurveyError(f"{folder}: not a saved persona space ({exc})") from None
        return cls(model, pd.Index(people), pd.Index(meta["questions"]), answer_values(survey), meta["rmse"])


def answer_values(survey: Survey) -> pd.Series:
    """Answer values indexed by (respondent, question)."""
    return survey.responses.set_index(["respondent", "question"])["value"]


def fit_personas(survey: Survey, split: Split, solver: str = "als", dim: int = 16, seed: int = 0, **options) -> PersonaSpace:
    """Fit CF on the train split; record train, seen-held-out and unseen RMSE (``heldout_unseen_ridge``:
    the unseen people folded in from all their revealed answers by ridge regression, whatever
    ``--fold-in`` a run uses; the persona space is shared by both fold-ins)."""
    train = split.train_answers()
    people = pd.Index(sorted(train["respondent"].unique()), name="respondent")
    space = PersonaSpace(make_factorizer(solver, dim=dim, seed=seed, **options), people, pd.Index(list(survey.questions)), answer_values(survey))
    ratings = space.ratings(train, people)
    space.model.fit(ratings)
    space.rmse = {
        "train": space.model.rmse(space.vectors, ratings),
        "heldout_seen": space.model.rmse(space.vectors, space.ratings(split.scored_answers("seen"), people)),
    }
    unseen_people, unseen_vectors = space.fold_in(split.fold_in_answers(10**9))
    scored = split.scored_answers("unseen")
    scored = scored[scored["respondent"].isin(unseen_people)]
    space.rmse["heldout_unseen_ridge"] = space.model.rmse(unseen_vectors, space.ratings(scored, unseen_people))
    return space


# ---------------------------------------------------------------- clusters
@dataclass(frozen=True)
class Clustering:
    """K-Means result: centroids (k x dim), each input row's label, and the inertia."""

    centroids: np.ndarray
    labels: np.ndarray
    inertia: float

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for each row of ``vectors``."""
        return squared_distances(vectors, self.centroids).argmin(axis=1)


def squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances, points x centres."""
    return (points**2).sum(1)[:, None] - 2 * points @ centres.T + (centres**2).sum(1)[None, :]


def kmeans(points: np.ndarray, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 200) -> Clustering:
    """Lloyd's K-Means with k-means++ seeding; the best of ``n_init`` starts."""
    if not 1 <= k <= len(points):
        raise ConfigError(f"k-means needs 1 <= k <= {len(points)} points, got k={k}")
    rng = np.random.default_rng(seed)
    best: Clustering | None = None
    for _ in range(n_init):
        centroids = kmeans_plus_plus(points, k, rng)
        for _ in range(max_iter):
            labels = squared_distances(points, centroids).argmin(axis=1)
            sums = np.zeros_like(centroids)
            np.add.at(sums, labels, points)
            sizes = np.bincount(labels, minlength=k)[:, None]
            moved = np.where(sizes > 0, sums / np.maximum(sizes, 1), centroids)
            if np.allclose(moved, centroids):
                break
            centroids = moved
        labels = squared_distances(points, centroids).argmin(axis=1)
        inertia = float(((points - centroids[labels]) ** 2).sum())
        if best is None or inertia < best.inertia:
            best = Clustering(centroids, labels, inertia)
    return best


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ initial centres."""
    centres = [points[rng.integers(len(points))]]
    closest = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = closest.sum()
        pick = rng.choice(len(points), p=closest / total) if total > 0 else rng.integers(len(points))
        centres.append(points[pick])
        closest = np.minimum(closest, ((points - points[pick]) ** 2).sum(1))
    return np.array(centres)


def centroid_loss(space: PersonaSpace, clustering: Clustering, ratings: Ratings) -> float:
    """Eq. 1 with centroids: MSE of the answers when each person is replaced by their centroid."""
    stand_ins = clustering.centroids[clustering.labels]
    error = space.model.predict(stand_ins[ratings.users], ratings.items) - ratings.values
    return float(np.mean(error**2))


def elbow_curve(space: PersonaSpace, split: Split, ks: tuple[int, ...] = ELBOW_KS, seed: int = 0) -> pd.DataFrame:
    """Eq. 1 loss (centroid MSE on the train answers) and K-Means inertia for each k."""
    ratings = space.ratings(split.train_answers(), space.people)
    rows = []
    for k in ks:
        clustering = kmeans(space.vectors, k, seed=seed)
        rows.append({"k": k, "loss": centroid_loss(space, clustering, ratings), "inertia": clustering.inertia})
    return pd.DataFrame(rows)


def pick_elbow(curve: pd.DataFrame) -> int:
    """The elbow: the k farthest below the straight line from the first to the last point."""
    if len(curve) < 3:
        return int(curve["k"].iloc[-1])
    x = curve["k"].to_numpy(dtype=float)
    y = curve["loss"].to_numpy(dtype=float)
    x = (x - x[0]) / (x[-1] - x[0])
    y = (y - y[-1]) / max(y[0] - y[-1], 1e-12)
    return int(curve["k"].iloc[int(np.argmax((1 - x) - y))])


# ---------------------------------------------------------------- demographic groups
def trait_groups(respondents: pd.DataFrame, traits: tuple[str, ...]) -> pd.Series:
    """Each person's group label for a trait combination, e.g. ``Democrat x Postgraduate``."""
    missing = [t for t in traits if t not in respondents.columns]
    if missing:
        raise ConfigError(f"unknown trait(s) {', '.join(missing)} (known: {', '.join(respondents.columns[2:])})")
    labels = respondents[list(traits)].astype(str)
    return labels.iloc[:, 0].str.cat(labels.iloc[:, 1:], sep=" x ") if len(traits) > 1 else labels.iloc[:, 0]


def group_centroids(space: PersonaSpace, respondents: pd.DataFrame, traits: tuple[str, ...]) -> pd.DataFrame:
    """Mean persona vector of the train people in each group of a trait (combination)."""
    groups = trait_groups(respondents.loc[space.people], traits)
    return pd.DataFrame(space.vectors, index=groups.to_numpy()).groupby(level=0).mean()


def persona_vectors(
    space: PersonaSpace,
    kind: PersonaKind,
    people: pd.Index,
    vectors: np.ndarray,
    respondents: pd.DataFrame,
    split: Split,
    seed: int = 0,
) -> np.ndarray:
    """One persona vector per person in ``people`` (whose individual vectors are ``vectors``).

    Cluster personas use K-Means on the train people (k from ``kind`` or the elbow) and give
    each person the centroid nearest their own vector; demographic personas give the centroid
    of the person's group among train people (the train population mean for an unseen group).
    """
    if kind.kind == "individual":
        return vectors
    if kind.kind == "cluster":
        k = kind.k or pick_elbow(elbow_curve(space, split, seed=seed))
        clustering = kmeans(space.vectors, k, seed=seed)
        return clustering.centroids[clustering.assign(vectors)]
    centroids = group_centroids(space, respondents, kind.traits)
    groups = trait_groups(respondents.loc[people], kind.traits)
    table = centroids.reindex(groups.to_numpy())
    return table.fillna(pd.Series(space.vectors.mean(axis=0), index=centroids.columns)).to_numpy()
