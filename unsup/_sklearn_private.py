"""The private parts of scikit-learn that unsup reuses, gathered in one place.

scikit-learn's chunked, OpenMP-parallel Lloyd iteration is the fastest k-means
step available on a CPU; rewriting it would only be slower. Its private names
have kept their signatures from scikit-learn 1.2 to 1.9; if a release moves
them, this module is the only one to change.
"""

from sklearn.base import _fit_context
from sklearn.cluster._k_means_common import _inertia_dense
from sklearn.cluster._k_means_lloyd import lloyd_iter_chunked_dense, lloyd_iter_chunked_sparse
from sklearn.cluster._kmeans import (
    _is_same_clustering,
    _kmeans_plusplus,
    _kmeans_single_lloyd,
    _labels_inertia_threadpool_limit,
)
from sklearn.utils._openmp_helpers import _openmp_effective_n_threads
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import _check_sample_weight

__all__ = [
    "Interval",
    "StrOptions",
    "_check_sample_weight",
    "_fit_context",
    "_inertia_dense",
    "_is_same_clustering",
    "_kmeans_plusplus",
    "_kmeans_single_lloyd",
    "_labels_inertia_threadpool_limit",
    "_openmp_effective_n_threads",
    "lloyd_iter_chunked_dense",
    "lloyd_iter_chunked_sparse",
]
