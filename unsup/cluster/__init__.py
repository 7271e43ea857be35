"""Clustering."""
from unsup.cluster._divisive import DivisiveClustering
from unsup.cluster._hierarchical import AgglomerativeClustering
from unsup.cluster._kmeans import KMeans

__all__ = ["AgglomerativeClustering", "DivisiveClustering", "KMeans"]
