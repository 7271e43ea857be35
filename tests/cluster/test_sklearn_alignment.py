"""Where unsup's clustering follows scikit-learn's conventions: n_init for a callable init, float32, sparse input."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import BisectingKMeans
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

from unsup.cluster import DivisiveClustering, KMeans

X_BLOBS, _ = make_blobs(n_samples=200, centers=4, n_features=5, random_state=0)


def _counting_init():
    calls = []

    def init(X, n_clusters, random_state):
        calls.append(1)
        return X[random_state.choice(X.shape[0], n_clusters, replace=False)]

    return init, calls


@pytest.mark.parametrize(
    "init, n_init",
    [("callable", "auto"), ("callable", 3), ("callable", 1), ("k-means++", "auto"), ("random", "auto")],
)
def test_n_init_auto_runs_as_many_inits_as_scikit_learn(init, n_init):
    runs = {}
    for name, cls in (("unsup", KMeans), ("sklearn", SKKMeans)):
        if init == "callable":
            fn, calls = _counting_init()
            cls(4, init=fn, n_init=n_init, random_state=0).fit(X_BLOBS)
            runs[name] = len(calls)
        else:
            runs[name] = cls(4, init=init, n_init=n_init, random_state=0).fit(X_BLOBS)._n_init
    assert runs["unsup"] == runs["sklearn"]
    expected = {("callable", "auto"): 10, ("random", "auto"): 10, ("k-means++", "auto"): 1}
    assert runs["unsup"] == expected.get((init, n_init), n_init)


def test_callable_init_auto_equals_scikit_learn_result():
    fn_a, _ = _counting_init()
    fn_b, _ = _counting_init()
    ours = KMeans(4, init=fn_a, random_state=1).fit(X_BLOBS)
    theirs = SKKMeans(4, init=fn_b, random_state=1).fit(X_BLOBS)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-10)


def test_array_init_is_one_run():
    km = KMeans(4, init=X_BLOBS[:4]).fit(X_BLOBS)
    assert km._n_init == 1
    with pytest.warns(RuntimeWarning, match="performing only one init"):
        KMeans(4, init=X_BLOBS[:4], n_init=3).fit(X_BLOBS)


def _relabelled(labels, reference):
    """``labels`` renamed to ``reference``'s names, asserting the map is one to one."""
    pairs = np.unique(np.stack([labels, reference]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]
    mapping = dict(zip(pairs[0].tolist(), pairs[1].tolist()))
    return np.array([mapping[v] for v in labels.tolist()])


X_SPARSE = sp.random(300, 40, density=0.15, format="csr", random_state=0, dtype=np.float64)
X_SPARSE.data *= 10.0


@pytest.mark.parametrize(
    "method, metric",
    [("bisecting", "euclidean"), ("bisecting", "manhattan"), ("bisecting", "cosine"), ("diana", "euclidean")],
)
def test_divisive_keeps_float32(method, metric):
    X32 = X_BLOBS.astype(np.float32)
    model = DivisiveClustering(4, method=method, metric=metric, random_state=0).fit(X32)
    assert model.cluster_centers_.dtype == np.float32
    X64 = DivisiveClustering(4, method=method, metric=metric, random_state=0).fit(X_BLOBS)
    assert X64.cluster_centers_.dtype == np.float64
    np.testing.assert_array_equal(model.labels_, X64.labels_)
    np.testing.assert_array_equal(model.predict(X32), model.labels_)


@pytest.mark.parametrize("strategy", ["biggest_inertia", "largest_cluster"])
def test_divisive_float32_equals_bisecting_kmeans(strategy):
    X32 = X_BLOBS.astype(np.float32)
    ref = BisectingKMeans(5, bisecting_strategy=strategy, random_state=0).fit(X32)
    ours = DivisiveClustering(5, bisecting_strategy=strategy, random_state=0).fit(X32)
    assert ref.cluster_centers_.dtype == ours.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(_relabelled(ours.labels_, ref.labels_), ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_[ours.labels_], ref.cluster_centers_[ref.labels_], rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "params",
    [{"bisecting_strategy": "biggest_inertia"}, {"bisecting_strategy": "largest_cluster"}, {"init": "k-means++", "n_init": 2}],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_divisive_sparse_equals_bisecting_kmeans(params, dtype):
    X = X_SPARSE.astype(dtype)
    ref = BisectingKMeans(5, random_state=0, **params).fit(X)
    ours = DivisiveClustering(5, random_state=0, **params).fit(X)
    np.testing.assert_array_equal(_relabelled(ours.labels_, ref.labels_), ref.labels_)
    assert ours.cluster_centers_.dtype == dtype
    tol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(ours.cluster_centers_[ours.labels_], ref.cluster_centers_[ref.labels_], rtol=tol, atol=tol)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=tol)
    # predict descends the tree with the same sparse rows, and matches the dense input's fit
    np.testing.assert_array_equal(ours.predict(X), ours.labels_)
    dense = DivisiveClustering(5, random_state=0, **params).fit(X.toarray())
    assert same_partition(dense.labels_, ours.labels_)


def same_partition(a, b):
    return len(np.unique(np.stack([a, b]), axis=1).T) == len(np.unique(a)) == len(np.unique(b))


def test_divisive_sparse_cosine_equals_dense():
    ours = DivisiveClustering(4, metric="cosine", random_state=0).fit(X_SPARSE)
    dense = DivisiveClustering(4, metric="cosine", random_state=0).fit(X_SPARSE.toarray())
    np.testing.assert_array_equal(ours.labels_, dense.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, dense.cluster_centers_, rtol=1e-10, atol=1e-12)
    assert ours.inertia_ == pytest.approx(dense.inertia_, rel=1e-10)
    np.testing.assert_array_equal(ours.predict(X_SPARSE), dense.predict(X_SPARSE.toarray()))


@pytest.mark.parametrize(
    "params", [{"metric": "manhattan"}, {"metric": "chebyshev"}, {"method": "diana"}, {"method": "diana", "metric": "cosine"}]
)
def test_divisive_refuses_sparse_in_scikit_learns_words(params):
    from sklearn.utils import check_array

    with pytest.raises(TypeError) as expected:
        check_array(X_SPARSE, accept_sparse=False, input_name="X")
    with pytest.raises(TypeError) as got:
        DivisiveClustering(3, **params).fit(X_SPARSE)
    assert str(got.value) == str(expected.value)
    assert DivisiveClustering(3, **params).__sklearn_tags__().input_tags.sparse is False
    assert DivisiveClustering(3).__sklearn_tags__().input_tags.sparse is True
