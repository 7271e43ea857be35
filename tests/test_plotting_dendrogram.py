"""plot_dendrogram: scipy's layout without its recursion, for estimators and linkage matrices."""

import time

import numpy as np
import pytest
from scipy.cluster.hierarchy import dendrogram, linkage

pytest.importorskip("matplotlib")
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.cluster import AgglomerativeClustering as SKAgglomerative  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402

from unsup.cluster import AgglomerativeClustering, DivisiveClustering  # noqa: E402
from unsup.cluster._tree import dendrogram_layout  # noqa: E402
from unsup.plotting import plot_dendrogram  # noqa: E402

X, _ = make_blobs(n_samples=60, centers=4, n_features=2, cluster_std=0.7, random_state=0)
KEYS = ("icoord", "dcoord", "ivl", "leaves", "color_list")


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def chain(n):
    """The deepest tree: a single-linkage chain of n leaves (merge i joins leaf i + 1)."""
    Z = np.empty((n - 1, 4))
    i = np.arange(n - 1)
    Z[:, 0] = np.where(i == 0, 0, n + i - 1)
    Z[:, 1] = i + 1
    Z[:, 2] = 1.0 + i
    Z[:, 3] = i + 2
    return Z


@pytest.mark.parametrize("method", ["single", "ward", "centroid"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"truncate_mode": "lastp", "p": 7},
        {"truncate_mode": "level", "p": 3},
        {"truncate_mode": "lastp", "p": 1},
        {"count_sort": True, "color_threshold": 2.0},
        {"distance_sort": "descending", "show_leaf_counts": False, "truncate_mode": "lastp", "p": 12},
        {"labels": [f"s{i}" for i in range(60)], "above_threshold_color": "k", "color_threshold": 0},
    ],
)
def test_layout_equals_scipy(method, options):
    Z = linkage(X, method)
    ours = dendrogram_layout(Z, **options)
    ref = dendrogram(Z, no_plot=True, **options)
    for key in KEYS:
        assert ours[key] == ref[key], key


def test_layout_of_divisive_trees_equals_scipy():
    for params in ({"method": "diana", "compute_full_tree": True}, {"random_state": 0}):
        Z = DivisiveClustering(4, **params).fit(X).linkage_matrix_
        ours, ref = dendrogram_layout(Z), dendrogram(Z, no_plot=True)
        for key in KEYS:
            assert ours[key] == ref[key], key


def test_draws_the_layout_on_the_given_axes():
    Z = linkage(X, "average")
    fig, ax = plt.subplots()
    out = plot_dendrogram(Z, truncate_mode=None, color_threshold=3.0, ax=ax, linewidths=0.5)
    assert out is ax
    ref = dendrogram(Z, no_plot=True, color_threshold=3.0)
    drawn = {}
    for coll in ax.collections:
        colour = tuple(coll.get_colors()[0])
        for seg in coll.get_segments():
            drawn.setdefault(colour, []).append(seg.tolist())
    expected = {}
    for xs, ys, c in zip(ref["icoord"], ref["dcoord"], ref["color_list"]):
        expected.setdefault(matplotlib.colors.to_rgba(c), []).append([list(p) for p in zip(xs, ys)])
    assert {k: sorted(v) for k, v in drawn.items()} == {k: sorted(v) for k, v in expected.items()}
    assert [t.get_text() for t in ax.get_xticklabels()] == ref["ivl"]
    assert ax.get_ylim()[1] == pytest.approx(Z[:, 2].max() * 1.05)


def test_no_recursion_error_at_20000_leaves():
    Z = chain(20_000)
    t0 = time.perf_counter()
    ax = plot_dendrogram(Z, truncate_mode=None)
    assert time.perf_counter() - t0 < 60
    assert sum(len(c.get_segments()) for c in ax.collections) == 20_000 - 1
    assert ax.get_xlim() == (0.0, 200_000.0)
    assert len(ax.get_xticks()) == 0  # too many leaves to label
    layout = dendrogram_layout(Z, truncate_mode="lastp", p=30)
    assert len(layout["ivl"]) == 30 and layout["ivl"][0] == "(19971)"
    assert len(plot_dendrogram(Z).get_xticklabels()) == 30  # truncated by default


def test_estimators_colour_their_fitted_clusters():
    for est in (
        AgglomerativeClustering(4, linkage="ward").fit(X),
        DivisiveClustering(4, method="diana").fit(X),
        DivisiveClustering(4, random_state=0).fit(X),
    ):
        ax = plot_dendrogram(est, truncate_mode=None)
        colours = {matplotlib.colors.to_hex(c.get_colors()[0]) for c in ax.collections}
        assert len(colours - {matplotlib.colors.to_hex("C0")}) == 4
        assert len(ax.get_xticklabels()) == len(X)


def test_sklearn_estimator_and_errors():
    sk = SKAgglomerative(3, compute_distances=True).fit(X)
    ax = plot_dendrogram(sk, truncate_mode="lastp", p=5)
    assert [t.get_text() for t in ax.get_xticklabels()] == dendrogram(linkage(X, "ward"), no_plot=True, truncate_mode="lastp", p=5)["ivl"]
    with pytest.raises(ValueError, match="compute_distances=True"):
        plot_dendrogram(SKAgglomerative(3).fit(X))
    with pytest.raises(ValueError, match="is it fitted"):
        plot_dendrogram(AgglomerativeClustering())
    with pytest.raises(ValueError, match="negative distances"):
        bad = linkage(X, "ward")
        bad[0, 2] = -1.0
        plot_dendrogram(bad)
    with pytest.raises(ValueError, match="orientation"):
        plot_dendrogram(linkage(X, "ward"), orientation="up")


@pytest.mark.parametrize("orientation", ["top", "bottom", "left", "right"])
def test_orientations(orientation):
    Z = linkage(X, "complete")
    ax = plot_dendrogram(Z, orientation=orientation, p=10)
    top = Z[:, 2].max() * 1.05
    height = {"top": (0, top), "bottom": (top, 0), "right": (0, top), "left": (top, 0)}[orientation]
    limits = ax.get_ylim() if orientation in ("top", "bottom") else ax.get_xlim()
    np.testing.assert_allclose(limits, height)
    labels = ax.get_xticklabels() if orientation in ("top", "bottom") else ax.get_yticklabels()
    assert len(labels) == 10
