"""Autoencoder: the transformer and outlier contracts, kinds, determinism, pickling, model selection.

Oracles: scikit-learn's PCA (a linear autoencoder reaches PCA's reconstruction
error; a nonlinear one beats it on a curved manifold), numpy percentiles for
``offset_``, and the estimator's own modules evaluated by hand.
"""

import pickle
import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

import unsup
from unsup.neural import Autoencoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.default_rng(0)
# Rank-3 data in 8 dimensions, plus a little noise.
X_LOW = rng.standard_normal((240, 3)) @ rng.standard_normal((3, 8)) + 0.05 * rng.standard_normal((240, 8))
# A curve (1 degree of freedom) in 6 dimensions: PCA(1) cannot follow it.
t = rng.uniform(-2, 2, 400)
X_CURVE = np.column_stack([t, t**2, np.sin(2 * t), np.cos(t), t**3 / 4, np.tanh(t)]) + 0.01 * rng.standard_normal((400, 6))
# Standardised inputs (scale=True, not the default) and the default plain loss.
SMALL = dict(hidden_layer_sizes=(16,), max_epochs=30, scale=True, random_state=0)


def _fit(**params):
    return Autoencoder(**{**SMALL, **params}).fit(X_LOW)


@pytest.fixture(scope="module")
def fitted():
    return _fit(n_components=3)


# -------------------------------------------------------------- the modules
def test_architecture_mirrors(fitted):
    enc = [m for m in fitted.encoder_ if isinstance(m, torch.nn.Linear)]
    dec = [m for m in fitted.decoder_ if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in enc] == [(8, 16), (16, 3)]
    assert [(m.in_features, m.out_features) for m in dec] == [(3, 16), (16, 8)]
    assert all(p.dtype == torch.float32 for p in fitted.encoder_.parameters())
    assert fitted.latent_quantizer_ is None and fitted.quantized_bits_ is None
    n_params = sum(p.numel() for m in (fitted.encoder_, fitted.decoder_) for p in m.parameters())
    assert fitted.model_size_bytes_ == 4 * n_params
    assert fitted.device_ == "cpu"


