"""Divisive (top-down) hierarchical clustering: bisecting k-means in any metric, and DIANA.

Design constraints
------------------
- Top-down trees come out in the same linkage format as the agglomerative
  ones (:func:`unsup.cluster._tree.linkage_from_splits`), valid and monotone
  for ``scipy.cluster.hierarchy``, so one set of dendrogram tools serves both
  directions. The height of a split is the cost of the cluster it splits:
  its inertia (bisecting: the k-means cost of the metric, SSE for
  euclidean) or its diameter (DIANA). A part never costs more than the whole
  (for the medoid rule, where it can, the height is raised to the largest
  height below it), so heights are monotone.
- Bisecting k-means is :class:`unsup.cluster.KMeans` with ``n_clusters=2``
  and the metric's centre rule, run on the cluster chosen by
  ``bisecting_strategy`` (for squared-euclidean costs, scikit-learn's Lloyd
  core called directly on data centred once per fit, as ``BisectingKMeans``
  does); DIANA is Kaufman & Rousseeuw's splinter-group
  procedure on the distance matrix of the cluster it splits (one cluster's
  matrix at a time, checked against the memory budget first).
- ``predict`` descends the tree: at each split, the side whose centre is
  nearer (bisecting) or whose members are nearer on average (DIANA, the
  splinter criterion).
"""

from __future__ import annotations

import contextlib
import heapq
import time
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn import config_context
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.extmath import row_norms
from sklearn.utils.validation import check_is_fitted, validate_data

from unsup._dask import dask_support
from unsup._sklearn_adapter import (
    Interval,
    StrOptions,
    fit_context,
    inertia as sse,
    is_same_clustering,
    lloyd,
)
from unsup.cluster._hierarchical import (
    _iter_query_blocks,
    check_precomputed,
    format_bytes,
    memory_budget_bytes,
)
from unsup.cluster._kmeans import KMeans, kmeans_plusplus
from unsup.cluster._metric_param import METRIC_CONSTRAINTS, PrecomputedMixin
from unsup.cluster._tree import _number_by_first_appearance, linkage_from_splits
from unsup.metrics._centres import compute_centres
from unsup.metrics._pairwise import _iter_blocks, pairwise_distances
from unsup.metrics._registry import is_precomputed
from unsup.utils._threads import openmp_n_threads, single_threaded
from unsup.utils.validation import upcast_if_overflow

__all__ = ["DivisiveClustering"]

#: Below this many rows a bisection runs on one OpenMP thread.
_SINGLE_THREAD_ROWS = 2048


def _dense_row(X, i):
    """Row ``i`` of ``X`` (dense or CSR) as a 1-D array."""
    return X[i].toarray().ravel() if sp.issparse(X) else X[i]


class _LloydData:
    """What the squared-euclidean bisections share within one fit, computed once.

    As scikit-learn's ``BisectingKMeans``: dense data centred on its mean (for
    accurate distances; a C-ordered copy, the caller's array is untouched),
    sparse data left as it is (to stay sparse), the squared norms of the
    rows, unit sample weights (in the data's dtype) and the OpenMP threads.
    ``root_centre`` and ``root_cost`` are the mean of all rows and their sum
    of squared distances to it.
    """

    def __init__(self, X):
        if sp.issparse(X):
            self.mean = np.zeros(X.shape[1], dtype=X.dtype)
            self.Xc = X
        else:
            self.mean = X.mean(axis=0)
            self.Xc = np.subtract(X, self.mean, order="C")
        self.sq_norms = row_norms(self.Xc, squared=True)
        self.weights = np.ones(X.shape[0], dtype=self.Xc.dtype)
        self.n_threads = openmp_n_threads()
        if sp.issparse(X):
            self.root_centre = np.asarray(X.mean(axis=0)).ravel()
            sq = float(self.sq_norms.sum(dtype=np.float64))
            self.root_cost = max(sq - X.shape[0] * float(self.root_centre @ self.root_centre), 0.0)
        else:
            self.root_centre = self.mean.copy()
            self.root_cost = float(self.sq_norms.sum())


