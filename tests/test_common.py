"""scikit-learn's common estimator checks over every public estimator of unsup."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from tests._instances import estimator_instances

# {estimator: {check name: the true reason it fails}}. Kept short: an entry
# here is a documented departure from scikit-learn's contract. An estimator is
# named by its class ("KMeans"), or by its class and one parameter value
# ("KMeans:metric=hamming") for an entry that concerns that variant only.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "KMeans": {
        # As scikit-learn's own KMeans: seeding samples rows, so repeated rows
        # change the random stream and the local optimum reached. From the same
        # initial centres weights do equal repetition
        # (tests/cluster/test_kmeans.py::test_sample_weight_equals_repetition).
        "check_sample_weight_equivalence_on_dense_data": (
            "random seeding draws differently from repeated rows than from weights"
        ),
        "check_sample_weight_equivalence_on_sparse_data": (
            "random seeding draws differently from repeated rows than from weights"
        ),
    },
    "GaussianMixture": {
        # The k-means initialisation samples rows (as scikit-learn's), so the
        # shuffled weighted rows and the repeated rows start EM from different
        # seeds and reach different local optima. From the same initial
        # parameters weights do equal repetition
        # (tests/mixture/test_gaussian_mixture.py::test_integer_weights_equal_repeated_rows).
        "check_sample_weight_equivalence_on_dense_data": (
            "random seeding draws differently from repeated rows than from weights"
        ),
    },
    "KMeans:metric=hamming": {
        "check_clustering": (
            "hamming compares coordinates for equality: on the check's continuous "
            "blobs all distinct points are at distance 1, so no partition is better"
        ),
    },
}


def _expected_failed_checks(estimator):
    name = type(estimator).__name__
    failures = dict(EXPECTED_FAILED_CHECKS.get(name, {}))
    for param, value in estimator.get_params(deep=False).items():
        if isinstance(value, (str, int, float, type(None))):
            failures.update(EXPECTED_FAILED_CHECKS.get(f"{name}:{param}={value}", {}))
    return failures


@parametrize_with_checks(
    list(estimator_instances()), expected_failed_checks=_expected_failed_checks
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_registry_finds_the_estimators():
    names = {type(est).__name__ for est in estimator_instances()}
    assert "KMeans" in names
