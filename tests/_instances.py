"""One instance of every public estimator, with small parameters for fast tests.

The estimators come from :func:`unsup.utils.all_estimators` (everything exported
in an ``__all__``), so a new estimator joins the common checks and the
bad-input tests by being exported. ``TEST_PARAMS`` holds the constructor
arguments that keep the suite fast (few epochs, few restarts), in one place.
"""

from __future__ import annotations

from unsup.utils import all_estimators

TEST_PARAMS: dict[str, dict] = {
    "KMeans": {"n_clusters": 3, "n_init": 2, "max_iter": 30, "random_state": 0},
}

# Further instances of an estimator whose code paths differ by parameter: the
# common checks run on each (the hand-written centre rules, the mini-batch path).
VARIANTS: dict[str, list[dict]] = {
    "KMeans": [
        {"metric": "manhattan"},
        {"metric": "cosine"},
        {"metric": "hamming"},
        {"metric": "chebyshev"},
        {"batch_size": 16},
    ],
}


def estimator_instances(*, variants=True):
    """Yield an instance of each public estimator, built with ``TEST_PARAMS``.

    With ``variants``, also one instance per entry of ``VARIANTS``.
    """
    for name, cls in all_estimators():
        params = TEST_PARAMS.get(name, {})
        yield cls(**params)
        for extra in VARIANTS.get(name, []) if variants else []:
            yield cls(**{**params, **extra})
