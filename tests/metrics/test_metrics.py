"""The metric registry and pairwise kernels against scipy's cdist, and the centre rules."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from unsup.metrics import (
    METRIC_NAMES,
    compute_centres,
    get_metric,
    pairwise_distances,
    pairwise_distances_argmin_min,
    pairwise_distances_chunked,
)
from unsup.metrics._centres import _PresortedMedian, _median

rng = np.random.default_rng(0)
X = rng.standard_normal((120, 6))
Y = rng.standard_normal((17, 6))
XB = (X > 0).astype(float)
YB = (Y > 0).astype(float)

# (our name, scipy's name, params, binary data?)
CASES = [
    ("euclidean", "euclidean", {}, False),
    ("l2", "euclidean", {}, False),
    ("sqeuclidean", "sqeuclidean", {}, False),
    ("manhattan", "cityblock", {}, False),
    ("cityblock", "cityblock", {}, False),
    ("l1", "cityblock", {}, False),
    ("cosine", "cosine", {}, False),
    ("chebyshev", "chebyshev", {}, False),
    ("minkowski", "minkowski", {"p": 3}, False),
    ("minkowski", "minkowski", {"p": 1.5}, False),
    ("hamming", "hamming", {}, True),
    ("hamming", "hamming", {}, False),
]


@pytest.mark.parametrize("name, scipy_name, params, binary", CASES)
@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 2e-6)])
def test_pairwise_equals_cdist(name, scipy_name, params, binary, dtype, rtol):
    A, B = (XB, YB) if binary else (X, Y)
    expected = cdist(A, B, scipy_name, **params)
    D = pairwise_distances(A.astype(dtype), B.astype(dtype), metric=name, **params)
    assert D.dtype == dtype
    np.testing.assert_allclose(D, expected, rtol=rtol, atol=10 * rtol)


def test_pairwise_y_none_and_mixed_dtypes():
    D = pairwise_distances(X.astype(np.float32))
    assert D.dtype == np.float32 and D.shape == (120, 120)
    np.testing.assert_allclose(np.diag(D), 0, atol=1e-6)
    assert pairwise_distances(X.astype(np.float32), Y).dtype == np.float64


def test_euclidean_exact_for_near_duplicates():
    # Cancellation in ||x||^2 - 2xy + ||y||^2 would give ~1e-4 here, not 1e-8.
    A = np.full((1, 4), 1e4)
    B = A + 1e-8 * np.array([[1.0, 0, 0, 0]])
    assert pairwise_distances(A, B)[0, 0] == pytest.approx(1e-8, rel=1e-6)
    assert pairwise_distances(A, A)[0, 0] == 0.0


def test_cosine_zero_vector_is_at_distance_one():
    Z = np.array([[0.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(pairwise_distances(Z, metric="cosine"), [[1, 1], [1, 0]])


def test_callable_metric_equals_cdist():
    def weighted_l1(a, b, scale=1.0):
        return scale * np.abs(a - b).sum()

    D = pairwise_distances(X[:10], Y, metric=weighted_l1, scale=2.0)
    np.testing.assert_allclose(D, 2 * cdist(X[:10], Y, "cityblock"))
    m = get_metric(weighted_l1)
    assert m.centre_rule == "medoid" and m(X[0], Y[0]) == pytest.approx(D[0, 0] / 2)


def test_precomputed_is_validated_and_returned():
    D = cdist(X, X)
    np.testing.assert_array_equal(pairwise_distances(D, metric="precomputed"), D)
    with pytest.raises(ValueError, match="Negative values in data passed to pairwise_distances"):
        pairwise_distances(-D, metric="precomputed")


def test_unknown_metric_lists_valid_names():
    with pytest.raises(ValueError, match=r"Unknown metric 'euclid'.*'cityblock'.*'hamming'"):
        get_metric("euclid")
    with pytest.raises(ValueError, match="callable"):
        get_metric(3)


@pytest.mark.parametrize("p", [0, -1, np.nan, "2"])
def test_minkowski_p_is_checked(p):
    with pytest.raises(ValueError, match="'p' parameter of minkowski must be > 0"):
        get_metric("minkowski", p=p)


def test_unexpected_params_rejected():
    with pytest.raises(TypeError, match="takes no parameters"):
        get_metric("euclidean", p=2)


@pytest.mark.parametrize(
    "name, rule",
    [("euclidean", "mean"), ("sqeuclidean", "mean"), ("manhattan", "median"),
     ("cosine", "normalized_mean"), ("hamming", "mode"), ("chebyshev", "medoid"),
     ("minkowski", "medoid")],
)
def test_each_metric_declares_its_centre_rule(name, rule):
    assert get_metric(name).centre_rule == rule
    assert name in METRIC_NAMES


def test_incompatible_shapes():
    with pytest.raises(ValueError, match="Incompatible dimension"):
        pairwise_distances(X, Y[:, :3])


@pytest.mark.parametrize("name", ["euclidean", "manhattan", "cosine", "chebyshev", "hamming"])
def test_chunked_and_argmin_equal_the_full_matrix(name):
    full = pairwise_distances(X, Y, metric=name)
    # working_memory=0.001 MiB: a few rows per block
    blocks = list(pairwise_distances_chunked(X, Y, metric=name, working_memory=0.001))
    assert len(blocks) >= 20 and max(len(b) for b in blocks) <= 6
    np.testing.assert_allclose(np.vstack(blocks), full)
    idx, d = pairwise_distances_argmin_min(X, Y, metric=name, working_memory=0.001)
    np.testing.assert_array_equal(idx, np.argmin(full, axis=1))
    np.testing.assert_allclose(d, full.min(axis=1))


def test_reduce_func():
    sums = list(pairwise_distances_chunked(X, Y, reduce_func=lambda D, start: D.sum(axis=1)))
    np.testing.assert_allclose(np.concatenate(sums), cdist(X, Y).sum(axis=1))


def test_argmin_memory_stays_within_budget():
    # 400,000 x 64 against 256 centres: the float64 distance matrix would take
    # 780 MiB; the chunked search must stay far below (working_memory=64 MiB).
    code = textwrap.dedent(
        """
        import resource, numpy as np
        from unsup.metrics import pairwise_distances_argmin_min
        X = np.random.default_rng(0).standard_normal((400_000, 64)).astype(np.float32)
        C = X[:256].copy()
        pairwise_distances_argmin_min(X[:1000], C)  # imports and warm-up
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for metric in ("euclidean", "manhattan", "cosine"):
            idx, d = pairwise_distances_argmin_min(X, C, metric=metric, working_memory=64)
            assert (idx[:256] == np.arange(256)).all()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grew_mib = int(out.stdout.split()[-1])
    assert grew_mib < 200, f"peak memory grew by {grew_mib} MiB"


