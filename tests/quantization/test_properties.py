"""Property tests (hypothesis) of quantize / dequantize, as the issue lists them.

- codes lie within [qmin, qmax];
- inside the representable range, |x − x̂| ≤ s/2 with nearest rounding and
  < s with floor (plus the float rounding of ``x · (1/s)``, bounded below);
- zero is exact for the affine scheme;
- values beyond the range saturate at qmin / qmax;
- quantizing a dequantized tensor gives the same codes (idempotence).
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from unsup.quantization import calculate_qparams, dequantize, fake_quantize, quant_range, quantize

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def configs(draw):
    """A configuration, a float dtype, a range and data within ±4 times that range."""
    scheme = draw(st.sampled_from(["symmetric", "asymmetric"]))
    n_bits = draw(st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 16] if scheme == "asymmetric" else [2, 3, 4, 8, 16]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rounding = draw(st.sampled_from(["nearest", "floor"]))
    lo = draw(st.floats(-1e4, 1e4))
    hi = draw(st.floats(-1e4, 1e4))
    lo, hi = min(lo, hi), max(lo, hi)
    scale, zero_point = calculate_qparams(lo, hi, n_bits=n_bits, scheme=scheme)
    bound = float(np.float32(4 * max(abs(lo), abs(hi), 1e-3)))  # exact in float32 too
    x = draw(
        arrays(dtype, st.integers(1, 64), elements=st.floats(-bound, bound, width=32 if dtype == np.float32 else 64))
    )
    return {"n_bits": n_bits, "scheme": scheme, "rounding": rounding}, scale, zero_point, x


def representable(config, scale, zero_point):
    qmin, qmax = quant_range(config["n_bits"], config["scheme"])
    s = float(scale)
    return s * (qmin - int(zero_point)), s * (qmax - int(zero_point))


@SETTINGS
@given(configs())
def test_codes_within_range(case):
    config, scale, zero_point, x = case
    qmin, qmax = quant_range(config["n_bits"], config["scheme"])
    codes = quantize(x, scale, zero_point, **config)
    assert codes.min() >= qmin and codes.max() <= qmax


@SETTINGS
@given(configs())
def test_error_bounded_inside_the_range(case):
    config, scale, zero_point, x = case
    lo, hi = representable(config, scale, zero_point)
    x = x[(x >= lo) & (x <= hi)]
    x_hat = fake_quantize(x, scale, zero_point, **config).astype(np.float64)
    err = np.abs(x.astype(np.float64) - x_hat)
    s = float(scale)
    # Float rounding of 1/s (a float32), of x·(1/s) and of the product (q − z)·s.
    slack = 2 * np.finfo(np.float32).eps * (np.abs(x.astype(np.float64)) + s)
    if config["rounding"] == "nearest":
        assert np.all(err <= s / 2 + slack)
    else:
        assert np.all(err < s + slack)


@SETTINGS
@given(configs())
def test_zero_exact_for_affine(case):
    config, scale, zero_point, x = case
    config["scheme"] = "asymmetric"
    scale, zero_point = calculate_qparams(float(x.min()), float(x.max()), n_bits=config["n_bits"], scheme="asymmetric")
    zeros = np.zeros(3, x.dtype)
    assert np.all(quantize(zeros, scale, zero_point, **config) == zero_point)
    assert np.all(fake_quantize(zeros, scale, zero_point, **config) == 0.0)


@SETTINGS
@given(configs(), st.floats(1.0, 1e4))
def test_saturation(case, factor):
    config, scale, zero_point, x = case
    qmin, qmax = quant_range(config["n_bits"], config["scheme"])
    lo, hi = representable(config, scale, zero_point)
    step = float(scale)
    far = np.array([hi + step * (1 + factor), lo - step * (1 + factor)], dtype=x.dtype)
    np.testing.assert_array_equal(quantize(far, scale, zero_point, **config), [qmax, qmin])


@SETTINGS
@given(configs())
def test_idempotence(case):
    config, scale, zero_point, x = case
    codes = quantize(x, scale, zero_point, **config)
    x_hat = dequantize(codes, scale, zero_point, dtype=x.dtype)
    np.testing.assert_array_equal(quantize(x_hat, scale, zero_point, **config), codes)
