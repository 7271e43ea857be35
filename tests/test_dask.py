"""The Dask engine, against a real ``LocalCluster`` (2 worker processes) and the threaded scheduler.

Oracles: the in-memory (numpy) methods and fits of the same estimators on the
same rows. Arrays are small so that all of this runs in seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from unsup import (  # noqa: E402
    VAE,
    AgglomerativeClustering,
    Autoencoder,
    AutoencoderEnsemble,
    DivisiveClustering,
    GaussianMixture,
    KMeans,
    QuantizedEmbedding,
    Quantizer,
)
from unsup._dask import kmeans_parallel_init  # noqa: E402

RNG = np.random.RandomState(0)
CENTRES = np.array([[0.0, 0.0, 0.0, 0.0], [6.0, 6.0, 0.0, 0.0], [0.0, 6.0, 6.0, 0.0]])
X = np.vstack([RNG.randn(300, 4) + c for c in CENTRES]) + 3.0
W = RNG.uniform(0.2, 3.0, len(X))
CHUNKS = (250, 4)


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes, one thread each; shut down after the module."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dashboard port may be taken by a neighbour
        lc = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None,
            memory_limit="1GiB",
        )
    client = distributed.Client(lc, set_as_default=False)
    yield lc, client
    client.close()
    lc.close()


@pytest.fixture(params=["threads", "distributed"])
def scheduler(request):
    # Tests parametrise it indirectly where one engine path is enough on the cluster.
    """Computations of the test go to the threaded scheduler or to the LocalCluster."""
    if request.param == "threads":
        with dask.config.set(scheduler="threads"):
            yield request.param
    else:
        _, client = request.getfixturevalue("cluster")
        with dask.config.set(scheduler=client):
            yield request.param


def _dask(A, chunks=CHUNKS):
    return da.from_array(A, chunks=chunks if A.ndim == 2 else chunks[:1])


def _rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


def test_import_unsup_does_not_import_dask():
    code = "import sys, unsup; assert 'dask' not in sys.modules, sorted(m for m in sys.modules if 'dask' in m)"
    subprocess.run([sys.executable, "-c", code], check=True, env=dict(os.environ))


# ---------------------------------------------------------------- prediction
def _fitted():
    Xs = X[::4]
    ae = dict(hidden_layer_sizes=(8,), max_epochs=3, batch_size=64, random_state=0)
    return [
        (KMeans(3, random_state=0).fit(Xs), ("predict", "transform", "score")),
        (KMeans(3, metric="manhattan", random_state=0).fit(Xs), ("predict", "transform", "score")),
        (GaussianMixture(3, random_state=0).fit(Xs), ("predict", "predict_proba", "score_samples", "score")),
        (AgglomerativeClustering(3).fit(Xs), ("predict",)),
        (DivisiveClustering(3, random_state=0).fit(Xs), ("predict",)),
        (
            Autoencoder(2, **ae).fit(Xs),
            ("transform", "score_samples", "decision_function", "predict", "reconstruct",
             "reconstruction_error", "score"),
        ),
        (VAE(2, **ae).fit(Xs), ("transform", "score_samples", "predict", "score")),
        (AutoencoderEnsemble(random_state=0).fit(Xs), ("score_samples", "decision_function", "predict")),
        (Quantizer(n_bits=8).fit(Xs), ("transform",)),
        (QuantizedEmbedding(n_bits=4).fit(Xs), ("transform", "score")),
    ]


@pytest.mark.parametrize("estimator,methods", _fitted(), ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else "")
def test_prediction_is_lazy_and_equals_numpy(estimator, methods, scheduler):
    D = _dask(X)
    for name in methods:
        lazy = getattr(estimator, name)(D)
        assert isinstance(lazy, da.Array), name
        expected = getattr(estimator, name)(X)
        got = lazy.compute()
        if name == "score":
            assert lazy.shape == ()
            np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=name)
        else:
            assert got.dtype == np.asarray(expected).dtype, name
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_inverse_transform_over_blocks():
    ae = Autoencoder(2, hidden_layer_sizes=(8,), max_epochs=3, random_state=0).fit(X)
    q = Quantizer(n_bits=8).fit(X)
    with dask.config.set(scheduler="threads"):
        Z = ae.transform(X)
        np.testing.assert_allclose(ae.inverse_transform(_dask(Z, (250, 2))).compute(), ae.inverse_transform(Z), rtol=1e-5)
        C = q.transform(X)
        np.testing.assert_array_equal(q.inverse_transform(_dask(C)).compute(), q.inverse_transform(C))


def test_estimator_enters_the_graph_once():
    km = KMeans(3, random_state=0).fit(X)
    graph = dict(km.predict(_dask(X)).__dask_graph__())
    shipped = [k for k in graph if isinstance(k, str) and k.startswith("unsup-KMeans")]
    assert len(shipped) == 1
    import pickle

    size = len(pickle.dumps(km))
    import cloudpickle

    block_tasks = [v for k, v in graph.items() if isinstance(k, tuple) and k[0].startswith("_apply_block")]
    assert len(block_tasks) == 4
    assert all(len(cloudpickle.dumps(t)) < size for t in block_tasks)  # a reference, not a copy


def test_nothing_is_computed_until_asked():
    def boom():
        raise RuntimeError("the data were computed")

    D = da.from_delayed(dask.delayed(boom)(), shape=X.shape, dtype=X.dtype)
    km = KMeans(3, random_state=0).fit(X)
    gm = GaussianMixture(3, random_state=0).fit(X)
    lazy = [km.predict(D), km.transform(D), km.score(D), gm.predict_proba(D), gm.score(D)]
    with dask.config.set(scheduler="sync"), pytest.raises(RuntimeError, match="computed"):
        lazy[0].compute()


def test_weighted_scores():
    km = KMeans(3, random_state=0).fit(X)
    gm = GaussianMixture(3, random_state=0).fit(X)
    with dask.config.set(scheduler="threads"):
        np.testing.assert_allclose(km.score(_dask(X), sample_weight=W).compute(), km.score(X, sample_weight=W), rtol=1e-10)
        np.testing.assert_allclose(gm.score(_dask(X), sample_weight=_dask(W)).compute(), gm.score(X, sample_weight=W), rtol=1e-10)


def test_dask_dataframe_input():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=list("abcd"))
    ddf = dd.from_pandas(frame, npartitions=3)
    km = KMeans(3, random_state=0).fit(frame)
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(km.predict(ddf).compute(), km.predict(frame))
        with pytest.raises(ValueError, match="feature names should match"):
            km.predict(ddf.rename(columns={"a": "z"}))
        with pytest.raises(ValueError, match="numeric columns only"):
            km.predict(ddf.assign(e="text"))
        fitted = KMeans(3, init=X[[0, 300, 600]], n_init=1).fit(ddf)
        assert list(fitted.feature_names_in_) == list("abcd")


def test_wrong_number_of_features():
    km = KMeans(3, random_state=0).fit(X)
    with pytest.raises(ValueError, match="features"):
        km.predict(_dask(X[:, :3], (250, 3)))


# ------------------------------------------------------------------- KMeans
@pytest.mark.parametrize(
    "metric,scheduler",
    [("euclidean", "threads"), ("sqeuclidean", "threads"), ("cosine", "threads"), ("hamming", "threads"),
     ("euclidean", "distributed"), ("cosine", "distributed")],
    indirect=["scheduler"],
)
def test_kmeans_fit_equals_in_memory_from_the_same_centres(metric, scheduler):
    A = np.round(X) if metric == "hamming" else X
    init = A[[0, 400, 800]] + 0.5
    ref = KMeans(3, metric=metric, init=init, n_init=1).fit(A, sample_weight=W)
    got = KMeans(3, metric=metric, init=init, n_init=1).fit(_dask(A), sample_weight=W)
    assert _rel(ref.cluster_centers_, got.cluster_centers_) <= 1e-10
    assert isinstance(got.labels_, da.Array)
    np.testing.assert_array_equal(got.labels_.compute(), ref.labels_)
    assert got.n_iter_ == ref.n_iter_
    np.testing.assert_allclose(got.inertia_, ref.inertia_, rtol=1e-10)
    np.testing.assert_allclose(got._cluster_weights, ref._cluster_weights, rtol=1e-10)


def test_kmeans_empty_cluster_is_relocated_as_in_memory():
    init = np.vstack([X[[0, 400]], [[1e3, 1e3, 1e3, 1e3]]])  # the third centre attracts nobody
    ref = KMeans(3, init=init, n_init=1).fit(X)
    with dask.config.set(scheduler="threads"):
        got = KMeans(3, init=init, n_init=1).fit(_dask(X))
    assert _rel(ref.cluster_centers_, got.cluster_centers_) <= 1e-10
    np.testing.assert_array_equal(got.labels_.compute(), ref.labels_)


def test_kmodes_empty_cluster_and_far_rows_as_in_memory(monkeypatch):
    # hamming (k-modes) relocates an empty cluster's centre onto the farthest row, as the in-memory fit;
    # blocks of 250 rows read in slices of 64 here, so the farthest rows are merged across slices too
    from unsup import _dask as unsup_dask

    A = np.round(X)
    init = np.vstack([A[[0, 400]], [[99.0, 99.0, 99.0, 99.0]]])  # the third centre attracts nobody
    ref = KMeans(3, metric="hamming", init=init, n_init=1).fit(A, sample_weight=W)
    monkeypatch.setattr(unsup_dask, "_SUB_ROWS", 64)
    with dask.config.set(scheduler="threads"):
        got = KMeans(3, metric="hamming", init=init, n_init=1).fit(_dask(A), sample_weight=W)
    np.testing.assert_array_equal(got.cluster_centers_, ref.cluster_centers_)
    np.testing.assert_array_equal(got.labels_.compute(), ref.labels_)
    assert got.n_iter_ == ref.n_iter_


def test_kmeans_parallel_init_weights_and_quality(scheduler):
    km = KMeans(3, init="k-means||", random_state=0).fit(_dask(X))
    ref = KMeans(3, random_state=0).fit(X)
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-6)  # both find the three blobs
    # Rows of zero weight are never candidates, so never centres: a far blob
    # of weightless rows stays unclustered.
    far = np.vstack([X, RNG.randn(200, 4) + 100.0])
    w = np.concatenate([W, np.zeros(200)])
    km = KMeans(3, init="k-means||", max_iter=1, random_state=0).fit(_dask(far), sample_weight=w)
    assert np.all(np.abs(km.cluster_centers_) < 50)
    # Step 7: the candidate weights are the weights of the rows nearest to each.
    spec = ("raw", np.zeros(4), np.float64, "euclidean", {})
    blocks = [(X[:450], W[:450], 0), (X[450:], W[450:], 450)]
    centres = kmeans_parallel_init(blocks, spec, 3, np.random.RandomState(0), metric="euclidean", metric_params=None)
    assert centres.shape == (3, 4)
    assert sorted(np.argmin(((centres[:, None] - (CENTRES + 3.0)) ** 2).sum(-1), axis=1)) == [0, 1, 2]


def test_kmeans_parallel_init_in_memory():
    km = KMeans(3, init="k-means||", random_state=0).fit(X, sample_weight=W)
    ref = KMeans(3, random_state=0).fit(X, sample_weight=W)
    np.testing.assert_allclose(km.inertia_, ref.inertia_, rtol=1e-6)


@pytest.mark.parametrize("part", ["first pass", "cost", "oversample", "candidate weights", "lloyd", "modes"])
def test_block_passes_keep_their_temporaries_small(part):
    # A worker holds a few blocks: each pass over a block reads it in slices, so its
    # temporaries stay well under the block (a 1M x 32 float32 block's first pass
    # made 768 MB of float64 copies, k-means|| a centred copy of the block).
    import tracemalloc

    from unsup import _dask

    X = np.random.default_rng(0).standard_normal((1_000_000, 16), dtype=np.float32)
    spec = ("center", X.mean(axis=0), np.float32, "euclidean", {})
    C = np.ascontiguousarray(X[:8] - spec[1])
    run = {
        "first pass": lambda: _dask._first_pass_block(X, None, 0),
        "cost": lambda: _dask._cost_block(X, None, 0, spec, C),
        "oversample": lambda: _dask._oversample_block(X, None, 0, spec, C, 1e9, 8.0, 0, 0),
        "candidate weights": lambda: _dask._candidate_weights_block(X, None, 0, spec, C),
        "lloyd": lambda: _dask._lloyd_block(X, None, 0, spec, C),
        # k-modes (hamming) over small integer codes: the codes, labels and flat counts index
        # were each as large as the block or larger (n x d int64) before it read slices
        "modes": lambda: _dask._modes_block(
            codes, None, 0, ("as is", np.zeros(16, np.float32), np.float32, "hamming", {}), codes[:8], 64
        ),
    }[part]
    codes = np.round(X) if part == "modes" else None
    tracemalloc.start()
    try:
        run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.5 * X.nbytes, f"{part}: {peak / 2**20:.1f} MiB for a {X.nbytes / 2**20:.1f} MiB block"


def test_em_block_holds_one_centred_copy():
    # A Gaussian mixture's block pass centres the block once (EMData.X); nothing else
    # of the block's size (|X| for the noise floor was a second copy).
    import tracemalloc

    from unsup import _dask

    X = np.random.default_rng(0).standard_normal((500_000, 16))
    tracemalloc.start()
    try:
        _dask._radius_block(X, None, 0, "full", 4, X.mean(axis=0))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.25 * X.nbytes, f"{peak / 2**20:.1f} MiB for a {X.nbytes / 2**20:.1f} MiB block"


def test_kmeans_median_metric_runs_mini_batch_with_a_warning():
    with dask.config.set(scheduler="threads"), pytest.warns(UserWarning, match="mini-batch"):
        km = KMeans(3, metric="manhattan", random_state=0).fit(_dask(X))
    ref = KMeans(3, metric="manhattan", random_state=0).fit(X)
    assert km.inertia_ <= 1.05 * ref.inertia_


def test_kmeans_bad_weights_and_sizes():
    with dask.config.set(scheduler="threads"):
        with pytest.raises(ValueError, match="Negative values"):
            KMeans(3).fit(_dask(X), sample_weight=-W)
        with pytest.raises(ValueError, match="n_samples=2 should be >= n_clusters=3"):
            KMeans(3).fit(_dask(X[:2]))
        with pytest.raises(ValueError, match="NaN"):
            KMeans(3).fit(_dask(np.where(X > 8, np.nan, X)))


# --------------------------------------------------------- GaussianMixture
@pytest.mark.parametrize(
    "covariance_type,scheduler",
    [("full", "threads"), ("tied", "threads"), ("diag", "threads"), ("spherical", "threads"),
     ("full", "distributed")],
    indirect=["scheduler"],
)
def test_gmm_fit_equals_in_memory_from_the_same_parameters(covariance_type, scheduler):
    start = GaussianMixture(3, covariance_type=covariance_type, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start.fit(X)
    params = dict(weights_init=start.weights_, means_init=start.means_ + 0.5, precisions_init=start.precisions_)
    ref = GaussianMixture(3, covariance_type=covariance_type, tol=1e-6, **params).fit(X, sample_weight=W)
    got = GaussianMixture(3, covariance_type=covariance_type, tol=1e-6, **params).fit(_dask(X), sample_weight=W)
    assert got.n_iter_ == ref.n_iter_
    assert abs(got.lower_bound_ - ref.lower_bound_) <= 1e-8
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert _rel(getattr(ref, name), getattr(got, name)) <= 1e-8, name
    np.testing.assert_array_equal(got.labels_.compute(), ref.labels_)


def test_gmm_kmeans_initialisation_through_dask():
    with dask.config.set(scheduler="threads"):
        got = GaussianMixture(3, random_state=0).fit(_dask(X))
        labels = got.fit_predict(_dask(X))
    ref = GaussianMixture(3, random_state=0).fit(X)
    np.testing.assert_allclose(got.lower_bound_, ref.lower_bound_, rtol=1e-6)  # the same optimum
    assert isinstance(labels, da.Array)


@pytest.mark.parametrize("init_params", ["k-means++", "random_from_data"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("weighted", [False, True])
def test_gmm_seed_row_initialisations_equal_the_in_memory_fit(init_params, covariance_type, weighted):
    """The same seed rows from the same random stream: the same initial and fitted parameters."""
    sw = W if weighted else None
    kw = dict(init_params=init_params, covariance_type=covariance_type, random_state=0)
    # two initialisations without EM: the second draws where the first left the stream; then
    # EM from one (two runs that reach the same optimum would tie on their lower bounds)
    for max_iter, n_init in ((0, 2), (5, 1)):
        with dask.config.set(scheduler="threads"), warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            got = GaussianMixture(3, max_iter=max_iter, n_init=n_init, tol=0.0, **kw).fit(
                _dask(X), sample_weight=None if sw is None else _dask(sw)
            )
            ref = GaussianMixture(3, max_iter=max_iter, n_init=n_init, tol=0.0, **kw).fit(X, sample_weight=sw)
        for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            assert _rel(getattr(ref, name), getattr(got, name)) <= 1e-8, (max_iter, name)
        if max_iter:
            assert abs(got.lower_bound_ - ref.lower_bound_) <= 1e-8


def test_gmm_kmeanspp_seeds_in_the_metric_on_dask(scheduler):
    """k-means++ in another metric's cost (manhattan): the in-memory seeds, found pass by pass."""
    kw = dict(init_params="k-means++", metric="manhattan", random_state=3, max_iter=0)
    got = GaussianMixture(4, **kw).fit(_dask(X, (100, 4)))
    ref = GaussianMixture(4, **kw).fit(X)
    np.testing.assert_allclose(got.means_, ref.means_, rtol=1e-12)


