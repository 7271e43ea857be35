"""AutoencoderEnsemble, and the neural detectors on extreme inputs, divergence and memory (issues 14, 18)."""

import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score

from unsup.neural import VAE, Autoencoder, AutoencoderEnsemble, DivergenceWarning

RNG = np.random.default_rng(0)
X = RNG.standard_normal((300, 5)) @ RNG.standard_normal((5, 8))
SMALL = dict(n_estimators=8, max_epochs=5, random_state=0)


def _outlier_data():
    rng = np.random.default_rng(1)
    inliers = rng.standard_normal((400, 2)) @ rng.standard_normal((2, 6))
    outliers = rng.uniform(-6, 6, (20, 6))
    return np.vstack([inliers, outliers]), np.r_[np.zeros(400), np.ones(20)]


def test_ensemble_finds_off_manifold_rows():
    Xo, y = _outlier_data()
    model = AutoencoderEnsemble(random_state=0).fit(Xo)
    assert roc_auc_score(y, -model.score_samples(Xo)) > 0.9
    assert np.mean(model.predict(Xo) == -1) == pytest.approx(0.1, abs=0.01)


def test_ensemble_outlier_contract_and_standardisation():
    model = AutoencoderEnsemble(**SMALL).fit(X)
    scores = model.score_samples(X)
    assert np.isclose(model.offset_, np.percentile(scores, 100 * model.contamination))
    np.testing.assert_allclose(model.decision_function(X), scores - model.offset_)
    np.testing.assert_array_equal(model.predict(X), np.where(scores - model.offset_ >= 0, 1, -1))
    # numpy oracle: each member a plain network on its own features; every squared residual divided by
    # the member's median squared residual of that feature on the training rows (all 300 rows here),
    # floored at a tenth of the member's median of those medians, and counted logarithmically above 5
    w1, b1, w2, b2, w3, b3, w4, b4 = (p.detach().numpy().astype(np.float64) for p in model._params)
    xs = (X - X.mean(axis=0)) / X.std(axis=0)
    relu = lambda a: np.maximum(a, 0.0)  # noqa: E731
    expected = np.zeros(len(X))
    compressed = 0
    for e, cols in enumerate(model.feature_masks_):
        code = relu(xs[:, cols] @ w1[e][cols] + b1[e]) @ w2[e] + b2[e]
        recon = relu(code @ w3[e] + b3[e]) @ w4[e] + b4[e]
        sq = (recon[:, cols] - xs[:, cols]) ** 2
        med = np.median(sq, axis=0)
        scale = np.maximum(med, 0.1 * np.median(med))
        np.testing.assert_allclose(model.error_scale_[e, cols], scale, rtol=1e-4)
        np.testing.assert_array_equal(model.error_scale_[e, ~cols], 1.0)
        z = sq / scale
        compressed += np.sum(z > 5)
        expected += np.where(z > 5, 5 * (1 + np.log(np.maximum(z, 5) / 5)), z).mean(axis=1) / len(model.feature_masks_)
    np.testing.assert_allclose(-scores, expected, rtol=1e-4)
    assert compressed > 0  # the oracle exercises the logarithmic part
    # members see random feature subsets of at least half the features
    assert model.feature_masks_.shape == (8, 8) and (model.feature_masks_.sum(axis=1) >= 4).all()


def test_ensemble_is_deterministic_and_pickles():
    a = AutoencoderEnsemble(**SMALL).fit(X)
    b = AutoencoderEnsemble(**SMALL).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.score_samples(X), a.score_samples(X))
    # the copy continues training exactly as the original does
    a.partial_fit(X)
    c.partial_fit(X)
    np.testing.assert_array_equal(c.score_samples(X), a.score_samples(X))


def test_ensemble_loads_a_pickle_with_one_scale_per_member():
    model = AutoencoderEnsemble(**SMALL).fit(X)
    state = pickle.loads(pickle.dumps(model)).__getstate__()
    state["error_scale_"] = np.arange(1.0, 9.0)  # an earlier version's form: (n_estimators,)
    del state["trim_fraction"]  # and before trimming: trained on the plain mean
    del state["_knee"]  # and before the logarithmic knee: plain standardised squared residuals
    old = AutoencoderEnsemble.__new__(AutoencoderEnsemble)
    old.__setstate__(state)
    assert old.error_scale_.shape == (8, 8)
    assert old.trim_fraction == 0.0 and old.get_params()["trim_fraction"] == 0.0
    model.error_scale_, model._knee = np.ones((8, 8)), None
    plain = model._member_errors_all(model._standardise(X))  # each member's mean squared residual
    np.testing.assert_allclose(-old.score_samples(X), (plain / np.arange(1.0, 9.0)).mean(axis=1), rtol=1e-12)


