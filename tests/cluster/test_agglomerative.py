"""AgglomerativeClustering against its oracles: scipy's linkage and fcluster, scikit-learn,
brute-force linkage distances for predict, and the memory rule."""

import pickle
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.cluster.hierarchy import cut_tree, fcluster, is_valid_linkage, linkage
from scipy.spatial.distance import cdist, pdist
from sklearn.cluster import AgglomerativeClustering as SKAgglomerative
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import unsup.cluster._hierarchical as hier
from unsup.cluster import AgglomerativeClustering
from unsup.metrics import pairwise_distances

LINKAGES = ["ward", "complete", "average", "single", "weighted", "centroid", "median"]
# Separated blobs: every linkage finds them, and the top of every tree is monotone.
X_SEP, Y_SEP = make_blobs(n_samples=90, centers=3, n_features=4, cluster_std=0.6, random_state=3)
# Overlapping blobs: a tree whose every level matters.
X_MIX, _ = make_blobs(n_samples=120, centers=5, n_features=3, cluster_std=2.0, random_state=0)
X_INT = np.random.default_rng(0).integers(0, 3, size=(80, 6)).astype(float)
X_NEW = np.random.default_rng(1).normal(scale=4.0, size=(25, 4))

# registry metric -> (scipy pdist metric, pdist kwargs, data)
METRICS = {
    "manhattan": ("cityblock", {}, X_MIX),
    "chebyshev": ("chebyshev", {}, X_MIX),
    "cosine": ("cosine", {}, X_MIX),
    "minkowski": ("minkowski", {"p": 3}, X_MIX),
    "hamming": ("hamming", {}, X_INT),
    "sqeuclidean": ("sqeuclidean", {}, X_MIX),
}


def same_partition(a, b):
    return adjusted_rand_score(a, b) == 1.0


def l1(a, b):
    return float(np.abs(a - b).sum())


@pytest.fixture
def no_fastcluster(monkeypatch):
    """Make ``import fastcluster`` fail, as on an install without the ``fast`` extra."""
    monkeypatch.setitem(sys.modules, "fastcluster", None)


