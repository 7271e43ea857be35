"""unsup._sklearn_adapter: scikit-learn's private kernels behind unsup's signatures, with a fallback.

The fallback (unsup's numpy kernels) is forced with the adapter's environment
variable, or reached by making a loader fail as an upstream change would (a
missing name, a changed signature); either way the results must equal
scikit-learn's own KMeans from the same initial centres.
"""

import os
import subprocess
import sys
import warnings
from numbers import Integral

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import BisectingKMeans
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

from unsup import _sklearn_adapter as adapter
from unsup.cluster import DivisiveClustering, KMeans

X, _ = make_blobs(n_samples=500, centers=5, n_features=6, cluster_std=2.0, random_state=0)
W = np.random.default_rng(0).uniform(0.5, 2.0, size=len(X))
INIT = X[[0, 10, 20, 30, 40]]
XS = sp.random(400, 30, density=0.2, format="csr", random_state=1)
XS.data *= 5.0
INIT_S = XS[[0, 1, 2, 3]].toarray()

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def fresh():
    """Resolution forgotten before and after the test (it is cached per process)."""
    adapter._reset()
    yield
    adapter._reset()


@pytest.fixture
def forced(monkeypatch, fresh):
    monkeypatch.setenv(adapter.FALLBACK_ENV, "1")
    assert not any(adapter.native_kernels().values())


def _assert_same_kmeans(ours, ref):
    np.testing.assert_array_equal(ours.labels_, ref.labels_)
    np.testing.assert_allclose(ours.cluster_centers_, ref.cluster_centers_, rtol=1e-10, atol=1e-10)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)
    assert ours.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("data, init", [(X, INIT), (XS, INIT_S)], ids=["dense", "csr"])
@pytest.mark.parametrize("weighted", [False, True])
def test_forced_fallback_equals_scikit_learn(forced, data, init, weighted):
    w = None if not weighted else np.random.default_rng(1).uniform(0.5, 2.0, size=data.shape[0])
    ref = SKKMeans(len(init), init=init, n_init=1, tol=0).fit(data, sample_weight=w)
    ours = KMeans(len(init), init=init, n_init=1, tol=0).fit(data, sample_weight=w)
    _assert_same_kmeans(ours, ref)
    np.testing.assert_array_equal(ours.predict(data), ref.predict(data))
    assert ours.score(data) == pytest.approx(ref.score(data), rel=1e-10)


def test_forced_fallback_keeps_random_state_parity_and_divisive(forced):
    _assert_same_kmeans(KMeans(5, n_init=3, random_state=0).fit(X), SKKMeans(5, n_init=3, random_state=0).fit(X))
    ref = BisectingKMeans(5, random_state=0).fit(X)
    ours = DivisiveClustering(5, random_state=0).fit(X)
    np.testing.assert_allclose(ours.cluster_centers_[ours.labels_], ref.cluster_centers_[ref.labels_], atol=1e-10)
    assert ours.inertia_ == pytest.approx(ref.inertia_, rel=1e-10)


def test_forced_fallback_spherical_kmeans_equals_native(monkeypatch, fresh):
    native = KMeans(4, metric="cosine", random_state=0).fit(XS)
    monkeypatch.setenv(adapter.FALLBACK_ENV, "1")
    fallback = KMeans(4, metric="cosine", random_state=0).fit(XS)
    np.testing.assert_array_equal(fallback.labels_, native.labels_)
    np.testing.assert_allclose(fallback.cluster_centers_, native.cluster_centers_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("data", [X, XS], ids=["dense", "csr"])
def test_fallback_kernels_equal_native_kernels(monkeypatch, fresh, data):
    n = data.shape[0]
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=n)
    # One centre far from every point: an empty cluster, relocated to the farthest point.
    init = np.vstack([data[:3].toarray() if sp.issparse(data) else data[:3], np.full((1, data.shape[1]), 1e3)])
    results = {}
    for mode in ("native", "fallback"):
        monkeypatch.setenv(adapter.FALLBACK_ENV, "1" if mode == "fallback" else "0")
        run = adapter.lloyd(data, w, init.copy(), max_iter=50, tol=0.0, n_threads=2)
        step_labels, step_centres = adapter.lloyd_step(data, w, init.copy(), 2)
        labels, inertia = adapter.labels_inertia(data, w, run.centres, 2)
        one = adapter.inertia(data, w, run.centres, run.labels, 2, single_label=1)
        results[mode] = (run, step_labels, step_centres, labels, inertia, one)
    (run_a, sl_a, sc_a, l_a, i_a, o_a), (run_b, sl_b, sc_b, l_b, i_b, o_b) = results.values()
    np.testing.assert_array_equal(run_a.labels, run_b.labels)
    np.testing.assert_allclose(run_a.centres, run_b.centres, rtol=1e-10, atol=1e-10)
    assert run_a.inertia == pytest.approx(run_b.inertia, rel=1e-10) and run_a.n_iter == run_b.n_iter
    assert run_b.labels.dtype == np.int32 and isinstance(run_b.inertia, float)
    np.testing.assert_array_equal(sl_a, sl_b)
    np.testing.assert_allclose(sc_a, sc_b, rtol=1e-10, atol=1e-10)
    assert len(np.unique(sl_b)) == 3  # the far centre is empty after assignment ...
    assert np.abs(sc_b).max() < 100  # ... and relocated onto a data point
    np.testing.assert_array_equal(l_a, l_b)
    assert i_a == pytest.approx(i_b, rel=1e-10) and o_a == pytest.approx(o_b, rel=1e-10)
    assert 0 < o_b < i_b


