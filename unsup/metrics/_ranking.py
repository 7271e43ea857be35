"""Quality of a nearest-neighbour search: :func:`recall_at_k`.

Design constraints:

- One definition for the command line, the tests, the benchmarks and the
  examples: a returned neighbour counts when its exact distance is within the
  exact ``k``-th distance of its query (ties at the ``k``-th distance all
  count; any of them is a correct answer), so the figure does not depend on
  how an exact search happens to order equal distances.
- The exact k-th distances: for euclidean and cosine, scikit-learn's
  ``NearestNeighbors`` (a tree where it can), and the returned rows' own
  distances by the metric's ``exact_rows``; for the other metrics
  :func:`unsup.metrics.pairwise_distances` in float64, block by block over
  the queries (a block of at most ``_BLOCK_BYTES``, not
  ``n_queries x n_samples``), computed once however many searches of the
  same queries are scored (:func:`recalls_at_k`).
"""

from __future__ import annotations

import numpy as np

from unsup.metrics._pairwise import pairwise_distances
from unsup.metrics._registry import get_metric

__all__ = ["recall_at_k", "recalls_at_k"]

#: Relative and absolute slack on the k-th distance: round-off, not a looser search.
_RTOL, _ATOL = 1e-9, 1e-12
#: Bytes of one block of exact distances (float64, queries x n_samples).
_BLOCK_BYTES = 1 << 26


def recall_at_k(X, indices, *, queries=None, metric="euclidean", **params):
    """Recall@k of a neighbour search: the share of the exact ``k`` nearest neighbours it returned.

    For each query, a returned index counts when its exact distance to the
    query is at most the exact ``k``-th smallest distance (up to round-off,
    relative 1e-9), where ``k = indices.shape[1]``. Where several points tie
    at the ``k``-th distance any of them is a correct ``k``-th neighbour, so
    each counts; an index returned twice counts once. The recall is the mean,
    over the queries, of the count divided by ``k``.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The searched set (what the index was fitted on).
    indices : array-like of int, shape (n_queries, k)
        The neighbours the search returned for each query: row indices into ``X``.
    queries : array-like of shape (n_queries, n_features), default=None
        The query points. ``None``: the queries are the rows of ``X``, each
        excluded from its own neighbours (what ``kneighbors(None)`` returns,
        scikit-learn's convention). Query points given here are not excluded
        from the searched set (a row of ``X`` finds itself at distance 0).
    metric : str or callable, default="euclidean"
        The distance the exact search uses (:func:`pairwise_distances`'s).
    **params
        Parameters of the metric (``p`` for minkowski).

    Returns
    -------
    recall : float
        In [0, 1]; 1 when every returned neighbour is an exact one.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.metrics import recall_at_k
    >>> X = np.array([[0.0], [1.0], [3.0], [7.0]])
    >>> recall_at_k(X, [[1], [0], [1], [2]])  # each row's nearest other row
    1.0
    >>> recall_at_k(X, [[3], [0], [1], [2]])  # the first query got 7.0, not 1.0
    0.75
    >>> recall_at_k(X, [[0, 2]], queries=[[2.0]])  # 1.0 and 3.0 are the 2 nearest to 2.0; 0.0 is not
    0.5
    """
    return recalls_at_k(X, [indices], queries=queries, metric=metric, **params)[0]


def recalls_at_k(X, searches, *, queries=None, metric="euclidean", **params):
    """:func:`recall_at_k` of several searches of the same queries, the exact distances computed once.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
    searches : sequence of array-like of int, each of shape (n_queries, k)
        The neighbours each search returned (``k`` may differ between them).
    queries, metric, **params
        As :func:`recall_at_k`.

    Returns
    -------
    recalls : list of float
        One per search, in order.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-d (n_samples, n_features), got shape {X.shape}.")
    exclude_self = queries is None
    Q = X if exclude_self else np.asarray(queries, dtype=np.float64)
    if Q.ndim != 2 or Q.shape[1] != X.shape[1]:
        raise ValueError(f"queries must be 2-d with {X.shape[1]} features, got shape {Q.shape}.")
    if len(Q) == 0:
        raise ValueError("recall_at_k needs at least one query.")
    orders, firsts = [], []
    for indices in searches:
        indices = np.asarray(indices)
        if indices.ndim != 2 or indices.shape[1] == 0 or indices.dtype.kind not in "iu":
            raise ValueError(
                f"indices must be a 2-d array of integers with k >= 1 columns, got {indices.dtype} {indices.shape}."
            )
        if indices.size and (indices.min() < 0 or indices.max() >= X.shape[0]):
            raise ValueError(f"indices must be in [0, {X.shape[0] - 1}] (rows of X).")
        if len(indices) != len(Q):
            raise ValueError(f"indices has {len(indices)} rows for {len(Q)} queries.")
        if indices.shape[1] > X.shape[0] - exclude_self:
            raise ValueError(
                f"k={indices.shape[1]} is larger than the {X.shape[0] - exclude_self} points each query can find."
            )
        order = np.sort(indices, axis=1)
        first = np.ones(order.shape, dtype=bool)
        first[:, 1:] = order[:, 1:] != order[:, :-1]  # an index returned twice counts once
        orders.append(order)
        firsts.append(first)
    hits = [0] * len(orders)
    ks = sorted({order.shape[1] - 1 for order in orders})
    named = get_metric(metric, **params) if isinstance(metric, str) else None
    if named is not None and named.searches_codes:  # euclidean, cosine: scikit-learn's exact search, then the k rows
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=ks[-1] + 1, metric=named.name).fit(X)
        kth_all = nn.kneighbors(None if exclude_self else Q)[0]  # ascending; a row is not its own neighbour
        step = max(1, _BLOCK_BYTES // (8 * X.shape[1] * (ks[-1] + 1)))
        for r0 in range(0, len(Q), step):
            r1 = min(r0 + step, len(Q))
            for i, (order, first) in enumerate(zip(orders, firsts)):
                got = named.exact_rows(Q[r0:r1], X[order[r0:r1]])
                if exclude_self:  # a query returned as its own neighbour is no neighbour
                    got[order[r0:r1] == np.arange(r0, r1)[:, None]] = np.inf
                kth = kth_all[r0:r1, order.shape[1] - 1 : order.shape[1]]
                hits[i] += int(np.count_nonzero((got <= kth * (1 + _RTOL) + _ATOL) & first[r0:r1]))
        return [h / (len(Q) * order.shape[1]) for h, order in zip(hits, orders)]
    block = max(1, _BLOCK_BYTES // (8 * X.shape[0]))
    for r0 in range(0, len(Q), block):
        r1 = min(r0 + block, len(Q))
        D = np.asarray(pairwise_distances(Q[r0:r1], X, metric=metric, **params), dtype=np.float64)
        if exclude_self:
            D[np.arange(r1 - r0), np.arange(r0, r1)] = np.inf
        got = [np.take_along_axis(D, order[r0:r1], axis=1) for order in orders]
        D.partition(ks, axis=1)  # in place: every search's k-th distance in one pass
        for i, (order, first) in enumerate(zip(orders, firsts)):
            kth = D[:, order.shape[1] - 1 : order.shape[1]]
            hits[i] += int(np.count_nonzero((got[i] <= kth * (1 + _RTOL) + _ATOL) & first[r0:r1]))
    return [h / (len(Q) * order.shape[1]) for h, order in zip(hits, orders)]
