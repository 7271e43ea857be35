"""The functional core against torch's fake quantization and hand-computed values."""

import warnings

import numpy as np
import pytest
import torch

from unsup.quantization import (
    EPS,
    calculate_qparams,
    code_dtype,
    dequantize,
    fake_quantize,
    quant_range,
    quantize,
)
from unsup.quantization._kernels import CHUNK, minmax

rng = np.random.default_rng(0)
N_BITS = [2, 4, 8, 16]
SCHEMES = ["symmetric", "asymmetric"]
DTYPES = [np.float32, np.float64]


def data_with_ties(dtype, scale, n=3000, spread=300):
    """Gaussian values plus exact half-way points ``(k + 0.5) s``, where rounding rules show."""
    x = rng.standard_normal((n, 5)) * spread * float(scale) / 3
    k = rng.integers(-spread, spread, n)
    x[:, 0] = (k + 0.5) * np.float64(scale)
    return x.astype(dtype)


# ------------------------------------------------------------ torch oracles


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n_bits", N_BITS)
def test_per_tensor_round_trip_equals_torch(n_bits, scheme, dtype):
    qmin, qmax = quant_range(n_bits, scheme)
    x = data_with_ties(dtype, 1.0)
    scale, zero_point = calculate_qparams(0.6 * x.min(), 0.6 * x.max(), n_bits=n_bits, scheme=scheme)
    x = data_with_ties(dtype, scale)
    ours = fake_quantize(x, scale, zero_point, n_bits=n_bits, scheme=scheme)
    ref = torch.fake_quantize_per_tensor_affine(
        torch.from_numpy(x), float(scale), int(zero_point), qmin, qmax
    ).numpy()
    assert ours.dtype == ref.dtype == dtype
    if dtype == np.float32:
        np.testing.assert_array_equal(ours, ref)
    else:
        # torch's per-tensor kernel rounds float64 outputs through float32; the
        # codes are the same, so the float32 roundings are equal element for element.
        np.testing.assert_array_equal(ours.astype(np.float32), ref.astype(np.float32))
        np.testing.assert_array_equal(
            ours,
            torch.fake_quantize_per_channel_affine(
                torch.from_numpy(x.reshape(-1, 1)),
                torch.tensor([float(scale)]),
                torch.tensor([int(zero_point)], dtype=torch.int32),
                1,
                qmin,
                qmax,
            ).numpy().reshape(x.shape),
        )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n_bits", N_BITS)
@pytest.mark.parametrize("axis", [0, 1])
def test_per_channel_round_trip_equals_torch(n_bits, scheme, dtype, axis):
    qmin, qmax = quant_range(n_bits, scheme)
    x = data_with_ties(dtype, 0.05) * rng.uniform(0.1, 3.0, 5).astype(dtype)
    other = 1 - axis
    scale, zero_point = calculate_qparams(
        0.7 * x.min(axis=other), 0.7 * x.max(axis=other), n_bits=n_bits, scheme=scheme
    )
    ours = fake_quantize(x, scale, zero_point, n_bits=n_bits, scheme=scheme, axis=axis)
    ref = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(x), torch.from_numpy(scale), torch.from_numpy(zero_point), axis, qmin, qmax
    ).numpy()
    np.testing.assert_array_equal(ours, ref)
    # The torch twin computes the same.
    twin = fake_quantize(torch.from_numpy(x), scale, zero_point, n_bits=n_bits, scheme=scheme, axis=axis)
    np.testing.assert_array_equal(twin.numpy(), ref)


@pytest.mark.parametrize("scheme, torch_dtype", [("asymmetric", torch.quint8), ("symmetric", torch.qint8)])
def test_codes_equal_torch_quantize_per_tensor(scheme, torch_dtype):
    x = data_with_ties(np.float32, 0.02)
    scale, zero_point = calculate_qparams(-1.0, 2.0, n_bits=8, scheme=scheme)
    codes = quantize(x, scale, zero_point, n_bits=8, scheme=scheme)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's quantized tensors are deprecated
        ref = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), int(zero_point), torch_dtype)
    ref = ref.int_repr().numpy()
    if scheme == "symmetric":  # torch's qint8 also uses -128; the restricted range stops at -127
        ref = np.maximum(ref, -127)
    np.testing.assert_array_equal(codes, ref)
    assert codes.dtype == code_dtype(8, scheme)


