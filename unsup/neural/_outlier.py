"""scikit-learn's outlier contract on top of ``score_samples`` and ``offset_``."""

from __future__ import annotations

import numpy as np
from sklearn.base import OutlierMixin


class ScoreOffsetOutlierMixin(OutlierMixin):
    """``decision_function`` and ``predict`` from ``score_samples`` and ``offset_``.

    As ``IsolationForest``: the decision is ``score_samples(X) - offset_`` and
    a row is an outlier where it is negative. A score that is not a number
    never makes an inlier.
    """

    def decision_function(self, X):
        """``score_samples(X) - offset_``: negative for outliers, positive for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        decision : ndarray of shape (n_samples,)
            float64.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        """Whether each row is an inlier (+1) or an outlier (-1), by the sign of :meth:`decision_function`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        labels : ndarray of shape (n_samples,)
            +1 for inliers, -1 for outliers (int); a row whose score is not a
            number is an outlier.
        """
        decision = self.decision_function(X)
        # not "decision < 0": a score that is not a number never makes an inlier
        return np.where(decision >= 0, 1, -1)
