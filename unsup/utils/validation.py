"""Input helpers shared by the estimators."""

from __future__ import annotations

import numpy as np

_F32_MAX = float(np.finfo(np.float32).max)


def upcast_if_overflow(X):
    """``X`` as float64 if it is float32 with values whose squares or sums could overflow.

    float32 is kept for speed, but values near its maximum (~3.4e38) overflow
    in a squared distance or a column sum; computing those in float64 gives
    the correct result where float32 would give inf or NaN. Other arrays are
    returned unchanged (no copy).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)

    Returns
    -------
    X : ndarray
        float64 copy if float32 arithmetic could overflow, else ``X`` itself.
    """
    if X.dtype != np.float32 or X.size == 0:
        return X
    n, d = X.shape
    limit = min(np.sqrt(_F32_MAX / (4.0 * d)), _F32_MAX / (2.0 * n))
    if max(float(X.max()), -float(X.min())) > limit:
        return X.astype(np.float64)
    return X
