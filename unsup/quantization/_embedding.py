"""``QuantizedEmbedding``: int8, 4-bit and 1-bit codes of latent vectors, searchable.

Design constraints:

- A meta-estimator over any scikit-learn transformer (an ``Autoencoder``, a
  ``VariationalAutoencoder``, ``PCA``; ``None`` when the input already is the
  embedding): ``fit`` fits a clone of it and calibrates the codes on the latent
  vectors of the training set; the parameters stay as given (scikit-learn's
  ``clone`` contract).
- 8- and 4-bit codes come from a :class:`Quantizer` (its observers,
  granularities and clip-and-round arithmetic: out-of-range latents saturate,
  never wrap). 1-bit codes are sign bits around a per-dimension threshold (the
  mean with the asymmetric scheme, zero with the symmetric one), decoded to the
  mean of each side (the least-squares levels for that threshold).
- Sub-byte codes are packed along the feature axis (4-bit: two a byte, low
  nibble first; 1-bit: eight a byte, ``np.packbits(..., bitorder="little")``),
  so the codes held for search take ``compression_ratio_`` times less memory
  than float32.
- ``kneighbors`` answers as ``sklearn.neighbors.NearestNeighbors`` does
  (``X=None`` queries the fitted set, each point excluded from its own
  neighbours) from a scan of the codes (:mod:`unsup.quantization._search`),
  and can rerank a longer candidate list with float distances.
"""

from __future__ import annotations

import functools
import numbers
from numbers import Integral

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, clone
from sklearn.utils import get_tags
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from unsup._dask import dask_support
from unsup._sklearn_adapter import Interval, StrOptions, fit_context
from unsup.quantization._functional import SCHEMES, quant_range
from unsup.quantization._observers import GRANULARITIES, OBSERVER_NAMES, Observer
from unsup.quantization._packing import pack_bits, unpack_bits
from unsup.quantization._quantizer import Quantizer
from unsup.quantization._search import (
    exact_distances,
    scan_dequantized,
    scan_hamming,
    select_sorted,
)
from unsup.utils._threads import openmp_n_threads

__all__ = ["QuantizedEmbedding"]

EMBEDDING_BITS = (1, 4, 8)
SEARCH_METRICS = ("euclidean", "cosine")
# Candidates reranked per neighbour asked for, when rescore_multiplier="auto".
AUTO_MULTIPLIER = {8: 4, 4: 10, 1: 20}


def _encoder_has(name):
    def check(self):
        return self.encoder is None or hasattr(self.encoder, name)

    return check


