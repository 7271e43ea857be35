"""DivisiveClustering against its oracles: scikit-learn's BisectingKMeans, unsup's KMeans,
a hand-computed DIANA, and a plain transcription of Kaufman & Rousseeuw's procedure."""

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, is_monotonic, is_valid_linkage
from scipy.spatial.distance import cdist
from sklearn.cluster import BisectingKMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import unsup.cluster._divisive as div
from unsup.cluster import DivisiveClustering, KMeans
from unsup.metrics import pairwise_distances

X_SEP, Y_SEP = make_blobs(n_samples=150, centers=5, n_features=3, cluster_std=0.5, random_state=4)
X_MIX, _ = make_blobs(n_samples=200, centers=6, n_features=4, cluster_std=1.5, random_state=0)
LINE = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]])


def same_partition(a, b):
    return adjusted_rand_score(a, b) == 1.0


# ------------------------------------------------------------ bisecting k-means
@pytest.mark.parametrize(
    "params",
    [
        {"bisecting_strategy": "biggest_inertia"},
        {"bisecting_strategy": "largest_cluster"},
        {"init": "k-means++", "n_init": 3},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
@pytest.mark.parametrize("seed", [0, 1])
def test_bisecting_equals_sklearn(params, seed):
    # Same random_state, same settings: the same tree, split for split.
    X, _ = make_blobs(n_samples=240, centers=6, n_features=3, cluster_std=1.2, random_state=seed)
    ref = BisectingKMeans(6, random_state=seed, **params).fit(X)
    ours = DivisiveClustering(6, random_state=seed, **params).fit(X)
    assert same_partition(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    np.testing.assert_allclose(
        ours.cluster_centers_[ours.labels_], ref.cluster_centers_[ref.labels_], atol=1e-10
    )
    Xq = np.random.default_rng(seed).normal(scale=6.0, size=(100, 3))
    assert same_partition(
        np.concatenate([ours.labels_, ours.predict(Xq)]), np.concatenate([ref.labels_, ref.predict(Xq)])
    )


@pytest.mark.parametrize("seed", range(2))
def test_bisecting_sse_no_worse_than_sklearn(seed):
    X, _ = make_blobs(n_samples=300, centers=8, n_features=5, random_state=seed)
    for params in ({}, {"init": "k-means++"}):
        ref = BisectingKMeans(8, random_state=seed, **params).fit(X)
        ours = DivisiveClustering(8, random_state=seed, **params).fit(X)
        sse = ((X - ref.cluster_centers_[ref.labels_]) ** 2).sum()
        ours_sse = ((X - ours.cluster_centers_[ours.labels_]) ** 2).sum()
        assert ours.inertia_ == pytest.approx(ours_sse, rel=1e-10)
        assert ours_sse <= sse * (1 + 1e-9)


@pytest.mark.parametrize("metric", ["manhattan", "cosine", "chebyshev"])
def test_bisecting_uses_kmeans_with_the_metric(metric):
    X = X_MIX
    ours = DivisiveClustering(2, metric=metric, random_state=7).fit(X)
    km = KMeans(2, metric=metric, init="random", n_init=1, random_state=np.random.RandomState(7))
    km.set_params(tol=ours.tol / float(np.mean(np.var(X, axis=0))))
    assert same_partition(ours.labels_, km.fit(X).labels_)
    # centres by the metric's rule, inertia in its k-means cost
    for j in range(2):
        members = X[ours.labels_ == j]
        c = ours.cluster_centers_[j]
        if metric == "manhattan":
            np.testing.assert_allclose(c, np.median(members, axis=0))
        elif metric == "cosine":
            u = (members / np.linalg.norm(members, axis=1, keepdims=True)).sum(axis=0)
            np.testing.assert_allclose(c, u / np.linalg.norm(u), atol=1e-12)
        else:
            D = cdist(members, members, "chebyshev")
            assert any(np.array_equal(c, members[i]) for i in np.flatnonzero(D.sum(1) == D.sum(1).min()))
    scipy_name = {"manhattan": "cityblock", "cosine": "cosine", "chebyshev": "chebyshev"}[metric]
    cost = cdist(X, ours.cluster_centers_, scipy_name)[np.arange(len(X)), ours.labels_].sum()
    assert ours.inertia_ == pytest.approx(cost, rel=1e-9)


# ------------------------------------------------------------ DIANA
def test_diana_hand_computed():
    # Root: 20 has the largest mean distance (76 / 5) and starts the splinter
    # group; every other point is nearer to the rest (e.g. 11: 7.75 vs 9), so
    # {20} splits off at the diameter 20. Then {0, 1, 2, 10, 11} (diameter 11):
    # 11 starts the group (mean 7.75), 10 follows (9 to the rest vs 1), then
    # 0 stays (1.5 vs 10.5): {10, 11} at 11. Then {0, 1, 2} at 2 ({0} off: its
    # mean distance 1.5 ties with 2's, the first wins), {10, 11} and {1, 2} at 1.
    model = DivisiveClustering(3, method="diana", compute_full_tree=True).fit(LINE)
    np.testing.assert_array_equal(model.labels_, [0, 0, 0, 1, 1, 2])
    np.testing.assert_array_equal(model.linkage_matrix_[:, 2], [1.0, 1.0, 2.0, 11.0, 20.0])
    assert same_partition(model.cut(n_clusters=4), [0, 1, 1, 2, 2, 3])
    assert same_partition(model.cut(n_clusters=5), [0, 1, 1, 2, 3, 4])
    np.testing.assert_array_equal(model.n_iter_, [1, 2, 1, 1, 1])
    np.testing.assert_array_equal(div.diana_split(cdist(LINE, LINE)), [0, 0, 0, 0, 0, 1])


def members_of(model, node):
    """Training samples under a node of the fitted tree."""
    out = []
    for i, leaf in enumerate(model._leaf_of_sample):
        v = leaf
        while v >= 0 and v != node:
            v = model._parent[v]
        if v == node:
            out.append(i)
    return out


def reference_diana(D, n_clusters):
    """Kaufman & Rousseeuw's DIANA written out with loops (the brute-force oracle)."""
    clusters = [list(range(len(D)))]
    history = []
    while len(clusters) < n_clusters:
        diameters = [max((D[i][j] for i in c for j in c), default=0.0) for c in clusters]
        c = clusters.pop(int(np.argmax(diameters)))
        mean_to_others = [sum(D[i][j] for j in c if j != i) / (len(c) - 1) for i in c]
        splinter = [c[int(np.argmax(mean_to_others))]]
        rest = [i for i in c if i not in splinter]
        while len(rest) > 1:
            gains = [
                sum(D[i][j] for j in rest if j != i) / (len(rest) - 1)
                - sum(D[i][j] for j in splinter) / len(splinter)
                for i in rest
            ]
            best = int(np.argmax(gains))
            if gains[best] <= 0:
                break
            splinter.append(rest.pop(best))
        history.append((max(diameters), sorted(rest), sorted(splinter)))
        clusters += [rest, splinter]
    return clusters, history


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "precomputed"])
def test_diana_equals_the_textbook_procedure(metric):
    X = np.random.default_rng(5).normal(size=(40, 3))
    D = pairwise_distances(X, metric="euclidean" if metric == "precomputed" else metric)
    data = D if metric == "precomputed" else X
    model = DivisiveClustering(7, method="diana", metric=metric).fit(data)
    clusters, history = reference_diana(D.tolist(), 7)
    expected = np.empty(len(X), dtype=int)
    for j, c in enumerate(clusters):
        expected[c] = j
    assert same_partition(model.labels_, expected)
    np.testing.assert_allclose(sorted(model.linkage_matrix_[-6:, 2]), sorted(h for h, _, _ in history), rtol=1e-12)
    for s, (_, rest, splinter) in enumerate(history):
        _, left, right = model._splits[s]
        assert members_of(model, left) == rest and members_of(model, right) == splinter


def test_diana_precomputed_equals_metric():
    a = DivisiveClustering(4, method="diana", metric="manhattan").fit(X_MIX)
    b = DivisiveClustering(4, method="diana", metric="precomputed").fit(pairwise_distances(X_MIX, metric="manhattan"))
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.linkage_matrix_, b.linkage_matrix_)
    Xq = X_MIX[:30] + 0.1
    np.testing.assert_array_equal(a.predict(Xq), b.predict(pairwise_distances(Xq, X_MIX, metric="manhattan")))
    # medoids for precomputed, the metric's centre rule otherwise (medians for manhattan)
    for j in range(4):
        members = np.flatnonzero(b.labels_ == j)
        D = pairwise_distances(X_MIX[members], metric="manhattan")
        assert b.medoid_indices_[j] == members[np.argmin(D.sum(axis=1))]
        np.testing.assert_allclose(a.cluster_centers_[j], np.median(X_MIX[members], axis=0))
    with pytest.raises(ValueError, match="metric='precomputed' works with method='diana'"):
        DivisiveClustering(3, metric="precomputed").fit(pairwise_distances(X_MIX))


