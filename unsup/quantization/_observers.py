"""Observers: choose the clipping range ``[β, α]`` from calibration data.

Three stages are kept apart, as in torch's observers:

1. an observer collects statistics: ``update(x)`` streams one calibration
   batch and returns ``x`` unchanged;
2. ``calculate_qparams()`` derives ``(scale, zero_point)`` from the chosen
   range through the one shared :func:`calculate_qparams`;
3. a separate op (:func:`quantize`, :class:`Quantizer`) applies them.

======================  ===================================  ==========================================
name                    class                                range
======================  ===================================  ==========================================
``"minmax"``            :class:`MinMaxObserver`              running min and max
``"moving_average"``    :class:`MovingAverageMinMaxObserver` exponential average of batch min/max
``"percentile"``        :class:`PercentileObserver`          the ``100 − p`` and ``p`` percentiles
``"mse"``               :class:`MSEObserver`                 least squared quantization error
``"entropy"``           :class:`EntropyObserver`             least KL divergence (TensorRT calibration)
======================  ===================================  ==========================================

Strings resolve through one dict (:func:`get_observer`); adding an observer is
a class and a line. Every observer takes every scheme and granularity:

- ``"per_tensor"``: one range;
- ``"per_channel"``: one range per index along ``axis``, gathered over all the
  other axes (every row of every batch);
- ``"per_block"``: one range per block of ``block_size`` consecutive indices
  along the last axis (the last block may be shorter), gathered over all the
  leading axes. (Dynamic quantization keeps the sample axis instead, which
  gives every row its own blocks, as bitsandbytes.)

Unobserved state is explicit: ``min_val = +inf`` and ``max_val = -inf``, and
asking for parameters before any data warns and returns torch's defaults
(scale 1, zero point 0). The histogram observers keep, per range, a histogram
of ``bins`` bins that widens by merging pairs of bins when a batch falls
outside it, so streaming costs bounded memory and re-binning is exact.
"""

from __future__ import annotations

import inspect
import numbers
import warnings

import numpy as np
from sklearn.utils import assert_all_finite

from unsup.quantization._functional import (
    _as_float_array,
    _is_tensor,
    _to_numpy,
    calculate_qparams,
    check_qconfig,
    quant_range,
)
from unsup.quantization._kernels import minmax

__all__ = [
    "GRANULARITIES",
    "OBSERVER_NAMES",
    "EntropyObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "get_observer",
]

GRANULARITIES = ("per_tensor", "per_channel", "per_block")


def _check_int(value, name, low):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}.")


