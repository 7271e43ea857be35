"""ONNX export: every estimator and variant of the common checks, run in onnxruntime.

The oracle is unsup itself on the same input: labels and integer codes
identical; floats within 1e-5 relative to the output's largest magnitude
(float32 graphs), 1e-12 in float64 graphs of the classical estimators.
"""

from __future__ import annotations

import copy
import pickle
import subprocess
import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ort = pytest.importorskip("onnxruntime")
skl2onnx = pytest.importorskip("skl2onnx")

from tests._instances import estimator_instances  # noqa: E402
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
from unsup.onnx import ExportError, to_onnx  # noqa: E402

RNG = np.random.default_rng(0)
RANDOM = RNG.standard_normal((160, 7)) * np.linspace(0.5, 3.0, 7) + np.linspace(-1, 1, 7)
_DIGITS = load_digits().data
DIGITS_FIT, DIGITS_TEST = _DIGITS[:250], _DIGITS[250:650]
DATASETS = {"random": (RANDOM[:100], RANDOM[100:]), "digits": (DIGITS_FIT, DIGITS_TEST)}

# The convolutional networks have no converter (test_conv_architecture_is_refused).
INSTANCES = [e for e in estimator_instances() if getattr(e, "architecture", "mlp") == "mlp"]


def _id(est):
    params = {k: v for k, v in est.get_params(deep=False).items() if k in _shown(type(est).__name__)}
    return type(est).__name__ + "".join(f"-{k}={v}" for k, v in params.items())


def _shown(name):
    return {
        "KMeans": ("metric", "batch_size"),
        "GaussianMixture": ("covariance_type",),
        "AgglomerativeClustering": ("linkage", "metric", "engine"),
        "DivisiveClustering": ("method", "metric"),
        "QuantizedEmbedding": ("n_bits", "output", "scheme", "keep_float", "encoder"),
    }.get(name, ())


def run(model, X):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"X": X})


def expected(est, X):
    """What unsup returns for the outputs of the estimator's graph, in order."""
    if isinstance(est, KMeans):
        return [est.predict(X), est.transform(X)]
    if isinstance(est, GaussianMixture):
        return [est.predict(X), est.predict_proba(X), est.score_samples(X)]
    if isinstance(est, (AgglomerativeClustering, DivisiveClustering)):
        return [est.predict(X)]
    if isinstance(est, Quantizer):
        codes = est.transform(X)
        return [codes, est.inverse_transform(codes)]
    if isinstance(est, QuantizedEmbedding):
        out = est.transform(X)
        if est.output == "codes":
            return [out, est.inverse_transform(out)]
        codes = est.set_params(output="codes").transform(X)
        est.set_params(output="dequantized")
        return [out, codes]
    if isinstance(est, AutoencoderEnsemble):
        return [est.score_samples(X), est.predict(X)]
    Z = est.transform(X)
    return [Z, est.inverse_transform(Z), est.score_samples(X), est.predict(X)]


def assert_outputs(got, ref, *, rtol):
    assert len(got) == len(ref)
    for g, r in zip(got, ref):
        r = np.asarray(r)
        assert g.shape == r.shape
        if r.dtype.kind in "iub":
            np.testing.assert_array_equal(g, r)
        else:
            scale = max(float(np.abs(r).max()), np.finfo(np.float32).tiny)
            np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol * scale)


_FITTED: dict = {}


def fitted(estimator, data):
    """The instance fitted on the data set's training rows (once per session)."""
    key = (id(estimator), data)
    if key not in _FITTED:
        _FITTED[key] = clone(estimator).fit(DATASETS[data][0])
    return _FITTED[key]


@pytest.mark.parametrize("data", sorted(DATASETS))
@pytest.mark.parametrize("estimator", INSTANCES, ids=_id)
def test_float32_graph_equals_unsup(estimator, data):
    X_test = DATASETS[data][1]
    est = fitted(estimator, data)
    X = X_test.astype(np.float32)
    model = to_onnx(est, X[:1])
    got, ref = run(model, X), expected(est, X)
    if isinstance(est, QuantizedEmbedding) and est.encoder is not None and data == "digits":
        # A scikit-learn encoder runs skl2onnx's converter: StandardScaler's multiplies
        # by the reciprocal of the scale where scikit-learn divides, so a latent value
        # on a rounding boundary (the digits' integer pixels put many there) may move
        # one code step. unsup's own encoders and quantizers keep the codes identical.
        steps = np.abs(got[0].astype(int) - ref[0].astype(int))
        assert steps.max() <= 1 and steps.mean() < 0.01
        return
    assert_outputs(got, ref, rtol=1e-5)


@pytest.mark.parametrize("estimator", INSTANCES, ids=_id)
def test_float64_graph_equals_unsup(estimator):
    X_test = DATASETS["random"][1]
    est = fitted(estimator, "random")
    model = to_onnx(est, X_test[:1])
    # The networks run in float32 (as unsup's torch modules); the rest in float64.
    rtol = 1e-5 if isinstance(est, (Autoencoder, VAE, AutoencoderEnsemble)) else 1e-12
    if isinstance(est, QuantizedEmbedding) and est.encoder is not None:
        rtol = 1e-5
    assert_outputs(run(model, X_test), expected(est, X_test), rtol=rtol)


