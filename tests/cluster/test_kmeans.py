"""KMeans against its oracles: scikit-learn for euclidean, brute-force rules for the rest."""

import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SKKMeans
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import load_digits, make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from unsup.cluster import KMeans

X_BLOBS, Y_BLOBS = make_blobs(n_samples=300, centers=4, n_features=5, cluster_std=1.0, random_state=0)
X_BIN = (X_BLOBS > X_BLOBS.mean(axis=0)).astype(float)
DIGITS, DIGITS_Y = load_digits(return_X_y=True)

# metric -> (data, scipy name for the distance, the brute-force centre rule)
SCIPY = {"manhattan": "cityblock", "cosine": "cosine", "hamming": "hamming", "chebyshev": "chebyshev"}


def brute_centre(metric, members, w):
    if metric == "manhattan":
        return np.median(np.repeat(members, w.astype(int), axis=0), axis=0)
    if metric == "cosine":
        m = (w[:, None] * members / np.linalg.norm(members, axis=1, keepdims=True)).sum(axis=0)
        return m / np.linalg.norm(m)
    if metric == "hamming":
        ones = (w[:, None] * members).sum(axis=0)
        return (ones > w.sum() - ones).astype(float)
    D = cdist(members, members, SCIPY[metric])
    return members[np.argmin(D @ w)]


def data_for(metric):
    return X_BIN if metric == "hamming" else X_BLOBS


# ---------------------------------------------------------------- euclidean
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_euclidean_equals_sklearn_given_initial_centres(dtype, weighted):
    X = DIGITS.astype(dtype)
    w = np.random.default_rng(0).integers(1, 4, len(X)).astype(dtype) if weighted else None
    init = X[np.random.default_rng(1).choice(len(X), 10, replace=False)]
    ours = KMeans(10, init=init, n_init=1).fit(X, sample_weight=w)
    ref = SKKMeans(10, init=init, n_init=1).fit(X, sample_weight=w)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)
    np.testing.assert_array_equal(ours.cluster_centers_, ref.cluster_centers_)
    assert ours.n_iter_ == ref.n_iter_
    assert ours.cluster_centers_.dtype == dtype
    np.testing.assert_array_equal(ours.predict(X), ref.predict(X))
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-5)
    assert ours.score(X) == pytest.approx(ref.score(X), rel=1e-6)


@pytest.mark.parametrize("init, n_init", [("k-means++", 1), ("k-means++", 3), ("random", "auto")])
def test_euclidean_equals_sklearn_given_random_state(init, n_init):
    ours = KMeans(10, init=init, n_init=n_init, random_state=42).fit(DIGITS)
    ref = SKKMeans(10, init=init, n_init=n_init, random_state=42).fit(DIGITS)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-12)


def test_sqeuclidean_clusters_as_euclidean_and_transforms_squared():
    e = KMeans(4, random_state=0).fit(X_BLOBS)
    s = KMeans(4, metric="sqeuclidean", random_state=0).fit(X_BLOBS)
    np.testing.assert_array_equal(e.labels_, s.labels_)
    np.testing.assert_allclose(s.transform(X_BLOBS), e.transform(X_BLOBS) ** 2, rtol=1e-9)


