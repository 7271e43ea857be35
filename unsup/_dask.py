"""The Dask engine: lazy prediction over ``dask.array`` blocks and distributed fits.

Design constraints
------------------
- ``import unsup`` does not import dask: a dask input is recognised by the
  module of its type, and dask is imported only when one arrives (the
  optional extra ``unsup[dask]``).
- Prediction-side methods (``predict``, ``transform``, ``inverse_transform``,
  ``score_samples``, ``decision_function``, ``predict_proba``,
  ``reconstruct``, ``reconstruction_error``) map the estimator's own numpy
  method over the row blocks (columns in one chunk), so each block's result
  equals the numpy result on the same rows. The fitted estimator enters the
  graph once, as one ``dask.delayed`` key that every block task depends on,
  so a cluster ships it to each worker once, not once per task. Nothing is
  computed until the caller asks; ``score`` returns a lazy 0-d array.
- ``KMeans.fit`` and ``GaussianMixture.fit`` run one pass over the blocks per
  iteration: each block returns small sufficient statistics (weighted sums,
  weights per cluster, inertia, responsibilities' moments), which the client
  adds in block order and turns into the next parameters with the same
  formulas as the in-memory fit. The estimator's attributes are assigned
  only once every pass has succeeded, so a fit that fails (a lost worker
  whose tasks cannot be retried, bad data found in a late block) leaves the
  estimator as it was.
- Blocks are recomputed by every pass (nothing is persisted), so memory per
  worker stays a few blocks; a caller who has the memory can ``persist()``
  the array first.
- Task functions are module-level (picklable by reference), take numpy
  blocks, and never change process-wide settings (thread limits), since the
  threaded scheduler runs several of them at once in the caller's process.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import uuid
import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

__all__ = ["dask_support", "is_dask"]

PREDICT_METHODS = (
    "predict",
    "transform",
    "inverse_transform",
    "score_samples",
    "decision_function",
    "predict_proba",
    "reconstruct",
    "reconstruction_error",
)

_SAMPLE_THEN_PREDICT = (
    "{name}.fit does not run on dask arrays: hierarchical clustering needs all the pairwise "
    "merges of the rows in one process. Fit on a sample that fits in memory "
    "(e.g. X[rng.choice(len(X), 50_000, replace=False)].compute()), then call predict on "
    "the dask array, which assigns every row lazily, block by block."
)


# ------------------------------------------------------------- BLAS threads
def one_blas_thread():
    """One BLAS thread while any block task of this process runs; the caller's limits after.

    Dask already runs one task per core: BLAS threads inside each task's small
    products would only wait on each other (two orders of magnitude slower on
    a busy machine). The limit is :func:`unsup.utils._threads.single_threaded`'s,
    counted across every thread of the process (the threaded scheduler's tasks
    and unsup's own steps alike): the first to enter sets it, the last to leave
    restores what was there before.
    """
    from unsup.utils._threads import single_threaded

    return single_threaded("blas")


def _task(fn, *args):
    """Run one block task under :func:`one_blas_thread`."""
    with one_blas_thread():
        return fn(*args)


# ------------------------------------------------------------------ inputs
def is_dask(X) -> bool:
    """Whether ``X`` is a dask collection (array, DataFrame), without importing dask."""
    module = type(X).__module__
    return module.startswith("dask") or module.startswith("dask_expr")


def _import_dask():
    try:
        import dask
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - the extra is installed in the tests
        raise ImportError(
            "A dask collection was passed, but dask is not installed: pip install 'unsup[dask]'."
        ) from exc
    return dask, da


def _check_frame(X, estimator, *, reset):
    """Numeric columns only; their names checked against (or recorded as) ``feature_names_in_``."""
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    bad = [str(c) for c, t in X.dtypes.items() if not (is_numeric_dtype(t) or is_bool_dtype(t))]
    if bad:
        raise ValueError(
            f"{type(estimator).__name__} accepts dask DataFrames of numeric columns only; "
            f"columns {bad} are not numeric."
        )
    columns = list(X.columns)
    names = np.asarray(columns, dtype=object) if all(isinstance(c, str) for c in columns) else None
    if reset:
        return names
    fitted = getattr(estimator, "feature_names_in_", None)
    if fitted is not None and names is not None and list(fitted) != list(names):
        raise ValueError(
            "The feature names should match those that were passed during fit.\n"
            f"Feature names seen at fit time: {list(fitted)}; feature names now: {list(names)}."
        )
    return names


def as_dask_array(X, estimator=None, *, reset=False, lengths=False):
    """``X`` as a 2-d ``dask.array.Array`` with all columns in one chunk.

    Returns
    -------
    A : dask.array.Array
    names : ndarray of str or None
        Column names of a DataFrame input (all strings), else None.
    """
    _, da = _import_dask()
    names = None
    if not isinstance(X, da.Array):
        if not hasattr(X, "to_dask_array"):
            raise TypeError(f"Expected a dask array or DataFrame, got {type(X).__name__}.")
        if X.ndim == 1:  # a Series
            X = X.to_frame()
        names = _check_frame(X, estimator, reset=reset)
        X = X.to_dask_array(lengths=True if lengths else None)
    if X.ndim == 1:
        raise ValueError(
            "Expected 2D array, got 1D array instead. Reshape your data either using "
            "array.reshape(-1, 1) if your data has a single feature or array.reshape(1, -1) "
            "if it contains a single sample."
        )
    if X.ndim != 2:
        raise ValueError(f"Found array with dim {X.ndim}, while dim <= 2 is required.")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    if lengths and any(math.isnan(c) for c in X.chunks[0]):
        X = X.compute_chunk_sizes()
    return X, names


def _row_weights(sample_weight, A):
    """``sample_weight`` as a 1-d dask array chunked as the rows of ``A`` (None stays None)."""
    if sample_weight is None:
        return None
    _, da = _import_dask()
    if isinstance(sample_weight, da.Array):
        w = sample_weight
    elif is_dask(sample_weight):  # a dask Series
        w = sample_weight.to_dask_array(lengths=True)
    else:
        w = np.asarray(sample_weight, dtype=np.float64)
        if w.ndim == 0:
            w = np.full(A.shape[0], float(w))
        w = da.from_array(w, chunks=(A.chunks[0],))
    if w.ndim != 1:
        raise ValueError(f"Sample weights must be 1D array or scalar, got {w.ndim}D array.")
    if w.shape[0] != A.shape[0]:
        raise ValueError(f"sample_weight.shape == ({w.shape[0]},), expected ({A.shape[0]},)!")
    if w.chunks[0] != A.chunks[0]:
        w = w.rechunk((A.chunks[0],))
    return w


def _blocks(A, w):
    """``[(X block, weight block or None, row offset)]`` as delayed objects, in row order."""
    xs = A.to_delayed().ravel()
    ws = [None] * len(xs) if w is None else list(w.to_delayed().ravel())
    starts = np.concatenate(([0], np.cumsum(A.chunks[0])[:-1])).astype(np.int64)
    return list(zip(xs, ws, (int(s) for s in starts)))


def _each_block(fn, blocks, *args):
    """``[fn(x, w, start, *args) for each block]``, computed by the active dask scheduler.

    Blocks that are numpy arrays (an in-memory fit, e.g. ``init="k-means||"``)
    are computed here, without dask.
    """
    if blocks and isinstance(blocks[0][0], np.ndarray):
        return [fn(x, w, start, *args) for x, w, start in blocks]
    dask, _ = _import_dask()
    task = dask.delayed(_task, pure=False)
    return list(dask.compute(*[task(fn, x, w, start, *args) for x, w, start in blocks]))


def _shipped(obj):
    """``obj`` as one delayed key (no hashing of its contents): sent to each worker once."""
    dask, _ = _import_dask()
    return dask.delayed(obj, name=f"unsup-{type(obj).__name__}-{uuid.uuid4().hex}", pure=False)


# -------------------------------------------------------------- prediction
def _framed(block, names):
    """A block with the column names of the dask DataFrame it came from (checked at fit)."""
    if names is None:
        return np.asarray(block)
    import pandas as pd

    return pd.DataFrame(np.asarray(block), columns=names, copy=False)


def _apply_block(block, estimator, name, args, kwargs, names=None):
    with one_blas_thread():
        out = getattr(estimator, name)(_framed(block, names), *args, **kwargs)
    if hasattr(out, "to_numpy"):  # set_output("pandas"): blocks are numpy
        out = out.to_numpy()
    return np.asarray(out)


def _score_block(block, weights, estimator, kind, kwargs, names=None):
    """``(weighted sum of the block's score, its weight)``: what the blocks add up."""
    block = _framed(block, names)
    if weights is not None:
        kwargs = dict(kwargs, sample_weight=np.asarray(weights))
    with one_blas_thread():
        value = float(estimator.score(block, **kwargs))
    if kind == "sum":
        return np.array([[value, 0.0]])
    total = float(len(block) if weights is None else np.sum(weights, dtype=np.float64))
    return np.array([[value * total, total]])


def _output_spec(estimator, name, A, args, kwargs, names):
    """The shape of one row's result and its dtype, from the method on a one-row probe."""
    probe = np.zeros((1, A.shape[1]), dtype=A.dtype)
    out = _apply_block(probe, estimator, name, args, kwargs, names)
    return out.shape[1:], out.dtype


def lazy_method(estimator, name, X, *args, **kwargs):
    """The estimator's method ``name`` mapped over the row blocks of a dask ``X`` (lazy)."""
    check_is_fitted(estimator)
    A, names = as_dask_array(X, estimator)
    if name == "score":
        return _lazy_score(estimator, A, *args, names=names, **kwargs)
    return _lazy_map(estimator, name, A, names, args, kwargs)


def _lazy_map(estimator, name, A, names, args=(), kwargs=None):
    """``map_blocks`` of the method over ``A`` (checked, columns in one chunk)."""
    kwargs = {} if kwargs is None else kwargs
    tail, dtype = _output_spec(estimator, name, A, args, kwargs, names)
    est = _shipped(estimator)
    if len(tail) == 0:
        return A.map_blocks(
            _apply_block, est, name, args, kwargs, names, dtype=dtype, drop_axis=1, chunks=(A.chunks[0],),
            meta=np.empty((0,), dtype=dtype),
        )
    return A.map_blocks(
        _apply_block, est, name, args, kwargs, names, dtype=dtype, chunks=(A.chunks[0], tail),
        meta=np.empty((0, 0), dtype=dtype),
    )


def _lazy_score(estimator, A, y=None, sample_weight=None, *, names=None, **kwargs):
    """``score`` over all rows, lazily: block scores added (``-inertia``) or averaged by weight."""
    dask, da = _import_dask()
    kind = next((_SCORE_KINDS[c.__name__] for c in type(estimator).__mro__ if c.__name__ in _SCORE_KINDS), "mean")
    est = _shipped(estimator)
    if sample_weight is not None:
        A, _ = as_dask_array(A, estimator, lengths=True)
    w = _row_weights(sample_weight, A)
    task = dask.delayed(_score_block, pure=False)
    parts = [task(x, wb, est, kind, kwargs, names) for x, wb, _ in _blocks(A, w)]
    total = dask.delayed(_combine_scores, pure=False)(parts, kind)
    return da.from_delayed(total, shape=(), dtype=np.float64)


def _combine_scores(parts, kind):
    totals = np.sum(np.vstack(parts), axis=0)
    return np.float64(totals[0] if kind == "sum" else totals[0] / totals[1])


# ``score`` of these classes is a sum over the rows (``-inertia``), not a mean.
_SCORE_KINDS = {"KMeans": "sum"}


# ----------------------------------------------------------- the decorator
def _wrap(method, dispatch):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        X = args[0] if args else kwargs.get("X")
        if X is not None and is_dask(X):
            return dispatch(self, *args, **kwargs)
        return method(self, *args, **kwargs)

    wrapper._unsup_dask = True
    return wrapper


def _predict_dispatch(name):
    def dispatch(self, *args, **kwargs):
        args = list(args)
        X = args.pop(0) if args else kwargs.pop("X")
        return lazy_method(self, name, X, *args, **kwargs)

    return dispatch


def _refuse_fit(self, X, *args, **kwargs):
    raise TypeError(_SAMPLE_THEN_PREDICT.format(name=type(self).__name__))


def _fit_engines():
    return {
        "KMeans": ("fit", fit_kmeans),
        "GaussianMixture": ("fit_predict", fit_predict_gmm),
        "AgglomerativeClustering": ("fit", _refuse_fit),
        "DivisiveClustering": ("fit", _refuse_fit),
        "Quantizer": ("fit", fit_quantizer),
        "QuantizedEmbedding": ("_fit", fit_quantized_embedding),
        "Autoencoder": ("fit", fit_neural),
        "VariationalAutoencoder": ("fit", fit_neural),
    }


def dask_support(cls):
    """Class decorator: the estimator's methods accept dask collections.

    Prediction-side methods become lazy over dask inputs (see the module
    docstring); ``fit`` runs the class's distributed engine where it has one.
    numpy, pandas and sparse inputs go to the original methods untouched.
    """
    for name in PREDICT_METHODS + ("score",):
        method = getattr(cls, name, None)
        if method is None or getattr(method, "_unsup_dask", False):  # absent, or inherited already wrapped
            continue
        static = inspect.getattr_static(cls, name)
        if type(static).__name__ == "_AvailableIfDescriptor":
            # available_if: hasattr must keep answering as scikit-learn's descriptor says, so the
            # wrapped function goes back under the same check
            from sklearn.utils.metaestimators import available_if

            if not getattr(static.fn, "_unsup_dask", False):
                setattr(cls, name, available_if(static.check)(_wrap(static.fn, _predict_dispatch(name))))
            continue
        setattr(cls, name, _wrap(method, _predict_dispatch(name)))
    engine = _fit_engines().get(cls.__name__)
    if engine is not None:
        name, fn = engine
        setattr(cls, name, _wrap(getattr(cls, name), fn))
    return cls


# ------------------------------------------------------------ fit helpers
# Rows handled at once inside a block: temporaries stay a small fraction of the block.
_SUB_ROWS = 1 << 16


def _first_pass_block(X, w, start):
    """Per-block checks and moments: count, mean, M2 (for the variance), weights, extremes.

    Read in slices of ``_SUB_ROWS`` rows, two passes over each block (the sums,
    then the squares about the block's mean): the float64 temporaries stay a
    small fraction of the block (a 1M x 32 float32 block made 768 MB of them).
    """
    X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise ValueError(f"dtype='numeric' is not compatible with arrays of {X.dtype}.")
    n, d = X.shape
    if w is not None:
        w = np.asarray(w, dtype=np.float64)
        if np.any(w < 0):
            raise ValueError("Negative values in data passed to `sample_weight`.")
    total, wsum, absmax = np.zeros(d), np.zeros(d), 0.0
    for a in range(0, n, _SUB_ROWS):
        Xf = X[a : a + _SUB_ROWS].astype(np.float64, copy=False)
        if not np.all(np.isfinite(Xf)):
            if np.isnan(Xf).any():
                raise ValueError("Input X contains NaN.")
            raise ValueError("Input X contains infinity or a value too large for dtype('float64').")
        total += Xf.sum(axis=0)
        if w is not None:
            wsum += w[a : a + _SUB_ROWS] @ Xf
        absmax = max(absmax, float(np.abs(Xf).max(initial=0.0)))
    mean = total / n if n else np.zeros(d)
    m2 = np.zeros(d)
    for a in range(0, n, _SUB_ROWS):
        m2 += ((X[a : a + _SUB_ROWS].astype(np.float64, copy=False) - mean) ** 2).sum(axis=0)
    if w is None:
        ws, wsum = (float(n), float(n), n), total
    else:
        ws = (float(w.sum()), float(w.max(initial=0.0)), int(np.count_nonzero(w)))
    return n, mean, m2, ws, wsum, absmax


class _Summary:
    """What the first pass learns: sizes, mean, variance, weights, the weighted mean."""

    def __init__(self, results, n_features):
        n_total, mean, m2 = 0, np.zeros(n_features), np.zeros(n_features)
        for n, m, s, *_ in results:  # Chan et al.'s parallel variance
            if n == 0:
                continue
            delta = m - mean
            total = n_total + n
            mean = mean + delta * n / total
            m2 = m2 + s + delta**2 * n_total * n / total
            n_total = total
        self.n_samples = n_total
        self.mean = mean
        self.var = m2 / max(n_total, 1)
        self.total_weight = math.fsum(r[3][0] for r in results)
        self.max_weight = max(r[3][1] for r in results)
        self.n_positive = sum(r[3][2] for r in results)
        self.weighted_mean = sum(r[4] for r in results) / self.total_weight if self.total_weight else mean
        self.absmax = max(r[5] for r in results)


def _prepare_fit(estimator, X, sample_weight, *, min_samples=1):
    """Validated dask input: ``(A, w, blocks, summary, feature names)``; no attribute is set."""
    A, names = as_dask_array(X, estimator, reset=True, lengths=True)
    if A.dtype not in (np.float32, np.float64):
        A = A.astype(np.float64)
    w = _row_weights(sample_weight, A)
    summary = _Summary(_each_block(_first_pass_block, _blocks(A, w)), A.shape[1])
    n, d = A.shape
    if n < min_samples:
        raise ValueError(
            f"Found array with {n} sample(s) (shape=({n}, {d})) while a minimum of {min_samples} is required."
        )
    if d == 0:
        raise ValueError(f"Found array with 0 feature(s) (shape=({n}, 0)) while a minimum of 1 is required.")
    if w is not None and not summary.max_weight > 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")
    if A.dtype == np.float32 and summary.absmax > min(
        np.sqrt(np.finfo(np.float32).max / (4.0 * d)), np.finfo(np.float32).max / (2.0 * n)
    ):
        A = A.astype(np.float64)  # as upcast_if_overflow: float32 squares would overflow
    return A, w, _blocks(A, w), summary, names


def _set_features(estimator, n_features, names):
    estimator.n_features_in_ = n_features
    if names is not None:
        estimator.feature_names_in_ = names
    else:
        estimator.__dict__.pop("feature_names_in_", None)


def _seed(random_state):
    return int(random_state.randint(np.iinfo(np.int32).max))


def _weighted_keys(n, w, rng):
    """Efraimidis–Spirakis keys: the k largest are a weighted sample without replacement."""
    u = rng.random(n)
    if w is None:
        return np.log(u)
    with np.errstate(divide="ignore"):
        return np.where(w > 0, np.log(u) / np.where(w > 0, w, 1.0), -np.inf)


def _top_keys_block(X, w, start, seed, m):
    """The ``m`` rows of the block with the largest random keys, with the keys."""
    X = np.asarray(X)
    rng = np.random.default_rng([seed, start])
    keys = _weighted_keys(len(X), None if w is None else np.asarray(w, dtype=np.float64), rng)
    top = np.argsort(-keys, kind="stable")[:m]
    return keys[top], X[top]


def _weighted_sample(blocks, m, random_state):
    """``m`` rows drawn without replacement in proportion to the weights, in one pass."""
    parts = _each_block(_top_keys_block, blocks, _seed(random_state), m)
    keys = np.concatenate([p[0] for p in parts])
    rows = np.concatenate([p[1] for p in parts])
    keep = np.argsort(-keys, kind="stable")[:m]
    keep = keep[np.isfinite(keys[keep])]
    return rows[keep]


# ------------------------------------------------------------------ KMeans
def _fit_mode(metric):
    """The coordinates a dask k-means fit works in: ``"center"`` (Lloyd, data centred),
    ``"unit"`` (the metric's :meth:`~unsup.metrics.Metric.prepare`, unit rows) or ``"raw"``."""
    return "center" if metric.lloyd else "unit" if metric.unit_rows else "raw"


def _work_rows(X, mode, shift, dtype, metric_name, metric_params):
    """A block in the coordinates of the fit: centred (Lloyd), prepared (cosine: unit rows) or as it is."""
    X = np.asarray(X, dtype=dtype)
    if mode == "center":
        return np.ascontiguousarray(X - shift.astype(dtype, copy=False))
    if mode == "unit":
        from unsup.metrics._registry import get_metric

        return np.ascontiguousarray(get_metric(metric_name, **metric_params).prepare(X))
    return np.ascontiguousarray(X)


def _block_weights(w, n, dtype):
    return np.ones(n, dtype=dtype) if w is None else np.ascontiguousarray(w, dtype=dtype)


def _cost_block(X, w, start, spec, centres):
    """The weighted sum of the rows' costs to the nearest of ``centres`` (k-means||)."""
    from unsup.metrics._pairwise import _argmin_min

    cost = _cost_metric(spec)
    return math.fsum(
        float(_argmin_min(Xs, centres, cost)[1].astype(np.float64) @ ws)
        for _, Xs, ws in _sub_blocks(X, w, spec, np.float64)
    )


def _cost_metric(spec):
    """The k-means cost between rows in the fit's coordinates (:func:`_work_rows`)."""
    from unsup.metrics._registry import get_metric

    mode, _, _, metric_name, metric_params = spec
    metric = get_metric(metric_name, **metric_params)
    return metric.prepared_cost() if mode == "unit" else metric.cost()


def _oversample_block(X, w, start, spec, centres, phi, ell, seed, rnd):
    """k-means|| step 4: keep each row with probability ``min(1, ell w d(x, C) / phi)``."""
    from unsup.metrics._pairwise import _argmin_min

    cost = _cost_metric(spec)
    draws = np.random.default_rng([seed, rnd, start]).random(len(X))
    kept = []
    for a, Xs, ws in _sub_blocks(X, w, spec, np.float64):
        _, mins = _argmin_min(Xs, centres, cost)
        p = ell * mins.astype(np.float64) * ws / phi
        kept.append(Xs[draws[a : a + len(Xs)] < p])
    return np.concatenate(kept) if kept else np.zeros((0, centres.shape[1]), dtype=spec[2])


def _candidate_weights_block(X, w, start, spec, candidates):
    """k-means|| step 7: the weight of the rows nearest to each candidate."""
    from unsup.metrics._pairwise import _argmin_min

    cost = _cost_metric(spec)
    weights = np.zeros(len(candidates))
    for _, Xs, ws in _sub_blocks(X, w, spec, np.float64):
        labels, _ = _argmin_min(Xs, candidates, cost)
        weights += np.bincount(labels, weights=ws, minlength=len(candidates))
    return weights


def kmeans_parallel_init(blocks, spec, n_clusters, random_state, *, metric, metric_params,
                         oversampling=2.0, n_rounds=5):
    """k-means|| seeding (Bahmani et al. 2012), in the coordinates ``spec`` describes.

    One row drawn in proportion to the weights; then ``n_rounds`` rounds, each
    keeping every row independently with probability
    ``min(1, l w(x) d(x, C) / phi(C))`` (``l = oversampling * n_clusters``,
    ``d`` the metric's k-means cost, ``phi`` its weighted sum); then step 7:
    each candidate weighted by the total sample weight of the rows nearest to
    it; then step 8: the weighted candidates clustered in memory by
    ``KMeans(init="k-means++")`` in the same metric. Two passes per round
    (the cost, then the sample), one for the weights.
    """
    from unsup.cluster import KMeans

    dtype = spec[2]
    first = _weighted_sample(blocks, 1, random_state)
    C = _work_rows(first, *spec)
    seed = _seed(random_state)
    ell = oversampling * n_clusters
    for rnd in range(n_rounds):
        phi = math.fsum(_each_block(_cost_block, blocks, spec, C))
        if not phi > 0:
            break
        new = _each_block(_oversample_block, blocks, spec, C, phi, ell, seed, rnd)
        C = np.vstack([C] + [c for c in new if len(c)])
    C = np.unique(C, axis=0).astype(dtype, copy=False)
    weights = sum(_each_block(_candidate_weights_block, blocks, spec, C))
    keep = weights > 0
    C, weights = C[keep], weights[keep]
    if len(C) <= n_clusters:
        if len(C) < n_clusters:
            raise ValueError(
                f"k-means|| found {len(C)} distinct points of positive weight, fewer than "
                f"n_clusters={n_clusters}."
            )
        return C
    inner = KMeans(
        n_clusters=n_clusters, metric=metric, metric_params=metric_params, init="k-means++",
        n_init=1, random_state=random_state,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        centres = inner.fit(C, sample_weight=weights).cluster_centers_
    return np.ascontiguousarray(centres, dtype=dtype)


def _labels_lloyd(Xw, w, centres):
    """scikit-learn's Lloyd labelling (its chunked kernel, one thread): the in-memory fit's labels."""
    from unsup._sklearn_adapter import lloyd_step

    return lloyd_step(Xw, w, centres, 1)[0]


def _sub_blocks(X, w, spec, weight_dtype=None):
    """``(start, rows in the fit's coordinates, their weights)`` of consecutive slices of a block.

    The weights are in the rows' dtype (as scikit-learn's Lloyd step takes
    them) unless ``weight_dtype`` says otherwise.
    """
    X = np.asarray(X)
    dtype = spec[2] if weight_dtype is None else weight_dtype
    for a in range(0, len(X), _SUB_ROWS):
        Xs = _work_rows(X[a : a + _SUB_ROWS], *spec)
        yield a, Xs, _block_weights(None if w is None else np.asarray(w)[a : a + _SUB_ROWS], len(Xs), dtype)


def _lloyd_block(X, w, start, spec, centres):
    """One Lloyd pass over a block: weighted sums and weights per cluster."""
    import scipy.sparse as sp

    k, d = centres.shape
    sums, weights = np.zeros((k, d)), np.zeros(k)
    for _, Xs, ws in _sub_blocks(X, w, spec):
        labels = _labels_lloyd(Xs, ws, centres)
        onehot = sp.csr_matrix((ws, (labels, np.arange(len(labels)))), shape=(k, len(labels)))
        sums += np.asarray(onehot @ Xs, dtype=np.float64)
        weights += np.bincount(labels, weights=ws.astype(np.float64), minlength=k)
    return sums, weights


def _far_block(X, w, start, spec, centres, m):
    """The ``m`` rows of a block farthest (unweighted squared distance) from their centres.

    scikit-learn moves the centres of empty clusters onto these; asked for
    only in the rare iterations that leave a cluster empty.
    """
    far_d, far_i, far_x, far_w, far_l = [], [], [], [], []
    for a, Xs, ws in _sub_blocks(X, w, spec):
        labels = _labels_lloyd(Xs, ws, centres)
        diff = Xs - centres[labels]
        dist = np.einsum("ij,ij->i", diff, diff)
        top = np.argpartition(dist, len(dist) - min(m, len(dist)))[len(dist) - min(m, len(dist)) :]
        far_d.append(dist[top]), far_i.append(start + a + top), far_x.append(Xs[top])
        far_w.append(ws[top]), far_l.append(labels[top])
    cat = np.concatenate
    if not far_d:
        return np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros((0, centres.shape[1])), np.zeros(0), np.zeros(0, dtype=np.int32)
    return cat(far_d), cat(far_i), cat(far_x), cat(far_w), cat(far_l)


def _final_block(X, w, start, spec, centres):
    """Labels' cluster weights and the inertia of a block on the final centres."""
    from unsup.metrics._pairwise import _argmin_min

    k = len(centres)
    weights, inertia = np.zeros(k), 0.0
    cost = None if spec[0] == "center" else _cost_metric(spec)
    for _, Xs, ws in _sub_blocks(X, w, spec):
        if cost is None:
            labels = _labels_lloyd(Xs, ws, centres)
            diff = Xs - centres[labels]
            mins = np.einsum("ij,ij->i", diff, diff)
        else:
            labels, mins = _argmin_min(Xs, centres, cost)
        w64 = ws.astype(np.float64)
        weights += np.bincount(labels, weights=w64, minlength=k)
        inertia += float(mins.astype(np.float64) @ w64)
    return weights, inertia


def _relocate_lloyd(blocks, spec, sums, weights, centres_old):
    """scikit-learn's ``_relocate_empty_clusters_dense``, over the blocks' farthest rows."""
    empty = np.flatnonzero(weights == 0)
    if not len(empty):
        return
    parts = _each_block(_far_block, blocks, spec, centres_old, len(empty))
    dist, index, rows, wts, labs = (np.concatenate([p[i] for p in parts]) for i in range(5))
    if not len(dist) or dist.max() == 0:
        return
    order = np.lexsort((index, -dist))[: len(empty)]
    for new_id, i in zip(empty, order):
        old_id = labs[i]
        sums[old_id] -= rows[i] * wts[i]
        sums[new_id] = rows[i] * wts[i]
        weights[new_id] = wts[i]
        weights[old_id] -= wts[i]


def _run_lloyd(blocks, spec, centres, *, max_iter, tol, verbose):
    """Lloyd (or spherical) iterations, one pass each; convergence as scikit-learn's.

    scikit-learn stops when the labels repeat (strict convergence) or the
    centre shift is within ``tol``; repeated labels give the same centres
    again, a shift of exactly zero, so the shift alone stops at the same
    iteration with the same centres.
    """
    dtype = spec[2]
    centres = np.ascontiguousarray(centres, dtype=dtype)
    for i in range(max_iter):
        parts = _each_block(_lloyd_block, blocks, spec, centres)
        sums = sum(p[0] for p in parts)
        weights = sum(p[1] for p in parts)
        _relocate_lloyd(blocks, spec, sums, weights, centres)
        new = sums.copy()
        hit = weights > 0
        new[hit] /= weights[hit][:, None]
        new = new.astype(dtype)
        if spec[0] == "unit":
            new = _work_rows(new, *spec)
        shift = float(((new - centres) ** 2).sum())
        centres = np.ascontiguousarray(new)
        if verbose:
            print(f"Iteration {i}, center shift {shift}.")
        if shift <= tol:
            if verbose:
                print(f"Converged at iteration {i}: center shift {shift} within tolerance {tol}.")
            break
    return centres, i + 1


def _modes_block(X, w, start, spec, centres, max_values):
    """One k-modes pass over a block: weighted value counts per (cluster, column), farthest rows.

    Read in slices of ``_SUB_ROWS`` rows (the distinct values first, then the
    counts), so the codes and labels held are a slice's, not the block's. The
    farthest rows are the ``min(k, rows)`` of positive weight and largest cost,
    ties to the later row, the order in which ``_run_modes`` takes them.
    """
    from unsup.metrics._pairwise import _argmin_min

    X = np.asarray(X)
    values = np.zeros(0, dtype=spec[2])
    for a in range(0, len(X), _SUB_ROWS):
        values = np.union1d(values, _work_rows(X[a : a + _SUB_ROWS], *spec))
        if len(values) > max_values:
            return None
    k, d = centres.shape
    nv = len(values)
    counts = np.zeros(k * d * nv)
    m = min(k, len(X))
    far_cost, far_index, far_rows = np.zeros(0), np.zeros(0, dtype=np.int64), np.zeros((0, d), dtype=spec[2])
    cost = _cost_metric(spec)
    for a, Xs, ws in _sub_blocks(X, w, spec, np.float64):
        labels, mins = _argmin_min(Xs, centres, cost)
        codes = np.searchsorted(values, Xs)
        flat = ((labels[:, None] * d + np.arange(d)) * nv + codes).ravel()
        counts += np.bincount(flat, weights=np.repeat(ws, d), minlength=k * d * nv)
        far_cost = np.concatenate([far_cost, np.where(ws > 0, mins.astype(np.float64), -np.inf)])
        far_index = np.concatenate([far_index, start + a + np.arange(len(Xs))])
        far_rows = np.concatenate([far_rows, Xs])
        keep = np.lexsort((-far_index, -far_cost))[:m]
        far_cost, far_index, far_rows = far_cost[keep], far_index[keep], far_rows[keep]
    return values, counts.reshape(k, d, nv), (far_cost, far_index, far_rows)


def _run_modes(blocks, spec, centres, *, max_iter, tol, verbose, max_values):
    """k-modes iterations, one pass each (the in-memory generic loop's rule); None if too many values."""
    dtype = spec[2]
    k, d = centres.shape
    for i in range(max_iter):
        parts = _each_block(_modes_block, blocks, spec, centres, max_values)
        if any(p is None for p in parts):
            return None
        values = functools.reduce(np.union1d, [p[0] for p in parts])
        if len(values) > max_values:
            return None
        counts = np.zeros((k, d, len(values)))
        for v, c, *_ in parts:
            counts[:, :, np.searchsorted(values, v)] += c
        new = values[counts.argmax(axis=2)].astype(dtype)
        empty = np.flatnonzero(counts.sum(axis=2)[:, 0] == 0)
        if len(empty):  # the generic loop's _relocate_empty: the farthest rows of positive weight
            cost = np.concatenate([p[2][0] for p in parts])
            index = np.concatenate([p[2][1] for p in parts])
            rows = np.concatenate([p[2][2] for p in parts])
            order = np.lexsort((-index, -cost))[: len(empty)]
            new[empty[: len(order)]] = rows[order]
        shift = float(((new - centres) ** 2).sum())
        centres = new
        if verbose:
            print(f"Iteration {i}, center shift {shift}.")
        if shift <= tol:
            break
    return centres, i + 1


def _run_minibatch(estimator, A, w, centres, random_state, *, max_iter, tol, verbose):
    """Mini-batch k-means over the blocks (each block one batch, in a shuffled order per epoch)."""
    from sklearn.base import clone

    inner = clone(estimator).set_params(init=centres, n_init=1, batch_size=None, verbose=0)
    xs = A.to_delayed().ravel()
    ws = None if w is None else w.to_delayed().ravel()
    for epoch in range(max_iter):
        before = None if not hasattr(inner, "cluster_centers_") else inner.cluster_centers_.copy()
        for b in random_state.permutation(len(xs)):
            Xb = np.asarray(xs[b].compute())
            wb = None if ws is None else np.asarray(ws[b].compute())
            if len(Xb) == 0 or (not hasattr(inner, "cluster_centers_") and len(Xb) < estimator.n_clusters):
                continue
            inner.partial_fit(Xb, sample_weight=wb)
        if before is not None:
            shift = float(((inner.cluster_centers_ - before) ** 2).sum())
            if verbose:
                print(f"Epoch {epoch}: center shift {shift}.")
            if shift <= tol:
                break
    return inner.cluster_centers_, epoch + 1


def fit_kmeans(estimator, X, y=None, sample_weight=None):
    """``KMeans.fit`` on a dask array (see :meth:`unsup.cluster.KMeans.fit`)."""
    from unsup.cluster._kmeans import _MAX_STREAMED_MODES

    estimator._validate_params()
    metric = estimator._get_metric()
    A, w, blocks, summary, names = _prepare_fit(estimator, X, sample_weight)
    n, d = A.shape
    k = estimator.n_clusters
    if n < k:
        raise ValueError(f"n_samples={n} should be >= n_clusters={k}.")
    init = estimator.init
    is_random = isinstance(init, str) and init == "random"
    if w is not None and is_random and summary.n_positive < k:
        raise ValueError(
            f"init='random' needs at least n_clusters={k} samples of positive sample_weight, "
            f"got {summary.n_positive}."
        )
    n_init = (10 if is_random else 1) if estimator.n_init == "auto" else estimator.n_init
    explicit = not (isinstance(init, str) or callable(init))
    if explicit and n_init != 1:
        warnings.warn(
            "Explicit initial center position passed: performing only one init "
            f"in {type(estimator).__name__} instead of n_init={n_init}.",
            RuntimeWarning,
            stacklevel=3,
        )
        n_init = 1
    tol = float(np.mean(summary.var) * estimator.tol) if estimator.tol else 0.0
    dtype = A.dtype
    rule = metric.centre_rule
    mode = _fit_mode(metric)
    shift = summary.mean.astype(dtype) if mode == "center" else np.zeros(d, dtype=dtype)
    spec = (mode, shift, dtype, estimator.metric, dict(estimator.metric_params or {}))
    random_state = check_random_state(estimator.random_state)
    if not metric.streams_exactly:
        warnings.warn(
            f"KMeans(metric={metric.name!r}) on a dask array: the {rule} centre has no per-block "
            "summary, so the fit runs mini-batch k-means over the blocks (partial_fit), an "
            "approximation of the in-memory fit.",
            UserWarning,
            stacklevel=3,
        )

    best = None
    for _ in range(n_init):
        centres = _initial_centres(estimator, A, blocks, spec, metric, random_state, explicit)
        if mode == "unit":
            centres = metric.prepare(centres)
        if estimator.verbose:
            print("Initialization complete")
        kwargs = dict(max_iter=estimator.max_iter, tol=tol, verbose=estimator.verbose)
        run = None
        if rule in ("mean", "normalized_mean"):
            run = _run_lloyd(blocks, spec, centres, **kwargs)
        elif rule == "mode":
            run = _run_modes(blocks, spec, centres, max_values=_MAX_STREAMED_MODES, **kwargs)
            if run is None:
                warnings.warn(
                    "KMeans(metric='hamming') on a dask array: more than "
                    f"{_MAX_STREAMED_MODES} distinct values, so the modes are streamed by "
                    "mini-batch k-means over the blocks, an approximation of the in-memory fit.",
                    UserWarning,
                    stacklevel=3,
                )
        if run is None:
            run = _run_minibatch(estimator, A, w, centres, random_state, **kwargs)
        centres, n_iter = run
        parts = _each_block(_final_block, blocks, spec, centres)
        cluster_weights = sum(p[0] for p in parts)
        inertia = math.fsum(p[1] for p in parts)
        if best is None or inertia < best[1]:
            best = (centres, inertia, n_iter, cluster_weights)
    centres, inertia, n_iter, cluster_weights = best
    centres = (centres.astype(np.float64) + spec[1]).astype(dtype) if mode == "center" else centres

    # Every pass succeeded: only now does the estimator change.
    for stale in ("_stream", "n_steps_", "labels_"):
        estimator.__dict__.pop(stale, None)
    _set_features(estimator, d, names)
    estimator._metric = metric
    estimator._n_init = n_init
    estimator._tol = tol
    estimator.cluster_centers_ = np.ascontiguousarray(centres)
    estimator.inertia_ = float(inertia)
    estimator.n_iter_ = n_iter
    estimator._cluster_weights = cluster_weights
    estimator._n_features_out = k
    estimator.labels_ = _lazy_map(_predictor(estimator), "predict", A, names)
    distinct = int(np.count_nonzero(cluster_weights > 0))
    if distinct < k:
        warnings.warn(
            f"Number of distinct clusters ({distinct}) found smaller than "
            f"n_clusters ({k}). Possibly due to duplicate points in X.",
            ConvergenceWarning,
            stacklevel=3,
        )
    return estimator


def _predictor(estimator):
    """A shallow copy without ``labels_``: what the lazy ``labels_`` graph holds (no cycle)."""
    twin = copy.copy(estimator)
    twin.__dict__.pop("labels_", None)
    return twin


def _initial_centres(estimator, A, blocks, spec, metric, random_state, explicit):
    """Initial centres in the coordinates of the fit (centred for Lloyd)."""
    init = estimator.init
    k, d, dtype = estimator.n_clusters, A.shape[1], spec[2]
    if explicit:
        from sklearn.utils import check_array

        centres = check_array(init, dtype=dtype, copy=True, order="C", input_name="init")
    elif callable(init):
        centres = init(A, k, random_state=random_state)
        centres = np.asarray(centres.compute() if is_dask(centres) else centres, dtype=dtype)
    elif init == "random":
        return _work_rows(_weighted_sample(blocks, k, random_state), *spec)
    else:  # "k-means||" and "k-means++": the scalable seeding
        return kmeans_parallel_init(
            blocks, spec, k, random_state, metric=spec[3], metric_params=spec[4]
        )
    if centres.shape != (k, d):
        what = "number of clusters" if centres.shape[0] != k else "number of features of the data"
        other = k if centres.shape[0] != k else d
        raise ValueError(
            f"The shape of the initial centers {centres.shape} does not match the {what} {other}."
        )
    return np.ascontiguousarray(centres - spec[1].astype(dtype)) if spec[0] == "center" else centres


# -------------------------------------------------------- GaussianMixture
class _GlobalData:
    """What :class:`unsup.mixture._em.Params` and ``_parameters`` read of the whole data."""

    def __init__(self, n_samples, n_features, dtype, covariance_type, total_weight, offset, radius):
        from unsup.mixture._em import _n_moments

        self.dtype = np.dtype(dtype)
        self.eps = float(np.finfo(self.dtype).eps)
        self.n_samples, self.n_features = n_samples, n_features
        self.covariance_type = covariance_type
        self.total_weight = total_weight
        self.offset = np.asarray(offset, dtype=self.dtype)
        self.radius = radius
        self.n_moments = _n_moments(n_features, covariance_type)
        if covariance_type == "full":
            self._iu = np.triu_indices(n_features)
        self.S_all = None


def _em_block_data(X, w, ct, k, offset):
    from unsup.mixture._em import EMData

    X = np.ascontiguousarray(X, dtype=offset.dtype)
    return EMData(X, None if w is None else np.asarray(w), ct, k, offset=offset)


def _radius_block(X, w, start, ct, k, offset):
    """Largest row norm around the offset; the weighted second moment for ``tied``."""
    data = _em_block_data(X, w, ct, k, offset)
    S = data.S_all if ct == "tied" else None
    return data.radius, S


def _resp_moments_block(X, w, start, ct, k, offset, labels_source, seed, seeds=None):
    """Initial responsibilities' sums and moment sums (k-means labels, random, or seed rows)."""
    data = _em_block_data(X, w, ct, k, offset)
    n = data.n_samples
    if seeds is not None:  # "k-means++", "random_from_data": one row per component
        resp = _seed_resp(n, start, k, seeds, data.dtype)
    elif labels_source is None:  # init_params="random", a stream per block
        rng = np.random.default_rng([seed, start])
        resp = rng.random((n, k)).astype(data.dtype)
        resp /= resp.sum(axis=1)[:, None]
    else:
        labels = np.asarray(labels_source.predict(np.asarray(X)))
        resp = np.zeros((n, k), dtype=data.dtype)
        resp[np.arange(n), labels] = 1
    if data.w is not None:
        resp = resp * data.w[:, None]
    return resp.sum(axis=0, dtype=np.float64), (resp.T @ data.moments(0, n)).astype(np.float64), resp


def _em_block(X, w, start, ct, k, offset, params):
    """One block's E-step and M-step sums: (log-likelihood terms, resp sums, moment sums)."""
    from unsup.mixture._em import _normalise

    data = _em_block_data(X, w, ct, k, offset)
    totals, s, G = [], 0.0, 0.0
    for a, b in data.blocks():
        lp, F = params.log_prob_block(data, a, b)
        lpn = _normalise(lp)
        if data.w is not None:
            wb = data.w[a:b]
            lp *= wb[:, None]
            totals.append(float(np.dot(lpn.astype(np.float64), wb.astype(np.float64))))
        else:
            totals.append(float(np.sum(lpn, dtype=np.float64)))
        s = s + lp.sum(axis=0, dtype=np.float64)
        G = G + (lp.T @ F).astype(np.float64)
    return totals, s, G


def _exact_block(X, w, start, ct, k, offset, params, components, means):
    """Exact centred sums of a block for the flagged components (the M-step's second pass)."""
    from unsup.mixture._em import _centred_sums, _normalise

    data = _em_block_data(X, w, ct, k, offset)
    out = {}
    for a, b in data.blocks():
        lp, _ = params.log_prob_block(data, a, b)
        _normalise(lp)
        if data.w is not None:
            lp *= data.w[a:b][:, None]
        for j, v in _centred_sums(data, a, b, lp, means, components).items():
            out[j] = out.get(j, 0.0) + v
    return out


def _init_exact_block(X, w, start, ct, k, offset, labels_source, seed, seeds, components, means):
    from unsup.mixture._em import _centred_sums

    resp = _resp_moments_block(X, w, start, ct, k, offset, labels_source, seed, seeds)[2]
    data = _em_block_data(X, w, ct, k, offset)
    return _centred_sums(data, 0, data.n_samples, resp, means, components)


def _add_dicts(parts):
    total = {}
    for p in parts:
        for j, v in p.items():
            total[j] = total.get(j, 0.0) + v
    return total


def _em_step_dask(blocks, gdata, params, reg_covar, k):
    """:func:`unsup.mixture._em.em_step` over the blocks: one pass, reduced on the client."""
    from unsup.mixture._em import Params, _parameters, precision_cholesky

    ct = gdata.covariance_type
    shipped = _shipped(params)
    parts = _each_block(_em_block, blocks, ct, k, gdata.offset, shipped)
    total = math.fsum(t for p in parts for t in p[0])
    s = sum(p[1] for p in parts)
    G = sum(p[2] for p in parts)

    def recompute(components, means):
        return _add_dicts(
            _each_block(_exact_block, blocks, ct, k, gdata.offset, shipped, list(components), means)
        )

    nk, means, cov = _parameters(gdata, s, G, reg_covar, recompute, params.dtype)
    pchol = precision_cholesky(cov, ct, gdata.dtype)
    return total / gdata.total_weight, Params(nk / nk.sum(), means, pchol, gdata, covariances=cov)


def _initial_gmm_params(estimator, A, w, blocks, gdata, random_state, init):
    from unsup.cluster import KMeans
    from unsup.mixture._em import _parameters, initial_params, tied_rest_correction

    ct, k = estimator.covariance_type, estimator.n_components
    weights = means = covariances = None
    if len(init) < 3:
        seeds = None
        if estimator.init_params == "kmeans":
            km = KMeans(
                n_clusters=k, metric=estimator.metric, metric_params=estimator.metric_params,
                init="k-means||", n_init=1, random_state=random_state,
            )
            source = _predictor(fit_kmeans(km, A, sample_weight=w))
            seed = 0
        elif estimator.init_params == "random":
            source, seed = None, _seed(random_state)
        else:
            source, seed = None, None
            seeds = (_random_rows(A, w, k, random_state) if estimator.init_params == "random_from_data"
                     else _kmeans_plusplus_rows(estimator, A, w, blocks, k, random_state))
        shipped = _shipped(source)
        parts = _each_block(_resp_moments_block, blocks, ct, k, gdata.offset, shipped, seed, seeds)
        s = sum(p[0] for p in parts)
        G = sum(p[1] for p in parts)

        def recompute(components, means):
            return _add_dicts(_each_block(
                _init_exact_block, blocks, ct, k, gdata.offset, shipped, seed, seeds, list(components), means
            ))

        nk, means, covariances = _parameters(gdata, s, G, estimator.reg_covar, recompute, gdata.dtype)
        if ct == "tied" and seeds is not None:  # rows outside the seeds: scikit-learn's tied formula
            rest = sum(_each_block(_tied_rest_block, blocks, ct, k, gdata.offset, seeds))
            covariances = covariances + tied_rest_correction(rest, gdata.offset) / nk.sum()
        weights = nk / gdata.total_weight
    return initial_params(gdata, init, weights, means, covariances)


def _seed_resp(n, start, k, seeds, dtype):
    """One-hot responsibilities of the block's seed rows (component ``j`` on row ``seeds[j]``)."""
    resp = np.zeros((n, k), dtype=dtype)
    local = np.asarray(seeds) - start
    inside = (local >= 0) & (local < n)
    resp[local[inside], np.flatnonzero(inside)] = 1
    return resp


def _tied_rest_block(X, w, start, ct, k, offset, seeds):
    from unsup.mixture._em import tied_rest_sums

    data = _em_block_data(X, w, ct, k, offset)
    resp = _seed_resp(data.n_samples, start, k, seeds, np.float64)
    if data.w is not None:
        resp = resp * data.w[:, None]
    return tied_rest_sums(data.X, data.w, resp)


def _random_rows(A, w, k, random_state):
    """``init_params="random_from_data"``: scikit-learn's draw of ``k`` distinct rows, by weight.

    The same call on the same stream as in memory (so the same rows); with
    unequal weights the weight vector (one float per row) is gathered for it.
    """
    n = A.shape[0]
    p = None
    if w is not None:
        wv = np.asarray(w.compute(), dtype=np.float64) if is_dask(w) else np.asarray(w, dtype=np.float64)
        if not np.all(wv == wv[0]):
            p = wv / wv.sum(dtype=np.float64)
    return random_state.choice(n, size=k, replace=False, p=p)


def _kmeans_plusplus_rows(estimator, A, w, blocks, k, random_state):
    """``init_params="k-means++"``: the greedy k-means++ seeding of the in-memory fit, pass by pass.

    scikit-learn's draws on the same random stream (the first row by weight,
    then ``2 + log k`` candidates by weight times cost to the nearest seed,
    the one that lowers the potential most kept), in the metric's k-means
    cost. Two passes per seed: one locates the candidates in the running
    cumulative sum, one scores them; the costs to the seeds are recomputed
    per pass, not held. The same rows as in memory up to the rounding of the
    cumulative sums.
    """
    from unsup.metrics._registry import get_metric

    cost = get_metric(estimator.metric, **(estimator.metric_params or {})).cost()
    n_local_trials = 2 + int(np.log(k))
    starts = np.asarray([b[2] for b in blocks])
    nonempty = np.asarray(A.chunks[0]) > 0
    rows = np.empty((0, A.shape[1]), dtype=A.dtype)

    def pick(totals, targets, side):
        """The global index (and the row) where the cumulative sum of weight x cost reaches each target."""
        ends = np.cumsum(totals)
        owners = np.flatnonzero(nonempty)
        owner = owners[np.minimum(np.searchsorted(ends[owners], targets, side=side), len(owners) - 1)]
        assigned = {}
        for j, (b, t) in enumerate(zip(owner, targets)):
            assigned.setdefault(int(starts[b]), []).append((j, t - (ends[b] - totals[b])))
        index = np.empty(len(targets), dtype=np.int64)
        found_rows = np.empty((len(targets), A.shape[1]), dtype=A.dtype)
        for ids, idx, r in _each_block(_locate_block, blocks, cost, rows, assigned, side):
            index[ids], found_rows[ids] = idx, r
        return index, found_rows

    totals = np.asarray(_each_block(_weight_cost_total_block, blocks, cost, rows), dtype=np.float64)
    first, rows = pick(totals, np.array([random_state.random_sample() * totals.sum()]), "right")
    indices = [int(first[0])]
    totals = np.asarray(_each_block(_weight_cost_total_block, blocks, cost, rows), dtype=np.float64)
    for _ in range(1, k):
        targets = random_state.uniform(size=n_local_trials) * totals.sum()
        candidates, candidate_rows = pick(totals, targets, "left")
        per_block = np.asarray(_each_block(_candidate_potentials_block, blocks, cost, rows, candidate_rows))
        best = int(np.argmin(per_block.sum(axis=0)))
        indices.append(int(candidates[best]))
        rows = np.vstack([rows, candidate_rows[best : best + 1]])
        totals = per_block[:, best]
    return np.asarray(indices)


def _weighted_cost(X, w, cost, rows):
    """Each row's weight times its k-means cost to the nearest of ``rows`` (the weight alone before any)."""
    X = np.asarray(X)
    closest = np.ones(len(X)) if len(rows) == 0 else _cost_to(cost, rows, X).min(axis=0)
    return closest if w is None else np.asarray(w, dtype=np.float64) * closest


def _cost_to(cost, rows, X):
    return cost._block(rows.astype(X.dtype, copy=False), X).astype(np.float64)


def _weight_cost_total_block(X, w, start, cost, rows):
    return float(np.sum(_weighted_cost(X, w, cost, rows)))


def _locate_block(X, w, start, cost, rows, assigned, side):
    """``(target ids, global indices, rows)`` of the targets this block holds, in its cumulative sum."""
    X = np.asarray(X)
    mine = assigned.get(start, [])
    if not mine:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), X[:0]
    ids = np.asarray([j for j, _ in mine], dtype=np.int64)
    local = np.searchsorted(np.cumsum(_weighted_cost(X, w, cost, rows)), [t for _, t in mine], side=side)
    local = np.minimum(local, len(X) - 1)
    return ids, start + local, X[local]


def _candidate_potentials_block(X, w, start, cost, rows, candidate_rows):
    """Per candidate: the block's sum of weight x cost to the nearest seed once the candidate is one."""
    X = np.asarray(X)
    to_candidates = _cost_to(cost, candidate_rows, X)
    if len(rows):
        np.minimum(to_candidates, _cost_to(cost, rows, X).min(axis=0), out=to_candidates)
    if w is not None:
        to_candidates *= np.asarray(w, dtype=np.float64)
    return to_candidates.sum(axis=1)


def fit_predict_gmm(estimator, X, y=None, sample_weight=None):
    """``GaussianMixture.fit_predict`` on a dask array; returns the lazy labels."""
    from unsup.metrics._registry import get_metric
    from unsup.mixture._em import Params

    estimator._validate_params()
    A, w, blocks, summary, names = _prepare_fit(estimator, X, sample_weight, min_samples=2)
    n, d = A.shape
    k, ct = estimator.n_components, estimator.covariance_type
    if n < k:
        raise ValueError(
            f"Expected n_samples >= n_components but got n_components = {k}, n_samples = {n}"
        )
    if w is not None and summary.n_positive < k:
        raise ValueError(
            f"Expected at least n_components = {k} samples of positive sample_weight, "
            f"got {summary.n_positive}."
        )
    init = estimator._check_params_vs_input(np.empty((k, d)), None)  # the shapes of the initial parameters
    get_metric(estimator.metric, **(estimator.metric_params or {}))
    offset = (summary.weighted_mean if w is not None else summary.mean).astype(A.dtype)
    radius_parts = _each_block(_radius_block, blocks, ct, k, offset)
    total_weight = float(n) if w is None else summary.total_weight
    gdata = _GlobalData(n, d, A.dtype, ct, total_weight, offset, max(r[0] for r in radius_parts))
    if ct == "tied":
        gdata.S_all = sum(r[1] for r in radius_parts)

    random_state = check_random_state(estimator.random_state)

    def start(do_init):
        if do_init:
            return _initial_gmm_params(estimator, A, w, blocks, gdata, random_state, init)
        return Params(
            estimator.weights_, estimator.means_ - gdata.offset, estimator.precisions_cholesky_,
            gdata, covariances=estimator.covariances_,
        )

    best = estimator._em_runs(start, lambda params: _em_step_dask(blocks, gdata, params, estimator.reg_covar, k))
    # Every pass succeeded: only now does the estimator change.
    _set_features(estimator, d, names)
    estimator._set_fit(best, gdata.offset, A.dtype)
    estimator.labels_ = _lazy_map(_predictor(estimator), "predict", A, names)
    return estimator.labels_


# --------------------------------------------------------------- Quantizer
def fit_quantizer(estimator, X, y=None):
    """``Quantizer.fit`` on a dask array: the observer updated block by block, as ``partial_fit``."""
    A, names = as_dask_array(X, estimator, reset=True, lengths=True)
    fresh = copy.deepcopy(estimator)
    for name in ("observer_", "scale_", "zero_point_", "n_samples_seen_", "n_features_in_", "feature_names_in_"):
        fresh.__dict__.pop(name, None)
    for block in A.to_delayed().ravel():
        Xb = np.asarray(block.compute())
        if len(Xb):
            type(estimator).partial_fit(fresh, Xb)
    if not hasattr(fresh, "n_samples_seen_"):
        raise ValueError(f"Found array with 0 sample(s) (shape={A.shape}) while a minimum of 1 is required.")
    estimator.__dict__.update(fresh.__dict__)
    _set_features(estimator, A.shape[1], names)
    return estimator


def _column_sums_block(X, w, start, column_sums):
    return column_sums(np.asarray(X))


def _levels_block(X, w, start, embedding):
    """The block's unpacked codes, and its float latents where ``keep_float`` keeps them."""
    Z = np.ascontiguousarray(X)
    return embedding._codec().encode(Z), (Z if embedding.keep_float else None)


def fit_quantized_embedding(estimator, X, y=None):
    """``QuantizedEmbedding.fit`` on a dask array: calibrated block by block, the codes gathered.

    The encoder (none, or one whose ``fit`` takes dask arrays: an unsup
    ``Autoencoder`` or ``VariationalAutoencoder``) is fitted on the dask array
    and its codes computed lazily; 8- and 4-bit codes are calibrated by
    :func:`fit_quantizer` (the observer updated block by block), 1-bit
    thresholds and levels from per-block column sums (one pass, two with the
    asymmetric scheme). The codes of every row are then gathered into memory
    for :meth:`~unsup.quantization.QuantizedEmbedding.kneighbors`
    (``compression_ratio_`` times smaller than the float32 embedding), and
    the float latents too where ``keep_float=True`` asks for them, as in
    memory. Returns the unpacked codes (for ``fit_transform``).
    """
    from sklearn.base import clone

    from unsup.quantization._codecs import CODECS, BinaryCodec, sign_levels_from_sums

    fresh = copy.deepcopy(estimator)
    fresh._check_params()
    for name in ("encoder_", "quantizer_", "threshold_", "levels_", "codes_", "embedding_",
                 "n_features_in_", "feature_names_in_"):
        fresh.__dict__.pop(name, None)
    A, names = as_dask_array(X, fresh, reset=True, lengths=True)
    if fresh.encoder is None:
        fresh.encoder_ = None
        Z = A if A.dtype in (np.float32, np.float64) else A.astype(np.float64)
    else:
        encoder = clone(fresh.encoder)
        if not getattr(type(encoder).fit, "_unsup_dask", False):
            raise TypeError(
                f"The encoder {type(encoder).__name__} cannot fit on a dask array without computing it "
                "whole; use an unsup Autoencoder or VariationalAutoencoder (they train on the blocks), "
                "fit this QuantizedEmbedding on an in-memory sample, or pass the embedding itself "
                "with encoder=None."
            )
        fresh.encoder_ = encoder.fit(A, y)
        Z = fresh.encoder_.transform(A)
    n, d = Z.shape
    if n < 1:
        raise ValueError(f"Found array with 0 sample(s) (shape={A.shape}) while a minimum of 1 is required.")
    fresh._dtype = Z.dtype
    fresh.n_components_ = d
    if fresh.n_bits == 1:
        blocks = _blocks(Z, None)

        def reduce(column_sums):
            total = sum(_each_block(_column_sums_block, blocks, column_sums))
            if not np.all(np.isfinite(total)):
                raise ValueError("Input contains NaN, infinity or a value too large for dtype('float64').")
            return total

        codec = BinaryCodec(
            *sign_levels_from_sums(reduce, (n, d), Z.dtype, fresh.scheme, fresh.granularity, fresh.block_size), d
        )
    else:
        codec = CODECS[fresh.n_bits].calibrate(
            Z, scheme=fresh.scheme, granularity=fresh.granularity, block_size=fresh.block_size,
            observer=fresh.observer,
        )
    fresh.__dict__.update(codec.fitted_attributes())
    parts = _each_block(_levels_block, _blocks(Z, None), _shipped(fresh))
    levels = fresh._set_codes(codec, Z, np.concatenate([p[0] for p in parts]))
    fresh.embedding_ = np.concatenate([p[1] for p in parts]) if fresh.keep_float else None
    _set_features(fresh, A.shape[1], names)
    estimator.__dict__.clear()
    estimator.__dict__.update(fresh.__dict__)
    return levels


# ---------------------------------------------------------- neural networks
# Validation rows held back from a dask array: the validation_fraction of the
# rows, at most this many (they are kept in memory for the whole fit).
_MAX_VALIDATION_ROWS = 50_000


def _validation_mask(n, start, seed, p):
    """Which rows of a block are held back for validation (the same rows at every epoch)."""
    return np.random.default_rng([seed, start]).random(n) < p


def _validation_block(X, w, start, seed, p):
    X = np.asarray(X)
    return X[_validation_mask(len(X), start, seed, p)]


class _BlockRows:
    """The training rows of a dask array for :func:`unsup.neural._training.train`, a block at a time.

    Each epoch visits every block once, in an order drawn from the training
    generator, computes it, drops its validation rows, standardises it and
    shuffles its rows (the training loop's in-memory shuffling, per block).
    """

    def __init__(self, work, A, blocks):
        self.work, self.A, self.blocks = work, A, blocks
        self.delayed = A.to_delayed().ravel()
        self.max_rows = max(A.chunks[0])
        self.seed, self.p = None, 0.0

    def hold_back_validation(self):
        """The standardised validation rows (None without), left out of every epoch.

        ``validation_fraction`` of the rows with early stopping, at most
        ``_MAX_VALIDATION_ROWS``; drawn per block from a seed of the training
        generator, so the same rows every epoch.
        """
        import torch

        work = self.work
        self.seed = int(torch.randint(0, np.iinfo(np.int32).max, (1,), generator=work._generator))
        fraction = work.validation_fraction if work.early_stopping else 0.0
        self.p = min(fraction, _MAX_VALIDATION_ROWS / self.A.shape[0])
        if self.p > 0:
            rows = np.vstack(_each_block(_validation_block, self.blocks, self.seed, self.p))
            if len(rows):
                return work._standardise(np.ascontiguousarray(rows))
        return None

    def epoch(self, generator):
        import torch

        for b in torch.randperm(len(self.delayed), generator=generator).tolist():
            Xb = np.asarray(self.delayed[b].compute())
            if self.p > 0:
                Xb = Xb[~_validation_mask(len(Xb), self.blocks[b][2], self.seed, self.p)]
            if len(Xb):
                xs = self.work._standardise(np.ascontiguousarray(Xb))
                yield xs[torch.randperm(xs.shape[0], generator=generator).to(xs.device)]


def fit_neural(estimator, X, y=None):
    """``Autoencoder.fit`` / ``VariationalAutoencoder.fit`` on a dask array, streaming the blocks.

    The scaling statistics come from a first pass; ``validation_fraction`` of
    the rows (at most ``_MAX_VALIDATION_ROWS``) are held back at the start
    for early stopping; each epoch visits every block once, in a shuffled
    order, and trains on its rows (shuffled within the block) with the
    in-memory training loop, which takes the blocks as its row source
    (:class:`_BlockRows`).
    Peak memory is one block and the validation rows. ``offset_`` is the
    ``contamination`` percentile of the training scores, gathered (one float
    per row).
    """
    from sklearn.base import clone

    from unsup.neural._training import TrainConfig, TrainState, train

    estimator._validate_params()
    A, _, blocks, summary, names = _prepare_fit(estimator, X, None, min_samples=2)
    d = A.shape[1]
    work = clone(estimator)
    work._check_params_vs_input(d)
    work._initialise(np.zeros((2, d), dtype=A.dtype))  # modules, generators: the statistics come next
    work._set_scaling(summary.mean.copy(), np.sqrt(summary.var))
    rows = _BlockRows(work, A, blocks)
    X_val = rows.hold_back_validation()
    # warn_stacklevel 3: fit_neural <- the dask_support wrapper <- the user's call
    config = TrainConfig.of(work, warn_stacklevel=3 if work.early_stopping else None)
    result = train(
        work._modules(), work._batch_loss, rows, config, TrainState(work._generator, work._device_generator),
        X_val=X_val, sample_loss=work._sample_loss,
    )
    work._optimizer_state = result.optimizer_state
    work.loss_curve_, work.validation_scores_ = result.loss_curve, result.validation_scores
    work.best_loss_, work.n_iter_ = float(result.best_loss), result.n_epochs
    _set_features(work, d, names)
    work.offset_ = 0.0  # score_samples does not read it; set from the scores next
    scores = np.asarray(_lazy_map(work, "score_samples", A, names).compute())
    work.offset_ = float(np.percentile(scores, 100.0 * work.contamination))
    work.model_size_bytes_ = work._model_size()
    # Every pass succeeded: only now does the estimator change.
    for key in [k for k in vars(estimator) if k.endswith("_") and not k.startswith("__")]:
        del estimator.__dict__[key]
    params = estimator.get_params(deep=False)
    estimator.__dict__.update({k: v for k, v in vars(work).items() if k not in params})
    return estimator
