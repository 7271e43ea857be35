"""Awkward inputs over every public estimator: a clear error in scikit-learn's words, or a correct result.

The estimators come from the same registry as the common checks, so a new
estimator is held to these cases by being exported.
"""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone

from tests._instances import estimator_instances

ESTIMATORS = list(estimator_instances())
IDS = [repr(e) for e in ESTIMATORS]
rng = np.random.default_rng(0)
X_OK = rng.standard_normal((40, 4))


def outputs(est, X):
    """Every array the fitted estimator returns for ``X``, through its public methods."""
    out = []
    for method in ("predict", "transform", "score_samples", "decision_function", "inverse_transform"):
        if not hasattr(est, method):
            continue
        if method == "inverse_transform":
            if not hasattr(est, "transform"):
                continue
            out.append(np.asarray(est.inverse_transform(est.transform(X))))
        else:
            out.append(np.asarray(getattr(est, method)(X)))
    return out


def fit_quietly(est, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. ConvergenceWarning on degenerate data
        return est.fit(X)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
@pytest.mark.parametrize("value, words", [(np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")])
def test_non_finite_rejected(est, value, words):
    X = X_OK.copy()
    X[3, 1] = value
    with pytest.raises(ValueError, match=f"Input (X )?contains {words}"):
        clone(est).fit(X)
    fitted = fit_quietly(clone(est), X_OK)
    for method in ("predict", "transform", "score_samples"):
        if hasattr(fitted, method):
            with pytest.raises(ValueError, match=f"Input (X )?contains {words}"):
                getattr(fitted, method)(X)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_empty_rejected(est):
    with pytest.raises(ValueError, match=r"0 sample\(s\)"):
        clone(est).fit(np.empty((0, 4)))
    with pytest.raises(ValueError, match=r"0 feature\(s\)"):
        clone(est).fit(np.empty((10, 0)))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_one_sample(est):
    try:
        fitted = fit_quietly(clone(est), X_OK[:1])
    except ValueError as exc:
        assert any(s in str(exc) for s in ("n_samples=1", "1 sample", "one sample")), str(exc)
        return
    for out in outputs(fitted, X_OK[:1]):
        assert np.all(np.isfinite(out.astype(float)))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_one_feature(est):
    if getattr(est, "architecture", None) == "conv":
        # a 1x1 image leaves nothing to downsample: the documented error, naming n_features as sklearn does
        with pytest.raises(ValueError, match=r"too small.*n_features=1"):
            clone(est).fit(X_OK[:, :1])
        return
    fitted = fit_quietly(clone(est), X_OK[:, :1])
    assert fitted.n_features_in_ == 1
    for out in outputs(fitted, X_OK[:, :1]):
        assert len(out) == len(X_OK) and np.all(np.isfinite(out.astype(float)))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_sparse(est):
    Xs = sp.csr_matrix(X_OK)
    if est.__sklearn_tags__().input_tags.sparse:
        fitted = fit_quietly(clone(est), Xs)
        dense = fit_quietly(clone(est), X_OK)
        for a, b in zip(outputs(fitted, Xs), outputs(dense, X_OK)):
            np.testing.assert_allclose(a, b)
    else:
        with pytest.raises(TypeError, match="Sparse data was passed.*dense data is required"):
            clone(est).fit(Xs)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_pandas_feature_names(est):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(X_OK, columns=["a", "b", "c", "d"])
    fitted = fit_quietly(clone(est), df)
    np.testing.assert_array_equal(fitted.feature_names_in_, ["a", "b", "c", "d"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "X does not have valid feature names"
        from_frame = outputs(fitted, df)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numpy input after a DataFrame fit
        from_array = outputs(fitted, X_OK)
    for a, b in zip(from_frame, from_array):
        np.testing.assert_array_equal(a, b)
    renamed = df.rename(columns={"a": "z"})
    for method in ("predict", "transform"):
        if hasattr(fitted, method):
            with pytest.raises(ValueError, match="The feature names should match"):
                getattr(fitted, method)(renamed)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_object_dtype(est):
    numeric = X_OK.astype(object)
    fitted = fit_quietly(clone(est), numeric)
    reference = fit_quietly(clone(est), X_OK)
    for a, b in zip(outputs(fitted, numeric), outputs(reference, X_OK)):
        np.testing.assert_allclose(a, b)
    strings = X_OK.astype(str).astype(object)
    strings[0, 0] = "a"
    with pytest.raises(ValueError, match="could not convert string to float"):
        clone(est).fit(strings)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_float16_is_upcast(est):
    fitted = fit_quietly(clone(est), X_OK.astype(np.float16))
    for out in outputs(fitted, X_OK.astype(np.float16)):
        assert out.dtype != np.float16 and np.all(np.isfinite(out.astype(float)))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_values_near_float32_max(est):
    """Two groups at +-1e38 in float32: float32 squares overflow, results must not."""
    X = np.zeros((40, 3), dtype=np.float32)
    # its own seed: the data must not depend on which tests ran before
    X[:, 1:] = np.random.RandomState(0).standard_normal((40, 2)) * 1e36
    X[:20, 0], X[20:, 0] = 1e38, -1e38
    fitted = fit_quietly(clone(est), X)
    for out in outputs(fitted, X):
        assert np.all(np.isfinite(out.astype(float)))
    if hasattr(fitted, "labels_") and getattr(fitted, "n_clusters", 0) >= 2:
        labels = fitted.labels_
        # the two groups are never mixed in one cluster
        assert not set(labels[:20]) & set(labels[20:])


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_duplicated_points(est):
    X = np.tile(X_OK[:2], (20, 1))  # rows a, b, a, b, ...
    fitted = fit_quietly(clone(est), X)
    for out in outputs(fitted, X):
        assert np.all(np.isfinite(out.astype(float)))
    if hasattr(fitted, "labels_"):
        # identical rows always share a cluster
        assert len(set(fitted.labels_[::2])) == 1 and len(set(fitted.labels_[1::2])) == 1