# ------------------------------------------------------------ other metrics
@pytest.mark.parametrize("metric", ["manhattan", "cosine", "hamming", "chebyshev"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fixed_point_of_the_metric_rule(metric, weighted):
    """At convergence each centre is the brute-force rule of its members, and each
    point belongs to its nearest centre."""
    X = data_for(metric)
    w = np.random.default_rng(3).integers(1, 4, len(X)).astype(float) if weighted else np.ones(len(X))
    km = KMeans(4, metric=metric, random_state=0, max_iter=300, tol=0).fit(X, sample_weight=w)
    D = cdist(X, km.cluster_centers_, SCIPY[metric])
    assert np.all(D[np.arange(len(X)), km.labels_] <= D.min(axis=1) + 1e-12)
    assert km.inertia_ == pytest.approx((D.min(axis=1) * w).sum(), rel=1e-9)
    for j in range(4):
        members = km.labels_ == j
        expected = brute_centre(metric, X[members], w[members])
        if metric == "hamming":
            # a tie (equal weight for 0 and 1) may resolve either way; elsewhere exact
            ones = (w[members, None] * X[members]).sum(axis=0)
            untied = ~np.isclose(ones, w[members].sum() - ones)
            np.testing.assert_array_equal(km.cluster_centers_[j][untied], expected[untied])
        elif metric == "chebyshev":
            # a medoid is a member with the least total distance (ties: any of them)
            D_m = cdist(X[members], X[members], "chebyshev") @ w[members]
            own = cdist(km.cluster_centers_[j : j + 1], X[members], "chebyshev") @ w[members]
            assert own[0] == pytest.approx(D_m.min())
        else:
            np.testing.assert_allclose(km.cluster_centers_[j], expected, rtol=1e-6, atol=1e-9)


def test_centres_have_the_properties_of_their_rule():
    cos = KMeans(4, metric="cosine", random_state=0).fit(X_BLOBS)
    np.testing.assert_allclose(np.linalg.norm(cos.cluster_centers_, axis=1), 1.0)
    ham = KMeans(4, metric="hamming", random_state=0).fit(X_BIN)
    assert set(np.unique(ham.cluster_centers_)) <= {0.0, 1.0}
    cheb = KMeans(4, metric="chebyshev", random_state=0).fit(X_BLOBS)
    rows = {tuple(r) for r in X_BLOBS}
    assert all(tuple(c) in rows for c in cheb.cluster_centers_)  # medoids are members


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "hamming", "chebyshev"])
def test_sample_weight_equals_repetition(metric):
    X = data_for(metric)
    w = np.random.default_rng(0).integers(0, 3, len(X))
    init = X[[0, 50, 100, 200]]
    w[[0, 50, 100, 200]] = 1
    weighted = KMeans(4, metric=metric, init=init).fit(X, sample_weight=w)
    repeated = KMeans(4, metric=metric, init=init).fit(np.repeat(X, w, axis=0))
    np.testing.assert_allclose(weighted.cluster_centers_, repeated.cluster_centers_, rtol=1e-9)
    assert weighted.inertia_ == pytest.approx(repeated.inertia_, rel=1e-9)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "hamming", "minkowski"])
def test_dtype_preserved_and_transform_in_the_metric(metric):
    X = data_for(metric).astype(np.float32)
    params = {"p": 3} if metric == "minkowski" else None
    km = KMeans(4, metric=metric, metric_params=params, random_state=0).fit(X)
    assert km.cluster_centers_.dtype == np.float32
    T = km.transform(X)
    assert T.dtype == np.float32 and T.shape == (len(X), 4)
    scipy_name = {"euclidean": "euclidean", "minkowski": "minkowski"}.get(metric, SCIPY.get(metric))
    expected = cdist(X.astype(float), km.cluster_centers_.astype(float), scipy_name, **(params or {}))
    np.testing.assert_allclose(T, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(km.predict(X), km.labels_)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "chebyshev"])
def test_kmeans_plus_plus_in_the_metric_finds_separated_blobs(metric):
    X, y = make_blobs(n_samples=400, centers=5, cluster_std=0.4, center_box=(-20, 20), random_state=5)
    if metric == "cosine":  # blobs separated by angle
        X = X - X.mean(axis=0)
    km = KMeans(5, metric=metric, n_init=3, random_state=0).fit(X)
    assert adjusted_rand_score(y, km.labels_) > (0.6 if metric == "cosine" else 0.95)


def test_fit_predict_equals_fit_then_predict():
    for metric in ("euclidean", "manhattan", "cosine"):
        km = KMeans(4, metric=metric, random_state=1)
        np.testing.assert_array_equal(km.fit_predict(X_BLOBS), km.predict(X_BLOBS))


