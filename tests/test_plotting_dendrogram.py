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


# ------------------------------------------------------------------- the cut


def _cut_lines(ax):
    return [line for line in ax.lines if line.get_label().startswith("cut: ")]


@pytest.mark.parametrize("k", [2, 4, 7])
def test_the_cut_is_drawn_between_the_kept_and_the_cut_merges(k):
    """One dashed line at the fitted cut; the links below it carry k colours, one per cluster."""
    est = AgglomerativeClustering(k, linkage="ward").fit(X)
    Z = linkage(X, "ward")  # the oracle: scipy's heights
    ax = plot_dendrogram(est, truncate_mode=None)
    (line,) = _cut_lines(ax)
    height = line.get_ydata()[0]
    assert line.get_ydata()[1] == height and line.get_linestyle() == "--"
    np.testing.assert_allclose(height, (Z[-k, 2] + Z[-k + 1, 2]) / 2)  # between the last merge kept and the first cut
    assert line.get_label() == f"cut: {k} clusters"
    assert ax.get_legend() is not None
    # scipy's colours at that height: the same number, k, below the line
    colours = {matplotlib.colors.to_hex(c.get_colors()[0]) for c in ax.collections}
    expected = set(dendrogram(Z, color_threshold=height, no_plot=True)["color_list"]) - {"C0"}
    assert len(colours - {matplotlib.colors.to_hex("C0")}) == len(expected) == k
    # every link that crosses the line is drawn in the above-threshold colour
    for collection in ax.collections:
        colour = matplotlib.colors.to_hex(collection.get_colors()[0])
        tops = [segment[1][1] for segment in collection.get_segments()]
        assert (max(tops) > height) == (colour == matplotlib.colors.to_hex("C0"))


def test_the_cut_of_a_divisive_tree_and_of_a_threshold():
    est = DivisiveClustering(3, random_state=0, compute_full_tree=True).fit(X)
    ax = plot_dendrogram(est, truncate_mode="lastp", p=12, orientation="right")
    (line,) = _cut_lines(ax)
    heights = np.sort(est.linkage_matrix_[:, 2])
    np.testing.assert_allclose(line.get_xdata()[0], (heights[-3] + heights[-2]) / 2)  # a vertical line
    Z = linkage(X, "average")
    ax = plot_dendrogram(Z, color_threshold=2.5, ax=plt.figure().subplots())
    (line,) = _cut_lines(ax)
    assert line.get_ydata()[0] == 2.5
    from scipy.cluster.hierarchy import fcluster

    k = len(np.unique(fcluster(Z, 2.5 - 1e-12, criterion="distance")))
    assert line.get_label() == f"cut: {k} clusters"
    assert _cut_lines(plot_dendrogram(Z, ax=plt.figure().subplots())) == []  # a bare matrix: no cut
    assert _cut_lines(plot_dendrogram(est, show_cut=False, ax=plt.figure().subplots())) == []


def test_truncated_leaves_are_explained_on_the_leaf_axis():
    est = AgglomerativeClustering(4).fit(X)
    ax = plot_dendrogram(est, truncate_mode="lastp", p=10)
    assert all(t.get_text().startswith("(") for t in ax.get_xticklabels())
    assert ax.get_xlabel() == "(n): a branch of n samples drawn as one leaf"
    ax = plot_dendrogram(est, truncate_mode="level", p=3, orientation="left", ax=plt.figure().subplots())
    texts = [t.get_text() for t in ax.get_yticklabels()]
    assert any(t.startswith("(") for t in texts) and not all(t.startswith("(") for t in texts)
    assert ax.get_ylabel() == "(n): a branch of n samples drawn as one leaf; a number alone: a sample"
    assert plot_dendrogram(est, truncate_mode=None, ax=plt.figure().subplots()).get_xlabel() == ""