# ------------------------------------------------------------- hierarchies
@pytest.mark.parametrize("Estimator", [AgglomerativeClustering, DivisiveClustering])
def test_hierarchical_fit_refuses_with_a_way_forward(Estimator):
    with pytest.raises(TypeError, match="Fit on a sample.*predict"):
        Estimator(n_clusters=3).fit(_dask(X))
    with pytest.raises(TypeError, match="Fit on a sample"):
        Estimator(n_clusters=3).fit_predict(_dask(X))


# ---------------------------------------------------------------- Quantizer
def test_quantizer_calibrates_block_by_block():
    D = _dask(X)
    with dask.config.set(scheduler="threads"):
        q = Quantizer(n_bits=8, observer="minmax").fit(D)
        stream = Quantizer(n_bits=8, observer="minmax")
        for start in range(0, len(X), CHUNKS[0]):
            stream.partial_fit(X[start : start + CHUNKS[0]])
    np.testing.assert_array_equal(q.scale_, Quantizer(n_bits=8).fit(X).scale_)
    np.testing.assert_array_equal(q.scale_, stream.scale_)
    assert q.n_samples_seen_ == len(X)


# ------------------------------------------------------ QuantizedEmbedding
@pytest.mark.parametrize("n_bits", [8, 4, 1])
@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_quantized_embedding_calibrates_block_by_block(n_bits, scheme, scheduler):
    """min-max calibration is exact block by block: the codes equal the in-memory fit's."""
    kw = dict(n_bits=n_bits, scheme=scheme, granularity="per_channel", observer="minmax")
    ref = QuantizedEmbedding(**kw).fit(X)
    qe = QuantizedEmbedding(**kw).fit(_dask(X))
    np.testing.assert_array_equal(qe.codes_, ref.codes_)
    assert qe.compression_ratio_ == ref.compression_ratio_ and qe.n_features_in_ == 4
    if n_bits == 1:
        np.testing.assert_allclose(qe.threshold_, ref.threshold_, rtol=1e-12)
        np.testing.assert_allclose(qe.levels_, ref.levels_, rtol=1e-12)
    else:
        np.testing.assert_array_equal(qe.quantizer_.scale_, ref.quantizer_.scale_)
    np.testing.assert_array_equal(qe.embedding_, ref.embedding_)  # keep_float=True: gathered, as in memory
    np.testing.assert_array_equal(qe.kneighbors(n_neighbors=3)[1], ref.kneighbors(n_neighbors=3)[1])
    lean = QuantizedEmbedding(**kw, keep_float=False).fit(_dask(X))
    assert lean.embedding_ is None
    np.testing.assert_array_equal(lean.codes_, ref.codes_)
    np.testing.assert_array_equal(qe.fit_transform(_dask(X)), ref.codes_)
    lazy = qe.transform(_dask(X))
    assert isinstance(lazy, da.Array)
    np.testing.assert_array_equal(lazy.compute(), ref.transform(X))


