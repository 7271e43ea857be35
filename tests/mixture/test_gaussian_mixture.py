"""GaussianMixture against scikit-learn's, step by step, plus sample_weight and failure modes."""

import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SKGaussianMixture
from sklearn.mixture._gaussian_mixture import _estimate_gaussian_parameters, _estimate_log_gaussian_prob
from sklearn.model_selection import GridSearchCV

from unsup.cluster import KMeans
from unsup.mixture import GaussianMixture
from unsup.mixture._em import EMData, Params, log_prob_resp, parameters_from_resp

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]
INIT_PARAMS = ["kmeans", "k-means++", "random", "random_from_data"]

# Module-level data: four overlapping blobs, off the origin (so that centring matters).
X, Y = make_blobs(n_samples=300, n_features=3, centers=4, cluster_std=1.5, random_state=0)
X = X + 20.0
K = 4


def assert_same(ours, theirs, rtol=1e-10):
    """Equal to round-off: relative to each array's largest entry (covariances have small off-diagonals)."""
    ours, theirs = np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=rtol * np.max(np.abs(theirs)))


def assert_same_fit(ours, theirs, rtol=1e-10, first_rtol=None):
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.converged_ == theirs.converged_
    assert_same(ours.lower_bound_, theirs.lower_bound_, rtol)
    if hasattr(theirs, "lower_bounds_"):  # scikit-learn >= 1.7 (1.6 keeps only the last bound)
        if first_rtol is None:
            assert_same(ours.lower_bounds_, theirs.lower_bounds_, rtol)
        else:
            assert_same(ours.lower_bounds_[0], theirs.lower_bounds_[0], first_rtol)
            assert_same(ours.lower_bounds_[1:], theirs.lower_bounds_[1:], rtol)
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert_same(getattr(ours, name), getattr(theirs, name), rtol)


def initial_parameters(covariance_type, dtype=np.float64):
    """Deliberately poor but valid initial parameters (perturbed k-means solution)."""
    sk = SKGaussianMixture(K, covariance_type=covariance_type, max_iter=1, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X)
    rng = np.random.default_rng(0)
    weights = np.full(K, 1.0 / K)
    means = sk.means_ + rng.normal(scale=1.0, size=sk.means_.shape)
    return {
        "weights_init": weights.astype(dtype),
        "means_init": means.astype(dtype),
        "precisions_init": (sk.precisions_ * 0.5).astype(dtype),
    }


