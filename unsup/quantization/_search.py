"""Nearest-neighbour search over quantized codes: the scans, the top-k selection, rescoring.

Private helpers of :class:`unsup.quantization.QuantizedEmbedding`; prior
validation of the data is assumed.

Design constraints:

- The codes are scanned one block of rows at a time and never decoded whole:
  memory stays the codes plus one block of floats (``BLOCK_ROWS`` rows) and
  one block of distances per chunk of queries.
- 8- and 4-bit codes are scanned as dequantised float32 blocks multiplied by
  the float queries in one BLAS call (numpy's integer matmul is ~20x slower;
  torch's int8 ``_int_mm`` is faster per product but needs int8 queries, a
  second rounding, and is private: see docs/quantized_embedding.md). The
  block carries one extra column, its squared norms, so that the GEMM itself
  yields ``|x|² − 2 q·x``, the squared euclidean distance less the query's
  constant ``|q|²``.
- Groups of queries are scanned by parallel threads (numpy releases the GIL;
  BLAS is held to one thread meanwhile). A base that fits one block is
  decoded once and each chunk of queries takes its top-k from ``torch.topk``
  (threaded itself), with the rows whose k-th value ties re-selected by keys.
- 1-bit codes (sign bits, packed) are scanned with XOR and ``np.bitwise_count``
  on the widest unsigned words that divide a row's bytes.
- The top-k of every query is kept across blocks by a threshold filter: once a
  query has ``k`` candidates, a block only contributes the entries below its
  current k-th distance, which after the first blocks are few; those are merged
  with the kept ones by one small sort. Ties go to the lower row, so the result
  does not depend on the block sizes (Hamming distances tie often).
- Final distances are recomputed from the vectors themselves (differences, not
  the norm expansion), in float64, so they carry no cancellation error.
"""

from __future__ import annotations

import numpy as np

from unsup.metrics._registry import Metric, get_metric, names_with
from unsup.utils._threads import single_threaded, thread_pool

__all__ = [
    "BLOCK_ROWS",
    "QUERY_ROWS",
    "SEARCH_METRICS",
    "search_metric",
    "bits_as_words",
    "exact_distances",
    "scan_dequantized",
    "scan_hamming",
    "select_sorted",
]

# Rows of codes decoded at a time, and queries per distance block: a block of
# QUERY_ROWS x BLOCK_ROWS float32 distances is 16 MB.
BLOCK_ROWS = 8192
QUERY_ROWS = 512


#: The metrics whose arithmetic the scans know (the registry's ``searches_codes``).
SEARCH_METRICS = names_with("searches_codes")


def search_metric(metric) -> Metric:
    """The registry metric of a search, checked to search codes (a name or a :class:`Metric`)."""
    try:
        m = get_metric(metric)
    except (TypeError, ValueError):
        m = None
    if m is None or not m.searches_codes:
        raise ValueError(f"metric must be one of {SEARCH_METRICS}; got {metric!r}.") from None
    return m


_SIGN = np.uint32(0x80000000)
_LOW = np.uint64(0xFFFFFFFF)
_EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)  # a slot not filled yet: after every real key


def _keys(dist, index):
    """uint64 keys ordered as (distance, index): the float32 bits made order-preserving
    (sign bit flipped for positives, all bits for negatives) above the 32-bit index."""
    bits = np.ascontiguousarray(dist, dtype=np.float32).view(np.uint32)
    key = np.where(bits >> 31, ~bits, bits | _SIGN).astype(np.uint64)
    key <<= np.uint64(32)
    key |= np.asarray(index).astype(np.uint64)
    return key


def _key_dist(key):
    """The float32 distances of keys (inf for empty slots)."""
    high = (key >> np.uint64(32)).astype(np.uint32)
    return np.where(high >> 31, high & ~_SIGN, ~high).view(np.float32)


