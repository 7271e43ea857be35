"""``QuantizedEmbedding``: int8, 4-bit and 1-bit codes of latent vectors, searchable.

Design constraints:

- A meta-estimator over any scikit-learn transformer (an ``Autoencoder``, a
  ``VariationalAutoencoder``, ``PCA``; ``None`` when the input already is the
  embedding): ``fit`` fits a clone of it and calibrates the codes on the latent
  vectors of the training set; the parameters stay as given (scikit-learn's
  ``clone`` contract).
- Three roles kept apart: this estimator holds the scikit-learn contract
  (validation, fitting the encoder, the fitted attributes); a codec per bit
  width encodes, decodes, packs and sizes the codes
  (:mod:`unsup.quantization._codecs`: 8- and 4-bit codes of a
  :class:`Quantizer`, 1-bit sign bits); a :class:`~unsup.quantization._index.CodeIndex`
  searches them. No ``n_bits`` branch here: the codec of :data:`CODECS` decides.
- Sub-byte codes are packed along the feature axis, so the codes held for
  search take ``compression_ratio_`` times less memory than float32.
- ``kneighbors`` answers as ``sklearn.neighbors.NearestNeighbors`` does
  (``X=None`` queries the fitted set, each point excluded from its own
  neighbours) from a scan of the codes, and can rerank a longer candidate
  list with float distances.
"""

from __future__ import annotations

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
from unsup.quantization._codecs import CODECS
from unsup.quantization._functional import SCHEMES
from unsup.quantization._index import CodeIndex
from unsup.quantization._observers import GRANULARITIES, OBSERVER_NAMES, Observer
from unsup.quantization._search import search_metric

__all__ = ["QuantizedEmbedding"]

EMBEDDING_BITS = tuple(sorted(CODECS))


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
        if self.n_bits not in CODECS:
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
            return self._codec().decode(levels)
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
        codec = CODECS[self.n_bits].calibrate(
            Z, scheme=self.scheme, granularity=self.granularity, block_size=self.block_size, observer=self.observer
        )
        levels = self._set_codes(codec, Z, codec.encode(Z))
        self.embedding_ = Z if self.keep_float else None
        return levels

    def _set_codes(self, codec, Z, levels):
        """Record a calibrated codec and the unpacked codes ``levels`` of the training set; return them."""
        self.n_components_ = codec.n_components
        self._dtype = Z.dtype
        self.__dict__.update(codec.fitted_attributes())
        self.codes_ = codec.pack(levels)
        self.compression_ratio_ = 4.0 * self.n_components_ / self.codes_.shape[1]
        return levels

    # ------------------------------------------------------------ the codes
    def _codec(self):
        """The codec of the fitted codes (:mod:`unsup.quantization._codecs`), built from the fitted attributes."""
        return CODECS[self.n_bits].from_fitted(self)

    def _index(self):
        """The search index over ``codes_`` (:class:`~unsup.quantization._index.CodeIndex`)."""
        return CodeIndex(self._codec(), self.codes_, self.embedding_)

    def _round_trip(self, Z):
        """``Z`` encoded and decoded: the dequantised latents."""
        codec = self._codec()
        return codec.decode(codec.encode(Z))

    def _check_codes(self, Xt):
        codes = check_array(Xt, dtype=None, order="C", input_name="X")
        codec = self._codec()
        n_columns = codec.n_columns
        if codes.shape[1] != n_columns:
            raise ValueError(
                f"X has {codes.shape[1]} features, but {type(self).__name__} is expecting "
                f"{n_columns} code columns as input."
            )
        if codes.dtype.kind not in "iub":
            if codes.dtype.kind != "f" or not np.all(codes == np.rint(codes)):
                raise ValueError("Codes must hold integers.")
            codes = codes.astype(np.int64)
        if codec.packed:
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
        if self.output == "codes" and CODECS[self.n_bits].packed:
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
        codec = self._codec()
        levels = codec.encode(self._latent(X, reset=False))
        if self.output == "dequantized":
            return codec.decode(levels)
        return codec.pack(levels)

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
            return self._round_trip(Z.astype(self._dtype, copy=False))
        codec = self._codec()
        return codec.decode(codec.unpack(self._check_codes(X)))

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
        Z_hat = self._round_trip(self._latent(X, reset=False))
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
        Z_hat = self._round_trip(Z)
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
            Distance of the scan and of the returned distances (an alias such
            as ``"l2"``, or the metric object of :func:`unsup.metrics.get_metric`,
            is accepted too).
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
        search_metric(metric)
        if isinstance(n_neighbors, (bool, np.bool_)) or not isinstance(n_neighbors, numbers.Real):
            raise TypeError(f"n_neighbors does not take {type(n_neighbors)} value, enter integer value")
        if n_neighbors <= 0:
            raise ValueError(f"Expected n_neighbors > 0. Got {n_neighbors}")
        if not isinstance(n_neighbors, numbers.Integral):
            raise TypeError(f"n_neighbors does not take {type(n_neighbors)} value, enter integer value")
        n_neighbors = int(n_neighbors)
        index = self._index()
        n_fit = len(index)
        query_is_train = X is None
        Z = index.fitted_latents() if query_is_train else self._latent(X, reset=False)
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
        dist, ind = index.kneighbors(
            Z, n_neighbors, query_is_train=query_is_train, metric=metric, rescore=rescore,
            rescore_multiplier=self.rescore_multiplier,
        )
        return (dist, ind) if return_distance else ind

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