class _Bisection(KMeans):
    """unsup's KMeans with the tolerance of scikit-learn's BisectingKMeans.

    ``BisectingKMeans`` hands its ``tol`` to each bisection unscaled: an
    absolute bound on the squared centre shift, where ``KMeans`` scales
    ``tol`` by the mean variance of its input. This subclass keeps ``tol``
    absolute (and so skips the variance, a pass over the part).
    """

    def _check_params_vs_input(self, X, sample_weight):
        tol = self.tol
        self.tol = 0.0  # no variance computed for a zero tolerance
        try:
            super()._check_params_vs_input(X, sample_weight)
        finally:
            self.tol = tol
        self._tol = float(tol)


def diana_split(D):
    """Kaufman & Rousseeuw's splinter split of one cluster, given its distance matrix.

    The member with the largest mean distance to the others starts the
    splinter group; then, while some remaining member is on average nearer
    to the splinter group than to the other remaining members, the one with
    the largest such difference moves. Ties go to the first member.
    Prior validation is assumed.

    Parameters
    ----------
    D : ndarray of shape (m, m)
        Distances between the members (m >= 2).

    Returns
    -------
    splinter : ndarray of shape (m,), dtype bool
        True for the members of the splinter group.
    """
    m = D.shape[0]
    splinter = np.zeros(m, dtype=bool)
    to_rest = D.sum(axis=1)  # sums of distances to the remaining group (self adds 0)
    to_splinter = np.zeros(m)
    first = int(np.argmax(to_rest))
    n_rest, n_split = m, 0

    def move(i):
        nonlocal n_rest, n_split
        splinter[i] = True
        to_rest[:] -= D[:, i]
        to_splinter[:] += D[:, i]
        n_rest -= 1
        n_split += 1

    move(first)
    while n_rest > 1:
        diff = to_rest / (n_rest - 1) - to_splinter / n_split
        diff[splinter] = -np.inf
        i = int(np.argmax(diff))
        if not diff[i] > 0:
            break
        move(i)
    return splinter