# ------------------------------------------------------------ centre rules
LABELS = rng.integers(0, 4, len(X))


def brute_medoid(A, w, dist):
    D = cdist(A, A, dist)
    return A[np.argmin(D @ w)]


def test_mean_and_median_rules_equal_numpy():
    means = compute_centres(X, LABELS, 4, metric="euclidean")
    medians = compute_centres(X, LABELS, 4, metric="manhattan")
    for j in range(4):
        np.testing.assert_allclose(means[j], X[LABELS == j].mean(axis=0))
        np.testing.assert_allclose(medians[j], np.median(X[LABELS == j], axis=0))


def test_cosine_centre_is_unit_normalised_mean_of_unit_vectors():
    C = compute_centres(X, LABELS, 4, metric="cosine")
    np.testing.assert_allclose(np.linalg.norm(C, axis=1), 1.0)
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    for j in range(4):
        m = U[LABELS == j].sum(axis=0)
        np.testing.assert_allclose(C[j], m / np.linalg.norm(m))


def test_mode_rule_gives_binary_modes():
    C = compute_centres(XB, LABELS, 4, metric="hamming")
    assert set(np.unique(C)) <= {0.0, 1.0}
    for j in range(4):
        ones = XB[LABELS == j].sum(axis=0)
        zeros = (LABELS == j).sum() - ones
        np.testing.assert_array_equal(C[j], (ones > zeros).astype(float))  # ties -> 0


def test_mode_rule_many_values_path():
    Xi = rng.integers(0, 400, (200, 3)).astype(float)  # > 256 distinct values
    lab = rng.integers(0, 3, 200)
    C = compute_centres(Xi, lab, 3, metric="hamming")
    for j in range(3):
        for c in range(3):
            vals, counts = np.unique(Xi[lab == j, c], return_counts=True)
            assert C[j, c] == vals[np.argmax(counts)]


@pytest.mark.parametrize("name, scipy_name", [("chebyshev", "chebyshev"), ("minkowski", "minkowski")])
def test_medoid_is_the_member_of_least_total_distance(name, scipy_name):
    w = rng.integers(1, 4, len(X)).astype(float)
    C = compute_centres(X, LABELS, 4, metric=name, sample_weight=w, working_memory=0.001)
    for j in range(4):
        np.testing.assert_array_equal(C[j], brute_medoid(X[LABELS == j], w[LABELS == j], scipy_name))