@pytest.mark.parametrize(
    "params",
    [
        {"activation": "gelu", "dropout": 0.2},
        {"activation": "elu"},
        {"activation": "silu"},
        {"activation": "tanh"},
        {"activation": "leaky_relu"},
        {"activation": "logistic"},
        {"qat": {"n_bits": 4}},
        {"kind": "denoising", "scale": False},
    ],
)
@pytest.mark.parametrize("cls", [Autoencoder, VAE])
def test_neural_variants(cls, params):
    X_fit, X_test = DATASETS["digits"]
    est = cls(3, hidden_layer_sizes=(16,), max_epochs=3, random_state=0, **params).fit(X_fit)
    X = X_test.astype(np.float32)
    assert_outputs(run(to_onnx(est, X[:1]), X), expected(est, X), rtol=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        {"metric": "sqeuclidean"},
        {"metric": "minkowski", "metric_params": {"p": 3}},
        {"metric": "minkowski", "metric_params": {"p": 1.5}},
    ],
)
def test_kmeans_other_metrics(params):
    X_fit, X_test = DATASETS["random"]
    est = KMeans(4, random_state=0, n_init=1, **params).fit(X_fit)
    X = X_test.astype(np.float32)
    assert_outputs(run(to_onnx(est, X[:1]), X), expected(est, X), rtol=1e-5)


@pytest.mark.parametrize("linkage", ["weighted", "centroid"])
def test_agglomerative_other_linkages(linkage):
    X_fit, X_test = DATASETS["random"]
    est = AgglomerativeClustering(4, linkage=linkage).fit(X_fit)
    X = X_test.astype(np.float32)
    assert_outputs(run(to_onnx(est, X[:1]), X), expected(est, X), rtol=1e-5)


@pytest.mark.parametrize("cls", [AgglomerativeClustering, DivisiveClustering])
def test_precomputed_distances(cls):
    from scipy.spatial.distance import cdist

    X_fit, X_test = DATASETS["random"]
    params = {"linkage": "average"} if cls is AgglomerativeClustering else {"method": "diana"}
    est = cls(3, metric="precomputed", **params).fit(cdist(X_fit, X_fit))
    D = cdist(X_test, X_fit)
    assert_outputs(run(to_onnx(est, D[:1]), D), expected(est, D), rtol=0)


@pytest.mark.parametrize(
    "params",
    [
        {"scheme": "asymmetric", "granularity": "per_channel"},
        {"granularity": "per_block", "block_size": 3},
        {"n_bits": 4, "scheme": "asymmetric", "granularity": "per_block", "block_size": 2},
        {"n_bits": 3, "rounding": "floor"},
        {"n_bits": 16, "scheme": "asymmetric"},
        {"observer": "percentile"},
    ],
)
@pytest.mark.parametrize("opset", [13, None])
def test_quantizer_variants(params, opset):
    # Test rows beyond the calibration range saturate: out-of-range codes are exercised.
    X_fit, X_test = DATASETS["random"]
    q = Quantizer(**params).fit(X_fit[:30].astype(np.float32))
    X = (X_test * 1.5).astype(np.float32)
    model = to_onnx(q, X[:1], target_opset=opset)
    assert_outputs(run(model, X), expected(q, X), rtol=0)
    ops = {node.op_type for node in model.graph.node}
    if q.n_bits <= 8 or opset is None:
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_post_training_quantized_model_is_int8_and_small():
    X_fit, X_test = DATASETS["digits"]
    ae = Autoencoder(16, hidden_layer_sizes=(256, 128), max_epochs=3, random_state=0).fit(X_fit)
    X = X_test.astype(np.float32)
    ptq = ae.quantize(X_fit)
    model = to_onnx(ptq, X[:1])
    assert_outputs(run(model, X), expected(ptq, X), rtol=1e-5)
    saturating = copy.deepcopy(ptq)
    for layer in list(saturating.encoder_) + list(saturating.decoder_):
        if hasattr(layer, "outliers"):
            layer.outliers = "saturate"
    assert_outputs(run(to_onnx(saturating, X[:1]), X), expected(saturating, X), rtol=1e-5)
    int8 = [t for t in model.graph.initializer if t.data_type == 3]  # TensorProto.INT8
    assert sum(np.prod(t.dims) for t in int8) == 2 * (64 * 256 + 256 * 128 + 128 * 16)
    float_size = len(to_onnx(ae, X[:1]).SerializeToString())
    assert len(model.SerializeToString()) <= 0.3 * float_size


