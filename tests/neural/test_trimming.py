"""trim_fraction: the trimmed (least-trimmed-squares) training loss of Autoencoder and VAE.

Oracles: numpy's mean of the smallest per-row losses, and planted outliers
whose reconstruction the plain mean loss learns and the trimmed loss does not.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from sklearn.utils._param_validation import InvalidParameterError

from unsup.neural import Autoencoder, VariationalAutoencoder

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.default_rng(0)
X_LOW = rng.standard_normal((300, 3)) @ rng.standard_normal((3, 8)) + 0.05 * rng.standard_normal((300, 8))
# 18 outliers (5.7 %): a tight cluster off the rank-3 subspace, which a network
# with spare capacity learns to reconstruct if it is trained on them.
OUTLIERS = 4.0 * rng.standard_normal(8) + 0.05 * rng.standard_normal((18, 8))
X = np.vstack([X_LOW, OUTLIERS])
y = np.r_[np.zeros(len(X_LOW)), np.ones(len(OUTLIERS))]


@pytest.mark.parametrize("trim_fraction", [0.0, 0.1, 0.25, 0.5])
@pytest.mark.parametrize("n", [1, 7, 64, 100])
def test_trimmed_mean_keeps_the_smallest_losses(trim_fraction, n):
    losses = torch.from_numpy(rng.standard_normal(n) ** 2)
    est = Autoencoder(trim_fraction=trim_fraction)
    keep = max(1, math.ceil(round((1 - trim_fraction) * n, 9)))
    expected = np.sort(losses.numpy())[:keep].mean()
    assert est._trimmed_mean(losses).item() == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder])
def test_trimming_keeps_planted_outliers_unlearned(cls):
    params = dict(n_components=3, hidden_layer_sizes=(32,), batch_size=64, max_epochs=150,
                  learning_rate=3e-3, early_stopping=False, random_state=0)
    if cls is VariationalAutoencoder:
        params["beta"] = 1.0
    plain = cls(trim_fraction=0.0, **params).fit(X)
    trimmed = cls(trim_fraction=0.1, **params).fit(X)
    out = len(X_LOW)
    plain_err = plain.reconstruction_error(X)[out:].mean()
    trimmed_err = trimmed.reconstruction_error(X)[out:].mean()
    assert trimmed_err > 3 * plain_err
    assert roc_auc_score(y, -trimmed.score_samples(X)) >= roc_auc_score(y, -plain.score_samples(X))
    assert roc_auc_score(y, -trimmed.score_samples(X)) > 0.99
    # the inliers are still learned: their error stays far below the outliers'
    assert trimmed.reconstruction_error(X_LOW).mean() < 0.2 * trimmed_err


@pytest.mark.parametrize("bad", [-0.1, 0.6, 1.0])
def test_trim_fraction_outside_range_is_refused(bad):
    with pytest.raises(InvalidParameterError, match="trim_fraction"):
        Autoencoder(trim_fraction=bad).fit(X_LOW)
