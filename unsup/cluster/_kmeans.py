"""K-means with pluggable metrics.

Design constraints
------------------
- The centre update matches the metric (see :mod:`unsup.metrics._centres`):
  Lloyd for (squared) euclidean, k-medians for manhattan, spherical k-means
  for cosine, k-modes for hamming, alternate k-medoids for the rest.
- Euclidean reuses scikit-learn's own Lloyd iteration (same preprocessing,
  same k-means++ random stream), so given the same initial centres or the same
  ``random_state`` the partition and inertia equal ``sklearn.cluster.KMeans``'s.
- The other metrics run one Python-level loop over chunked kernels: memory is
  bounded by scikit-learn's ``working_memory`` whatever ``n_samples``.
- Mini-batch training (``batch_size`` or ``partial_fit``) keeps sufficient
  statistics where the rule has them (sums for the means, value counts for the
  modes), so the streamed centre is the exact rule over the points assigned so
  far; median and medoid centres, which have none, are updated approximately
  (documented in :meth:`KMeans.partial_fit`).
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils.extmath import row_norms
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted, validate_data

from unsup._dask import dask_support
from unsup._sklearn_adapter import (
    Interval,
    StrOptions,
    check_sample_weight,
    fit_context,
    is_same_clustering,
    labels_inertia,
    lloyd,
    lloyd_step,
)
from unsup.cluster._metric_param import METRIC_CONSTRAINTS
from unsup.metrics._centres import _RULES, centre_updater, cluster_sums, medoid_index
from unsup.metrics._pairwise import _argmin_min, _iter_blocks
from unsup.metrics._registry import Metric, get_metric, is_precomputed
from unsup.utils._threads import openmp_n_threads, single_threaded
from unsup.utils.validation import upcast_if_overflow

__all__ = ["KMeans"]

_MAX_STREAMED_MODES = 256


def _tolerance(X, tol):
    """scikit-learn's data-dependent tolerance: ``tol`` times the mean feature variance."""
    if tol == 0:
        return 0.0
    variances = mean_variance_axis(X, axis=0)[1] if sp.issparse(X) else np.var(X, axis=0)
    return float(np.mean(variances) * tol)


def _rows(X, indices):
    """The rows of ``X`` at ``indices`` as a dense array (centres are always dense)."""
    R = X[indices]
    return R.toarray() if sp.issparse(R) else R.copy()


def kmeans_plusplus(X, n_clusters, metric: Metric, sample_weight, random_state, *, x_squared_norms=None):
    """k-means++ seeding in the metric's k-means cost: the one seeding of every estimator.

    A ``lloyd`` metric runs scikit-learn's own ``kmeans_plusplus`` (the same
    random stream, so the same seeds as ``sklearn.cluster.KMeans``; it takes
    ``x_squared_norms``); the others :func:`_greedy_kmeans_plusplus` in
    ``metric.cost()``, on the rows as :meth:`Metric.prepare` gives them.
    Prior validation of data is assumed.

    Parameters
    ----------
    X : {ndarray, sparse matrix} of shape (n_samples, n_features)
    n_clusters : int
    metric : Metric
    sample_weight : ndarray of shape (n_samples,) or None
        None: unit weights.
    random_state : RandomState instance
    x_squared_norms : ndarray of shape (n_samples,), default=None
        Squared row norms, for the ``lloyd`` path (computed when None).

    Returns
    -------
    centres : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
    """
    if metric.lloyd:
        from sklearn.cluster import kmeans_plusplus as sk_kmeans_plusplus  # on first use: not at import unsup

        return sk_kmeans_plusplus(
            X, n_clusters, sample_weight=sample_weight, x_squared_norms=x_squared_norms,
            random_state=random_state,
        )
    w = np.ones(X.shape[0]) if sample_weight is None else sample_weight
    # in the metric's working coordinates (cosine: unit rows once, not per candidate batch)
    _, indices = _greedy_kmeans_plusplus(metric.prepare(X), n_clusters, metric.prepared_cost(), w, random_state)
    return _rows(X, indices), indices


