"""Chunked numpy kernels: quantize, dequantize and min/max in one pass over memory.

The public functions validate; these kernels assume validated, C-contiguous
inputs ("prior validation of data is assumed") and do the work a chunk at a
time, so that a chunk (``CHUNK`` elements, 1 MiB of float32) stays in cache
while several cheap numpy ufuncs run over it with ``out=``. The input is read
from memory once and no full-size temporary is allocated. (Smaller chunks fit
L2 better but pay numpy's per-call overhead, a few microseconds a reduction,
more often: on the benchmark machine 2**18 was the best trade.)

The finite check is fused into the pass instead of costing its own:

- quantization rounds with the "magic number" ``M = 1.5 * 2**23`` (``2**52``
  for float64): for ``|v| < 2**22``, ``fl(v + M)`` is ``M + rint(v)`` (round
  half to even, as ``std::nearbyint`` in torch), so the integer bits of the
  sum hold the rounded value and its low byte (or low 16 bits) is the code.
  One integer min/max over those bits then checks, at once, that every code is
  inside ``[qmin, qmax]`` and that nothing was NaN or infinite (their bit
  patterns fall far outside). Only a chunk that fails the test takes the exact
  slow path, which clips (saturation) or raises scikit-learn's error;
- min/max reductions propagate NaN and show infinities, so calibration checks
  its result, not its input.

The chunks are independent, so they are shared out among a few threads
(:func:`run_chunks`): numpy's ufuncs release the GIL, and on a machine with
two cores the two halves of the work run at once, as an allocating copy of
the input cannot.

Parameters (inverse scale, zero point, scale) may be scalars, per-channel or
per-element arrays broadcastable to the data: :func:`_plan` lays the data out
as rows so that each parameter is a scalar, a vector along the row (tiled once
for a whole chunk) or one value per row.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from sklearn.utils import assert_all_finite

from unsup._sklearn_adapter import effective_n_threads
from unsup.utils._threads import thread_pool

__all__ = [
    "CHUNK",
    "FLOOR_TOLERANCE",
    "dequantize_into",
    "floor_with_tolerance",
    "minmax",
    "quantize_into",
    "run_chunks",
]

CHUNK = 1 << 18

# Relative nudge of floor rounding (see floor_with_tolerance).
FLOOR_TOLERANCE = 4 * float(np.finfo(np.float32).eps)

# Rounding constant and the integer type whose bits it is read through.
_MAGIC = {
    np.dtype(np.float32): (np.float32(1.5 * 2.0**23), np.int32),
    np.dtype(np.float64): (np.float64(1.5 * 2.0**52), np.int64),
}


def _plan(shape, params):
    """Lay out a C-ordered array of ``shape`` as ``(n_rows, row_len)`` for ``params``.

    Returns ``(n_rows, row_len, kind, values)``: with ``kind="scalar"`` every
    parameter is one value (``values`` holds 0-d arrays); with ``"column"`` the
    parameters vary along a row (``values`` holds arrays of length
    ``row_len``); with ``"row"`` they are constant along a row (``values``
    holds arrays of length ``n_rows``).
    """
    ndim = len(shape)
    size = math.prod(shape)
    ps = [np.asarray(p) for p in params]
    ps = [p.reshape((1,) * (ndim - p.ndim) + p.shape) for p in ps]
    varying = [k for k in range(ndim) if any(p.shape[k] != 1 for p in ps)]
    if not varying:
        return 1, size, "scalar", [p.reshape(()) for p in ps]
    first, last = varying[0], varying[-1]
    if last == ndim - 1:
        period = math.prod(shape[first:])
        lead = (0,) * first
        values = [np.broadcast_to(p[lead], shape[first:]).reshape(period) for p in ps]
        return size // period, period, "column", values
    n_rows = math.prod(shape[: last + 1])
    trail = (0,) * (ndim - last - 1)
    values = [np.broadcast_to(p[(...,) + trail], shape[: last + 1]).reshape(n_rows) for p in ps]
    return n_rows, size // max(n_rows, 1), "row", values


def _blocks(shape, params):
    """The ``(start, stop, values)`` of the flat chunks of the data and their parameters.

    Each value is a 0-d array or a flat array of length ``stop - start``, so a
    kernel can apply numpy ufuncs to the flat chunk directly. Full chunks of a
    tiled parameter share one array.
    """
    chunk = CHUNK
    n_rows, row_len, kind, values = _plan(shape, params)
    if n_rows == 0 or row_len == 0:
        return []
    if row_len > chunk:  # long rows: chunks within a row
        blocks = []
        for r in range(n_rows):
            for c0 in range(0, row_len, chunk):
                c1 = min(row_len, c0 + chunk)
                if kind == "scalar":
                    vals = values
                elif kind == "column":
                    vals = [v[c0:c1] for v in values]
                else:
                    vals = [v[r] for v in values]
                blocks.append((r * row_len + c0, r * row_len + c1, vals))
        return blocks
    per = max(1, chunk // row_len)
    size = n_rows * row_len
    starts = range(0, size, per * row_len)
    if kind == "scalar":
        return [(a, min(a + per * row_len, size), values) for a in starts]
    if kind == "column":
        tiles = [np.tile(v, per) for v in values]
        return [
            (a, b, tiles if b - a == len(tiles[0]) else [t[: b - a] for t in tiles])
            for a in starts
            for b in (min(a + per * row_len, size),)
        ]
    return (  # lazily: the repeated parameters of one chunk at a time
        (a, b, [np.repeat(v[a // row_len : b // row_len], row_len) for v in values])
        for a in starts
        for b in (min(a + per * row_len, size),)
    )


def run_chunks(work, blocks, make_scratch=None):
    """Call ``work(block, scratch)`` for every block, shared among threads.

    The number of threads is scikit-learn's ``effective_n_threads()``
    (the usable cores, or ``OMP_NUM_THREADS``). Threads take the next block
    from ``blocks`` (any iterable, consumed under a lock, so lazily made
    blocks are made once) until none is left; the caller's thread works too.
    Each thread gets its own ``scratch = make_scratch()``. The first
    exception raised by ``work`` stops the others and is raised here.

    Parameters
    ----------
    work : callable ``(block, scratch) -> None``
        Writes its result into its own slice of an output; never the same
        slice as another block.
    blocks : iterable
    make_scratch : callable, default=None
        Makes a thread's scratch buffers; None gives ``scratch=None``.
    """
    it = iter(blocks)
    first = next(it, None)
    if first is None:
        return
    second = next(it, None)
    scratch = make_scratch() if make_scratch is not None else None
    n_threads = effective_n_threads()
    if second is None or n_threads == 1:
        for block in (first,) if second is None else (first, second):
            work(block, scratch)
        for block in it:
            work(block, scratch)
        return
    lock = threading.Lock()
    pending = [first, second]
    failed = []

    def take():
        with lock:
            if failed:
                return None
            return pending.pop() if pending else next(it, None)

    def worker(scratch):
        if scratch is None and make_scratch is not None:
            scratch = make_scratch()
        try:
            while (block := take()) is not None:
                work(block, scratch)
        except BaseException as exc:
            with lock:
                failed.append(exc)

    pool = thread_pool("quant", n_threads - 1)
    futures = [pool.submit(worker, None) for _ in range(n_threads - 1)]
    worker(scratch)
    for future in futures:
        future.result()
    if failed:
        raise failed[0]


def floor_with_tolerance(v):
    """``floor(v)`` in place, ``v`` first nudged up by 4 float32 ulps of its magnitude.

    ``v = x · fl(1/s)`` carries the relative rounding error of the float32
    reciprocal and of the products (about 2.5 float32 ulps), so a value
    dequantised from code ``k`` (``x = fl(k · s)``) may land just below ``k``:
    the nudge sends it back to ``k``, which makes floor rounding idempotent as
    nearest rounding is.
    """
    v += np.abs(v) * FLOOR_TOLERANCE
    np.floor(v, out=v)


def quantize_into(x, inv_scale, zero_point, qmin, qmax, floor, out, *, input_name=""):
    """Write ``clamp(round(x * inv_scale) + zero_point, qmin, qmax)`` into ``out``.

    Parameters
    ----------
    x : ndarray of float32 or float64, C-contiguous, any shape
    inv_scale : ndarray broadcastable to ``x.shape``, dtype of ``x``
        The reciprocal of the scale, as torch computes it (``1.0f / scale``).
    zero_point : ndarray of integers broadcastable to ``x.shape``
    qmin, qmax : int
    floor : bool
        Round down instead of to nearest (half to even).
    out : ndarray of an integer dtype, C-contiguous, shape ``x.shape``
    input_name : str
        Name used in the error message for non-finite input.

    Raises
    ------
    ValueError
        When ``x`` contains NaN or infinity, in scikit-learn's words.
    """
    magic, itype = _MAGIC[x.dtype]
    magic_bits = int(np.array(magic).view(itype))
    lo_bits, hi_bits = magic_bits + qmin, magic_bits + qmax
    xf, of = x.reshape(-1), out.reshape(-1)
    zero_point = np.asarray(zero_point, dtype=itype)
    with_zero_point = bool(np.any(zero_point))
    n_buf = min(CHUNK, max(x.size, 1))

    def scratch():
        buf = np.empty(n_buf, dtype=x.dtype)
        return buf, buf.view(itype)

    def work(block, bufs):
        start, stop, (inv_c, zp_c) = block
        buf, ibuf = bufs
        with np.errstate(over="ignore"):  # x * inv may overflow to inf: such a chunk saturates
            _quantize_chunk(
                xf[start:stop], inv_c, zp_c, of[start:stop], buf[: stop - start], ibuf[: stop - start],
                magic, with_zero_point, lo_bits, hi_bits, qmin, qmax, floor, input_name,
            )

    run_chunks(work, _blocks(x.shape, [inv_scale, zero_point]), scratch)


def _quantize_chunk(
    x, inv_c, zp_c, out, v, iv, magic, with_zero_point, lo_bits, hi_bits, qmin, qmax, floor, input_name
):
    """One chunk of :func:`quantize_into` (``v`` and ``iv``: the float and integer views
    of a scratch buffer): the fast path, or the exact one when its range test fails."""
    np.multiply(x, inv_c, out=v)
    if floor:
        floor_with_tolerance(v)
    np.add(v, magic, out=v)
    if with_zero_point:
        np.add(iv, zp_c, out=iv)
    if np.minimum.reduce(iv) >= lo_bits and np.maximum.reduce(iv) <= hi_bits:
        np.copyto(out, iv, casting="unsafe")
        return
    # Saturation or a non-finite value: exact float path, clipping in float.
    if not np.isfinite(np.minimum.reduce(x)) or not np.isfinite(np.maximum.reduce(x)):
        assert_all_finite(x, input_name=input_name)
    np.multiply(x, inv_c, out=v)
    if floor:
        floor_with_tolerance(v)
    else:
        np.rint(v, out=v)
    np.add(v, zp_c, out=v)
    np.clip(v, qmin, qmax, out=v)
    np.copyto(out, v, casting="unsafe")


def dequantize_into(codes, scale, zero_point, out, *, qmin=None, qmax=None):
    """Write ``(codes - zero_point) * scale`` into ``out`` (the dtype of ``out``).

    Parameters
    ----------
    codes : ndarray of an integer dtype, C-contiguous
    scale : ndarray broadcastable to ``codes.shape``, dtype of ``out``
    zero_point : ndarray broadcastable to ``codes.shape``, dtype of ``out``
    out : ndarray of float32 or float64, C-contiguous, shape ``codes.shape``
    qmin, qmax : int, default=None
        When given, codes outside ``[qmin, qmax]`` raise a ValueError (they
        cannot come from :func:`quantize_into`).
    """
    cf, of = codes.reshape(-1), out.reshape(-1)
    with_zero_point = bool(np.any(zero_point))
    # Only the bounds the code dtype can cross are checked (int8 codes of 8 bits: -128).
    info = np.iinfo(codes.dtype)
    check_lo = qmin is not None and info.min < qmin
    check_hi = qmax is not None and info.max > qmax

    def work(block, _):
        start, stop, (s_c, zp_c) = block
        c, o = cf[start:stop], of[start:stop]
        if (check_lo and np.minimum.reduce(c) < qmin) or (check_hi and np.maximum.reduce(c) > qmax):
            raise ValueError(
                f"Codes must lie in [{qmin}, {qmax}]; got values in "
                f"[{int(np.min(c))}, {int(np.max(c))}]."
            )
        # Widening copy, then in-place float ops: faster than a ufunc casting on the fly.
        np.copyto(o, c)
        if with_zero_point:
            np.subtract(o, zp_c, out=o)
        np.multiply(o, s_c, out=o)

    run_chunks(work, _blocks(codes.shape, [scale, zero_point]))


def minmax(x, axis=None):
    """Minimum and maximum of ``x`` over all axes but ``axis``, in one pass.

    Parameters
    ----------
    x : ndarray, C-contiguous, ``x.size > 0``
    axis : int or None
        The kept axis (non-negative); None reduces everything.

    Returns
    -------
    min_val, max_val : ndarray of shape () or (x.shape[axis],)
        NaN where the input held a NaN, infinite where it held an infinity.
    """
    if axis is None:
        flat = x.reshape(-1)
        mins, maxs = [], []
        for start in range(0, flat.size, CHUNK):
            chunk = flat[start : start + CHUNK]
            mins.append(np.minimum.reduce(chunk))
            maxs.append(np.maximum.reduce(chunk))
        return np.minimum.reduce(np.asarray(mins)), np.maximum.reduce(np.asarray(maxs))
    if axis == x.ndim - 1:
        return _minmax_columns(x.reshape(-1, x.shape[-1]))
    outer = math.prod(x.shape[:axis])
    x3 = x.reshape(outer, x.shape[axis], -1)
    return x3.min(axis=(0, 2)), x3.max(axis=(0, 2))


def _minmax_columns(x2):
    """Column-wise min and max of a C-contiguous 2-d array, a chunk of rows at a time.

    Narrow rows are folded ``k`` at a time into rows of ``k * n_cols`` values,
    so numpy's row-after-row reduction runs over long contiguous vectors.
    """
    n_rows, n_cols = x2.shape
    k = max(1, 1024 // n_cols)
    per = max(k, (CHUNK // (k * n_cols)) * k)
    mn = np.full(n_cols, np.inf, dtype=x2.dtype)
    mx = np.full(n_cols, -np.inf, dtype=x2.dtype)
    for r0 in range(0, n_rows, per):
        block = x2[r0 : r0 + per]
        rows = block.shape[0]
        if rows % k == 0 and k > 1:
            block = block.reshape(rows // k, k * n_cols)
        bmin = np.minimum.reduce(block, axis=0).reshape(-1, n_cols)
        bmax = np.maximum.reduce(block, axis=0).reshape(-1, n_cols)
        np.minimum(mn, np.minimum.reduce(bmin, axis=0), out=mn)
        np.maximum(mx, np.maximum.reduce(bmax, axis=0), out=mx)
    return mn, mx