def _wrong_signature(loader):
    """A loader whose object no longer takes unsup's call (a renamed keyword, as an upstream change)."""

    def load():
        obj = loader()

        def changed(*args, new_required_keyword, **kwargs):
            return obj(*args, **kwargs)

        return (changed, changed) if isinstance(obj, tuple) else changed

    return load


@pytest.mark.parametrize(
    "breakage", ["missing", "signature"], ids=["ImportError", "TypeError"]
)
def test_broken_internal_falls_back_with_one_warning(monkeypatch, fresh, breakage):
    loaders = dict(adapter._LOADERS)
    for name in (adapter._LLOYD, adapter._LABELS_INERTIA):
        if breakage == "missing":
            def load(name=name):
                from sklearn.cluster import _kmeans_renamed_upstream  # noqa: F401
            loaders[name] = load
        else:
            loaders[name] = _wrong_signature(loaders[name])
    monkeypatch.setattr(adapter, "_LOADERS", loaders)
    with pytest.warns(RuntimeWarning, match="unsup uses its own numpy kernel") as record:
        ours = KMeans(5, init=INIT, n_init=1, tol=0).fit(X, sample_weight=W)
        predicted = ours.predict(X)
    assert len(record) == 2  # one for each broken object
    np.testing.assert_array_equal(predicted, ours.labels_)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning
        again = KMeans(5, init=INIT, n_init=1, tol=0).fit(X, sample_weight=W)
    _assert_same_kmeans(ours, SKKMeans(5, init=INIT, n_init=1, tol=0).fit(X, sample_weight=W))
    _assert_same_kmeans(again, ours)
    state = adapter.native_kernels()
    assert not state[adapter._LLOYD] and state[adapter._LLOYD_ITER]


def test_fallback_validation_helpers(forced):
    native = adapter._load_sample_weight()
    for sw in (None, 2.0, W, list(W)):
        np.testing.assert_array_equal(adapter.check_sample_weight(sw, X, dtype=X.dtype), native(sw, X, dtype=X.dtype))
    assert adapter.check_sample_weight(None, X.astype(np.float32), dtype=np.float32).dtype == np.float32
    for bad in (W[:-1], W[:, None]):
        with pytest.raises(ValueError) as ours:
            adapter.check_sample_weight(bad, X, dtype=X.dtype)
        with pytest.raises(ValueError) as theirs:
            native(bad, X, dtype=X.dtype)
        # the fallback speaks as scikit-learn 1.9, which says more about the 2-D case than 1.6
        assert str(ours.value).startswith(str(theirs.value).split(",")[0])
    threads = adapter.effective_n_threads()
    assert isinstance(threads, int) and threads >= 1
    assert adapter.is_same_clustering(np.array([0, 0, 1, 2]), np.array([2, 2, 0, 1]), 3)
    assert not adapter.is_same_clustering(np.array([0, 0, 1, 2]), np.array([2, 1, 0, 1]), 3)


def test_fallback_fit_context_validates_and_skips_nested(forced):
    from sklearn import get_config
    from sklearn.base import BaseEstimator

    seen = {}

    class Est(BaseEstimator):
        _parameter_constraints = {"k": [adapter.Interval(Integral, 1, None, closed="left")]}

        def __init__(self, k=1):
            self.k = k

        @adapter.fit_context(prefer_skip_nested_validation=True)
        def fit(self, X=None):
            seen["skip"] = get_config()["skip_parameter_validation"]
            return self

    Est(k=2).fit()
    assert seen["skip"] is True and get_config()["skip_parameter_validation"] is False
    with pytest.raises(adapter.InvalidParameterError, match="The 'k' parameter of Est must be"):
        Est(k=0).fit()


def test_import_does_not_load_scikit_learns_kmeans_modules():
    # One fresh interpreter (torch's import dominates): "import unsup.neural" runs
    # unsup/__init__.py, so it imports the whole package as "import unsup" does.
    code = (
        "import sys\n"
        "import unsup.neural\n"
        "print(sorted(m for m in sys.modules if m.startswith('sklearn.cluster')))\n"
        "import unsup\n"
        "unsup.Autoencoder, unsup.KMeans, unsup.GaussianMixture  # resolving names loads nothing more\n"
        "print(sorted(m for m in sys.modules if m.startswith('sklearn.cluster')))\n"
        "unsup.KMeans(2, n_init=1).fit([[0.0], [1.0], [5.0]])\n"
        "print('sklearn.cluster._k_means_lloyd' in sys.modules)\n"
    )
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop(adapter.FALLBACK_ENV, None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env, check=True)
    # Nothing of sklearn.cluster at import; its Lloyd kernel once a KMeans is fitted.
    assert out.stdout.split("\n")[:3] == ["[]", "[]", "True"], (out.stdout, out.stderr)


@pytest.mark.skipif(
    "UNSUP_EXPECT_SKLEARN" not in os.environ, reason="set by .ci/run's run against the oldest supported scikit-learn"
)
def test_runs_against_the_expected_scikit_learn():
    import sklearn

    assert sklearn.__version__ == os.environ["UNSUP_EXPECT_SKLEARN"]
    # and its private kernels are the ones in use (no fallback needed)
    assert all(adapter.native_kernels().values()), adapter.native_kernels()
