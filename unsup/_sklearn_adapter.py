"""Every private part of scikit-learn that unsup uses, behind unsup's own signatures.

Design constraints
------------------
- This is the only module of unsup that names a private scikit-learn object.
  The rest of unsup calls the functions below, whose signatures and return
  types are unsup's: a change upstream is absorbed here.
- The k-means kernels (scikit-learn's chunked, OpenMP-parallel Lloyd step, its
  inertia and labelling) are the fastest on a CPU, so they are used when they
  work. They are imported on first use, never at ``import unsup``: a user of
  the autoencoders alone never loads them.
- Each private object has a fallback written here with numpy and scipy, which
  follows scikit-learn's arithmetic step by step (same assignment rule, same
  empty-cluster relocation, same convergence test), so results agree with
  scikit-learn's to rounding. It is used when the import fails
  (``ImportError``/``AttributeError``), when the object's signature no longer
  takes unsup's call (a ``TypeError`` on first use, or an unexpected return
  value), and always when the environment variable ``UNSUP_SKLEARN_FALLBACK``
  is ``1``. Falling back warns once per object (not when forced).
- The parameter-validation vocabulary (``Interval``, ``StrOptions``,
  ``InvalidParameterError``) has no fallback: it is what
  ``sklearn.base.BaseEstimator._validate_params`` itself reads, from the module
  ``sklearn.base`` imports, so it cannot be missing while scikit-learn's own
  estimators work.

Supported: scikit-learn 1.6 to 1.9 (CI runs the clustering and mixture tests on
the oldest).
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import warnings
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from sklearn import config_context, get_config
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions

from unsup.utils._threads import single_threaded

__all__ = [
    "FALLBACK_ENV",
    "Interval",
    "InvalidParameterError",
    "LloydRun",
    "StrOptions",
    "check_sample_weight",
    "effective_n_threads",
    "fit_context",
    "inertia",
    "is_same_clustering",
    "labels_inertia",
    "lloyd",
    "lloyd_step",
    "native_kernels",
]

#: Set to ``1`` to use unsup's own kernels instead of scikit-learn's private ones.
FALLBACK_ENV = "UNSUP_SKLEARN_FALLBACK"

#: Rows per block in the fallback kernels (bounded working memory).
_CHUNK = 4096


# --------------------------------------------------------------- resolution
def _load_lloyd():
    from sklearn.cluster._kmeans import _kmeans_single_lloyd

    return _kmeans_single_lloyd


def _load_lloyd_iter():
    from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense, lloyd_iter_chunked_sparse

    return lloyd_iter_chunked_dense, lloyd_iter_chunked_sparse


def _load_inertia():
    from sklearn.cluster._k_means_common import _inertia_dense, _inertia_sparse

    return _inertia_dense, _inertia_sparse


def _load_labels_inertia():
    from sklearn.cluster._kmeans import _labels_inertia_threadpool_limit

    return _labels_inertia_threadpool_limit


def _load_n_threads():
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    return _openmp_effective_n_threads


def _load_sample_weight():
    from sklearn.utils.validation import _check_sample_weight

    # unsup's call: (sample_weight, X, dtype=...); refuse a signature that no longer takes it.
    inspect.signature(_check_sample_weight).bind(None, None, dtype=None)
    return _check_sample_weight


def _load_fit_context():
    from sklearn.base import _fit_context

    inspect.signature(_fit_context).bind(prefer_skip_nested_validation=True)
    return _fit_context


_LOADERS = {
    "sklearn.cluster._kmeans._kmeans_single_lloyd": _load_lloyd,
    "sklearn.cluster._k_means_lloyd.lloyd_iter_chunked_*": _load_lloyd_iter,
    "sklearn.cluster._k_means_common._inertia_*": _load_inertia,
    "sklearn.cluster._kmeans._labels_inertia_threadpool_limit": _load_labels_inertia,
    "sklearn.utils._openmp_helpers._openmp_effective_n_threads": _load_n_threads,
    "sklearn.utils.validation._check_sample_weight": _load_sample_weight,
    "sklearn.base._fit_context": _load_fit_context,
}
_LLOYD, _LLOYD_ITER, _INERTIA, _LABELS_INERTIA, _N_THREADS, _SAMPLE_WEIGHT, _FIT_CONTEXT = _LOADERS

_LOCK = threading.Lock()
_RESOLVED: dict[str, object] = {}  # name -> scikit-learn's object, or None: use the fallback
_VERIFIED: set[str] = set()  # names whose first call went through


def _new_lock_after_fork():
    """A child made by fork gets a fresh lock: one another thread held at the fork stays held there."""
    global _LOCK
    _LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_new_lock_after_fork)


def _forced() -> bool:
    return os.environ.get(FALLBACK_ENV, "") == "1"


def _native(name):
    """scikit-learn's object for ``name``, or None where unsup's fallback is to run."""
    if _forced():
        return None
    try:
        return _RESOLVED[name]
    except KeyError:
        pass
    with _LOCK:
        if name not in _RESOLVED:
            try:
                _RESOLVED[name] = _LOADERS[name]()
            except (ImportError, AttributeError, TypeError) as exc:
                _RESOLVED[name] = None
                _warn(name, exc)
        return _RESOLVED[name]


def _mark_broken(name, exc):
    with _LOCK:
        if _RESOLVED.get(name) is None:
            return
        _RESOLVED[name] = None
    _warn(name, exc)


def _call(name, native_call, fallback_call):
    """``native_call(obj)`` with scikit-learn's object, or ``fallback_call()``.

    A ``TypeError`` or ``ValueError`` from the first call (a changed signature
    or return value: the input was validated by unsup before) marks the object
    broken, and the fallback answers, then and from then on.
    """
    obj = _native(name)
    if obj is None:
        return fallback_call()
    if name in _VERIFIED:
        return native_call(obj)
    try:
        result = native_call(obj)
    except (TypeError, ValueError) as exc:
        _mark_broken(name, exc)
        return fallback_call()
    _VERIFIED.add(name)
    return result


def _warn(name, exc):
    import sklearn

    warnings.warn(
        f"scikit-learn {sklearn.__version__}: the private {name} that unsup uses is unavailable "
        f"or changed ({type(exc).__name__}: {exc}); unsup uses its own numpy kernel instead "
        "(the same results, slower).",
        RuntimeWarning,
        stacklevel=4,
    )


def native_kernels() -> dict[str, bool]:
    """For each private object unsup uses: whether scikit-learn's own is in use (resolving them all)."""
    return {name: _native(name) is not None for name in _LOADERS}