def _greedy_kmeans_plusplus(X, n_clusters, cost: Metric, sample_weight, random_state, n_local_trials=None):
    """k-means++ seeding in any metric: sample in proportion to the cost to the nearest centre.

    scikit-learn's greedy variant (``2 + log k`` candidates, keep the one that
    lowers the potential most), with the metric's k-means cost in place of the
    squared euclidean distance. Prior validation of data is assumed.

    Returns
    -------
    centres : ndarray of shape (n_clusters, n_features)
    indices : ndarray of shape (n_clusters,)
    """
    n_samples = X.shape[0]
    if n_local_trials is None:
        n_local_trials = 2 + int(np.log(n_clusters))
    w = sample_weight
    indices = np.empty(n_clusters, dtype=np.intp)
    indices[0] = random_state.choice(n_samples, p=w / w.sum())
    closest = cost._block(X[indices[[0]]], X)[0].astype(np.float64)
    potential = closest @ w
    for c in range(1, n_clusters):
        rand_vals = random_state.uniform(size=n_local_trials) * potential
        candidates = np.searchsorted(np.cumsum(w * closest), rand_vals)
        np.clip(candidates, None, n_samples - 1, out=candidates)
        to_candidates = np.minimum(closest, cost._block(X[candidates], X))
        potentials = to_candidates @ w
        best = int(np.argmin(potentials))
        potential, closest, indices[c] = potentials[best], to_candidates[best], candidates[best]
    return _rows(X, indices), indices


def _kmeans_parallel(estimator, X, sample_weight, random_state):
    """k-means|| seeding of an in-memory ``X`` (one block of the dask engine's algorithm)."""
    from unsup._dask import kmeans_parallel_init

    if sp.issparse(X):
        X = X.toarray()
    spec = ("raw", np.zeros(X.shape[1], dtype=X.dtype), X.dtype, estimator.metric, dict(estimator.metric_params or {}))
    return kmeans_parallel_init(
        [(X, sample_weight, 0)], spec, estimator.n_clusters, random_state,
        metric=estimator.metric, metric_params=estimator.metric_params,
    )


def _relocate_empty(centres, X, sample_weight, mins):
    """Move the centres of empty clusters (NaN rows) onto the points farthest from theirs."""
    empty = np.flatnonzero(np.isnan(centres).any(axis=1))
    if len(empty):
        cost = np.where(sample_weight > 0, mins, -np.inf)
        far = np.argsort(cost, kind="stable")[::-1][: len(empty)]
        centres[empty] = X[far]
    return centres


def _kmeans_single_generic(X, sample_weight, centres, metric, *, max_iter, tol, verbose, cost=None):
    """Alternate assignment and centre update in any metric until stable.

    Prior validation of data is assumed. ``cost`` is the metric whose values
    are summed (defaults to ``metric.cost()``); the centre update is the
    metric's rule. Convergence as scikit-learn's Lloyd: labels unchanged
    (strict), or a total squared centre shift within ``tol``.

    Returns
    -------
    labels, inertia, centres, n_iter
    """
    cost = metric.cost() if cost is None else cost
    k = len(centres)
    update = centre_updater(metric, X, sample_weight, k)
    labels_old = None
    strict = False
    for i in range(max_iter):
        labels, mins = _argmin_min(X, centres, cost)
        new = update(labels)
        new = _relocate_empty(new, X, sample_weight, mins)
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if verbose:
            print(f"Iteration {i}, inertia {float(mins @ sample_weight)}.")
        if labels_old is not None and np.array_equal(labels, labels_old):
            if verbose:
                print(f"Converged at iteration {i}: strict convergence.")
            strict = True
            break
        if shift <= tol:
            if verbose:
                print(f"Converged at iteration {i}: center shift {shift} within tolerance {tol}.")
            break
        labels_old = labels
    if not strict:  # so that the labels match the final centres
        labels, mins = _argmin_min(X, centres, cost)
    return labels.astype(np.int32), float(mins @ sample_weight), centres, i + 1


