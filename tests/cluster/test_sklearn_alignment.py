"""Where unsup's clustering follows scikit-learn's conventions: n_init for a callable init, float32, sparse input."""

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import BisectingKMeans
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import make_blobs

from unsup.cluster import DivisiveClustering, KMeans

X_BLOBS, _ = make_blobs(n_samples=200, centers=4, n_features=5, random_state=0)


def _counting_init():
    calls = []

    def init(X, n_clusters, random_state):
        calls.append(1)
        return X[random_state.choice(X.shape[0], n_clusters, replace=False)]

    return init, calls


@pytest.mark.parametrize(
    "init, n_init",
    [("callable", "auto"), ("callable", 3), ("callable", 1), ("k-means++", "auto"), ("random", "auto")],
)
def test_n_init_auto_runs_as_many_inits_as_scikit_learn(init, n_init):
    runs = {}
    for name, cls in (("unsup", KMeans), ("sklearn", SKKMeans)):
        if init == "callable":
            fn, calls = _counting_init()
            cls(4, init=fn, n_init=n_init, random_state=0).fit(X_BLOBS)
            runs[name] = len(calls)
        else:
            runs[name] = cls(4, init=init, n_init=n_init, random_state=0).fit(X_BLOBS)._n_init
    assert runs["unsup"] == runs["sklearn"]
    expected = {("callable", "auto"): 10, ("random", "auto"): 10, ("k-means++", "auto"): 1}
    assert runs["unsup"] == expected.get((init, n_init), n_init)


def test_callable_init_auto_equals_scikit_learn_result():
    fn_a, _ = _counting_init()
    fn_b, _ = _counting_init()
    ours = KMeans(4, init=fn_a, random_state=1).fit(X_BLOBS)
    theirs = SKKMeans(4, init=fn_b, random_state=1).fit(X_BLOBS)
    np.testing.assert_array_equal(ours.labels_, theirs.labels_)
    assert ours.inertia_ == pytest.approx(theirs.inertia_, rel=1e-10)


def test_array_init_is_one_run():
    km = KMeans(4, init=X_BLOBS[:4]).fit(X_BLOBS)
    assert km._n_init == 1
    with pytest.warns(RuntimeWarning, match="performing only one init"):
        KMeans(4, init=X_BLOBS[:4], n_init=3).fit(X_BLOBS)