def _reset():
    """Forget the resolution (for tests that change the environment)."""
    with _LOCK:
        _RESOLVED.clear()
        _VERIFIED.clear()


# ------------------------------------------------------------ validation
def fit_context(*, prefer_skip_nested_validation):
    """Decorator of ``fit``-like methods: validate the parameters, then run (scikit-learn's ``_fit_context``)."""
    native = _native(_FIT_CONTEXT)
    if native is not None:
        return native(prefer_skip_nested_validation=prefer_skip_nested_validation)

    def decorator(fit_method):
        @functools.wraps(fit_method)
        def wrapper(estimator, *args, **kwargs):
            global_skip = get_config()["skip_parameter_validation"]
            if not global_skip and not (fit_method.__name__ == "partial_fit" and _is_fitted(estimator)):
                estimator._validate_params()
            with config_context(skip_parameter_validation=prefer_skip_nested_validation or global_skip):
                return fit_method(estimator, *args, **kwargs)

        return wrapper

    return decorator


def _is_fitted(estimator) -> bool:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        return False
    return True


def check_sample_weight(sample_weight, X, *, dtype=None):
    """``sample_weight`` as a 1-D array of ``X.shape[0]`` floats (ones for None, a scalar repeated).

    scikit-learn's ``_check_sample_weight``; the fallback raises its errors
    (as of 1.9) in its words.
    """
    native = _native(_SAMPLE_WEIGHT)
    if native is not None:
        return native(sample_weight, X, dtype=dtype)
    n_samples = X.shape[0]
    if dtype is not None and dtype not in (np.float32, np.float64):
        dtype = np.float64
    if sample_weight is None:
        return np.ones(n_samples, dtype=dtype or np.float64)
    if isinstance(sample_weight, (int, float, np.number)):
        return np.full(n_samples, sample_weight, dtype=dtype or np.float64)
    if dtype is None:
        dtype = [np.float64, np.float32]
    sample_weight = check_array(
        sample_weight, accept_sparse=False, ensure_2d=False, dtype=dtype, order="C", input_name="sample_weight"
    )
    if sample_weight.ndim != 1:
        raise ValueError(
            f"Sample weights must be 1D array or scalar, got {sample_weight.ndim}D array. Expected "
            f"either a scalar value or a 1D array of length {n_samples}."
        )
    if sample_weight.shape != (n_samples,):
        raise ValueError(f"sample_weight.shape == {sample_weight.shape}, expected {(n_samples,)}!")
    if not np.any(sample_weight):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sample_weight


