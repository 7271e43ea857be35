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
  transformers and outlier detectors.
"""

from unsup import cluster, metrics, mixture, neural, quantization
from unsup.cluster import AgglomerativeClustering, DivisiveClustering, KMeans
from unsup.metrics import get_metric, pairwise_distances
from unsup.mixture import GaussianMixture
from unsup.neural import VAE, Autoencoder, AutoencoderEnsemble, VariationalAutoencoder
from unsup.quantization import QuantizedEmbedding, Quantizer

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
