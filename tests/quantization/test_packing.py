"""Sub-byte packing: exact round trips, the byte layout, and no silent truncation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from unsup.quantization import Quantizer, pack_bits, quant_range, unpack_bits


def test_four_bit_layout_low_nibble_first():
    packed = pack_bits(np.array([[1, 2, 3], [15, 0, 9]], dtype=np.uint8), 4)
    np.testing.assert_array_equal(packed, [[0x21, 0x03], [0x0F, 0x09]])


def test_one_bit_layout_matches_numpy_packbits_little():
    bits = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 1], dtype=np.uint8)
    np.testing.assert_array_equal(pack_bits(bits, 1), np.packbits(bits, bitorder="little"))


def test_signed_codes_in_twos_complement():
    codes = np.array([-8, -1, 0, 7], dtype=np.int8)
    packed = pack_bits(codes, 4)
    np.testing.assert_array_equal(packed, [0xF8, 0x70])
    np.testing.assert_array_equal(unpack_bits(packed, 4, 4, signed=True), codes)


@settings(max_examples=40, deadline=None)
@given(
    n_bits=st.sampled_from([1, 2, 4]),
    signed=st.booleans(),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 37)),
    data=st.data(),
)
def test_round_trip_is_exact(n_bits, signed, shape, data):
    if signed and n_bits == 1:
        signed = False
    low, high = (-(1 << (n_bits - 1)), (1 << (n_bits - 1)) - 1) if signed else (0, (1 << n_bits) - 1)
    dtype = np.int8 if signed else np.uint8
    codes = data.draw(arrays(dtype, shape, elements=st.integers(low, high)))
    packed = pack_bits(codes, n_bits)
    assert packed.dtype == np.uint8 and packed.shape == (shape[0], -(-shape[1] * n_bits // 8))
    unpacked = unpack_bits(packed, n_bits, shape[1], signed=signed)
    assert unpacked.dtype == dtype
    np.testing.assert_array_equal(unpacked, codes)


@pytest.mark.parametrize("n_bits, scheme", [(4, "symmetric"), (4, "asymmetric"), (2, "symmetric"), (1, "asymmetric")])
def test_quantizer_codes_pack_and_unpack(n_bits, scheme):
    X = np.random.default_rng(0).standard_normal((50, 13))
    q = Quantizer(n_bits, scheme=scheme, granularity="per_channel").fit(X)
    codes = q.transform(X)
    packed = pack_bits(codes, n_bits)
    assert packed.nbytes == 50 * -(-13 * n_bits // 8)
    restored = unpack_bits(packed, n_bits, 13, signed=scheme == "symmetric")
    np.testing.assert_array_equal(restored, codes)
    np.testing.assert_array_equal(q.inverse_transform(restored), q.inverse_transform(codes))
    lo, hi = quant_range(n_bits, scheme)
    assert restored.min() >= lo and restored.max() <= hi


def test_codes_that_do_not_fit_raise():
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 15\]"):
        pack_bits(np.array([16], dtype=np.uint8), 4)
    with pytest.raises(ValueError, match=r"codes must lie in \[-8, 7\]"):
        pack_bits(np.array([-9], dtype=np.int8), 4)
    with pytest.raises(ValueError, match="n_bits must be one of"):
        pack_bits(np.array([1], dtype=np.uint8), 3)
    with pytest.raises(ValueError, match="integer array"):
        pack_bits(np.array([0.5]), 4)
    with pytest.raises(ValueError, match="hold at most 2 codes"):
        unpack_bits(np.array([0], dtype=np.uint8), 4, 3)
