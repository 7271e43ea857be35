"""The distance registry: one :class:`Metric` object per named distance.

Design constraints
------------------
- A metric computes blocks of its distance matrix (``_block``); everything
  else (full matrices, chunked generators, nearest-centre search) is built once
  on top of blocks, so memory stays bounded by ``working_memory`` whatever the
  metric.
- float32 stays float32 on the way out; float32 inputs are accumulated in
  float64 where cancellation would otherwise cost accuracy (euclidean).
- Every named metric equals ``scipy.spatial.distance.cdist`` (up to float
  round-off), except that a zero vector is at cosine distance 1 from any vector
  (scikit-learn's convention) where scipy returns NaN.
- Each metric declares its *centre rule*: the point that minimises the sum of
  its k-means cost over a cluster (mean, median, normalised mean, mode,
  medoid), and the cost itself (squared euclidean for ``euclidean``, so that
  the mean is the minimiser; the distance itself for the others).
- Each metric also declares what the estimators need to know about it (its
  *capabilities*: whether Lloyd applies, the scipy and fastcluster names, the
  row normalisation it works in, whether the codes of a quantized embedding
  can be searched in it), so that an estimator asks the metric instead of
  comparing names, and adding a metric is one class and one registry entry.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.preprocessing import normalize as _sk_normalize
from sklearn.utils.extmath import safe_sparse_dot

__all__ = ["Metric", "get_metric", "is_precomputed", "METRIC_NAMES", "PRECOMPUTED"]

CENTRE_RULES = ("mean", "median", "normalized_mean", "mode", "medoid")


def as_tensor(a):
    """A torch view of a numpy array, read-only arrays included (torch only reads it here)."""
    import torch

    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        return torch.from_numpy(a)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The given NumPy array is not writable"
        return torch.from_numpy(a)


def _as_float(X, Y):
    """Return the common float dtype of ``X`` and ``Y`` (float32 only if both are)."""
    if X.dtype == np.float32 and Y.dtype == np.float32:
        return np.float32
    return np.float64


class Metric:
    """A distance with its k-means centre rule.

    Instances come from :func:`get_metric`; users rarely build one directly.

    Attributes
    ----------
    name : str
        Canonical name (aliases resolve to it), or ``"callable"``.
    centre_rule : {"mean", "median", "normalized_mean", "mode", "medoid"}
        The centre that minimises the within-cluster cost for this metric.
    params : dict
        Extra parameters (``p`` for minkowski).

    The capabilities below are class attributes (see ``docs/metrics.md``):
    estimators read them instead of comparing names.
    """

    name = "metric"
    centre_rule = "medoid"
    #: Whether the kernels take scipy sparse (CSR) rows.
    accepts_sparse = False
    #: Name of the metric whose values k-means sums (the inertia), if it
    #: differs from this metric: squared euclidean for euclidean.
    cost_name: str | None = None
    #: The centre is the plain mean and the cost the squared euclidean
    #: distance, so k-means runs scikit-learn's Lloyd core (and its k-means++).
    lloyd = False
    #: The linkages whose merge rule needs euclidean geometry (ward, centroid,
    #: median) accept this metric.
    euclidean_linkages = False
    #: Distances depend only on the directions of the rows: estimators work
    #: on rows scaled to unit length (:meth:`prepare`), and an all-zero row
    #: has no direction.
    unit_rows = False
    #: The ``scipy.spatial.distance.pdist`` name of the same distance (with
    #: :meth:`scipy_params`), or None where scipy has no twin.
    pdist_name: str | None = None
    #: fastcluster's ``linkage_vector`` name (see :meth:`fastcluster_args`),
    #: or None where fastcluster has no memory-lean path for it.
    fastcluster_name: str | None = None
    #: The centre rule has a finite summary of the points seen (sums for the
    #: means, value counts for the mode), so mini-batch and per-block (dask)
    #: updates give the exact rule; median and medoid centres are only
    #: approximated that way.
    streams_exactly = False
    #: The codes of a quantized embedding can be searched in this metric
    #: (:meth:`scan_queries`, :meth:`scan_block`, :meth:`exact_rows`).
    searches_codes = False

    def __init__(self, **params):
        if params:
            raise TypeError(
                f"Metric {self.name!r} takes no parameters, got {sorted(params)}."
            )
        self.params: dict = {}

    def __repr__(self):
        args = "".join(f", {k}={v!r}" for k, v in self.params.items())
        return f"get_metric({self.name!r}{args})"

    def __eq__(self, other):
        return (
            type(self) is type(other)
            and self.params == other.params
            and getattr(self, "func", None) is getattr(other, "func", None)
        )

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.params.items()))))

    # ----------------------------------------------------------------- kernels
    def _block(self, X, Y):
        """Distances between the rows of ``X`` and ``Y``, prior validation assumed.

        Returns an array of shape ``(len(X), len(Y))`` and dtype ``_as_float(X, Y)``.
        """
        raise NotImplementedError

    def _row_bytes(self, n_cols, n_features):
        """Bytes of working memory one row of a block needs (output and temporaries)."""
        return 8 * (2 * n_cols + n_features)

    def _argmin_block(self, X, Y):
        """Index of the nearest row of ``Y`` and the distance to it, for each row of ``X``."""
        D = self._block(X, Y)
        idx = np.argmin(D, axis=1)
        return idx, D[np.arange(len(D)), idx]

    def cost(self):
        """The metric whose values k-means minimises (the inertia's summand)."""
        return get_metric(self.cost_name) if self.cost_name else self

    def distance_from_cost(self, C):
        """Turn values of :meth:`cost` into values of this metric, in place."""
        return C

    # ------------------------------------------------------------ capabilities
    def scipy_params(self):
        """Keyword arguments of :attr:`pdist_name` in scipy (``p`` for minkowski)."""
        return {}

    def fastcluster_args(self):
        """``(metric, extra)`` for ``fastcluster.linkage_vector`` (a name or a function, and its parameter)."""
        return self.fastcluster_name, None

    def prepare(self, X):
        """``X`` in the coordinates the estimators work in (unit rows for cosine; ``X`` itself otherwise)."""
        return X

    def prepared_cost(self):
        """The k-means cost (:meth:`cost`) between rows already :meth:`prepare`-d."""
        return self.cost()

    # Search over quantized codes (only where ``searches_codes``): a block of
    # dequantised rows ``B`` (float32, one spare last column) and the queries
    # ``Q`` are written so that ``Q @ B.T`` ranks the rows as this metric does.
    def scan_queries(self, queries, Q):
        """Write the scan form of ``queries`` (n, d) into ``Q`` (n, d + 1, zeros)."""
        raise ValueError(f"Quantized codes cannot be searched in metric {self.name!r}.")

    def scan_block(self, B, d):
        """Turn the dequantised rows ``B[:, :d]`` into their scan form, in place."""
        raise ValueError(f"Quantized codes cannot be searched in metric {self.name!r}.")

    def exact_rows(self, q, rows):
        """Distances (float64, (m, k)) of the queries ``q`` (m, d) to their rows ``rows`` (m, k, d)."""
        raise ValueError(f"Quantized codes cannot be searched in metric {self.name!r}.")

    def __call__(self, a, b):
        """Distance between two vectors (slow; for use as a callable)."""
        a = np.asarray(a, dtype=np.float64).reshape(1, -1)
        b = np.asarray(b, dtype=np.float64).reshape(1, -1)
        return float(self._block(a, b)[0, 0])


class SqEuclidean(Metric):
    name = "sqeuclidean"
    centre_rule = "mean"
    streams_exactly = True
    accepts_sparse = True
    lloyd = True
    pdist_name = "sqeuclidean"
    fastcluster_name = "sqeuclidean"

    def _block(self, X, Y):
        dtype = _as_float(X, Y)
        if sp.issparse(X) or sp.issparse(Y):
            return euclidean_distances(X, Y, squared=True).astype(dtype, copy=False)
        # ||x||^2 - 2 x.y + ||y||^2 in float64 (scikit-learn upcasts float32 the same way).
        X64 = X.astype(np.float64, copy=False)
        Y64 = Y.astype(np.float64, copy=False)
        xx = np.einsum("ij,ij->i", X64, X64)
        yy = np.einsum("ij,ij->i", Y64, Y64)
        D = _matmul_t(X64, Y64)
        D *= -2.0
        D += xx[:, None]
        D += yy[None, :]
        # Where the result is tiny relative to the norms, cancellation has eaten
        # its digits: recompute those entries directly (near-duplicate points).
        suspect = D <= 1e-6 * (xx[:, None] + yy[None, :])
        if suspect.any():
            i, j = np.nonzero(suspect)
            diff = X64[i] - Y64[j]
            D[i, j] = np.einsum("ij,ij->i", diff, diff)
        np.maximum(D, 0.0, out=D)
        return D.astype(dtype, copy=False)

    def _row_bytes(self, n_cols, n_features):
        return 8 * (3 * n_cols + 2 * n_features)


class Euclidean(SqEuclidean):
    name = "euclidean"
    cost_name = "sqeuclidean"
    euclidean_linkages = True
    pdist_name = "euclidean"
    fastcluster_name = "euclidean"
    searches_codes = True

    def _block(self, X, Y):
        D = super()._block(X, Y)
        return np.sqrt(D, out=D)

    def distance_from_cost(self, C):
        return np.sqrt(C, out=C)

    # The scan ranks by ``|x|² − 2 q·x`` (the squared distance less the
    # query's constant ``|q|²``): queries ``[−2q, 1]``, block rows ``[x, |x|²]``.
    def scan_queries(self, queries, Q):
        d = queries.shape[1]
        np.multiply(queries, -2.0, out=Q[:, :d])
        Q[:, d] = 1.0

    def scan_block(self, B, d):
        B[:, d] = np.einsum("ij,ij->i", B[:, :d], B[:, :d])

    def exact_rows(self, q, rows):
        diff = rows - q[:, None, :]
        return np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))


