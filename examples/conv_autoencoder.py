"""Convolutional autoencoders on the digits: reconstructions, the latent map, VAE samples and interpolation.

The 8x8 digits are rows of 64 pixels; ``architecture="conv"`` with
``image_shape=(1, 8, 8)`` reads them as images (two stride-2 convolution
blocks, a code, a mirrored decoder of upsampling and convolutions, and an
output convolution). The script prints
the held-out reconstruction error of the convolutional autoencoder, the fully
connected one and PCA with the same code size, and the int8 copy's size and
code error; it draws the reconstructions beside the originals, the latent map,
16 samples of a VAE and a latent interpolation between two digits.

Run: ``python examples/conv_autoencoder.py``. The pictures go to
``docs/images/`` (the ones ``docs/conv_autoencoder.md`` shows); with
``UNSUP_EXAMPLES_FAST=1`` (the tests) the fits are short and the pictures go
to ``UNSUP_EXAMPLES_OUT`` or the temporary folder.
"""

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from unsup.neural import Autoencoder, VariationalAutoencoder

warnings.simplefilter("ignore", ConvergenceWarning)
FAST = os.environ.get("UNSUP_EXAMPLES_FAST") == "1"
epochs = {"max_epochs": 3} if FAST else {}
if FAST:
    out_dir = Path(os.environ.get("UNSUP_EXAMPLES_OUT", tempfile.gettempdir()))
else:
    out_dir = Path(__file__).resolve().parents[1] / "docs" / "images"
    out_dir.mkdir(exist_ok=True)

X, y = load_digits(return_X_y=True)
X = X / 16.0
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0)
if FAST:
    X_train, y_train = X_train[:400], y_train[:400]
conv = dict(architecture="conv", image_shape=(1, 8, 8), random_state=0, **epochs)


def mse(model):
    rec = model.reconstruct(X_test) if hasattr(model, "reconstruct") else model.inverse_transform(model.transform(X_test))
    return np.mean((rec - X_test) ** 2)


cae = Autoencoder(n_components=8, **conv).fit(X_train)
fc = Autoencoder(n_components=8, random_state=0, **epochs).fit(X_train)
pca = PCA(8).fit(X_train)
print("held-out MSE, code size 8")
for name, model in [("conv autoencoder", cae), ("fully connected autoencoder", fc), ("PCA", pca)]:
    print(f"  {name:28s} {mse(model):.4f}")
q = cae.quantize(X_train)
rel = np.linalg.norm(q.transform(X_test) - cae.transform(X_test)) / np.linalg.norm(cae.transform(X_test))
print(f"int8 copy: {q.model_size_bytes_} bytes ({q.model_size_bytes_ / cae.model_size_bytes_:.2f} of the float "
      f"model), held-out code relative error {rel:.3f}")

vae = VariationalAutoencoder(n_components=2, beta=1.0, **conv).fit(X_train)
print(f"VAE, 2-d latent space: held-out loss {-vae.score(X_test):.2f}")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unsup.plotting import plot_images, plot_interpolation, plot_latent
except ImportError:
    print("matplotlib is not installed: no pictures")
else:
    fig, axes = plt.subplots(2, 1, figsize=(8, 2.6))
    plot_images(X_test[:16], (1, 8, 8), n_cols=16, ax=axes[0])
    axes[0].set_title("held-out digits")
    plot_images(cae.reconstruct(X_test[:16]), (1, 8, 8), n_cols=16, ax=axes[1])
    axes[1].set_title("their reconstructions from 8 numbers (conv autoencoder)")
    fig.tight_layout()
    fig.savefig(out_dir / "conv_reconstructions.png", dpi=90)

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    plot_latent(X_test, y_test, estimator=vae, ax=ax, s=8)
    ax.set_title("VAE posterior means of held-out digits")
    fig.tight_layout()
    fig.savefig(out_dir / "conv_latent_map.png", dpi=90)

    fig, axes = plt.subplots(2, 1, figsize=(6, 4.2), gridspec_kw={"height_ratios": [2, 1]})
    plot_images(np.clip(vae.sample(16, random_state=0), 0, 1), (1, 8, 8), n_cols=8, ax=axes[0])
    axes[0].set_title("vae.sample(16)")
    a, b = X_test[y_test == 0][0], X_test[y_test == 6][0]
    plot_interpolation(vae, a, b, n_steps=8, ax=axes[1])
    axes[1].set_title("decoded straight line in latent space from a 0 to a 6")
    fig.tight_layout()
    fig.savefig(out_dir / "conv_vae_samples.png", dpi=90)
    plt.close("all")
    print(f"pictures saved to {out_dir}")