def test_transform_is_the_encoder_and_inverse_the_decoder(fitted):
    Z = fitted.transform(X_LOW)
    xs = torch.from_numpy(((X_LOW - fitted.mean_) / fitted.scale_).astype(np.float32))
    with torch.no_grad():
        np.testing.assert_allclose(Z, fitted.encoder_(xs).numpy(), rtol=1e-5, atol=1e-6)
        dec = fitted.decoder_(torch.from_numpy(Z.astype(np.float32))).numpy()
    np.testing.assert_allclose(fitted.inverse_transform(Z), dec * fitted.scale_ + fitted.mean_, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fitted.reconstruct(X_LOW), fitted.inverse_transform(Z), rtol=1e-5, atol=1e-5)
    err = np.mean(((fitted.reconstruct(X_LOW) - X_LOW) / fitted.scale_) ** 2, axis=1)
    np.testing.assert_allclose(fitted.reconstruction_error(X_LOW), err, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_preserved(fitted, dtype):
    X = X_LOW.astype(dtype)
    assert fitted.transform(X).dtype == dtype
    assert fitted.reconstruct(X).dtype == dtype
    assert fitted.inverse_transform(fitted.transform(X)).dtype == dtype
    assert fitted.score_samples(X).dtype == np.float64


def test_inverse_transform_checks_the_code_width(fitted):
    with pytest.raises(ValueError, match="X has 2 features, but Autoencoder is expecting 3 features"):
        fitted.inverse_transform(np.zeros((4, 2)))


def test_scale_false_uses_raw_units():
    ae = _fit(n_components=3, scale=False)
    np.testing.assert_allclose(ae.mean_, X_LOW.mean(axis=0))  # centred only
    np.testing.assert_array_equal(ae.scale_, 1.0)
    err = np.mean((ae.reconstruct(X_LOW) - X_LOW) ** 2, axis=1)
    np.testing.assert_allclose(ae.reconstruction_error(X_LOW), err, rtol=1e-4, atol=1e-6)


def test_constant_column_is_not_divided_by_zero():
    X = np.column_stack([X_LOW[:, :4], np.full(len(X_LOW), 7.0)])
    ae = Autoencoder(**SMALL).fit(X)
    assert ae.scale_[-1] == 1.0 and ae.mean_[-1] == 7.0
    for out in (ae.transform(X), ae.reconstruct(X), ae.score_samples(X)):
        assert np.all(np.isfinite(out))


# --------------------------------------------------------- quality oracles
def test_linear_autoencoder_reaches_pca():
    """No hidden layer, identity activation: the optimum is PCA's subspace (error within 5 %)."""
    Xs = StandardScaler().fit_transform(X_LOW)
    pca = PCA(2).fit(Xs)
    pca_err = np.mean((pca.inverse_transform(pca.transform(Xs)) - Xs) ** 2)
    ae = Autoencoder(2, hidden_layer_sizes=(), activation="identity", learning_rate=1e-2,
                     max_epochs=300, n_iter_no_change=20, scale=True, random_state=0).fit(X_LOW)
    assert np.mean(ae.reconstruction_error(X_LOW)) <= 1.05 * pca_err


def test_default_scaling_reaches_pca_in_the_units_of_x():
    """scale=False (the default): the loss is PCA's, in X's own units, columns of unequal spread."""
    X = X_LOW * np.array([0.2, 0.5, 1.0, 2.0, 4.0, 1.0, 0.3, 3.0]) + 5.0
    pca = PCA(2).fit(X)
    pca_err = np.mean((pca.inverse_transform(pca.transform(X)) - X) ** 2)
    ae = Autoencoder(2, hidden_layer_sizes=(), activation="identity", learning_rate=1e-2,
                     max_epochs=300, n_iter_no_change=20, random_state=0).fit(X)
    assert np.mean((ae.reconstruct(X) - X) ** 2) <= 1.05 * pca_err
    assert np.allclose(ae.reconstruction_error(X), np.mean((ae.reconstruct(X) - X) ** 2, axis=1), rtol=1e-4)
    # standardised training optimises another loss: worse in X's units
    scaled = Autoencoder(2, hidden_layer_sizes=(), activation="identity", learning_rate=1e-2,
                         max_epochs=300, n_iter_no_change=20, scale=True, random_state=0).fit(X)
    assert np.mean((scaled.reconstruct(X) - X) ** 2) > 1.2 * pca_err


def test_unscaled_columns_near_float32_max_share_one_divisor():
    """scale=False keeps X's units: columns near 1e38 are divided by one power of two inside the
    network (float32 squares would overflow), and the errors are reported in X's units."""
    X = X_LOW * np.array([1e37, 1e36, 1.0, 1.0, 1.0, 1.0, 1.0, 1e30]) + 1e36
    ae = Autoencoder(3, hidden_layer_sizes=(16,), max_epochs=30, random_state=0).fit(X)
    c = ae.scale_[0]
    assert np.all(ae.scale_ == c) and c == 2.0 ** np.ceil(np.log2(np.max(X.std(axis=0))))
    err = ae.reconstruction_error(X)
    assert np.all(np.isfinite(err)) and np.all(np.isfinite(ae.score_samples(X)))
    np.testing.assert_allclose(err, np.mean((ae.reconstruct(X) - X) ** 2, axis=1), rtol=1e-3)
    # ordinary spreads are not divided at all
    assert np.all(Autoencoder(3, hidden_layer_sizes=(16,), max_epochs=2, random_state=0).fit(X_LOW).scale_ == 1.0)


def test_nonlinear_beats_pca_on_a_curve():
    Xs = StandardScaler().fit_transform(X_CURVE)
    pca = PCA(1).fit(Xs)
    pca_err = np.mean((pca.inverse_transform(pca.transform(Xs)) - Xs) ** 2)
    ae = Autoencoder(1, hidden_layer_sizes=(32, 16), learning_rate=3e-3, max_epochs=150,
                     random_state=0).fit(X_CURVE)
    assert np.mean(ae.reconstruction_error(X_CURVE)) < 0.3 * pca_err


def test_planted_outliers_score_lowest():
    X = np.vstack([X_LOW, rng.standard_normal((12, 8)) * 3])  # off the rank-3 subspace
    y = np.r_[np.zeros(len(X_LOW)), np.ones(12)]
    ae = Autoencoder(3, **{**SMALL, "max_epochs": 60}).fit(X)
    assert roc_auc_score(y, -ae.score_samples(X)) > 0.95


# --------------------------------------------------------- outlier contract
@pytest.mark.parametrize("contamination", [0.05, 0.1, 0.5])
def test_outlier_contract(contamination):
    ae = _fit(n_components=2, contamination=contamination)
    scores = ae.score_samples(X_LOW)
    np.testing.assert_allclose(scores, -ae.reconstruction_error(X_LOW))
    assert ae.offset_ == pytest.approx(np.percentile(scores, 100 * contamination))
    np.testing.assert_allclose(ae.decision_function(X_LOW), scores - ae.offset_)
    pred = ae.predict(X_LOW)
    np.testing.assert_array_equal(pred, np.where(scores < ae.offset_, -1, 1))
    assert abs(np.mean(pred == -1) - contamination) <= 1 / len(X_LOW)
    assert ae.score(X_LOW) == pytest.approx(np.mean(scores))
    np.testing.assert_array_equal(clone(ae).fit_predict(X_LOW), pred)


def test_contamination_outside_range_is_refused():
    with pytest.raises(InvalidParameterError, match="contamination"):
        Autoencoder(contamination=0.6).fit(X_LOW)


# ------------------------------------------------------------------- kinds
def test_sparse_kind_shrinks_the_code():
    plain = _fit(n_components=6, max_epochs=40)
    sparse = _fit(n_components=6, max_epochs=40, kind="sparse", sparsity=0.5)
    assert np.mean(np.abs(sparse.transform(X_LOW))) < 0.5 * np.mean(np.abs(plain.transform(X_LOW)))


def test_denoising_without_noise_is_undercomplete():
    a = _fit(n_components=3, kind="denoising", noise=0.0)
    b = _fit(n_components=3)
    np.testing.assert_array_equal(a.transform(X_LOW), b.transform(X_LOW))
    c = _fit(n_components=3, kind="denoising", noise=0.3)
    assert not np.array_equal(a.transform(X_LOW), c.transform(X_LOW))


@pytest.mark.parametrize("corruption, noise", [("gaussian", 0.3), ("masking", 0.25)])
def test_denoising_removes_noise(corruption, noise):
    ae = _fit(n_components=3, kind="denoising", corruption=corruption, noise=noise,
              learning_rate=3e-3, max_epochs=150, trim_fraction=0.0)
    if corruption == "gaussian":
        noisy = X_LOW + 0.3 * ae.scale_ * rng.standard_normal(X_LOW.shape)
    else:  # masked entries are set to the training mean, as in training
        noisy = np.where(rng.uniform(size=X_LOW.shape) < noise, ae.mean_, X_LOW)
    rec = ae.reconstruct(noisy)
    # the rank-3 denoiser removes most of the corruption
    assert np.mean(((rec - X_LOW) / ae.scale_) ** 2) < 0.6 * np.mean(((noisy - X_LOW) / ae.scale_) ** 2)


def test_masking_noise_must_be_a_fraction():
    with pytest.raises(ValueError, match="fraction of inputs masked"):
        Autoencoder(kind="denoising", corruption="masking", noise=1.0).fit(X_LOW)


@pytest.mark.parametrize("bad", [(0,), (4, -1), (2.5,), "wide"])
def test_bad_hidden_layer_sizes(bad):
    with pytest.raises((ValueError, InvalidParameterError), match="hidden_layer_sizes"):
        Autoencoder(hidden_layer_sizes=bad).fit(X_LOW)


def test_int_hidden_layer_sizes():
    ae = Autoencoder(hidden_layer_sizes=5, max_epochs=2, random_state=0).fit(X_LOW)
    assert ae.encoder_[0].out_features == 5


# ------------------------------------------------------- training bookkeeping
def test_early_stopping_attributes():
    ae = _fit(n_components=3, max_epochs=200, n_iter_no_change=5)
    assert ae.n_iter_ == len(ae.loss_curve_) == len(ae.validation_scores_) < 200
    assert ae.best_loss_ == pytest.approx(-max(ae.validation_scores_))
    no_es = _fit(n_components=3, early_stopping=False, max_epochs=20)
    assert no_es.validation_scores_ == [] and no_es.best_loss_ == pytest.approx(min(no_es.loss_curve_))


def test_partial_fit_continues_training():
    ae = Autoencoder(3, hidden_layer_sizes=(16,), learning_rate=1e-2, scale=True, random_state=0)
    ae.partial_fit(X_LOW)
    first = ae.reconstruction_error(X_LOW).mean()
    np.testing.assert_allclose(ae.mean_, X_LOW.mean(axis=0))
    for _ in range(15):
        ae.partial_fit(X_LOW[:120])
        ae.partial_fit(X_LOW[120:])
    assert ae.n_iter_ == len(ae.loss_curve_) == 31
    assert ae.reconstruction_error(X_LOW).mean() < 0.5 * first
    assert ae.offset_ == pytest.approx(np.percentile(ae.score_samples(X_LOW[120:]), 10))
    with pytest.raises(ValueError, match="X has 4 features"):
        ae.partial_fit(X_LOW[:, :4])


def test_partial_fit_after_fit_keeps_the_adam_state():
    ae = _fit(n_components=3, max_epochs=10, early_stopping=False)
    n = ae.n_iter_
    ae.partial_fit(X_LOW)
    assert ae.n_iter_ == n + 1
    assert ae._optimizer_state["state"][0]["step"].item() > 10 * np.ceil(len(X_LOW) / 64) - 1


# ------------------------------------------------------------ determinism
def test_same_random_state_same_model():
    a, b = _fit(n_components=2, dropout=0.2), _fit(n_components=2, dropout=0.2)
    for p, q in zip(a.encoder_.parameters(), b.encoder_.parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(a.transform(X_LOW), b.transform(X_LOW))
    c = _fit(n_components=2, dropout=0.2, random_state=1)
    assert not np.array_equal(a.transform(X_LOW), c.transform(X_LOW))


def test_outputs_independent_of_the_batch(fitted):
    full = fitted.transform(X_LOW)
    rows = np.vstack([fitted.transform(X_LOW[i : i + 1]) for i in range(0, 40)])
    np.testing.assert_array_equal(full[:40], rows)
    np.testing.assert_array_equal(fitted.score_samples(X_LOW)[:7], fitted.score_samples(X_LOW[:7]))


# ------------------------------------------------------------ sklearn glue
def test_feature_names_and_pandas_output(fitted):
    pd = pytest.importorskip("pandas")
    np.testing.assert_array_equal(fitted.get_feature_names_out(), ["autoencoder0", "autoencoder1", "autoencoder2"])
    ae = clone(fitted).set_output(transform="pandas").fit(pd.DataFrame(X_LOW, columns=list("abcdefgh")))
    out = ae.transform(pd.DataFrame(X_LOW, columns=list("abcdefgh")))
    assert isinstance(out, pd.DataFrame) and list(out.columns) == ["autoencoder0", "autoencoder1", "autoencoder2"]


def test_grid_search_picks_the_rank_without_labels():
    grid = GridSearchCV(
        Autoencoder(hidden_layer_sizes=(16,), max_epochs=40, random_state=0),
        {"n_components": [1, 3], "kind": ["undercomplete", "denoising"]},
        cv=3,
    ).fit(X_LOW)
    assert grid.best_params_["n_components"] == 3
    assert grid.best_score_ == pytest.approx(np.max(grid.cv_results_["mean_test_score"]))


def test_in_a_pipeline():
    pipe = make_pipeline(Autoencoder(2, **SMALL), unsup.KMeans(3, random_state=0)).fit(X_LOW)
    assert pipe.predict(X_LOW).shape == (len(X_LOW),)


# -------------------------------------------------------------- pickling
def test_pickle_round_trip_identical(fitted):
    again = pickle.loads(pickle.dumps(fitted))
    for method in ("transform", "reconstruct", "score_samples", "predict", "decision_function"):
        np.testing.assert_array_equal(getattr(again, method)(X_LOW), getattr(fitted, method)(X_LOW))
    assert all(p.device.type == "cpu" for p in again.encoder_.parameters())


def test_pickle_keeps_the_random_stream():
    a = _fit(n_components=2, max_epochs=3, early_stopping=False)
    b = pickle.loads(pickle.dumps(a))
    a.partial_fit(X_LOW)
    b.partial_fit(X_LOW)
    np.testing.assert_array_equal(a.transform(X_LOW), b.transform(X_LOW))


def test_state_is_cpu_tensors(fitted):
    state = fitted.__getstate__()
    assert "_generator" not in state and "_generator_states" in state
    tensors = [t for m in ("encoder_", "decoder_") for t in state[m].state_dict().values()]
    assert all(t.device.type == "cpu" for t in tensors)


# ---------------------------------------------------------------- devices
def test_device_auto_and_cuda_refusal():
    ae = Autoencoder(device="auto", **SMALL).fit(X_LOW)
    assert ae.device_ == ("cuda:0" if torch.cuda.is_available() else "cpu") or ae.device_ == "cuda"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            Autoencoder(device="cuda", **SMALL).fit(X_LOW)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_and_pickles_to_cpu():
    cpu = _fit(n_components=3)
    gpu = _fit(n_components=3, device="cuda")
    assert next(gpu.encoder_.parameters()).is_cuda
    assert np.mean(gpu.reconstruction_error(X_LOW)) < 2 * np.mean(cpu.reconstruction_error(X_LOW)) + 0.05
    again = pickle.loads(pickle.dumps(gpu))
    np.testing.assert_allclose(again.transform(X_LOW), gpu.transform(X_LOW), rtol=1e-6, atol=1e-6)
    state = gpu.__getstate__()
    assert all(t.device.type == "cpu" for t in state["encoder_"].state_dict().values())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gpu.partial_fit(X_LOW)


def test_not_fitted():
    from sklearn.exceptions import NotFittedError

    for method in ("transform", "inverse_transform", "reconstruct", "reconstruction_error", "score_samples", "predict"):
        with pytest.raises(NotFittedError):
            getattr(Autoencoder(), method)(X_LOW)
    with pytest.raises(NotFittedError):
        Autoencoder().quantize(X_LOW)


def test_fit_returns_self_and_warns_when_epochs_run_out():
    ae = Autoencoder(hidden_layer_sizes=(4,), max_epochs=2, random_state=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ae.fit(X_LOW) is ae
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
