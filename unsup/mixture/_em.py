"""The EM step of a Gaussian mixture, batched over components and blocked over rows.

Design constraints
------------------
- The same EM as scikit-learn's ``GaussianMixture``: the same E-step (log
  densities from the Cholesky factors of the precisions), the same M-step
  (``nk + 10 eps``, ``reg_covar`` on the diagonal, covariances around each
  component's own mean), the same lower bound (the mean log-likelihood).
  Given the same parameters, every quantity equals scikit-learn's to
  round-off.
- Fast: scikit-learn loops over components with small matrix products, and
  its E-step writes an ``(n_samples, n_features)`` array per component. Here
  both steps are one matrix product each on *moment features* of a block of
  rows: ``[x, x_i x_j (i <= j)]`` for ``full``, ``[x, x**2]`` for ``diag``,
  ``[x, ||x||**2]`` for ``spherical``. The E-step is ``features @ W`` (the
  quadratic form of every component at once, its symmetry halving the
  work); the M-step is ``resp^T @ features`` (every component's weighted
  sums at once). One pass over the data per EM iteration does both: a
  block's responsibilities go straight into its sums, so the
  responsibilities of all rows never exist at once, and memory is bounded
  by the block size.
- Blocks run on a few Python threads (numpy releases the GIL in its loops
  and matrix products), each with one BLAS thread, and their sums are added
  in block order, so results do not depend on scheduling. No torch thread
  pool is involved: its per-op start-up cost is large on a busy machine.
- Accuracy: the data are centred on their (weighted) mean first. Expanded
  quadratic forms lose digits when the means are far from the data's centre
  compared with a component's spread; each component's loss is bounded from
  its parameters, and a component that would lose more than
  ``_MAX_DIGITS_LOST`` digits (4 of float64's 16) is computed exactly
  instead (the E-step from
  ``(x - mu) P`` as scikit-learn, the M-step covariance centred on the new
  mean in a second pass), so collapsed or far-away components are as
  accurate as scikit-learn's. ``tied`` uses scikit-learn's
  ``X^T X - sum nk mu mu^T`` under the same guard.
- ``sample_weight`` multiplies the responsibilities and the log-likelihoods:
  an integer weight is the same as repeating the row.
- float32 data stay float32 in the passes where that is stable (no
  component would lose more than 3 of float32's 7 digits), else the
  passes run in float64 (products of float32 values are exact in float64);
  sums over blocks and the small ``(k, d, d)`` algebra run in float64.
- Prior validation of data is assumed everywhere in this module.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg

from unsup.utils._threads import openmp_n_threads, single_threaded, thread_pool

# Working memory of one block of rows (per thread), in bytes: near the L2 cache.
_BLOCK_BYTES = 2 * 2**20
_MIN_BLOCK_ROWS = 64
# Decimal digits the expanded formulas may lose to cancellation, by the dtype
# they are computed in: float32 data are computed in float32 while none of
# their components would lose more than 3 of its 7 digits (an error in the
# log densities on a par with scikit-learn's own float32 rounding), else in
# float64; a component that would lose more than 4 of float64's 16 is
# computed exactly.
_MAX_DIGITS_LOST = {np.dtype(np.float64): 4.0, np.dtype(np.float32): 3.0}

_LOG_2PI = math.log(2 * math.pi)

ILL_DEFINED_COVARIANCE = (
    "Fitting the mixture model failed because some components have "
    "ill-defined empirical covariance (for instance caused by singleton "
    "or collapsed samples). Try to decrease the number of components, "
    "increase reg_covar, or scale the input data."
)


def _ill_defined(dtype) -> ValueError:
    msg = ILL_DEFINED_COVARIANCE
    if np.dtype(dtype) == np.float32:
        msg += " The numerical accuracy can also be improved by passing float64 data instead of float32."
    return ValueError(msg)


def _n_moments(n_features, covariance_type):
    d = n_features
    return {"full": d + d * (d + 1) // 2, "diag": 2 * d, "spherical": d + 1, "tied": d}[covariance_type]


# --------------------------------------------------------------------- data
class EMData:
    """The (centred) data of a fit or a prediction, with what every pass reuses.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features), float32 or float64
    sample_weight : ndarray of shape (n_samples,) or None
        ``None``: all ones (a faster path, the same result).
    covariance_type : {"full", "tied", "diag", "spherical"}
    n_components : int
    offset : ndarray of shape (n_features,), default=None
        The point the data are centred on; ``None``: their weighted mean.
    """

    def __init__(self, X, sample_weight, covariance_type, n_components, offset=None):
        self.dtype = X.dtype
        self.eps = float(np.finfo(self.dtype).eps)
        self.n_samples, self.n_features = X.shape
        self.covariance_type = covariance_type
        self.w = None if sample_weight is None else np.asarray(sample_weight, dtype=self.dtype)
        self.total_weight = float(
            self.n_samples if sample_weight is None else np.sum(sample_weight, dtype=np.float64)
        )
        if offset is None:
            w = None if self.w is None else self.w.astype(np.float64)
            offset = np.average(X, axis=0, weights=w) if self.n_samples else np.zeros(self.n_features)
        self.offset = np.asarray(offset, dtype=self.dtype)
        self.X = X - self.offset  # a fresh C-contiguous array of X's dtype
        # Largest row norm: bounds the cancellation of the expanded formulas.
        self.radius = float(np.sqrt(np.max(np.einsum("ij,ij->i", self.X, self.X), initial=0.0)))
        # Per feature, the variance that rounding alone leaves in a collapsed
        # component (identical rows): 16 ulps of the feature's largest centred
        # value, squared. Without reg_covar, a covariance at or below it is
        # numerically zero (ill-defined, as scikit-learn finds it).
        # (max and -min: no |X| copy of the data, which a worker's block would double)
        extent = np.maximum(
            np.max(self.X, axis=0, initial=0.0), -np.min(self.X, axis=0, initial=0.0)
        ).astype(np.float64)
        self.noise_floor = (16 * self.eps * extent) ** 2
        d, k = self.n_features, n_components
        self.n_moments = _n_moments(d, covariance_type)
        per_row = (self.n_moments + 4 * k + 2 * d) * self.dtype.itemsize
        self.rows = int(min(max(_MIN_BLOCK_ROWS, _BLOCK_BYTES // per_row), max(self.n_samples, 1)))
        if covariance_type == "full":
            self._iu = np.triu_indices(d)
        self._S_all = None

    @property
    def S_all(self):
        """``sum_i w_i x_i x_i^T`` (float64): the second moment of the tied covariance."""
        if self._S_all is None:
            Xw = self.X if self.w is None else self.X * self.w[:, None]
            self._S_all = (Xw.T @ self.X).astype(np.float64)
        return self._S_all

    def blocks(self):
        """``(start, stop)`` of each block of rows."""
        return [(s, min(s + self.rows, self.n_samples)) for s in range(0, self.n_samples, self.rows)]

    def moments(self, start, stop, dtype=None):
        """Moment features of rows ``start:stop``, of shape (n_rows, n_moments), in ``dtype``."""
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        Xb = self.X[start:stop].astype(dtype, copy=False)
        ct, d = self.covariance_type, self.n_features
        if ct == "tied":
            return Xb
        F = np.empty((stop - start, self.n_moments), dtype=dtype)
        F[:, :d] = Xb
        if ct == "diag":
            np.multiply(Xb, Xb, out=F[:, d:])
        elif ct == "spherical":
            np.einsum("ij,ij->i", Xb, Xb, out=F[:, d])
        else:  # x_i x_j for i <= j, row i of the upper triangle at a time
            pos = d
            for i in range(d):
                np.multiply(Xb[:, i:], Xb[:, i : i + 1], out=F[:, pos : pos + d - i])
                pos += d - i
        return F


def map_blocks(data: EMData, fn):
    """``[fn(start, stop) for each block]``, on a few threads when there are several blocks."""
    blocks = data.blocks()
    n_threads = min(openmp_n_threads(), len(blocks))
    # One BLAS thread per block: the products are small, and BLAS threads
    # waiting on each other cost far more than they give on a busy machine.
    with single_threaded("blas"):
        if n_threads <= 1:
            return [fn(start, stop) for start, stop in blocks]
        pool = thread_pool("em", openmp_n_threads())  # one size per process, not per call
        return list(pool.map(lambda b: fn(*b), blocks))


# --------------------------------------------------------------- precisions
def precision_cholesky(covariances, covariance_type, data_dtype=None, noise_floor=None):
    """Cholesky factors of the precisions (scikit-learn's ``_compute_precision_cholesky``).

    Raises the ill-defined-covariance ``ValueError`` (which names
    ``reg_covar``) where a covariance is not positive definite, or, given
    ``noise_floor``, where a variance (a Cholesky pivot squared for full and
    tied) is no larger than the rounding noise of the data: a component of
    identical rows then fails for all four types, as scikit-learn's does
    when its expanded formula rounds the variance to zero or below.

    Parameters
    ----------
    covariances : ndarray
        ``(k, d, d)`` full, ``(d, d)`` tied, ``(k, d)`` diag, ``(k,)`` spherical.
    covariance_type : str
    data_dtype : dtype, default=None
        The dtype of the data (for the error message); that of
        ``covariances`` if None.
    noise_floor : ndarray of shape (n_features,), default=None
        ``EMData.noise_floor``; None checks positivity only.

    Returns
    -------
    precisions_cholesky : ndarray of the same shape and dtype
        Upper triangular for full and tied (``P @ P.T`` is the precision).
    """
    data_dtype = covariances.dtype if data_dtype is None else data_dtype
    if covariance_type in ("full", "tied"):
        mats = covariances.reshape(-1, *covariances.shape[-2:])
        out = np.empty_like(mats)
        eye = np.eye(mats.shape[-1], dtype=mats.dtype)
        with single_threaded("blas"):  # small matrices: threads only cost
            for j, cov in enumerate(mats):
                try:
                    cov_chol = linalg.cholesky(cov, lower=True)
                except linalg.LinAlgError:
                    raise _ill_defined(data_dtype) from None
                if noise_floor is not None and np.any(np.diagonal(cov_chol) ** 2 <= noise_floor):
                    raise _ill_defined(data_dtype)
                out[j] = linalg.solve_triangular(cov_chol, eye, lower=True).T
        return out.reshape(covariances.shape)
    floor = 0.0
    if noise_floor is not None:
        floor = noise_floor if covariance_type == "diag" else float(np.mean(noise_floor))
    if np.any(covariances <= floor) or not np.all(np.isfinite(covariances)):
        raise _ill_defined(data_dtype)
    return 1.0 / np.sqrt(covariances)


def precision_cholesky_from_precisions(precisions, covariance_type):
    """Upper factors ``U`` with ``U @ U.T = precision`` (scikit-learn's flip-Cholesky-flip)."""
    if covariance_type in ("full", "tied"):
        mats = precisions.reshape(-1, *precisions.shape[-2:])
        out = np.stack([np.flip(linalg.cholesky(np.flip(p), lower=True)) for p in mats])
        return out.reshape(precisions.shape)
    return np.sqrt(precisions)


def precisions_from_cholesky(precisions_cholesky, covariance_type):
    """``P @ P.T`` (full, tied) or ``P**2`` (diag, spherical)."""
    if covariance_type in ("full", "tied"):
        return precisions_cholesky @ np.swapaxes(precisions_cholesky, -1, -2)
    return precisions_cholesky**2


def log_det_cholesky(precisions_cholesky, covariance_type, n_features):
    """Log-determinant of each Cholesky factor (half that of the precision)."""
    P = precisions_cholesky
    if covariance_type == "full":
        return np.log(np.diagonal(P, axis1=1, axis2=2)).sum(axis=1)
    if covariance_type == "tied":
        return np.log(np.diagonal(P)).sum()
    if covariance_type == "diag":
        return np.log(P).sum(axis=1)
    return n_features * np.log(P)


# ------------------------------------------------------------------- E-step
class Params:
    """Mixture parameters (means centred on ``data.offset``) and the E-step's matrices.

    Parameters
    ----------
    weights, means, precisions_cholesky, covariances : ndarray
        ``means`` in the centred coordinates of the data; ``covariances``
        may be ``None`` (initial precisions given by the user).
    data : EMData
    """

    def __init__(self, weights, means, precisions_cholesky, data: EMData, covariances=None):
        ct = data.covariance_type
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.asarray(means, dtype=np.float64)
        self.pchol = np.asarray(precisions_cholesky, dtype=np.float64)
        self.covariances = None if covariances is None else np.asarray(covariances, dtype=np.float64)
        k, d = self.means.shape
        mu, P = self.means, self.pchol
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weights)
        # log weight + log det - d/2 log 2 pi: the part of each log density without x.
        base = log_w + log_det_cholesky(P, ct, d) - 0.5 * d * _LOG_2PI
        # Largest eigenvalue of each precision times the largest squared
        # distance from the centre: the scale of the expanded terms, against
        # d for the quadratic form itself.
        if ct == "full":
            prec = P @ np.swapaxes(P, 1, 2)  # (k, d, d)
            lam = np.linalg.eigvalsh(prec)[:, -1]
        elif ct == "tied":
            lam = np.full(k, np.linalg.eigvalsh(P @ P.T)[-1])
        elif ct == "diag":
            lam = np.max(P**2, axis=1)
        else:
            lam = P**2
        scale = lam * (data.radius + np.linalg.norm(mu, axis=1)) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            lost = np.log10(np.maximum(scale, 1.0) / max(d, 1))
        dtype = data.dtype
        if dtype == np.float32 and not np.all(lost <= _MAX_DIGITS_LOST[dtype]):
            dtype = np.dtype(np.float64)  # float32 would not be stable here
        self.dtype = dtype
        self.exact = np.flatnonzero(~(lost <= _MAX_DIGITS_LOST[dtype]))
        self.base = base
        if ct == "full":
            # q(x) = x^T L x - 2 x^T L mu + mu^T L mu, from the features [x, x_i x_j (i <= j)]
            iu, ju = data._iu
            coef = np.where(iu == ju, 1.0, 2.0)[None, :] * prec[:, iu, ju]  # (k, d(d+1)/2)
            Lmu = np.einsum("kij,kj->ki", prec, mu)
            W = np.concatenate([Lmu, -0.5 * coef], axis=1).T
            const = base - 0.5 * np.einsum("ki,ki->k", mu, Lmu)
        elif ct == "tied":
            self.muP = mu @ P  # (k, d): q(x) = ||xP||^2 - 2 xP . muP + ||muP||^2
            W = self.muP.T
            const = base - 0.5 * np.einsum("ki,ki->k", self.muP, self.muP)
            self.P = P.astype(dtype)
        else:
            prec = P**2
            if ct == "diag":
                W = np.concatenate([(mu * prec).T, -0.5 * prec.T], axis=0)
                const = base - 0.5 * (mu**2 * prec).sum(axis=1)
            else:
                W = np.concatenate([(mu * prec[:, None]).T, -0.5 * prec[None, :]], axis=0)
                const = base - 0.5 * (mu**2).sum(axis=1) * prec
        self.W = np.ascontiguousarray(W, dtype=dtype)
        self.const = const.astype(dtype)
        self._mu = mu.astype(dtype)
        self._P = P.astype(dtype)

    def log_prob_block(self, data: EMData, start, stop):
        """Weighted log densities of rows ``start:stop``: ``(lp (n_rows, k), features)``."""
        ct = data.covariance_type
        F = data.moments(start, stop, self.dtype)
        if ct == "tied":
            Y = F @ self.P
            lp = Y @ self.W
            lp += self.const
            lp -= 0.5 * np.einsum("ij,ij->i", Y, Y)[:, None]
        else:
            lp = F @ self.W
            lp += self.const
        if len(self.exact):  # (x - mu) P, as scikit-learn, where expanding would lose digits
            Xb = data.X[start:stop].astype(self.dtype, copy=False)
            for j in self.exact:
                D = Xb - self._mu[j]
                if ct in ("full", "tied"):
                    Y = D @ (self._P[j] if ct == "full" else self._P)
                else:
                    Y = D * self._P[j]
                lp[:, j] = self.base[j] - 0.5 * np.einsum("ij,ij->i", Y, Y)
        return lp, F


def _normalise(lp):
    """Turn a block of weighted log densities into responsibilities in place; return ``log p(x)``."""
    m = np.max(lp, axis=1)
    m[~np.isfinite(m)] = 0.0
    lp -= m[:, None]
    np.exp(lp, out=lp)
    s = lp.sum(axis=1)
    lp /= s[:, None]
    with np.errstate(divide="ignore"):
        return np.log(s) + m


# ------------------------------------------------------------------- M-step
def _centred_sums(data: EMData, start, stop, resp, means, components):
    """``sum r (x - mu_k)(x - mu_k)^T`` (or its diagonal) of a block for the given components."""
    ct = data.covariance_type
    Xb = data.X[start:stop]
    out = {}
    for j in components:
        D = Xb - means[j].astype(data.dtype)
        Dr = D * resp[:, j : j + 1]
        if ct in ("full", "tied"):
            out[j] = (Dr.T @ D).astype(np.float64)
        else:
            out[j] = np.einsum("ij,ij->j", Dr, D).astype(np.float64)
    return out


def _add_blocks(results, index):
    total = results[0][index]
    if isinstance(total, dict):
        total = {j: v.copy() for j, v in total.items()}
        for r in results[1:]:
            for j, v in r[index].items():
                total[j] += v
        return total
    total = np.array(total, dtype=np.float64, copy=True)
    for r in results[1:]:
        total += r[index]
    return total


def _parameters(data: EMData, s, G, reg_covar, recompute, dtype):
    """``(nk, means, covariances)`` from the block sums, scikit-learn's formulas.

    ``recompute(components, means)`` returns the exact centred sums of the
    given components (a second pass); it is called for the components whose
    covariance the expanded formula computes with too few correct digits
    (for sums computed in ``dtype``).
    """
    ct, d = data.covariance_type, data.n_features
    nk = s + 10 * data.eps
    means = G[:, :d] / nk[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        if ct == "full":
            iu, ju = data._iu
            S = np.zeros((len(nk), d, d))
            S[:, iu, ju] = G[:, d:]
            S[:, ju, iu] = G[:, d:]
            cov = (S - (2 * nk - s)[:, None, None] * means[:, :, None] * means[:, None, :]) / nk[:, None, None]
            second = np.diagonal(S, axis1=1, axis2=2) / nk[:, None]
            var = np.diagonal(cov, axis1=1, axis2=2)
        elif ct == "tied":
            cov = (data.S_all - (nk[:, None] * means).T @ means) / nk.sum()
            second = (np.diagonal(data.S_all) / nk.sum())[None, :]
            var = np.diagonal(cov)[None, :]
        elif ct == "diag":
            second = G[:, d:] / nk[:, None]
            cov = second - means**2
            var = cov
        else:
            second = (G[:, d] / (nk * d))[:, None]
            cov = second[:, 0] - (means**2).mean(axis=1)
            var = cov[:, None]
        # Digits lost to cancellation in second moment - mean^2.
        lost = np.where(second > 0, np.log10(second / np.abs(var)), 0.0)
    bad = ~(lost <= _MAX_DIGITS_LOST[np.dtype(dtype)])
    flagged = np.flatnonzero(bad.any(axis=1))
    if len(flagged):
        if ct == "tied":
            exact = recompute(range(len(nk)), means)
            cov = sum(exact.values()) / nk.sum()
        else:
            exact = recompute(flagged, means)
            for j in flagged:
                cov[j] = exact[j].mean() / nk[j] if ct == "spherical" else exact[j] / nk[j]
    if ct == "full":
        cov = cov.copy()
        cov[:, np.arange(d), np.arange(d)] += reg_covar
    elif ct == "tied":
        cov = cov + reg_covar * np.eye(d)
    else:
        cov = cov + reg_covar
    return nk, means, cov


def parameters_from_resp(data: EMData, resp, reg_covar):
    """``(weights, means, covariances)`` from given responsibilities: the initialisation's M-step.

    As scikit-learn's ``_initialize``: ``weights = nk / sum(sample_weight)``
    (``nk / n_samples`` without weights), not renormalised. For ``tied``,
    rows whose responsibilities do not sum to one (all but the seeds under
    ``"k-means++"`` and ``"random_from_data"``) count in ``X^T X`` as in
    scikit-learn's formula.

    Parameters
    ----------
    data : EMData
    resp : ndarray of shape (n_samples, n_components)
    reg_covar : float

    Returns
    -------
    weights, means, covariances : ndarray (float64), means in centred coordinates
    """
    resp = np.asarray(resp, dtype=data.dtype)
    if data.w is not None:
        resp = resp * data.w[:, None]

    def block(start, stop):
        r = resp[start:stop]
        return r.sum(axis=0, dtype=np.float64), (r.T @ data.moments(start, stop)).astype(np.float64)

    results = map_blocks(data, block)
    s, G = _add_blocks(results, 0), _add_blocks(results, 1)

    def recompute(components, means):
        def exact(start, stop):
            return (_centred_sums(data, start, stop, resp[start:stop], means, components),)

        return _add_blocks(map_blocks(data, exact), 0)

    nk, means, cov = _parameters(data, s, G, reg_covar, recompute, data.dtype)
    if data.covariance_type == "tied":
        # scikit-learn's tied formula counts rows whose responsibilities do not
        # sum to one, around the origin of X (so its initial tied covariance
        # depends on where that origin lies): (1 - sum_k r) (X X^T - x x^T)
        # for X = x + offset is what centring removed. Put back, so that a
        # random_state gives scikit-learn's fit here too.
        def rest_block(start, stop):
            w = None if data.w is None else data.w[start:stop]
            return (tied_rest_sums(data.X[start:stop], w, resp[start:stop]),)

        cov = cov + tied_rest_correction(_add_blocks(map_blocks(data, rest_block), 0), data.offset) / nk.sum()
    return nk / data.total_weight, means, cov


def tied_rest_sums(Xc, w, resp):
    """``(sum of rest, rest @ Xc)`` with ``rest = w - sum_k resp`` (``resp`` carrying the weights).

    What :func:`tied_rest_correction` needs of a block of centred rows.
    """
    w = 1.0 if w is None else np.asarray(w, dtype=np.float64)
    rest = w - resp.sum(axis=1, dtype=np.float64)
    if not np.any(rest != 0):
        return np.zeros(Xc.shape[1] + 1)
    return np.concatenate([[rest.sum()], rest @ Xc.astype(np.float64)])


def tied_rest_correction(sums, offset):
    """scikit-learn's initial tied covariance counts rows whose responsibilities do not sum to
    one around the origin of X: the term that centring on ``offset`` removed (times ``nk.sum()``)."""
    off = np.asarray(offset, dtype=np.float64)
    v = sums[1:]
    return np.outer(v, off) + np.outer(off, v) + sums[0] * np.outer(off, off)


def initial_params(data, init, weights, means, covariances, noise_floor=None):
    """The initial :class:`Params`: the user's ``weights_init``, ``means_init`` and
    ``precisions_init`` (in ``init``) in place of what the initialisation found."""
    ct = data.covariance_type
    if "weights" in init:
        weights = init["weights"]
    if "means" in init:
        means = init["means"].astype(np.float64) - data.offset
    if "precisions" in init:
        pchol = precision_cholesky_from_precisions(init["precisions"].astype(np.float64), ct)
        covariances = None
    else:
        pchol = precision_cholesky(covariances, ct, data.dtype, noise_floor)
    return Params(weights, means, pchol, data, covariances=covariances)


def em_step(data: EMData, params: Params, reg_covar):
    """One EM iteration, in one pass over the data (two where a covariance needs the exact formula).

    The E-step with ``params`` and the M-step from its responsibilities, as
    scikit-learn's ``_e_step`` followed by ``_m_step``.

    Returns
    -------
    lower_bound : float
        The (sample-weighted) mean log-likelihood under ``params``.
    params : Params
        The parameters after the M-step.
    """

    def resp_block(start, stop):
        lp, F = params.log_prob_block(data, start, stop)
        lpn = _normalise(lp)
        if data.w is not None:
            w = data.w[start:stop]
            lp *= w[:, None]
            total = float(np.dot(lpn.astype(np.float64), w.astype(np.float64)))
        else:
            total = float(np.sum(lpn, dtype=np.float64))
        return lp, F, total

    def block(start, stop):
        resp, F, total = resp_block(start, stop)
        return total, resp.sum(axis=0, dtype=np.float64), (resp.T @ F).astype(np.float64)

    results = map_blocks(data, block)
    total = math.fsum(r[0] for r in results)
    s, G = _add_blocks(results, 1), _add_blocks(results, 2)

    def recompute(components, means):
        def exact(start, stop):
            resp = resp_block(start, stop)[0]
            return (_centred_sums(data, start, stop, resp, means, components),)

        return _add_blocks(map_blocks(data, exact), 0)

    nk, means, cov = _parameters(data, s, G, reg_covar, recompute, params.dtype)
    # without reg_covar, a variance within rounding noise is zero (with it, reg_covar is the floor)
    floor = data.noise_floor if reg_covar == 0 else None
    pchol = precision_cholesky(cov, data.covariance_type, data.dtype, floor)
    new = Params(nk / nk.sum(), means, pchol, data, covariances=cov)
    return total / data.total_weight, new


def log_prob_resp(data: EMData, params: Params):
    """Per-row ``log p(x)`` and log responsibilities.

    Returns
    -------
    log_prob_norm : ndarray of shape (n_samples,)
    log_resp : ndarray of shape (n_samples, n_components)
    """
    n, k = data.n_samples, len(params.weights)
    log_prob_norm = np.empty(n, dtype=data.dtype)
    log_resp = np.empty((n, k), dtype=data.dtype)

    def block(start, stop):
        lp, _ = params.log_prob_block(data, start, stop)
        m = np.max(lp, axis=1)
        m[~np.isfinite(m)] = 0.0
        with np.errstate(divide="ignore", under="ignore"):
            lpn = np.log(np.exp(lp - m[:, None]).sum(axis=1)) + m
            log_prob_norm[start:stop] = lpn
            np.subtract(lp, lpn[:, None], out=log_resp[start:stop])

    map_blocks(data, block)
    return log_prob_norm, log_resp


def weighted_log_prob_all(data: EMData, params: Params):
    """``log p(x | component) + log weight`` of every row, shape (n_samples, n_components)."""
    out = np.empty((data.n_samples, len(params.weights)), dtype=data.dtype)

    def block(start, stop):
        out[start:stop] = params.log_prob_block(data, start, stop)[0]

    map_blocks(data, block)
    return out