def test_score_is_minus_inertia():
    km = KMeans(4, metric="manhattan", random_state=0).fit(X_BLOBS)
    assert km.score(X_BLOBS) == pytest.approx(-km.inertia_)
    w = np.full(len(X_BLOBS), 2.0)
    assert km.score(X_BLOBS, sample_weight=w) == pytest.approx(-2 * km.inertia_)


def test_init_callable_and_array():
    def first_rows(X, k, random_state):
        return X[:k]

    a = KMeans(4, init=first_rows, metric="manhattan").fit(X_BLOBS)
    b = KMeans(4, init=X_BLOBS[:4], metric="manhattan").fit(X_BLOBS)
    np.testing.assert_array_equal(a.labels_, b.labels_)


def test_empty_cluster_is_reseeded():
    # One initial centre far from every point: it would stay empty.
    init = np.vstack([X_BLOBS[:3], np.full((1, 5), 1e3)])
    for metric in ("euclidean", "manhattan", "chebyshev"):
        km = KMeans(4, metric=metric, init=init).fit(X_BLOBS)
        assert len(np.unique(km.labels_)) == 4
        assert np.abs(km.cluster_centers_).max() < 100


def test_duplicates_warn_convergence():
    X = np.repeat([[0.0, 0.0], [1.0, 1.0]], 10, axis=0)
    for metric in ("euclidean", "manhattan"):
        with pytest.warns(ConvergenceWarning, match=r"Number of distinct clusters \(2\) found smaller than n_clusters \(3\)"):
            KMeans(3, metric=metric, random_state=0).fit(X)


def test_errors_in_sklearn_words():
    with pytest.raises(ValueError, match="n_samples=3 should be >= n_clusters=4"):
        KMeans(4).fit(X_BLOBS[:3])
    with pytest.raises(ValueError, match="does not match the number of clusters 4"):
        KMeans(4, init=X_BLOBS[:3]).fit(X_BLOBS)
    with pytest.raises(ValueError, match="does not match the number of features of the data 5"):
        KMeans(4, init=X_BLOBS[:4, :2]).fit(X_BLOBS)
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        KMeans(2).fit(X_BLOBS, sample_weight=-np.ones(len(X_BLOBS)))
    with pytest.raises(ValueError, match="at least one non-zero"):
        KMeans(2).fit(X_BLOBS, sample_weight=np.zeros(len(X_BLOBS)))
    with pytest.raises(ValueError, match="precomputed"):
        KMeans(2, metric="precomputed").fit(X_BLOBS)
    with pytest.raises(ValueError, match="The 'metric' parameter of KMeans must be a str among .*'cityblock'"):
        KMeans(2, metric="euclid").fit(X_BLOBS)
    with pytest.raises(ValueError, match="The 'n_clusters' parameter of KMeans must be"):
        KMeans(0).fit(X_BLOBS)
    with pytest.raises(ValueError, match="'p' parameter of minkowski"):
        KMeans(2, metric="minkowski", metric_params={"p": -1}).fit(X_BLOBS)


def test_explicit_init_with_n_init_warns():
    with pytest.warns(RuntimeWarning, match="performing only one init"):
        KMeans(4, init=X_BLOBS[:4], n_init=3).fit(X_BLOBS)


def test_minkowski_and_callable_metrics():
    mk = KMeans(4, metric="minkowski", metric_params={"p": 3}, random_state=0).fit(X_BLOBS)
    cb = KMeans(4, metric=lambda a, b: np.sum(np.abs(a - b) ** 3) ** (1 / 3), random_state=0).fit(X_BLOBS[:80])
    assert adjusted_rand_score(Y_BLOBS, mk.labels_) > 0.9
    mk80 = KMeans(4, metric="minkowski", metric_params={"p": 3}, random_state=0).fit(X_BLOBS[:80])
    np.testing.assert_array_equal(cb.labels_, mk80.labels_)


