"""The ``Quantizer`` transformer: fit calibrates, transform gives integer codes.

scikit-learn's contract: ``__init__`` stores parameters, ``fit`` validates
and calibrates (``partial_fit`` streams calibration batches through the
observer), ``transform`` returns the codes and ``inverse_transform`` the
dequantised floats. The heavy passes run in the chunked kernels of
:mod:`unsup.quantization._kernels`, with the finite check fused into them, so
``transform`` costs about one read of ``X`` and one write of its codes.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_array, check_is_fitted, validate_data

from unsup._dask import dask_support
from unsup.quantization._functional import (
    as_codes,
    check_qconfig,
    code_dtype,
    dequantize_array,
    quant_range,
    quantize_array,
)
from unsup.quantization._observers import batch_minmax, check_granularity, get_observer

__all__ = ["Quantizer"]

# Input per chunk of rows in quantize / inverse_transform: the working set beside the output.
_CHUNK_BYTES = 2 << 20


@dask_support
class Quantizer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Uniform quantization of features to ``n_bits`` integer codes.

    ``fit`` calibrates: an observer chooses the clipping range of each
    tensor, feature or block of features from ``X`` and the scale and zero
    point follow (:func:`calculate_qparams`). ``transform`` maps ``X`` to codes
    ``clamp(round(x / s) + z, qmin, qmax)``; out-of-range values saturate and
    never wrap. ``inverse_transform`` maps codes back to ``s (x_q − z)``.

    Parameters
    ----------
    n_bits : int, default=8
        Bits per code: 1 to 8, or 16 (the symmetric scheme needs 2 or more).
    scheme : {"symmetric", "asymmetric"}, default="symmetric"
        ``"symmetric"``: zero point 0, codes in ``±(2ⁿ⁻¹ − 1)`` of dtype
        ``int8``. ``"asymmetric"`` (affine): codes in ``[0, 2ⁿ − 1]`` of dtype
        ``uint8``, zero exactly representable. 16 bits use ``int16``/``uint16``.
    granularity : {"per_tensor", "per_channel", "per_block"}, default="per_tensor"
        One range for all of ``X``; one per feature (``per_channel``, along
        ``axis``); or one per block of ``block_size`` consecutive features
        (``per_block``).
    axis : {1, -1}, default=1
        The channel axis of ``per_channel``: the feature axis of ``X`` (its
        only axis that exists the same at fit and transform time).
    block_size : int, default=64
        Features per block of ``per_block``; the last block may be shorter.
    observer : str or Observer, default="minmax"
        How the range is chosen: ``"minmax"``, ``"moving_average"``,
        ``"percentile"``, ``"mse"``, ``"entropy"``, or an observer instance
        (its own parameters, e.g. ``percentile``, are kept; ``n_bits``,
        ``scheme``, ``granularity`` and ``block_size`` come from here).
    rounding : {"nearest", "floor"}, default="nearest"
        Round half to even (as torch), or down (the course's ⌊·⌋).
    dynamic : bool, default=False
        Compute the ranges per sample at transform time (dynamic
        quantization): ``per_tensor`` gives each row one range, ``per_block``
        each row its own blocks (as bitsandbytes); ``per_channel`` and the
        ``"entropy"`` observer are not available. ``fit`` then only checks ``X``; :meth:`quantize` returns the
        per-sample scales that :meth:`inverse_transform` needs.

    Attributes
    ----------
    scale_ : ndarray of float32 of shape (1,), (n_features_in_,) or (n_blocks,)
        Per tensor, channel or block (static quantization only).
    zero_point_ : ndarray of int32, shaped as ``scale_``
        0 for the symmetric scheme (static quantization only).
    observer_ : Observer
        The observer that was fed the calibration data (unused copy
        template when ``dynamic=True``).
    n_samples_seen_ : int
        Samples seen by ``fit`` and ``partial_fit``.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Names of features seen during ``fit``, when ``X`` has string column names.

    See Also
    --------
    unsup.quantization.quantize : The functional form, for any shape and for torch tensors.

    Notes
    -----
    The codes equal those of ``torch.fake_quantize_per_tensor_affine`` /
    ``_per_channel_affine`` with the same scale and zero point (torch's
    arithmetic: ``x`` times the float32 reciprocal of the scale, rounded half
    to even). ``inverse_transform`` returns float32 when ``fit`` saw float32,
    float64 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import Quantizer
    >>> X = np.array([[-1.0, 0.5], [0.0, 2.0], [1.0, 4.0]], dtype=np.float32)
    >>> q = Quantizer(n_bits=4, granularity="per_channel").fit(X)
    >>> q.scale_
    array([0.14285715, 0.5714286 ], dtype=float32)
    >>> codes = q.transform(X)
    >>> codes
    array([[-7,  1],
           [ 0,  3],
           [ 7,  7]], dtype=int8)
    >>> q.inverse_transform(codes)
    array([[-1.       ,  0.5714286],
           [ 0.       ,  1.7142859],
           [ 1.       ,  4.       ]], dtype=float32)
    """

    def __init__(
        self,
        n_bits: int = 8,
        *,
        scheme: str = "symmetric",
        granularity: str = "per_tensor",
        axis: int = 1,
        block_size: int = 64,
        observer="minmax",
        rounding: str = "nearest",
        dynamic: bool = False,
    ):
        self.n_bits = n_bits
        self.scheme = scheme
        self.granularity = granularity
        self.axis = axis
        self.block_size = block_size
        self.observer = observer
        self.rounding = rounding
        self.dynamic = dynamic

    def _check_params(self):
        """Validate the parameters; return a fresh observer configured by them."""
        check_qconfig(self.n_bits, self.scheme, self.rounding)
        check_granularity(self.granularity, self.axis, self.block_size)
        if self.axis not in (1, -1):
            raise ValueError(
                f"axis must be 1 (or -1), the feature axis of X; got {self.axis!r}. "
                "Ranges along the samples are what dynamic=True computes."
            )
        if not isinstance(self.dynamic, (bool, np.bool_)):
            raise ValueError(f"dynamic must be a bool; got {self.dynamic!r}.")
        if self.dynamic and self.granularity == "per_channel":
            raise ValueError(
                "dynamic=True computes ranges per sample, and a per-channel range of one "
                "sample holds a single value: use granularity='per_tensor' or 'per_block'."
            )
        observer = get_observer(
            self.observer,
            n_bits=self.n_bits,
            scheme=self.scheme,
            granularity=self.granularity,
            axis=-1,
            block_size=self.block_size,
        )
        if self.dynamic and not observer.supports_per_sample:
            raise ValueError(
                f"dynamic=True needs an observer that computes per-sample ranges; "
                f"{type(observer).__name__} does not (it compares histograms of many values)."
            )
        return observer

    def _validate(self, X, *, reset):
        return validate_data(
            self, X, reset=reset, dtype=(np.float64, np.float32), ensure_all_finite=False, order="C"
        )

    def fit(self, X, y=None):
        """Calibrate on ``X``: choose the ranges, set ``scale_`` and ``zero_point_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values.
        y : None
            Ignored.

        Returns
        -------
        self : Quantizer
        """
        for name in ("observer_", "scale_", "zero_point_", "n_samples_seen_", "n_features_in_"):
            self.__dict__.pop(name, None)
        return self.partial_fit(X, y)

    def partial_fit(self, X, y=None):
        """Stream one calibration batch through the observer and update the parameters.

        With the ``"minmax"`` observer, a sequence of ``partial_fit`` calls
        gives the parameters of one ``fit`` on all the batches together.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : Quantizer
        """
        observer = self._check_params()
        first = not hasattr(self, "n_samples_seen_")
        X = self._validate(X, reset=first)
        if first:
            self.observer_ = observer
            self.n_samples_seen_ = 0
            self._dtype = X.dtype
        if self.dynamic:
            batch_minmax(X, "per_tensor", -1, 1)  # the finite check; ranges come at transform
        else:
            self.observer_.update(X)
            scale, zero_point = self.observer_.calculate_qparams()
            self.scale_ = np.atleast_1d(scale)
            self.zero_point_ = np.atleast_1d(zero_point)
        self.n_samples_seen_ += X.shape[0]
        return self

    def _layout(self, scale, zero_point, n_samples):
        """Parameters laid out against ``X``: ``(scale, zero_point, block_size)``."""
        block_size = self.block_size if self.granularity == "per_block" else None
        scale = np.asarray(scale)
        zero_point = np.asarray(zero_point)
        if self.dynamic and self.granularity == "per_tensor":
            if scale.shape != (n_samples,):
                raise ValueError(f"scale must have shape ({n_samples},): one per sample; got {scale.shape}.")
            scale = scale[:, None]
            zero_point = zero_point[:, None] if zero_point.ndim else zero_point
        return scale, zero_point, block_size

    def quantize(self, X):
        """Codes of ``X`` with the scale and zero point they were made with.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_features)
            ``int8`` (symmetric) or ``uint8`` (asymmetric); 16-bit ``int16`` / ``uint16``.
        scale : ndarray of float32
            ``scale_``; with ``dynamic=True``, of shape (n_samples,) per tensor
            or (n_samples, n_blocks) per block.
        zero_point : ndarray of int32, shaped as ``scale``
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        codes = np.empty(X.shape, dtype=code_dtype(self.n_bits, self.scheme))
        scales = zero_points = None  # dynamic: allocated at the first chunk, filled chunk by chunk
        # Bounded chunks of rows: the per-sample ranges and the parameters laid
        # out against the data (per block, one per value) are made for a chunk
        # at a time, so the extra memory is the output plus a fixed working set.
        for r0, r1 in self._row_chunks(X):
            rows = X[r0:r1]
            if self.dynamic:
                scale, zero_point = self.observer_.per_sample_qparams(rows)
                if scales is None:
                    scales = np.empty((X.shape[0],) + scale.shape[1:], dtype=scale.dtype)
                    zero_points = np.empty((X.shape[0],) + zero_point.shape[1:], dtype=zero_point.dtype)
                scales[r0:r1] = scale
                zero_points[r0:r1] = zero_point
            else:
                scale, zero_point = self.scale_, self.zero_point_
            s, z, block_size = self._layout(scale, zero_point, rows.shape[0])
            codes[r0:r1] = quantize_array(
                rows, s, z, n_bits=self.n_bits, scheme=self.scheme, rounding=self.rounding,
                axis=None, block_size=block_size, input_name="X",
            )
        if not self.dynamic:
            return codes, self.scale_, self.zero_point_
        if scales is None:  # no rows
            scale, zero_point = self.observer_.per_sample_qparams(X)
            return codes, scale, zero_point
        return codes, scales, zero_points

    def _row_chunks(self, X):
        """``(start, stop)`` of row chunks of about ``_CHUNK_BYTES`` of floats each (input or output)."""
        n = X.shape[0]
        rows = max(1, _CHUNK_BYTES // max(1, X.shape[1] * np.dtype(self._dtype).itemsize))
        return [(r0, min(n, r0 + rows)) for r0 in range(0, n, rows)]

    def transform(self, X):
        """Quantize ``X`` to integer codes.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Finite values; out-of-range values saturate at the extreme codes.

        Returns
        -------
        codes : ndarray of shape (n_samples, n_features)
            ``int8`` (symmetric) or ``uint8`` (asymmetric); 16-bit ``int16`` / ``uint16``.
        """
        return self.quantize(X)[0]

    def inverse_transform(self, X, *, scale=None, zero_point=None):
        """Map codes back to floats ``s (x_q − z)``.

        Parameters
        ----------
        X : array-like of integers of shape (n_samples, n_features)
            Codes in the range of the configuration.
        scale, zero_point : array-like, default=None
            The parameters the codes were made with; required with
            ``dynamic=True`` (as returned by :meth:`quantize`), ``scale_`` and
            ``zero_point_`` otherwise. A missing ``zero_point`` is 0.

        Returns
        -------
        X_hat : ndarray of shape (n_samples, n_features)
            float32 if ``fit`` saw float32, float64 otherwise.
        """
        check_is_fitted(self)
        # Codes carry no feature names (transform returns an ndarray): check_array, as
        # scikit-learn's inverse_transform methods do, and the number of features.
        codes = as_codes(check_array(X, dtype=None, order="C"))
        if codes.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {codes.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input."
            )
        if scale is None:
            if self.dynamic:
                raise ValueError(
                    "With dynamic=True the scales are per sample: pass the scale and "
                    "zero_point returned by quantize(X)."
                )
            scale, zero_point = self.scale_, self.zero_point_
        if zero_point is None:
            zero_point = np.zeros(np.shape(scale), dtype=np.int32)
        self._layout(scale, zero_point, codes.shape[0])  # the shapes, checked once
        scale, zero_point = np.asarray(scale), np.asarray(zero_point)
        per_sample = self.dynamic and scale.ndim > 0 and scale.shape[0] == codes.shape[0]
        out = np.empty(codes.shape, dtype=self._dtype)
        for r0, r1 in self._row_chunks(codes):  # as in quantize: bounded working memory
            s, z = (scale[r0:r1], zero_point[r0:r1] if zero_point.ndim else zero_point) if per_sample else (
                scale, zero_point
            )
            s, z, block_size = self._layout(s, z, r1 - r0)
            out[r0:r1] = dequantize_array(
                codes[r0:r1], s, z, axis=None, block_size=block_size, dtype=self._dtype,
                qrange=quant_range(self.n_bits, self.scheme),
            )
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # The output is integer codes, whatever the input float dtype.
        tags.transformer_tags.preserves_dtype = []
        return tags
