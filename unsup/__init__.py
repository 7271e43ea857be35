"""unsup: unsupervised learning that fits into scikit-learn.

Every estimator follows scikit-learn's contract (parameters stored by
``__init__``, validation in ``fit``, fitted attributes ending in ``_``, numpy
in and numpy out), so it goes into a ``Pipeline`` or ``GridSearchCV`` as any
scikit-learn estimator does. Subpackages:

- :mod:`unsup.metrics`: the distance registry and chunked pairwise kernels;
- :mod:`unsup.cluster`: k-means with pluggable metrics.
"""

from unsup import cluster, metrics, quantization
from unsup.cluster import KMeans
from unsup.metrics import get_metric, pairwise_distances
from unsup.quantization import Quantizer

__version__ = "0.1.0"

__all__ = [
    "KMeans",
    "Quantizer",
    "cluster",
    "get_metric",
    "metrics",
    "pairwise_distances",
    "quantization",
    "__version__",
]
