"""The demo's figures, inspected as matplotlib objects (no image comparison).

The latent map is a t-SNE of the codes wider than 2 (scikit-learn's TSNE,
the oracle), the dendrograms show the cut into the fitted clusters and say
what their leaf counts and heights are.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from threadpoolctl import threadpool_limits

from unsup.cli import demo
from unsup.cluster import AgglomerativeClustering, DivisiveClustering


@pytest.fixture(scope="module")
def figures():
    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    Z = PCA(8, random_state=0).fit_transform(X)
    agglomerative = AgglomerativeClustering(10, linkage="ward").fit(Z)
    divisive = DivisiveClustering(10, random_state=0).fit(Z)
    scores = -np.exp(np.random.default_rng(0).normal(size=60))
    figs = demo.demo_figures(
        Z=Z, y=y, agglomerative=agglomerative, divisive=divisive, codes=Z, scores=scores,
        is_anomaly=np.arange(60) >= 50, threshold=-3.0, random_state=0,
    )
    return figs, Z, divisive


def test_the_latent_map_is_a_tsne_of_the_codes(figures):
    (latent, _, _), Z, _ = figures
    (ax,) = [a for a in latent.axes if a.collections]
    with threadpool_limits(1, user_api="openmp"):  # as the demo: one thread is fastest on a shared machine
        expected = TSNE(2, perplexity=30.0, init="pca", random_state=0).fit_transform(Z)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), expected, rtol=1e-4, atol=1e-4)
    assert ax.get_xlabel() == "t-SNE 1" and "t-SNE of the 8-d code" in ax.get_title()


def test_the_dendrograms_show_the_cut_and_explain_the_leaves(figures):
    (_, trees, _), _, divisive = figures
    ax1, ax2 = trees.axes
    for ax in (ax1, ax2):
        cuts = [line for line in ax.lines if line.get_label() == "cut: 10 clusters"]
        assert len(cuts) == 1 and cuts[0].get_linestyle() == "--"
        height = cuts[0].get_ydata()[0]
        below = {tuple(c.get_colors()[0]) for c in ax.collections if max(s[1][1] for s in c.get_segments()) < height}
        assert 2 <= len(below) <= 10  # the clusters' colours (a cluster drawn as one leaf has none)
        assert ax.get_xlabel().startswith("(n): a branch of n samples drawn as one leaf")
    # the divisive tree is grown below its 10 clusters for the plot: its lowest links are below the cut
    assert min(min(s[1][1] for s in c.get_segments()) for c in ax2.collections) < height
    assert divisive.linkage_matrix_[:-9, 2].max() == 0.0  # the fitted model itself stops at 10 clusters
    assert "Ward merge height" in ax1.get_ylabel() and "within-cluster SS of the cluster split" in ax2.get_ylabel()
    caption = trees._suptitle.get_text()
    assert "(n) under a leaf: n images" in caption and "Compare the shapes and the cuts, not the numbers" in caption