def test_quantized_embedding_observer_sees_the_blocks_as_partial_fit_batches():
    """Calibration streams the blocks (the moving average moves per block), not the whole array."""
    kw = dict(n_bits=8, scheme="symmetric", observer="moving_average", granularity="per_channel")
    with dask.config.set(scheduler="threads"):
        qe = QuantizedEmbedding(**kw).fit(_dask(X))
    stream = Quantizer(8, observer="moving_average", granularity="per_channel", axis=1)
    for start in range(0, len(X), CHUNKS[0]):
        stream.partial_fit(X[start : start + CHUNKS[0]])
    np.testing.assert_array_equal(qe.quantizer_.scale_, stream.scale_)
    assert not np.array_equal(qe.quantizer_.scale_, QuantizedEmbedding(**kw).fit(X).quantizer_.scale_)


def test_quantized_embedding_fits_an_unsup_encoder_on_the_blocks():
    with dask.config.set(scheduler="threads"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        qe = QuantizedEmbedding(Autoencoder(2, hidden_layer_sizes=(8,), max_epochs=2, random_state=0)).fit(_dask(X))
    assert qe.codes_.shape == (len(X), 2)
    # the codes are the quantizer's codes of the fitted encoder's latents
    np.testing.assert_array_equal(qe.codes_, qe.quantizer_.transform(qe.encoder_.transform(X)))


def test_quantized_embedding_on_dask_refuses_an_encoder_that_would_pull_the_array_whole():
    from sklearn.decomposition import PCA

    with dask.config.set(scheduler="threads"):
        with pytest.raises(TypeError, match="PCA cannot fit on a dask array"):
            QuantizedEmbedding(PCA(2)).fit(_dask(X))
        qe = QuantizedEmbedding(n_bits=8).fit(X)
        codes = qe.codes_.copy()
        Xnan = X.copy()
        Xnan[700, 1] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            qe.fit(_dask(Xnan))
        with pytest.raises(ValueError, match="NaN"):
            QuantizedEmbedding(n_bits=1).fit(_dask(Xnan))
    np.testing.assert_array_equal(qe.codes_, codes)  # a failed fit leaves the fitted state


# ------------------------------------------------------- a worker killed
def test_worker_killed_mid_fit_retries_and_completes(cluster):
    lc, client = cluster
    start = GaussianMixture(3, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start.fit(X)
    params = dict(weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_)
    gm = GaussianMixture(3, tol=0.0, max_iter=15, **params)
    D = _dask(X, (150, 4)).map_blocks(_slow_lambda(), dtype=X.dtype)
    outcome = {}

    def fit():
        try:
            with dask.config.set(scheduler=client), warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm.fit(D)
            outcome["done"] = True
        except Exception as exc:  # pragma: no cover - the assertion below says which
            outcome["error"] = exc

    thread = threading.Thread(target=fit)
    thread.start()
    time.sleep(1.0)
    assert thread.is_alive()  # the fit is under way
    victim = next(iter(lc.workers.values()))
    os.kill(victim.process.process.pid, signal.SIGKILL)  # a worker process this fixture started
    thread.join(timeout=120)
    assert not thread.is_alive()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = GaussianMixture(3, tol=0.0, max_iter=15, **params).fit(X)
    if "error" in outcome:  # the fit may only fail as a whole, leaving nothing behind
        assert not hasattr(gm, "means_"), outcome["error"]
    else:
        assert abs(gm.lower_bound_ - ref.lower_bound_) <= 1e-8
        assert _rel(ref.means_, gm.means_) <= 1e-8


def test_failed_fit_keeps_the_previous_state():
    km = KMeans(3, init=X[[0, 400, 800]], n_init=1).fit(X)
    before = {k: np.copy(v) for k, v in vars(km).items() if k.endswith("_") and isinstance(v, np.ndarray)}

    def fails_late(block, block_info=None):
        if block_info[0]["chunk-location"][0] == 3:
            raise OSError("block 3 is unreadable")
        return block

    D = _dask(X).map_blocks(fails_late, dtype=X.dtype)
    with dask.config.set(scheduler="threads"), pytest.raises(OSError, match="unreadable"):
        km.fit(D)
    for name, value in before.items():
        np.testing.assert_array_equal(getattr(km, name), value)
    gm = GaussianMixture(3, random_state=0).fit(X)
    means = gm.means_.copy()
    with dask.config.set(scheduler="threads"), pytest.raises(OSError, match="unreadable"):
        gm.fit(D)
    np.testing.assert_array_equal(gm.means_, means)


def _slow_lambda():
    # A lambda is pickled by value, so worker processes need not import this test module.
    return lambda block: (time.sleep(0.05), block)[1]


def test_refit_on_numpy_after_dask_is_the_numpy_fit():
    with dask.config.set(scheduler="threads"):
        km = KMeans(3, random_state=0).fit(_dask(X))
    km.fit(X)
    ref = clone(km).fit(X)
    np.testing.assert_array_equal(km.labels_, ref.labels_)


@pytest.mark.parametrize("observer", ["moving_average", "percentile", "mse", "entropy"])
def test_quantizer_observers_stream_the_blocks(observer):
    """Every observer sees the blocks as ``partial_fit`` batches: the histogram ones merge them."""
    with dask.config.set(scheduler="threads"):
        q = Quantizer(n_bits=8, observer=observer, granularity="per_channel", axis=1).fit(_dask(X))
    stream = Quantizer(n_bits=8, observer=observer, granularity="per_channel", axis=1)
    for start in range(0, len(X), CHUNKS[0]):
        stream.partial_fit(X[start : start + CHUNKS[0]])
    np.testing.assert_array_equal(q.scale_, stream.scale_)
    np.testing.assert_array_equal(q.zero_point_, stream.zero_point_)
    if observer == "percentile":
        # The documented bound of merged histograms: each end of the range is
        # within one bin of the histogram of all rows at once, so the
        # asymmetric range (255 scale) within two.
        kw = dict(n_bits=8, observer=observer, scheme="asymmetric", granularity="per_channel", axis=1)
        with dask.config.set(scheduler="threads"):
            merged = Quantizer(**kw).fit(_dask(X))
        whole = Quantizer(**kw).fit(X)
        width = np.maximum(merged.observer_.hist_width, whole.observer_.hist_width)
        np.testing.assert_array_less(np.abs(merged.scale_ - whole.scale_) * 255, 2 * width + 1e-12)


@pytest.mark.parametrize("Estimator", [Autoencoder, VAE])
def test_neural_fit_streams_the_blocks(Estimator):
    rng = np.random.RandomState(1)
    Z = rng.randn(1200, 2)
    A = np.hstack([Z, Z @ rng.randn(2, 4)]) + 0.05 * rng.randn(1200, 6)
    params = dict(hidden_layer_sizes=(16,), max_epochs=4, scale=True, random_state=0)
    with dask.config.set(scheduler="threads"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        streamed = Estimator(2, **params).fit(_dask(A, (400, 6)))
        whole = Estimator(2, **params).fit(A)
    # Scaling from the whole array (a first pass), not from one block.
    np.testing.assert_allclose(streamed.mean_, A.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(streamed.scale_, A.std(axis=0), rtol=1e-12)
    assert len(streamed.loss_curve_) == streamed.n_iter_ == len(streamed.validation_scores_)
    assert streamed.n_features_in_ == 6
    # The same model quality as the in-memory fit (the same epochs over the same rows).
    assert streamed.score(A) >= whole.score(A) - 0.5 * abs(whole.score(A))
    np.testing.assert_allclose(np.mean(streamed.predict(A) == -1), streamed.contamination, atol=0.01)


def test_neural_fit_on_dask_centres_without_scaling():
    """scale=False (the Autoencoder's default) centres on the whole array's mean, from the first pass."""
    A = np.random.RandomState(2).randn(800, 5) * [1.0, 2.0, 3.0, 4.0, 5.0] + 7.0
    with dask.config.set(scheduler="threads"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae = Autoencoder(2, hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(_dask(A, (300, 5)))
    np.testing.assert_allclose(ae.mean_, A.mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(ae.scale_, 1.0)


# ------------------------------------------------------------ command line
def test_cli_reads_several_files_on_a_scheduler(cluster, tmp_path, capsys):
    from unsup.cli import main

    lc, _ = cluster
    for i in range(3):
        np.save(tmp_path / f"part{i}.npy", X[i * 300 : (i + 1) * 300])
    pattern = str(tmp_path / "part*.npy")
    out = tmp_path / "labels.npz"
    assert main(["cluster", pattern, "-k", "3", "--scheduler", lc.scheduler_address, "-q", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "900 samples -> 3 clusters" in printed
    saved = np.load(out)
    ref = KMeans(3, random_state=0, init=saved["cluster_centers"], n_init=1).fit(X)
    np.testing.assert_array_equal(saved["labels"], ref.labels_)  # a fixed point of the in-memory fit
    codes = tmp_path / "codes.npy"
    files = [str(tmp_path / f"part{i}.npy") for i in range(3)]
    assert main(["compress", *files, "--scheduler", lc.scheduler_address, "-q", "-o", str(codes)]) == 0
    q = Quantizer(n_bits=8, scheme="asymmetric", granularity="per_channel", axis=1)
    for i in range(3):
        q.partial_fit(X[i * 300 : (i + 1) * 300])
    np.testing.assert_array_equal(np.load(codes), q.transform(X))
    np.save(tmp_path / "narrow.npy", X[:10, :3])
    assert main(["cluster", files[0], str(tmp_path / "narrow.npy"), "-k", "2", "-q"]) == 2
    assert "different numbers of columns" in capsys.readouterr().err


def test_cli_local_cluster_leaves_the_environment_as_it_found_it(tmp_path, monkeypatch):
    """A nanny sets OMP_NUM_THREADS=1 and more in the process that runs it: the command puts them back."""
    from unsup.cli import main

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)  # (the module's own LocalCluster fixture left them set)
    monkeypatch.setenv("PYTHONHASHSEED", "123")
    files = []
    for i in range(2):
        files.append(str(tmp_path / f"part{i}.npy"))
        np.save(files[-1], X[i * 300 : (i + 1) * 300])
    before = dict(os.environ)
    codes = tmp_path / "codes.npy"
    assert main(["compress", *files, "-q", "-o", str(codes)]) == 0  # no --scheduler: a LocalCluster of its own
    assert np.load(codes).shape == (600, X.shape[1])
    after = dict(os.environ)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} - {"PYTEST_CURRENT_TEST"}
    assert not changed, {k: (before.get(k), after.get(k)) for k in changed}


def test_cli_detect_on_several_files(cluster, tmp_path, capsys):
    """The Dask path trains the model asked for, streaming the blocks, and refuses what it cannot do."""
    from unsup.cli import main

    lc, _ = cluster
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"part{i}.npy"))
        np.save(files[-1], X[i * 300 : (i + 1) * 300])
    out = tmp_path / "scores.npz"
    argv = ["detect", *files, "--model", "autoencoder", "--max-epochs", "2", "--scheduler", lc.scheduler_address]
    assert main([*argv, "-o", str(out)]) == 0
    assert "Autoencoder: 90 of 900 rows flagged" in capsys.readouterr().out
    saved = np.load(out)
    assert saved["score"].shape == (900,) and saved["outlier"].sum() == 90
    # the default ensemble cannot stream: said, not replaced by another model
    assert main(["detect", *files, "--scheduler", lc.scheduler_address, "-q"]) == 2
    assert "--model ensemble needs all the rows in one process" in capsys.readouterr().err
    assert main([*argv, "-q", "--save-model", str(tmp_path / "m.joblib")]) == 2
    assert "--save-model is not available with several files" in capsys.readouterr().err
    assert not (tmp_path / "m.joblib").exists()


def test_cli_files_of_a_dask_array_get_the_single_file_checks(tmp_path):
    from unsup.cli import InputError
    from unsup.cli._dask import load_dask

    good = str(tmp_path / "good.npy")
    np.save(good, X[:10])
    np.savez(tmp_path / "archive.npz", X[:10])
    (tmp_path / "archive.npz").rename(tmp_path / "archive.npy")
    np.save(tmp_path / "empty.npy", np.zeros((0, X.shape[1])))
    np.save(tmp_path / "complex.npy", X[:10] + 1j)
    for name, message in [
        ("archive.npy", "is an .npz archive, expected a single .npy array"),
        ("empty.npy", "no data rows"),
        ("complex.npy", "complex values, expected real numbers"),
    ]:
        with pytest.raises(InputError, match=message):
            load_dask([good, str(tmp_path / name)])


def test_cli_scale_on_a_scheduler(cluster, tmp_path, capsys):
    """--scale over several files: StandardScaler's arithmetic block by block, then the same KMeans."""
    from sklearn.preprocessing import StandardScaler

    from unsup.cli import main

    lc, _ = cluster
    wide = X * np.array([1.0, 1.0, 1.0, 1000.0])  # one feature in other units
    files = []
    for i in range(3):
        files.append(str(tmp_path / f"part{i}.npy"))
        np.save(files[-1], wide[i * 300 : (i + 1) * 300])
    out = tmp_path / "scaled.npz"
    assert main(["cluster", *files, "-k", "3", "--scale", "--scheduler", lc.scheduler_address, "-q", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "kmeans (euclidean, standardised): 900 samples -> 3 clusters" in printed and "hint:" not in printed
    saved = np.load(out)
    scaler = StandardScaler().fit(wide)
    np.testing.assert_allclose(saved["scale_mean"], scaler.mean_, rtol=1e-12)
    np.testing.assert_allclose(saved["scale_std"], scaler.scale_, rtol=1e-12)
    ref = KMeans(3, init=saved["cluster_centers"], n_init=1).fit(scaler.transform(wide))
    np.testing.assert_array_equal(saved["labels"], ref.labels_)  # a fixed point of the in-memory fit


def test_blas_threads_are_restored_after_threaded_tasks():
    from threadpoolctl import threadpool_info

    def blas():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas()
    km = KMeans(3, random_state=0).fit(X)
    with dask.config.set(scheduler="threads", num_workers=4):
        km.predict(_dask(X, (100, 4))).compute()
        KMeans(3, init=X[[0, 400, 800]], n_init=1).fit(_dask(X, (100, 4)))
    assert blas() == before