# ---------------------------------------------------------------- mini-batch
def test_partial_fit_equals_sklearn_minibatch_for_euclidean():
    init = X_BLOBS[[0, 1, 2, 3]]
    ours = KMeans(4, init=init)
    ref = MiniBatchKMeans(4, init=init, n_init=1, reassignment_ratio=0.0)
    for batch in np.array_split(X_BLOBS, 6):
        ours.partial_fit(batch)
        ref.partial_fit(batch)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-10)
    assert ours.n_steps_ == 6


def test_partial_fit_streams_exact_modes_and_normalised_means():
    init = X_BIN[[0, 1, 2]]
    km = KMeans(3, metric="hamming", init=init)
    seen_X, seen_labels = [], []
    for batch in np.array_split(X_BIN, 3):
        labels = km.predict(batch) if hasattr(km, "cluster_centers_") else None
        km.partial_fit(batch)
        seen_X.append(batch)
        seen_labels.append(labels if labels is not None else km._assign(batch)[0])
    # The first batch is assigned against the initial centres.
    seen_labels[0] = KMeans(3, metric="hamming", init=init).partial_fit(seen_X[0]).labels_
    A, L = np.vstack(seen_X), np.concatenate(seen_labels)
    for j in range(3):
        ones = A[L == j].sum(axis=0)
        untied = ones != (L == j).sum() - ones
        np.testing.assert_array_equal(km.cluster_centers_[j][untied], (ones > (L == j).sum() - ones)[untied])

    cos = KMeans(4, metric="cosine", random_state=0)
    for batch in np.array_split(X_BLOBS, 5):
        cos.partial_fit(batch)
    np.testing.assert_allclose(np.linalg.norm(cos.cluster_centers_, axis=1), 1.0)


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "hamming", "chebyshev"])
def test_minibatch_fit_close_to_full_batch(metric):
    X = data_for(metric)
    full = KMeans(4, metric=metric, n_init=3, random_state=0).fit(X)
    mini = KMeans(4, metric=metric, n_init=3, batch_size=64, random_state=0).fit(X)
    assert mini.inertia_ <= 1.15 * full.inertia_
    assert adjusted_rand_score(full.labels_, mini.labels_) > 0.6
    assert mini.n_steps_ > 0 and mini.labels_.shape == (len(X),)
    # partial_fit carries on from a mini-batch fit
    steps = mini.n_steps_
    mini.partial_fit(X[:50])
    assert mini.n_steps_ == steps + 1


@pytest.mark.parametrize("metric", ["euclidean", "manhattan", "cosine", "hamming", "chebyshev"])
def test_partial_fit_continues_from_a_full_batch_fit(metric):
    X = data_for(metric)
    km = KMeans(4, metric=metric, random_state=0).fit(X)
    before = km.cluster_centers_.copy()
    km.partial_fit(X[:30])  # 30 points against clusters of ~75: centres barely move
    moved = np.abs(km.cluster_centers_ - before).max()
    spread = np.abs(X - X.mean(axis=0)).max()
    assert moved < 0.5 * spread
    assert km.n_steps_ == 1
    if metric == "euclidean":  # exactly the running mean, each centre weighing its cluster's size
        sizes = np.bincount(KMeans(4, random_state=0).fit(X).labels_, minlength=4)
        labels = KMeans(4, random_state=0).fit(X).predict(X[:30])
        for j in range(4):
            batch = X[:30][labels == j]
            expected = (sizes[j] * before[j] + batch.sum(axis=0)) / (sizes[j] + len(batch))
            np.testing.assert_allclose(km.cluster_centers_[j], expected, rtol=1e-12)
    # A refit forgets the stream: partial_fit then starts from the new fit.
    km.fit(X)
    assert not hasattr(km, "n_steps_")
    np.testing.assert_allclose(km.cluster_centers_, before)


def test_partial_fit_checks_features_and_batch_size():
    km = KMeans(4).partial_fit(X_BLOBS[:10])
    with pytest.raises(ValueError, match="features"):
        km.partial_fit(X_BLOBS[:10, :3])
    with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=4"):
        KMeans(4).partial_fit(X_BLOBS[:2])


