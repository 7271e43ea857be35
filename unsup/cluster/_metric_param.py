"""The ``metric`` parameter the clustering estimators share, ``"precomputed"`` included.

Design constraints
------------------
- One pair of constraints (:data:`METRIC_CONSTRAINTS`, ``metric`` and
  ``metric_params``) for every clustering estimator: a registry name, a
  callable, or ``"precomputed"`` (an estimator that needs feature vectors
  refuses the last one in ``fit``, with its reason).
- What "precomputed" changes is written once, in :class:`PrecomputedMixin`:
  the ``pairwise`` tag, the metric object (None: ``X`` holds distances), and
  the check of the distances ``predict`` is given.
"""

from __future__ import annotations

from sklearn.utils.validation import check_non_negative

from unsup._sklearn_adapter import StrOptions
from unsup.metrics._registry import METRIC_NAMES, PRECOMPUTED, Metric, get_metric, is_precomputed

__all__ = ["METRIC_CONSTRAINTS", "PrecomputedMixin"]

#: ``_parameter_constraints`` of ``metric`` and ``metric_params`` in the clustering estimators.
METRIC_CONSTRAINTS = {
    "metric": [StrOptions(set(METRIC_NAMES) | {PRECOMPUTED}), callable],
    "metric_params": [dict, None],
}


class PrecomputedMixin:
    """For estimators whose ``metric`` may be ``"precomputed"`` (``X`` is a distance matrix).

    Reads ``self.metric`` and ``self.metric_params``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = is_precomputed(self.metric)
        return tags

    def _get_metric(self) -> Metric | None:
        """The registry metric, or None for precomputed distances."""
        if is_precomputed(self.metric):
            return None
        return get_metric(self.metric, **(self.metric_params or {}))

    def _check_query_distances(self, X):
        """With precomputed distances, ``predict``'s ``X`` (distances to the training samples) is non-negative."""
        if self._metric is None:
            check_non_negative(X, whom=f"{type(self).__name__}.predict (metric='precomputed')")