def test_large_input_crosses_chunks_and_equals_torch():
    # More than one chunk, with a per-channel tile and a saturating chunk in the middle.
    x = rng.standard_normal((3 * CHUNK // 7 + 5, 7)).astype(np.float32)
    x[len(x) // 2, 3] = 1e4
    scale, zp = calculate_qparams(x.min(0) / 2, x.max(0) / 2, n_bits=8, scheme="asymmetric")
    ours = fake_quantize(x, scale, zp, n_bits=8, scheme="asymmetric", axis=1)
    ref = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(x), torch.from_numpy(scale), torch.from_numpy(zp), 1, 0, 255
    ).numpy()
    np.testing.assert_array_equal(ours, ref)


# ------------------------------------------------------- hand-computed values


def test_calculate_qparams_hand_values():
    s, z = calculate_qparams(-1.0, 3.0, n_bits=8, scheme="asymmetric")
    assert s == np.float32(4 / 255) and z == 64  # z = round(1 / (4/255)) = round(63.75)
    s, z = calculate_qparams(-1.0, 3.0, n_bits=8, scheme="symmetric")
    assert s == np.float32(3 / 127) and z == 0
    s, z = calculate_qparams(2.0, 5.0, n_bits=4, scheme="asymmetric")  # range widened to [0, 5]
    assert s == np.float32(5 / 15) and z == 0
    s, z = calculate_qparams(-6.0, -2.0, n_bits=4, scheme="asymmetric")  # widened to [-6, 0]
    assert s == np.float32(6 / 15) and z == 15
    s, z = calculate_qparams([-1.0, -2.0], [1.0, 8.0], n_bits=2, scheme="symmetric")
    np.testing.assert_array_equal(s, np.float32([1.0, 8.0]))
    np.testing.assert_array_equal(z, [0, 0])


def test_quantize_hand_values():
    x = np.array([-1.0, -0.25, 0.25, 0.75, 1.24, 9.0])
    # s = 0.5, symmetric 4 bits: codes in [-7, 7]; ties go to even.
    np.testing.assert_array_equal(quantize(x, 0.5, n_bits=4), [-2, 0, 0, 2, 2, 7])
    np.testing.assert_array_equal(quantize(x, 0.5, n_bits=4, rounding="floor"), [-2, -1, 0, 1, 2, 7])
    # asymmetric 3 bits, z = 2: codes in [0, 7]
    np.testing.assert_array_equal(
        quantize(x, 0.5, 2, n_bits=3, scheme="asymmetric"), [0, 2, 2, 4, 4, 7]
    )
    np.testing.assert_array_equal(
        dequantize(np.array([0, 2, 7], dtype=np.uint8), 0.5, 2), np.float32([-1.0, 0.0, 2.5])
    )


def test_quant_ranges_and_dtypes():
    assert quant_range(1, "asymmetric") == (0, 1)
    assert quant_range(8, "symmetric") == (-127, 127)
    assert quant_range(16, "symmetric") == (-32767, 32767)
    assert quant_range(16, "asymmetric") == (0, 65535)
    assert code_dtype(8, "symmetric") == np.int8
    assert code_dtype(3, "asymmetric") == np.uint8
    assert code_dtype(16, "symmetric") == np.int16


def test_one_bit_codes():
    s, z = calculate_qparams(-0.2, 1.0, n_bits=1, scheme="asymmetric")
    assert s == np.float32(1.2) and z == 0
    codes = quantize(np.array([-0.2, 0.1, 0.7, 1.0]), s, z, n_bits=1, scheme="asymmetric")
    np.testing.assert_array_equal(codes, [0, 0, 1, 1])


def test_zero_range_does_not_divide_by_zero():
    s, z = calculate_qparams(0.0, 0.0, n_bits=8, scheme="asymmetric")
    assert s == np.float32(EPS) and z == 0
    x = np.zeros(5, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero or invalid-value warnings
        np.testing.assert_array_equal(fake_quantize(x, s, z, scheme="asymmetric"), x)
    s, _ = calculate_qparams(np.zeros(3), np.zeros(3))
    np.testing.assert_array_equal(s, np.float32([EPS] * 3))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("n_bits", [4, 8, 16])
def test_saturation_never_wraps(n_bits, scheme):
    qmin, qmax = quant_range(n_bits, scheme)
    s, z = calculate_qparams(-1.0, 1.0, n_bits=n_bits, scheme=scheme)
    x = np.array([1e4, -1e4, 2e4, -3e4, 1e4 + 0.3, 0.0, np.finfo(np.float32).max, -np.finfo(np.float32).max])
    codes = quantize(x.astype(np.float32), s, z, n_bits=n_bits, scheme=scheme)
    np.testing.assert_array_equal(codes, [qmax, qmin, qmax, qmin, qmax, int(z), qmax, qmin])
    x_hat = dequantize(codes, s, z)
    assert x_hat[0] == np.float32(s) * (qmax - int(z)) and x_hat[1] == np.float32(s) * (qmin - int(z))


@pytest.mark.parametrize("value, words", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_non_finite_input_raises(value, words, as_tensor):
    x = np.linspace(-1, 1, 2 * CHUNK + 3).astype(np.float32)
    x[CHUNK + 7] = value  # in the second chunk
    if as_tensor:
        x = torch.from_numpy(x)
    for fn in (quantize, fake_quantize):
        with pytest.raises(ValueError, match=f"Input contains {words}"):
            fn(x, 0.01)


def test_invalid_parameters_raise():
    x = np.ones(4)
    with pytest.raises(ValueError, match="n_bits"):
        quantize(x, 0.1, n_bits=9)
    with pytest.raises(ValueError, match="symmetric scheme needs n_bits >= 2"):
        quantize(x, 0.1, n_bits=1)
    with pytest.raises(ValueError, match="scheme"):
        quantize(x, 0.1, scheme="affine")
    with pytest.raises(ValueError, match="rounding"):
        quantize(x, 0.1, rounding="up")
    with pytest.raises(ValueError, match="scale must be finite and positive"):
        quantize(x, 0.0)
    with pytest.raises(ValueError, match="zero_point must lie in"):
        quantize(x, 0.1, 300, scheme="asymmetric")
    with pytest.raises(ValueError, match="zero_point must hold integers"):
        quantize(x, 0.1, 1.5, scheme="asymmetric")
    with pytest.raises(ValueError, match=r"scale must have shape \(4,\)"):
        quantize(np.ones((2, 4)), [0.1, 0.2], axis=1)
    with pytest.raises(ValueError, match="does not broadcast"):
        quantize(np.ones((2, 4)), np.ones(3))
    with pytest.raises(ValueError, match="min_val must not exceed max_val"):
        calculate_qparams(1.0, 0.0)
    with pytest.raises(ValueError, match="codes must hold integers"):
        dequantize(np.array([0.5]), 0.1)


def test_per_block_equals_blockwise_per_tensor():
    x = rng.standard_normal((6, 10)).astype(np.float32)
    block = 4  # blocks [0:4], [4:8], [8:10]
    lo = np.stack([x[:, a : a + block].min(1) for a in range(0, 10, block)], axis=1)
    hi = np.stack([x[:, a : a + block].max(1) for a in range(0, 10, block)], axis=1)
    s, z = calculate_qparams(lo, hi, n_bits=4, scheme="asymmetric")  # one range per row and block
    codes = quantize(x, s, z, n_bits=4, scheme="asymmetric", block_size=block)
    for r in range(6):
        for b, a in enumerate(range(0, 10, block)):
            expected = quantize(x[r, a : a + block], s[r, b], z[r, b], n_bits=4, scheme="asymmetric")
            np.testing.assert_array_equal(codes[r, a : a + block], expected)
    x_hat = dequantize(codes, s, z, block_size=block)
    np.testing.assert_array_equal(x_hat, fake_quantize(x, s, z, n_bits=4, scheme="asymmetric", block_size=block))


def test_minmax_kernel_propagates_nan_and_matches_numpy():
    x = rng.standard_normal((2000, 13))
    for axis in (None, 0, 1):
        mn, mx = minmax(np.ascontiguousarray(x), axis)
        other = None if axis is None else tuple(a for a in range(2) if a != axis)
        np.testing.assert_array_equal(mn, x.min(axis=other))
        np.testing.assert_array_equal(mx, x.max(axis=other))
    x[1500, 4] = np.nan
    mn, mx = minmax(x, 1)
    assert np.isnan(mn[4]) and np.isnan(mx[4]) and np.isfinite(mn[:4]).all()


# --------------------------------------------------------------- torch, STE


@pytest.mark.parametrize("scheme", SCHEMES)
def test_straight_through_gradient_masked_like_torch(scheme):
    qmin, qmax = quant_range(8, scheme)
    s, z = calculate_qparams(-1.0, 1.5, n_bits=8, scheme=scheme)
    x = torch.linspace(-3.0, 3.0, 1001, dtype=torch.float32, requires_grad=True)
    ours = fake_quantize(x, s, z, n_bits=8, scheme=scheme)
    ours.backward(torch.arange(1001, dtype=torch.float32))
    x_ref = x.detach().clone().requires_grad_(True)
    ref = torch.fake_quantize_per_tensor_affine(x_ref, float(s), int(z), qmin, qmax)
    ref.backward(torch.arange(1001, dtype=torch.float32))
    assert torch.equal(ours.detach(), ref.detach())
    assert torch.equal(x.grad, x_ref.grad)
    upstream = torch.arange(1001, dtype=torch.float32)
    inside = (x.detach() > -0.9) & (x.detach() < 0.9)
    assert torch.equal(x.grad[inside], upstream[inside])  # passes straight through
    assert x.grad[0] == 0 and x.grad[-1] == 0  # saturated: masked


def test_per_channel_gradient_masked_like_torch():
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(0)) * 3
    x.requires_grad_(True)
    s, z = calculate_qparams([-1, -2, -0.5, -1], [1, 0.5, 2, 3], n_bits=4, scheme="asymmetric")
    ours = fake_quantize(x, s, z, n_bits=4, scheme="asymmetric", axis=1)
    ours.sum().backward()
    x_ref = x.detach().clone().requires_grad_(True)
    torch.fake_quantize_per_channel_affine(
        x_ref, torch.from_numpy(s), torch.from_numpy(z), 1, 0, 15
    ).sum().backward()
    assert torch.equal(x.grad, x_ref.grad)
    assert 0 < x.grad.sum() < x.numel()  # some values masked, some not


def test_torch_quantize_and_dequantize():
    x = torch.tensor([-1.0, 0.26, 9.0])
    codes = quantize(x, 0.5, n_bits=4)
    assert codes.dtype == torch.int8 and codes.tolist() == [-2, 1, 7]
    assert dequantize(codes, 0.5).tolist() == [-1.0, 0.5, 3.5]
    wide = quantize(x, 0.5, 3, n_bits=16, scheme="asymmetric")
    assert wide.dtype == torch.uint16 and wide.to(torch.int32).tolist() == [1, 4, 21]


def test_run_chunks_visits_every_block_once_and_raises_the_first_error():
    from unsup.quantization._kernels import run_chunks

    out = np.zeros(1000, dtype=np.int64)
    made = []

    def blocks():  # lazily made, as the per-row parameters are
        for i in range(0, 1000, 10):
            made.append(i)
            yield i, i + 10

    def work(block, scratch):
        assert scratch.shape == (10,)  # every thread has its own scratch buffer
        a, b = block
        out[a:b] += np.arange(a, b)

    run_chunks(work, blocks(), lambda: np.empty(10))
    np.testing.assert_array_equal(out, np.arange(1000))
    assert sorted(made) == list(range(0, 1000, 10))

    def failing(block, scratch):
        if block[0] == 500:
            raise ValueError("Input X contains NaN.")

    with pytest.raises(ValueError, match="contains NaN"):
        run_chunks(failing, blocks())