class _TorchCdist(Metric):
    """p-norm distances through ``torch.cdist``: multithreaded, native float32.

    ``torch.cdist`` computes p != 2 norms directly (no matrix-product trick),
    and its float64 results equal scipy's ``cdist`` bit for bit. Small blocks
    go to scipy's ``cdist`` (see ``_SMALL_WORK``).
    """

    p = 1.0

    def _block(self, X, Y):
        import torch

        dtype = _as_float(X, Y)
        if _is_small(X, Y):
            if self.p == 1:
                return cdist(X, Y, "cityblock").astype(dtype, copy=False)
            if self.p == math.inf:
                return cdist(X, Y, "chebyshev").astype(dtype, copy=False)
            return cdist(X, Y, "minkowski", p=self.p).astype(dtype, copy=False)
        return torch.cdist(as_tensor(X.astype(dtype, copy=False)), as_tensor(Y.astype(dtype, copy=False)), p=self.p).numpy()


class Manhattan(_TorchCdist):
    name = "manhattan"
    centre_rule = "median"
    p = 1.0
    pdist_name = "cityblock"
    fastcluster_name = "cityblock"


class Chebyshev(_TorchCdist):
    name = "chebyshev"
    p = math.inf
    pdist_name = "chebyshev"
    fastcluster_name = "chebychev"  # fastcluster's spelling