@dask_support
class QuantizedEmbedding(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Compress latent vectors to 8-, 4- or 1-bit codes, and search them.

    ``fit`` fits a clone of ``encoder`` on ``X`` (none when ``encoder=None``:
    ``X`` already is the embedding), calibrates the codes on the latent
    vectors and keeps the codes of the training set for :meth:`kneighbors`.
    ``transform`` returns codes (or, with ``output="dequantized"``, the
    dequantised latents, for a following estimator to consume).

    - 8 bits: a :class:`Quantizer`'s codes ``clamp(round(z / s) + zp)``, one
      byte per latent dimension (``compression_ratio_`` 4);
    - 4 bits: the same on 4 bits, packed two a byte, ``ceil(d / 2)`` bytes (8);
    - 1 bit: the sign bit ``z >= threshold_``, packed eight a byte,
      ``ceil(d / 8)`` bytes (32).

    Parameters
    ----------
    encoder : estimator with ``fit`` and ``transform``, default=None
        The transformer whose output is compressed, e.g. an
        :class:`~unsup.neural.Autoencoder` or ``sklearn.decomposition.PCA``.
        It is cloned in ``fit``; ``None`` compresses ``X`` itself.
    n_bits : {8, 4, 1}, default=8
        Bits per latent value.
    scheme : {"asymmetric", "symmetric"}, default="asymmetric"
        8 and 4 bits: the :class:`Quantizer` scheme (``uint8`` codes in
        ``[0, 2ⁿ − 1]`` with a zero point, or ``int8`` codes in
        ``±(2ⁿ⁻¹ − 1)``). 1 bit: ``"asymmetric"`` thresholds each dimension at
        its mean (centred sign bits), ``"symmetric"`` at zero (plain signs,
        decoded to ``±mean|z|``).
    granularity : {"per_channel", "per_tensor", "per_block"}, default="per_channel"
        One range (1 bit: one threshold and pair of levels) per latent
        dimension, one for all, or one per block of ``block_size`` dimensions.
    block_size : int, default=64
        Dimensions per block of ``"per_block"``.
    observer : str or Observer, default="minmax"
        How 8- and 4-bit ranges are calibrated: ``"minmax"``,
        ``"moving_average"``, ``"percentile"``, ``"mse"``, ``"entropy"`` or an
        observer instance (see :class:`Quantizer`). Unused at 1 bit.
    output : {"codes", "dequantized"}, default="codes"
        What :meth:`transform` returns: the codes, or the dequantised latent
        vectors of shape (n_samples, n_components_).
    keep_float : bool, default=True
        Keep the float latent vectors of the training set (``embedding_``) so
        that :meth:`kneighbors` reranks its candidates with exact float
        distances. This costs ``n_samples × n_components_`` floats on top of
        the codes; with ``False`` only the codes are held (``compression_ratio_``
        times less than float32) and rescoring uses the dequantised vectors.
    rescore_multiplier : int or "auto", default="auto"
        :meth:`kneighbors` with ``rescore=True`` reranks ``rescore_multiplier ×
        n_neighbors`` candidates from the scan of the codes. ``"auto"``: 4 at 8
        bits, 10 at 4 bits, 20 at 1 bit.

    Attributes
    ----------
    encoder_ : estimator or None
        The fitted clone of ``encoder``.
    quantizer_ : Quantizer or None
        The calibrated quantizer of the latent vectors (8 and 4 bits).
    threshold_ : ndarray of shape (n_components_,) or None
        1 bit: the bit of ``z[j]`` is ``z[j] >= threshold_[j]``.
    levels_ : ndarray of shape (2, n_components_) or None
        1 bit: the values that bits 0 and 1 decode to, per dimension.
    codes_ : ndarray of uint8 or int8 of shape (n_samples, n_code_columns)
        Codes of the training set, the index :meth:`kneighbors` scans.
    embedding_ : ndarray of shape (n_samples, n_components_) or None
        Float latent vectors of the training set (``keep_float=True``).
    n_components_ : int
        Dimension of the latent vectors.
    compression_ratio_ : float
        Bytes of a float32 latent vector over bytes of its code
        (``4 · d / code bytes``: 4 at 8 bits, 8 at 4 bits, 32 at 1 bit for a
        dimension ``d`` that fills the bytes).
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when ``X`` has string column names.

    See Also
    --------
    unsup.quantization.Quantizer : The quantizer of the 8- and 4-bit codes.
    sklearn.neighbors.NearestNeighbors : The exact float search :meth:`kneighbors` mirrors.

    Notes
    -----
    Codes are ``uint8`` (asymmetric) or ``int8`` (symmetric) at 8 bits; packed
    ``uint8`` bytes at 4 bits (two's complement nibbles for the symmetric
    scheme) and at 1 bit. Dequantised vectors are float32 when the latents are
    float32, float64 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import QuantizedEmbedding
    >>> rng = np.random.default_rng(0)
    >>> Z = rng.standard_normal((200, 16)).astype(np.float32)
    >>> qe = QuantizedEmbedding(n_bits=8).fit(Z)
    >>> codes = qe.transform(Z)
    >>> codes.dtype, codes.shape, qe.compression_ratio_
    (dtype('uint8'), (200, 16), 4.0)
    >>> bool(np.abs(qe.inverse_transform(codes) - Z).max() <= qe.quantizer_.scale_.max())
    True
    >>> dist, ind = qe.kneighbors(Z[:2], n_neighbors=3)
    >>> ind[:, 0].tolist()
    [0, 1]
    >>> QuantizedEmbedding(n_bits=1).fit(Z).transform(Z).shape  # 16 sign bits: 2 bytes
    (200, 2)
    """

    _parameter_constraints: dict = {
        "encoder": "no_validation",  # fit checks it has fit and transform
        "n_bits": [Interval(Integral, 1, 8, closed="both")],
        "scheme": [StrOptions(set(SCHEMES))],
        "granularity": [StrOptions(set(GRANULARITIES))],
        "block_size": [Interval(Integral, 1, None, closed="left")],
        "observer": [StrOptions(set(OBSERVER_NAMES)), Observer],
        "output": [StrOptions({"codes", "dequantized"})],
        "keep_float": ["boolean"],
        "rescore_multiplier": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        encoder=None,
        *,
        n_bits=8,
        scheme="asymmetric",
        granularity="per_channel",
        block_size=64,
        observer="minmax",
        output="codes",
        keep_float=True,
        rescore_multiplier="auto",
    ):
        self.encoder = encoder
        self.n_bits = n_bits
        self.scheme = scheme
        self.granularity = granularity
        self.block_size = block_size
        self.observer = observer
        self.output = output
        self.keep_float = keep_float
        self.rescore_multiplier = rescore_multiplier

    # ------------------------------------------------------------ validation
    def _check_params(self):
        if self.n_bits not in EMBEDDING_BITS:
            raise ValueError(f"n_bits must be one of {EMBEDDING_BITS}; got {self.n_bits!r}.")
        if self.encoder is not None and not (hasattr(self.encoder, "fit") and hasattr(self.encoder, "transform")):
            raise TypeError(
                "encoder must be None or a transformer with fit and transform methods; "
                f"got {self.encoder!r}."
            )

    def _latent(self, X, *, reset, copy=False):
        """The latent vectors of ``X``: validated ``X`` itself, or the encoder's output."""
        if self.encoder is None:
            return validate_data(self, X, dtype=(np.float64, np.float32), order="C", reset=reset, copy=copy)
        _check_not_1d(X)
        validate_data(self, X, skip_check_array=True, reset=reset)
        return self._check_latent(self.encoder_.transform(X), X)

    @staticmethod
    def _check_latent(Z, X):
        """The encoder's output as a dense float array; NaN or infinity raise, blamed on
        ``X`` when ``X`` holds them (an encoder may pass them through)."""
        try:
            Z = check_array(Z, dtype=(np.float64, np.float32), accept_sparse=True, input_name="the encoder's output")
        except ValueError:
            check_array(X, dtype=None, accept_sparse=True, input_name="X")  # X's own NaN or infinity
            raise
        if sp.issparse(Z):
            Z = Z.toarray()
        return np.ascontiguousarray(Z)

    @property
    def _n_features_out(self):
        """Columns of ``transform``'s output (for ``get_feature_names_out``)."""
        if self.output == "dequantized":
            return self.n_components_
        return self.codes_.shape[1]

    # ------------------------------------------------------------------ fit
    @fit_context(prefer_skip_nested_validation=False)  # the encoder's parameters are validated by it
    def fit(self, X, y=None):
        """Fit the encoder, calibrate the codes and index the training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data (the embedding itself when ``encoder=None``).
        y : None
            Ignored; passed to the encoder's ``fit``.

        Returns
        -------
        self : QuantizedEmbedding
        """
        self._fit(X, y)
        return self

    @fit_context(prefer_skip_nested_validation=False)
    def fit_transform(self, X, y=None):
        """Fit, then return the codes of ``X`` (those indexed: no second pass).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        Xt : ndarray
            As :meth:`transform`.
        """
        levels = self._fit(X, y)
        if self.output == "dequantized":
            return self._decode_levels(levels)
        return self.codes_.copy()

    def _fit(self, X, y):
        """Fit and index; return the unpacked codes of the training set."""
        self._check_params()
        for name in ("encoder_", "n_features_in_", "feature_names_in_"):
            self.__dict__.pop(name, None)
        if self.encoder is None:
            self.encoder_ = None
            Z = self._latent(X, reset=True, copy=self.keep_float)
        else:
            _check_not_1d(X)
            validate_data(self, X, skip_check_array=True, reset=True)
            self.encoder_ = clone(self.encoder).fit(X, y)
            Z = self._check_latent(self.encoder_.transform(X), X)
        self.n_components_ = Z.shape[1]
        self._dtype = Z.dtype
        if self.n_bits == 1:
            self.quantizer_ = None
            self.threshold_, self.levels_ = _sign_levels(
                Z, self.scheme, self.granularity, self.block_size
            )
        else:
            self.quantizer_ = Quantizer(
                self.n_bits,
                scheme=self.scheme,
                granularity=self.granularity,
                block_size=self.block_size,
                observer=self.observer,
            ).fit(Z)
            self.threshold_ = self.levels_ = None
        levels = self._quantize(Z)
        self.codes_ = self._pack(levels)
        self.embedding_ = Z if self.keep_float else None
        self.compression_ratio_ = 4.0 * self.n_components_ / self.codes_.shape[1]
        return levels

    # ------------------------------------------------------------ the codes
    def _quantize(self, Z):
        """Unpacked codes of ``Z`` of shape (n, d): Quantizer codes, or bits 0/1."""
        if self.n_bits == 1:
            return (Z >= self.threshold_).view(np.uint8)
        return self.quantizer_.transform(Z)

    def _pack(self, levels):
        if self.n_bits == 1:
            return np.packbits(levels, axis=-1, bitorder="little")
        if self.n_bits == 4:
            return pack_bits(levels, 4)
        return levels

    def _unpack(self, codes):
        if self.n_bits == 1:
            return unpack_bits(codes, 1, self.n_components_)
        if self.n_bits == 4:
            return unpack_bits(codes, 4, self.n_components_, signed=self.scheme == "symmetric")
        return codes

    def _decode_levels(self, levels):
        """Dequantised vectors (the latent dtype) of unpacked codes of any leading shape."""
        if self.n_bits == 1:
            return np.where(levels.astype(bool), self.levels_[1], self.levels_[0])
        lead = levels.shape[:-1]
        flat = levels.reshape(-1, self.n_components_)
        return self.quantizer_.inverse_transform(flat).reshape(lead + (self.n_components_,))

    def _code_columns(self):
        d = self.n_components_
        return {8: d, 4: -(-d // 2), 1: -(-d // 8)}[self.n_bits]

    def _check_codes(self, Xt):
        codes = check_array(Xt, dtype=None, order="C", input_name="X")
        n_columns = self._code_columns()
        if codes.shape[1] != n_columns:
            raise ValueError(
                f"X has {codes.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_columns} code columns as input."
            )
        if codes.dtype.kind not in "iub":
            if codes.dtype.kind != "f" or not np.all(codes == np.rint(codes)):
                raise ValueError("Codes must hold integers.")
            codes = codes.astype(np.int64)
        if self.n_bits in (1, 4):
            if codes.size and (codes.min() < 0 or codes.max() > 255):
                raise ValueError(
                    f"Packed {self.n_bits}-bit codes are bytes in [0, 255]; got values in "
                    f"[{codes.min()}, {codes.max()}]."
                )
            codes = codes.astype(np.uint8)
        return codes

    def get_feature_names_out(self, input_features=None):
        """Names of the columns of :meth:`transform`'s output (and of ``set_output`` DataFrames).

        ``quantizedembedding0``, ``quantizedembedding1``, ... for one column
        per latent dimension (8-bit codes, or ``output="dequantized"``). At 4
        and 1 bit a column is a packed byte, not a dimension: byte ``i`` holds
        the codes of dimensions ``2i`` and ``2i + 1`` (4 bits, low nibble
        first) or ``8i`` to ``8i + 7`` (1 bit, lowest bit first), and the
        columns are named ``quantizedembedding_packed_byte0``, ... .

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Checked against ``feature_names_in_`` when given; the output
            names do not depend on it.

        Returns
        -------
        feature_names_out : ndarray of str objects

        Examples
        --------
        >>> import numpy as np
        >>> from unsup.quantization import QuantizedEmbedding
        >>> Z = np.random.default_rng(0).normal(size=(20, 6))
        >>> QuantizedEmbedding(n_bits=4).fit(Z).get_feature_names_out().tolist()
        ['quantizedembedding_packed_byte0', 'quantizedembedding_packed_byte1', 'quantizedembedding_packed_byte2']
        >>> QuantizedEmbedding(n_bits=8).fit(Z).get_feature_names_out()[:2].tolist()
        ['quantizedembedding0', 'quantizedembedding1']
        """
        names = super().get_feature_names_out(input_features)
        if self.output == "codes" and self.n_bits != 8:
            prefix = type(self).__name__.lower()
            names = np.asarray([f"{prefix}_packed_byte{i}" for i in range(len(names))], dtype=object)
        return names

    # -------------------------------------------------------------- methods
    def transform(self, X):
        """Codes of the latent vectors of ``X`` (or their dequantised values).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Xt : ndarray of shape (n_samples, n_code_columns) or (n_samples, n_components_)
            ``output="codes"``: ``uint8``/``int8`` codes at 8 bits, packed
            ``uint8`` bytes at 4 bits (``ceil(d / 2)`` columns) and 1 bit
            (``ceil(d / 8)``). ``output="dequantized"``: the dequantised latent
            vectors. Latents outside the calibrated range saturate at the
            extreme codes.
        """
        check_is_fitted(self)
        levels = self._quantize(self._latent(X, reset=False))
        if self.output == "dequantized":
            return self._decode_levels(levels)
        return self._pack(levels)

    def inverse_transform(self, X):
        """Dequantised latent vectors from the output of :meth:`transform`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_code_columns) or (n_samples, n_components_)
            Codes (``output="codes"``); with ``output="dequantized"``, latent
            vectors, which are quantized and dequantised (so the output of
            ``transform`` comes back unchanged).

        Returns
        -------
        Z_hat : ndarray of shape (n_samples, n_components_)
            float32 when the latents were float32, float64 otherwise.
        """
        check_is_fitted(self)
        if self.output == "dequantized":
            Z = check_array(X, dtype=(np.float64, np.float32), order="C", input_name="X")
            if Z.shape[1] != self.n_components_:
                raise ValueError(
                    f"X has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                    f"{self.n_components_} features as input."
                )
            return self._decode_levels(self._quantize(Z.astype(self._dtype, copy=False)))
        return self._decode_levels(self._unpack(self._check_codes(X)))

    @available_if(_encoder_has("inverse_transform"))
    def reconstruct(self, X):
        """``X`` encoded, quantized, dequantised and decoded back to the input space.

        Available when ``encoder`` is None (then the dequantised ``X``) or has
        ``inverse_transform``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_hat : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        Z_hat = self._decode_levels(self._quantize(self._latent(X, reset=False)))
        if self.encoder_ is None:
            return Z_hat
        return self.encoder_.inverse_transform(Z_hat)

    def score(self, X, y=None):
        """Minus the mean squared quantization error of the latent vectors of ``X``.

        Higher is better, so ``GridSearchCV`` can tune the quantization
        (``n_bits``, ``observer``, ``granularity``) without labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
            ``−mean((z − ẑ)²)`` over all samples and latent dimensions.
        """
        check_is_fitted(self)
        Z = self._latent(X, reset=False)
        Z_hat = self._decode_levels(self._quantize(Z))
        return -float(np.mean(np.square(Z.astype(np.float64) - Z_hat.astype(np.float64))))

    # --------------------------------------------------------------- search
    def kneighbors(self, X=None, n_neighbors=5, *, metric="euclidean", rescore=True, return_distance=True):
        """Nearest neighbours in the fitted set, found by scanning the codes.

        As :meth:`sklearn.neighbors.NearestNeighbors.kneighbors`: with
        ``X=None`` the queries are the fitted points themselves and each point
        is not counted among its own neighbours.

        The scan compares each query's latent vector (float) with the
        dequantised codes (8 and 4 bits, blocks of codes decoded and multiplied
        by the queries in one BLAS call), or its sign bits with theirs by
        Hamming distance (1 bit). With ``rescore``, ``rescore_multiplier ×
        n_neighbors`` candidates are kept and reranked by float distances to
        ``embedding_`` (``keep_float=True``) or to the dequantised vectors.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), default=None
            Query points, in the input space (encoded as ``transform`` does).
            ``None``: the fitted points, by their float latents
            (``keep_float=True``) or their dequantised codes.
        n_neighbors : int, default=5
            Neighbours per query.
        metric : {"euclidean", "cosine"}, default="euclidean"
            Distance of the scan and of the returned distances.
        rescore : bool, default=True
            Rerank a longer candidate list by float distances.
        return_distance : bool, default=True
            Return the distances as well as the indices.

        Returns
        -------
        distances : ndarray of float64 of shape (n_queries, n_neighbors)
            Sorted ascending. ``metric`` distances from the query's float
            latent to: with ``rescore`` and ``keep_float=True``, the float
            latents of the neighbours (the exact distances); otherwise their
            dequantised vectors. At 1 bit without ``rescore``: the Hamming
            distance, the fraction of the ``n_components_`` sign bits that
            differ. Returned only with ``return_distance=True``.
        indices : ndarray of intp of shape (n_queries, n_neighbors)
            Rows of the fitted set; among equal distances, lower rows first.
        """
        check_is_fitted(self)
        if metric not in SEARCH_METRICS:
            raise ValueError(f"metric must be one of {SEARCH_METRICS}; got {metric!r}.")
        if isinstance(n_neighbors, (bool, np.bool_)) or not isinstance(n_neighbors, numbers.Real):
            raise TypeError(f"n_neighbors does not take {type(n_neighbors)} value, enter integer value")
        if n_neighbors <= 0:
            raise ValueError(f"Expected n_neighbors > 0. Got {n_neighbors}")
        if not isinstance(n_neighbors, numbers.Integral):
            raise TypeError(f"n_neighbors does not take {type(n_neighbors)} value, enter integer value")
        n_neighbors = int(n_neighbors)
        n_fit = self.codes_.shape[0]
        query_is_train = X is None
        if query_is_train:
            Z = self.embedding_ if self.embedding_ is not None else self._decode_levels(self._unpack(self.codes_))
        else:
            Z = self._latent(X, reset=False)
        available = n_fit - 1 if query_is_train else n_fit
        if n_neighbors > available:
            inequality = "n_neighbors < n_samples_fit" if query_is_train else "n_neighbors <= n_samples_fit"
            raise ValueError(
                f"Expected {inequality}, but n_neighbors = {n_neighbors}, "
                f"n_samples_fit = {n_fit}, n_samples = {Z.shape[0]}"
            )
        if len(Z) == 0:
            empty = np.empty((0, n_neighbors))
            return (empty, empty.astype(np.intp)) if return_distance else empty.astype(np.intp)

        # Reranking pays where the scan's distances are not the final ones.
        reranks = rescore and (self.n_bits == 1 or self.embedding_ is not None)
        if reranks:
            multiplier = AUTO_MULTIPLIER[self.n_bits] if self.rescore_multiplier == "auto" else self.rescore_multiplier
            n_candidates = min(available, multiplier * n_neighbors)
        else:
            n_candidates = n_neighbors

        n_threads = openmp_n_threads()  # the usable cores, or OMP_NUM_THREADS
        if self.n_bits == 1:
            query_bits = self.codes_ if query_is_train else self._pack(self._quantize(Z))
            index, hamming = scan_hamming(
                query_bits, self.codes_, n_candidates, exclude_self=query_is_train, n_threads=n_threads
            )
        else:
            # The scan runs in float32 on queries and codes scaled by one power of two
            # (exact, and the ranking is unchanged) that keeps every value below 1,
            # so squared norms cannot overflow whatever the latents' magnitude.
            qmin, qmax = quant_range(self.n_bits, self.scheme)
            q = self.quantizer_
            top = max(
                float(np.max(np.abs(np.asarray([qmin, qmax])[:, None] - q.zero_point_) * q.scale_)),
                float(np.max(np.abs(Z))),
                np.finfo(np.float32).tiny,
            )
            factor = float(np.ldexp(1.0, -int(np.frexp(top)[1])))
            queries = np.ascontiguousarray(Z * factor, dtype=np.float32)
            index = scan_dequantized(
                queries, n_fit, self._decoder(factor), n_candidates, metric=metric,
                exclude_self=query_is_train, n_threads=n_threads,
            )
        if not rescore and self.n_bits == 1:
            dist = hamming.astype(np.float64) / self.n_components_
        elif reranks and self.embedding_ is not None:
            dist = exact_distances(Z, self.embedding_, index, metric)
        else:
            dist = exact_distances(Z, lambda idx: self._decode_levels(self._unpack(self.codes_[idx])), index, metric)
        dist, index = select_sorted(dist, index, n_neighbors)
        return (dist, index) if return_distance else index

    def _decoder(self, factor=1.0):
        """``decode(start, stop, out)``: dequantised float32 rows of ``codes_`` times ``factor``."""
        d = self.n_components_
        q = self.quantizer_
        scale = (q.scale_.astype(np.float64) * factor).astype(np.float32)
        zero = q.zero_point_.astype(np.float32)
        if self.granularity == "per_block":
            scale = np.repeat(scale, self.block_size)[:d]
            zero = np.repeat(zero, self.block_size)[:d]
        with_zero = bool(np.any(zero))
        codes = self.codes_
        if self.n_bits == 4:
            byte = np.arange(256)
            low, high = byte & 15, byte >> 4
            if self.scheme == "symmetric":  # two's complement nibbles
                low, high = np.where(low > 7, low - 16, low), np.where(high > 7, high - 16, high)
            low, high = low.astype(np.float32), high.astype(np.float32)

        def decode(start, stop, out):
            if self.n_bits == 8:
                np.copyto(out, codes[start:stop])
            else:
                packed = codes[start:stop]
                out[:, 0::2] = low[packed]
                out[:, 1::2] = high[packed[:, : d // 2]]
            if with_zero:
                out -= zero
            out *= scale

        return decode

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        encoder_tags = get_tags(self.encoder) if self.encoder is not None else None
        if self.output == "codes":
            tags.transformer_tags.preserves_dtype = []  # integer codes, whatever the input
        elif encoder_tags is not None and encoder_tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = list(encoder_tags.transformer_tags.preserves_dtype)
        else:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        if encoder_tags is not None:
            tags.input_tags.sparse = encoder_tags.input_tags.sparse
            # allow_nan stays False: the latent vectors are quantized, and must be finite.
            tags.non_deterministic = encoder_tags.non_deterministic
        return tags


def _check_not_1d(X):
    """scikit-learn's "Expected 2D array ... Reshape your data" error for 1-d input.

    With an encoder, ``X`` goes to it unconverted (it may be a DataFrame or
    sparse); only its shape is checked here.
    """
    if getattr(X, "ndim", None) == 1 or (isinstance(X, (list, tuple)) and np.ndim(X) == 1):
        check_array(X, dtype=None, ensure_all_finite=False)


def _sign_levels(Z, scheme, granularity, block_size):
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
    """:func:`_sign_levels` from column sums over the rows, which ``reduce`` computes.

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