@dask_support
class DivisiveClustering(PrecomputedMixin, ClusterMixin, BaseEstimator):
    """Top-down hierarchical clustering: bisecting k-means in any metric, or DIANA.

    Starting from one cluster holding every sample, clusters are split in two
    until there are ``n_clusters`` (or single samples, with
    ``compute_full_tree=True``).

    - ``method="bisecting"``: the cluster chosen by ``bisecting_strategy``
      (``"biggest_inertia"``: the largest k-means cost; ``"largest_cluster"``:
      the most samples) is split by :class:`unsup.cluster.KMeans` with two
      clusters in ``metric``, with the metric's centre rule (means for
      euclidean, medians for manhattan, unit means for cosine, modes for
      hamming, medoids otherwise). With euclidean this is scikit-learn's
      :class:`~sklearn.cluster.BisectingKMeans`. Sparse (CSR) input is
      accepted with the euclidean, sqeuclidean and cosine metrics.
    - ``method="diana"``: Kaufman & Rousseeuw's divisive analysis. The
      cluster of largest diameter (largest distance between two members) is
      split by a splinter group: its member of largest mean distance to the
      others starts the group, and members on average nearer to the group
      than to the rest join it one by one. Any metric, or ``"precomputed"``.

    Parameters
    ----------
    n_clusters : int, default=2
        Clusters to find.
    method : {"bisecting", "diana"}, default="bisecting"
    metric : str or callable, default="euclidean"
        A name of :data:`unsup.metrics.METRIC_NAMES`, a callable
        ``f(a, b) -> float``, or (``diana`` only) ``"precomputed"``: ``X`` is
        a square distance matrix.
    metric_params : dict, default=None
        Parameters of the metric, e.g. ``{"p": 3}`` for minkowski.
    bisecting_strategy : {"biggest_inertia", "largest_cluster"}, default="biggest_inertia"
        Which cluster bisecting splits next (``diana`` always splits the
        cluster of largest diameter).
    compute_full_tree : bool, default=False
        Keep splitting down to single samples, so that ``linkage_matrix_``
        is the whole top-down tree and :meth:`cut` accepts any number of
        clusters. Otherwise the tree stops at ``n_clusters`` clusters, whose
        members join at height 0 in ``linkage_matrix_``.
    init : {"random", "k-means++"}, default="random"
        Initialisation of each bisection (``KMeans(init=...)``); ``"random"``
        as scikit-learn's ``BisectingKMeans``, whose tree it then reproduces
        for euclidean given the same ``random_state``.
    n_init : int, default=1
        Bisections tried per split, the one of least inertia kept.
    max_iter : int, default=300
        Iterations of one bisection.
    tol : float, default=1e-4
        A bisection has converged when the total squared shift of its two
        centres is within ``tol`` (an absolute bound: what scikit-learn's
        ``BisectingKMeans`` does, which passes its ``tol`` to each bisection
        unscaled), or when its labels stop changing.
    memory_budget : float, default=None
        MiB that ``diana``'s distance matrix of the cluster being split may
        take (twice ``8 m^2`` bytes for a cluster of ``m`` samples, for its
        parts' diameters). ``None``: half the available memory.
    random_state : int, RandomState instance or None, default=None
        Seeds the bisections.
    verbose : int, default=0
        Print each split: the cluster split, its cost, the sizes of the
        parts and the time taken.

    Attributes
    ----------
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training sample, numbered in order of first appearance.
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centre of each cluster by the metric's centre rule (mean, median,
        unit mean, mode or medoid), in the dtype of ``X`` (float32 is kept).
        Not set with ``metric="precomputed"``.
    medoid_indices_ : ndarray of shape (n_clusters,)
        With ``metric="precomputed"`` only: the training sample of least
        total distance to its cluster.
    inertia_ : float
        Sum over clusters of the k-means cost of each member to its centre
        (SSE for euclidean; with precomputed distances, distances to the medoids).
    linkage_matrix_ : ndarray of shape (n_samples - 1, 4)
        The top-down tree in scipy's linkage format (valid, monotone): split
        heights are the costs of the clusters split (inertia for bisecting,
        diameter for diana).
    children_ : ndarray of shape (n_samples - 1, 2)
    distances_ : ndarray of shape (n_samples - 1,)
        Views of ``linkage_matrix_`` in scikit-learn's format.
    n_leaves_ : int
    n_iter_ : ndarray of shape (n_splits,)
        Per split, in the order made: the k-means iterations of the bisection
        (bisecting) or the samples moved to the splinter group (diana).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    See Also
    --------
    sklearn.cluster.BisectingKMeans : the euclidean bisecting oracle.
    unsup.cluster.AgglomerativeClustering : bottom-up trees in the same format.
    unsup.plotting.plot_dendrogram : draw the tree.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.cluster import DivisiveClustering
    >>> X = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]])
    >>> model = DivisiveClustering(n_clusters=3, method="diana").fit(X)
    >>> model.labels_
    array([0, 0, 0, 1, 1, 2])
    >>> model.linkage_matrix_[-2:, 2]   # diameters of the clusters split
    array([11., 20.])
    >>> model.predict([[3.0], [18.0]])
    array([0, 2])
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        "method": [StrOptions({"bisecting", "diana"})],
        **METRIC_CONSTRAINTS,
        "bisecting_strategy": [StrOptions({"biggest_inertia", "largest_cluster"})],
        "compute_full_tree": ["boolean"],
        "init": [StrOptions({"k-means++", "random"})],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        # passed on to the inner KMeans of method="bisecting", under its constraints
        **{name: KMeans._parameter_constraints[name] for name in ("max_iter", "tol")},
        "memory_budget": [Interval(Real, 0, None, closed="neither"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters=2,
        *,
        method="bisecting",
        metric="euclidean",
        metric_params=None,
        bisecting_strategy="biggest_inertia",
        compute_full_tree=False,
        init="random",
        n_init=1,
        max_iter=300,
        tol=1e-4,
        memory_budget=None,
        random_state=None,
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.method = method
        self.metric = metric
        self.metric_params = metric_params
        self.bisecting_strategy = bisecting_strategy
        self.compute_full_tree = compute_full_tree
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.memory_budget = memory_budget
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            tags.input_tags.sparse = self._accept_sparse(self._get_metric()) is not False
        except (TypeError, ValueError):  # invalid parameters: fit will say so
            tags.input_tags.sparse = False
        return tags

    def _accept_sparse(self, metric):
        """``"csr"`` where bisecting's kernels take sparse rows (euclidean, sqeuclidean, cosine), else False.

        DIANA and the other metrics refuse sparse input with scikit-learn's
        "dense data is required" error.
        """
        if self.method == "bisecting" and metric is not None and metric.accepts_sparse:
            return "csr"
        return False

    def _log(self, msg):
        if self.verbose:
            print(f"[DivisiveClustering] {msg}")

    # ------------------------------------------------------------------ fit
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Split ``X`` top-down into ``n_clusters`` clusters.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features), or (n_samples, n_samples) if metric="precomputed"
            Sparse (CSR) with method="bisecting" and a euclidean or cosine metric.
        y : Ignored

        Returns
        -------
        self : DivisiveClustering
        """
        precomputed = is_precomputed(self.metric)
        if precomputed and self.method == "bisecting":
            raise ValueError(
                "method='bisecting' needs feature vectors (k-means centres); "
                "metric='precomputed' works with method='diana'."
            )
        metric = self._get_metric()
        X_in = validate_data(
            self,
            X,
            ensure_min_samples=2,
            dtype=[np.float64, np.float32],
            accept_sparse=self._accept_sparse(metric),
            accept_large_sparse=False,
        )
        # float32 is kept (as BisectingKMeans), unless its squares could overflow.
        X = upcast_if_overflow(X_in)
        if precomputed:
            X = check_precomputed(X.astype(np.float64, copy=False))
        n = X.shape[0]
        if self.n_clusters > n:
            raise ValueError(f"n_samples={n} should be >= n_clusters={self.n_clusters}.")
        self._metric = metric
        self._random_state = check_random_state(self.random_state)
        self._budget = memory_budget_bytes(self.memory_budget)
        # Squared-euclidean bisections call scikit-learn's Lloyd core directly, on
        # data centred once (unsup's KMeans would validate and centre each part).
        lloyd = self.method == "bisecting" and metric.lloyd
        self._lloyd = _LloydData(X) if lloyd else None

        t_fit = time.perf_counter()
        try:
            self._grow(X, n if self.compute_full_tree else self.n_clusters)
            self._finish(X)
            if hasattr(self, "cluster_centers_"):
                self.cluster_centers_ = self.cluster_centers_.astype(X_in.dtype, copy=False)
        finally:
            # a copy of the data: not part of the fitted state
            self._lloyd = None
        self._log(
            f"{len(self._splits)} splits in {time.perf_counter() - t_fit:.2f} s; "
            f"{self.n_clusters} clusters, inertia {self.inertia_:.6g}"
        )
        return self

    def _grow(self, X, n_leaves):
        """Split clusters, the chosen one first, until there are ``n_leaves`` (or only singletons)."""
        n = X.shape[0]
        root = np.arange(n)
        self._members = [root]          # samples of each node (None once split)
        self._parent = [-1]
        self._paths = [()]              # sides taken from the root (0 left, 1 right): depth-first order
        self._created = [-1]            # split that made the node (-1: root)
        self._sizes = [n]
        self._splits = []               # (parent, left, right), in order
        self._split_costs = []
        self._n_iter = []
        if self._lloyd is not None:
            centre, cost = self._lloyd.root_centre, self._lloyd.root_cost
            self._centres = [centre]
            self._costs = [cost]
        elif self.method == "bisecting":
            centre, cost = self._centre_cost(X, root)
            self._centres = [centre]
            self._costs = [cost]
        else:
            self._centres = [None]
            self._costs = [np.inf]      # a diameter, known once computed
        heap = []
        self._push(heap, 0)
        leaves = 1
        while leaves < n_leaves and heap:
            *_, v = heapq.heappop(heap)
            t0 = time.perf_counter()
            left, right = (self._bisect if self.method == "bisecting" else self._diana)(X, v)
            self._log(
                f"split {len(self._splits) - 1}: cluster of {self._sizes[v]} samples "
                f"(cost {self._split_costs[-1]:.6g}) into {self._sizes[left]} + "
                f"{self._sizes[right]} in {time.perf_counter() - t0:.3f} s"
            )
            leaves += 1
            self._push(heap, left)
            self._push(heap, right)

    def _push(self, heap, v):
        if self._sizes[v] < 2:
            return
        if self.method == "bisecting" and self.bisecting_strategy == "largest_cluster":
            key = -self._sizes[v]
        else:
            key = -self._costs[v]
        # bisecting: ties go to the leaf first in depth-first order, as BisectingKMeans's
        # scan of its leaves; diana: to the cluster made first.
        order = self._paths[v] if self.method == "bisecting" else ()
        heapq.heappush(heap, (key, order, v))

    def _add_children(self, v, parts, centres, costs, cost_v):
        """Record the split of node ``v`` into ``parts`` (sample index arrays)."""
        s = len(self._splits)
        ids = []
        for part, centre, cost in zip(parts, centres, costs):
            ids.append(len(self._members))
            self._members.append(part)
            self._parent.append(v)
            self._paths.append(self._paths[v] + (len(ids) - 1,))
            self._created.append(s)
            self._sizes.append(len(part))
            self._centres.append(centre)
            self._costs.append(cost)
        self._members[v] = None
        self._splits.append((v, ids[0], ids[1]))
        self._split_costs.append(float(cost_v))
        return ids

    def _point_costs(self, Xs, centres, labels):
        """The k-means cost of each row of ``Xs`` to its centre ``centres[labels]``.

        Squared euclidean costs (``lloyd`` metrics) are summed in numpy: the
        registry's large blocks go through torch, whose OpenMP threads, still
        spinning after the call, would slow scikit-learn's OpenMP Lloyd step
        that comes next.
        """
        cost = self._metric.cost()
        if self._metric.lloyd:
            diff = Xs - centres[labels]
            return np.einsum("ij,ij->i", diff, diff)
        out = np.empty(Xs.shape[0])
        for start, block in _iter_blocks(Xs, centres, cost):
            out[start : start + len(block)] = block[np.arange(len(block)), labels[start : start + len(block)]]
        return out

    def _centre_cost(self, X, idx):
        """The centre of the samples ``idx`` (the metric's rule) and their k-means cost to it."""
        Xs = X[idx]
        labels = np.zeros(len(idx), dtype=np.intp)
        centre = compute_centres(Xs, labels, 1, metric=self._metric)
        return centre[0], float(self._point_costs(Xs, centre, labels).sum())

    def _bisect(self, X, v):
        if self._lloyd is not None:
            return self._bisect_lloyd(X, v)
        idx = self._members[v]
        Xs = X[idx]
        shared = ("metric", "metric_params", "init", "n_init", "max_iter", "tol")
        km = _Bisection(n_clusters=2, random_state=self._random_state, **{p: getattr(self, p) for p in shared})
        # A small cluster fills few of scikit-learn's 256-row chunks: more
        # OpenMP threads would mostly wait at the barriers (badly so on a busy
        # machine).
        if len(idx) < _SINGLE_THREAD_ROWS:
            limit = single_threaded("openmp")
        else:
            limit = contextlib.nullcontext()
        # X was validated by fit: KMeans need not scan each part for NaN again.
        with warnings.catch_warnings(), limit, config_context(assume_finite=True):
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = km.fit(Xs).labels_
        self._n_iter.append(km.n_iter_)
        if labels.min() == labels.max():  # all samples alike: split one off, at no gain
            labels = np.zeros(len(idx), dtype=np.intp)
            labels[0] = 1
            centres = np.vstack([_dense_row(Xs, 0), _dense_row(Xs, 0)])
            costs = [self._costs[v], 0.0]
        else:
            centres = km.cluster_centers_
            if self._metric.lloyd:
                # KMeans's inertia is the sum of both parts' SSE: sum the smaller part only.
                small = int(np.count_nonzero(labels == 1) < np.count_nonzero(labels == 0))
                diff = Xs[labels == small] - centres[small]
                costs = [0.0, 0.0]
                costs[small] = float(np.einsum("ij,ij->", diff, diff))
                costs[1 - small] = max(float(km.inertia_) - costs[small], 0.0)
            else:
                costs = list(np.bincount(labels, weights=self._point_costs(Xs, centres, labels), minlength=2))
        parts = [idx[labels == 0], idx[labels == 1]]
        return self._add_children(v, parts, centres, costs, self._costs[v])

    def _bisect_lloyd(self, X, v):
        """Bisect node ``v`` (squared euclidean) as ``BisectingKMeans._bisect`` does.

        scikit-learn's initialisation (``init``, drawing from the same random
        stream) and Lloyd core run on the rows of the data centred once per
        fit; ``tol`` goes to the core unscaled (see :class:`_Bisection`). Of
        ``n_init`` runs the one of least inertia is kept, by unsup's KMeans rule.
        """
        data = self._lloyd
        idx = self._members[v]
        m = len(idx)
        Xs = data.Xc[idx]
        norms = data.sq_norms[idx]
        w = data.weights[:m]
        # A small cluster fills few of scikit-learn's 256-row chunks: more
        # OpenMP threads would mostly wait at the barriers.
        n_threads = 1 if m < _SINGLE_THREAD_ROWS else data.n_threads
        rs = self._random_state
        best = None
        for _ in range(self.n_init):
            if self.init == "k-means++":
                centres_init, _ = kmeans_plusplus(Xs, 2, self._metric, w, rs, x_squared_norms=norms)
            else:
                centres_init = Xs[rs.choice(m, size=2, replace=False, p=w / w.sum())]
                if sp.issparse(centres_init):
                    centres_init = centres_init.toarray()
            run = lloyd(
                Xs, w, centres_init, max_iter=self.max_iter, verbose=False,
                tol=float(self.tol), n_threads=n_threads,
            )
            if best is None or (run.inertia < best.inertia and not is_same_clustering(run.labels, best.labels, 2)):
                best = run
        labels, inertia, centres, n_iter = best
        self._n_iter.append(n_iter)
        sizes = np.bincount(labels, minlength=2)
        if sizes[0] == 0 or sizes[1] == 0:  # all samples alike: split one off, at no gain
            labels = np.zeros(m, dtype=np.int32)
            labels[0] = 1
            centres = np.vstack([_dense_row(X, idx[0]), _dense_row(X, idx[0])])
            costs = [self._costs[v], 0.0]
        else:
            # The inertia is the sum of both parts' SSE: sum the smaller part only.
            small = int(sizes[1] < sizes[0])
            costs = [0.0, 0.0]
            costs[small] = sse(Xs, w, centres, labels, n_threads, single_label=small)
            costs[1 - small] = max(float(inertia) - costs[small], 0.0)
            centres = centres + data.mean
        ones = labels.astype(bool)
        return self._add_children(v, [idx[~ones], idx[ones]], centres, costs, self._costs[v])

    def _distance_matrix(self, X, idx):
        m = len(idx)
        needed = 2 * 8 * m * m
        if needed > self._budget:
            where = (
                f"memory_budget={self.memory_budget} MiB" if self.memory_budget is not None
                else f"half the available memory ({format_bytes(self._budget)})"
            )
            raise MemoryError(
                f"DivisiveClustering(method='diana') splits a cluster of {m} samples through its "
                f"{m}x{m} distance matrix and its parts' ({needed} bytes, {format_bytes(needed)}), "
                f"more than {where}. Use method='bisecting' (memory O(n d)), or raise memory_budget."
            )
        if self._metric is None:
            return X[np.ix_(idx, idx)]
        return pairwise_distances(X[idx], metric=self._metric).astype(np.float64, copy=False)

    def _diana(self, X, v):
        idx = self._members[v]
        D = self._distance_matrix(X, idx)
        diameter = float(D.max())
        splinter = diana_split(D)
        self._n_iter.append(int(splinter.sum()))
        rest = ~splinter
        costs = [
            float(D[np.ix_(rest, rest)].max()) if rest.sum() > 1 else 0.0,
            float(D[np.ix_(splinter, splinter)].max()) if splinter.sum() > 1 else 0.0,
        ]
        self._costs[v] = diameter
        return self._add_children(v, [idx[rest], idx[splinter]], [None, None], costs, diameter)

    # ------------------------------------------------------------- results
    def _nodes_at(self, n_splits=None, threshold=None):
        """Node of every final leaf's cluster after the first ``n_splits`` splits (or at ``threshold``)."""
        leaves = np.array([v for v, m in enumerate(self._members) if m is not None], dtype=np.intp)
        parent = np.asarray(self._parent, dtype=np.intp)
        created = np.asarray(self._created, dtype=np.intp)
        heights = np.full(len(parent), -np.inf)
        for s, (p, _, _) in enumerate(self._splits):
            heights[p] = self._heights[s]
        cur = leaves.copy()
        while True:
            p = parent[cur]
            if n_splits is not None:
                up = created[cur] >= n_splits
            else:
                up = (p >= 0) & (heights[np.maximum(p, 0)] < threshold)
            if not up.any():
                return leaves, cur
            cur = np.where(up, p, cur)

    def _labels_for(self, n_splits=None, threshold=None):
        leaves, nodes = self._nodes_at(n_splits, threshold)
        node_of_leaf = np.empty(len(self._members), dtype=np.intp)
        node_of_leaf[leaves] = nodes
        labels = _number_by_first_appearance(node_of_leaf[self._leaf_of_sample])
        # the node heading each label
        heads = np.empty(labels.max() + 1, dtype=np.intp)
        heads[labels] = node_of_leaf[self._leaf_of_sample]
        return labels, heads

    def _finish(self, X):
        n = X.shape[0]
        splits = self._splits
        # Heights: the cost of each split cluster, raised to the largest height below it.
        heights = np.asarray(self._split_costs, dtype=np.float64)
        split_of = {p: s for s, (p, _, _) in enumerate(splits)}
        for s in range(len(splits) - 1, -1, -1):
            for child in splits[s][1:]:
                if child in split_of:
                    heights[s] = max(heights[s], heights[split_of[child]])
        self._heights = heights
        leaf_of_sample = np.empty(n, dtype=np.intp)
        for v, members in enumerate(self._members):
            if members is not None:
                leaf_of_sample[members] = v
        self._leaf_of_sample = leaf_of_sample
        Z, _ = linkage_from_splits(n, self._members, splits, heights)
        self.linkage_matrix_ = Z
        self.children_ = Z[:, :2].astype(np.intp)
        self.distances_ = Z[:, 2].copy()
        self.n_leaves_ = n
        self.n_iter_ = np.asarray(self._n_iter, dtype=np.intp)

        labels, heads = self._labels_for(n_splits=self.n_clusters - 1)
        self.labels_ = labels
        self._heads = heads
        k = len(heads)
        metric = self._metric
        if metric is None:
            medoids = np.empty(k, dtype=np.intp)
            inertia = 0.0
            for j in range(k):
                idx = np.flatnonzero(labels == j)
                sub = X[np.ix_(idx, idx)]
                best = int(np.argmin(sub.sum(axis=1)))
                medoids[j] = idx[best]
                inertia += float(sub[best].sum())
            self.medoid_indices_ = medoids
            self.inertia_ = inertia
        else:
            if self.method == "bisecting":
                centres = np.vstack([self._centres[h] for h in heads])
            else:
                centres = compute_centres(X, labels, k, metric=metric)
            self.cluster_centers_ = centres
            if self._lloyd is not None:
                data = self._lloyd
                self.inertia_ = sse(data.Xc, data.weights, centres - data.mean, labels, data.n_threads)
            else:
                self.inertia_ = float(self._point_costs(X, centres, labels).sum())
        self._predict_state = self._descent_state(k, heads, X)
        if metric is not None:
            self._fit_X = X if self.method == "diana" else None
        else:
            self._fit_X = None

    def _descent_state(self, k, heads, X):
        """What ``predict`` needs: the splits above the cut and a score per side."""
        n_splits = k - 1
        splits = self._splits[:n_splits]
        state = {"splits": splits, "heads": heads}
        if self.method == "bisecting":
            nodes = sorted({c for _, l, r in splits for c in (l, r)})
            state["nodes"] = np.asarray(nodes, dtype=np.intp)
            state["centres"] = (
                np.vstack([self._centres[v] for v in nodes]).astype(np.float64, copy=False)
                if nodes else np.empty((0, X.shape[1]))
            )
            return state
        # diana: which cut clusters lie under each side of each split
        parent = np.asarray(self._parent, dtype=np.intp)
        nodes = sorted({c for _, l, r in splits for c in (l, r)})
        col = {v: j for j, v in enumerate(nodes)}
        M = np.zeros((k, len(nodes)))
        for j, h in enumerate(heads):
            v = h
            while v >= 0:
                if v in col:
                    M[j, col[v]] = 1.0
                v = parent[v]
        state["nodes"] = np.asarray(nodes, dtype=np.intp)
        state["membership"] = M
        state["sizes"] = np.bincount(self.labels_, minlength=k).astype(np.float64) @ M
        return state

    # ------------------------------------------------------------ cut / predict
    def cut(self, n_clusters=None, distance_threshold=None):
        """Labels of the training samples for another cut of the fitted tree, without refitting.

        Parameters
        ----------
        n_clusters : int, default=None
            The clusters after the first ``n_clusters - 1`` splits. At most
            the fitted ``n_clusters`` unless ``compute_full_tree=True``.
        distance_threshold : float, default=None
            The clusters after every split at height ``>= distance_threshold``.
            Exactly one of the two is given.

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            Numbered in order of first appearance (as ``labels_``).
        """
        check_is_fitted(self)
        if (n_clusters is None) == (distance_threshold is None):
            raise ValueError(
                "Exactly one of n_clusters and distance_threshold has to be set, and the "
                "other needs to be None."
            )
        available = len(self._splits) + 1
        if n_clusters is not None:
            if isinstance(n_clusters, bool) or not isinstance(n_clusters, Integral) or n_clusters < 1:
                raise ValueError(f"n_clusters must be an int >= 1; got {n_clusters!r}.")
            if n_clusters > available:
                raise ValueError(
                    f"The fitted tree has {available} clusters at most (it stops at "
                    f"n_clusters={self.n_clusters}); got n_clusters={n_clusters}. Fit with "
                    "compute_full_tree=True to cut anywhere."
                )
            return self._labels_for(n_splits=int(n_clusters) - 1)[0]
        if isinstance(distance_threshold, bool) or not isinstance(distance_threshold, Real) or not (
            distance_threshold >= 0
        ):
            raise ValueError(f"distance_threshold must be a float >= 0; got {distance_threshold!r}.")
        open_costs = [
            self._costs[v] for v, m in enumerate(self._members) if m is not None and len(m) > 1
        ]
        if open_costs and max(open_costs) >= distance_threshold:
            raise ValueError(
                f"A cut at {distance_threshold} needs splits below the fitted tree (a final "
                f"cluster costs {max(open_costs):.6g}). Fit with compute_full_tree=True, or cut "
                "higher."
            )
        return self._labels_for(threshold=distance_threshold)[0]

    def predict(self, X):
        """Assign new samples by descending the tree.

        At each split above the fitted clusters a sample goes to the side
        whose centre costs less (bisecting: the k-means cost of the metric)
        or whose members are nearer on average (diana, the splinter
        criterion). Ties go to the first side.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), or (n_queries, n_samples) if metric="precomputed"
            New samples (with ``"precomputed"``: their distances to the
            training samples).

        Returns
        -------
        labels : ndarray of shape (n_queries,)
        """
        check_is_fitted(self)
        metric = self._metric
        X = validate_data(
            self, X, reset=False, dtype=[np.float64, np.float32],
            accept_sparse=self._accept_sparse(metric), accept_large_sparse=False,
        )
        X = X.astype(np.float64, copy=False)
        self._check_query_distances(X)
        state = self._predict_state
        m = X.shape[0]
        nodes = state["nodes"]
        if not len(nodes):
            return np.zeros(m, dtype=np.intp)
        if self.method == "bisecting":
            scores = np.empty((m, len(nodes)))
            for start, block in _iter_blocks(X, state["centres"], metric.cost()):
                scores[start : start + len(block)] = block
        else:
            k = len(state["heads"])
            onehot = sp.csr_matrix(
                (np.ones(len(self.labels_)), (np.arange(len(self.labels_)), self.labels_)),
                shape=(len(self.labels_), k),
            )
            sums = np.empty((m, k))
            for start, D in _iter_query_blocks(X, self._fit_X, metric):
                sums[start : start + len(D)] = np.asarray(D @ onehot)
            scores = (sums @ state["membership"]) / state["sizes"]
        col = {int(v): j for j, v in enumerate(nodes)}
        cur = np.zeros(m, dtype=np.intp)
        for p, left, right in state["splits"]:
            at = cur == p
            if not at.any():
                continue
            go_left = scores[at, col[left]] <= scores[at, col[right]]
            cur[at] = np.where(go_left, left, right)
        label_of_head = np.full(len(self._members), -1, dtype=np.intp)
        label_of_head[state["heads"]] = np.arange(len(state["heads"]))
        return label_of_head[cur]
