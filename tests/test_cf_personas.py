"""Collaborative filtering recovers planted structure; fold-in; clusters; elbow; groups."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona_bench.harness.personas.cf import AdamFactorizer, ALSFactorizer, Ratings
from persona_bench.harness.core.errors import ConfigError
from persona_bench.harness.personas.space import (
    PersonaKind,
    PersonaSpace,
    fit_personas,
    group_centroids,
    kmeans,
    persona_vectors,
    pick_elbow,
)


@pytest.fixture(scope="module")
def space(demo_survey, demo_split):
    return fit_personas(demo_survey, demo_split)


def low_rank_ratings(seed: int = 0, people: int = 400, items: int = 60, dim: int = 3, density: float = 0.5):
    rng = np.random.default_rng(seed)
    users, factors = rng.normal(0, 0.3, (people, dim)), rng.normal(0, 0.3, (items, dim))
    mask = rng.random((people, items)) < density
    u, i = np.nonzero(mask)
    values = np.clip(0.5 + np.einsum("nd,nd->n", users[u], factors[i]) + rng.normal(0, 0.02, len(u)), 0, 1)
    return Ratings(u, i, values, people, items)


def test_als_fits_low_rank_data_nearly_exactly():
    ratings = low_rank_ratings()
    model = ALSFactorizer(dim=3, reg=1e-4, bias_reg=1e-4, iterations=30).fit(ratings)
    assert model.rmse(model.user_vectors(), ratings) < 0.03


def test_adam_path_learns(demo_survey, demo_split):
    ratings = low_rank_ratings()
    untrained = AdamFactorizer(epochs=0).fit(ratings)
    trained = AdamFactorizer(epochs=30).fit(ratings)
    assert trained.rmse(trained.user_vectors(), ratings) < 0.6 * untrained.rmse(untrained.user_vectors(), ratings)


def test_cf_beats_the_global_mean_on_held_out_answers(space, demo_survey, demo_split):
    values = demo_survey.responses.set_index(["respondent", "question"])["value"]
    train_mean = values.loc[list(zip(*[demo_split.train_answers()[c] for c in ("respondent", "question")]))].mean()
    held = demo_split.scored_answers("seen")
    baseline = np.sqrt(np.mean((values.loc[list(zip(held["respondent"], held["question"]))] - train_mean) ** 2))
    assert space.rmse["heldout_seen"] < 0.85 * baseline
    assert space.rmse["train"] < space.rmse["heldout_seen"]
    assert space.rmse["heldout_unseen_ridge"] < 0.9 * baseline


def test_clusters_recover_planted_camps(space, demo_truth):
    labels = kmeans(space.vectors, 6, seed=0).labels
    camps = demo_truth.camps.loc[space.people].to_numpy()
    table = pd.crosstab(labels, camps)
    purity = table.max(axis=1).sum() / table.to_numpy().sum()
    majority_share = pd.Series(camps).value_counts(normalize=True).max()
    assert purity > majority_share + 0.2


def test_fold_in_with_all_answers_is_close_to_the_fitted_vector(space, demo_split):
    train = demo_split.train_answers()
    some = train[train["respondent"].isin(space.people[:50])]
    people, folded = space.fold_in(some)
    fitted = space.vectors[space.people.get_indexer(people)]
    distance_to_own = np.linalg.norm(folded - fitted, axis=1).mean()
    distance_to_others = np.linalg.norm(folded - np.roll(fitted, 1, axis=0), axis=1).mean()
    assert distance_to_own < 0.6 * distance_to_others


def test_fold_in_with_one_answer_stays_near_the_average(space, demo_split):
    people, one = space.fold_in(demo_split.fold_in_answers(1))
    _, many = space.fold_in(demo_split.fold_in_answers(100))
    centre = space.vectors.mean(axis=0)
    assert np.linalg.norm(one - centre, axis=1).mean() < np.linalg.norm(many - centre, axis=1).mean()


def test_space_save_and_load(tmp_path, space, demo_survey):
    space.save(tmp_path)
    again = PersonaSpace.load(tmp_path, demo_survey)
    assert np.allclose(again.vectors, space.vectors)
    assert again.rmse == space.rmse
    items = np.arange(5)
    assert np.allclose(again.model.predict(again.vectors[:5], items), space.model.predict(space.vectors[:5], items))


def test_kmeans_separates_blobs_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [5, 5], [0, 5]])
    points = np.vstack([c + rng.normal(0, 0.3, (50, 2)) for c in centres])
    result = kmeans(points, 3, seed=1)
    assert len({tuple(np.sort(result.labels[i * 50 : (i + 1) * 50])[[0, -1]]) for i in range(3)}) == 3
    assert (result.labels == kmeans(points, 3, seed=1).labels).all()
    with pytest.raises(ConfigError):
        kmeans(points, 0)


def test_pick_elbow_finds_the_knee():
    curve = pd.DataFrame({"k": range(1, 11), "loss": [10, 5, 2.5, 1.2, 1.1, 1.0, 0.95, 0.9, 0.85, 0.8]})
    assert pick_elbow(curve) == 4


def test_demographic_centroids_are_group_means(space, demo_survey):
    centroids = group_centroids(space, demo_survey.respondents, ("POLPARTY",))
    party = demo_survey.respondents.loc[space.people, "POLPARTY"].to_numpy()
    assert np.allclose(centroids.loc["Democrat"].to_numpy(), space.vectors[party == "Democrat"].mean(axis=0))
    combos = group_centroids(space, demo_survey.respondents, ("POLPARTY", "SEX"))
    assert "Democrat x Female" in combos.index


def test_persona_vectors_per_kind(space, demo_survey, demo_split):
    people, vectors = space.people[:20], space.vectors[:20]
    resolve = lambda kind: persona_vectors(space, PersonaKind.parse(kind), people, vectors, demo_survey.respondents, demo_split)  # noqa: E731
    assert np.array_equal(resolve("individual"), vectors)
    assert len(np.unique(resolve("cluster:3"), axis=0)) <= 3
    party = resolve("demographic:POLPARTY")
    assert len(np.unique(party, axis=0)) == demo_survey.respondents.loc[people, "POLPARTY"].nunique()
    with pytest.raises(ConfigError, match="unknown trait"):
        resolve("demographic:SHOESIZE")


@pytest.mark.parametrize("text", ["cluster:0", "cluster:x", "demographic", "individual:3", "everyone"])
def test_persona_kind_rejects_bad_text(text):
    with pytest.raises(ConfigError):
        PersonaKind.parse(text)


def test_persona_kind_round_trips():
    for text in ("individual", "cluster", "cluster:6", "demographic:POLPARTY", "demographic:EDUCATIONxPOLPARTY"):
        assert str(PersonaKind.parse(text)) == text