class _TopK:
    """The ``k`` smallest values seen so far in each row, with their column indices.

    Entries are kept as 64-bit keys ordered by (value, column), so that one
    partial sort of plain integers (numpy's vectorised ``np.partition``) selects
    them, and among equal values the lower column wins: the result does not
    depend on how the columns are split into blocks (Hamming distances tie often).
    """

    def __init__(self, n_rows, k):
        self.k = k
        self.key = np.full((n_rows, k), _EMPTY, dtype=np.uint64)
        self.threshold = np.full(n_rows, np.inf, dtype=np.float32)

    @property
    def dist(self):
        """float32 values of shape (n_rows, k), by increasing (value, column)."""
        return _key_dist(np.sort(self.key, axis=1))

    @property
    def index(self):
        """Columns of shape (n_rows, k), by increasing (value, column); -1 for empty slots."""
        key = np.sort(self.key, axis=1)
        return np.where(key == _EMPTY, -1, (key & _LOW).astype(np.intp))

    def push(self, r0, D, c0):
        """Merge the block ``D`` (rows ``r0:r0+len(D)``, columns ``c0:c0+D.shape[1]``)."""
        m, n_cols = D.shape
        start = 0
        if not np.isfinite(self.threshold[r0 : r0 + m]).all():
            # First columns: a partial sort of a narrow slice gives every row a
            # threshold; then slices of doubling width, each of which holds about
            # k new entries per row (fewer as the thresholds tighten).
            start = min(n_cols, max(8 * self.k, 64))
            self._dense(r0, D[:, :start], c0)
        while start < n_cols:  # columns go up: a new entry never ties below a kept one
            stop = 2 * start if 0 < start < n_cols // 2 else n_cols
            self._sparse(r0, D[:, start:stop], c0 + start)
            start = stop

    def _sparse(self, r0, D, c0):
        m, n_cols = D.shape
        thr = self.threshold[r0 : r0 + m]
        flat = np.flatnonzero(np.less(D, thr[:, None]))  # 1-d: far faster than a 2-d nonzero
        if len(flat) == 0:
            return
        rows, cols = np.divmod(flat, n_cols)
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
        counts = np.diff(np.r_[starts, len(rows)])
        touched = rows[starts]
        k = self.k
        width = k + int(counts.max())
        if width > 8 * k:  # loose thresholds in some row: a partial sort of the rows is cheaper
            self._dense(r0, D, c0, touched)
            return
        vals = D.ravel()[flat] if D.flags.c_contiguous else D[rows, cols]
        # Each touched row: its k keys, then its new ones, padded with empty slots.
        g = r0 + touched
        K = np.full((len(g), width), _EMPTY, dtype=np.uint64)
        K[:, :k] = self.key[g]
        which = np.repeat(np.arange(len(g)), counts)
        position = k + np.arange(len(rows)) - np.repeat(starts, counts)
        K[which, position] = _keys(vals, cols + c0)
        self._keep(g, K)

    def _dense(self, r0, D, c0, rows=None):
        """Merge whole rows of ``D`` (``rows``: the local rows; all by default)."""
        if rows is None:
            g = np.arange(r0, r0 + D.shape[0])
        else:
            g, D = r0 + rows, D[rows]
        new = _keys(D, np.arange(c0, c0 + D.shape[1]))
        self._keep(g, np.concatenate([self.key[g], new], axis=1))

    def _keep(self, g, K):
        """Rows ``g`` keep the ``k`` smallest keys of ``K``."""
        kept = np.partition(K, self.k - 1, axis=1)[:, : self.k]
        self.key[g] = kept
        self.threshold[g] = _key_dist(kept.max(axis=1))


def _exclude_self(D, q0, c0):
    """Set ``D[r, c] = inf`` where query ``q0 + r`` is base row ``c0 + c``."""
    m, b = D.shape
    r = np.arange(max(q0, c0), min(q0 + m, c0 + b))
    if len(r):
        D[r - q0, r - c0] = np.inf