@pytest.mark.parametrize("name", ["euclidean", "manhattan", "cosine", "hamming", "chebyshev"])
def test_integer_weights_equal_repeated_rows(name):
    A = XB if name == "hamming" else X
    w = rng.integers(0, 4, len(A))
    w[0] = 2
    weighted = compute_centres(A, LABELS, 4, metric=name, sample_weight=w)
    repeated = compute_centres(np.repeat(A, w, axis=0), np.repeat(LABELS, w), 4, metric=name)
    np.testing.assert_allclose(weighted, repeated, equal_nan=True)


def test_empty_cluster_gives_nan_row():
    C = compute_centres(X, np.zeros(len(X), dtype=int), 2, metric="manhattan")
    assert np.isnan(C[1]).all() and not np.isnan(C[0]).any()


@pytest.mark.parametrize("seed", range(20))
def test_presorted_median_equals_per_cluster_median(seed):
    r = np.random.default_rng(seed)
    n = int(r.integers(1, 80))
    A = r.integers(0, 5, (n, 3)).astype(float) if seed % 2 else r.standard_normal((n, 3))
    lab = r.integers(0, 5, n)
    for w in (np.ones(n), r.integers(0, 4, n).astype(float) + (np.arange(n) == 0)):
        np.testing.assert_array_equal(
            _PresortedMedian(A, w)(lab, 5), _median(A, lab, w, 5, None, None)
        )


@pytest.mark.parametrize("name", ["euclidean", "sqeuclidean", "cosine"])
def test_sparse_rows_where_the_kernel_takes_them(name):
    import scipy.sparse as sp

    A = np.where(X > 0.5, X, 0.0)
    expected = pairwise_distances(A, Y, metric=name)
    np.testing.assert_allclose(pairwise_distances(sp.csr_matrix(A), Y, metric=name), expected, atol=1e-12)
    idx, d = pairwise_distances_argmin_min(sp.csr_matrix(A), Y, metric=name)
    np.testing.assert_array_equal(idx, expected.argmin(axis=1))
    with pytest.raises(TypeError, match="dense data is required"):
        pairwise_distances(sp.csr_matrix(A), Y, metric="manhattan")


# ------------------------------------------------------------ capabilities
@pytest.mark.parametrize("name", METRIC_NAMES)
def test_pdist_name_is_the_same_distance(name):
    from scipy.spatial.distance import pdist, squareform

    params = {"p": 3} if name == "minkowski" else {}
    m = get_metric(name, **params)
    data = XB if name == "hamming" else X
    assert m.pdist_name is not None
    np.testing.assert_allclose(
        squareform(pdist(data, m.pdist_name, **m.scipy_params())), pairwise_distances(data, metric=m),
        rtol=1e-10, atol=1e-12,
    )


@pytest.mark.parametrize("name", METRIC_NAMES)
def test_capabilities_agree_with_the_centre_rule_and_cost(name):
    m = get_metric(name)
    # Lloyd applies exactly where the centre is the mean of a squared euclidean cost.
    assert m.lloyd == (m.centre_rule == "mean" and m.cost().name == "sqeuclidean")
    assert m.unit_rows == (m.centre_rule == "normalized_mean")
    assert m.streams_exactly == (m.centre_rule in ("mean", "normalized_mean", "mode"))
    assert m.euclidean_linkages == (m.name == "euclidean")
    # The prepared cost between prepared rows is the cost between the rows.
    np.testing.assert_allclose(
        m.prepared_cost()._block(m.prepare(X), m.prepare(Y)), m.cost()._block(X, Y), atol=1e-12
    )


def test_fastcluster_args():
    assert get_metric("chebyshev").fastcluster_args() == ("chebychev", None)  # fastcluster's spelling
    assert get_metric("minkowski", p=3).fastcluster_args() == ("minkowski", 3.0)
    func, extra = get_metric(lambda a, b, scale=1.0: scale * float(np.abs(a - b).sum()), scale=2.0).fastcluster_args()
    assert extra is None and func(np.array([0.0, 1.0]), np.array([1.0, 3.0])) == 6.0


def test_code_search_goes_through_the_registry():
    from unsup.quantization._search import SEARCH_METRICS, exact_distances, search_metric

    assert SEARCH_METRICS == ("euclidean", "cosine")
    assert search_metric("l2") == get_metric("euclidean")
    with pytest.raises(ValueError, match="metric must be one of"):
        search_metric("manhattan")
    index = np.tile(np.arange(len(Y)), (5, 1))
    for name in SEARCH_METRICS:
        np.testing.assert_allclose(exact_distances(X[:5], Y, index, name), cdist(X[:5], Y, name), atol=1e-12)


def test_is_precomputed():
    from unsup.metrics._registry import is_precomputed

    assert is_precomputed("precomputed")
    assert not is_precomputed("euclidean") and not is_precomputed(get_metric("cosine"))
    assert not is_precomputed(np.array(["precomputed"]))
