"""scikit-learn's common estimator checks over every public estimator of unsup."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from tests._instances import estimator_instances

# {estimator class name: {check name: the true reason it fails}}. Kept short:
# an entry here is a documented departure from scikit-learn's contract.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "KMeans": {
        # As scikit-learn's own KMeans: seeding samples rows, so repeated rows
        # change the random stream and the local optimum reached. From the same
        # initial centres weights do equal repetition
        # (tests/cluster/test_kmeans.py::test_sample_weight_equals_repetition).
        "check_sample_weight_equivalence_on_dense_data": (
            "random seeding draws differently from repeated rows than from weights"
        ),
    },
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILED_CHECKS.get(type(estimator).__name__, {})


@parametrize_with_checks(
    list(estimator_instances()), expected_failed_checks=_expected_failed_checks
)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


def test_registry_finds_the_estimators():
    names = {type(est).__name__ for est in estimator_instances()}
    assert "KMeans" in names
