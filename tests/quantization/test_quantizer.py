"""The Quantizer transformer: calibration, codes, streaming, dynamic mode, pipelines."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from unsup import Quantizer as TopLevelQuantizer
from unsup.quantization import (
    PercentileObserver,
    Quantizer,
    calculate_qparams,
    code_dtype,
    quant_range,
    quantize,
)

rng = np.random.default_rng(0)
X = (rng.standard_normal((300, 10)) * np.arange(1, 11)).astype(np.float32)
GRANULARITIES = ["per_tensor", "per_channel", "per_block"]


def test_exported_at_top_level():
    assert TopLevelQuantizer is Quantizer


@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
@pytest.mark.parametrize("n_bits", [2, 4, 8, 16])
def test_fit_sets_minmax_parameters_per_tensor(n_bits, scheme):
    q = Quantizer(n_bits, scheme=scheme).fit(X)
    s, z = calculate_qparams(X.min(), X.max(), n_bits=n_bits, scheme=scheme)
    assert q.scale_.shape == q.zero_point_.shape == (1,)
    assert q.scale_[0] == s and q.zero_point_[0] == z
    codes = q.transform(X)
    assert codes.dtype == code_dtype(n_bits, scheme) and codes.shape == X.shape
    np.testing.assert_array_equal(codes, quantize(X, s, z, n_bits=n_bits, scheme=scheme))


def test_per_channel_is_per_feature_and_per_block_along_features():
    q = Quantizer(4, scheme="asymmetric", granularity="per_channel").fit(X)
    s, z = calculate_qparams(X.min(0), X.max(0), n_bits=4, scheme="asymmetric")
    np.testing.assert_array_equal(q.scale_, s)
    np.testing.assert_array_equal(q.zero_point_, z)
    np.testing.assert_array_equal(q.transform(X), quantize(X, s, z, n_bits=4, scheme="asymmetric", axis=1))
    qb = Quantizer(granularity="per_block", block_size=4).fit(X)  # features [0:4], [4:8], [8:10]
    lo = [X[:, a : a + 4].min() for a in (0, 4, 8)]
    hi = [X[:, a : a + 4].max() for a in (0, 4, 8)]
    np.testing.assert_array_equal(qb.scale_, calculate_qparams(lo, hi)[0])


@pytest.mark.parametrize("granularity", GRANULARITIES)
@pytest.mark.parametrize("scheme", ["symmetric", "asymmetric"])
def test_round_trip_error_at_most_half_a_step(granularity, scheme):
    q = Quantizer(8, scheme=scheme, granularity=granularity, block_size=3).fit(X)
    X_hat = q.inverse_transform(q.transform(X))
    assert X_hat.dtype == np.float32
    step = np.repeat(q.scale_, 3)[: X.shape[1]] if granularity == "per_block" else q.scale_
    assert np.all(np.abs(X - X_hat) <= step / 2 * (1 + 1e-5))


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_partial_fit_equals_fit_on_the_concatenation_for_minmax(granularity):
    batches = np.array_split(X, 5)
    streamed = Quantizer(granularity=granularity, scheme="asymmetric", block_size=4)
    for batch in batches:
        streamed.partial_fit(batch)
    full = Quantizer(granularity=granularity, scheme="asymmetric", block_size=4).fit(np.vstack(batches))
    np.testing.assert_array_equal(streamed.scale_, full.scale_)
    np.testing.assert_array_equal(streamed.zero_point_, full.zero_point_)
    assert streamed.n_samples_seen_ == full.n_samples_seen_ == len(X)
    np.testing.assert_array_equal(streamed.transform(X), full.transform(X))


def test_fit_forgets_earlier_partial_fits():
    q = Quantizer().partial_fit(X * 100)
    q.fit(X)
    assert q.scale_[0] == calculate_qparams(X.min(), X.max())[0] and q.n_samples_seen_ == len(X)


def test_saturates_values_far_outside_the_calibrated_range():
    q = Quantizer(scheme="asymmetric").fit(X)
    far = np.array([[1e4 * X.max()] * 10, [-1e4 * X.max()] * 10], dtype=np.float32)
    np.testing.assert_array_equal(q.transform(far), [[255] * 10, [0] * 10])


@pytest.mark.parametrize("value, words", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_transform_rejects_non_finite(value, words):
    q = Quantizer().fit(X)
    bad = X.copy()
    bad[5, 3] = value
    with pytest.raises(ValueError, match=f"Input X contains {words}"):
        q.transform(bad)
    with pytest.raises(ValueError, match=f"Input X contains {words}"):
        Quantizer(dynamic=True).fit(X).transform(bad)


def test_inverse_transform_checks_codes():
    q = Quantizer(4).fit(X)
    with pytest.raises(ValueError, match=r"Codes must lie in \[-7, 7\]"):
        q.inverse_transform(np.full((2, 10), 8, dtype=np.int8))
    with pytest.raises(ValueError, match="X has 3 features, but Quantizer is expecting 10"):
        q.inverse_transform(np.zeros((2, 3), dtype=np.int8))
    with pytest.raises(ValueError, match="codes must hold integers"):
        q.inverse_transform(np.full((2, 10), 0.5))
    np.testing.assert_array_equal(q.inverse_transform(np.ones((1, 10))), q.inverse_transform(np.ones((1, 10), np.int8)))


def test_float64_fit_gives_float64_inverse():
    q = Quantizer().fit(X.astype(np.float64))
    X_hat = q.inverse_transform(q.transform(X))
    assert X_hat.dtype == np.float64
    np.testing.assert_array_equal(X_hat, q.transform(X).astype(np.float64) * np.float64(q.scale_[0]))


def test_observer_by_name_and_by_instance():
    x = np.vstack([rng.uniform(-50, 50, (999, 1)), [[1000.0]]])
    by_name = Quantizer(observer="percentile").fit(x)
    by_instance = Quantizer(observer=PercentileObserver(percentile=99.0, bins=256)).fit(x)
    assert by_name.scale_[0] < 1.0 and by_instance.scale_[0] < 1.0  # the outlier is clipped
    assert by_instance.observer_.percentile == 99.0 and by_instance.observer_.bins == 256
    assert Quantizer().fit(x).scale_[0] == np.float32(1000 / 127)


# ------------------------------------------------------------------ dynamic


def test_dynamic_per_tensor_has_one_range_per_sample():
    q = Quantizer(dynamic=True).fit(X[:10])
    assert not hasattr(q, "scale_")
    codes, scale, zero_point = q.quantize(X)
    assert scale.shape == (len(X),)
    for i in range(len(X)):
        s, z = calculate_qparams(X[i].min(), X[i].max())
        assert scale[i] == s
        np.testing.assert_array_equal(codes[i], quantize(X[i], s, z))
    np.testing.assert_array_equal(q.transform(X), codes)
    X_hat = q.inverse_transform(codes, scale=scale, zero_point=zero_point)
    assert np.all(np.abs(X - X_hat) <= scale[:, None] / 2 * (1 + 1e-5))
    with pytest.raises(ValueError, match="pass the scale and zero_point"):
        q.inverse_transform(codes)


def test_dynamic_per_block_equals_bitsandbytes_style_blocks():
    q = Quantizer(4, scheme="asymmetric", granularity="per_block", block_size=4, dynamic=True).fit(X)
    codes, scale, zero_point = q.quantize(X)
    assert scale.shape == (len(X), 3)
    lo = np.stack([X[:, a : a + 4].min(1) for a in (0, 4, 8)], axis=1)
    hi = np.stack([X[:, a : a + 4].max(1) for a in (0, 4, 8)], axis=1)
    s, z = calculate_qparams(lo, hi, n_bits=4, scheme="asymmetric")
    np.testing.assert_array_equal(scale, s)
    np.testing.assert_array_equal(codes, quantize(X, s, z, n_bits=4, scheme="asymmetric", block_size=4))


def test_dynamic_beats_static_on_rows_of_different_scales():
    rows = rng.standard_normal((200, 16)) * np.logspace(-2, 2, 200)[:, None]
    static = Quantizer(4).fit(rows)
    dynamic = Quantizer(4, dynamic=True).fit(rows)
    codes, s, z = dynamic.quantize(rows)
    power = np.sum(rows**2, axis=1)
    rel_static = np.sum((rows - static.inverse_transform(static.transform(rows))) ** 2, axis=1) / power
    rel_dynamic = np.sum((rows - dynamic.inverse_transform(codes, scale=s, zero_point=z)) ** 2, axis=1) / power
    assert rel_dynamic.mean() < rel_static.mean() / 10  # small rows keep their resolution
    assert rel_dynamic.max() < 0.1


# -------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "params, match",
    [
        ({"n_bits": 9}, "n_bits must be an integer"),
        ({"n_bits": 1}, "symmetric scheme needs n_bits >= 2"),
        ({"scheme": "affine"}, "scheme must be one of"),
        ({"granularity": "per_row"}, "granularity must be one of"),
        ({"axis": 0}, "axis must be 1"),
        ({"block_size": 0}, "block_size must be an integer >= 1"),
        ({"observer": "histogram"}, "Unknown observer"),
        ({"rounding": "up"}, "rounding must be one of"),
        ({"dynamic": True, "granularity": "per_channel"}, "per-channel range of one sample"),
        ({"dynamic": True, "observer": "entropy"}, "does not"),
        ({"dynamic": "yes"}, "dynamic must be a bool"),
    ],
)
def test_invalid_parameters_raise_in_fit(params, match):
    q = Quantizer(**params)  # __init__ only stores
    with pytest.raises(ValueError, match=match):
        q.fit(X)


def test_one_bit_asymmetric():
    q = Quantizer(1, scheme="asymmetric").fit(np.array([[-0.2], [1.0], [0.7]]))
    np.testing.assert_array_equal(q.transform([[0.1], [0.9]]), [[0], [1]])


# ---------------------------------------------------------------- pipelines


def test_in_a_pipeline_and_grid_search():
    pipe = make_pipeline(StandardScaler(), PCA(n_components=4, random_state=0), Quantizer(8, scheme="asymmetric"))
    codes = pipe.fit_transform(X)
    assert codes.dtype == np.uint8 and codes.shape == (len(X), 4)
    latent = pipe[:-1].transform(X)
    np.testing.assert_allclose(pipe.inverse_transform(codes), pipe[:-1].inverse_transform(
        pipe[-1].inverse_transform(codes)))
    assert np.abs(pipe[-1].inverse_transform(codes) - latent).max() <= pipe[-1].scale_[0] / 2 * (1 + 1e-5)

    def neg_error(estimator, X_, y=None):
        q = estimator[-1]
        return -np.mean((estimator[:-1].transform(X_) - q.inverse_transform(estimator.transform(X_))) ** 2)

    search = GridSearchCV(clone(pipe), {"quantizer__n_bits": [2, 8]}, scoring=neg_error, cv=3).fit(X)
    assert search.best_params_ == {"quantizer__n_bits": 8}


def test_torch_tensor_input_like_numpy():
    q = Quantizer().fit(X)
    np.testing.assert_array_equal(q.transform(torch.from_numpy(X)), q.transform(X))


def test_quant_range_of_codes():
    q = Quantizer(3).fit(X)
    lo, hi = quant_range(3, "symmetric")
    codes = q.transform(X)
    assert codes.min() == lo and codes.max() == hi