def test_pipeline_with_sklearn_steps_through_skl2onnx():
    X_fit, X_test = DATASETS["digits"]
    pipe = make_pipeline(StandardScaler(), PCA(10, random_state=0), KMeans(5, metric="manhattan", random_state=0))
    pipe.fit(X_fit)
    X = X_test.astype(np.float32)
    label, distances = run(skl2onnx.to_onnx(pipe, X[:1]), X)
    np.testing.assert_array_equal(label, pipe.predict(X))
    np.testing.assert_allclose(distances, pipe.transform(X), rtol=1e-4, atol=1e-4 * np.abs(distances).max())


def test_pipeline_autoencoder_then_mixture():
    X_fit, X_test = DATASETS["digits"]
    pipe = make_pipeline(
        StandardScaler(),
        Autoencoder(4, hidden_layer_sizes=(16,), max_epochs=3, random_state=0),
        GaussianMixture(3, random_state=0),
    ).fit(X_fit)
    X = X_test.astype(np.float32)
    label, proba, score = run(to_onnx(pipe, X[:1]), X)
    np.testing.assert_array_equal(label, pipe.predict(X))
    np.testing.assert_allclose(proba, pipe.predict_proba(X), atol=1e-4)


def test_unexportable_estimators_raise_naming_them():
    X = RANDOM[:50]
    km = KMeans(2, metric=lambda a, b: float(np.abs(a - b).sum()), n_init=1, random_state=0).fit(X)
    with pytest.raises(ExportError, match="KMeans with a callable metric"):
        to_onnx(km, X)
    with pytest.raises(ExportError, match="dynamic=True"):
        to_onnx(Quantizer(dynamic=True).fit(X), X)
    with pytest.raises(NotFittedError):
        to_onnx(KMeans(2), X)
    with pytest.raises(ValueError, match="X_sample has 3 features, but KMeans is expecting 7"):
        to_onnx(KMeans(2, n_init=1).fit(X), X[:, :3])


def test_import_unsup_does_not_import_onnx_and_missing_extra_is_named():
    code = (
        "import sys, unsup\n"
        "print('onnx' in sys.modules or 'skl2onnx' in sys.modules)\n"
        "sys.modules['skl2onnx'] = None\n"
        "try:\n    import unsup.onnx\nexcept ImportError as exc:\n    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = out.stdout.strip().splitlines()
    assert first == "False"
    assert 'pip install "unsup[onnx]"' in second


@pytest.mark.parametrize("cls", [Autoencoder, VAE, AutoencoderEnsemble])
def test_extreme_finite_inputs_score_and_label_as_unsup(cls):
    """Rows x1e200 (finite): unsup clips the standardised values, so must the graph; never an inlier by NaN."""
    X_fit, X_test = DATASETS["random"]
    params = {} if cls is AutoencoderEnsemble else {"hidden_layer_sizes": (8,), "max_epochs": 3}
    est = cls(random_state=0, **params).fit(X_fit)
    X = np.vstack([X_test[:5], X_test[5:10] * 1e200, -X_test[10:15] * 1e300])
    got = run(to_onnx(est, X[:1]), X)
    ref = expected(est, X)
    assert np.all(np.isfinite(ref[-2])) and np.all(ref[-1][5:] == -1)
    assert_outputs(got, ref, rtol=1e-5)


def test_ensemble_pickled_before_the_knee_exports_its_own_scores():
    """An ensemble pickled before the logarithmic knee scores plain standardised residuals: so does its graph."""
    X_fit, X_test = DATASETS["random"]
    est = AutoencoderEnsemble(n_estimators=4, max_epochs=2, random_state=0).fit(X_fit)
    state = pickle.loads(pickle.dumps(est)).__getstate__()
    del state["_knee"]  # the form an earlier version pickled
    old = AutoencoderEnsemble.__new__(AutoencoderEnsemble)
    old.__setstate__(state)
    X = np.vstack([X_test, X_test[:5] * 30])
    assert not np.allclose(old.score_samples(X), est.score_samples(X))  # the rows x30 pass the knee
    assert_outputs(run(to_onnx(old, X[:1]), X), expected(old, X), rtol=1e-5)


@pytest.mark.parametrize("cls", [Autoencoder, VAE])
def test_unscaled_model_of_extremely_wide_columns_exports_its_units(cls):
    """scale=False on columns near 1e38: one power-of-two divisor inside, errors back in X's units."""
    rng = np.random.RandomState(0)
    X = (rng.standard_normal((80, 3)) * [1e37, 1e36, 1.0]).astype(np.float64)
    est = cls(2, hidden_layer_sizes=(8,), max_epochs=3, scale=False, random_state=0).fit(X)
    assert est.scale_[0] > 1e36 and len(set(est.scale_)) == 1
    assert_outputs(run(to_onnx(est, X[:1]), X), expected(est, X), rtol=1e-5)


def test_conv_architecture_is_refused():
    from unsup.neural import Autoencoder

    est = Autoencoder(2, architecture="conv", image_shape=(1, 8, 8), conv_channels=(4,), max_epochs=1,
                      random_state=0).fit(DIGITS_FIT[:, :64])
    with pytest.raises(ExportError, match="architecture='conv' cannot be exported"):
        to_onnx(est, DIGITS_FIT[:5].astype(np.float32))