def _in_parallel(scan, n_queries, n_threads):
    """Run ``scan(q0, q1)`` over contiguous groups of queries, one thread per group.

    numpy's ufuncs, sorts and BLAS calls release the GIL, so the groups run at
    once; BLAS is held to one thread meanwhile, so the threads do not
    oversubscribe the cores. Returns the groups' results concatenated.
    """
    n_groups = max(1, min(n_threads, n_queries // 64))
    if n_groups == 1:
        return scan(0, n_queries)
    bounds = np.linspace(0, n_queries, n_groups + 1).astype(int)
    pool = thread_pool("search", n_threads)  # sized once per thread count, whatever the groups
    with single_threaded("blas"):
        parts = list(pool.map(scan, bounds[:-1], bounds[1:]))
    return tuple(np.concatenate(p) for p in zip(*parts)) if isinstance(parts[0], tuple) else np.concatenate(parts)


def scan_dequantized(queries, n_base, decode, k, *, metric, exclude_self, n_threads=1):
    """Candidate neighbours of ``queries`` among codes decoded block by block.

    Parameters
    ----------
    queries : ndarray of float32 of shape (n_queries, d)
    n_base : int
        Number of coded vectors.
    decode : callable
        ``decode(start, stop, out)`` writes the dequantised float32 rows
        ``start:stop`` into ``out`` of shape (stop - start, d).
    k : int
        Candidates per query, ``1 <= k <= n_base`` (``n_base - 1`` with ``exclude_self``).
    metric : str or Metric
        One of :data:`SEARCH_METRICS`; its ``scan_queries`` and ``scan_block``
        give the arithmetic of the scan.
    exclude_self : bool
        Queries are the base rows themselves: row ``i`` is not a candidate of query ``i``.
    n_threads : int, default=1
        Threads, each scanning a group of the queries.

    Returns
    -------
    index : ndarray of intp of shape (n_queries, k)
        By increasing scan distance (float32), ties by increasing index.
    """
    metric = search_metric(metric)
    n_queries, d = queries.shape
    Q = np.zeros((n_queries, d + 1), dtype=np.float32)
    metric.scan_queries(queries, Q)

    def prepare(B):
        """Block ``B`` in the metric's scan form."""
        metric.scan_block(B, d)

    if n_base <= BLOCK_ROWS:
        return _scan_one_block(Q, n_base, decode, prepare, k, exclude_self)

    def scan(g0, g1):
        top = _TopK(g1 - g0, k)
        rows = min(BLOCK_ROWS, n_base)
        block = np.zeros((rows, d + 1), dtype=np.float32)
        dist = np.empty((min(QUERY_ROWS, g1 - g0), rows), dtype=np.float32)
        for c0 in range(0, n_base, rows):
            c1 = min(n_base, c0 + rows)
            B = block[: c1 - c0]
            decode(c0, c1, B[:, :d])
            prepare(B)
            for q0 in range(g0, g1, QUERY_ROWS):
                q1 = min(g1, q0 + QUERY_ROWS)
                D = dist[: q1 - q0, : c1 - c0]
                np.matmul(Q[q0:q1], B.T, out=D)
                if exclude_self:
                    _exclude_self(D, q0, c0)
                top.push(q0 - g0, D, c0)
        return top.index

    return _in_parallel(scan, n_queries, n_threads)


def _scan_one_block(Q, n_base, decode, prepare, k, exclude_self):
    """:func:`scan_dequantized` for a base that fits one block: decoded once, no merging.

    Each chunk of queries gets its whole distance block from one matrix
    product (numpy's, as the blockwise scan, so the distances are the same
    bits) and its ``k + 1`` smallest entries from ``torch.topk`` (threaded
    C++, several times faster than a keyed partial sort in numpy). The product
    runs on one BLAS thread: BLAS threads still spinning after it would slow
    torch's (2x on two cores). ``topk`` breaks ties arbitrarily, so a row
    whose k-th and (k+1)-th smallest values are equal is selected again by
    (distance, index) keys; the result is the same as the blockwise scan's.
    """
    import torch  # here, not at the top: ``import unsup.quantization`` does not import torch

    d = Q.shape[1] - 1
    B = np.zeros((n_base, d + 1), dtype=np.float32)
    decode(0, n_base, B[:, :d])
    prepare(B)
    n_queries = Q.shape[0]
    index = np.empty((n_queries, k), dtype=np.intp)
    width = min(k + 1, n_base)  # one more than k shows a tie across the k-th place
    step = max(1, (1 << 22) // n_base)  # distance blocks of 16 MB at most
    for q0 in range(0, n_queries, step):
        q1 = min(n_queries, q0 + step)
        with single_threaded("blas"):
            D = Q[q0:q1] @ B.T
        if exclude_self:
            _exclude_self(D, q0, 0)
        values, columns = torch.topk(torch.from_numpy(D), width, dim=1, largest=False, sorted=True)
        values, columns = values.numpy(), columns.numpy()
        key = _keys(values[:, :k], columns[:, :k])
        if width > k:
            ambiguous = np.flatnonzero(values[:, k] == values[:, k - 1])
            if len(ambiguous):
                top = _TopK(len(ambiguous), k)
                top._dense(0, D[ambiguous], 0)
                key[ambiguous] = top.key
        key.sort(axis=1)
        index[q0:q1] = (key & _LOW).astype(np.intp)
    return index


def bits_as_words(bits):
    """Packed bits of shape (n, n_bytes) viewed as the widest unsigned words dividing ``n_bytes``."""
    n_bytes = bits.shape[1]
    for size, dtype in ((8, np.uint64), (4, np.uint32), (2, np.uint16)):
        if n_bytes % size == 0:
            return np.ascontiguousarray(bits).view(dtype)
    return np.ascontiguousarray(bits)


def scan_hamming(query_bits, base_bits, k, *, exclude_self, n_threads=1):
    """Candidate neighbours by Hamming distance between packed sign bits.

    Parameters
    ----------
    query_bits : ndarray of uint8 of shape (n_queries, n_bytes)
    base_bits : ndarray of uint8 of shape (n_base, n_bytes)
    k : int
    exclude_self : bool
    n_threads : int, default=1
        Threads, each scanning a group of the queries.

    Returns
    -------
    index : ndarray of intp of shape (n_queries, k)
        By increasing Hamming distance, ties by increasing index.
    hamming : ndarray of float32 of shape (n_queries, k)
        The number of differing bits of each candidate.
    """
    qw, bw = bits_as_words(query_bits), bits_as_words(base_bits)
    n_queries, n_words = qw.shape
    n_base = bw.shape[0]
    # XOR block of QUERY_ROWS x rows x n_words words: bounded at 4M words.
    rows = max(1, min(BLOCK_ROWS, n_base, (1 << 22) // (QUERY_ROWS * n_words)))

    def scan(g0, g1):
        top = _TopK(g1 - g0, k)
        for c0 in range(0, n_base, rows):
            c1 = min(n_base, c0 + rows)
            B = bw[c0:c1]
            for q0 in range(g0, g1, QUERY_ROWS):
                q1 = min(g1, q0 + QUERY_ROWS)
                x = np.bitwise_xor(qw[q0:q1, None, :], B[None, :, :])
                counts = np.bitwise_count(x)
                if n_words == 1:
                    D = counts[:, :, 0].astype(np.float32)
                else:
                    D = np.add.reduce(counts, axis=2, dtype=np.float32)
                if exclude_self:
                    _exclude_self(D, q0, c0)
                top.push(q0 - g0, D, c0)
        return top.index, top.dist

    return _in_parallel(scan, n_queries, n_threads)


def exact_distances(queries, base, index, metric):
    """Distances of each query to its candidate rows, from the vectors themselves, in float64.

    Parameters
    ----------
    queries : ndarray of shape (n_queries, d)
    base : callable or ndarray
        An ndarray of shape (n_base, d), or ``base(index)`` returning the rows
        ``index`` (any shape of indices) with a trailing axis of length d.
    index : ndarray of intp of shape (n_queries, k)
    metric : str or Metric
        One of :data:`SEARCH_METRICS` (its ``exact_rows``).

    Returns
    -------
    dist : ndarray of float64 of shape (n_queries, k)
    """
    metric = search_metric(metric)
    out = np.empty(index.shape, dtype=np.float64)
    # Chunks of 2**16 gathered values (512 KiB of float64 per temporary) stay in
    # cache; larger ones are fresh memory each time (4-5x slower here at 40
    # candidates). A callable base decodes 16x more rows per call (its fixed cost).
    per_row = max(1, index.shape[1] * queries.shape[1])
    step = max(1, (1 << 16) // per_row)
    decode_step = step * 16 if callable(base) else step
    for d0 in range(0, len(queries), decode_step):
        decoded = base(index[d0 : d0 + decode_step]) if callable(base) else None
        for q0 in range(d0, min(len(queries), d0 + decode_step), step):
            _exact_chunk(queries, base, decoded, d0, q0, step, index, metric, out)
    return out


def _exact_chunk(queries, base, decoded, d0, q0, step, index, metric, out):
    """Rows ``q0:q0+step`` of :func:`exact_distances` (``decoded``: the callable base's
    rows of ``index[d0:...]``, or None for an array base)."""
    q = queries[q0 : q0 + step].astype(np.float64)
    idx = index[q0 : q0 + step]
    rows = base[idx] if decoded is None else decoded[q0 - d0 : q0 - d0 + step]
    out[q0 : q0 + step] = metric.exact_rows(q, rows.astype(np.float64))


def select_sorted(dist, index, k):
    """The ``k`` smallest of each row, sorted by distance then index.

    Parameters
    ----------
    dist : ndarray of shape (n_queries, m)
    index : ndarray of intp of shape (n_queries, m), ``m >= k``
    k : int

    Returns
    -------
    dist, index : ndarrays of shape (n_queries, k)
    """
    by_index = np.argsort(index, axis=1)
    dist = np.take_along_axis(dist, by_index, axis=1)
    index = np.take_along_axis(index, by_index, axis=1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]  # stable: ties stay by index
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(index, order, axis=1)
