"""The latent map of the digits: 2-d codes drawn directly, wider codes through t-SNE.

An autoencoder with ``n_components=2`` gives a map of the data directly; one
with wider codes keeps more of each image, and t-SNE then draws those codes
in the plane. The printed figure of merit is how often a point's nearest
neighbour in the latent space has its label (1-NN accuracy, cross-validated),
against PCA with the same width. First, ``GridSearchCV`` picks the
architecture without labels: ``Autoencoder.score`` is minus the mean
reconstruction error.

Run: ``python examples/latent_space.py`` (the figure is saved in the folder
named by ``UNSUP_EXAMPLES_OUT``, or the temporary folder). With
``UNSUP_EXAMPLES_FAST=1`` (the tests) it takes 600 images and short fits.
"""

import os
import tempfile
import warnings

from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from unsup import Autoencoder

warnings.simplefilter("ignore", ConvergenceWarning)

FAST = os.environ.get("UNSUP_EXAMPLES_FAST") == "1"
X, y = load_digits(return_X_y=True)
X = X / 16.0
if FAST:
    X, y = X[:600], y[:600]

grid = GridSearchCV(
    Autoencoder(hidden_layer_sizes=(32,), max_epochs=3 if FAST else 10, random_state=0),
    {"n_components": [2, 8], "kind": ["undercomplete", "denoising"]},
    cv=3,
).fit(X)  # no y: the score is the held-out reconstruction
print("GridSearchCV picks", grid.best_params_, f"(score {grid.best_score_:.3f})")

codes = {}
for k in (2, 8):
    ae = Autoencoder(n_components=k, max_epochs=10 if FAST else 40, random_state=0).fit(X)
    codes[f"Autoencoder k={k}"] = ae.transform(X)
    codes[f"PCA k={k}"] = PCA(k).fit_transform(X)

print(f"{'latent space':18s} 1-NN accuracy of the labels (5-fold)")
for name, Z in codes.items():
    acc = cross_val_score(KNeighborsClassifier(1), Z, y, cv=5).mean()
    print(f"{name:18s} {acc:.3f}")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unsup.plotting import plot_latent
except ImportError:
    print("matplotlib is not installed: no plot")
else:
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    plot_latent(codes["Autoencoder k=2"], y, ax=axes[0])
    axes[0].set_title("Autoencoder, 2-d codes")
    plot_latent(codes["Autoencoder k=8"], y, method="tsne", random_state=0, ax=axes[1])
    axes[1].set_title("Autoencoder, 8-d codes through t-SNE")
    out = os.path.join(os.environ.get("UNSUP_EXAMPLES_OUT", tempfile.gettempdir()), "latent_space.png")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"latent maps saved to {out}")
