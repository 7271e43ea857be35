"""Centre rules: the point that minimises a cluster's k-means cost in a metric.

=================  =====================================  =====================
rule               centre of a cluster                     metrics
=================  =====================================  =====================
mean               weighted mean                           (sq)euclidean
median             coordinate-wise weighted median         manhattan
normalized_mean    mean of unit vectors, rescaled to 1     cosine
mode               coordinate-wise weighted mode           hamming
medoid             member with least weighted total cost   the others, callables
=================  =====================================  =====================

Each rule is a private function ``f(X, labels, w, k, metric, working_memory)``
that returns the ``(k, n_features)`` centres with NaN rows for empty clusters;
:func:`compute_centres` validates and dispatches.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from unsup.metrics._pairwise import chunk_n_rows
from unsup.metrics._registry import Cosine, Metric, as_tensor, get_metric

__all__ = ["compute_centres"]


def _groups(labels, k):
    """Row indices grouped by label: ``order[bounds[j]:bounds[j + 1]]`` are cluster j's."""
    order = np.argsort(labels, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(labels, minlength=k))))
    return order, bounds


def cluster_sums(X, labels, w, k):
    """Weighted sums of the rows of each cluster and the clusters' total weights."""
    onehot = sp.csr_matrix((w, (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    sums = onehot @ X
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    return sums, np.bincount(labels, weights=w, minlength=k)


def _mean(X, labels, w, k, metric, working_memory):
    sums, weights = cluster_sums(X, labels, w, k)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sums / weights[:, None]).astype(X.dtype, copy=False)


def _normalized_mean(X, labels, w, k, metric, working_memory):
    sums, weights = cluster_sums(Cosine.normalize(X), labels, w, k)
    centres = Cosine.normalize(sums).astype(X.dtype, copy=False)
    centres[weights == 0] = np.nan
    return centres


def _weighted_median(V, W):
    """Column-wise weighted median of ``V`` (m, d) with weights ``W`` (m,).

    With equal weights it equals ``np.median`` (the two middle values are
    averaged when the cumulative weight hits exactly one half), so integer
    weights give the median of the repeated rows.
    """
    order = np.argsort(V, axis=0, kind="stable")
    Vs = np.take_along_axis(V, order, axis=0)
    cw = np.cumsum(W[order], axis=0)
    half = cw[-1] / 2.0
    lo = np.minimum((cw < half).sum(axis=0), len(V) - 1)
    cols = np.arange(V.shape[1])
    med = Vs[lo, cols].astype(np.float64)
    exact = (cw[lo, cols] == half) & (lo + 1 < len(V))
    med[exact] = (med[exact] + Vs[lo[exact] + 1, cols[exact]]) / 2.0
    return med


def _median(X, labels, w, k, metric, working_memory):
    order, bounds = _groups(labels, k)
    centres = np.full((k, X.shape[1]), np.nan, dtype=X.dtype)
    uniform = np.all(w == w[0])
    for j in range(k):
        idx = order[bounds[j] : bounds[j + 1]]
        if len(idx) == 0 or not np.any(w[idx] > 0):
            continue
        if uniform:
            centres[j] = np.median(X[idx], axis=0)
        else:
            keep = idx[w[idx] > 0]
            centres[j] = _weighted_median(X[keep], w[keep])
    return centres


class _PresortedMedian:
    """Repeated weighted medians of the clusters of one fixed ``X``.

    Each column is sorted once (torch, multithreaded); every later call groups
    the sorted positions by label with a stable radix sort and reads the
    medians off, O(n) per column instead of a selection per cluster. Results
    equal :func:`_median` (the tie rule of :func:`_weighted_median`).
    Zero-weight rows never move a median, so they are dropped up front.
    """

    def __init__(self, X, w):
        import torch

        self.keep = np.flatnonzero(w > 0)
        self.w = w[self.keep]
        self.uniform = bool(np.all(self.w == self.w[0]))
        s = torch.sort(as_tensor(np.ascontiguousarray(X[self.keep].T)), dim=1)
        self.values, self.order = s.values.numpy(), s.indices.numpy()
        self.dtype = X.dtype

    def __call__(self, labels, k):
        lab = labels[self.keep].astype(np.int16 if k < 2**15 else np.int64)
        counts = np.bincount(lab, minlength=k)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))[counts > 0]
        ends = starts + counts[counts > 0]
        half = np.bincount(lab, weights=self.w, minlength=k)[counts > 0] / 2
        centres = np.full((k, self.values.shape[0]), np.nan, dtype=self.dtype)
        for j, (values, order) in enumerate(zip(self.values, self.order)):
            # Sorted positions grouped by label (stable: ascending within a group).
            pos = np.argsort(lab[order], kind="stable")
            grouped = values[pos]
            if self.uniform:
                lo = starts + (ends - starts - 1) // 2
                hi = starts + (ends - starts) // 2
                centres[counts > 0, j] = (grouped[lo] + grouped[hi]) / 2
                continue
            cw = np.cumsum(self.w[order][pos])
            target = np.where(starts > 0, cw[starts - 1], 0.0) + half
            lo = np.minimum(np.searchsorted(cw, target), ends - 1)
            med = grouped[lo].astype(np.float64)
            tie = (cw[lo] == target) & (lo + 1 < ends)
            med[tie] = (med[tie] + grouped[lo[tie] + 1]) / 2
            centres[counts > 0, j] = med
        return centres


