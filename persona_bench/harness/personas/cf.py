"""Collaborative filtering: embed respondents and questions from answer values in [0, 1].

Two solvers share one interface (:class:`Factorizer`), shaped like implicit's recommenders
(``fit`` then ``fold_in`` for new users with the question side fixed):

* :class:`ALSFactorizer` (default): alternating least squares with biases and L2,
  ``r_ij ~ mu + b_i + c_j + <u_i, q_j>``, each half-step an exact ridge solve per row.
  A person's persona vector is ``[u_i, b_i]`` (d + 1 numbers).
* :class:`AdamFactorizer`: the paper's objective and optimiser, ``r_ij ~ <u_i, q_j>`` fitted by
  minibatch Adam on the MSE (lr 1e-3, batch 2048). The persona vector is ``u_i`` (d numbers).

Both fold a new person in against the fixed question factors, by a closed-form ridge solve toward
the train people's mean (``ridge``, default) or, as the paper does, by optimising the person's
vector alone with Adam (``optimise``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Ratings:
    """Answers as integer coordinates: ``users[n]`` answered ``items[n]`` with ``values[n]``."""

    users: np.ndarray
    items: np.ndarray
    values: np.ndarray
    n_users: int
    n_items: int

    @cached_property
    def pattern(self) -> tuple[sp.csr_matrix, np.ndarray]:
        """Who answered what as a CSR matrix of ones, and the answer order of its entries
        (built once; ALS re-fills the same pattern at every half-step)."""
        order = np.lexsort((self.items, self.users))
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.users, minlength=self.n_users))])
        ones = sp.csr_matrix((np.ones(len(order)), self.items[order], indptr), shape=(self.n_users, self.n_items))
        return ones, order

    def matrices(self, values: np.ndarray | None = None) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """(who-answered-what as ones, the same pattern holding ``values``) as CSR matrices."""
        ones, order = self.pattern
        data = (self.values if values is None else values)[order].astype(float)
        return ones, sp.csr_matrix((data, ones.indices, ones.indptr), shape=ones.shape)

    def squared_error(self, predict: Callable[[np.ndarray, np.ndarray], np.ndarray], chunk: int = 1 << 18) -> float:
        """Sum of squared errors of ``predict(users, items)``, in chunks to bound memory."""
        total = 0.0
        for start in range(0, len(self.values), chunk):
            rows = slice(start, start + chunk)
            total += float(np.sum((predict(self.users[rows], self.items[rows]) - self.values[rows]) ** 2))
        return total

    def transposed(self) -> "Ratings":
        """The same answers seen from the question side."""
        return Ratings(self.items, self.users, self.values, self.n_items, self.n_users)


def ridge_rows(
    pattern: sp.csr_matrix, targets: sp.csr_matrix, features: np.ndarray, penalty: np.ndarray, prior: np.ndarray | None = None
) -> np.ndarray:
    """Solve one ridge regression per row of ``pattern`` against shared column ``features``.

    Row r minimises ``sum_j (targets[r, j] - x_r . features[j])^2 + sum_p penalty[r, p] (x_r[p] - prior[p])^2``
    over the columns j it has entries in (``prior`` defaults to zero). Gram matrices come from one sparse product with the
    features' outer products, so no per-row Python loop runs.
    """
    width = features.shape[1]
    outer = (features[:, :, None] * features[:, None, :]).reshape(len(features), width * width)
    gram = np.asarray(pattern @ outer).reshape(-1, width, width)
    gram[:, np.arange(width), np.arange(width)] += penalty
    rhs = np.asarray(targets @ features)
    if prior is not None:
        rhs = rhs + penalty * prior
    return np.linalg.solve(gram, rhs[..., None])[..., 0]


FOLD_INS = ("ridge", "optimise")


def optimise_rows(ratings: Ratings, residuals: np.ndarray, features: np.ndarray, start: np.ndarray,
                  lr: float = 1e-2, steps: int = 3000) -> np.ndarray:
    """Per person (``ratings.users``), the vector ``x`` minimising ``sum_n (residuals[n] - x . features[items[n]])^2``
    over their answers, found by full-batch Adam from ``start`` with the question side fixed (the
    paper's fold-in: "we fix the question embedding and only optimize the individual embedding").
    The rate decays to zero along a cosine so the last steps settle. With fewer answers than
    dimensions the minimum is not unique; descent from ``start`` (the train people's mean) ends at
    one near it."""
    vectors = torch.nn.Parameter(torch.tensor(np.repeat(start[None, :], ratings.n_users, axis=0), dtype=torch.float64))
    shown = torch.tensor(features[ratings.items], dtype=torch.float64)
    users, targets = torch.as_tensor(ratings.users, dtype=torch.long), torch.tensor(residuals, dtype=torch.float64)
    optimiser = torch.optim.Adam([vectors], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    for _ in range(steps):
        loss = torch.sum(((vectors[users] * shown).sum(-1) - targets) ** 2)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
    return vectors.detach().numpy()


class Factorizer(ABC):
    """A CF model: fit on answers, then persona vectors, predictions and fold-in.

    Fold-in is empirical Bayes: a new person's vector is the ridge solution under a Gaussian
    prior fitted to the train people's vectors (their mean and per-dimension variance), with the
    train MSE as noise variance, so one answer moves a person only a little from the average.
    """

    dim: int
    item_factors: np.ndarray

    @abstractmethod
    def fit(self, ratings: Ratings) -> "Factorizer":
        """Learn person and question factors from ``ratings``."""

    @abstractmethod
    def user_vectors(self) -> np.ndarray:
        """Persona vectors of the people it was fitted on, one row each."""

    @abstractmethod
    def predict(self, vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted answer values for persona ``vectors[n]`` on question ``items[n]``."""

    @abstractmethod
    def item_features(self) -> np.ndarray:
        """Per question, the features a persona vector is dotted with."""

    @abstractmethod
    def offsets(self, items: np.ndarray) -> np.ndarray:
        """The part of each prediction that does not depend on the person."""

    def fit_prior(self, ratings: Ratings) -> None:
        """Fit the fold-in prior to the train vectors and the train residual variance."""
        vectors = self.user_vectors()
        noise = ratings.squared_error(lambda users, items: self.predict(vectors[users], items)) / max(len(ratings.values), 1)
        self.prior_mean = vectors.mean(axis=0)
        self.prior_penalty = noise / (vectors.var(axis=0) + 1e-6)

    def fold_in(self, ratings: Ratings, how: str = "ridge") -> np.ndarray:
        """Persona vectors of new people from their answers, question factors fixed: ``ridge`` (the
        empirical-Bayes solve above) or ``optimise`` (:func:`optimise_rows`, no prior)."""
        residuals = ratings.values - self.offsets(ratings.items)
        if how == "optimise":
            return optimise_rows(ratings, residuals, self.item_features(), self.prior_mean)
        if how != "ridge":
            raise ConfigError(f"fold-in {how!r}: choose from {', '.join(FOLD_INS)}")
        pattern, targets = ratings.matrices(residuals)
        penalty = np.repeat(self.prior_penalty[None, :], ratings.n_users, axis=0)
        return ridge_rows(pattern, targets, self.item_features(), penalty, self.prior_mean)

    def params(self) -> dict:
        """The constructor arguments, to rebuild this solver."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not isinstance(v, np.ndarray)}

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything learned, as named arrays (saved with safetensors)."""
        return {k.lstrip("_"): np.ascontiguousarray(v) for k, v in vars(self).items() if isinstance(v, np.ndarray)}

    @classmethod
    def restore(cls, params: dict, arrays: dict[str, np.ndarray]) -> "Factorizer":
        """A fitted solver from :meth:`params` and :meth:`arrays`."""
        model = cls(**params)
        model._users = arrays.pop("users")
        for name, value in arrays.items():
            setattr(model, name, value)
        return model

    def rmse(self, vectors: np.ndarray, ratings: Ratings) -> float:
        """Root mean squared error of the predictions on ``ratings`` (users index ``vectors``)."""
        if len(ratings.values) == 0:
            return float("nan")
        return float(np.sqrt(ratings.squared_error(lambda users, items: self.predict(vectors[users], items)) / len(ratings.values)))


class ALSFactorizer(Factorizer):
    """Alternating least squares with biases; L2 weighted by each row's number of answers."""

    def __init__(self, dim: int = 16, reg: float = 0.05, bias_reg: float = 0.01, iterations: int = 12, seed: int = 0):
        self.dim, self.reg, self.bias_reg, self.iterations, self.seed = dim, reg, bias_reg, iterations, seed

    def _half_step(self, ratings: Ratings, other: np.ndarray, other_bias: np.ndarray) -> np.ndarray:
        """Solve every row's [factors, bias] with the other side's factors and biases fixed."""
        counts = np.maximum(np.bincount(ratings.users, minlength=ratings.n_users), 1.0)[:, None]
        penalty = np.hstack([np.repeat(counts * self.reg, self.dim, axis=1), counts * self.bias_reg])
        pattern, targets = ratings.matrices(ratings.values - self.mean - other_bias[ratings.items])
        return ridge_rows(pattern, targets, np.hstack([other, np.ones((len(other), 1))]), penalty)

    def fit(self, ratings: Ratings) -> "ALSFactorizer":
        rng = np.random.default_rng(self.seed)
        self.mean = np.asarray(ratings.values.mean(), dtype=float)
        users = rng.normal(0, 0.1, (ratings.n_users, self.dim))
        user_bias = np.zeros(ratings.n_users)
        self.item_factors = rng.normal(0, 0.1, (ratings.n_items, self.dim))
        self.item_bias = np.zeros(ratings.n_items)
        by_item = ratings.transposed()
        for _ in range(self.iterations):
            solved = self._half_step(ratings, self.item_factors, self.item_bias)
            users, user_bias = solved[:, :-1], solved[:, -1]
            solved = self._half_step(by_item, users, user_bias)
            self.item_factors, self.item_bias = solved[:, :-1], solved[:, -1]
        self._users = np.hstack([users, user_bias[:, None]])
        self.fit_prior(ratings)
        return self

    def user_vectors(self) -> np.ndarray:
        return self._users

    def item_features(self) -> np.ndarray:
        return np.hstack([self.item_factors, np.ones((len(self.item_factors), 1))])

    def offsets(self, items: np.ndarray) -> np.ndarray:
        return self.mean + self.item_bias[items]

    def predict(self, vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        return self.offsets(items) + np.einsum("nd,nd->n", vectors, self.item_features()[items])


class AdamFactorizer(Factorizer):
    """The paper's CF: MSE of <u_i, q_j> against the answer value, minibatch Adam."""

    def __init__(self, dim: int = 16, lr: float = 1e-3, batch_size: int = 2048, epochs: int = 20, seed: int = 0):
        self.dim, self.lr, self.batch_size, self.epochs, self.seed = dim, lr, batch_size, epochs, seed

    def fit(self, ratings: Ratings) -> "AdamFactorizer":
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # thousands of tiny steps: extra threads only wait on each other
        try:
            return self._fit(ratings)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, ratings: Ratings) -> "AdamFactorizer":
        generator = torch.Generator().manual_seed(self.seed)
        users = torch.nn.Parameter(torch.randn(ratings.n_users, self.dim, generator=generator) * 0.1)
        items = torch.nn.Parameter(torch.randn(ratings.n_items, self.dim, generator=generator) * 0.1)
        optimiser = torch.optim.Adam([users, items], lr=self.lr)
        u = torch.as_tensor(ratings.users, dtype=torch.long)
        i = torch.as_tensor(ratings.items, dtype=torch.long)
        r = torch.tensor(ratings.values, dtype=torch.float32)
        for _ in range(self.epochs):
            for batch in torch.randperm(len(r), generator=generator).split(self.batch_size):
                loss = torch.mean(((users[u[batch]] * items[i[batch]]).sum(-1) - r[batch]) ** 2)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
        self._users = users.detach().double().numpy()
        self.item_factors = items.detach().double().numpy()
        self.fit_prior(ratings)
        return self

    def user_vectors(self) -> np.ndarray:
        return self._users

    def item_features(self) -> np.ndarray:
        return self.item_factors

    def offsets(self, items: np.ndarray) -> np.ndarray:
        return np.zeros(len(items))

    def predict(self, vectors: np.ndarray, items: np.ndarray) -> np.ndarray:
        return np.einsum("nd,nd->n", vectors, self.item_factors[items])


SOLVERS = {"als": ALSFactorizer, "adam": AdamFactorizer}


def make_factorizer(solver: str, dim: int = 16, seed: int = 0, **options) -> Factorizer:
    """A factorizer by name (``als`` or ``adam``)."""
    if solver not in SOLVERS:
        raise ConfigError(f"unknown CF solver {solver!r} (choose from {', '.join(SOLVERS)})")
    return SOLVERS[solver](dim=dim, seed=seed, **options)
