"""Quantization through the estimators: quantize(X_calibration) (PTQ) and qat= (QAT).

On load_digits / 16 with an 80/20 split: the post-training int8 model keeps
the held-out latent codes within 2 % and takes at most 0.3x the bytes; a
4-bit QAT model reconstructs within 10 % of the float model's held-out
error, where 4 bits applied after training (to the whole model, or to the
float model's codes alone) do worse.
"""

import copy
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.utils.validation import check_is_fitted

from unsup.neural import Autoencoder, VariationalAutoencoder
from unsup.quantization.nn import FakeQuantLinear, LatentFakeQuantize, QuantizedLinear
from unsup.quantization import Quantizer

X = load_digits().data / 16
X_train, X_test = train_test_split(X, test_size=0.2, random_state=0)

# Small enough to train in a few seconds, wide enough for the QAT/PTQ contrast.
# Clean digits: the plain mean loss (trim_fraction=0), so the comparisons are of quantization alone;
# standardised pixels (scale=True), whose rare ink values make 4-bit post-training ranges coarse.
PARAMS = dict(n_components=8, hidden_layer_sizes=(64, 32), max_epochs=40, trim_fraction=0.0, scale=True, random_state=0)


def _mse(a, b):
    return float(np.mean((a - b) ** 2))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _layers(module, cls):
    return [m for m in module.modules() if isinstance(m, cls)]


@pytest.fixture(scope="module")
def float_model():
    return Autoencoder(**PARAMS).fit(X_train)


@pytest.fixture(scope="module")
def int8_model(float_model):
    return float_model.quantize(X_train, n_bits=8)


def test_quantize_returns_a_fitted_estimator_running_the_int8_model(float_model, int8_model):
    q = int8_model
    assert type(q) is Autoencoder and q is not float_model
    check_is_fitted(q)
    assert q.get_params() == float_model.get_params()
    # the float model is untouched; the copy runs integer weights
    assert all(type(m) is torch.nn.Linear for m in _layers(float_model.encoder_, torch.nn.Linear))
    for module in (q.encoder_, q.decoder_):
        layers = _layers(module, QuantizedLinear)
        assert len(layers) == 3 and not _layers(module, torch.nn.Linear)
        assert all(layer.weight_codes.dtype == torch.int8 for layer in layers)
    Z, Z_q = float_model.transform(X_test), q.transform(X_test)
    assert Z_q.shape == Z.shape and not np.array_equal(Z_q, Z)
    np.testing.assert_array_equal(q.transform(X_test), Z_q)  # deterministic
    X_rec, X_rec_q = float_model.inverse_transform(Z), q.inverse_transform(Z)
    assert X_rec_q.shape == X_test.shape and not np.array_equal(X_rec_q, X_rec)
    assert _rel(X_rec_q, X_rec) < 0.02
    scores, scores_q = float_model.score_samples(X_test), q.score_samples(X_test)
    assert not np.array_equal(scores_q, scores)
    np.testing.assert_allclose(scores_q, -q.reconstruction_error(X_test))
    assert abs(scores_q.mean() / scores.mean() - 1) < 0.02
    assert set(np.unique(q.predict(X_test))) <= {-1, 1}


def test_int8_latent_error_and_size(float_model, int8_model):
    rel = _rel(int8_model.transform(X_test), float_model.transform(X_test))
    assert rel < 0.02, f"held-out latent relative error {rel:.4f}"
    assert int8_model.model_size_bytes_ < float_model.model_size_bytes_


@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder])
def test_int8_model_is_at_most_0_3_of_the_float_bytes(cls):
    # With the default architecture (64-128-64-code): the int8 codes, plus a
    # float32 scale and bias per output channel and a float32 scale and uint8
    # zero point per input feature. The size does not depend on training.
    model = cls(n_components=8, max_epochs=1, random_state=0).fit(X_train[:200])
    q = model.quantize(X_train[:200])
    assert q.model_size_bytes_ <= 0.3 * model.model_size_bytes_
    linears = _layers(model.encoder_, torch.nn.Linear) + _layers(model.decoder_, torch.nn.Linear)
    n_weights = sum(m.weight.numel() for m in linears)
    assert model.model_size_bytes_ > 4 * n_weights and q.model_size_bytes_ > n_weights


def test_quantized_estimator_pickles(int8_model):
    clone = pickle.loads(pickle.dumps(int8_model))
    np.testing.assert_array_equal(clone.transform(X_test), int8_model.transform(X_test))
    np.testing.assert_array_equal(clone.score_samples(X_test), int8_model.score_samples(X_test))
    np.testing.assert_array_equal(copy.deepcopy(int8_model).transform(X_test[:5]), int8_model.transform(X_test[:5]))