_MODE_MAX_VALUES = 256


def _mode(X, labels, w, k, metric, working_memory):
    n, d = X.shape
    values = np.unique(X)
    centres = np.full((k, d), np.nan, dtype=X.dtype)
    weights = np.bincount(labels, weights=w, minlength=k)
    if len(values) <= _MODE_MAX_VALUES:
        # Weighted counts of each value per (cluster, column) in one bincount.
        codes = np.searchsorted(values, X)
        nv = len(values)
        flat = ((labels[:, None] * d + np.arange(d)) * nv + codes).ravel()
        counts = np.bincount(flat, weights=np.repeat(w, d), minlength=k * d * nv)
        # Ties go to the smallest value (argmax takes the first maximum).
        centres[:] = values[counts.reshape(k, d, nv).argmax(axis=2)]
    else:  # many distinct values: per cluster and column
        order, bounds = _groups(labels, k)
        for j in range(k):
            idx = order[bounds[j] : bounds[j + 1]]
            for c in range(d):
                vals, inv = np.unique(X[idx, c], return_inverse=True)
                if len(vals):
                    centres[j, c] = vals[np.bincount(inv, weights=w[idx]).argmax()]
    centres[weights == 0] = np.nan
    return centres


def medoid_index(M, w, metric: Metric, working_memory=None):
    """Index of the row of ``M`` with the least weighted total cost to all rows.

    The cost is ``metric.cost()``; memory stays within ``working_memory`` (the
    candidate rows are scored a block at a time).
    """
    cost = metric.cost()
    n_rows = chunk_n_rows(cost._row_bytes(len(M), M.shape[1]), len(M), working_memory)
    best, best_total = 0, np.inf
    for start in range(0, len(M), n_rows):
        totals = cost._block(M[start : start + n_rows], M) @ w
        j = int(np.argmin(totals))
        if totals[j] < best_total:
            best, best_total = start + j, totals[j]
    return best


def _medoid(X, labels, w, k, metric, working_memory):
    order, bounds = _groups(labels, k)
    centres = np.full((k, X.shape[1]), np.nan, dtype=X.dtype)
    for j in range(k):
        idx = order[bounds[j] : bounds[j + 1]]
        idx = idx[w[idx] > 0]
        if len(idx):
            centres[j] = X[idx[medoid_index(X[idx], w[idx], metric, working_memory)]]
    return centres


_RULES = {
    "mean": _mean,
    "median": _median,
    "normalized_mean": _normalized_mean,
    "mode": _mode,
    "medoid": _medoid,
}


def centre_updater(metric: Metric, X, w, k, working_memory=None):
    """``update(labels) -> centres`` for repeated updates on one fixed ``X``.

    The median rule sorts ``X`` once here (:class:`_PresortedMedian`); the
    other rules need no preparation.
    """
    if metric.centre_rule == "median":
        presorted = _PresortedMedian(X, w)
        return lambda labels: presorted(labels, k)
    rule = _RULES[metric.centre_rule]
    return lambda labels: rule(X, labels, w, k, metric, working_memory)


def compute_centres(
    X, labels, n_clusters, *, metric="euclidean", sample_weight=None, working_memory=None, **params
):
    """Centres of the clusters of ``X`` under the centre rule of ``metric``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    labels : ndarray of shape (n_samples,)
        Integers in ``[0, n_clusters)``.
    n_clusters : int
    metric : str, callable or Metric, default="euclidean"
        Its ``centre_rule`` decides the centre (see the module docstring).
    sample_weight : ndarray of shape (n_samples,), default=None
        Non-negative weights; integer weights equal repeated rows.
    working_memory : float, default=None
        MiB for the medoid rule's blocks of distances.
    **params
        Parameters of the metric.

    Returns
    -------
    centres : ndarray of shape (n_clusters, n_features)
        Rows of empty clusters (no member of positive weight) are NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.metrics import compute_centres
    >>> X = np.array([[0.0], [1.0], [10.0]])
    >>> compute_centres(X, np.array([0, 0, 0]), 1, metric="manhattan")
    array([[1.]])
    """
    metric = get_metric(metric, **params)
    X = X if sp.issparse(X) else np.asarray(X)  # CSR: the mean rules (euclidean, cosine) take it
    labels = np.asarray(labels, dtype=np.intp)
    w = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return _RULES[metric.centre_rule](X, labels, w, int(n_clusters), metric, working_memory)
