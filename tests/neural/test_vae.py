"""VariationalAutoencoder: posterior mean, deterministic loss scores, prior sampling, beta.

Oracle: the VAE loss written out in numpy from the fitted encoder_ and
decoder_ (half the squared error at the posterior mean plus beta times the
analytic KL divergence to N(0, I)).
"""

import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

import unsup
from unsup.neural import VAE, Autoencoder, VariationalAutoencoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.default_rng(0)
X = rng.standard_normal((240, 2)) @ rng.standard_normal((2, 6)) + 0.1 * rng.standard_normal((240, 6))
SMALL = dict(hidden_layer_sizes=(16,), batch_size=64, max_epochs=40, random_state=0)


@pytest.fixture(scope="module")
def vae():
    return VAE(2, **SMALL).fit(X)


def _by_hand(model, X):
    xs = ((X - model.mean_) / model.scale_).astype(np.float32)
    with torch.no_grad():
        out = model.encoder_(torch.from_numpy(xs)).double().numpy()
        k = model.n_components
        mu, logvar = out[:, :k], np.clip(out[:, k:], -30, 20)
        rec = model.decoder_(torch.from_numpy(mu.astype(np.float32))).double().numpy()
    reconstruction = 0.5 * ((rec - xs) ** 2).sum(axis=1)
    kl = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(axis=1)
    return mu, rec, reconstruction + model.beta * kl


def test_alias_and_exports():
    assert VAE is VariationalAutoencoder is unsup.VAE is unsup.VariationalAutoencoder
    assert unsup.Autoencoder is Autoencoder


def test_architecture(vae):
    assert vae.encoder_[-1].out_features == 4  # mean and log-variance
    assert vae.decoder_[0].in_features == 2 and vae.decoder_[-1].out_features == 6
    assert vae.beta == 3.0


def test_transform_is_the_posterior_mean(vae):
    mu, rec, _ = _by_hand(vae, X)
    np.testing.assert_allclose(vae.transform(X), mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vae.reconstruct(X), rec * vae.scale_ + vae.mean_, rtol=1e-5, atol=1e-5)


def test_score_samples_is_minus_the_loss_and_deterministic(vae):
    _, _, loss = _by_hand(vae, X)
    scores = vae.score_samples(X)
    np.testing.assert_allclose(scores, -loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(scores, vae.score_samples(X))  # no sampling at inference
    assert vae.score(X) == pytest.approx(-loss.mean(), rel=1e-5)
    assert vae.offset_ == pytest.approx(np.percentile(scores, 10))
    np.testing.assert_array_equal(vae.predict(X), np.where(scores < vae.offset_, -1, 1))


def test_reconstruction_error_is_the_mse(vae):
    _, rec, _ = _by_hand(vae, X)
    xs = (X - vae.mean_) / vae.scale_
    np.testing.assert_allclose(vae.reconstruction_error(X), ((rec - xs) ** 2).mean(axis=1), rtol=1e-4, atol=1e-6)


def test_validation_monitors_the_vae_loss(vae):
    assert len(vae.validation_scores_) == vae.n_iter_
    assert vae.best_loss_ == pytest.approx(-max(vae.validation_scores_))


def test_sample(vae):
    a = vae.sample(500, random_state=0)
    assert a.shape == (500, 6) and a.dtype == np.float64
    np.testing.assert_array_equal(a, vae.sample(500, random_state=0))
    assert not np.array_equal(a, vae.sample(500, random_state=1))
    # decoded prior draws land on the data's scale: per-feature means within a third of a std
    assert np.all(np.abs(a.mean(axis=0) - X.mean(axis=0)) < X.std(axis=0) / 3)
    z = torch.randn((500, 2), generator=torch.Generator().manual_seed(int(np.random.RandomState(0).randint(2**31 - 1))))
    with torch.no_grad():
        expected = vae.decoder_(z).double().numpy() * vae.scale_ + vae.mean_
    np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="n_samples must be a positive int"):
        vae.sample(0)


def test_beta_trades_kl_for_reconstruction():
    def kl_and_error(beta):
        model = VAE(2, beta=beta, **SMALL).fit(X)
        mu, _, loss = _by_hand(model, X)
        err = model.reconstruction_error(X).mean()
        kl = (loss - 0.5 * model.reconstruction_error(X) * X.shape[1]) / beta
        return kl.mean(), err

    kl_low, err_low = kl_and_error(0.5)
    kl_high, err_high = kl_and_error(8.0)
    assert kl_high < kl_low and err_high > err_low


def test_same_random_state_same_model():
    a, b = VAE(2, **SMALL).fit(X), VAE(2, **SMALL).fit(X)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(X))
    c = VAE(2, **{**SMALL, "random_state": 1}).fit(X)
    assert not np.array_equal(a.transform(X), c.transform(X))


def test_outliers_score_low():
    Xo = np.vstack([X, 4 * rng.standard_normal((10, 6))])
    y = np.r_[np.zeros(len(X)), np.ones(10)]
    model = VAE(2, **{**SMALL, "max_epochs": 80}).fit(Xo)
    assert roc_auc_score(y, -model.score_samples(Xo)) > 0.95


def test_pickle_round_trip(vae):
    again = pickle.loads(pickle.dumps(vae))
    for method in ("transform", "score_samples", "reconstruct"):
        np.testing.assert_array_equal(getattr(again, method)(X), getattr(vae, method)(X))
    np.testing.assert_array_equal(again.sample(5, random_state=3), vae.sample(5, random_state=3))


def test_partial_fit():
    model = VAE(2, hidden_layer_sizes=(16,), learning_rate=1e-2, random_state=0)
    for _ in range(20):
        model.partial_fit(X)
    assert model.n_iter_ == 20 and model.loss_curve_[-1] < model.loss_curve_[0]


@pytest.mark.parametrize("kind", ["sparse", "denoising"])
def test_kinds(kind):
    model = VAE(2, kind=kind, sparsity=0.1, **SMALL).fit(X)
    assert np.all(np.isfinite(model.score_samples(X)))