def fit_both(params, X=X, **fit_params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = SKGaussianMixture(**params).fit(X)
        ours = GaussianMixture(**params).fit(X, **fit_params)
    return ours, theirs


# ------------------------------------------------------------ the oracle
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("max_iter", [1, 5, 100])
def test_em_equals_sklearn_from_the_same_initial_parameters(covariance_type, max_iter):
    params = dict(n_components=K, covariance_type=covariance_type, max_iter=max_iter, tol=1e-6,
                  **initial_parameters(covariance_type))
    ours, theirs = fit_both(params)
    assert_same_fit(ours, theirs)
    if max_iter == 100:
        assert ours.n_iter_ >= 10  # many steps: round-off does not grow along the way
    np.testing.assert_array_equal(ours.predict(X), theirs.predict(X))
    assert_same(ours.score_samples(X), theirs.score_samples(X))
    assert_same(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-8)
    assert_same(ours.bic(X), theirs.bic(X))
    assert_same(ours.aic(X), theirs.aic(X))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_same_random_state_same_fit_as_sklearn(covariance_type, init_params):
    """The initialisations draw scikit-learn's random streams (k-means included)."""
    params = dict(n_components=K, covariance_type=covariance_type, init_params=init_params,
                  random_state=0, n_init=2, max_iter=30)
    ours, theirs = fit_both(params)
    first_rtol = None
    if init_params in ("k-means++", "random_from_data") and covariance_type in ("diag", "spherical"):
        # These seed each component with one row: its variance is reg_covar
        # (1e-6) plus what scikit-learn's uncentred formula E[x^2] - mean^2
        # leaves of x^2 (~1e3 here) to cancellation, ~1e-13: its first lower
        # bound is off by ~1e-6 relatively. Ours is computed centred (exact);
        # every later iteration agrees to round-off again.
        first_rtol = 1e-5
    assert_same_fit(ours, theirs, rtol=1e-9, first_rtol=first_rtol)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_m_step_and_e_step_equal_sklearn_functions(covariance_type):
    rng = np.random.default_rng(1)
    resp = rng.random((len(X), K))
    resp /= resp.sum(axis=1, keepdims=True)
    data = EMData(X, None, covariance_type, K)
    weights, means, covariances = parameters_from_resp(data, resp, 1e-6)
    nk, sk_means, sk_cov = _estimate_gaussian_parameters(X, resp, 1e-6, covariance_type)
    assert_same(weights, nk / len(X))
    assert_same(means + data.offset, sk_means)
    assert_same(covariances, sk_cov)

    gm = GaussianMixture(K, covariance_type=covariance_type, random_state=0).fit(X)
    params = Params(gm.weights_, gm.means_ - data.offset, gm.precisions_cholesky_, data)
    log_prob_norm, log_resp = log_prob_resp(data, params)
    expected = _estimate_log_gaussian_prob(X, gm.means_, gm.precisions_cholesky_, covariance_type)
    expected += np.log(gm.weights_)
    assert_same(log_prob_norm, np.logaddexp.reduce(expected, axis=1))
    assert_same(np.exp(log_resp), np.exp(expected - np.logaddexp.reduce(expected, axis=1)[:, None]))


def test_warm_start_equals_sklearn():
    params = dict(n_components=K, warm_start=True, max_iter=2, random_state=0)
    ours, theirs = GaussianMixture(**params), SKGaussianMixture(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(3):
            ours.fit(X)
            theirs.fit(X)
            assert_same_fit(ours, theirs)


def test_max_iter_zero_keeps_the_initial_parameters():
    init = initial_parameters("full")
    gm = GaussianMixture(K, max_iter=0, **init).fit(X)
    assert gm.n_iter_ == 0 and gm.lower_bound_ == -np.inf and not gm.converged_
    assert_same(gm.means_, init["means_init"])
    assert_same(gm.precisions_, init["precisions_init"])
    assert_same(gm.covariances_, np.linalg.inv(init["precisions_init"]))


def test_sample_equals_sklearn():
    ours, theirs = fit_both(dict(n_components=K, random_state=3))
    Xs, ys = ours.sample(50)
    Xt, yt = theirs.sample(50)
    np.testing.assert_array_equal(ys, yt)
    assert_same(Xs, Xt, rtol=1e-8)
    with pytest.raises(ValueError, match="n_samples"):
        ours.sample(0)


# -------------------------------------------------------- sample_weight
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repeated_rows(covariance_type):
    rng = np.random.default_rng(2)
    w = rng.integers(0, 4, size=len(X))  # zeros included: those rows are dropped
    params = dict(n_components=K, covariance_type=covariance_type, max_iter=50, tol=1e-9,
                  **initial_parameters(covariance_type))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        repeated = GaussianMixture(**params).fit(np.repeat(X, w, axis=0))
        weighted = GaussianMixture(**params).fit(X, sample_weight=w)
        assert_same_fit(weighted, repeated, rtol=1e-9)
        # and to scikit-learn fitted on the repeated rows
        assert_same_fit(weighted, SKGaussianMixture(**params).fit(np.repeat(X, w, axis=0)), rtol=1e-9)
        # scaling all weights changes nothing
        assert_same_fit(GaussianMixture(**params).fit(X, sample_weight=2.5 * w), weighted, rtol=1e-9)


def test_weights_of_ones_equal_no_weights():
    ours = GaussianMixture(K, random_state=0).fit(X)
    ones = GaussianMixture(K, random_state=0).fit(X, sample_weight=np.ones(len(X)))
    assert_same_fit(ones, ours)


@pytest.mark.parametrize("init_params", INIT_PARAMS)
def test_zero_weights_equal_removed_rows_for_the_kmeans_free_inits(init_params):
    """Rows of zero weight never matter to EM; with a given init they never matter at all."""
    w = np.ones(len(X))
    w[::3] = 0.0
    init = initial_parameters("full")
    a = GaussianMixture(K, **init).fit(X, sample_weight=w)
    b = GaussianMixture(K, **init).fit(X[w > 0])
    assert_same_fit(a, b)
    # With a random initialisation the fit still runs and never seeds on a zero-weight row.
    gm = GaussianMixture(K, init_params=init_params, random_state=0).fit(X, sample_weight=w)
    assert np.isfinite(gm.lower_bound_)


def test_sample_weight_rejected_clearly():
    gm = GaussianMixture(K, random_state=0)
    with pytest.raises(ValueError, match="Negative values in data passed to `sample_weight`"):
        gm.fit(X, sample_weight=np.r_[-1.0, np.ones(len(X) - 1)])
    with pytest.raises(ValueError, match="at least one non-zero"):
        gm.fit(X, sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="positive sample_weight"):
        gm.fit(X, sample_weight=np.r_[1.0, 1.0, np.zeros(len(X) - 2)])
    with pytest.raises(ValueError, match=r"sample_weight.shape == \(5,\), expected \(300,\)"):
        gm.fit(X, sample_weight=np.ones(5))


def test_weighted_score():
    gm = GaussianMixture(K, random_state=0).fit(X)
    w = np.arange(len(X), dtype=float)
    assert_same(gm.score(X, sample_weight=w), np.average(gm.score_samples(X), weights=w))
    assert_same(gm.score(X), gm.score_samples(X).mean())


# ----------------------------------------------------------- contract
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_predict_equals_fit_then_predict(covariance_type):
    params = dict(n_components=K, covariance_type=covariance_type, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = GaussianMixture(**params).fit_predict(X)
        gm = GaussianMixture(**params).fit(X)
    np.testing.assert_array_equal(labels, gm.predict(X))
    np.testing.assert_array_equal(gm.labels_, labels)
    proba = gm.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(proba.argmax(axis=1), labels)


def test_convergence_warning():
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        GaussianMixture(K, max_iter=1, tol=0, random_state=0).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        assert GaussianMixture(K, random_state=0).fit(X).converged_


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.filterwarnings("ignore:Number of distinct clusters")  # KMeans on one point
def test_ill_defined_covariance_names_reg_covar(covariance_type):
    Xc = np.zeros((20, 3))  # every component collapses onto one point
    with pytest.raises(ValueError, match="ill-defined empirical covariance.*increase reg_covar"):
        GaussianMixture(2, covariance_type=covariance_type, reg_covar=0, random_state=0).fit(Xc)
    with pytest.raises(ValueError, match="passing float64 data instead of float32"):
        GaussianMixture(2, covariance_type=covariance_type, reg_covar=0, random_state=0).fit(Xc.astype(np.float32))
    # reg_covar repairs it
    gm = GaussianMixture(2, covariance_type=covariance_type, random_state=0).fit(Xc)
    assert np.all(np.isfinite(gm.score_samples(Xc)))


def test_n_components_above_n_samples():
    with pytest.raises(ValueError, match="Expected n_samples >= n_components but got n_components = 5, n_samples = 4"):
        GaussianMixture(5).fit(X[:4])


def test_bad_initial_parameters():
    with pytest.raises(ValueError, match="'weights' should be normalized"):
        GaussianMixture(K, weights_init=np.full(K, 0.3)).fit(X)
    with pytest.raises(ValueError, match="'weights' should be in the range"):
        GaussianMixture(2, weights_init=[1.5, -0.5]).fit(X)
    with pytest.raises(ValueError, match="'means' should have the shape of \\(4, 3\\)"):
        GaussianMixture(K, means_init=np.zeros((K, 2))).fit(X)
    with pytest.raises(ValueError, match="'full precision' should be symmetric, positive-definite"):
        GaussianMixture(K, precisions_init=-np.tile(np.eye(3), (K, 1, 1))).fit(X)
    with pytest.raises(ValueError, match="'diag precision' should be positive"):
        GaussianMixture(K, covariance_type="diag", precisions_init=-np.ones((K, 3))).fit(X)
    with pytest.raises(ValueError, match="metric"):
        GaussianMixture(K, metric="nope").fit(X)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_stays_float32_and_matches_float64(covariance_type):
    init = initial_parameters(covariance_type)
    params = dict(n_components=K, covariance_type=covariance_type, max_iter=20, tol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        g32 = GaussianMixture(**params, **init).fit(X.astype(np.float32))
        g64 = GaussianMixture(**params, **init).fit(X)
        s32 = SKGaussianMixture(**params, **init).fit(X.astype(np.float32))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_", "precisions_"):
        assert getattr(g32, name).dtype == np.float32
        np.testing.assert_allclose(getattr(g32, name), getattr(g64, name), rtol=2e-3, atol=2e-4)
        np.testing.assert_allclose(getattr(g32, name), getattr(s32, name), rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(g32.lower_bound_, g64.lower_bound_, rtol=1e-5)
    assert g32.predict_proba(X.astype(np.float32)).dtype == np.float32
    assert g32.score_samples(X.astype(np.float32)).dtype == np.float32
    assert g64.predict_proba(X.astype(np.float32)).dtype == np.float64


def _exact_em_step(X, weights, means, covariances, covariance_type, reg_covar):
    """One EM step written plainly, per component and centred: the reference for hard data."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    k, d = means.shape
    full = {
        "full": lambda j: covariances[j],
        "tied": lambda j: covariances,
        "diag": lambda j: np.diag(covariances[j]),
        "spherical": lambda j: covariances[j] * np.eye(d),
    }[covariance_type]
    lp = np.column_stack([multivariate_normal(means[j], full(j)).logpdf(X) for j in range(k)]) + np.log(weights)
    lpn = logsumexp(lp, axis=1)
    resp = np.exp(lp - lpn[:, None])
    nk = resp.sum(axis=0) + 10 * np.finfo(float).eps
    new_means = resp.T @ X / nk[:, None]
    scatter = np.array([(resp[:, j, None] * (X - new_means[j])).T @ (X - new_means[j]) for j in range(k)])
    cov = {
        "full": lambda: scatter / nk[:, None, None] + reg_covar * np.eye(d),
        "tied": lambda: scatter.sum(axis=0) / nk.sum() + reg_covar * np.eye(d),
        "diag": lambda: np.diagonal(scatter, axis1=1, axis2=2) / nk[:, None] + reg_covar,
        "spherical": lambda: np.diagonal(scatter, axis1=1, axis2=2).mean(axis=1) / nk + reg_covar,
    }[covariance_type]()
    return lpn.mean(), nk / nk.sum(), new_means, cov


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_far_away_tight_component_is_computed_exactly(covariance_type):
    """A tight cluster far from another: expanded formulas would cancel; each EM step stays exact.

    (scikit-learn's own uncentred diag, spherical and tied formulas lose most
    digits on these data; its full covariances are centred, as ours.)
    """
    rng = np.random.default_rng(4)
    Xf = np.vstack([rng.normal(size=(100, 2)), 1e6 + 1e-3 * rng.normal(size=(100, 2))])
    weights = np.array([0.4, 0.6])
    means = np.array([[0.5, -0.5], [1e6 + 1e-3, 1e6]])
    var = np.array([2.0, 4e-6])
    covariances = {
        "full": var[:, None, None] * np.eye(2),
        "tied": np.eye(2),
        "diag": np.column_stack([var, var]),
        "spherical": var,
    }[covariance_type]
    precisions = np.linalg.inv(covariances) if covariance_type in ("full", "tied") else 1 / covariances
    gm = GaussianMixture(2, covariance_type=covariance_type, max_iter=1, tol=0, reg_covar=1e-10,
                         weights_init=weights, means_init=means, precisions_init=precisions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(Xf)
    lower_bound, new_weights, new_means, new_cov = _exact_em_step(
        Xf, weights, means, covariances, covariance_type, 1e-10
    )
    assert_same(gm.lower_bound_, lower_bound, rtol=1e-9)
    assert_same(gm.weights_, new_weights)
    assert_same(gm.means_, new_means, rtol=1e-12)
    assert_same(gm.covariances_, new_cov, rtol=1e-7)  # variances of 1e-6 around values of 1e6
    if covariance_type == "full":
        ours, theirs = fit_both(dict(n_components=2, reg_covar=1e-10, random_state=0), X=Xf)
        assert_same_fit(ours, theirs, rtol=1e-6)


def test_kmeans_init_uses_the_metric():
    """init_params="kmeans" starts from unsup's KMeans in the chosen metric."""
    gm = GaussianMixture(K, metric="manhattan", max_iter=0, random_state=0).fit(X)
    labels = KMeans(K, metric="manhattan", n_init=1, random_state=np.random.RandomState(0)).fit(X).labels_
    expected = np.array([X[labels == j].mean(axis=0) for j in range(K)])
    assert_same(gm.means_, expected)
    assert_same(gm.weights_, np.bincount(labels, minlength=K) / len(X))
    # k-means++ seeds in the metric too
    gm = GaussianMixture(K, metric="chebyshev", init_params="k-means++", max_iter=0, random_state=0).fit(X)
    assert np.isclose(gm.means_[:, None, :], X[None], rtol=1e-12).all(axis=2).any(axis=1).all()


def test_grid_search_selects_by_log_likelihood_and_bic():
    def bic_scorer(estimator, X, y=None):
        return -estimator.bic(X)

    grid = {"n_components": [1, 4], "covariance_type": ["full", "spherical"]}
    by_ll = GridSearchCV(GaussianMixture(random_state=0), grid, cv=3).fit(X)
    by_bic = GridSearchCV(GaussianMixture(random_state=0), grid, scoring=bic_scorer, cv=3).fit(X)
    assert by_ll.best_params_["n_components"] == 4
    assert by_bic.best_params_["n_components"] == 4


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_verbose_prints(capsys):
    GaussianMixture(K, verbose=2, verbose_interval=1, max_iter=3, tol=0, random_state=0).fit(X)
    out = capsys.readouterr().out
    assert "Initialization 0" in out and "Iteration 3" in out and "lower bound" in out


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
@pytest.mark.parametrize("seed", range(6))
def test_collapsed_components_without_reg_covar_raise_for_every_covariance_type(covariance_type, seed):
    """Components of identical rows and reg_covar=0: scikit-learn's ill-defined-covariance error.

    Rounding leaves a variance of about 1e-32 in such a component; tied and
    spherical used to fit it (a score of -1e14) where scikit-learn raises.
    """
    rng = np.random.RandomState(seed)
    points = rng.randn(2, 3) * 10 ** rng.uniform(-3, 3)
    X = np.repeat(points, [40, 60], axis=0)
    gmm = GaussianMixture(n_components=2, covariance_type=covariance_type, reg_covar=0.0, random_state=0)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        gmm.fit(X)
    # the default reg_covar fits the same data, as scikit-learn's does
    GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=0).fit(X)


@pytest.mark.parametrize("method", ["fit", "fit_predict"])
def test_convergence_warning_points_at_the_callers_line(method):
    # Raised inside the shared EM loop, below fit_context and the dask dispatch:
    # the warning names this file, the user's call, not unsup's wrappers.
    with pytest.warns(ConvergenceWarning, match="did not converge") as record:
        getattr(GaussianMixture(K, max_iter=1, tol=0, random_state=0), method)(X)
    assert [w.filename for w in record if issubclass(w.category, ConvergenceWarning)] == [__file__]