class Minkowski(_TorchCdist):
    name = "minkowski"
    pdist_name = "minkowski"
    fastcluster_name = "minkowski"

    def __init__(self, p=2, **params):
        if params:
            raise TypeError(
                f"Metric 'minkowski' takes only the parameter 'p', got {sorted(params)}."
            )
        if (
            not isinstance(p, numbers.Real)
            or isinstance(p, bool)
            or not (p > 0)
            or math.isnan(p)
        ):
            raise ValueError(f"The 'p' parameter of minkowski must be > 0. Got p={p!r}.")
        self.p = float(p)
        self.params = {"p": p}

    def scipy_params(self):
        return {"p": self.p}

    def fastcluster_args(self):
        return self.fastcluster_name, self.p


#: Below this many multiply-adds a block goes to numpy/scipy, single-threaded:
#: as fast there, and torch's thread pool can stall on small shapes when the
#: other cores are busy (measured: 16 ms instead of 0.2 ms).
_SMALL_WORK = 2**22


def _is_small(X, Y):
    return X.shape[0] * Y.shape[0] * X.shape[1] < _SMALL_WORK


def _matmul_t(A, B):
    """``A @ B.T`` as a dense array: torch for large dense blocks (several times
    faster than numpy's BLAS on tall-skinny shapes), numpy for small ones,
    scipy for sparse ones."""
    if sp.issparse(A) or sp.issparse(B):
        return np.asarray(safe_sparse_dot(A, B.T, dense_output=True))
    if _is_small(A, B):
        return A @ B.T
    return (as_tensor(A) @ as_tensor(B).T).numpy()


