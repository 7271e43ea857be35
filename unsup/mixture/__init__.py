"""Mixture models: :class:`GaussianMixture`, soft clustering by EM with ``sample_weight``."""
from unsup.mixture._gaussian_mixture import GaussianMixture

__all__ = ["GaussianMixture"]