@pytest.mark.parametrize("trim_fraction", [0.0, 0.2, 0.5])
def test_trimmed_mean_keeps_each_members_smallest_errors(trim_fraction):
    errors = np.random.default_rng(3).random((4, 10))
    model = AutoencoderEnsemble(trim_fraction=trim_fraction)
    keep = int(np.ceil((1 - trim_fraction) * 10 - 1e-9))
    expected = np.sort(errors, axis=1)[:, :keep].mean(axis=1)
    torch = pytest.importorskip("torch")
    np.testing.assert_allclose(model._trimmed_mean(torch.from_numpy(errors)).numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("trim_fraction, same", [(0.2, True), (0.0, False)])
def test_trimmed_rows_teach_the_members_nothing(trim_fraction, same):
    """Two epochs on the same rows but one extreme row, different in each: equal weights when it is trimmed."""
    model = AutoencoderEnsemble(n_estimators=4, max_samples=64, trim_fraction=trim_fraction, random_state=0)
    model.fit(X)
    a, b = pickle.loads(pickle.dumps(model)), pickle.loads(pickle.dumps(model))
    a.partial_fit(np.vstack([X[:63], np.full((1, 8), 40.0)]))
    b.partial_fit(np.vstack([X[:63], np.full((1, 8), -90.0)]))  # 64 rows: every member's batch holds it
    equal = all(bool((p == q).all()) for p, q in zip(a._params, b._params))
    assert equal == same


def test_ensemble_partial_fit_adds_an_epoch():
    model = AutoencoderEnsemble(**SMALL)
    model.partial_fit(X[:150])
    assert model.n_iter_ == 1 and len(model.loss_curve_) == 1
    model.partial_fit(X[150:])
    assert model.n_iter_ == 2
    assert np.isfinite(model.score_samples(X)).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("make", [
    lambda: AutoencoderEnsemble(**SMALL),
    lambda: Autoencoder(hidden_layer_sizes=(8,), max_epochs=5, random_state=0),
    lambda: VAE(hidden_layer_sizes=(8,), max_epochs=5, random_state=0),
])
def test_extreme_finite_inputs_give_finite_scores_and_outliers(make):
    model = make().fit(X)
    for extreme in (X[:20] * 1e200, np.full((3, 8), 1e300), np.full((3, 8), -1e308)):
        scores = model.score_samples(extreme)
        assert np.isfinite(scores).all()
        assert (model.predict(extreme) == -1).all()
        if hasattr(model, "transform"):
            assert np.isfinite(model.transform(extreme)).all()
    # a model fitted on extreme but finite data scores it finitely
    huge = make().fit(X * 1e150) if isinstance(model, AutoencoderEnsemble) else model
    assert np.isfinite(huge.score_samples(X * 1e150)).all()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("cls", [Autoencoder, VAE, AutoencoderEnsemble])
def test_predict_never_calls_a_nan_score_an_inlier(cls, monkeypatch):
    params = SMALL if cls is AutoencoderEnsemble else dict(hidden_layer_sizes=(8,), max_epochs=3, random_state=0)
    model = cls(**params).fit(X)
    real = model.score_samples(X[:4])
    monkeypatch.setattr(model, "score_samples", lambda rows: np.where(np.arange(len(rows)) % 2 == 0, np.nan, real))
    labels = model.predict(X[:4])
    assert (labels[::2] == -1).all()


@pytest.mark.parametrize("cls", [Autoencoder, VAE])
def test_divergent_fit_warns(cls):
    with pytest.warns(DivergenceWarning, match=r"training diverged.*times that of predicting the mean.*learning_rate") as caught:
        cls(hidden_layer_sizes=(16,), learning_rate=10, max_epochs=5, early_stopping=False, random_state=0).fit(X)
    assert issubclass(DivergenceWarning, ConvergenceWarning)
    assert {w.filename for w in caught if w.category is DivergenceWarning} == {__file__}  # the user's line


def test_ordinary_fit_does_not_warn_divergence():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        Autoencoder(hidden_layer_sizes=(16,), max_epochs=5, random_state=0).fit(X)


MEMORY_SCRIPT = textwrap.dedent("""
    import resource, sys, warnings
    import numpy as np
    from unsup.neural import {cls}
    warnings.simplefilter("ignore")
    rng = np.random.default_rng(0)
    model = {cls}(n_components=2, hidden_layer_sizes=(16,), max_epochs=1, random_state=0)
    model.fit(rng.standard_normal((2000, 16)).astype(np.float32))
    X = np.empty((1_500_000, 16), dtype=np.float32)
    for start in range(0, len(X), 100_000):
        X[start:start + 100_000] = rng.standard_normal((100_000, 16))
    model.{method}(X[:5000])  # warm up allocators and kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = model.{method}(X)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print((peak - before) * 1024, out.nbytes)
""")


@pytest.mark.parametrize("cls, method", [("Autoencoder", "transform"), ("VAE", "score_samples")])
def test_inference_memory_is_the_output_plus_a_bounded_working_set(cls, method):
    # 1.5M x 16 float32 = 96 MB of input: a standardised float32 copy alone would be 96 MB more.
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT.format(cls=cls, method=method)],
                            capture_output=True, text=True, timeout=240, check=True)
    extra, output = map(int, result.stdout.split())
    assert extra <= output + 40 * 2**20, (extra, output)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize(
    "model",
    [AutoencoderEnsemble(**SMALL), Autoencoder(max_epochs=3, random_state=0), VAE(max_epochs=3, random_state=0)],
    ids=lambda m: type(m).__name__,
)
def test_model_fitted_on_cuda_loads_on_the_cpu(model):
    model.fit(X)
    expected = model.score_samples(X)
    model.device_ = "cuda"  # as pickled on a GPU machine: the state holds CPU tensors and the device's name
    with pytest.warns(UserWarning, match=f"This {type(model).__name__} was fitted on cuda, which is not available"):
        again = pickle.loads(pickle.dumps(model))
    assert again.device_ == "cpu"
    np.testing.assert_array_equal(again.score_samples(X), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again.partial_fit(X)
