"""Codecs of :class:`~unsup.quantization.QuantizedEmbedding`: 8-, 4- and 1-bit codes of latent vectors.

One small class per bit width, each holding its calibrated state and knowing
how to encode, decode, pack and size its codes, and how the search scans
them. :class:`~unsup.quantization.QuantizedEmbedding` picks one from
:data:`CODECS` by ``n_bits`` and holds no ``n_bits`` branch of its own.
Design constraints:

- 8- and 4-bit codes come from a :class:`~unsup.quantization.Quantizer` (its
  observers, granularities and clip-and-round arithmetic: out-of-range
  latents saturate, never wrap); 1-bit codes are sign bits around a
  per-dimension threshold (the mean with the asymmetric scheme, zero with the
  symmetric one), decoded to the mean of each side (the least-squares levels
  for that threshold);
- sub-byte codes are packed along the feature axis (4-bit: two a byte, low
  nibble first; 1-bit: eight a byte, ``np.packbits(..., bitorder="little")``);
- a codec is rebuilt from the estimator's fitted attributes (``quantizer_``,
  ``threshold_``, ``levels_``, ``n_components_``) whenever it is needed, so
  the estimator's fitted state, and its pickles, stay what they were.
"""

from __future__ import annotations

import functools

import numpy as np

from unsup.quantization._functional import quant_range
from unsup.quantization._packing import pack_bits, unpack_bits
from unsup.quantization._quantizer import Quantizer
from unsup.quantization._search import scan_dequantized, scan_hamming

__all__ = ["CODECS", "BinaryCodec", "Int4Codec", "Int8Codec", "sign_levels", "sign_levels_from_sums"]