def check_granularity(granularity, axis, block_size) -> None:
    """Raise a ValueError naming the problem if the granularity is not supported."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}; got {granularity!r}.")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"axis must be an integer; got {axis!r}.")
    _check_int(block_size, "block_size", 1)


# -------------------------------------------------------- grouping the data


def _sample_view(x, per_sample):
    """``x`` as ``(n_samples, -1)``: one sample per row, or the whole batch as one."""
    return x.reshape(len(x) if per_sample else 1, -1)


def batch_minmax(x, granularity, axis, block_size, *, per_sample=False):
    """Min and max of each range of one batch, with the finite check fused in.

    Parameters
    ----------
    x : ndarray of float, C-contiguous, non-empty
    granularity, axis, block_size
        As the observers'.
    per_sample : bool, default=False
        Keep axis 0 (one range per sample, dynamic quantization) instead of
        gathering over it.

    Returns
    -------
    min_val, max_val : ndarray of shape () | (n_channels,) | (n_blocks,)
        With ``per_sample``: ``(n_samples,)`` or ``(n_samples, n_blocks)``.

    Raises
    ------
    ValueError
        If ``x`` holds NaN or infinity (scikit-learn's message).
    """
    if granularity == "per_tensor":
        if per_sample:
            mn, mx = minmax(_sample_view(x, True), axis=0)
        else:
            mn, mx = minmax(x)
    elif granularity == "per_channel":
        if per_sample:
            raise ValueError(
                "Per-channel ranges cannot be computed per sample: each would hold a "
                "single value. Use per_tensor or per_block for dynamic quantization."
            )
        mn, mx = minmax(x, axis=axis % x.ndim)
    else:
        d = x.shape[-1]
        starts = np.arange(0, d, block_size)
        if per_sample:  # (n_samples, ..., d) -> (n_samples, n_blocks)
            x3 = x.reshape(len(x), -1, d)
            mn = np.minimum.reduceat(x3, starts, axis=-1).min(axis=1)
            mx = np.maximum.reduceat(x3, starts, axis=-1).max(axis=1)
        else:  # per feature, then per block of features
            mn, mx = minmax(x, axis=x.ndim - 1)
            mn = np.minimum.reduceat(mn, starts)
            mx = np.maximum.reduceat(mx, starts)
    if not (np.all(np.isfinite(mn)) and np.all(np.isfinite(mx))):
        assert_all_finite(x, input_name="X")
    return np.asarray(mn, dtype=np.float64), np.asarray(mx, dtype=np.float64)


def batch_groups(x, granularity, axis, block_size, *, per_sample=False):
    """The values of each range of one batch, one range per row.

    Returns
    -------
    values : ndarray of shape (n_ranges, n_values)
    weights : ndarray of shape (n_ranges, n_values) or None
        0 for the padding of a short last block (a copy of its last value), 1
        elsewhere; None when there is no padding.
    """
    if granularity == "per_tensor":
        return _sample_view(x, per_sample), None
    if granularity == "per_channel":
        return np.moveaxis(x, axis % x.ndim, 0).reshape(x.shape[axis % x.ndim], -1), None
    d = x.shape[-1]
    lead = len(x) if per_sample else 1
    n_blocks = -(-d // block_size)
    pad = n_blocks * block_size - d
    x3 = x.reshape(lead, -1, d)
    if pad:
        x3 = np.pad(x3, ((0, 0), (0, 0), (0, pad)), mode="edge")
    m = x3.shape[1]

    def by_block(a):
        return a.reshape(lead, m, n_blocks, block_size).transpose(0, 2, 1, 3).reshape(
            lead * n_blocks, m * block_size
        )

    weights = None
    if pad:
        w = np.ones(x3.shape)
        w[:, :, d:] = 0.0
        weights = by_block(w)
    return by_block(x3), weights


def _as_batch(x, granularity, axis):
    """A calibration batch as a float ndarray, C-contiguous, checked for shape."""
    x = _as_float_array(_to_numpy(x))
    if x.size == 0:
        raise ValueError("Found an empty batch: an observer needs at least one value.")
    if granularity != "per_tensor" and x.ndim == 0:
        raise ValueError(f"{granularity} ranges need an input with at least one dimension.")
    if granularity == "per_channel" and not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis {axis} is out of bounds for an input with {x.ndim} dimensions.")
    return x


def _namespace(a):
    """``torch`` for a tensor, ``numpy`` otherwise: the module of ``minimum`` / ``maximum``."""
    if _is_tensor(a):
        import torch

        return torch
    return np


def _tensor_minmax(x, granularity, axis, block_size):
    """:func:`batch_minmax` of a torch tensor, on its device and in its dtype (no finite check)."""
    import torch

    if x.numel() == 0:
        raise ValueError("Found an empty batch: an observer needs at least one value.")
    if granularity == "per_tensor":
        return x.amin(), x.amax()
    a = axis % x.ndim if granularity == "per_channel" else x.ndim - 1
    if a == x.ndim - 1:  # the channels last: a view, reduced down the rows
        flat = x.reshape(-1, x.shape[a])
        mn, mx = flat.amin(dim=0), flat.amax(dim=0)
    else:  # (torch.aminmax with dim= is far slower on the CPU)
        flat = (x if a == 0 else x.transpose(0, a)).reshape(x.shape[a], -1)
        mn, mx = flat.amin(dim=1), flat.amax(dim=1)
    if granularity == "per_block":
        pad = -len(mn) % block_size
        mn = torch.nn.functional.pad(mn, (0, pad), value=float("inf")).reshape(-1, block_size).amin(dim=1)
        mx = torch.nn.functional.pad(mx, (0, pad), value=float("-inf")).reshape(-1, block_size).amax(dim=1)
    return mn, mx


# ------------------------------------------------------------- the observers


class Observer:
    """Base of the observers: configuration, streaming and the qparams step.

    A subclass implements ``_update_stats(x, min_val, max_val, per_sample)``
    (fold one batch into its statistics) and ``_range()`` (the clipping range
    from its statistics). See the module docstring for the granularities.

    Parameters
    ----------
    n_bits : int, default=8
        1 to 8, or 16.
    scheme : {"symmetric", "asymmetric"}, default="symmetric"
    granularity : {"per_tensor", "per_channel", "per_block"}, default="per_tensor"
    axis : int, default=-1
        The channel axis of ``"per_channel"`` (the last: the features of a
        2-d batch).
    block_size : int, default=64
        Values per block of ``"per_block"``, along the last axis.

    Attributes
    ----------
    min_val, max_val : ndarray of float64
        The running minimum and maximum of each range; ``+inf`` and ``-inf``
        before any data.
    """

    def __init__(
        self,
        n_bits: int = 8,
        *,
        scheme: str = "symmetric",
        granularity: str = "per_tensor",
        axis: int = -1,
        block_size: int = 64,
    ):
        check_qconfig(n_bits, scheme)
        check_granularity(granularity, axis, block_size)
        self.n_bits = n_bits
        self.scheme = scheme
        self.granularity = granularity
        self.axis = axis
        self.block_size = block_size
        self.reset()

    # Parameters, as scikit-learn's get_params: the arguments of __init__.
    def _get_params(self) -> dict:
        names = [
            name
            for cls in type(self).__mro__
            if "__init__" in vars(cls) and cls is not object
            for name in inspect.signature(cls.__init__).parameters
            if name != "self"
        ]
        return {name: getattr(self, name) for name in dict.fromkeys(names)}

    def _clone(self, **overrides) -> Observer:
        """A fresh observer of the same type and parameters, with ``overrides``."""
        return type(self)(**{**self._get_params(), **overrides})

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._get_params().items())
        return f"{type(self).__name__}({args})"

    def reset(self) -> None:
        """Forget every batch seen: back to the unobserved state."""
        self.min_val = np.array(np.inf)
        self.max_val = np.array(-np.inf)

    @property
    def observed(self) -> bool:
        """Whether at least one batch has been seen."""
        return bool(np.all(self.min_val <= self.max_val))

    def update(self, x):
        """Fold one calibration batch into the statistics; return ``x`` unchanged.

        Parameters
        ----------
        x : array-like or torch.Tensor
            Finite values; ``"per_channel"`` needs ``axis`` in range and the
            same number of channels in every batch (blocks likewise).

        Returns
        -------
        x : the input, unchanged
        """
        batch = _as_batch(x, self.granularity, self.axis)
        mn, mx = batch_minmax(batch, self.granularity, self.axis, self.block_size)
        if self.observed and mn.shape != self.min_val.shape:
            raise ValueError(
                f"This batch has {mn.size} ranges ({self.granularity}) but the previous "
                f"ones had {self.min_val.size}."
            )
        self._update_stats(batch, mn, mx, per_sample=False)
        return x

    def batch_range(self, x):
        """The min and max of each range of one batch ``x``, without changing the observer.

        A ``torch.Tensor`` is reduced on its device, in its dtype, with no
        finite check (no host synchronisation): the min-max observers' state
        can then live in a torch module's buffers, folded in by :meth:`combine`
        (as :class:`~unsup.quantization.nn.LatentFakeQuantize` does in
        quantization-aware training). Arrays go through :meth:`update`'s
        checks and its fused pass, and come back as float64.

        Parameters
        ----------
        x : array-like or torch.Tensor

        Returns
        -------
        min_val, max_val : ndarray or torch.Tensor of shape () | (n_channels,) | (n_blocks,)
        """
        if _is_tensor(x):
            return _tensor_minmax(x.detach(), self.granularity, self.axis, self.block_size)
        return batch_minmax(_as_batch(x, self.granularity, self.axis), self.granularity, self.axis, self.block_size)

    def calculate_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The clipping range ``(β, α)`` chosen from the data seen.

        Returns
        -------
        min_val, max_val : ndarray of float64 of the ranges' shape
            ``(+inf, -inf)`` with a warning before any data.
        """
        if not self.observed:
            self._warn_unobserved()
            return self.min_val, self.max_val
        return self._range()

    def calculate_qparams(self) -> tuple[np.ndarray, np.ndarray]:
        """Scale and zero point of the chosen range (:func:`calculate_qparams`).

        Returns
        -------
        scale : ndarray of float32
        zero_point : ndarray of int32
            Of shape () per tensor, (n_channels,) per channel, (n_blocks,)
            per block. Before any data: a warning, scale 1 and zero point 0.
        """
        if not self.observed:
            self._warn_unobserved()
            return np.array(1.0, dtype=np.float32), np.array(0, dtype=np.int32)
        return calculate_qparams(*self._range(), n_bits=self.n_bits, scheme=self.scheme)

    def _warn_unobserved(self):
        warnings.warn(
            f"{type(self).__name__} has not observed any data: call update(x) with "
            "calibration data first. Returning the default parameters.",
            UserWarning,
            stacklevel=3,
        )

    #: Whether :meth:`per_sample_qparams` is available.
    supports_per_sample = True

    def _rows_per_batch(self, x) -> int:
        return len(x)

    def per_sample_qparams(self, x) -> tuple[np.ndarray, np.ndarray]:
        """Scale and zero point of each sample of ``x`` (dynamic quantization).

        The observer itself is left untouched: each row is observed on its own
        by a fresh copy.

        Parameters
        ----------
        x : ndarray of shape (n_samples, ...)

        Returns
        -------
        scale, zero_point : ndarray of shape (n_samples,) or (n_samples, n_blocks)
        """
        if not self.supports_per_sample:
            raise ValueError(f"{type(self).__name__} does not compute per-sample ranges.")
        batch = _as_batch(x, self.granularity, self.axis)
        if batch.ndim < 2:
            raise ValueError("Per-sample ranges need an input of shape (n_samples, ...).")
        step = max(1, self._rows_per_batch(batch))
        lows, highs = [], []
        for r0 in range(0, len(batch), step):
            rows = batch[r0 : r0 + step]
            fresh = self._clone()
            mn, mx = batch_minmax(rows, self.granularity, self.axis, self.block_size, per_sample=True)
            fresh._update_stats(rows, mn, mx, per_sample=True)
            lo, hi = fresh._range()
            lows.append(lo)
            highs.append(hi)
        return calculate_qparams(
            np.concatenate(lows), np.concatenate(highs), n_bits=self.n_bits, scheme=self.scheme
        )

    def _update_stats(self, x, min_val, max_val, per_sample):
        raise NotImplementedError

    def _range(self):
        raise NotImplementedError


class MinMaxObserver(Observer):
    """The range is the running minimum and maximum of the data.

    Parameters
    ----------
    n_bits, scheme, granularity, axis, block_size
        See :class:`Observer`.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import MinMaxObserver
    >>> obs = MinMaxObserver(scheme="asymmetric")
    >>> _ = obs.update(np.array([0.0, 1.0]))
    >>> _ = obs.update(np.array([-1.0, 3.0]))
    >>> obs.calculate_range()
    (array(-1.), array(3.))
    >>> obs.calculate_qparams()
    (array(0.01568628, dtype=float32), array(64, dtype=int32))
    """

    def combine(self, min_val, max_val, batch_min, batch_max):
        """The running range ``(min_val, max_val)`` after one more batch's range.

        Pure arithmetic on numpy arrays or torch tensors (on their device),
        so that numpy calibration, post-training quantization and
        quantization-aware training (state held in a module's buffers) fold
        their batches the same way. An unobserved running range (``+inf``,
        ``-inf``) becomes the batch's.

        Parameters
        ----------
        min_val, max_val : ndarray or torch.Tensor
            The running range.
        batch_min, batch_max : ndarray or torch.Tensor of the same shape
            The range of the new batch (:meth:`batch_range`).

        Returns
        -------
        min_val, max_val : ndarray or torch.Tensor
            New objects; the inputs are not modified.
        """
        xp = _namespace(min_val)
        return xp.minimum(min_val, batch_min), xp.maximum(max_val, batch_max)

    def _update_stats(self, x, min_val, max_val, per_sample):
        mn, mx = self.combine(self.min_val, self.max_val, min_val, max_val)
        self.min_val, self.max_val = np.asarray(mn), np.asarray(mx)

    def _range(self):
        return self.min_val, self.max_val


class MovingAverageMinMaxObserver(MinMaxObserver):
    """The range is an exponential moving average of the batches' min and max.

    ``min_val ← min_val + c · (batch_min − min_val)`` (and so for the
    maximum), starting from the first batch's values, as torch's observer of
    the same name.

    Parameters
    ----------
    n_bits, scheme, granularity, axis, block_size
        See :class:`Observer`.
    averaging_constant : float, default=0.01
        ``c``, in (0, 1].

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import MovingAverageMinMaxObserver
    >>> obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> _ = obs.update(np.array([-1.0, 1.0]))
    >>> _ = obs.update(np.array([-3.0, 3.0]))
    >>> obs.calculate_range()
    (array(-2.), array(2.))
    """

    def __init__(
        self,
        n_bits: int = 8,
        *,
        scheme: str = "symmetric",
        granularity: str = "per_tensor",
        axis: int = -1,
        block_size: int = 64,
        averaging_constant: float = 0.01,
    ):
        if not (isinstance(averaging_constant, numbers.Real) and 0 < averaging_constant <= 1):
            raise ValueError(f"averaging_constant must be in (0, 1]; got {averaging_constant!r}.")
        self.averaging_constant = averaging_constant
        super().__init__(n_bits, scheme=scheme, granularity=granularity, axis=axis, block_size=block_size)

    def combine(self, min_val, max_val, batch_min, batch_max):
        """The running range after one more batch: ``m ← m + c (batch − m)``; see :meth:`MinMaxObserver.combine`.

        The first batch (an unobserved running range) sets the range.
        """
        if not bool((min_val <= max_val).all()):
            return batch_min, batch_max
        c = self.averaging_constant
        return min_val + c * (batch_min - min_val), max_val + c * (batch_max - max_val)


class _HistogramObserver(Observer):
    """Base of the observers that search a range over a streaming histogram.

    Each range keeps ``bins`` counts of equal width over ``[lo, lo + bins·width)``.
    A batch outside it doubles the width (merging pairs of bins, which is
    exact) until it fits, so memory stays ``bins`` per range.

    The ranges of single samples (dynamic quantization) hold few values: there
    the values themselves, sorted, stand for the bin centres (``points``, of
    zero width), which makes the search exact and cheap.
    """

    def __init__(
        self,
        n_bits: int = 8,
        *,
        scheme: str = "symmetric",
        granularity: str = "per_tensor",
        axis: int = -1,
        block_size: int = 64,
        bins: int = 2048,
    ):
        _check_int(bins, "bins", 16)
        if bins % 2:
            raise ValueError(f"bins must be even; got {bins}.")
        self.bins = bins
        super().__init__(n_bits, scheme=scheme, granularity=granularity, axis=axis, block_size=block_size)

    def reset(self) -> None:
        super().reset()
        self.histogram = np.zeros((0, self.bins))
        self.hist_lo = np.zeros(0)
        self.hist_width = np.zeros(0)
        self.points = None

    def _rows_per_batch(self, x) -> int:
        ranges_per_row = 1 if self.granularity == "per_tensor" else -(-x.shape[-1] // self.block_size)
        return (1 << 20) // (self.bins * ranges_per_row)

    def _update_stats(self, x, min_val, max_val, per_sample):
        values, weights = batch_groups(x, self.granularity, self.axis, self.block_size, per_sample=per_sample)
        mn, mx = min_val.reshape(-1), max_val.reshape(-1)
        if per_sample:
            order = np.argsort(values, axis=1)
            self.points = np.take_along_axis(values, order, axis=1).astype(np.float64)
            self.histogram = (
                np.ones(values.shape) if weights is None else np.take_along_axis(weights, order, axis=1)
            )
            self.hist_lo, self.hist_width = self.points[:, 0].copy(), np.zeros(len(values))
            self.min_val, self.max_val = min_val, max_val
            return
        if not self.observed:
            span = mx - mn
            self.hist_lo = mn.copy()
            self.hist_width = np.where(span > 0, span / self.bins, np.maximum(np.abs(mn), 1.0) * 1e-7)
            self.histogram = np.zeros((mn.size, self.bins))
        else:
            for g in np.flatnonzero((mn < self.hist_lo) | (mx > self.hist_lo + self.bins * self.hist_width)):
                self._widen(g, mn[g], mx[g])
        self.min_val = np.asarray(np.minimum(self.min_val, min_val))
        self.max_val = np.asarray(np.maximum(self.max_val, max_val))
        idx = np.floor((values - self.hist_lo[:, None]) / self.hist_width[:, None])
        idx = np.clip(idx, 0, self.bins - 1).astype(np.intp)
        idx += np.arange(len(values))[:, None] * self.bins
        counts = np.bincount(
            idx.reshape(-1), weights=None if weights is None else weights.reshape(-1), minlength=self.histogram.size
        )
        self.histogram += counts.reshape(self.histogram.shape)

    def _widen(self, g, lo, hi):
        """Double the bin width of range ``g`` until its histogram covers ``[lo, hi]``."""
        counts, start, width, half = self.histogram[g], self.hist_lo[g], self.hist_width[g], self.bins // 2
        while lo < start or hi > start + self.bins * width:
            merged = counts.reshape(half, 2).sum(axis=1)
            counts = np.zeros(self.bins)
            if lo < start:  # grow to the left: the old bins become the right half
                counts[half:] = merged
                start -= self.bins * width
            else:
                counts[:half] = merged
            width *= 2
        self.histogram[g], self.hist_lo[g], self.hist_width[g] = counts, start, width

    def _centres(self):
        """The bin centres (or the sorted points), of shape (n_ranges, n_bins)."""
        if self.points is not None:
            return self.points
        return self.hist_lo[:, None] + (np.arange(self.bins) + 0.5) * self.hist_width[:, None]

    def _percentile(self, q):
        """The ``q``-th percentile of each range, interpolated inside its bin."""
        cum = np.cumsum(self.histogram, axis=1)
        target = cum[:, -1] * (q / 100.0)
        # The first bin whose cumulative count reaches the target (less float noise:
        # 1000 * 0.999 is 999.0000000000001).
        reached = cum >= (target - 1e-9 * cum[:, -1])[:, None]
        idx = np.minimum((~reached).sum(axis=1), cum.shape[1] - 1)
        rows = np.arange(len(cum))
        before = np.where(idx > 0, cum[rows, np.maximum(idx - 1, 0)], 0.0)
        inside = self.histogram[rows, idx]
        frac = np.where(inside > 0, (target - before) / np.where(inside > 0, inside, 1.0), 0.0)
        start = self._centres()[rows, idx] - self.hist_width / 2
        value = start + np.clip(frac, 0.0, 1.0) * self.hist_width
        return np.clip(value, self.min_val.reshape(-1), self.max_val.reshape(-1))

    def _percentile_range(self, percentile):
        lo = self._percentile(100.0 - percentile).reshape(self.min_val.shape)
        hi = self._percentile(percentile).reshape(self.min_val.shape)
        return lo, hi

    def _scaled_candidates(self, n_candidates, f_min=None):
        """Ranges ``(β·f, α·f)`` for ``f`` from ``f_min`` (default ``1/n``) to 1, shape (n, n_ranges)."""
        beta = np.minimum(self.min_val.reshape(-1), 0.0)
        alpha = np.maximum(self.max_val.reshape(-1), 0.0)
        if f_min is None:
            f_min = np.full(beta.shape, 1.0 / n_candidates)
        f = f_min + (1.0 - f_min) * np.linspace(0.0, 1.0, n_candidates)[:, None]
        return beta * f, alpha * f

    def _search(self, lows, highs, cost):
        """The candidate range of least ``cost`` for each range (the first on ties)."""
        costs = np.stack([cost(lo, hi) for lo, hi in zip(lows, highs)])
        best = np.argmin(costs, axis=0)
        cols = np.arange(costs.shape[1])
        shape = self.min_val.shape
        return lows[best, cols].reshape(shape), highs[best, cols].reshape(shape)

    def _quantized_centres(self, lo, hi):
        """Codes of the bin centres under the range ``(lo, hi)``, before clamping.

        Returns ``(raw_codes, scale, zero_point)``, the last two as float64
        columns; ``clip(raw_codes, qmin, qmax)`` are the codes.
        """
        scale, zero_point = calculate_qparams(lo, hi, n_bits=self.n_bits, scheme=self.scheme)
        s = scale.astype(np.float64)[:, None]
        z = zero_point.astype(np.float64)[:, None]
        inv = (np.float32(1.0) / scale).astype(np.float64)[:, None]
        return np.rint(self._centres() * inv) + z, s, z


class PercentileObserver(_HistogramObserver):
    """The range runs from the ``100 − p`` to the ``p`` percentile of the data.

    A rare outlier no longer stretches the range (min-max spends it on the
    outlier; this recovers the resolution of the inliers). Percentiles come
    from the streaming histogram, interpolated within a bin.

    Parameters
    ----------
    n_bits, scheme, granularity, axis, block_size
        See :class:`Observer`.
    percentile : float, default=99.9
        ``p``, in [50, 100].
    bins : int, default=2048
        Histogram bins per range (even, at least 16).

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import PercentileObserver
    >>> x = np.append(np.linspace(-50, 50, 10_000), 1000.0)
    >>> obs = PercentileObserver(percentile=99.9)
    >>> _ = obs.update(x)
    >>> lo, hi = obs.calculate_range()
    >>> bool(-50 <= lo < -49) and bool(49 < hi <= 50)
    True
    """

    def __init__(
        self,
        n_bits: int = 8,
        *,
        scheme: str = "symmetric",
        granularity: str = "per_tensor",
        axis: int = -1,
        block_size: int = 64,
        percentile: float = 99.9,
        bins: int = 2048,
    ):
        if not (isinstance(percentile, numbers.Real) and 50 <= percentile <= 100):
            raise ValueError(f"percentile must be in [50, 100]; got {percentile!r}.")
        self.percentile = percentile
        super().__init__(
            n_bits, scheme=scheme, granularity=granularity, axis=axis, block_size=block_size, bins=bins
        )

    def _range(self):
        return self._percentile_range(self.percentile)


class _SearchObserver(_HistogramObserver):
    """Base of the observers that score ``n_candidates`` ranges over the histogram."""

    def __init__(
        self,
        n_bits: int = 8,
        *,
        scheme: str = "symmetric",
        granularity: str = "per_tensor",
        axis: int = -1,
        block_size: int = 64,
        n_candidates: int = 100,
        bins: int = 2048,
    ):
        _check_int(n_candidates, "n_candidates", 2)
        self.n_candidates = n_candidates
        super().__init__(
            n_bits, scheme=scheme, granularity=granularity, axis=axis, block_size=block_size, bins=bins
        )


class MSEObserver(_SearchObserver):
    """The range of least squared quantization error over the data.

    Candidates: the min-max range scaled by ``f = 1/n, 2/n, …, 1`` (both ends
    together), plus the percentile ranges at 99, 99.9, 99.99 and 99.999. Each
    is scored by fake-quantizing the histogram's bin centres, weighted by their
    counts (round to nearest), so the min-max and percentile ranges are among
    those it beats or equals.

    Parameters
    ----------
    n_bits, scheme, granularity, axis, block_size
        See :class:`Observer`.
    n_candidates : int, default=100
        Number of scaled ranges ``n``.
    bins : int, default=2048
        Histogram bins per range.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import MSEObserver
    >>> x = np.random.default_rng(0).standard_normal(10_000)
    >>> obs = MSEObserver(n_bits=4)
    >>> _ = obs.update(x)
    >>> lo, hi = obs.calculate_range()
    >>> bool(1.5 < hi < 3.5)  # clips the Gaussian tails well inside min-max
    True
    """

    _PERCENTILES = (99.0, 99.9, 99.99, 99.999)

    def _squared_error(self, lo, hi):
        raw, s, z = self._quantized_centres(lo, hi)
        codes = np.clip(raw, *quant_range(self.n_bits, self.scheme))
        return np.sum(self.histogram * (self._centres() - s * (codes - z)) ** 2, axis=1)

    def _range(self):
        lows, highs = self._scaled_candidates(self.n_candidates)
        extra = [self._percentile_range(p) for p in self._PERCENTILES]
        lows = np.vstack([lows] + [lo.reshape(1, -1) for lo, _ in extra])
        highs = np.vstack([highs] + [hi.reshape(1, -1) for _, hi in extra])
        return self._search(lows, highs, self._squared_error)


class EntropyObserver(_SearchObserver):
    """The range of least KL divergence between the data and its quantization.

    TensorRT's calibration, on the quantization grid itself: for each
    candidate range, ``P`` is the histogram inside it with the clipped counts
    folded into its edge bins, ``Q`` spreads the mass of each quantization
    level evenly over that level's non-empty bins, and the range minimising
    ``KL(P ‖ Q)`` wins. Candidates scale the min-max range by ``f`` from the
    smallest range that still spans one bin per level, up to 1 (with 16 bits,
    more levels than bins, that leaves min-max alone).

    Parameters
    ----------
    n_bits, scheme, granularity, axis, block_size
        See :class:`Observer`.
    n_candidates : int, default=100
        Number of candidate ranges.
    bins : int, default=2048
        Histogram bins per range.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import EntropyObserver
    >>> x = np.random.default_rng(0).laplace(size=20_000)
    >>> obs = EntropyObserver(n_bits=4)
    >>> _ = obs.update(x)
    >>> lo, hi = obs.calculate_range()
    >>> bool(max(-lo, hi) < 0.7 * np.abs(x).max())  # clips the heavy tails
    True
    """

    # The divergence needs a histogram of many values: a single sample's range
    # (a few values, dynamic quantization) leaves it nothing to compare.
    supports_per_sample = False

    def _divergence(self, lo, hi):
        hist = self.histogram
        qmin, qmax = quant_range(self.n_bits, self.scheme)
        raw, _, _ = self._quantized_centres(lo, hi)
        inside = (raw >= qmin) & (raw <= qmax)
        p_in = np.where(inside, hist, 0.0)
        # P: the clipped mass folded into the first and last bins inside the range.
        p = p_in.copy()
        rows = np.arange(len(hist))
        first = np.argmax(inside, axis=1)
        last = hist.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
        p[rows, first] += np.where(raw < qmin, hist, 0.0).sum(axis=1)
        p[rows, last] += np.where(raw > qmax, hist, 0.0).sum(axis=1)
        # Q: the mass of each level (without the clipped mass), spread evenly
        # over the bins of that level where P is not empty.
        n_levels = qmax - qmin + 1
        key = (rows[:, None] * n_levels + (raw - qmin).astype(np.intp))[inside]
        size = len(hist) * n_levels
        mass = np.bincount(key, weights=p_in[inside], minlength=size)
        filled = np.bincount(key, weights=p[inside] > 0, minlength=size)
        q = np.zeros_like(hist)
        q[inside] = np.where(p[inside] > 0, mass[key] / np.maximum(filled[key], 1), 0.0)
        p /= p.sum(axis=1, keepdims=True)
        q /= np.maximum(q.sum(axis=1, keepdims=True), np.finfo(float).tiny)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(p > 0, p * np.log(p / q), 0.0)
        undefined = np.any((p > 0) & (q == 0), axis=1) | ~np.any(inside, axis=1)
        return np.where(undefined, np.inf, terms.sum(axis=1))

    def _range(self):
        # The smallest candidate spans about one bin per level.
        qmin, qmax = quant_range(self.n_bits, self.scheme)
        scale, _ = calculate_qparams(self.min_val, self.max_val, n_bits=self.n_bits, scheme=self.scheme)
        span = scale.reshape(-1).astype(np.float64) * (qmax - qmin)
        f_min = np.clip((qmax - qmin + 1) * self.hist_width / span, 0.0, 1.0)
        lows, highs = self._scaled_candidates(self.n_candidates, f_min)
        return self._search(lows, highs, self._divergence)


_OBSERVERS = {
    "minmax": MinMaxObserver,
    "moving_average": MovingAverageMinMaxObserver,
    "percentile": PercentileObserver,
    "mse": MSEObserver,
    "entropy": EntropyObserver,
}

OBSERVER_NAMES = tuple(_OBSERVERS)


def get_observer(observer="minmax", **config) -> Observer:
    """An observer from its name, or a fresh copy of an observer instance.

    Parameters
    ----------
    observer : str or Observer, default="minmax"
        One of ``OBSERVER_NAMES``, or an instance whose own parameters
        (``percentile``, ``bins``, ...) are kept.
    **config
        Observer parameters (``n_bits``, ``scheme``, ``granularity``,
        ``axis``, ``block_size``) that override the instance's.

    Returns
    -------
    observer : Observer
        Unobserved.

    Examples
    --------
    >>> from unsup.quantization import PercentileObserver, get_observer
    >>> get_observer("minmax", n_bits=4)
    MinMaxObserver(n_bits=4, scheme='symmetric', granularity='per_tensor', axis=-1, block_size=64)
    >>> get_observer(PercentileObserver(percentile=99.0), n_bits=4).percentile
    99.0
    """
    if isinstance(observer, str):
        if observer not in _OBSERVERS:
            raise ValueError(
                f"Unknown observer {observer!r}; expected one of {OBSERVER_NAMES} or an Observer instance."
            )
        return _OBSERVERS[observer](**config)
    if isinstance(observer, Observer):
        return observer._clone(**config)
    raise ValueError(
        f"observer must be one of {OBSERVER_NAMES} or an Observer instance; got {observer!r}."
    )
