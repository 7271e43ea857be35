"""recall_at_k against a brute-force set computation, its tie handling, its blocks and its errors."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.neighbors import NearestNeighbors

from unsup.metrics import recall_at_k
from unsup.metrics import _ranking

rng = np.random.default_rng(0)
X = rng.standard_normal((150, 5))
Q = rng.standard_normal((30, 5))
# Integer points: many exact ties at the k-th distance.
G = rng.integers(0, 4, size=(120, 3)).astype(float)


def oracle(X, indices, queries=None, metric="euclidean", **params):
    """Recall@k by sets: |returned ∩ {points within the k-th exact distance}| / k, averaged over the queries."""
    self_excluded = queries is None
    Qs = X if self_excluded else queries
    k = len(indices[0])
    total = 0.0
    for i, q in enumerate(Qs):
        d = cdist(q[None, :], X, metric, **params)[0]
        candidates = [j for j in range(len(X)) if not (self_excluded and j == i)]
        kth = sorted(d[j] for j in candidates)[k - 1]
        true = {j for j in candidates if d[j] <= kth * (1 + 1e-9) + 1e-12}
        total += len(set(int(j) for j in indices[i]) & true) / k
    return total / len(Qs)


def noisy_search(X, queries, k, n_wrong, seed, exclude_self):
    """The exact k neighbours with ``n_wrong`` of each row replaced by random other points."""
    r = np.random.default_rng(seed)
    nn = NearestNeighbors(n_neighbors=k).fit(X)
    found = nn.kneighbors()[1] if exclude_self else nn.kneighbors(queries)[1]
    found = found.copy()
    for row in found:
        pos = r.choice(k, size=n_wrong, replace=False)
        row[pos] = r.choice(len(X), size=n_wrong, replace=False)
    return found


@pytest.mark.parametrize("metric, params", [("euclidean", {}), ("cosine", {}), ("cityblock", {}), ("minkowski", {"p": 3})])
@pytest.mark.parametrize("exclude_self", [True, False])
@pytest.mark.parametrize("n_wrong", [0, 3, 10])
def test_equals_the_brute_force_set_computation(metric, params, exclude_self, n_wrong):
    k = 10
    queries = None if exclude_self else Q
    found = noisy_search(X, Q, k, n_wrong, seed=n_wrong, exclude_self=exclude_self)
    expected = oracle(X, found, queries, metric, **params)
    assert recall_at_k(X, found, queries=queries, metric=metric, **params) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_ties_at_the_kth_distance_all_count_and_equal_the_oracle(seed):
    r = np.random.default_rng(seed)
    found = np.array([r.choice(len(G), size=7, replace=False) for _ in range(len(G))])
    assert recall_at_k(G, found) == pytest.approx(oracle(G, found), abs=1e-12)
    # An exact search that breaks ties its own way scores 1, whichever tied points it returns.
    order = np.argsort(cdist(G, G) + np.diag(np.full(len(G), np.inf)) + r.random((len(G), len(G))) * 1e-15, axis=1)
    assert recall_at_k(G, order[:, :7]) == 1.0


def test_a_row_returning_itself_or_an_index_twice():
    X1 = np.array([[0.0], [1.0], [3.0], [7.0]])
    assert recall_at_k(X1, [[0], [0], [1], [2]]) == 0.75  # the first row found itself: excluded, not counted
    assert recall_at_k(X1, [[1, 1], [0, 2], [1, 0], [2, 1]]) == 7 / 8  # 1 twice counts once
    assert recall_at_k(X1, [[0], [1]], queries=X1[:2]) == 1.0  # given queries: a row finds itself


@pytest.mark.parametrize("metric", ["euclidean", "cityblock"])  # scikit-learn's search / the brute-force blocks
def test_blocks_give_the_same_figure(monkeypatch, metric):
    found = noisy_search(X, Q, 5, 2, seed=1, exclude_self=True)
    whole = recall_at_k(X, found, metric=metric)
    assert whole == pytest.approx(oracle(X, found, metric=metric), abs=1e-12)
    monkeypatch.setattr(_ranking, "_BLOCK_BYTES", 7 * 8 * len(X))  # 7 (brute) or 35 (euclidean) queries a block
    assert recall_at_k(X, found, metric=metric) == whole


@pytest.mark.parametrize("metric", ["euclidean", "cityblock"])
def test_several_searches_share_the_exact_distances(monkeypatch, metric):
    a = noisy_search(X, Q, 5, 2, seed=1, exclude_self=True)
    b = noisy_search(X, Q, 3, 1, seed=2, exclude_self=True)
    separate = [recall_at_k(X, a, metric=metric), recall_at_k(X, b, metric=metric)]
    calls = []
    real_d, real_nn = _ranking.pairwise_distances, NearestNeighbors.kneighbors
    monkeypatch.setattr(_ranking, "pairwise_distances", lambda *args, **kw: calls.append(1) or real_d(*args, **kw))
    monkeypatch.setattr(NearestNeighbors, "kneighbors", lambda *args, **kw: calls.append(1) or real_nn(*args, **kw))
    assert _ranking.recalls_at_k(X, [a, b], metric=metric) == separate
    assert len(calls) == 1  # one exact search (one block), for both searches


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(X=np.zeros(4), indices=[[0]]), "X must be 2-d"),
        (dict(X=X, indices=np.zeros((150, 2))), "2-d array of integers"),
        (dict(X=X, indices=np.zeros((150, 0), dtype=int)), "2-d array of integers"),
        (dict(X=X, indices=np.full((150, 2), 150)), r"must be in \[0, 149\]"),
        (dict(X=X, indices=np.zeros((3, 2), dtype=int)), "indices has 3 rows for 150 queries"),
        (dict(X=X, indices=np.zeros((30, 2), dtype=int), queries=Q[:, :2]), "queries must be 2-d with 5 features"),
        (dict(X=X[:3], indices=np.zeros((3, 3), dtype=int)), "k=3 is larger than the 2 points"),
    ],
)
def test_refuses_what_it_cannot_score(kwargs, match):
    with pytest.raises(ValueError, match=match):
        recall_at_k(**kwargs)