# ------------------------------------------------------------------ threads
def effective_n_threads() -> int:
    """Threads for OpenMP-style parallel work: ``OMP_NUM_THREADS`` if set, else the usable cores."""

    def fallback():
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
        env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
        if env.isdigit() and int(env) > 0:
            return int(env)
        return max(cores, 1)

    return int(_call(_N_THREADS, lambda f: int(f()), fallback))


# ------------------------------------------------------------- clustering
def is_same_clustering(labels1, labels2, n_clusters) -> bool:
    """Whether each label of ``labels1`` maps to one label of ``labels2`` (scikit-learn's rule).

    As scikit-learn's ``_is_same_clustering``: the map need not be one to
    one. ``n_clusters`` bounds both labellings.
    """
    labels1 = np.asarray(labels1, dtype=np.int64)
    labels2 = np.asarray(labels2, dtype=np.int64)
    pairs = np.unique(labels1 * n_clusters + labels2)
    return len(pairs) == len(np.unique(pairs // n_clusters))


class LloydRun(NamedTuple):
    """One k-means run: labels (int32), inertia, centres, iterations."""

    labels: np.ndarray
    inertia: float
    centres: np.ndarray
    n_iter: int


def _squared_norms(A):
    if sp.issparse(A):
        return np.asarray(A.multiply(A).sum(axis=1), dtype=A.dtype).ravel()
    return np.einsum("ij,ij->i", A, A)


def _nearest(X, centres):
    """scikit-learn's assignment: the first centre minimising ``|c|^2 - 2 x.c``, per block of rows."""
    c_sq = _squared_norms(centres)
    labels = np.empty(X.shape[0], dtype=np.int32)
    for start in range(0, X.shape[0], _CHUNK):
        D = np.asarray(X[start : start + _CHUNK] @ centres.T)
        D *= -2
        D += c_sq
        labels[start : start + len(D)] = np.argmin(D, axis=1)
    return labels


def _assigned_sq_distances(X, centres, labels):
    """Squared euclidean distance of each row to ``centres[labels]`` (scikit-learn's formulas)."""
    out = np.empty(X.shape[0], dtype=X.dtype)
    c_sq = _squared_norms(centres) if sp.issparse(X) else None
    for start in range(0, X.shape[0], _CHUNK):
        block = X[start : start + _CHUNK]
        C = centres[labels[start : start + _CHUNK]]
        if sp.issparse(block):
            # |c|^2 + sum over stored entries of (x^2 - 2 x c)
            stored = np.asarray(block.multiply(block).sum(axis=1)).ravel()
            cross = np.asarray(block.multiply(C).sum(axis=1)).ravel()
            out[start : start + len(C)] = c_sq[labels[start : start + _CHUNK]] + stored - 2 * cross
        else:
            diff = block - C
            out[start : start + len(C)] = np.einsum("ij,ij->i", diff, diff)
    return out


def _fallback_inertia(X, sample_weight, centres, labels, single_label=None):
    d = _assigned_sq_distances(X, centres, labels)
    if single_label is not None:
        keep = labels == single_label
        return float(d[keep] @ sample_weight[keep])
    return float(d @ sample_weight)


def _fallback_step(X, sample_weight, centres):
    """One Lloyd step as scikit-learn's ``lloyd_iter_chunked_*``: labels, new centres, shifts."""
    k = centres.shape[0]
    dtype = centres.dtype
    labels = _nearest(X, centres)
    n = X.shape[0]
    weight = np.bincount(labels, weights=sample_weight, minlength=k).astype(dtype)
    onehot = sp.csr_matrix((sample_weight, (labels, np.arange(n))), shape=(k, n))
    sums = onehot @ X
    sums = (sums.toarray() if sp.issparse(sums) else np.asarray(sums)).astype(dtype, copy=False)
    empty = np.flatnonzero(weight == 0)
    if len(empty):  # relocation: the farthest points become the empty clusters' centres
        distances = _assigned_sq_distances(X, centres, labels)
        if np.max(distances) != 0:
            far = np.argpartition(distances, -len(empty))[: -len(empty) - 1 : -1]
            for new_id, idx in zip(empty, far):
                row = X[idx].toarray().ravel() if sp.issparse(X) else X[idx]
                w = sample_weight[idx]
                old_id = labels[idx]
                sums[old_id] -= row * w
                sums[new_id] = row * w
                weight[new_id] = w
                weight[old_id] -= w
    biggest = int(np.argmax(weight))
    for j in range(k):  # in order, as scikit-learn (an empty cluster copies the biggest as it stands)
        if weight[j] > 0:
            sums[j] *= dtype.type(1.0) / weight[j]
        else:
            sums[j] = sums[biggest]
    shift = np.sqrt(((sums - centres) ** 2).sum(axis=1))
    return labels, sums, shift


def _fallback_lloyd(X, sample_weight, centres, max_iter, tol, verbose):
    centres = np.array(centres, dtype=X.dtype, order="C")
    labels_old = np.full(X.shape[0], -1, dtype=np.int32)
    strict = False
    for i in range(max_iter):
        labels, new, shift = _fallback_step(X, sample_weight, centres)
        if verbose:
            print(f"Iteration {i}, inertia {_fallback_inertia(X, sample_weight, centres, labels)}.")
        centres = new
        if np.array_equal(labels, labels_old):
            if verbose:
                print(f"Converged at iteration {i}: strict convergence.")
            strict = True
            break
        shift_total = (shift**2).sum()
        if shift_total <= tol:
            if verbose:
                print(f"Converged at iteration {i}: center shift {shift_total} within tolerance {tol}.")
            break
        labels_old = labels
    if not strict:  # labels that match the final centres
        labels = _nearest(X, centres)
    return LloydRun(labels, _fallback_inertia(X, sample_weight, centres, labels), centres, i + 1)


def lloyd(X, sample_weight, centres, *, max_iter, tol, n_threads, verbose=False) -> LloydRun:
    """Lloyd's k-means from ``centres`` until the labels stop changing or the squared shift is within ``tol``.

    scikit-learn's ``_kmeans_single_lloyd`` (prior validation assumed: ``X``
    C-ordered dense or CSR, ``sample_weight`` and ``centres`` of its dtype;
    ``tol`` absolute).
    """

    def native_call(f):
        # scikit-learn limits BLAS itself, saving and restoring the limit; inside
        # single_threaded (counted across threads) that nests safely under concurrency
        with single_threaded("blas"):
            labels, inertia_, centres_, n_iter = f(
                X, sample_weight, centres, max_iter=max_iter, verbose=verbose, tol=tol, n_threads=n_threads
            )
        return LloydRun(np.asarray(labels, dtype=np.int32), float(inertia_), centres_, int(n_iter))

    return _call(
        _LLOYD, native_call, lambda: _fallback_lloyd(X, sample_weight, centres, max_iter, tol, verbose)
    )


def lloyd_step(X, sample_weight, centres, n_threads):
    """One Lloyd step (scikit-learn's ``lloyd_iter_chunked_*``, empty clusters relocated).

    Returns
    -------
    labels : ndarray of shape (n_samples,), int32
        Nearest of ``centres`` for each row.
    new_centres : ndarray of shape (n_clusters, n_features)
        Weighted means of the clusters.
    """
    centres = np.ascontiguousarray(centres, dtype=X.dtype)

    def native_call(fns):
        new = np.zeros_like(centres)
        labels = np.full(X.shape[0], -1, dtype=np.int32)
        weight = np.zeros(len(centres), dtype=X.dtype)
        shift = np.zeros(len(centres), dtype=X.dtype)
        (fns[1] if sp.issparse(X) else fns[0])(X, sample_weight, centres, new, weight, labels, shift, n_threads)
        return labels, new

    return _call(_LLOYD_ITER, native_call, lambda: _fallback_step(X, sample_weight, centres)[:2])


def inertia(X, sample_weight, centres, labels, n_threads, *, single_label=None) -> float:
    """Weighted sum of squared distances of rows to their centres (of ``single_label``'s rows only if given)."""
    centres = np.ascontiguousarray(centres, dtype=X.dtype)
    labels = np.asarray(labels, dtype=np.int32)

    def native_call(fns):
        f = fns[1] if sp.issparse(X) else fns[0]
        return float(f(X, sample_weight, centres, labels, n_threads, single_label=-1 if single_label is None else single_label))

    return _call(
        _INERTIA, native_call, lambda: _fallback_inertia(X, sample_weight, centres, labels, single_label)
    )


def labels_inertia(X, sample_weight, centres, n_threads):
    """Nearest centre of each row (int32) and the weighted sum of squared distances to it."""

    def native_call(f):
        with single_threaded("blas"):  # as in lloyd: scikit-learn's own limit, nested safely
            labels, inertia_ = f(X, sample_weight, centres, n_threads)
        return np.asarray(labels, dtype=np.int32), float(inertia_)

    def fallback():
        labels = _nearest(X, centres)
        return labels, _fallback_inertia(X, sample_weight, centres, labels)

    return _call(_LABELS_INERTIA, native_call, fallback)
