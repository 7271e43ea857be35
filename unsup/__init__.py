"""unsup: unsupervised learning that fits into scikit-learn.

Every estimator follows scikit-learn's contract (parameters stored by
``__init__``, validation in ``fit``, fitted attributes ending in ``_``, numpy
in and numpy out), so it goes into a ``Pipeline`` or ``GridSearchCV`` as any
scikit-learn estimator does. Subpackages:

- :mod:`unsup.metrics`: the distance registry and chunked pairwise kernels;
- :mod:`unsup.cluster`: k-means with pluggable metrics, agglomerative and
  divisive hierarchical clustering;
- :mod:`unsup.mixture`: Gaussian mixtures (soft clustering by EM, with
  ``sample_weight``);
- :mod:`unsup.neural`: autoencoders and variational autoencoders as
  transformers and outlier detectors (torch is imported with them, not
  with ``unsup``).
"""

import importlib as _importlib

#: Public name -> the subpackage that defines it. Everything is imported on
#: first use (PEP 562), so ``import unsup`` is cheap and imports neither torch
#: nor the optional libraries: torch comes with the first neural estimator.
_NAMES = {
    "AgglomerativeClustering": "unsup.cluster",
    "DivisiveClustering": "unsup.cluster",
    "KMeans": "unsup.cluster",
    "get_metric": "unsup.metrics",
    "pairwise_distances": "unsup.metrics",
    "GaussianMixture": "unsup.mixture",
    "VAE": "unsup.neural",
    "Autoencoder": "unsup.neural",
    "AutoencoderEnsemble": "unsup.neural",
    "VariationalAutoencoder": "unsup.neural",
    "QuantizedEmbedding": "unsup.quantization",
    "Quantizer": "unsup.quantization",
}
_SUBPACKAGES = ("cluster", "metrics", "mixture", "neural", "quantization")

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "AgglomerativeClustering",
    "Autoencoder",
    "AutoencoderEnsemble",
    "DivisiveClustering",
    "GaussianMixture",
    "KMeans",
    "QuantizedEmbedding",
    "Quantizer",
    "VariationalAutoencoder",
    "cluster",
    "get_metric",
    "metrics",
    "mixture",
    "neural",
    "pairwise_distances",
    "quantization",
    "__version__",
]


def __getattr__(name):
    if name in _NAMES:
        value = getattr(_importlib.import_module(_NAMES[name]), name)
    elif name in _SUBPACKAGES:
        value = _importlib.import_module(f"unsup.{name}")
    else:
        raise AttributeError(f"module 'unsup' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
