"""Names of choices that more than one part of ``unsup`` offers, kept in one place.

A leaf module: it imports nothing, so the command line's parser can build its
choices from it without importing scipy or the estimators
(``tests/test_startup.py``).
"""

__all__ = ["EUCLIDEAN_LINKAGES", "LINKAGES"]

#: The linkages of :class:`~unsup.cluster.AgglomerativeClustering` (scipy's names).
LINKAGES = ("ward", "complete", "average", "single", "weighted", "centroid", "median")
#: Linkages whose update formula assumes euclidean geometry (centroids, means).
EUCLIDEAN_LINKAGES = ("ward", "centroid", "median")
