"""Gaussian mixture: soft clustering by EM, equal to scikit-learn's, batched, with ``sample_weight``.

Design constraints
------------------
- Given the same initial parameters, every EM iteration equals
  :class:`sklearn.mixture.GaussianMixture`'s to float64 round-off: the same
  initialisations (the same random streams), the same E and M steps, the
  same lower bound, stopping rule, ``n_init`` and ``warm_start`` semantics,
  and a final E-step so that ``fit_predict(X)`` equals ``fit(X).predict(X)``.
- The maths lives in :mod:`unsup.mixture._em` (batched over components,
  chunked over rows, one pass per iteration); this module holds the
  estimator contract.
- ``sample_weight`` weights the E and M steps: an integer weight is the same
  as repeating the row (scikit-learn's issue 15647).
- ``init_params="kmeans"`` runs :class:`unsup.cluster.KMeans` with the
  estimator's ``metric``: that is where a pluggable metric enters a mixture.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from numbers import Integral, Real
from time import time

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from unsup._dask import dask_support
from unsup._sklearn_adapter import Interval, StrOptions, check_sample_weight, fit_context
from unsup.cluster import KMeans
from unsup.cluster._kmeans import kmeans_plusplus
from unsup.metrics._registry import METRIC_NAMES, get_metric
from unsup.mixture._em import (
    EMData,
    Params,
    em_step,
    initial_params,
    log_prob_resp,
    parameters_from_resp,
    precisions_from_cholesky,
    weighted_log_prob_all,
)
from unsup.utils.validation import upcast_if_overflow

__all__ = ["GaussianMixture"]

_COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _package_dir(module):
    return os.path.dirname(os.path.abspath(module.__file__)) + os.sep


def _caller_stacklevel():
    """``stacklevel`` that points a warning raised by our caller at the user's line.

    The first frame outside unsup and scikit-learn (whose wrappers, the dask
    dispatch and ``fit_context``, stand between ``fit`` and the user's call).
    """
    import sklearn

    import unsup

    inside = (_package_dir(unsup), _package_dir(sklearn))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


# ------------------------------------------------ initial parameter checks
def _check_shape(param, param_shape, name):
    if param.shape != param_shape:
        raise ValueError(
            f"The parameter '{name}' should have the shape of {param_shape}, but got {param.shape}"
        )


def _check_weights(weights, n_components):
    weights = check_array(weights, dtype=[np.float64, np.float32], ensure_2d=False, input_name="weights_init")
    _check_shape(weights, (n_components,), "weights")
    if np.any(weights < 0.0) or np.any(weights > 1.0):
        raise ValueError(
            "The parameter 'weights' should be in the range [0, 1], but got "
            f"max value {np.max(weights):.5f}, min value {np.min(weights):.5f}"
        )
    atol = 1e-6 if weights.dtype == np.float32 else 1e-8
    if not np.allclose(abs(1.0 - float(np.sum(weights))), 0.0, atol=atol):
        raise ValueError(
            f"The parameter 'weights' should be normalized, but got sum(weights) = {np.sum(weights):.5f}"
        )
    return weights


def _check_means(means, n_components, n_features):
    means = check_array(means, dtype=[np.float64, np.float32], ensure_2d=False, input_name="means_init")
    _check_shape(means, (n_components, n_features), "means")
    return means


def _check_precisions(precisions, covariance_type, n_components, n_features):
    precisions = check_array(
        precisions,
        dtype=[np.float64, np.float32],
        ensure_2d=False,
        allow_nd=covariance_type == "full",
        input_name="precisions_init",
    )
    shapes = {
        "full": (n_components, n_features, n_features),
        "tied": (n_features, n_features),
        "diag": (n_components, n_features),
        "spherical": (n_components,),
    }
    _check_shape(precisions, shapes[covariance_type], f"{covariance_type} precision")
    if covariance_type in ("full", "tied"):
        mats = precisions.reshape(-1, n_features, n_features)
        symmetric = np.allclose(mats, np.swapaxes(mats, 1, 2))
        if not (symmetric and np.all(np.linalg.eigvalsh(mats) > 0.0)):
            raise ValueError(f"'{covariance_type} precision' should be symmetric, positive-definite")
    elif np.any(precisions <= 0.0):
        raise ValueError(f"'{covariance_type} precision' should be positive")
    return precisions


@dask_support
class GaussianMixture(ClusterMixin, DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM: soft clustering, densities, ``sample_weight``.

    The same model and the same EM as :class:`sklearn.mixture.GaussianMixture`
    (from the same initial parameters, every iteration gives the same
    ``lower_bound_``, means and covariances to float64 round-off), computed
    for all components at once on blocks of rows, so that each EM step runs
    several times faster; and ``fit`` takes ``sample_weight``.

    Parameters
    ----------
    n_components : int, default=1
        The number of mixture components.
    covariance_type : {"full", "tied", "diag", "spherical"}, default="full"
        ``"full"``: each component has its own covariance matrix;
        ``"tied"``: all share one; ``"diag"``: each has its own diagonal
        covariance; ``"spherical"``: each has its own single variance.
    tol : float, default=1e-3
        EM stops when the lower bound (the mean log-likelihood) gains less
        than ``tol`` in an iteration.
    reg_covar : float, default=1e-6
        Non-negative regularisation added to the diagonal of the covariances,
        so that they stay positive definite.
    max_iter : int, default=100
        EM iterations of one initialisation (0: only initialise).
    n_init : int, default=1
        Initialisations; the one with the largest lower bound is kept.
    init_params : {"kmeans", "k-means++", "random", "random_from_data"}, default="kmeans"
        How the responsibilities start: ``"kmeans"`` from the labels of
        :class:`unsup.cluster.KMeans` run with ``metric``; ``"k-means++"``
        from its seeds (in ``metric``); ``"random"`` uniform random
        responsibilities; ``"random_from_data"`` one random row per
        component (drawn in proportion to ``sample_weight``).
    metric : str or callable, default="euclidean"
        Metric of the k-means initialisation (a name of
        :data:`unsup.metrics.METRIC_NAMES` or a callable ``f(a, b) -> float``).
        With the euclidean metric the initialisation equals scikit-learn's.
    metric_params : dict, default=None
        Parameters of the metric, e.g. ``{"p": 3}`` for minkowski.
    weights_init : array-like of shape (n_components,), default=None
        Initial weights (else from ``init_params``).
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means (else from ``init_params``).
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), of shape
        ``(n_components, n_features, n_features)`` full,
        ``(n_features, n_features)`` tied, ``(n_components, n_features)``
        diag, ``(n_components,)`` spherical.
    warm_start : bool, default=False
        Start the next ``fit`` from the current solution (``n_init`` is then
        ignored).
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation and :meth:`sample`.
    verbose : int, default=0
        1: print each initialisation and iteration; 2: with timings and the
        lower bound.
    verbose_interval : int, default=10
        Iterations between two messages.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        Shape as ``precisions_init``.
    precisions_ : ndarray
        Inverses of the covariances, shape as ``precisions_init``.
    precisions_cholesky_ : ndarray
        Cholesky factors ``U`` of the precisions (``U @ U.T``: upper
        triangular for full and tied; square roots for diag and spherical).
    converged_ : bool
        Whether the kept initialisation reached ``tol``.
    n_iter_ : int
        EM iterations of the kept initialisation.
    lower_bound_ : float
        Mean log-likelihood (sample-weighted) of the training data at the
        last EM iteration of the kept initialisation.
    lower_bounds_ : list of float
        The lower bound at each iteration of the kept initialisation.
    labels_ : ndarray of shape (n_samples,)
        Most probable component of each training row (the final E-step).
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    The arrays are float32 when ``X`` is float32 (float64 when float32
    arithmetic would overflow on it).

    See Also
    --------
    sklearn.mixture.GaussianMixture : the oracle.
    unsup.cluster.KMeans : the initialisation.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.mixture import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]], dtype=float)
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> gm.means_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> gm.predict([[0, 0], [12, 3]])
    array([1, 0])
    >>> gm.predict_proba([[5.5, 2]]).round(3)
    array([[0.5, 0.5]])
    >>> w = np.array([1, 1, 1, 3, 0, 0])  # weights: the second cluster is one point
    >>> GaussianMixture(n_components=2, random_state=0).fit(X, sample_weight=w).weights_.round(3)
    array([0.5, 0.5])
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "covariance_type": [StrOptions(set(_COVARIANCE_TYPES))],
        "tol": [Interval(Real, 0.0, None, closed="left")],
        "reg_covar": [Interval(Real, 0.0, None, closed="left")],
        "max_iter": [Interval(Integral, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "init_params": [StrOptions({"kmeans", "k-means++", "random", "random_from_data"})],
        "metric": [StrOptions(set(METRIC_NAMES)), callable],
        "metric_params": [dict, None],
        "weights_init": ["array-like", None],
        "means_init": ["array-like", None],
        "precisions_init": ["array-like", None],
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "verbose_interval": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self,
        n_components=1,
        *,
        covariance_type="full",
        tol=1e-3,
        reg_covar=1e-6,
        max_iter=100,
        n_init=1,
        init_params="kmeans",
        metric="euclidean",
        metric_params=None,
        weights_init=None,
        means_init=None,
        precisions_init=None,
        warm_start=False,
        random_state=None,
        verbose=0,
        verbose_interval=10,
    ):
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.metric = metric
        self.metric_params = metric_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval

    # ------------------------------------------------------------ validation
    def _check_weights(self, sample_weight, X):
        """``None`` for no weights (the fast path), else validated non-negative weights."""
        if sample_weight is None:
            return None
        w = check_sample_weight(sample_weight, X, dtype=X.dtype)
        if np.any(w < 0):
            raise ValueError("Negative values in data passed to `sample_weight`.")
        if not np.any(w > 0):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return w

    def _check_params_vs_input(self, X, sample_weight):
        n_samples, n_features = X.shape
        k = self.n_components
        if n_samples < k:
            raise ValueError(
                f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n_samples}"
            )
        if sample_weight is not None and np.count_nonzero(sample_weight) < k:
            raise ValueError(
                f"Expected at least n_components = {k} samples of positive sample_weight, "
                f"got {np.count_nonzero(sample_weight)}."
            )
        init = {}
        if self.weights_init is not None:
            init["weights"] = _check_weights(self.weights_init, k)
        if self.means_init is not None:
            init["means"] = _check_means(self.means_init, k, n_features)
        if self.precisions_init is not None:
            init["precisions"] = _check_precisions(self.precisions_init, self.covariance_type, k, n_features)
        return init

    def _check_inference_data(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32], order="C")
        X = upcast_if_overflow(X)
        dtype = np.result_type(X.dtype, self.means_.dtype)
        return np.ascontiguousarray(X, dtype=dtype)

    # -------------------------------------------------------- initialisation
    def _initial_resp(self, X, sample_weight, random_state):
        """Initial responsibilities by ``init_params`` (scikit-learn's random streams)."""
        n_samples, k = X.shape[0], self.n_components
        if self.init_params == "random":
            resp = np.asarray(random_state.uniform(size=(n_samples, k)), dtype=X.dtype)
            resp /= resp.sum(axis=1)[:, np.newaxis]
            return resp
        resp = np.zeros((n_samples, k), dtype=X.dtype)
        if self.init_params == "kmeans":
            labels = (
                KMeans(
                    n_clusters=k,
                    metric=self.metric,
                    metric_params=self.metric_params,
                    n_init=1,
                    random_state=random_state,
                )
                .fit(X, sample_weight=sample_weight)
                .labels_
            )
            resp[np.arange(n_samples), labels] = 1
        elif self.init_params == "random_from_data":
            uniform = sample_weight is None or np.all(sample_weight == sample_weight[0])
            p = None if uniform else sample_weight / sample_weight.sum(dtype=np.float64)
            indices = random_state.choice(n_samples, size=k, replace=False, p=p)
            resp[indices, np.arange(k)] = 1
        else:  # k-means++ seeds, in the metric
            metric = get_metric(self.metric, **(self.metric_params or {}))
            w = None if sample_weight is None else sample_weight.astype(np.float64)
            _, indices = kmeans_plusplus(X, k, metric, w, random_state)
            resp[indices, np.arange(k)] = 1
        return resp

    def _initial_params(self, data, X, sample_weight, random_state, init):
        """Initial parameters, as scikit-learn's ``_initialize_parameters`` then ``_initialize``."""
        weights = means = covariances = None  # all three given in init otherwise
        if len(init) < 3:
            resp = self._initial_resp(X, sample_weight, random_state)
            weights, means, covariances = parameters_from_resp(data, resp, self.reg_covar)
        return initial_params(
            data, init, weights, means, covariances, data.noise_floor if self.reg_covar == 0 else None
        )

    # ------------------------------------------------------------------ fit
    def fit(self, X, y=None, sample_weight=None):
        """Estimate the parameters by EM.

        The model is fitted ``n_init`` times (once with ``warm_start`` after
        the first fit); the run with the largest lower bound is kept. Each run
        iterates until the lower bound gains less than ``tol`` or ``max_iter``
        iterations pass (then a :class:`~sklearn.exceptions.ConvergenceWarning`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; float32 is kept as float32.
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows in the E and M steps; an integer
            weight gives the same fit as repeating the row, zero removes it.

        Returns
        -------
        self : GaussianMixture
        """
        self.fit_predict(X, y, sample_weight=sample_weight)
        return self

    @fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None, sample_weight=None):
        """Fit, then return the most probable component of each row (equal to ``fit(X).predict(X)``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], order="C", ensure_min_samples=2)
        X = upcast_if_overflow(X)  # float64 where float32 squares would overflow
        sample_weight = self._check_weights(sample_weight, X)
        init = self._check_params_vs_input(X, sample_weight)
        get_metric(self.metric, **(self.metric_params or {}))  # a bad metric fails before any work
        ct, dtype = self.covariance_type, X.dtype

        random_state = check_random_state(self.random_state)
        data = EMData(X, sample_weight, ct, self.n_components)

        def start(do_init):
            if do_init:
                return self._initial_params(data, X, sample_weight, random_state, init)
            return Params(
                self.weights_, self.means_ - data.offset, self.precisions_cholesky_, data,
                covariances=self.covariances_,
            )

        best = self._em_runs(start, lambda params: em_step(data, params, self.reg_covar))
        self._set_fit(best, data.offset, dtype)
        # A final E-step, so that fit_predict(X) equals fit(X).predict(X).
        _, log_resp = log_prob_resp(data, best[0])
        self.labels_ = log_resp.argmax(axis=1)
        return self.labels_

    def _em_runs(self, start, step):
        """The EM runs of a fit; the one of the largest lower bound is kept (scikit-learn's rule).

        Shared by the in-memory fit and the dask fit, which differ only in
        their two callables: ``start(do_init)`` gives the parameters a run
        starts from (new initial ones, or the fitted ones for a warm start),
        ``step(params)`` one EM iteration, ``(lower_bound, params)``. There
        are ``n_init`` runs (one for a warm start after the first fit).
        Warns (:class:`~sklearn.exceptions.ConvergenceWarning`, at the
        user's line) when the kept run did not converge. Changes nothing on
        the estimator.

        Returns
        -------
        params, n_iter, lower_bound, lower_bounds, converged
            Of the kept run.
        """
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        max_lower_bound, best_params, best_n_iter, best_bounds, best_converged = -np.inf, None, 0, [], False
        for i_init in range(self.n_init if do_init else 1):
            self._print_verbose_msg_init_beg(i_init)
            params = start(do_init)
            lower_bound = -np.inf if do_init else self.lower_bound_
            if self.max_iter == 0:
                best_params, best_n_iter = params, 0
                continue
            bounds, converged = [], False
            for n_iter in range(1, self.max_iter + 1):
                prev_lower_bound = lower_bound
                lower_bound, params = step(params)
                bounds.append(lower_bound)
                change = lower_bound - prev_lower_bound
                self._print_verbose_msg_iter_end(n_iter, change)
                if abs(change) < self.tol:
                    converged = True
                    break
            self._print_verbose_msg_init_end(lower_bound, converged)
            if lower_bound > max_lower_bound or max_lower_bound == -np.inf:
                max_lower_bound, best_params, best_n_iter, best_bounds = lower_bound, params, n_iter, bounds
                best_converged = converged
        if not best_converged and self.max_iter > 0:
            warnings.warn(
                "Best performing initialization did not converge. Try different init "
                "parameters, or increase max_iter, tol, or check for degenerate data.",
                ConvergenceWarning,
                stacklevel=_caller_stacklevel(),
            )
        return best_params, best_n_iter, max_lower_bound, best_bounds, best_converged

    def _set_fit(self, best, offset, dtype):
        """The fitted attributes from the kept run of :meth:`_em_runs`."""
        params, self.n_iter_, lower_bound, bounds, self.converged_ = best
        self._set_parameters(params, offset, dtype)
        self.lower_bound_ = float(lower_bound)
        self.lower_bounds_ = [float(v) for v in bounds]

    def _set_parameters(self, params: Params, offset, dtype):
        covariances = params.covariances
        ct = self.covariance_type
        self.weights_ = params.weights.astype(dtype)
        self.means_ = (params.means + offset).astype(dtype)
        self.precisions_cholesky_ = params.pchol.astype(dtype)
        self.precisions_ = precisions_from_cholesky(self.precisions_cholesky_, ct)
        if covariances is None:  # initial precisions, never iterated: invert them
            p64 = self.precisions_.astype(np.float64)
            covariances = np.linalg.inv(p64) if ct in ("full", "tied") else 1.0 / p64
        self.covariances_ = covariances.astype(dtype, copy=False)

    # ------------------------------------------------------------- inference
    def _inference(self, X):
        """The data centred on the mixture's mean, and the fitted parameters in those coordinates."""
        X = self._check_inference_data(X)
        offset = self.weights_.astype(np.float64) @ self.means_.astype(np.float64)
        data = EMData(X, None, self.covariance_type, self.n_components, offset=offset)
        params = Params(self.weights_, self.means_ - data.offset, self.precisions_cholesky_, data)
        return data, params

    def score_samples(self, X):
        """Log-likelihood of each sample under the model.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        log_prob : ndarray of shape (n_samples,)
        """
        return log_prob_resp(*self._inference(X))[0]

    def score(self, X, y=None, sample_weight=None):
        """Mean log-likelihood of ``X`` (weighted by ``sample_weight``); higher is better.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : Ignored
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        log_likelihood : float
        """
        log_prob = self.score_samples(X)
        if sample_weight is None:
            return float(np.mean(log_prob))
        w = self._check_weights(sample_weight, log_prob[:, None])
        return float(np.average(log_prob, weights=w))

    def predict(self, X):
        """Most probable component of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
        """
        return weighted_log_prob_all(*self._inference(X)).argmax(axis=1)

    def predict_proba(self, X):
        """Posterior probability of each component for each sample: the soft clustering.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        resp : ndarray of shape (n_samples, n_components)
            Rows sum to one.
        """
        return np.exp(log_prob_resp(*self._inference(X))[1])

    def sample(self, n_samples=1):
        """Draw samples from the fitted mixture (scikit-learn's random stream from ``random_state``).

        Parameters
        ----------
        n_samples : int, default=1

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            The component of each sample.
        """
        check_is_fitted(self)
        if n_samples < 1:
            raise ValueError(
                f"Invalid value for 'n_samples': {n_samples} . The sampling requires at least one sample."
            )
        _, n_features = self.means_.shape
        rng = check_random_state(self.random_state)
        counts = rng.multinomial(n_samples, self.weights_.astype(np.float64))
        if self.covariance_type == "full":
            X = np.vstack([
                rng.multivariate_normal(mean, cov, int(c))
                for mean, cov, c in zip(self.means_, self.covariances_, counts)
            ])
        elif self.covariance_type == "tied":
            X = np.vstack([
                rng.multivariate_normal(mean, self.covariances_, int(c)) for mean, c in zip(self.means_, counts)
            ])
        else:
            X = np.vstack([
                mean + rng.standard_normal(size=(c, n_features)) * np.sqrt(cov)
                for mean, cov, c in zip(self.means_, self.covariances_, counts)
            ])
        y = np.concatenate([np.full(int(c), j, dtype=np.int64) for j, c in enumerate(counts)])
        return np.asarray(X, dtype=np.float64), y

    # ------------------------------------------------------ model selection
    def _n_parameters(self):
        """Free parameters of the model (for BIC and AIC)."""
        _, n_features = self.means_.shape
        k = self.n_components
        cov_params = {
            "full": k * n_features * (n_features + 1) / 2.0,
            "diag": k * n_features,
            "tied": n_features * (n_features + 1) / 2.0,
            "spherical": k,
        }[self.covariance_type]
        return int(cov_params + n_features * k + k - 1)

    def bic(self, X):
        """Bayesian information criterion on ``X``: ``-2 log L + p log n`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        bic : float
        """
        log_prob = self.score_samples(X)
        n = len(log_prob)
        return -2 * float(np.mean(log_prob)) * n + self._n_parameters() * math.log(n)

    def aic(self, X):
        """Akaike information criterion on ``X``: ``-2 log L + 2 p`` (lower is better).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        aic : float
        """
        log_prob = self.score_samples(X)
        return -2 * float(np.mean(log_prob)) * len(log_prob) + 2 * self._n_parameters()

    # -------------------------------------------------------------- verbose
    def _print_verbose_msg_init_beg(self, n_init):
        if self.verbose >= 1:
            print(f"Initialization {n_init}")
        if self.verbose >= 2:
            self._init_prev_time = time()
            self._iter_prev_time = self._init_prev_time

    def _print_verbose_msg_iter_end(self, n_iter, diff_ll):
        if n_iter % self.verbose_interval == 0:
            if self.verbose == 1:
                print(f"  Iteration {n_iter}")
            elif self.verbose >= 2:
                now = time()
                print(f"  Iteration {n_iter}\t time lapse {now - self._iter_prev_time:.5f}s\t ll change {diff_ll:.5f}")
                self._iter_prev_time = now

    def _print_verbose_msg_init_end(self, lb, converged):
        msg = "converged" if converged else "did not converge"
        if self.verbose == 1:
            print(f"Initialization {msg}.")
        elif self.verbose >= 2:
            print(f"Initialization {msg}. time lapse {time() - self._init_prev_time:.5f}s\t lower bound {lb:.5f}.")