def _kmeans_single_spherical(Xn, sample_weight, centres, metric, *, max_iter, tol, verbose):
    """Spherical k-means on unit rows: scikit-learn's fused Lloyd step, then renormalise.

    For unit vectors the nearest centre in euclidean distance is the one of
    least cosine distance, so one Lloyd iteration followed by rescaling the
    new centres to unit length (``metric.prepare``, a ``unit_rows`` metric)
    is exactly one spherical k-means iteration. Prior validation of data is
    assumed: ``Xn`` has unit (or zero) rows and ``centres`` unit rows.
    Returns labels, inertia (sum of cosine distances), centres, n_iter.
    """
    n_threads = openmp_n_threads()
    centres = np.ascontiguousarray(centres, dtype=Xn.dtype)
    labels_old = np.full(Xn.shape[0], -1, dtype=np.int32)
    strict = False
    with single_threaded("blas"):  # the step runs BLAS in each OpenMP thread
        for i in range(max_iter):
            labels, new = lloyd_step(Xn, sample_weight, centres, n_threads)
            new = metric.prepare(new)
            total_shift = float(((new - centres) ** 2).sum())
            centres = new
            if verbose:
                print(f"Iteration {i}, center shift {total_shift}.")
            if np.array_equal(labels, labels_old):
                if verbose:
                    print(f"Converged at iteration {i}: strict convergence.")
                strict = True
                break
            if total_shift <= tol:
                if verbose:
                    print(f"Converged at iteration {i}: center shift {total_shift} within tolerance {tol}.")
                break
            labels_old = labels
    # Cosine distances to the final centres (and, without strict convergence,
    # the labels that match them).
    final_labels, mins = _argmin_min(Xn, centres, metric.prepared_cost())
    if not strict:
        labels = final_labels
    return labels.astype(np.int32), float(mins @ sample_weight), centres, i + 1