class Cosine(Metric):
    name = "cosine"
    centre_rule = "normalized_mean"
    streams_exactly = True
    accepts_sparse = True
    unit_rows = True
    pdist_name = "cosine"
    fastcluster_name = "cosine"
    searches_codes = True

    @staticmethod
    def normalize(X):
        """Rows scaled to unit length; zero rows stay zero (distance 1 to anything)."""
        if sp.issparse(X):
            return _sk_normalize(X, norm="l2", copy=True)
        norms = np.sqrt(np.einsum("ij,ij->i", X, X))
        norms[norms == 0] = 1.0
        return X / norms[:, None]

    def _block(self, X, Y):
        dtype = _as_float(X, Y)
        D = _matmul_t(self.normalize(X.astype(dtype, copy=False)), self.normalize(Y.astype(dtype, copy=False)))
        np.subtract(1.0, D, out=D)
        return np.clip(D, 0.0, 2.0, out=D)

    def prepare(self, X):
        return self.normalize(X)

    def prepared_cost(self):
        return _UnitCosine()

    # The scan ranks by ``−cos``: queries and block rows scaled to unit length
    # (the extra column stays zero).
    def scan_queries(self, queries, Q):
        d = queries.shape[1]
        norms = np.sqrt(np.einsum("ij,ij->i", queries, queries))
        np.divide(queries, np.where(norms > 0, norms, 1.0)[:, None], out=Q[:, :d])
        np.negative(Q[:, :d], out=Q[:, :d])

    def scan_block(self, B, d):
        norms = np.sqrt(np.einsum("ij,ij->i", B[:, :d], B[:, :d]))
        B[:, :d] /= np.where(norms > 0, norms, 1.0)[:, None]

    def exact_rows(self, q, rows):
        qn = np.linalg.norm(q, axis=1)
        rn = np.linalg.norm(rows, axis=2)
        dot = np.einsum("ijk,ik->ij", rows, q)
        denom = qn[:, None] * rn
        cos = np.where(denom > 0, dot / np.where(denom > 0, denom, 1.0), 0.0)
        return np.clip(1.0 - cos, 0.0, 2.0)


class _UnitCosine(Cosine):
    """Cosine distance between rows already of unit length (no renormalisation).

    The cost :meth:`Cosine.prepared_cost` gives: the estimators normalise
    their data once (:meth:`Cosine.prepare`), then search nearest centres by
    the largest dot product.
    """

    def _block(self, X, Y):
        D = _matmul_t(X, Y)
        np.subtract(1.0, D, out=D)
        return np.clip(D, 0.0, 2.0, out=D)

    def _argmin_block(self, X, Y):
        if sp.issparse(X) or _is_small(X, Y):
            S = _matmul_t(X, Y)
            idx = np.argmax(S, axis=1)
            best = S[np.arange(S.shape[0]), idx]
        else:
            import torch

            top = torch.max(as_tensor(X) @ as_tensor(Y).T, dim=1)
            idx, best = top.indices.numpy(), top.values.numpy()
        return idx, np.clip(1.0 - best, 0.0, 2.0)


class Hamming(Metric):
    name = "hamming"
    centre_rule = "mode"
    streams_exactly = True
    pdist_name = "hamming"
    fastcluster_name = "hamming"

    def _block(self, X, Y):
        dtype = _as_float(X, Y)
        if len(Y) <= 64:  # few centres: one comparison pass per centre
            D = np.empty((len(X), len(Y)), dtype=dtype)
            for j, y in enumerate(Y):
                D[:, j] = np.count_nonzero(X != y, axis=1) / X.shape[1]
            return D
        return cdist(X, Y, "hamming").astype(dtype, copy=False)


