"""Clustering."""
from unsup.cluster._kmeans import KMeans

__all__ = ["KMeans"]