@dask_support
class KMeans(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ClusterMixin, BaseEstimator):
    """K-means clustering in any metric, the centre update matching the metric.

    =========================  ==============================  ===============
    metric                     centre of a cluster             k-means becomes
    =========================  ==============================  ===============
    euclidean, sqeuclidean     mean                            Lloyd
    manhattan (cityblock, l1)  coordinate-wise median          k-medians
    cosine                     mean of unit vectors, unit      spherical
    hamming                    coordinate-wise mode            k-modes
    chebyshev, minkowski,      medoid (member with least       k-medoids
    callable                   total distance)                 (alternate)
    =========================  ==============================  ===============

    The inertia is the sum of the k-means cost: squared distances for
    euclidean (as scikit-learn), the distances themselves for the other
    metrics (the quantity their centre minimises). With the euclidean metric,
    given the same initial centres (or the same ``random_state``), the labels
    and inertia equal :class:`sklearn.cluster.KMeans`'s.

    Parameters
    ----------
    n_clusters : int, default=8
        The number of clusters.
    metric : str or callable, default="euclidean"
        A name of :data:`unsup.metrics.METRIC_NAMES` or a callable
        ``f(a, b) -> float`` (slow: one call per pair; medoid centres).
    metric_params : dict, default=None
        Parameters of the metric, e.g. ``{"p": 3}`` for minkowski.
    init : {"k-means++", "k-means||", "random"}, callable or array-like of shape (n_clusters, n_features), default="k-means++"
        ``"k-means++"`` seeds in the chosen metric (sampling in proportion to
        the k-means cost to the nearest centre already chosen);
        ``"k-means||"`` is its scalable form (Bahmani et al. 2012: a few
        rounds of oversampling, candidates weighted by the sample weight of
        their nearest rows, reclustered by k-means++), the seeding of fits on
        dask arrays, where ``"k-means++"`` also runs k-means||; ``"random"``
        picks ``n_clusters`` rows at random (in proportion to
        ``sample_weight``); a callable is called as
        ``init(X, n_clusters, random_state=random_state)``.
    n_init : "auto" or int, default="auto"
        Runs from different seeds; the one with the least inertia is kept.
        ``"auto"``: 10 for ``init="random"`` or a callable, 1 for
        ``"k-means++"`` or an array (as scikit-learn).
    max_iter : int, default=300
        Maximum iterations of one run (epochs over the data when
        ``batch_size`` is set).
    tol : float, default=1e-4
        Convergence when the total squared centre shift is within ``tol``
        times the mean variance of the features (as scikit-learn).
    batch_size : int, default=None
        ``None``: full-batch iterations. An int: mini-batch k-means, updating
        the centres from shuffled batches of this size (as
        :meth:`partial_fit` does); the labels and inertia are then computed
        on the whole of ``X``.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and the mini-batch shuffling.
    verbose : int, default=0
        Print the inertia at every iteration and the reason for stopping.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        Centres (medians, unit vectors, modes or medoids, by metric), in the
        dtype of ``X`` (float32 is preserved).
    labels_ : ndarray of shape (n_samples,)
        Cluster of each training point (after :meth:`partial_fit`: of the
        last batch).
    inertia_ : float
        Weighted sum of the k-means cost of each point to its centre.
    n_iter_ : int
        Iterations (epochs for mini-batch) of the kept run.
    n_steps_ : int
        Mini-batch updates done (only with ``batch_size`` or ``partial_fit``).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    See Also
    --------
    sklearn.cluster.KMeans : the euclidean oracle.
    unsup.metrics.get_metric : the metric registry.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.cluster import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], dtype=float)
    >>> km = KMeans(n_clusters=2, metric="manhattan", random_state=0).fit(X)
    >>> sorted(km.cluster_centers_.tolist())
    [[1.0, 2.0], [10.0, 2.0]]
    >>> float(km.inertia_)
    8.0
    """

    _parameter_constraints: dict = {
        "n_clusters": [Interval(Integral, 1, None, closed="left")],
        **METRIC_CONSTRAINTS,
        "init": [StrOptions({"k-means++", "k-means||", "random"}), callable, "array-like"],
        "n_init": [StrOptions({"auto"}), Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_clusters=8,
        *,
        metric="euclidean",
        metric_params=None,
        init="k-means++",
        n_init="auto",
        max_iter=300,
        tol=1e-4,
        batch_size=None,
        random_state=None,
        verbose=0,
    ):
        self.n_clusters = n_clusters
        self.metric = metric
        self.metric_params = metric_params
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.batch_size = batch_size
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        try:
            tags.input_tags.sparse = self._get_metric().accepts_sparse
        except (TypeError, ValueError):  # invalid parameters: fit will say so
            tags.input_tags.sparse = False
        return tags

    # ------------------------------------------------------------ validation
    def _get_metric(self) -> Metric:
        if is_precomputed(self.metric):
            raise ValueError(
                "KMeans does not accept metric='precomputed': its centres live in "
                "feature space, so it needs the feature matrix. Pass X with a metric "
                "name or a callable f(a, b) -> float (medoid centres) instead."
            )
        return get_metric(self.metric, **(self.metric_params or {}))

    def _check_data(self, X, *, reset, metric=None):
        # CSR where the metric's kernels take it (euclidean, sqeuclidean, cosine),
        # else scikit-learn's "dense data is required" error.
        metric = self._metric if metric is None else metric
        return validate_data(
            self,
            X,
            dtype=[np.float64, np.float32],
            order="C",
            accept_sparse="csr" if metric.accepts_sparse else False,
            accept_large_sparse=False,
            reset=reset,
        )

    def _check_weights(self, sample_weight, X):
        w = check_sample_weight(sample_weight, X, dtype=X.dtype)
        if np.any(w < 0):
            raise ValueError("Negative values in data passed to `sample_weight`.")
        if not np.any(w > 0):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return w

    def _check_params_vs_input(self, X, sample_weight):
        if X.shape[0] < self.n_clusters:
            raise ValueError(f"n_samples={X.shape[0]} should be >= n_clusters={self.n_clusters}.")
        is_random = isinstance(self.init, str) and self.init == "random"
        if is_random and np.count_nonzero(sample_weight) < self.n_clusters:
            raise ValueError(
                f"init='random' needs at least n_clusters={self.n_clusters} samples "
                f"of positive sample_weight, got {np.count_nonzero(sample_weight)}."
            )
        if self.n_init == "auto":  # as scikit-learn: one run for k-means++ or an array
            self._n_init = 10 if (is_random or callable(self.init)) else 1
        else:
            self._n_init = self.n_init
        if not (isinstance(self.init, str) or callable(self.init)) and self._n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init "
                f"in {type(self).__name__} instead of n_init={self._n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            self._n_init = 1
        self._tol = _tolerance(X, self.tol)

    def _validate_centres(self, centres, X, what="initial centers"):
        centres = check_array(centres, dtype=X.dtype, copy=True, order="C", input_name="init")
        if centres.shape[0] != self.n_clusters:
            raise ValueError(
                f"The shape of the {what} {centres.shape} does not match "
                f"the number of clusters {self.n_clusters}."
            )
        if centres.shape[1] != X.shape[1]:
            raise ValueError(
                f"The shape of the {what} {centres.shape} does not match "
                f"the number of features of the data {X.shape[1]}."
            )
        return centres

    # -------------------------------------------------------- initialisation
    def _init_centres(self, X, sample_weight, metric, random_state, x_squared_norms=None):
        init = self.init
        if isinstance(init, str) and init == "k-means++":
            return kmeans_plusplus(
                X, self.n_clusters, metric, sample_weight, random_state, x_squared_norms=x_squared_norms
            )[0]
        if isinstance(init, str) and init == "k-means||":
            return _kmeans_parallel(self, X, sample_weight, random_state)
        if isinstance(init, str) and init == "random":
            seeds = random_state.choice(
                X.shape[0], size=self.n_clusters, replace=False, p=sample_weight / sample_weight.sum()
            )
            return _rows(X, seeds)
        if callable(init):
            return self._validate_centres(init(X, self.n_clusters, random_state=random_state), X)
        return self._validate_centres(init, X)

    # ------------------------------------------------------------------ fit
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None, sample_weight=None):
        """Compute the clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 is kept as float32.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; integer weights give the same centres as
            repeating rows.

        Returns
        -------
        self : KMeans
            The fitted estimator.
        """
        metric = self._get_metric()
        X_in = self._check_data(X, reset=True, metric=metric)
        X = upcast_if_overflow(X_in)  # float64 where float32 squares would overflow
        sample_weight = self._check_weights(sample_weight, X)
        self._check_params_vs_input(X, sample_weight)
        if not (isinstance(self.init, str) or callable(self.init)):
            self._validate_centres(self.init, X)
        random_state = check_random_state(self.random_state)
        self._metric = metric
        for stale in ("_stream", "n_steps_"):  # a refit forgets earlier streaming
            self.__dict__.pop(stale, None)
        if self.batch_size is not None:
            self._fit_minibatch(X, sample_weight, metric, random_state)
        elif metric.lloyd:
            self._fit_lloyd(X, sample_weight, random_state)
        else:
            self._fit_generic(X, sample_weight, metric, random_state)
        self.cluster_centers_ = self.cluster_centers_.astype(X_in.dtype, copy=False)
        # The weight behind each centre, for partial_fit to continue from.
        self._cluster_weights = np.bincount(self.labels_, weights=sample_weight, minlength=self.n_clusters)
        self._n_features_out = self.n_clusters
        self._warn_if_duplicates()
        return self

    def _keep_best(self, runs):
        """The run with the least inertia (scikit-learn's rule: a permuted equal partition does not win)."""
        best = None
        for labels, inertia, centres, n_iter in runs:
            if best is None or (
                inertia < best[1] and not is_same_clustering(labels, best[0], self.n_clusters)
            ):
                best = (labels, inertia, centres, n_iter)
        self.labels_, self.inertia_, self.cluster_centers_, self.n_iter_ = best
        self.inertia_ = float(self.inertia_)

    def _fit_lloyd(self, X, sample_weight, random_state):
        # Exactly scikit-learn's preprocessing: centre dense data for accuracy
        # (sparse data is left as it is, to stay sparse).
        X_mean = np.zeros(X.shape[1], dtype=X.dtype) if sp.issparse(X) else X.mean(axis=0)
        Xc = X if sp.issparse(X) else X - X_mean
        x_squared_norms = row_norms(Xc, squared=True)
        n_threads = openmp_n_threads()
        init_array = None
        if not (isinstance(self.init, str) or callable(self.init)):
            init_array = self._validate_centres(self.init, X) - X_mean

        def runs():
            for _ in range(self._n_init):
                if init_array is not None:
                    centres = init_array.copy()
                else:
                    centres = self._init_centres(Xc, sample_weight, self._metric, random_state, x_squared_norms)
                if self.verbose:
                    print("Initialization complete")
                yield lloyd(
                    Xc, sample_weight, centres, max_iter=self.max_iter,
                    verbose=self.verbose, tol=self._tol, n_threads=n_threads,
                )

        self._keep_best(runs())
        self.cluster_centers_ = (self.cluster_centers_ + X_mean).astype(X.dtype, copy=False)
        self.labels_ = self.labels_.astype(np.int32, copy=False)

    def _fit_generic(self, X, sample_weight, metric, random_state):
        # The data and cost the loop runs in: unit rows for cosine.
        Xw, cost = metric.prepare(X), metric.prepared_cost()

        def runs():
            for _ in range(self._n_init):
                centres = metric.prepare(self._init_centres(X, sample_weight, metric, random_state))
                if self.verbose:
                    print("Initialization complete")
                if metric.unit_rows:  # spherical k-means
                    yield _kmeans_single_spherical(
                        Xw, sample_weight, centres, metric, max_iter=self.max_iter,
                        tol=self._tol, verbose=self.verbose,
                    )
                    continue
                yield _kmeans_single_generic(
                    Xw, sample_weight, centres, metric, max_iter=self.max_iter,
                    tol=self._tol, verbose=self.verbose, cost=cost,
                )

        self._keep_best(runs())
        self.labels_ = self.labels_.astype(np.int32, copy=False)
        self.cluster_centers_ = self.cluster_centers_.astype(X.dtype, copy=False)

    def _warn_if_duplicates(self):
        distinct = int(np.count_nonzero(np.bincount(self.labels_, minlength=self.n_clusters)))
        if distinct < self.n_clusters:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than "
                f"n_clusters ({self.n_clusters}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=3,
            )

    # ----------------------------------------------------------- mini-batch
    def _fit_minibatch(self, X, sample_weight, metric, random_state):
        n = X.shape[0]
        batch = min(self.batch_size, n)
        best = None
        for _ in range(self._n_init):
            self._init_stream(X, sample_weight, metric, random_state)
            for epoch in range(self.max_iter):
                before = self.cluster_centers_.copy()
                order = random_state.permutation(n)
                for start in range(0, n, batch):
                    idx = order[start : start + batch]
                    self._stream_step(X[idx], sample_weight[idx])
                shift = float(((self.cluster_centers_ - before) ** 2).sum())
                if self.verbose:
                    print(f"Epoch {epoch}: center shift {shift}.")
                if shift <= self._tol:
                    break
            labels, inertia = self._assign(X, sample_weight)
            run = (labels, inertia, self.cluster_centers_.copy(), epoch + 1, self._stream_state())
            if best is None or run[1] < best[1]:
                best = run
        self.labels_, self.inertia_, self.cluster_centers_, self.n_iter_, state = best
        self.labels_ = self.labels_.astype(np.int32, copy=False)
        self._set_stream_state(state)

    def _stream_state(self):
        return {k: v.copy() if isinstance(v, np.ndarray) else v for k, v in self._stream.items()} | {
            "n_steps": self.n_steps_
        }

    def _set_stream_state(self, state):
        self.n_steps_ = state.pop("n_steps")
        self._stream = state

    def _init_stream(self, X, sample_weight, metric, random_state):
        """Initial centres from ``X`` and empty sufficient statistics."""
        centres = self._init_centres(X, sample_weight, metric, random_state).astype(X.dtype)
        self.cluster_centers_ = metric.prepare(centres)
        self.n_steps_ = 0
        self._stream = self._stream_statistics(np.zeros(len(centres)))

    def _stream_statistics(self, weights):
        """Sufficient statistics of centres that stand for ``weights`` points each.

        Zero weights: nothing seen yet. After a full-batch fit, each centre
        stands for the weight of its cluster, so that streaming continues from
        the fit instead of starting over (the modes count the centre's own
        value that many times).
        """
        centres = self.cluster_centers_
        stream = {"weights": weights.astype(np.float64)}
        rule = self._metric.centre_rule
        if rule in ("mean", "normalized_mean"):
            stream["sums"] = centres * stream["weights"][:, None]
        elif rule == "mode":
            values = np.unique(centres) if weights.any() else np.empty(0, dtype=centres.dtype)
            counts = np.zeros(centres.shape + (len(values),))
            if len(values):
                codes = np.searchsorted(values, centres)
                k, d = centres.shape
                counts[np.arange(k)[:, None], np.arange(d), codes] = stream["weights"][:, None]
            stream["values"], stream["counts"] = values, counts
        return stream

    def _stream_step(self, X, w):
        """One mini-batch update of the centres from the batch ``X`` (weights ``w``)."""
        metric = self._metric
        k = self.n_clusters
        Xp = metric.prepare(upcast_if_overflow(X))  # unit rows for cosine, once for the labels and the sums
        labels, _ = self._assign(X, prepared=Xp)
        weights = self._stream["weights"]
        batch_weights = np.bincount(labels, weights=w, minlength=k)
        rule = metric.centre_rule
        centres = self.cluster_centers_
        hit = batch_weights > 0
        if rule in ("mean", "normalized_mean"):
            sums = self._stream["sums"]
            sums += cluster_sums(Xp, labels, w, k)[0]
            centres[hit] = metric.prepare(sums[hit] / (weights[hit] + batch_weights[hit])[:, None])
        elif rule == "mode":
            self._stream_modes(X, labels, w)
        elif rule == "median":
            batch = _RULES["median"](X, labels, w, k, metric, None)
            frac = (batch_weights[hit] / (weights[hit] + batch_weights[hit]))[:, None]
            centres[hit] += frac * (batch[hit] - centres[hit])
        else:  # medoid: the candidate (old medoid or a batch member) of least cost
            cost = metric.cost()
            for j in np.flatnonzero(hit):
                members = X[labels == j]
                mw = w[labels == j]
                cand = np.vstack([centres[j : j + 1], members])
                cand_w = np.concatenate([[weights[j]], mw])
                centres[j] = cand[medoid_index(cand, cand_w, cost)]
        weights += batch_weights
        self.n_steps_ += 1
        return labels

    def _stream_modes(self, X, labels, w):
        """Exact streamed modes: weighted value counts per (cluster, feature)."""
        values, counts = self._stream["values"], self._stream["counts"]
        new_values = np.union1d(values, np.unique(X))
        if len(new_values) > _MAX_STREAMED_MODES:
            raise ValueError(
                f"Mini-batch k-means with metric='hamming' streams exact modes of "
                f"categorical features, at most {_MAX_STREAMED_MODES} distinct values; "
                f"the data so far has {len(new_values)}. Use full-batch fit."
            )
        if len(new_values) > len(values):
            grown = np.zeros(counts.shape[:2] + (len(new_values),))
            grown[:, :, np.searchsorted(new_values, values)] = counts
            values, counts = new_values, grown
        k, d, nv = counts.shape
        codes = np.searchsorted(values, X)
        flat = ((labels[:, None] * d + np.arange(d)) * nv + codes).ravel()
        counts += np.bincount(flat, weights=np.repeat(w, d), minlength=k * d * nv).reshape(k, d, nv)
        seen = counts.sum(axis=2)[:, 0] > 0
        self.cluster_centers_[seen] = values[counts[seen].argmax(axis=2)]
        self._stream["values"], self._stream["counts"] = values, counts

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None, sample_weight=None):
        """Update the centres with one mini-batch (streaming k-means).

        The first call initialises the centres from this batch (which needs at
        least ``n_clusters`` rows); after a full-batch :meth:`fit`, streaming
        continues from the fitted centres, each standing for its cluster's
        total sample weight. Centres are then exact running rules over
        all points assigned so far for the mean, normalised-mean (cosine) and
        mode (hamming) rules; median centres move towards the batch median by
        the batch's share of the cluster's weight, and a medoid is replaced
        by whichever of itself or the batch's members costs least (the old
        medoid weighted by the cluster's past weight): approximations, since
        neither rule has a finite summary of past points.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : KMeans
            ``labels_`` and ``inertia_`` describe this batch.
        """
        first = not hasattr(self, "cluster_centers_")
        metric = self._get_metric() if first else self._metric
        X = self._check_data(X, reset=first, metric=metric)
        sample_weight = self._check_weights(sample_weight, X)
        if first:
            self._check_params_vs_input(X, sample_weight)
            self._random_state = check_random_state(self.random_state)
            self._metric = metric
            self._init_stream(X, sample_weight, metric, self._random_state)
            self._n_features_out = self.n_clusters
            self.n_iter_ = 0
        else:
            if not hasattr(self, "_stream"):  # continue from a full-batch fit
                self._stream = self._stream_statistics(self._cluster_weights)
                self.n_steps_ = 0
            X = X.astype(self.cluster_centers_.dtype, copy=False)
        self._stream_step(X, sample_weight)
        self.n_iter_ += 1
        labels, self.inertia_ = self._assign(X, sample_weight)
        self.labels_ = labels.astype(np.int32, copy=False)
        return self

    # ------------------------------------------------------------- inference
    def _assign(self, X, sample_weight=None, *, prepared=None):
        """Nearest centre of each row (fitted dtype) and the weighted sum of the costs.

        ``prepared``: ``metric.prepare`` of ``X`` (upcast where it could overflow), when the caller has it.
        """
        metric = self._metric
        X = upcast_if_overflow(X)
        centres = self.cluster_centers_.astype(X.dtype, copy=False)
        w = np.ones(X.shape[0], dtype=X.dtype) if sample_weight is None else sample_weight
        if metric.lloyd:  # scikit-learn's own labelling, for parity
            return labels_inertia(X, w.astype(X.dtype, copy=False), centres, openmp_n_threads())
        labels, mins = _argmin_min(metric.prepare(X) if prepared is None else prepared, centres, metric.prepared_cost())
        return labels, float(mins @ w)

    def _check_inference_data(self, X):
        check_is_fitted(self)
        X = self._check_data(X, reset=False)
        return X.astype(self.cluster_centers_.dtype, copy=False)

    def predict(self, X):
        """Index of the nearest centre (in the k-means cost of the metric) for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        X = self._check_inference_data(X)
        return self._assign(X)[0].astype(np.int32, copy=False)

    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit and return ``labels_`` (equal to ``fit(X).predict(X)``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return self.fit(X, sample_weight=sample_weight).labels_

    def transform(self, X):
        """Distances from each sample to each centre, in the chosen metric.

        Euclidean gives distances (not squared), as scikit-learn's ``KMeans``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_clusters)
        """
        X = self._check_inference_data(X)
        D = np.empty((X.shape[0], self.n_clusters), dtype=X.dtype)
        Xc = upcast_if_overflow(X)  # distances computed in float64 if float32 would overflow
        centres = self.cluster_centers_.astype(Xc.dtype, copy=False)
        for start, block in _iter_blocks(Xc, centres, self._metric):
            D[start : start + len(block)] = block
        return D

    def fit_transform(self, X, y=None, sample_weight=None):
        """Fit, then return the distances to the centres.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_clusters)
        """
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X, y=None, sample_weight=None):
        """Opposite of the inertia of ``X`` on the fitted centres (higher is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
        """
        X = self._check_inference_data(X)
        sample_weight = check_sample_weight(sample_weight, X, dtype=X.dtype)
        return -self._assign(X, sample_weight)[1]
