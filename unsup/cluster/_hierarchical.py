"""Agglomerative clustering: any linkage, any metric, predict, re-cutting, large n.

Design constraints
------------------
- The merging itself is done by compiled engines, never by a Python loop:
  fastcluster's memory-lean ``linkage_vector`` (``O(n d)`` memory) where it
  serves the request, otherwise the ``n(n - 1)/2`` condensed distance matrix
  handed to ``fastcluster.linkage`` (in place) or
  ``scipy.cluster.hierarchy.linkage``.
- Before the condensed matrix is allocated, its size is checked against a
  memory budget; a request that would not fit and has no lean path ends with
  a ``MemoryError`` that says how many bytes it needs and how to get the lean
  path.
- The fitted tree is kept in scipy's linkage format, so ``scipy.cluster.hierarchy``
  tools (``fcluster``, ``dendrogram``, ``cophenet``) accept it; ``children_`` and
  ``distances_`` are scikit-learn's views of the same tree.
- A cut is a pure function of the tree (:mod:`unsup.cluster._tree`):
  ``cut`` re-cuts without refitting, ``predict`` assigns new points with the
  rule of the linkage (see :class:`AgglomerativeClustering`).
"""

from __future__ import annotations

import os
import time
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.cluster.hierarchy import linkage as scipy_linkage
from scipy.spatial.distance import pdist, squareform
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.utils.validation import check_is_fitted, check_non_negative, validate_data

from unsup._dask import dask_support
from unsup._names import EUCLIDEAN_LINKAGES, LINKAGES
from unsup._sklearn_adapter import Interval, StrOptions, fit_context
from unsup.cluster._metric_param import METRIC_CONSTRAINTS, PrecomputedMixin
from unsup.metrics._pairwise import _block_rows, _iter_blocks
from unsup.metrics._registry import Metric, get_metric
from unsup.cluster._tree import check_n_clusters, cluster_roots, cut_tree_labels, n_clusters_for_threshold

__all__ = ["AgglomerativeClustering"]

#: Fraction of the available memory that the condensed matrix may take by default.
MEMORY_FRACTION = 0.5


def _fastcluster():
    """The fastcluster module, or None when it is not installed."""
    try:
        import fastcluster
    except ImportError:
        return None
    return fastcluster


def available_memory():
    """Bytes of memory available to a new allocation, or None when it cannot be read.

    ``MemAvailable`` from ``/proc/meminfo`` (Linux), else the free physical
    pages reported by ``os.sysconf``.
    """
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def memory_budget_bytes(memory_budget):
    """The budget in bytes: ``memory_budget`` MiB, else half the available memory (inf if unknown)."""
    if memory_budget is not None:
        return float(memory_budget) * 2**20
    available = available_memory()
    return np.inf if available is None else MEMORY_FRACTION * available