# ------------------------------------------------------------ contract bits
def test_pickle_round_trip():
    km = KMeans(4, metric="cosine", random_state=0).fit(X_BLOBS)
    km2 = pickle.loads(pickle.dumps(km))
    np.testing.assert_array_equal(km2.predict(X_BLOBS), km.predict(X_BLOBS))


def test_pipeline_and_grid_search():
    pipe = make_pipeline(StandardScaler(), KMeans(4, metric="manhattan", random_state=0))
    pipe.fit(X_BLOBS)
    assert pipe.predict(X_BLOBS).shape == (len(X_BLOBS),)
    assert list(pipe.get_feature_names_out()) == [f"kmeans{i}" for i in range(4)]
    search = GridSearchCV(KMeans(4, random_state=0), {"init": ["k-means++", "random"]}, cv=3)
    search.fit(X_BLOBS)
    assert search.best_params_["init"] in ("k-means++", "random")


def test_verbose_prints(capsys):
    KMeans(3, metric="manhattan", verbose=1, random_state=0).fit(X_BLOBS)
    out = capsys.readouterr().out
    assert "Initialization complete" in out and "Iteration 0, inertia" in out and "Converged" in out


def test_digits_ari_per_metric():
    """The ARIs quoted in docs/kmeans.md stay where they are (a regression guard)."""
    for metric, data, floor in [
        ("euclidean", DIGITS, 0.6),
        ("manhattan", DIGITS, 0.6),
        ("cosine", DIGITS, 0.6),
        ("hamming", (DIGITS > 7).astype(float), 0.4),
    ]:
        km = KMeans(10, metric=metric, n_init=3, random_state=0).fit(data)
        assert adjusted_rand_score(DIGITS_Y, km.labels_) > floor, metric


# -------------------------------------------------------------------- sparse
def sparse_data():
    # Two groups of "documents", each using mostly its own half of the "words".
    r = np.random.default_rng(0)
    own = np.zeros((200, 30), dtype=bool)
    own[:100, :15] = own[100:, 15:] = True
    present = r.random((200, 30)) < np.where(own, 0.4, 0.03)
    dense = r.random((200, 30)) * present
    return sp.csr_matrix(dense), dense


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sparse_euclidean_equals_sklearn(dtype):
    Xs, dense = sparse_data()
    Xs = Xs.astype(dtype)
    init = dense[:4].astype(dtype)
    ours = KMeans(4, init=init).fit(Xs)
    ref = SKKMeans(4, init=init, n_init=1).fit(Xs)
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-6)
    np.testing.assert_allclose(ours.transform(Xs), ref.transform(Xs), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours.predict(Xs), ref.predict(Xs))
    seeded = KMeans(4, n_init=2, random_state=3).fit(Xs)
    np.testing.assert_array_equal(seeded.labels_, SKKMeans(4, n_init=2, random_state=3).fit(Xs).labels_)


def test_sparse_cosine_equals_dense_cosine():
    Xs, dense = sparse_data()
    a = KMeans(2, metric="cosine", init=dense[[0, 150]]).fit(Xs)
    b = KMeans(2, metric="cosine", init=dense[[0, 150]]).fit(dense)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_allclose(a.cluster_centers_, b.cluster_centers_, rtol=1e-10)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-10)
    np.testing.assert_allclose(a.transform(Xs), b.transform(dense), atol=1e-12)
    groups = np.repeat([0, 1], 100)
    assert adjusted_rand_score(groups, KMeans(2, metric="cosine", random_state=0).fit(Xs).labels_) > 0.9
    mini = KMeans(2, metric="cosine", batch_size=50, random_state=0).fit(Xs)
    assert adjusted_rand_score(groups, mini.labels_) > 0.9


@pytest.mark.parametrize("metric", ["manhattan", "hamming", "chebyshev"])
def test_sparse_refused_where_the_rule_needs_dense(metric):
    Xs, _ = sparse_data()
    with pytest.raises(TypeError, match="Sparse data was passed for X, but dense data is required"):
        KMeans(2, metric=metric).fit(Xs)
