"""The names the command line offers as choices, without importing the estimators.

``unsup --help`` builds its parser from these tuples, so it starts without
importing scikit-learn, scipy or torch (their imports take most of a second).
``tests/test_startup.py`` checks that they equal the registries'
``unsup.metrics.METRIC_NAMES`` and ``unsup.quantization.OBSERVER_NAMES``.
"""

METRIC_NAMES = (
    "chebyshev",
    "cityblock",
    "cosine",
    "euclidean",
    "hamming",
    "l1",
    "l2",
    "manhattan",
    "minkowski",
    "sqeuclidean",
)
OBSERVER_NAMES = ("minmax", "moving_average", "percentile", "mse", "entropy")
