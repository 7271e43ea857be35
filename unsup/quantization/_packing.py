"""Sub-byte packing: 4-bit codes two per byte, 2-bit four per byte, 1-bit as bits.

Codes are packed along the last axis, the first code in the lowest bits of its
byte (4-bit: code ``2k`` in the low nibble of byte ``k``, ``2k + 1`` in the
high nibble; 1-bit: the order of ``np.packbits(..., bitorder="little")``). A
row whose length is not a multiple of the codes per byte is padded with zero
bits, so :func:`unpack_bits` needs the original length. Signed codes (the
symmetric scheme) are stored in two's complement on ``n_bits`` and
sign-extended on unpacking. A code that does not fit in ``n_bits`` raises: it
is never silently truncated.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["PACKABLE_BITS", "pack_bits", "unpack_bits"]

PACKABLE_BITS = (1, 2, 4)


def _check_bits(n_bits):
    if isinstance(n_bits, bool) or not isinstance(n_bits, numbers.Integral) or n_bits not in PACKABLE_BITS:
        raise ValueError(f"n_bits must be one of {PACKABLE_BITS} to pack codes; got {n_bits!r}.")
    return int(n_bits), 8 // int(n_bits)


def pack_bits(codes, n_bits: int) -> np.ndarray:
    """Pack integer codes of ``n_bits`` bits into bytes, along the last axis.

    Parameters
    ----------
    codes : array-like of integers of shape (..., n_values)
        Unsigned codes in ``[0, 2ⁿ − 1]`` or signed codes in
        ``[−2ⁿ⁻¹, 2ⁿ⁻¹ − 1]`` (a signed dtype marks them signed).
    n_bits : {1, 2, 4}

    Returns
    -------
    packed : ndarray of uint8 of shape (..., ceil(n_values * n_bits / 8))

    Raises
    ------
    ValueError
        If a code does not fit in ``n_bits`` bits.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import pack_bits
    >>> pack_bits(np.array([1, 2, 15], dtype=np.uint8), 4)
    array([33, 15], dtype=uint8)
    >>> pack_bits(np.array([-1, 7], dtype=np.int8), 4)
    array([127], dtype=uint8)
    """
    n_bits, per_byte = _check_bits(n_bits)
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iub" or codes.ndim == 0:
        raise ValueError("codes must be an integer array with at least one dimension.")
    signed = codes.dtype.kind == "i"
    low, high = (-(1 << (n_bits - 1)), (1 << (n_bits - 1)) - 1) if signed else (0, (1 << n_bits) - 1)
    if codes.size and (codes.min() < low or codes.max() > high):
        raise ValueError(
            f"codes must lie in [{low}, {high}] to be packed on {n_bits} bits; got values in "
            f"[{codes.min()}, {codes.max()}]."
        )
    bits = (codes.astype(np.int16) & ((1 << n_bits) - 1)).astype(np.uint8)
    n_values = codes.shape[-1]
    pad = -n_values % per_byte
    if pad:
        bits = np.concatenate([bits, np.zeros(codes.shape[:-1] + (pad,), np.uint8)], axis=-1)
    groups = bits.reshape(codes.shape[:-1] + (-1, per_byte))
    shifts = (np.arange(per_byte) * n_bits).astype(np.uint8)
    return np.bitwise_or.reduce(groups << shifts, axis=-1).astype(np.uint8)


def unpack_bits(packed, n_bits: int, n_values: int, *, signed: bool = False) -> np.ndarray:
    """Unpack what :func:`pack_bits` packed: the exact codes back.

    Parameters
    ----------
    packed : array-like of uint8 of shape (..., n_bytes)
    n_bits : {1, 2, 4}
    n_values : int
        Codes per row before packing (the padding is dropped).
    signed : bool, default=False
        Sign-extend the codes (packed from a signed dtype).

    Returns
    -------
    codes : ndarray of shape (..., n_values)
        ``int8`` if ``signed`` else ``uint8``.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import unpack_bits
    >>> unpack_bits(np.array([33, 15], dtype=np.uint8), 4, 3)
    array([ 1,  2, 15], dtype=uint8)
    >>> unpack_bits(np.array([127], dtype=np.uint8), 4, 2, signed=True)
    array([-1,  7], dtype=int8)
    """
    n_bits, per_byte = _check_bits(n_bits)
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim == 0:
        raise ValueError("packed must be a uint8 array with at least one dimension.")
    if isinstance(n_values, bool) or not isinstance(n_values, numbers.Integral) or n_values < 0:
        raise ValueError(f"n_values must be a non-negative integer; got {n_values!r}.")
    if n_values > packed.shape[-1] * per_byte:
        raise ValueError(
            f"{packed.shape[-1]} bytes hold at most {packed.shape[-1] * per_byte} codes of "
            f"{n_bits} bits; asked for {n_values}."
        )
    shifts = (np.arange(per_byte) * n_bits).astype(np.uint8)
    bits = (packed[..., None] >> shifts) & np.uint8((1 << n_bits) - 1)
    bits = bits.reshape(packed.shape[:-1] + (-1,))[..., :n_values]
    if not signed:
        return bits
    values = bits.astype(np.int8)
    return np.where(values >= (1 << (n_bits - 1)), values - np.int8(1 << n_bits), values).astype(np.int8)
