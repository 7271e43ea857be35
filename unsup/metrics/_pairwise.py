"""Chunked pairwise distances over the registry.

Memory is bounded the way scikit-learn bounds it: a block of rows of ``X``
against all of ``Y`` at a time, as many rows as fit in ``working_memory``
mebibytes (scikit-learn's global setting, 1024 by default, when not given).
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
from sklearn import get_config
from sklearn.metrics.pairwise import check_pairwise_arrays
from sklearn.utils.validation import check_non_negative

from unsup.metrics._registry import Metric, get_metric, is_precomputed

__all__ = [
    "pairwise_distances",
    "pairwise_distances_chunked",
    "pairwise_distances_argmin_min",
]


def chunk_n_rows(row_bytes: int, n_rows: int, working_memory: float | None = None) -> int:
    """How many rows of ``row_bytes`` bytes fit in ``working_memory`` MiB (at least 1)."""
    if working_memory is None:
        working_memory = get_config()["working_memory"]
    fit = int(working_memory * 2**20) // max(int(row_bytes), 1)
    return max(1, min(fit, n_rows))


def _check_xy(X, Y, metric: Metric):
    # float32 if both are float32, float64 otherwise (integers are exact in
    # float64, so hamming on integer codes loses nothing). CSR where the
    # metric's kernels take it (euclidean, sqeuclidean, cosine).
    return check_pairwise_arrays(X, Y, accept_sparse="csr" if metric.accepts_sparse else False)


# Blocks of about this many distances stay in cache; working_memory caps them further.
_CACHE_BLOCK = 2**20


def _block_rows(X, Y, metric: Metric, working_memory=None):
    cap = max(256, _CACHE_BLOCK // max(Y.shape[0], 1))
    return min(cap, chunk_n_rows(metric._row_bytes(Y.shape[0], X.shape[1]), X.shape[0], working_memory))


def _iter_blocks(X, Y, metric: Metric, working_memory=None):
    """Yield ``(start, block)`` with ``block`` the distances of rows ``start:`` of X to Y."""
    n_rows = _block_rows(X, Y, metric, working_memory)
    for start in range(0, X.shape[0], n_rows):
        yield start, metric._block(X[start : start + n_rows], Y)


def pairwise_distances_chunked(
    X,
    Y=None,
    *,
    metric="euclidean",
    reduce_func: Callable | None = None,
    working_memory: float | None = None,
    **params,
) -> Iterator:
    """Generate the distance matrix a block of rows at a time.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
    Y : array-like of shape (n_samples_Y, n_features), default=None
        ``None`` means ``Y = X``.
    metric : str or callable, default="euclidean"
        See :func:`unsup.metrics.get_metric`.
    reduce_func : callable, default=None
        ``reduce_func(D_chunk, start)`` applied to each block before it is
        yielded, as in :func:`sklearn.metrics.pairwise_distances_chunked`.
    working_memory : float, default=None
        MiB a block may take; scikit-learn's ``working_memory`` setting if None.
    **params
        Parameters of the metric (``p`` for minkowski).

    Yields
    ------
    D_chunk : ndarray of shape (n_rows, n_samples_Y)
        Consecutive row blocks of the distance matrix (or their reductions).
    """
    metric = get_metric(metric, **params)
    X, Y = _check_xy(X, Y, metric)
    for start, block in _iter_blocks(X, Y, metric, working_memory):
        yield block if reduce_func is None else reduce_func(block, start)


def pairwise_distances(X, Y=None, metric="euclidean", *, working_memory=None, **params):
    """Distance matrix between the rows of ``X`` and the rows of ``Y``.

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features), or (n_samples_X, n_samples_Y) if precomputed
    Y : array-like of shape (n_samples_Y, n_features), default=None
        ``None`` means ``Y = X``.
    metric : str or callable, default="euclidean"
        A registry name, a callable ``f(a, b) -> float``, or ``"precomputed"``
        (``X`` is already a distance matrix: it is validated and returned).
    working_memory : float, default=None
        MiB the temporaries of one block may take (scikit-learn's
        ``working_memory`` setting if None); the output itself is allocated
        whole.
    **params
        Parameters of the metric (``p`` for minkowski).

    Returns
    -------
    D : ndarray of shape (n_samples_X, n_samples_Y)
        float32 if both inputs are float32, float64 otherwise. Equal to
        ``scipy.spatial.distance.cdist`` up to round-off (a zero vector is at
        cosine distance 1, where scipy gives NaN).

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.metrics import pairwise_distances
    >>> X = np.array([[0.0, 0.0], [3.0, 4.0]])
    >>> pairwise_distances(X, metric="manhattan")
    array([[0., 7.],
           [7., 0.]])
    """
    if is_precomputed(metric):
        X, _ = check_pairwise_arrays(X, Y, precomputed=True, accept_sparse=False)
        check_non_negative(X, whom="pairwise_distances")
        return X
    metric = get_metric(metric, **params)
    X, Y = _check_xy(X, Y, metric)
    D = np.empty((X.shape[0], Y.shape[0]), dtype=np.result_type(X.dtype, Y.dtype))
    for start, block in _iter_blocks(X, Y, metric, working_memory):
        D[start : start + len(block)] = block
    return D


def _argmin_min(X, Y, metric: Metric, working_memory=None):
    """Index of and distance to the nearest row of Y, for each row of X.

    Prior validation of data is assumed. Never holds more than one block.
    """
    n = X.shape[0]
    labels = np.empty(n, dtype=np.int64)
    mins = np.empty(n, dtype=np.result_type(X.dtype, Y.dtype))
    n_rows = _block_rows(X, Y, metric, working_memory)
    for start in range(0, n, n_rows):
        stop = min(start + n_rows, n)
        labels[start:stop], mins[start:stop] = metric._argmin_block(X[start:stop], Y)
    return labels, mins


def pairwise_distances_argmin_min(
    X, Y, *, metric="euclidean", working_memory=None, **params
):
    """For each row of ``X``, the nearest row of ``Y`` and the distance to it.

    Memory stays within ``working_memory``: the full distance matrix is never
    held (a 1,000,000 × 64 set against 256 centres runs in blocks).

    Parameters
    ----------
    X : array-like of shape (n_samples_X, n_features)
    Y : array-like of shape (n_samples_Y, n_features)
    metric : str or callable, default="euclidean"
    working_memory : float, default=None
    **params
        Parameters of the metric.

    Returns
    -------
    argmin : ndarray of shape (n_samples_X,)
        Row of ``Y`` nearest to each row of ``X`` (the first one on ties).
    distances : ndarray of shape (n_samples_X,)
        The distances to those rows.
    """
    metric = get_metric(metric, **params)
    X, Y = _check_xy(X, Y, metric)
    return _argmin_min(X, Y, metric, working_memory)