class CallableMetric(Metric):
    """A user function ``f(a, b) -> float`` (slow path: one call per pair)."""

    name = "callable"
    centre_rule = "medoid"
    fastcluster_name = "callable"

    def __init__(self, func: Callable, **params):
        self.func = func
        self.params = dict(params)

    def fastcluster_args(self):
        func, params = self.func, self.params
        return (lambda a, b: float(func(a, b, **params))), None

    def __repr__(self):
        return f"get_metric({getattr(self.func, '__name__', self.func)!r})"

    def _block(self, X, Y):
        D = np.empty((len(X), len(Y)), dtype=_as_float(X, Y))
        for i, x in enumerate(X):
            for j, y in enumerate(Y):
                D[i, j] = self.func(x, y, **self.params)
        return D

    def __call__(self, a, b):
        return float(self.func(np.asarray(a), np.asarray(b), **self.params))


_METRICS: dict[str, type[Metric]] = {
    "euclidean": Euclidean,
    "l2": Euclidean,
    "sqeuclidean": SqEuclidean,
    "manhattan": Manhattan,
    "cityblock": Manhattan,
    "l1": Manhattan,
    "cosine": Cosine,
    "chebyshev": Chebyshev,
    "minkowski": Minkowski,
    "hamming": Hamming,
}

#: Every name :func:`get_metric` accepts, aliases included. ("precomputed" is
#: not a metric: :func:`unsup.metrics.pairwise_distances` and the estimators
#: that can work from distances alone accept it besides.)
METRIC_NAMES = tuple(sorted(_METRICS))

#: The ``metric`` value that says ``X`` already holds the distances.
PRECOMPUTED = "precomputed"


def names_with(capability: str) -> tuple:
    """Canonical names, in registry order and without aliases, of the metrics
    whose class attribute ``capability`` (e.g. ``"searches_codes"``) is true."""
    return tuple(dict.fromkeys(cls.name for cls in _METRICS.values() if getattr(cls, capability)))


def is_precomputed(metric) -> bool:
    """Whether ``metric`` is ``"precomputed"`` (``X`` holds distances, not features)."""
    return isinstance(metric, str) and metric == PRECOMPUTED


def get_metric(metric="euclidean", **params) -> Metric:
    """Look a metric up by name, or wrap a callable.

    Parameters
    ----------
    metric : str, callable or Metric, default="euclidean"
        A name from :data:`METRIC_NAMES` (``"euclidean"``, ``"sqeuclidean"``,
        ``"manhattan"`` with aliases ``"cityblock"`` and ``"l1"``,
        ``"cosine"``, ``"chebyshev"``, ``"minkowski"``, ``"hamming"``), a
        function ``f(a, b) -> float`` of two 1-d arrays, or a :class:`Metric`.
    **params
        Parameters of the metric, e.g. ``p=3`` for minkowski; for a callable,
        extra keyword arguments passed to it.

    Returns
    -------
    metric : Metric

    Raises
    ------
    ValueError
        If the name is unknown; the message lists the valid names.

    Examples
    --------
    >>> from unsup.metrics import get_metric
    >>> m = get_metric("cityblock")
    >>> m.name, m.centre_rule
    ('manhattan', 'median')
    >>> get_metric("minkowski", p=3).params
    {'p': 3}
    """
    if isinstance(metric, Metric):
        if params:
            raise TypeError("Parameters cannot be given with a Metric instance.")
        return metric
    if isinstance(metric, str):
        try:
            cls = _METRICS[metric]
        except KeyError:
            raise ValueError(
                f"Unknown metric {metric!r}. Valid metrics are {list(METRIC_NAMES)}, "
                "or a callable f(a, b) -> float."
            ) from None
        return cls(**params)
    if callable(metric):
        return CallableMetric(metric, **params)
    raise ValueError(
        f"metric must be a string from {list(METRIC_NAMES)} or a callable, "
        f"got {metric!r} of type {type(metric).__name__}."
    )