def test_model_pickled_before_the_move_to_quantization_nn_loads(int8_model):
    # Pickles made before issue 19 name the layer classes as unsup.neural._quantize.<class>
    # (protocol 2 writes each class as a newline-ended GLOBAL, so the module can be renamed in place).
    data = pickle.dumps(int8_model, protocol=2)
    assert b"cunsup.quantization.nn\n" in data
    old = data.replace(b"cunsup.quantization.nn\n", b"cunsup.neural._quantize\n")
    assert b"cunsup.quantization.nn\n" not in old
    clone = pickle.loads(old)
    assert isinstance(_layers(clone.encoder_, QuantizedLinear)[0], QuantizedLinear)
    np.testing.assert_array_equal(clone.transform(X_test), int8_model.transform(X_test))


def test_vae_quantize_keeps_the_posterior_mean_close():
    vae = VariationalAutoencoder(**{**PARAMS, "max_epochs": 15}).fit(X_train)
    q = vae.quantize(X_train)
    assert type(q) is VariationalAutoencoder
    assert len(_layers(q.encoder_, QuantizedLinear)) == 3
    assert _rel(q.transform(X_test), vae.transform(X_test)) < 0.03
    np.testing.assert_array_equal(q.score_samples(X_test), q.score_samples(X_test))
    assert q.sample(4, random_state=0).shape == (4, 64)


@pytest.fixture(scope="module")
def qat_models():
    return {
        weights: Autoencoder(**PARAMS, qat={"n_bits": 4, "latent": True, "weights": weights}).fit(X_train)
        for weights in (False, True)
    }


@pytest.mark.parametrize("weights", [False, True])
def test_4bit_qat_reconstructs_within_10_percent_where_4bit_ptq_does_worse(float_model, qat_models, weights):
    float_error = _mse(float_model.reconstruct(X_test), X_test)
    qat = qat_models[weights]
    assert isinstance(qat.latent_quantizer_, LatentFakeQuantize) and qat.latent_quantizer_.n_bits == 4
    assert len(_layers(qat.encoder_, FakeQuantLinear)) == (3 if weights else 0)
    # the QAT model's codes sit on a 4-bit grid: at most 16 levels per feature
    codes = qat.transform(X_test)
    assert max(len(np.unique(codes[:, j])) for j in range(codes.shape[1])) <= 16
    qat_error = _mse(qat.reconstruct(X_test), X_test)
    assert qat_error <= 1.10 * float_error, (qat_error, float_error)

    # Post-training 4 bits on the same float model do worse:
    # (a) the whole model quantized to 4 bits (weights and activations),
    ptq_error = _mse(float_model.quantize(X_train, n_bits=4).reconstruct(X_test), X_test)
    # (b) only the float model's codes quantized to 4 bits per feature, calibrated on the training codes.
    latent_q = Quantizer(4, scheme="asymmetric", granularity="per_channel").fit(float_model.transform(X_train))
    codes_4bit = latent_q.inverse_transform(latent_q.transform(float_model.transform(X_test)))
    latent_error = _mse(float_model.inverse_transform(codes_4bit), X_test)
    assert ptq_error > 1.10 * float_error and ptq_error > qat_error
    assert latent_error > 1.10 * float_error and latent_error > qat_error


def test_a_qat_model_quantizes_onto_its_own_grid(qat_models):
    qat = qat_models[True]
    q = qat.quantize(X_train, n_bits=4)
    for fq, ql in zip(_layers(qat.encoder_, FakeQuantLinear), _layers(q.encoder_, QuantizedLinear)):
        torch.testing.assert_close(ql.weight, fq.quantized_weight().detach(), rtol=0, atol=0)
    # the 4-bit integer model stays close to the QAT model it came from
    qat_error = _mse(qat.reconstruct(X_test), X_test)
    assert _mse(q.reconstruct(X_test), X_test) < 1.10 * qat_error


@pytest.mark.parametrize(
    "qat, match",
    [
        ({"n_bits": 9}, r"The 'qat' parameter of Autoencoder needs 'n_bits' an int in the range \[1, 8\]"),
        ({"bits": 4}, r"The 'qat' parameter of Autoencoder has unknown key\(s\) \['bits'\]"),
        ({"latent": "yes"}, "'latent' a bool"),
        ([4], r"The 'qat' parameter of Autoencoder must be"),
    ],
)
def test_bad_qat_is_rejected_in_sklearn_words(qat, match):
    with pytest.raises(ValueError, match=match):
        Autoencoder(qat=qat, max_epochs=1).fit(X_train[:50])


def test_bad_quantize_arguments(float_model):
    with pytest.raises(ValueError, match="n_bits"):
        float_model.quantize(X_train, n_bits=1)
    with pytest.raises(ValueError, match="features"):
        float_model.quantize(X_train[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        float_model.quantize(np.full((3, 64), np.nan))
