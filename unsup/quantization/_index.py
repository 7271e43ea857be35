"""The search index of :class:`~unsup.quantization.QuantizedEmbedding`: nearest neighbours over codes.

A :class:`CodeIndex` holds the codes of a fitted set, the codec that reads
them and, optionally, the float vectors. A search scans the codes (the
codec's scan: dequantised codes against float queries at 8 and 4 bits,
Hamming distances of sign bits at 1 bit), keeps a candidate list, and reranks
it by float distances where that pays (:mod:`unsup.quantization._search`
holds the scans and the distances). Validation of the queries and of
``n_neighbors`` is the estimator's: prior validation is assumed here.
"""

from __future__ import annotations

import numpy as np

from unsup.quantization._search import exact_distances, select_sorted
from unsup.utils._threads import openmp_n_threads

__all__ = ["CodeIndex"]


class CodeIndex:
    """Codes of a fitted set, searchable.

    Parameters
    ----------
    codec : Int8Codec, Int4Codec or BinaryCodec
        Reads the codes (:mod:`unsup.quantization._codecs`).
    codes : ndarray of shape (n_samples, codec.n_columns)
        The packed codes of the fitted set.
    embedding : ndarray of shape (n_samples, d) or None
        The float vectors of the fitted set, for exact reranking.
    """

    def __init__(self, codec, codes, embedding=None):
        self.codec = codec
        self.codes = codes
        self.embedding = embedding

    def __len__(self) -> int:
        return self.codes.shape[0]

    def fitted_latents(self):
        """The vectors of the fitted set: the float ones when held, else the dequantised codes."""
        if self.embedding is not None:
            return self.embedding
        return self.dequantized(slice(None))

    def dequantized(self, rows):
        """Dequantised vectors of some rows of the fitted set."""
        return self.codec.decode(self.codec.unpack(self.codes[rows]))

    def kneighbors(self, Z, n_neighbors, *, query_is_train, metric, rescore, rescore_multiplier):
        """``(distances, indices)`` of the ``n_neighbors`` nearest fitted rows to each latent of ``Z``.

        Parameters
        ----------
        Z : ndarray of shape (n_queries, d), non-empty
            Float latents of the queries (with ``query_is_train``, those of
            the fitted set, each excluded from its own neighbours).
        n_neighbors : int
            At most the rows available.
        query_is_train : bool
        metric : str
            A metric :func:`~unsup.quantization._search.scan_dequantized`
            and :func:`~unsup.quantization._search.exact_distances` take.
        rescore : bool
            Rerank a longer candidate list by float distances.
        rescore_multiplier : int or "auto"
            Candidates per neighbour when reranking (``"auto"``: the codec's).

        Returns
        -------
        distances : ndarray of float64 of shape (n_queries, n_neighbors)
        indices : ndarray of intp of shape (n_queries, n_neighbors)
            See :meth:`~unsup.quantization.QuantizedEmbedding.kneighbors`.
        """
        codec = self.codec
        available = len(self) - 1 if query_is_train else len(self)
        # Reranking pays where the scan's distances are not the final ones.
        reranks = rescore and (not codec.scan_gives_distances or self.embedding is not None)
        if reranks:
            multiplier = codec.auto_multiplier if rescore_multiplier == "auto" else rescore_multiplier
            n_candidates = min(available, multiplier * n_neighbors)
        else:
            n_candidates = n_neighbors
        index, scan_distances = codec.scan(
            Z, self.codes, n_candidates, metric=metric, query_is_train=query_is_train,
            n_threads=openmp_n_threads(),  # the usable cores, or OMP_NUM_THREADS
        )
        if not rescore and not codec.scan_gives_distances:
            dist = scan_distances.astype(np.float64) / codec.n_components
        elif reranks and self.embedding is not None:
            dist = exact_distances(Z, self.embedding, index, metric)
        else:
            dist = exact_distances(Z, self.dequantized, index, metric)
        return select_sorted(dist, index, n_neighbors)