def format_bytes(n_bytes):
    """``1.49 GiB``-style size."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.2f} {unit}"
    return f"{int(n_bytes)} B"


def has_lean_path(linkage, metric, X=None):
    """Whether fastcluster's ``linkage_vector`` serves this linkage and metric.

    ``metric`` is a :class:`~unsup.metrics.Metric` (``None`` for precomputed
    distances, which have no lean path): the euclidean linkages need its
    ``euclidean_linkages``, single linkage its ``fastcluster_name``. A
    ``unit_rows`` metric (cosine) qualifies only without all-zero rows
    (fastcluster gives those no distance; unsup puts them at 1).
    """
    if metric is None:
        return False
    if linkage in EUCLIDEAN_LINKAGES:
        return metric.euclidean_linkages
    if linkage != "single" or metric.fastcluster_name is None:
        return False
    if metric.unit_rows and X is not None:
        return not np.any(~X.any(axis=1))
    return True


def plan_engine(n, linkage, metric, *, engine="auto", memory_budget=None, X=None, fastcluster_available=None):
    """Choose the engine and check the memory before anything n² is allocated.

    Parameters
    ----------
    n : int
        Number of samples.
    linkage : str
    metric : Metric or None
        ``None`` for precomputed distances.
    engine : {"auto", "lean", "fastcluster", "scipy"}
    memory_budget : float or None
        MiB; ``None`` means half the available memory.
    X : ndarray, default=None
        The data (only looked at for cosine's zero rows).
    fastcluster_available : bool, default=None
        Whether fastcluster imports (found out when None).

    Returns
    -------
    engine : {"lean", "fastcluster", "scipy"}
    needed : int
        Bytes the n² path will allocate (0 for the lean path).

    Raises
    ------
    MemoryError
        The n² path would need more than the budget and no lean path serves
        the request; the message states the bytes needed and the way out.
    """
    fc = _fastcluster() is not None if fastcluster_available is None else fastcluster_available
    lean = has_lean_path(linkage, metric, X)
    lean_in_principle = has_lean_path(linkage, metric)
    if engine == "lean":
        if not lean:
            raise ValueError(_no_lean_reason(linkage, metric, X))
        if not fc:
            raise ImportError(_install_hint("engine='lean'"))
        return "lean", 0
    if engine == "auto" and lean and fc:
        return "lean", 0
    if engine == "fastcluster" and not fc:
        raise ImportError(_install_hint("engine='fastcluster'"))
    chosen = engine if engine != "auto" else ("fastcluster" if fc else "scipy")
    condensed = 8 * (n * (n - 1) // 2)
    # fastcluster works in place on our matrix (see _fastcluster_in_place);
    # scipy copies it, except for single linkage.
    factor = 1 if chosen == "fastcluster" or linkage == "single" else 2
    needed = factor * condensed
    budget = memory_budget_bytes(memory_budget)
    if needed > budget:
        where = f"memory_budget={memory_budget} MiB" if memory_budget is not None else (
            f"half the available memory ({format_bytes(budget)})"
        )
        msg = (
            f"AgglomerativeClustering(linkage={linkage!r}) on {n} samples needs the condensed "
            f"distance matrix, n(n-1)/2 float64 = {format_bytes(condensed)}"
            + (f", {factor}x that ({format_bytes(needed)}) with the {chosen} engine" if factor > 1 else "")
            + f": {needed} bytes, more than the budget of {where}. "
        )
        if lean_in_principle and not fc:
            msg += (
                "This request has a memory-lean path (O(n d) memory, no distance matrix) "
                "through fastcluster: pip install 'unsup[fast]' (or pip install fastcluster)."
            )
        elif lean and fc:
            msg += "Use engine='auto' or engine='lean' for the memory-lean path."
        else:
            msg += (
                _no_lean_reason(linkage, metric, X)
                + " Raise memory_budget (MiB) if the machine has the memory."
            )
        raise MemoryError(msg)
    return chosen, needed


def _install_hint(what):
    return f"{what} needs fastcluster: pip install 'unsup[fast]' (or pip install fastcluster)."


def _no_lean_reason(linkage, metric, X):
    if metric is None:
        return "Precomputed distances have no memory-lean path."
    if linkage in EUCLIDEAN_LINKAGES or linkage == "single":
        if metric.unit_rows:
            return (
                "Cosine single linkage has a memory-lean path only without all-zero rows "
                "(fastcluster gives them no distance)."
            )
        return f"linkage={linkage!r} has a memory-lean path only with the euclidean metric."
    return (
        f"linkage={linkage!r} has no memory-lean path: only linkage='single' (any registry "
        "metric) and 'ward', 'centroid', 'median' (euclidean) do, through fastcluster "
        "(pip install 'unsup[fast]')."
    )


def condensed_distances(X, metric: Metric | None):
    """The condensed distance vector ``pdist`` would return, prior validation assumed.

    Registry metrics with a scipy twin (``pdist_name``) go through ``pdist``
    (one fused C pass, equal to the registry's kernels up to round-off);
    callables through the registry's blocks. Cosine (``unit_rows``) puts
    all-zero rows at distance 1 (the registry's convention) where scipy gives
    NaN. ``metric=None``: ``X`` is a square
    distance matrix and its upper triangle is returned.
    """
    if metric is None:
        return squareform(X, force="tovector", checks=False).astype(np.float64, copy=False)
    X = np.ascontiguousarray(X, dtype=np.float64)
    n = X.shape[0]
    if metric.pdist_name is not None:
        with np.errstate(invalid="ignore", divide="ignore"):
            y = pdist(X, metric.pdist_name, **metric.scipy_params())
        if metric.unit_rows:
            for i in np.flatnonzero(~X.any(axis=1)):
                y[_condensed_row_indices(n, i)] = 1.0
        return y
    y = np.empty(n * (n - 1) // 2, dtype=np.float64)
    rows = _block_rows(X, X, metric)
    for start in range(0, n - 1, rows):
        stop = min(start + rows, n - 1)
        block = metric._block(X[start:stop], X[start:])
        for i in range(start, stop):
            a = i * n - i * (i + 1) // 2
            y[a : a + n - i - 1] = block[i - start, i - start + 1 :]
    return y


def _condensed_row_indices(n, i):
    """Positions in the condensed vector of the pairs (i, j), j != i."""
    j = np.arange(n)
    j = j[j != i]
    a, b = np.minimum(i, j), np.maximum(i, j)
    return a * n - a * (a + 1) // 2 + (b - a - 1)


def run_linkage(X, linkage, metric: Metric | None, engine, *, log=None):
    """The linkage matrix of ``X`` with the chosen engine (see :func:`plan_engine`).

    Prior validation of data is assumed: ``X`` is float64 observations, or a
    square distance matrix when ``metric`` is None.

    Returns
    -------
    Z : ndarray of shape (n_samples - 1, 4)
    """
    log = log or (lambda msg: None)
    if engine == "lean":
        fc = _fastcluster()
        # single: any metric fastcluster knows; the others: euclidean (plan_engine checked)
        name, extra = metric.fastcluster_args() if linkage == "single" else ("euclidean", None)
        t0 = time.perf_counter()
        Z = fc.linkage_vector(np.ascontiguousarray(X, dtype=np.float64), linkage, name, extra)
        log(f"linkage (fastcluster.linkage_vector, {linkage}) done in {time.perf_counter() - t0:.2f} s")
        return Z
    t0 = time.perf_counter()
    y = condensed_distances(X, metric)
    log(f"condensed distances ({format_bytes(y.nbytes)}) done in {time.perf_counter() - t0:.2f} s")
    if y.size and not np.isfinite(y.max()):  # one pass, no n² temporary; NaN propagates
        raise ValueError(
            "The distances contain infinity or NaN (the input's values overflow the metric)."
        )
    t0 = time.perf_counter()
    if engine == "fastcluster":
        Z = _fastcluster_in_place(y, linkage)
        what = "fastcluster.linkage"
    else:
        Z = scipy_linkage(y, method=linkage)
        what = "scipy.cluster.hierarchy.linkage"
    del y
    log(f"linkage ({what}, {linkage}) done in {time.perf_counter() - t0:.2f} s")
    return Z


def _fastcluster_in_place(y, linkage):
    """``fastcluster.linkage(y, linkage)`` working in ``y`` itself (which it overwrites).

    ``fastcluster.linkage`` copies its input whatever ``preserve_input`` says
    (its first line, ``array(X)``, copies under numpy 2): its C entry point,
    which the function wraps, is called directly instead, so the condensed
    matrix exists once. Falls back to the function if the entry point moves.
    """
    fc = _fastcluster()
    wrap, codes = getattr(fc, "linkage_wrap", None), getattr(fc, "mthidx", None)
    if wrap is None or not isinstance(codes, dict) or linkage not in codes:
        return fc.linkage(y, method=linkage, preserve_input=False)
    n = int(np.ceil(np.sqrt(2 * len(y))))
    Z = np.empty((n - 1, 4), dtype=np.float64)
    wrap(n, y, Z, codes[linkage])
    return Z


def check_precomputed(D):
    """A square, symmetric, hollow, non-negative distance matrix (scikit-learn's wording)."""
    if D.shape[0] != D.shape[1]:
        raise ValueError(
            f"A precomputed distance matrix must be square; got shape {D.shape}."
        )
    check_non_negative(D, whom="AgglomerativeClustering (metric='precomputed')")
    if np.any(np.diagonal(D) != 0):
        raise ValueError("A precomputed distance matrix must have a zero diagonal.")
    scale = float(D.max()) if D.size else 0.0
    if not np.allclose(D, D.T, rtol=0.0, atol=1e-12 * max(scale, 1.0)):
        raise ValueError("A precomputed distance matrix must be symmetric.")
    return D


def _iter_query_blocks(X, reference, metric, working_memory=None):
    """``(start, D)`` blocks of distances from rows of ``X`` to the reference rows.

    ``metric=None``: ``X`` already holds distances to the training samples.
    """
    if metric is None:
        rows = max(1, int(2**22 // max(X.shape[1], 1)))
        for start in range(0, X.shape[0], rows):
            yield start, X[start : start + rows].astype(np.float64, copy=False)
        return
    yield from _iter_blocks(X, reference, metric, working_memory)


@dask_support
class AgglomerativeClustering(PrecomputedMixin, ClusterMixin, BaseEstimator):
    """Bottom-up hierarchical clustering with any linkage and metric, ``predict`` and ``cut``.

    Each sample starts as its own cluster and the two closest clusters merge
    until one is left; the tree is then cut into ``n_clusters`` clusters, or
    where the merge height reaches ``distance_threshold``.

    ==========  ========================================  ==========================================
    linkage     distance between clusters A and B          ``predict`` assigns a new point x to
    ==========  ========================================  ==========================================
    single      least distance between members             the cluster of its nearest training point
    complete    largest distance between members           the cluster whose farthest member is nearest
    average     mean distance between members (UPGMA)      the cluster of least mean distance to x
    weighted    mean of the two merged parts' (WPGMA)      the cluster of least WPGMA distance: members
                                                           weighted 2^-depth below the cluster's head
    ward        increase of within-cluster variance        the cluster of least ward distance
                (euclidean only)                           ``sqrt(2 m / (m + 1)) ||x - mean||``
    centroid    distance between means (euclidean)         the cluster of nearest mean
    median      distance between midpoints (WPGMC,         the cluster of nearest midpoint (means of
                euclidean)                                 the merged parts, halved at each merge)
    ==========  ========================================  ==========================================

    Each rule is the linkage's own distance between ``{x}`` and a cluster,
    i.e. the height at which ``x`` would join it. On the training points of
    well separated clusters it gives back ``labels_``.

    Engines (compiled, never a Python merge loop): with fastcluster installed
    (``pip install 'unsup[fast]'``), ``single`` (registry metrics and
    callables) and ``ward``/``centroid``/``median`` (euclidean) run through
    ``fastcluster.linkage_vector`` in ``O(n d)`` memory, also faster than the
    n² path (measured in ``docs/hierarchical.md``). Everything else builds the
    condensed distance matrix, ``n(n - 1)/2`` float64, and passes it to
    ``fastcluster.linkage`` (which works in place) or to
    ``scipy.cluster.hierarchy.linkage`` (which copies it, except for single
    linkage). Before that matrix is allocated, the bytes it needs are compared
    with ``memory_budget`` (half the available memory by default): over it, a
    ``MemoryError`` states the size and how to get the lean path.

    Parameters
    ----------
    n_clusters : int or None, default=2
        Clusters to find. Must be None when ``distance_threshold`` is set.
    metric : str or callable, default="euclidean"
        A name of :data:`unsup.metrics.METRIC_NAMES`, a callable
        ``f(a, b) -> float``, or ``"precomputed"`` (``X`` is a square distance
        matrix: symmetric, zero diagonal, non-negative). ``ward``,
        ``centroid`` and ``median`` need ``"euclidean"``.
    metric_params : dict, default=None
        Parameters of the metric, e.g. ``{"p": 3}`` for minkowski.
    linkage : {"ward", "complete", "average", "single", "weighted", "centroid", "median"}, default="ward"
        The merge rule (see the table above).
    distance_threshold : float, default=None
        Cut where merges reach this height: merges at heights ``>=
        distance_threshold`` are undone (scikit-learn's rule). Must be None
        when ``n_clusters`` is set.
    engine : {"auto", "lean", "fastcluster", "scipy"}, default="auto"
        ``"auto"``: the lean path when fastcluster serves the request, else
        the n² path through fastcluster (installed) or scipy. The others
        force an engine: ``"lean"`` (``fastcluster.linkage_vector``),
        ``"fastcluster"`` (``fastcluster.linkage`` on the condensed matrix),
        ``"scipy"`` (``scipy.cluster.hierarchy.linkage`` on it).
    memory_budget : float, default=None
        MiB the condensed matrix path may allocate (the matrix, and scipy's
        copy of it). ``None``: half of ``MemAvailable`` (``/proc/meminfo``),
        read at fit time.
    verbose : int, default=0
        Print each stage (engine chosen and why, distances, linkage, cut)
        with its time. The engines are compiled and report no progress of
        their own, so there is no per-merge progress.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample, numbered in order of first
        appearance.
    n_clusters_ : int
        Number of clusters found (with ``distance_threshold``: the merges
        below it plus one).
    n_leaves_ : int
        Leaves of the tree (``n_samples``).
    children_ : ndarray of shape (n_samples - 1, 2)
        The nodes merged at each step; nodes below ``n_samples`` are samples,
        node ``n_samples + i`` is the cluster formed at step ``i``
        (scikit-learn's format).
    distances_ : ndarray of shape (n_samples - 1,)
        Height of each merge (for ward: scipy's ``sqrt(2 |A||B| / (|A| + |B|)) ||mean_A - mean_B||``).
    linkage_matrix_ : ndarray of shape (n_samples - 1, 4)
        scipy's format: ``children_``, ``distances_``, cluster sizes.
    engine_ : {"lean", "fastcluster", "scipy"}
        The engine that built the tree.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    See Also
    --------
    sklearn.cluster.AgglomerativeClustering : the same tree for ward, complete, average and single.
    scipy.cluster.hierarchy.linkage : the engine and the oracle.
    unsup.cluster.DivisiveClustering : top-down trees in the same format.
    unsup.plotting.plot_dendrogram : draw the tree.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.cluster import AgglomerativeClustering
    >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [5.0, 6.0], [10.0, 0.0]])
    >>> model = AgglomerativeClustering(n_clusters=2, linkage="average").fit(X)
    >>> model.labels_
    array([0, 0, 0, 0, 1])
    >>> model.distances_.round(2)
    array([1.  , 1.  , 7.09, 8.73])
    >>> model.cut(n_clusters=3)
    array([0, 0, 1, 1, 2])
    >>> model.predict([[1.0, 0.5], [11.0, 0.0]])
    array([0, 1])
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left"), None],
        **METRIC_CONSTRAINTS,
        "linkage": [StrOptions(set(LINKAGES))],
        "distance_threshold": [Interval(Real, 0, None, closed="left"), None],
        "engine": [StrOptions({"auto", "lean", "fastcluster", "scipy"})],
        "memory_budget": [Interval(Real, 0, None, closed="neither"), None],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters=2,
        *,
        metric="euclidean",
        metric_params=None,
        linkage="ward",
        distance_threshold=None,
        engine="auto",
        memory_budget=None,
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.metric = metric
        self.metric_params = metric_params
        self.linkage = linkage
        self.distance_threshold = distance_threshold
        self.engine = engine
        self.memory_budget = memory_budget
        self.verbose = verbose

    def _log(self, msg):
        if self.verbose:
            print(f"[AgglomerativeClustering] {msg}")

    def _get_metric(self):
        """The registry metric, or None for precomputed distances; checks it suits the linkage."""
        metric = super()._get_metric()
        if self.linkage in EUCLIDEAN_LINKAGES and (metric is None or not metric.euclidean_linkages):
            shown = getattr(self.metric, "__name__", self.metric)
            raise ValueError(
                f"linkage={self.linkage!r} needs metric='euclidean' (its merge rule works on "
                f"means in euclidean space); got metric={shown!r}. With other metrics use "
                "linkage='single', 'complete', 'average' or 'weighted'."
            )
        return metric

    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Build the tree of ``X`` and cut it.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or (n_samples, n_samples) if metric="precomputed"
        y : Ignored

        Returns
        -------
        self : AgglomerativeClustering
        """
        if (self.n_clusters is None) == (self.distance_threshold is None):
            raise ValueError(
                "Exactly one of n_clusters and distance_threshold has to be set, and the "
                "other needs to be None."
            )
        metric = self._get_metric()
        X = validate_data(self, X, ensure_min_samples=2, dtype=[np.float64, np.float32])
        X = X.astype(np.float64, copy=False)
        if metric is None:
            X = check_precomputed(X)
        n = X.shape[0]
        if self.n_clusters is not None:
            check_n_clusters(self.n_clusters, n)

        engine, needed = plan_engine(
            n, self.linkage, metric, engine=self.engine, memory_budget=self.memory_budget, X=X
        )
        if engine == "lean":
            self._log(
                f"n_samples={n}, linkage={self.linkage!r}: engine 'lean' "
                "(fastcluster.linkage_vector, O(n d) memory, no distance matrix)"
            )
        else:
            self._log(
                f"n_samples={n}, linkage={self.linkage!r}: engine {engine!r} on the condensed "
                f"matrix ({format_bytes(needed)} within the budget of "
                f"{format_bytes(memory_budget_bytes(self.memory_budget))})"
            )
        Z = run_linkage(X, self.linkage, metric, engine, log=self._log)

        self.engine_ = engine
        self.linkage_matrix_ = Z
        self.children_ = Z[:, :2].astype(np.intp)
        self.distances_ = Z[:, 2].copy()
        self.n_leaves_ = n
        self._metric = metric
        self._fit_X = None if metric is None else X
        t0 = time.perf_counter()
        self.n_clusters_ = self._resolve_n_clusters(self.n_clusters, self.distance_threshold)
        self.labels_ = cut_tree_labels(self.children_, n, self.n_clusters_)
        self._summary = self._cluster_summary(self.n_clusters_)
        self._log(f"cut into {self.n_clusters_} clusters in {time.perf_counter() - t0:.2f} s")
        return self

    # ----------------------------------------------------------------- cuts
    def _resolve_n_clusters(self, n_clusters, distance_threshold):
        if (n_clusters is None) == (distance_threshold is None):
            raise ValueError(
                "Exactly one of n_clusters and distance_threshold has to be set, and the "
                "other needs to be None."
            )
        if n_clusters is not None:
            if isinstance(n_clusters, bool) or not isinstance(n_clusters, Integral) or n_clusters < 1:
                raise ValueError(f"n_clusters must be an int >= 1; got {n_clusters!r}.")
            check_n_clusters(int(n_clusters), self.n_leaves_)
            return int(n_clusters)
        if isinstance(distance_threshold, bool) or not isinstance(distance_threshold, Real) or not (
            distance_threshold >= 0
        ):
            raise ValueError(f"distance_threshold must be a float >= 0; got {distance_threshold!r}.")
        return n_clusters_for_threshold(self.distances_, distance_threshold)

    def cut(self, n_clusters=None, distance_threshold=None):
        """Labels of the training samples for another cut of the fitted tree, without refitting.

        Parameters
        ----------
        n_clusters : int, default=None
            Undo the last ``n_clusters - 1`` merges.
        distance_threshold : float, default=None
            Undo the merges at heights ``>= distance_threshold``.
            Exactly one of the two is given.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Numbered in order of first appearance (as ``labels_``).
        """
        check_is_fitted(self)
        k = self._resolve_n_clusters(n_clusters, distance_threshold)
        return cut_tree_labels(self.children_, self.n_leaves_, k)

    # -------------------------------------------------------------- predict
    def _cluster_summary(self, k):
        """What ``predict`` needs for the cut into ``k`` clusters."""
        n = self.n_leaves_
        _, depth = cluster_roots(self.children_, n, k)
        labels = cut_tree_labels(self.children_, n, k)
        sizes = np.bincount(labels, minlength=k).astype(np.float64)
        linkage = self.linkage
        summary = {"k": k, "labels": labels}
        if linkage == "complete":
            order = np.argsort(labels, kind="stable")
            summary["order"] = order
            summary["starts"] = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.intp)
        if linkage in ("average", "weighted", "median"):
            if linkage == "average":
                w = 1.0 / sizes[labels]
            else:  # WPGMA / WPGMC: each merge halves the weight of both parts
                w = np.ldexp(1.0, -np.minimum(depth, 1074).astype(np.int64))
                w /= np.bincount(labels, weights=w, minlength=k)[labels]
            summary["weights"] = sp.csr_matrix((w, (np.arange(n), labels)), shape=(n, k))
        if linkage in ("ward", "centroid", "median"):
            X = self._fit_X
            if linkage == "median":
                centres = np.asarray(summary["weights"].T @ X)
            else:
                onehot = sp.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
                centres = np.asarray(onehot @ X) / sizes[:, None]
            summary["centres"] = centres
            summary["sizes"] = sizes
        return summary

    def predict(self, X, *, n_clusters=None, distance_threshold=None):
        """Assign new samples to the clusters with the rule of the linkage.

        See the class docstring for the rule of each linkage: the cluster
        that ``x`` would join first.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), or (n_queries, n_samples) if metric="precomputed"
            New samples (with ``"precomputed"``: their distances to the
            training samples).
        n_clusters : int, default=None
            Assign to the clusters of this cut instead of the fitted one.
        distance_threshold : float, default=None
            Assign to the clusters of the cut at this height instead.

        Returns
        -------
        labels : ndarray of shape (n_queries,)
            Labels as numbered by ``labels_`` (or by :meth:`cut` for another cut).
        """
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        X = X.astype(np.float64, copy=False)
        metric = self._metric
        self._check_query_distances(X)
        if n_clusters is None and distance_threshold is None:
            summary = self._summary
        else:
            summary = self._cluster_summary(self._resolve_n_clusters(n_clusters, distance_threshold))
        out = np.empty(X.shape[0], dtype=np.intp)
        linkage = self.linkage
        if linkage in ("ward", "centroid", "median"):
            centres = summary["centres"]
            sq = get_metric("sqeuclidean")
            scale = 2.0 * summary["sizes"] / (summary["sizes"] + 1.0) if linkage == "ward" else 1.0
            for start, D in _iter_blocks(X, centres, sq):
                out[start : start + len(D)] = np.argmin(D * scale, axis=1)
            return out
        labels = summary["labels"]
        reference = self._fit_X
        if linkage == "complete":
            order, starts = summary["order"], summary["starts"]
            if metric is not None:
                reference = reference[order]
            for start, D in _iter_query_blocks(X, reference, metric):
                if metric is None:
                    D = D[:, order]
                out[start : start + len(D)] = np.argmin(np.maximum.reduceat(D, starts, axis=1), axis=1)
            return out
        if linkage == "single":
            for start, D in _iter_query_blocks(X, reference, metric):
                out[start : start + len(D)] = labels[np.argmin(D, axis=1)]
            return out
        W = summary["weights"]  # average, weighted
        for start, D in _iter_query_blocks(X, reference, metric):
            out[start : start + len(D)] = np.argmin(np.asarray(D @ W), axis=1)
        return out