class Int8Codec:
    """8-bit codes: a :class:`Quantizer`'s codes, one byte per latent dimension.

    Parameters
    ----------
    quantizer : Quantizer
        Fitted on the latent vectors, with ``n_bits`` this codec's.
    n_components : int
        The latent dimension ``d``.
    """

    n_bits = 8
    #: Whether the codes are packed several to a byte.
    packed = False
    #: Candidates reranked per neighbour asked for, when rescore_multiplier="auto".
    auto_multiplier = 4
    #: Whether the scan's own distances are those of the metric (else rescoring is needed).
    scan_gives_distances = True

    def __init__(self, quantizer: Quantizer, n_components: int):
        self.quantizer = quantizer
        self.n_components = int(n_components)

    @classmethod
    def calibrate(cls, Z, *, scheme, granularity, block_size, observer) -> Int8Codec:
        """A codec calibrated on the latent vectors ``Z`` (an array, or a dask array)."""
        quantizer = Quantizer(
            cls.n_bits, scheme=scheme, granularity=granularity, block_size=block_size, observer=observer
        ).fit(Z)
        return cls(quantizer, Z.shape[1])

    @classmethod
    def from_fitted(cls, embedding) -> Int8Codec:
        """The codec of a fitted ``QuantizedEmbedding``."""
        return cls(embedding.quantizer_, embedding.n_components_)

    def fitted_attributes(self) -> dict:
        """The estimator's attributes that hold this codec's state."""
        return {"quantizer_": self.quantizer, "threshold_": None, "levels_": None}

    @property
    def n_columns(self) -> int:
        """Columns of the packed codes of one vector."""
        return -(-self.n_components * self.n_bits // 8)

    def encode(self, Z):
        """Unpacked codes of ``Z`` of shape (n, d)."""
        return self.quantizer.transform(Z)

    def decode(self, levels):
        """Dequantised vectors (the latent dtype) of unpacked codes of any leading shape."""
        lead = levels.shape[:-1]
        flat = levels.reshape(-1, self.n_components)
        return self.quantizer.inverse_transform(flat).reshape(lead + (self.n_components,))

    def pack(self, levels):
        return levels

    def unpack(self, codes):
        return codes

    def scan(self, Z, codes, n_candidates, *, metric, query_is_train, n_threads):
        """Indices of the ``n_candidates`` nearest rows of ``codes`` to each latent of ``Z``.

        The scan runs in float32 on queries and codes scaled by one power of
        two (exact, and the ranking is unchanged) that keeps every value below
        1, so squared norms cannot overflow whatever the latents' magnitude.

        Returns
        -------
        index : ndarray of shape (n_queries, n_candidates)
        scan_distances : None
            The scan's distances are recomputed from the float vectors.
        """
        qmin, qmax = quant_range(self.n_bits, self.quantizer.scheme)
        q = self.quantizer
        top = max(
            float(np.max(np.abs(np.asarray([qmin, qmax])[:, None] - q.zero_point_) * q.scale_)),
            float(np.max(np.abs(Z))),
            np.finfo(np.float32).tiny,
        )
        factor = float(np.ldexp(1.0, -int(np.frexp(top)[1])))
        queries = np.ascontiguousarray(Z * factor, dtype=np.float32)
        index = scan_dequantized(
            queries, codes.shape[0], self.decoder(codes, factor), n_candidates, metric=metric,
            exclude_self=query_is_train, n_threads=n_threads,
        )
        return index, None

    def decoder(self, codes, factor=1.0):
        """``decode(start, stop, out)``: dequantised float32 rows of ``codes`` times ``factor``."""
        d = self.n_components
        q = self.quantizer
        scale = (q.scale_.astype(np.float64) * factor).astype(np.float32)
        zero = q.zero_point_.astype(np.float32)
        if q.granularity == "per_block":
            scale = np.repeat(scale, q.block_size)[:d]
            zero = np.repeat(zero, q.block_size)[:d]
        with_zero = bool(np.any(zero))
        unpack_rows = self._row_unpacker()

        def decode(start, stop, out):
            unpack_rows(codes[start:stop], out)
            if with_zero:
                out -= zero
            out *= scale

        return decode

    def _row_unpacker(self):
        """``unpack_rows(codes, out)``: the codes of some rows, as floats into ``out``."""
        return _copy_rows


class Int4Codec(Int8Codec):
    """4-bit codes of a :class:`Quantizer`, packed two a byte (low nibble first): ``ceil(d / 2)`` bytes.

    Symmetric codes are two's complement nibbles.
    """

    n_bits = 4
    packed = True
    auto_multiplier = 10

    def pack(self, levels):
        return pack_bits(levels, 4)

    def unpack(self, codes):
        return unpack_bits(codes, 4, self.n_components, signed=self.quantizer.scheme == "symmetric")

    def _row_unpacker(self):
        d = self.n_components
        byte = np.arange(256)
        low, high = byte & 15, byte >> 4
        if self.quantizer.scheme == "symmetric":  # two's complement nibbles
            low, high = np.where(low > 7, low - 16, low), np.where(high > 7, high - 16, high)
        low, high = low.astype(np.float32), high.astype(np.float32)

        def unpack_rows(packed, out):
            out[:, 0::2] = low[packed]
            out[:, 1::2] = high[packed[:, : d // 2]]

        return unpack_rows


class BinaryCodec:
    """1-bit codes: the sign bit ``z >= threshold``, packed eight a byte: ``ceil(d / 8)`` bytes.

    Parameters
    ----------
    threshold : ndarray of shape (d,)
        The bit of ``z[j]`` is ``z[j] >= threshold[j]``.
    levels : ndarray of shape (2, d)
        The values that bits 0 and 1 decode to, per dimension.
    n_components : int
    """

    n_bits = 1
    packed = True
    auto_multiplier = 20
    scan_gives_distances = False  # Hamming distances, not the metric's

    def __init__(self, threshold, levels, n_components: int):
        self.threshold = threshold
        self.levels = levels
        self.n_components = int(n_components)

    @classmethod
    def calibrate(cls, Z, *, scheme, granularity, block_size, observer=None) -> BinaryCodec:
        """A codec calibrated on the latent vectors ``Z`` (``observer`` is unused at 1 bit)."""
        return cls(*sign_levels(Z, scheme, granularity, block_size), Z.shape[1])

    @classmethod
    def from_fitted(cls, embedding) -> BinaryCodec:
        return cls(embedding.threshold_, embedding.levels_, embedding.n_components_)

    def fitted_attributes(self) -> dict:
        return {"quantizer_": None, "threshold_": self.threshold, "levels_": self.levels}

    n_columns = Int8Codec.n_columns

    def encode(self, Z):
        """Bits 0/1 of ``Z`` of shape (n, d), unpacked."""
        return (Z >= self.threshold).view(np.uint8)

    def decode(self, levels):
        return np.where(levels.astype(bool), self.levels[1], self.levels[0])

    def pack(self, levels):
        return np.packbits(levels, axis=-1, bitorder="little")

    def unpack(self, codes):
        return unpack_bits(codes, 1, self.n_components)

    def scan(self, Z, codes, n_candidates, *, metric, query_is_train, n_threads):
        """Candidates by Hamming distance of the sign bits; returns ``(index, hamming)``."""
        query_bits = codes if query_is_train else self.pack(self.encode(Z))
        return scan_hamming(query_bits, codes, n_candidates, exclude_self=query_is_train, n_threads=n_threads)


def _copy_rows(codes, out):
    np.copyto(out, codes)


#: The codec of each bit width of ``QuantizedEmbedding``.
CODECS = {8: Int8Codec, 4: Int4Codec, 1: BinaryCodec}


# ------------------------------------------------------- 1-bit calibration


def sign_levels(Z, scheme, granularity, block_size):
    """Thresholds and decoded levels of 1-bit codes.

    Parameters
    ----------
    Z : ndarray of shape (n_samples, d)
    scheme : {"asymmetric", "symmetric"}
        Threshold at the mean of each group of dimensions, or at zero.
    granularity : {"per_channel", "per_tensor", "per_block"}
        The groups: each dimension, all of them, blocks of ``block_size``.
    block_size : int

    Returns
    -------
    threshold : ndarray of shape (d,), dtype of ``Z``
    levels : ndarray of shape (2, d), dtype of ``Z``
        What bit 0 and bit 1 decode to: the mean of the group's values below
        and at-or-above the threshold (asymmetric), or ``∓ mean|z|``
        (symmetric): the least-squares levels of each group.
    """
    return sign_levels_from_sums(lambda column_sums: column_sums(Z), Z.shape, Z.dtype, scheme, granularity, block_size)


def sign_levels_from_sums(reduce, shape, dtype, scheme, granularity, block_size):
    """:func:`sign_levels` from column sums over the rows, which ``reduce`` computes.

    ``reduce(column_sums)`` returns ``column_sums(Z)`` (a float64 vector of
    length ``d``) for the whole of ``Z``: in memory, or added up over the
    blocks of a dask array (one pass per call: one for the symmetric scheme,
    two for the asymmetric one).
    """
    n, d = shape
    group = {"per_channel": np.arange(d), "per_tensor": np.zeros(d, dtype=np.intp),
             "per_block": np.arange(d) // block_size}[granularity]
    n_groups = int(group.max()) + 1
    size = np.bincount(group, minlength=n_groups) * float(n)

    def group_sum(columns):
        return np.bincount(group, weights=columns, minlength=n_groups)

    if scheme == "symmetric":
        threshold = np.zeros(d)
        alpha = group_sum(reduce(_abs_sums)) / size
        levels = np.stack([-alpha[group], alpha[group]])
    else:
        # The threshold in Z's dtype, and the bits as transform will set them.
        total = group_sum(reduce(_sums))
        threshold = ((total / size)[group]).astype(dtype)
        above = reduce(functools.partial(_above_counts_and_sums, threshold=threshold))
        n_above, sum_above = group_sum(above[:d]), group_sum(above[d:])
        sum_below = total - sum_above
        centre = threshold.astype(np.float64)  # a side with no values decodes to the threshold
        with np.errstate(invalid="ignore", divide="ignore"):
            high = np.where(n_above > 0, sum_above / n_above, np.nan)[group]
            low = np.where(size - n_above > 0, sum_below / (size - n_above), np.nan)[group]
        levels = np.stack([np.where(np.isnan(low), centre, low), np.where(np.isnan(high), centre, high)])
    return threshold.astype(dtype), levels.astype(dtype)


def _sums(Z):
    return np.asarray(Z).sum(axis=0, dtype=np.float64)


def _abs_sums(Z):
    return np.abs(np.asarray(Z).astype(np.float64)).sum(axis=0)


def _above_counts_and_sums(Z, threshold):
    """Per column: how many values are at or above ``threshold``, then their sum (one vector)."""
    Z = np.asarray(Z)
    above = Z >= threshold
    return np.concatenate([above.sum(axis=0).astype(np.float64), np.where(above, Z.astype(np.float64), 0.0).sum(axis=0)])