def test_diana_memory_budget_checked_before_allocating(monkeypatch):
    monkeypatch.setattr(div, "pairwise_distances", lambda *a, **k: pytest.fail("matrix built"))
    n = len(X_MIX)
    with pytest.raises(MemoryError, match=rf"{2 * 8 * n * n} bytes.*method='bisecting'"):
        DivisiveClustering(3, method="diana", memory_budget=0.1).fit(X_MIX)


# ------------------------------------------------------------ the tree
@pytest.mark.parametrize(
    "params",
    [
        {"method": "diana"},
        {"method": "bisecting"},
        {"bisecting_strategy": "largest_cluster"},
        {"metric": "chebyshev"},  # medoid rule: heights raised where a part costs more
        {"method": "diana", "metric": "cosine", "compute_full_tree": True},
        {"method": "bisecting", "metric": "manhattan", "compute_full_tree": True},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_linkage_matrix_valid_monotone_and_consistent(params):
    X = X_MIX[:80]
    model = DivisiveClustering(5, random_state=0, **params).fit(X)
    Z = model.linkage_matrix_
    assert is_valid_linkage(Z, throw=True) and is_monotonic(Z)
    assert Z.shape == (len(X) - 1, 4) and Z[-1, 3] == len(X)
    np.testing.assert_array_equal(model.children_, Z[:, :2].astype(int))
    if params.get("bisecting_strategy") != "largest_cluster":  # splits made highest first
        assert same_partition(model.labels_, fcluster(Z, 5, "maxclust"))
    for k in (1, 2, 3, 4, 5):  # cuts are nested and follow the splits
        coarse, fine = model.cut(n_clusters=k), model.cut(n_clusters=min(k + 1, 5))
        assert len(np.unique(coarse)) == k
        assert all(len(np.unique(coarse[fine == j])) == 1 for j in np.unique(fine))
    np.testing.assert_array_equal(model.cut(n_clusters=5), model.labels_)
    if params.get("compute_full_tree"):
        np.testing.assert_array_equal(model.cut(n_clusters=len(X)), np.arange(len(X)))
        h = np.unique(Z[:, 2])
        t = (h[-4] + h[-3]) / 2
        assert same_partition(model.cut(distance_threshold=t), fcluster(Z, t, "distance"))
    else:
        assert np.count_nonzero(Z[:, 2] > 0) == 4  # below the clusters: joined at height 0
        with pytest.raises(ValueError, match="compute_full_tree=True"):
            model.cut(n_clusters=6)


def test_bisecting_heights_are_split_inertias():
    model = DivisiveClustering(4, random_state=0, compute_full_tree=False).fit(X_SEP)
    sse = ((X_SEP - X_SEP.mean(axis=0)) ** 2).sum()
    assert model.linkage_matrix_[-1, 2] == pytest.approx(sse, rel=1e-10)  # the root's SSE
    t = (model.linkage_matrix_[-2, 2] + model.linkage_matrix_[-1, 2]) / 2
    assert len(np.unique(model.cut(distance_threshold=t))) == 2
    with pytest.raises(ValueError, match="needs splits below the fitted tree"):
        model.cut(distance_threshold=1e-3)


def test_identical_points_split_at_height_zero():
    X = np.ones((10, 2))
    for method in ("bisecting", "diana"):
        model = DivisiveClustering(3, method=method, random_state=0).fit(X)
        assert len(np.unique(model.labels_)) == 3
        assert is_valid_linkage(model.linkage_matrix_) and not model.linkage_matrix_[:, 2].any()


# ------------------------------------------------------------ predict
@pytest.mark.parametrize("params", [{}, {"method": "diana"}, {"metric": "manhattan"}, {"method": "diana", "metric": "cosine"}])
def test_predict_gives_back_labels_on_separated_clusters(params):
    model = DivisiveClustering(5, random_state=0, **params).fit(X_SEP)
    if params.get("metric") != "cosine":
        assert same_partition(model.labels_, Y_SEP)
    np.testing.assert_array_equal(model.predict(X_SEP), model.labels_)


def test_diana_predict_follows_mean_distances():
    model = DivisiveClustering(2, method="diana").fit(X_MIX)
    Xq = np.random.default_rng(3).normal(scale=5.0, size=(40, 4))
    D = cdist(Xq, X_MIX)
    expected = np.argmin([D[:, model.labels_ == j].mean(axis=1) for j in (0, 1)], axis=0)
    np.testing.assert_array_equal(model.predict(Xq), expected)


def test_fit_validation_and_verbose(capsys):
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        DivisiveClustering(4).fit(X_SEP[:3])
    model = DivisiveClustering(3, random_state=0).fit(X_SEP)
    with pytest.raises(ValueError, match="Exactly one of n_clusters and distance_threshold"):
        model.cut()
    DivisiveClustering(3, method="diana", verbose=1).fit(X_SEP)
    out = capsys.readouterr().out
    assert out.count("[DivisiveClustering] split") == 2 and "into" in out and "splits in" in out
