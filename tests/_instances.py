"""One instance of every public estimator, with small parameters for fast tests.

The estimators come from :func:`unsup.utils.all_estimators` (everything exported
in an ``__all__``), so a new estimator joins the common checks and the
bad-input tests by being exported. ``TEST_PARAMS`` holds the constructor
arguments that keep the suite fast (few epochs, few restarts), in one place.
"""

from __future__ import annotations

from sklearn.preprocessing import StandardScaler

from unsup.utils import all_estimators

TEST_PARAMS: dict[str, dict] = {
    "KMeans": {"n_clusters": 3, "n_init": 2, "max_iter": 30, "random_state": 0},
    "DivisiveClustering": {"random_state": 0},
    "GaussianMixture": {"n_components": 3, "random_state": 0},
    # Tiny networks and few epochs: the checks test the contract, not the fit.
    "Autoencoder": {"hidden_layer_sizes": (8,), "max_epochs": 5, "batch_size": 32, "random_state": 0},
    "VariationalAutoencoder": {"hidden_layer_sizes": (8,), "max_epochs": 5, "batch_size": 32, "random_state": 0},
    "AutoencoderEnsemble": {"n_estimators": 4, "max_epochs": 3, "random_state": 0},
}

# Further instances of an estimator whose code paths differ by parameter: the
# common checks run on each (the hand-written centre rules, the mini-batch path).
VARIANTS: dict[str, list[dict]] = {
    # Convolutional networks: one block (the checks' X has as few as 2 features, each row a
    # 1-d signal with image_shape=None); strided convolutions + upsampling (the defaults), and
    # pooling + transposed convolutions with skip connections (no inverse_transform: the decoder
    # needs the feature maps).
    "Autoencoder": [
        {"architecture": "conv", "conv_channels": (4,)},
        {"architecture": "conv", "conv_channels": (4,), "downsampling": "pool", "upsampling": "transpose",
         "skip_connections": True},
    ],
    "VariationalAutoencoder": [{"architecture": "conv", "conv_channels": (4,)}],
    # Each covariance type has its own E and M step kernels (full is the default).
    "GaussianMixture": [{"covariance_type": "tied"}, {"covariance_type": "diag"}, {"covariance_type": "spherical"}],
    "KMeans": [
        {"metric": "manhattan"},
        {"metric": "cosine"},
        {"metric": "hamming"},
        {"metric": "chebyshev"},
        {"batch_size": 16},
    ],
    # One instance per engine (lean for ward and single, fastcluster's and
    # scipy's matrix paths) and per predict rule (the default is ward:
    # nearest-point, max, weighted-mean and nearest-midpoint rules below).
    "AgglomerativeClustering": [
        {"linkage": "single", "metric": "manhattan"},
        {"linkage": "complete", "metric": "cosine"},
        {"linkage": "average", "engine": "scipy"},
        {"linkage": "median"},
    ],
    "DivisiveClustering": [
        {"method": "diana"},
        {"metric": "manhattan", "bisecting_strategy": "largest_cluster"},
    ],
    # One instance per code path: packed 4-bit and 1-bit codes, dequantised
    # output (1-bit symmetric levels), codes only, and a meta-estimator with an encoder.
    "QuantizedEmbedding": [
        {"n_bits": 4},
        {"n_bits": 1},
        {"output": "dequantized"},
        {"n_bits": 1, "scheme": "symmetric", "output": "dequantized"},
        {"n_bits": 4, "scheme": "symmetric", "keep_float": False},
        # (PCA's eigensolver fails on float32 values near 1e38, and StandardScaler
        # centres no sparse input: with_mean=False exercises the sparse path)
        {"encoder": StandardScaler(with_mean=False)},
    ],
}


def estimator_instances(*, variants=True):
    """Yield an instance of each public estimator, built with ``TEST_PARAMS``.

    With ``variants``, also one instance per entry of ``VARIANTS``.
    """
    for name, cls in all_estimators():
        params = TEST_PARAMS.get(name, {})
        yield cls(**params)
        for extra in VARIANTS.get(name, []) if variants else []:
            yield cls(**{**params, **extra})
