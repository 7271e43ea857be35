"""Distance metrics: one registry for every estimator, chunked pairwise kernels.

A metric is named (``"euclidean"``, ``"sqeuclidean"``, ``"manhattan"`` /
``"cityblock"`` / ``"l1"``, ``"cosine"``, ``"chebyshev"``, ``"minkowski"`` with
``p``, ``"hamming"``), given as a callable ``f(a, b) -> float``, or
``"precomputed"`` where an estimator can work from distances alone. Each metric
knows its centre rule for k-means-style updates (see :class:`Metric`).
"""

from unsup.metrics._centres import compute_centres
from unsup.metrics._pairwise import (
    pairwise_distances,
    pairwise_distances_argmin_min,
    pairwise_distances_chunked,
)
from unsup.metrics._ranking import recall_at_k
from unsup.metrics._registry import METRIC_NAMES, Metric, get_metric

__all__ = [
    "METRIC_NAMES",
    "Metric",
    "compute_centres",
    "get_metric",
    "pairwise_distances",
    "pairwise_distances_argmin_min",
    "pairwise_distances_chunked",
    "recall_at_k",
]