# ------------------------------------------------------------ scipy oracle
@pytest.mark.parametrize("method", LINKAGES)
@pytest.mark.parametrize("engine", ["auto", "fastcluster", "scipy"])
def test_heights_and_labels_equal_scipy(method, engine):
    Z = linkage(X_MIX, method)
    model = AgglomerativeClustering(n_clusters=4, linkage=method, engine=engine).fit(X_MIX)
    assert is_valid_linkage(model.linkage_matrix_)
    np.testing.assert_allclose(model.distances_, Z[:, 2], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(model.linkage_matrix_[:, 3], Z[:, 3])
    if engine == "scipy":  # the same engine: the same tree, merge for merge
        np.testing.assert_array_equal(model.children_, Z[:, :2].astype(int))
    compared = 0
    for k in (2, 3, 4, 6, 8):
        expected = fcluster(Z, k, "maxclust")
        # At an inversion (centroid, median) maxclust cuts the monotone envelope
        # and returns fewer clusters; the cut undoes the last k - 1 merges.
        if len(np.unique(expected)) == k:
            assert same_partition(model.cut(n_clusters=k), expected)
            compared += 1
        else:
            assert method in ("centroid", "median")
    assert compared >= 3
    assert same_partition(model.labels_, model.cut(n_clusters=4))
    assert model.n_clusters_ == 4 and model.n_leaves_ == len(X_MIX)
    assert set(model.labels_) == {0, 1, 2, 3}


@pytest.mark.parametrize("method", ["single", "complete", "average", "weighted"])
@pytest.mark.parametrize("metric", sorted(METRICS))
def test_non_euclidean_metrics_equal_scipy(method, metric):
    name, kw, X = METRICS[metric]
    Z = linkage(pdist(X, name, **kw), method)
    # hamming's distances tie everywhere, and engines break ties differently:
    # compare it with the scipy engine, merge for merge.
    engine = "scipy" if metric == "hamming" else "auto"
    model = AgglomerativeClustering(
        n_clusters=3, linkage=method, metric=metric, metric_params=kw or None, engine=engine
    ).fit(X)
    np.testing.assert_allclose(model.distances_, Z[:, 2], rtol=1e-10, atol=1e-12)
    expected = fcluster(Z, 3, "maxclust")
    if len(np.unique(expected)) < 3:  # tied heights: maxclust stops short, cut_tree undoes merges
        assert metric == "hamming"
        expected = cut_tree(Z, n_clusters=3).ravel()
    assert same_partition(model.labels_, expected)


@pytest.mark.parametrize("method", ["single", "average"])
def test_callable_metric_equals_named(method):
    named = AgglomerativeClustering(3, linkage=method, metric="manhattan").fit(X_MIX)
    func = AgglomerativeClustering(3, linkage=method, metric=l1).fit(X_MIX[:40])
    ref = linkage(pdist(X_MIX[:40], "cityblock"), method)
    np.testing.assert_allclose(func.distances_, ref[:, 2], rtol=1e-12)
    assert named.engine_ == ("lean" if method == "single" else "fastcluster")


# ------------------------------------------------------------ engines
@pytest.mark.parametrize("method", ["single", "ward", "centroid", "median"])
def test_lean_path_equals_scipy(method):
    Z = linkage(X_MIX, method)
    model = AgglomerativeClustering(4, linkage=method, engine="lean").fit(X_MIX)
    assert model.engine_ == "lean"
    np.testing.assert_allclose(model.distances_, Z[:, 2], rtol=1e-10)
    k = 3 if method in ("centroid", "median") else 4  # 4 sits on an inversion of X_MIX's tree
    assert same_partition(model.cut(n_clusters=k), fcluster(Z, k, "maxclust"))


@pytest.mark.parametrize("metric", ["manhattan", "chebyshev", "minkowski", "cosine", "hamming"])
def test_lean_single_linkage_any_metric(metric):
    name, kw, X = METRICS[metric]
    model = AgglomerativeClustering(3, linkage="single", metric=metric, metric_params=kw or None).fit(X)
    assert model.engine_ == "lean"
    np.testing.assert_allclose(model.distances_, linkage(pdist(X, name, **kw), "single")[:, 2], rtol=1e-12)


def test_cosine_zero_rows_take_the_matrix_path():
    X = X_MIX.copy()
    X[5] = 0.0
    model = AgglomerativeClustering(3, linkage="single", metric="cosine").fit(X)
    assert model.engine_ == "fastcluster"  # fastcluster's vector cosine has no distance for 0
    D = pairwise_distances(X, metric="cosine")
    assert D[5, 7] == 1.0
    ref = linkage(D[np.triu_indices(len(X), 1)], "single")
    np.testing.assert_allclose(model.distances_, ref[:, 2], rtol=1e-12)


@pytest.mark.parametrize("method", LINKAGES)
def test_without_fastcluster_scipy_serves_every_linkage(no_fastcluster, method):
    assert hier._fastcluster() is None
    model = AgglomerativeClustering(4, linkage=method).fit(X_MIX)
    assert model.engine_ == "scipy"
    np.testing.assert_array_equal(model.linkage_matrix_, linkage(X_MIX, method))
    with pytest.raises(ImportError, match=r"pip install 'unsup\[fast\]'"):
        AgglomerativeClustering(4, linkage=method, engine="fastcluster").fit(X_MIX)


def test_fastcluster_and_scipy_give_the_same_tree(no_fastcluster):
    without = AgglomerativeClustering(5, linkage="average").fit(X_MIX)
    sys.modules.pop("fastcluster")  # back to the installed module
    with_fc = AgglomerativeClustering(5, linkage="average").fit(X_MIX)
    assert (without.engine_, with_fc.engine_) == ("scipy", "fastcluster")
    np.testing.assert_allclose(with_fc.distances_, without.distances_, rtol=1e-12)
    np.testing.assert_array_equal(with_fc.labels_, without.labels_)


# ------------------------------------------------------------ memory rule
def test_memory_error_before_allocating(monkeypatch):
    def no_matrix(*args, **kwargs):
        raise AssertionError("the condensed matrix was allocated")

    monkeypatch.setattr(hier, "condensed_distances", no_matrix)
    n = len(X_MIX)
    needed = 8 * (n * (n - 1) // 2)  # fastcluster works in place: 1x
    with pytest.raises(MemoryError, match=rf"{needed} bytes.*no memory-lean path") as info:
        AgglomerativeClustering(3, linkage="complete", memory_budget=0.01).fit(X_MIX)
    assert "memory_budget=0.01 MiB" in str(info.value)
    # scipy copies the matrix: twice the bytes.
    with pytest.raises(MemoryError, match=rf"{2 * needed} bytes"):
        AgglomerativeClustering(3, linkage="average", engine="scipy", memory_budget=0.01).fit(X_MIX)
    # A lean path exists but the matrix engine was forced: say so.
    with pytest.raises(MemoryError, match="engine='auto' or engine='lean'"):
        AgglomerativeClustering(3, linkage="ward", engine="scipy", memory_budget=0.01).fit(X_MIX)


def test_lean_path_serves_requests_over_the_budget(monkeypatch):
    monkeypatch.setattr(hier, "condensed_distances", lambda *a, **k: pytest.fail("matrix built"))
    for method in ("ward", "single", "centroid", "median"):
        model = AgglomerativeClustering(3, linkage=method, memory_budget=0.01).fit(X_MIX)
        assert model.engine_ == "lean"


def test_memory_error_without_fastcluster_says_how_to_get_the_lean_path(no_fastcluster):
    with pytest.raises(MemoryError, match=r"memory-lean path.*pip install 'unsup\[fast\]'"):
        AgglomerativeClustering(3, linkage="ward", memory_budget=0.01).fit(X_MIX)
    with pytest.raises(MemoryError, match=r"pip install 'unsup\[fast\]'"):
        AgglomerativeClustering(3, linkage="single", metric="manhattan", memory_budget=0.01).fit(X_MIX)


def test_memory_rule_at_large_n_and_default_budget():
    # One million samples: the condensed matrix alone is 4 TB; nothing is allocated.
    n = 10**6
    with pytest.raises(MemoryError, match=r"3999996000000 bytes"):
        hier.plan_engine(n, "complete", hier.get_metric("euclidean"), fastcluster_available=True)
    assert hier.plan_engine(n, "ward", hier.get_metric("euclidean"), fastcluster_available=True) == ("lean", 0)
    available = hier.available_memory()
    assert available is not None and available > 0
    assert hier.memory_budget_bytes(None) == pytest.approx(0.5 * hier.available_memory(), rel=0.05)
    assert hier.memory_budget_bytes(100) == 100 * 2**20


def test_engine_lean_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="no memory-lean path"):
        AgglomerativeClustering(3, linkage="average", engine="lean").fit(X_MIX)
    with pytest.raises(ValueError, match="Precomputed distances have no memory-lean path"):
        AgglomerativeClustering(3, linkage="single", metric="precomputed", engine="lean").fit(
            pairwise_distances(X_MIX)
        )


# ------------------------------------------------------------ scikit-learn
@pytest.mark.parametrize("method", ["ward", "complete", "average", "single"])
def test_equals_sklearn(method):
    ref = SKAgglomerative(n_clusters=4, linkage=method, compute_distances=True).fit(X_MIX)
    ours = AgglomerativeClustering(n_clusters=4, linkage=method, engine="scipy").fit(X_MIX)
    assert same_partition(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.distances_, ref.distances_, rtol=1e-10)
    np.testing.assert_array_equal(np.sort(ours.children_, axis=1), np.sort(ref.children_, axis=1))
    auto = AgglomerativeClustering(n_clusters=4, linkage=method).fit(X_MIX)
    assert same_partition(auto.labels_, ref.labels_)


@pytest.mark.parametrize("method", ["ward", "average"])
def test_distance_threshold_equals_sklearn(method):
    for t in (1.0, 3.0, 8.0):
        ref = SKAgglomerative(n_clusters=None, distance_threshold=t, linkage=method).fit(X_MIX)
        ours = AgglomerativeClustering(n_clusters=None, distance_threshold=t, linkage=method).fit(X_MIX)
        assert ours.n_clusters_ == ref.n_clusters_
        assert same_partition(ours.labels_, ref.labels_)


# ------------------------------------------------------------ cut
def test_cut_recuts_without_refitting(monkeypatch):
    model = AgglomerativeClustering(3, linkage="average").fit(X_MIX)
    monkeypatch.setattr(hier, "run_linkage", lambda *a, **k: pytest.fail("refitted"))
    Z = linkage(X_MIX, "average")
    np.testing.assert_array_equal(model.cut(n_clusters=3), model.labels_)
    for k in range(1, 12):
        assert same_partition(model.cut(n_clusters=k), fcluster(Z, k, "maxclust"))
    assert np.array_equal(model.cut(n_clusters=len(X_MIX)), np.arange(len(X_MIX)))
    heights = np.sort(Z[:, 2])
    for i in (-1, -3, -10):  # between two heights: no float tie decides
        t = (heights[i - 1] + heights[i]) / 2
        labels = model.cut(distance_threshold=t)
        ref = SKAgglomerative(n_clusters=None, distance_threshold=t, linkage="average").fit(X_MIX)
        assert same_partition(labels, ref.labels_)
    # between two heights, scipy's "distance" criterion cuts at the same place
    t = (heights[-5] + heights[-4]) / 2
    assert same_partition(model.cut(distance_threshold=t), fcluster(Z, t, "distance"))


def test_cut_validation():
    model = AgglomerativeClustering(3).fit(X_SEP)
    with pytest.raises(ValueError, match="Exactly one of n_clusters and distance_threshold"):
        model.cut()
    with pytest.raises(ValueError, match="Exactly one of n_clusters and distance_threshold"):
        model.cut(n_clusters=2, distance_threshold=1.0)
    with pytest.raises(ValueError, match="Cannot extract more clusters than samples"):
        model.cut(n_clusters=len(X_SEP) + 1)
    with pytest.raises(ValueError, match="n_clusters must be an int >= 1"):
        model.cut(n_clusters=0)
    with pytest.raises(ValueError, match="distance_threshold must be a float >= 0"):
        model.cut(distance_threshold=-1.0)


def test_fit_validation():
    with pytest.raises(ValueError, match="Exactly one of n_clusters and distance_threshold"):
        AgglomerativeClustering(n_clusters=2, distance_threshold=1.0).fit(X_SEP)
    with pytest.raises(ValueError, match="Exactly one of n_clusters and distance_threshold"):
        AgglomerativeClustering(n_clusters=None).fit(X_SEP)
    with pytest.raises(ValueError, match="Cannot extract more clusters than samples"):
        AgglomerativeClustering(n_clusters=5).fit(X_SEP[:3])
    for method in ("ward", "centroid", "median"):
        with pytest.raises(ValueError, match=rf"linkage='{method}' needs metric='euclidean'.*got metric='manhattan'"):
            AgglomerativeClustering(linkage=method, metric="manhattan").fit(X_SEP)
        with pytest.raises(ValueError, match="needs metric='euclidean'.*got metric='precomputed'"):
            AgglomerativeClustering(linkage=method, metric="precomputed").fit(pairwise_distances(X_SEP))
    # the alias of euclidean is euclidean
    AgglomerativeClustering(linkage="ward", metric="l2").fit(X_SEP)


# ------------------------------------------------------------ predict
def brute_linkage_distance(method, x, X, members, Z, head):
    """The linkage distance between {x} and the cluster headed by ``head``, from first principles."""
    d = np.sqrt(((X[members] - x) ** 2).sum(axis=1))
    if method == "single":
        return d.min()
    if method == "complete":
        return d.max()
    if method == "average":
        return d.mean()
    mean = X[members].mean(axis=0)
    if method == "centroid":
        return np.sqrt(((mean - x) ** 2).sum())
    if method == "ward":
        m = len(members)
        return np.sqrt(2.0 * m / (m + 1)) * np.sqrt(((mean - x) ** 2).sum())
    n = len(X)

    def walk(node):  # WPGMA distance / WPGMC midpoint, by their recursive definitions
        stack, weights = [(node, 1.0)], {}
        while stack:
            v, w = stack.pop()
            if v < n:
                weights[v] = w
            else:
                a, b = Z[v - n, :2].astype(int)
                stack += [(a, w / 2), (b, w / 2)]
        return weights

    weights = walk(head)
    if method == "weighted":
        return sum(w * np.sqrt(((X[i] - x) ** 2).sum()) for i, w in weights.items())
    midpoint = sum(w * X[i] for i, w in weights.items())
    return np.sqrt(((midpoint - x) ** 2).sum())


def heads_of_cut(Z, n, k):
    """Node heading each cluster when the last k - 1 merges are undone, and its members."""
    heads = set(range(n))
    for i in range(n - k):
        a, b = Z[i, :2].astype(int)
        heads -= {a, b}
        heads.add(n + i)
    result = {}
    for h in heads:
        stack, members = [h], []
        while stack:
            v = stack.pop()
            if v < n:
                members.append(v)
            else:
                stack += list(Z[v - n, :2].astype(int))
        result[h] = np.array(sorted(members))
    return result


@pytest.mark.parametrize("method", LINKAGES)
def test_predict_rule_matches_the_linkage_distance(method):
    X = X_MIX
    model = AgglomerativeClustering(n_clusters=5, linkage=method).fit(X)
    Z = model.linkage_matrix_
    Xq = np.random.default_rng(2).normal(scale=5.0, size=(30, X.shape[1]))
    heads = heads_of_cut(Z, len(X), 5)
    expected = []
    for x in Xq:
        best = min(heads, key=lambda h: brute_linkage_distance(method, x, X, heads[h], Z, h))
        expected.append(model.labels_[heads[best][0]])
    np.testing.assert_array_equal(model.predict(Xq), expected)


@pytest.mark.parametrize("method", LINKAGES)
def test_predict_gives_back_labels_on_separated_clusters(method):
    model = AgglomerativeClustering(n_clusters=3, linkage=method).fit(X_SEP)
    assert same_partition(model.labels_, Y_SEP)
    np.testing.assert_array_equal(model.predict(X_SEP), model.labels_)


@pytest.mark.parametrize("method", ["single", "complete", "average", "weighted"])
def test_predict_with_other_metrics_and_precomputed(method):
    X, Xq = X_MIX[:80], X_MIX[80:]
    named = AgglomerativeClustering(4, linkage=method, metric="manhattan").fit(X)
    pre = AgglomerativeClustering(4, linkage=method, metric="precomputed").fit(
        pairwise_distances(X, metric="manhattan")
    )
    np.testing.assert_allclose(pre.distances_, named.distances_, rtol=1e-12)
    np.testing.assert_array_equal(pre.labels_, named.labels_)
    np.testing.assert_array_equal(
        pre.predict(pairwise_distances(Xq, X, metric="manhattan")), named.predict(Xq)
    )
    if method == "single":  # nearest training point's cluster
        nearest = cdist(Xq, X, "cityblock").argmin(axis=1)
        np.testing.assert_array_equal(named.predict(Xq), named.labels_[nearest])


@pytest.mark.parametrize("method", ["average", "ward", "median"])
def test_predict_at_another_cut_equals_a_refit_at_that_cut(method):
    model = AgglomerativeClustering(2, linkage=method).fit(X_MIX)
    for k in (3, 6):
        refit = AgglomerativeClustering(k, linkage=method).fit(X_MIX)
        np.testing.assert_array_equal(model.cut(n_clusters=k), refit.labels_)
        np.testing.assert_array_equal(model.predict(X_NEW[:, :3], n_clusters=k), refit.predict(X_NEW[:, :3]))
    h = np.sort(model.distances_)
    t = float(h[-4] + h[-5]) / 2
    refit = AgglomerativeClustering(None, distance_threshold=t, linkage=method).fit(X_MIX)
    np.testing.assert_array_equal(model.predict(X_NEW[:, :3], distance_threshold=t), refit.predict(X_NEW[:, :3]))


# ------------------------------------------------------------ precomputed input
def test_precomputed_validation():
    D = pairwise_distances(X_SEP)
    model = AgglomerativeClustering(3, linkage="average", metric="precomputed")
    with pytest.raises(ValueError, match="must be square"):
        model.fit(D[:, :10])
    bad = D.copy()
    bad[0, 1] += 1.0
    with pytest.raises(ValueError, match="must be symmetric"):
        model.fit(bad)
    bad = D.copy()
    bad[2, 2] = 0.5
    with pytest.raises(ValueError, match="zero diagonal"):
        model.fit(bad)
    with pytest.raises(ValueError, match="Negative values"):
        model.fit(-D)
    fitted = model.fit(D)
    assert fitted.__sklearn_tags__().input_tags.pairwise
    with pytest.raises(ValueError, match="Negative values"):
        fitted.predict(-D[:3])


# ------------------------------------------------------------ the rest
def test_float32_gives_the_float64_tree():
    a = AgglomerativeClustering(4, linkage="complete").fit(X_MIX.astype(np.float32))
    b = AgglomerativeClustering(4, linkage="complete").fit(X_MIX.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(a.linkage_matrix_, b.linkage_matrix_)


def test_verbose_reports_stages(capsys):
    AgglomerativeClustering(3, linkage="average", verbose=1).fit(X_SEP)
    out = capsys.readouterr().out
    assert "engine 'fastcluster' on the condensed matrix" in out
    assert "condensed distances" in out and "linkage (fastcluster.linkage, average) done in" in out
    assert "cut into 3 clusters" in out
    AgglomerativeClustering(3, linkage="ward", verbose=1).fit(X_SEP)
    assert "engine 'lean' (fastcluster.linkage_vector" in capsys.readouterr().out


def test_pickle_and_pipeline():
    model = make_pipeline(StandardScaler(), AgglomerativeClustering(3, linkage="average"))
    labels = model.fit_predict(X_SEP)
    back = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(back.predict(X_SEP), labels)
    np.testing.assert_array_equal(back[-1].cut(n_clusters=2), model[-1].cut(n_clusters=2))


def test_overflowing_distances_are_refused():
    X = np.array([[1e200, 0.0], [0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="overflow the metric"):
        AgglomerativeClustering(2, linkage="complete").fit(X)


def test_fastcluster_runs_in_place_and_falls_back(monkeypatch):
    fastcluster = pytest.importorskip("fastcluster")
    ref = fastcluster.linkage(pdist(X_MIX), "average")
    with monkeypatch.context() as m:  # the C entry point, not the copying wrapper
        m.setattr(fastcluster, "linkage", lambda *a, **k: pytest.fail("fastcluster.linkage copies"))
        y = pdist(X_MIX)
        np.testing.assert_array_equal(hier._fastcluster_in_place(y, "average"), ref)
        model = AgglomerativeClustering(4, linkage="average").fit(X_MIX)
        np.testing.assert_array_equal(model.linkage_matrix_, ref)
    # if the entry point ever moves, the public function serves
    monkeypatch.setattr(hier, "_fastcluster", lambda: SimpleNamespace(linkage=fastcluster.linkage))
    model = AgglomerativeClustering(4, linkage="average", engine="fastcluster").fit(X_MIX)
    np.testing.assert_array_equal(model.linkage_matrix_, ref)
