"""plot_latent and plot_scores: what is drawn equals the codes, the 2-d maps and the scores.

Oracles: the estimator's own transform / score_samples, scikit-learn's PCA
and TSNE with the same parameters, numpy histograms.
"""

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.manifold import TSNE  # noqa: E402

from unsup.neural import Autoencoder  # noqa: E402
from unsup.plotting import plot_latent, plot_scores  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

rng = np.random.default_rng(0)
X = rng.standard_normal((60, 5))
y = np.arange(60) % 3


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def ae():
    return Autoencoder(2, hidden_layer_sizes=(8,), max_epochs=5, random_state=0).fit(X)


def test_two_d_codes_are_drawn_as_they_are(ae):
    ax = plot_latent(X, y, estimator=ae)
    offsets = ax.collections[0].get_offsets()
    np.testing.assert_allclose(offsets, ae.transform(X))
    np.testing.assert_array_equal(ax.collections[0].get_array(), y)
    assert ax.get_xlabel() == "code 0" and ax.get_legend() is not None


def test_wider_codes_through_pca():
    Z = rng.standard_normal((40, 6))
    ax = plot_latent(Z, method="pca")
    np.testing.assert_allclose(ax.collections[0].get_offsets(), PCA(2).fit_transform(Z), atol=1e-10)
    assert ax.get_xlabel() == "PC 1 of the codes"


def test_wider_codes_through_tsne():
    Z = rng.standard_normal((40, 4))
    ax = plot_latent(Z, np.linspace(0, 1, 40), random_state=0)
    expected = TSNE(2, perplexity=13.0, init="pca", random_state=0).fit_transform(Z)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), expected, rtol=1e-5, atol=1e-5)
    assert len(ax.figure.axes) == 2  # continuous colours get a colour bar


def test_one_d_codes_on_a_line():
    ax = plot_latent(np.arange(5.0)[:, None])
    np.testing.assert_array_equal(ax.collections[0].get_offsets()[:, 1], 0.0)


def test_tsne_gives_a_2d_scatter_of_every_point():
    Z = rng.standard_normal((50, 8))
    ax = plot_latent(Z, np.arange(50) % 4, method="tsne", random_state=0)
    offsets = ax.collections[0].get_offsets()
    assert offsets.shape == (50, 2) and np.all(np.isfinite(offsets))
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("t-SNE 1", "t-SNE 2")


def test_plot_latent_errors():
    with pytest.raises(ValueError, match="method must be 'tsne' or 'pca'"):
        plot_latent(rng.standard_normal((10, 3)), method="umap")
    for width in (1, 2):  # checked even where no mapping is needed
        with pytest.raises(ValueError, match="method must be 'tsne' or 'pca'; got 'TSNE'"):
            plot_latent(rng.standard_normal((10, width)), method="TSNE")
    with pytest.raises(ValueError, match="y has 3 entries for 10 points"):
        plot_latent(rng.standard_normal((10, 2)), y=[1, 2, 3])


def test_plot_scores_from_an_estimator(ae):
    fig, ax = plt.subplots()
    out = plot_scores(X, estimator=ae, ax=ax, bins=10)
    assert out is ax
    heights = [p.get_height() for p in ax.patches]
    expected, _ = np.histogram(ae.score_samples(X), bins=10)
    np.testing.assert_array_equal(heights, expected)
    line = ax.lines[0]
    assert line.get_xdata()[0] == pytest.approx(ae.offset_)
    assert f"threshold ({int(np.sum(ae.score_samples(X) < ae.offset_))} below)" in [t.get_text() for t in ax.get_legend().texts]


@pytest.mark.parametrize("labels", [np.r_[np.zeros(50), np.ones(10)], np.r_[np.ones(50), -np.ones(10)]])
def test_plot_scores_with_labels(labels):
    scores = np.r_[rng.normal(0, 1, 50), rng.normal(-5, 1, 10)]
    ax = plot_scores(scores, labels, bins=12, threshold=-3.0)
    heights = np.array([p.get_height() for p in ax.patches])
    assert heights.sum() == 60 and heights[:12].sum() == 50 and heights[12:].sum() == 10
    texts = [t.get_text() for t in ax.get_legend().texts]
    assert "inliers (50)" in texts and "outliers (10)" in texts


def test_plot_scores_needs_1d_scores():
    with pytest.raises(ValueError, match="1-d array of scores"):
        plot_scores(rng.standard_normal((5, 2)))


# ------------------------------------------------------------ images


def test_plot_images_tiles_c_order_rows():
    from unsup.plotting import plot_images

    imgs = np.arange(5 * 12, dtype=float).reshape(5, 12)  # five 1x3x4 images
    ax = plot_images(imgs, (1, 3, 4), n_cols=3, pad=1)
    grid = ax.images[0].get_array()
    assert grid.shape == (3 + 1 + 3, 3 * 4 + 2)
    np.testing.assert_array_equal(grid[:3, :4], imgs[0].reshape(3, 4))
    np.testing.assert_array_equal(grid[4:7, 5:9], imgs[4].reshape(3, 4))  # second row, second column
    assert grid.mask[3].all() and grid.mask[4:7, 10:].all()  # padding and the empty sixth tile
    rgb = np.random.default_rng(0).random((2, 3 * 2 * 2))
    arr = plot_images(rgb, (3, 2, 2), n_cols=2, pad=0).images[0].get_array()
    np.testing.assert_allclose(arr[:, 2:], rgb[1].reshape(3, 2, 2).transpose(1, 2, 0))
    with pytest.raises(ValueError, match="image_shape must be"):
        plot_images(imgs, (1, 4, 4))


def test_plot_interpolation_decodes_the_straight_line_between_codes():
    from unsup.plotting import plot_interpolation

    X = rng.standard_normal((60, 16))
    ae = Autoencoder(2, architecture="conv", image_shape=(1, 4, 4), conv_channels=(4,), max_epochs=3,
                     random_state=0).fit(X)
    ax = plot_interpolation(ae, X[0], X[1], n_steps=5, pad=0)
    grid = ax.images[0].get_array()
    z = ae.transform(X[:2])
    mid = ae.inverse_transform(((z[0] + z[1]) / 2)[None])[0]
    np.testing.assert_allclose(grid[:, 8:12], mid.reshape(4, 4), rtol=1e-6)
    np.testing.assert_allclose(grid[:, :4], ae.inverse_transform(z[:1])[0].reshape(4, 4), rtol=1e-6)
    with pytest.raises(ValueError, match="n_steps must be"):
        plot_interpolation(ae, X[0], X[1], n_steps=1)
