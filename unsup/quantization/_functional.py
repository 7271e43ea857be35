"""Functional core: quantization parameters, quantize, dequantize, fake quantize.

The course formulas, with ``n`` bits and the clipping range ``[β, α]``:

- asymmetric (affine): ``s = (α − β) / (2ⁿ − 1)``, ``z = round(−β / s)``,
  ``x_q = clamp(round(x / s) + z, 0, 2ⁿ − 1)``, ``x̂ = s (x_q − z)``;
- symmetric: ``s = max(|β|, |α|) / (2ⁿ⁻¹ − 1)``, ``z = 0``,
  ``x_q = clamp(round(x / s), −(2ⁿ⁻¹ − 1), 2ⁿ⁻¹ − 1)``, ``x̂ = s x_q``.

Design constraints of this module:

- numpy first, with a torch twin: a ``torch.Tensor`` takes the same arithmetic
  in torch ops, and :func:`fake_quantize` gives it a straight-through gradient
  (masked outside ``[qmin, qmax]``, as torch's) for quantization-aware training.
  torch is imported only when a tensor comes in.
- The arithmetic is torch's, so results equal
  ``torch.fake_quantize_per_tensor_affine`` / ``_per_channel_affine`` element
  for element: the scale is a float32, ``x`` is multiplied by the float32
  reciprocal ``1.0f / scale`` in the dtype of ``x``, rounded half to even (or
  down with ``rounding="floor"``), shifted by the zero point and clamped; the
  dequantised value is ``(x_q − z) · s`` in the dtype of ``x``. (One torch
  quirk is not copied: its per-tensor kernel rounds float64 outputs through
  float32; here float64 stays exact, as in torch's per-channel kernel.)
- The range always contains zero, and zero is exactly representable; a zero
  range never divides by zero (``s = max(s, eps)``); values out of range
  saturate, never wrap; NaN and infinity raise ``ValueError``.
- Codes are ``int8`` (symmetric) or ``uint8`` (asymmetric), ``int16`` /
  ``uint16`` for 16 bits.
"""

from __future__ import annotations

import functools
import numbers
import sys

import numpy as np

from unsup.quantization._kernels import FLOOR_TOLERANCE, dequantize_into, quantize_into

__all__ = [
    "EPS",
    "N_BITS",
    "ROUNDINGS",
    "SCHEMES",
    "calculate_qparams",
    "check_qconfig",
    "code_dtype",
    "dequantize",
    "fake_quantize",
    "quant_range",
    "quantize",
]

N_BITS = (1, 2, 3, 4, 5, 6, 7, 8, 16)
SCHEMES = ("symmetric", "asymmetric")
ROUNDINGS = ("nearest", "floor")
EPS = float(np.finfo(np.float32).eps)
F32_MAX = float(np.finfo(np.float32).max)


def check_qconfig(n_bits: int, scheme: str, rounding: str = "nearest") -> None:
    """Raise a ValueError naming the problem if the configuration is not supported.

    Parameters
    ----------
    n_bits : int
        1 to 8, or 16.
    scheme : {"symmetric", "asymmetric"}
        ``"symmetric"`` needs at least 2 bits: its restricted range
        ``±(2ⁿ⁻¹ − 1)`` holds nothing but 0 at one bit.
    rounding : {"nearest", "floor"}, default="nearest"
    """
    if isinstance(n_bits, bool) or not isinstance(n_bits, numbers.Integral) or n_bits not in N_BITS:
        raise ValueError(f"n_bits must be an integer from 1 to 8, or 16; got {n_bits!r}.")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}; got {scheme!r}.")
    if scheme == "symmetric" and n_bits < 2:
        raise ValueError(
            "The symmetric scheme needs n_bits >= 2: its restricted range "
            "±(2**(n_bits-1) - 1) holds only 0 at n_bits=1. Use "
            "scheme='asymmetric' for 1-bit codes."
        )
    if rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {ROUNDINGS}; got {rounding!r}.")


def quant_range(n_bits: int = 8, scheme: str = "symmetric") -> tuple[int, int]:
    """The codes ``(qmin, qmax)`` of a configuration.

    Examples
    --------
    >>> from unsup.quantization import quant_range
    >>> quant_range(8, "symmetric"), quant_range(4, "asymmetric")
    ((-127, 127), (0, 15))
    """
    check_qconfig(n_bits, scheme)
    if scheme == "symmetric":
        half = 2 ** (int(n_bits) - 1) - 1
        return -half, half
    return 0, 2 ** int(n_bits) - 1


def code_dtype(n_bits: int = 8, scheme: str = "symmetric") -> np.dtype:
    """The numpy dtype of the codes: ``int8``/``uint8``, ``int16``/``uint16`` for 16 bits.

    Examples
    --------
    >>> from unsup.quantization import code_dtype
    >>> code_dtype(4, "symmetric"), code_dtype(16, "asymmetric")
    (dtype('int8'), dtype('uint16'))
    """
    check_qconfig(n_bits, scheme)
    signed = scheme == "symmetric"
    if n_bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    return np.dtype(np.int16 if signed else np.uint16)


def calculate_qparams(min_val, max_val, *, n_bits: int = 8, scheme: str = "symmetric"):
    """Scale and zero point for the clipping range ``[min_val, max_val]``.

    The range is first widened to contain zero (``β = min(min_val, 0)``,
    ``α = max(max_val, 0)``), so zero is always exactly representable.

    One function for numpy and torch: torch tensors take the same float64
    arithmetic, step for step, in torch ops on the tensors' device (the
    results are equal), with no host-side check, so quantization-aware
    training computes its parameters on every step without a round trip to
    numpy or a device synchronisation.

    Parameters
    ----------
    min_val, max_val : array-like or torch.Tensor of shape (...)
        Finite bounds, ``min_val <= max_val`` element-wise; one pair per
        tensor, channel or block. (Checked for arrays; tensors are trusted.)
    n_bits : int, default=8
    scheme : {"symmetric", "asymmetric"}, default="symmetric"

    Returns
    -------
    scale : ndarray (torch.Tensor for tensors) of float32 of the shape of ``min_val``
        ``max(|β|, |α|) / (2ⁿ⁻¹ − 1)`` (symmetric) or ``(α − β) / (2ⁿ − 1)``
        (asymmetric), at least ``EPS`` (float32 machine epsilon).
    zero_point : ndarray (torch.Tensor for tensors) of int32 of the shape of ``min_val``
        0 (symmetric) or ``round(−β / s)`` (asymmetric).

    Examples
    --------
    >>> from unsup.quantization import calculate_qparams
    >>> calculate_qparams(-1.0, 3.0, n_bits=8, scheme="asymmetric")
    (array(0.01568628, dtype=float32), array(64, dtype=int32))
    >>> calculate_qparams(0.0, 0.0)  # a zero range: scale = eps, no division by zero
    (array(1.1920929e-07, dtype=float32), array(0, dtype=int32))
    """
    qmin, qmax = quant_range(n_bits, scheme)
    if _is_tensor(min_val):
        xp = _torch_ops()
        lo, hi = xp.f64(min_val.detach()), xp.f64(max_val.detach())
    else:
        xp = _NUMPY_OPS
        lo, hi = xp.f64(min_val), xp.f64(max_val)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ValueError("min_val and max_val must be finite.")
        if np.any(lo > hi):
            raise ValueError("min_val must not exceed max_val.")
    lo = xp.clip(lo, None, 0.0)
    hi = xp.clip(hi, 0.0, None)
    if scheme == "symmetric":
        scale = xp.maximum(-lo, hi) / qmax
    else:
        scale = (hi - lo) / (qmax - qmin)
    # float32's largest finite value bounds the scale (1-bit asymmetric codes of
    # a range wider than it), then the grid below
    scale = xp.f32(xp.clip(scale, EPS, F32_MAX))
    if scheme == "symmetric":
        zero_point = xp.zeros_i32(scale)
    else:
        zero_point = xp.i32(xp.clip(qmin - xp.rint(lo / xp.f64(scale)), qmin, qmax))
    return _fit_grid_in_float32(xp, scale, zero_point, qmin, qmax), zero_point


def _fit_grid_in_float32(xp, scale, zero_point, qmin, qmax):
    """``scale``, lowered where the grid's end ``(q − z)·s`` would pass float32's largest value.

    A scale rounded to float32 may round up, and a rounded zero point shifts
    the grid by up to half a step: for ranges near ±3.4e38 the outermost code
    would dequantise to ±inf. Such a scale is lowered to the largest float32
    that keeps every code's value finite (the extreme inputs then saturate at
    the end code); any other scale is returned as it is. ``scale`` is float32
    and ``zero_point`` integers of its shape, both of the namespace ``xp``.
    """
    z = xp.f64(zero_point)
    extent = xp.maximum(qmax - z, z - qmin)  # the widest code distance from the zero point
    too_wide = extent * xp.f64(scale) > F32_MAX
    if not xp.device_side and not np.any(too_wide):  # the common case, without the arithmetic below
        return scale
    bound = xp.f32(F32_MAX / extent)  # rounded: one step down may still be needed
    bound = xp.where(extent * xp.f64(bound) > F32_MAX, xp.nextafter(bound, bound * 0), bound)
    return xp.where(too_wide, bound, scale)


class _NumpyOps:
    """The few array operations :func:`calculate_qparams` needs, on numpy arrays (0-d kept 0-d)."""

    device_side = False
    maximum, rint, nextafter = np.maximum, np.rint, np.nextafter  # ufuncs: not bound
    clip = staticmethod(np.clip)

    @staticmethod
    def where(condition, a, b):
        return np.asarray(np.where(condition, a, b))

    @staticmethod
    def f64(a):
        return np.asarray(a, dtype=np.float64)

    @staticmethod
    def f32(a):
        return np.asarray(a, dtype=np.float32)

    @staticmethod
    def i32(a):
        return np.asarray(a, dtype=np.int32)

    @staticmethod
    def zeros_i32(a):
        return np.zeros(np.shape(a), dtype=np.int32)


_NUMPY_OPS = _NumpyOps()


@functools.cache
def _torch_ops():
    """The same operations in torch, on the tensors' device (torch imported when a tensor comes in).

    Plain torch functions and tensor methods, with no Python wrapper: QAT
    computes its parameters on every training step.
    """
    import types

    import torch

    return types.SimpleNamespace(
        device_side=True,  # no host-side test: every branch is computed with torch.where
        maximum=torch.maximum, clip=torch.clamp, rint=torch.round, where=torch.where, nextafter=torch.nextafter,
        f64=torch.Tensor.double, f32=torch.Tensor.float, i32=torch.Tensor.int,
        zeros_i32=functools.partial(torch.zeros_like, dtype=torch.int32),
    )


# ---------------------------------------------------------------- parameters


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _to_numpy(p) -> np.ndarray:
    return np.asarray(p.detach().cpu().numpy() if _is_tensor(p) else p)


def _expand(p, shape, axis, block_size, name):
    """``p`` laid out to broadcast against data of ``shape`` (see :func:`quantize`)."""
    p = _to_numpy(p)
    ndim = len(shape)
    if axis is not None and block_size is not None:
        raise ValueError("Give axis (per channel) or block_size (per block), not both.")
    if axis is not None:
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis {axis} is out of bounds for an input with {ndim} dimensions.")
        axis %= ndim
        if p.ndim:
            if p.shape != (shape[axis],):
                raise ValueError(
                    f"{name} must have shape ({shape[axis]},) for axis={axis}; got {p.shape}."
                )
            p = p.reshape((-1,) + (1,) * (ndim - axis - 1))
    elif block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer; got {block_size!r}.")
        if ndim == 0:
            raise ValueError("Per-block quantization needs at least one dimension.")
        n_blocks = -(-shape[-1] // block_size)
        if p.ndim:
            if p.shape[-1] != n_blocks:
                raise ValueError(
                    f"{name} must have {n_blocks} blocks along its last axis for "
                    f"{shape[-1]} values in blocks of {block_size}; got shape {p.shape}."
                )
            p = np.repeat(p, block_size, axis=-1)[..., : shape[-1]]
    try:
        fits = np.broadcast_shapes(p.shape, tuple(shape)) == tuple(shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"{name} of shape {p.shape} does not broadcast to the input of shape {tuple(shape)}.")
    return p


def _prepare(shape, dtype, scale, zero_point, qrange, axis, block_size):
    """Validated ``(inv_scale, scale, zero_point)`` arrays laid out for the data."""
    scale = _expand(scale, shape, axis, block_size, "scale").astype(np.float32)
    if not (np.all(np.isfinite(scale)) and np.all(scale > 0)):
        raise ValueError("scale must be finite and positive (as a float32).")
    zero_point = _expand(zero_point, shape, axis, block_size, "zero_point")
    if zero_point.dtype.kind not in "iub":
        zero_point = zero_point.astype(np.float64)
        if not np.all(zero_point == np.rint(zero_point)):
            raise ValueError("zero_point must hold integers.")
    zero_point = zero_point.astype(np.int64)
    if qrange is not None and not np.all((zero_point >= qrange[0]) & (zero_point <= qrange[1])):
        raise ValueError(f"zero_point must lie in [{qrange[0]}, {qrange[1]}].")
    inv_scale = (np.float32(1.0) / scale).astype(dtype)
    return inv_scale, scale.astype(dtype), zero_point


def _as_float_array(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind == "c":
        raise ValueError("Complex data not supported.")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float32 if x.dtype == np.float16 else np.float64)
    return np.ascontiguousarray(x)


# ----------------------------------------------------------------- numpy ops


def quantize(x, scale, zero_point=0, *, n_bits: int = 8, scheme: str = "symmetric", rounding: str = "nearest",
             axis: int | None = None, block_size: int | None = None):
    """Integer codes ``clamp(round(x / s) + z, qmin, qmax)`` of ``x``.

    Parameters
    ----------
    x : array-like or torch.Tensor of any shape
        Finite values. Floats other than float32/float64 are computed in
        float32, integers in float64.
    scale : float or array-like
        Per tensor: a scalar. Per channel (``axis`` given): shape
        ``(x.shape[axis],)``. Per block (``block_size`` given): shape
        ``(..., n_blocks)`` with ``n_blocks = ceil(x.shape[-1] / block_size)``,
        its leading axes broadcasting against those of ``x`` (``(n_blocks,)``
        shares blocks across rows; ``x.shape[:-1] + (n_blocks,)`` gives every
        row its own, as bitsandbytes). Otherwise any shape broadcasting to
        ``x``. Rounded to float32, as torch does.
    zero_point : int or array-like, default=0
        Integers in ``[qmin, qmax]``, laid out as ``scale``.
    n_bits : int, default=8
        1 to 8, or 16.
    scheme : {"symmetric", "asymmetric"}, default="symmetric"
        Decides the code range (:func:`quant_range`) and dtype (:func:`code_dtype`).
    rounding : {"nearest", "floor"}, default="nearest"
        Half to even (as torch), or the floor of the course formula (with a
        tolerance of 4 float32 ulps, so that a dequantised value maps back to
        its code).
    axis : int, default=None
        The channel axis of a per-channel ``scale``.
    block_size : int, default=None
        Values per block, along the last axis, of a per-block ``scale``.

    Returns
    -------
    codes : ndarray of shape x.shape, or torch.Tensor for a tensor input
        ``int8``/``uint8`` (``int16``/``uint16`` for 16 bits). Values out of
        range saturate at ``qmin``/``qmax``.

    Raises
    ------
    ValueError
        If ``x`` holds NaN or infinity, or a parameter is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import quantize
    >>> quantize(np.array([-1.0, 0.0, 0.26, 5.0]), 0.5, n_bits=4)
    array([-2,  0,  1,  7], dtype=int8)
    """
    check_qconfig(n_bits, scheme, rounding)
    if _is_tensor(x):
        return _torch_quantize(x, scale, zero_point, n_bits, scheme, rounding, axis, block_size)
    return quantize_array(
        _as_float_array(x), scale, zero_point, n_bits=n_bits, scheme=scheme, rounding=rounding,
        axis=axis, block_size=block_size,
    )


def quantize_array(x, scale, zero_point, *, n_bits, scheme, rounding, axis, block_size, input_name=""):
    """:func:`quantize` of a C-contiguous float32/float64 ndarray, configuration checked.

    ``input_name`` names the data in the error for NaN or infinity.
    """
    qrange = quant_range(n_bits, scheme)
    inv_scale, _, zero_point = _prepare(x.shape, x.dtype, scale, zero_point, qrange, axis, block_size)
    out = np.empty(x.shape, dtype=code_dtype(n_bits, scheme))
    quantize_into(x, inv_scale, zero_point, *qrange, rounding == "floor", out, input_name=input_name)
    return out


def dequantize(
    codes,
    scale,
    zero_point=0,
    *,
    axis: int | None = None,
    block_size: int | None = None,
    dtype=np.float32,
):
    """Floats ``(codes − z) · s`` back from integer codes.

    Parameters
    ----------
    codes : array-like of integers or torch.Tensor, any shape
    scale, zero_point, axis, block_size
        As given to :func:`quantize`.
    dtype : {np.float32, np.float64}, default=np.float32
        Dtype of the result (a torch input keeps torch's float32).

    Returns
    -------
    x_hat : ndarray of shape codes.shape, or torch.Tensor for a tensor input

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import dequantize
    >>> dequantize(np.array([-2, 0, 1, 7], dtype=np.int8), 0.5)
    array([-1. ,  0. ,  0.5,  3.5], dtype=float32)
    """
    if _is_tensor(codes):
        import torch

        _, s, z = _torch_params(codes, scale, zero_point, None, axis, block_size, torch.float32)
        return (codes.to(torch.float32) - z) * s
    return dequantize_array(
        as_codes(codes), scale, zero_point, axis=axis, block_size=block_size, dtype=dtype
    )


def as_codes(codes) -> np.ndarray:
    """Codes as a C-contiguous integer ndarray; floats must hold integers."""
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iub":
        if codes.dtype.kind != "f" or not np.all(codes == np.rint(codes)):
            raise ValueError("codes must hold integers.")
        codes = codes.astype(np.int64)
    return np.ascontiguousarray(codes)


def dequantize_array(codes, scale, zero_point, *, axis, block_size, dtype, qrange=None):
    """:func:`dequantize` of an integer ndarray; codes outside ``qrange`` raise."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64; got {dtype}.")
    _, scale, zero_point = _prepare(codes.shape, dtype, scale, zero_point, qrange, axis, block_size)
    out = np.empty(codes.shape, dtype=dtype)
    qmin, qmax = qrange if qrange is not None else (None, None)
    dequantize_into(codes, scale, zero_point.astype(dtype), out, qmin=qmin, qmax=qmax)
    return out


def fake_quantize(x, scale, zero_point=0, *, n_bits: int = 8, scheme: str = "symmetric", rounding: str = "nearest",
                  axis: int | None = None, block_size: int | None = None):
    """Quantize then dequantize: ``x̂ = s (clamp(round(x / s) + z, qmin, qmax) − z)``.

    On a ``torch.Tensor`` the result carries a straight-through gradient:
    ``∂x̂/∂x = 1`` where ``round(x / s) + z`` lies in ``[qmin, qmax]`` and 0
    where it saturates, exactly as ``torch.fake_quantize_per_tensor_affine``
    (the scale and zero point get no gradient).

    Parameters
    ----------
    x : array-like or torch.Tensor
    scale, zero_point, n_bits, scheme, rounding, axis, block_size
        As in :func:`quantize`.

    Returns
    -------
    x_hat : ndarray or torch.Tensor of the shape and float dtype of ``x``

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.quantization import fake_quantize
    >>> fake_quantize(np.array([0.1, 0.26, 9.0]), 0.5, n_bits=4)
    array([0. , 0.5, 3.5])
    """
    check_qconfig(n_bits, scheme, rounding)
    if _is_tensor(x):
        return _torch_fake_quantize(x, scale, zero_point, n_bits, scheme, rounding, axis, block_size)
    x = _as_float_array(x)
    codes = quantize(
        x, scale, zero_point, n_bits=n_bits, scheme=scheme, rounding=rounding,
        axis=axis, block_size=block_size,
    )
    return dequantize(codes, scale, zero_point, axis=axis, block_size=block_size, dtype=x.dtype)


# ----------------------------------------------------------------- torch ops


def _torch_check_finite(x):
    import torch

    if not bool(torch.isfinite(x).all()):
        kind = "NaN" if bool(torch.isnan(x).any()) else f"infinity or a value too large for {x.dtype}"
        raise ValueError(f"Input contains {kind}.")


def _torch_params(x, scale, zero_point, qrange, axis, block_size, dtype):
    import torch

    inv, s, z = _prepare(tuple(x.shape), np.float64, scale, zero_point, qrange, axis, block_size)
    as_t = lambda a: torch.as_tensor(a, device=x.device).to(dtype)  # noqa: E731
    return as_t(inv), as_t(s), as_t(z)


def _torch_compute_dtype(x):
    import torch

    return x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32


def _torch_codes(x, inv, z, floor):
    """``round(x * inv) + z`` before clamping, in the dtype of ``x``."""
    import torch

    v = x * inv
    if floor:  # as floor_with_tolerance: a dequantised value maps back to its code
        return torch.floor(v + v.abs() * FLOOR_TOLERANCE) + z
    return torch.round(v) + z


def _torch_prepare(x, scale, zero_point, n_bits, scheme, axis, block_size):
    """The parameter handling of the torch ops: ``(qrange, inv_scale, scale, zero_point)``.

    ``x`` is checked finite; the parameters are validated and laid out as
    tensors on its device, in its compute dtype (float32 or float64).
    """
    _torch_check_finite(x)
    qrange = quant_range(n_bits, scheme)
    return (qrange, *_torch_params(x, scale, zero_point, qrange, axis, block_size, _torch_compute_dtype(x)))


def _torch_quantize(x, scale, zero_point, n_bits, scheme, rounding, axis, block_size):
    import torch

    (qmin, qmax), inv, _, z = _torch_prepare(x, scale, zero_point, n_bits, scheme, axis, block_size)
    q = _torch_codes(x.detach().to(inv.dtype), inv, z, rounding == "floor")
    torch_dtype = {
        np.dtype(np.int8): torch.int8,
        np.dtype(np.uint8): torch.uint8,
        np.dtype(np.int16): torch.int16,
        np.dtype(np.uint16): torch.uint16,
    }[code_dtype(n_bits, scheme)]
    return q.clamp(qmin, qmax).to(torch_dtype)


@functools.cache
def _fake_quantize_function():
    """The autograd Function of :func:`fake_quantize`, built on first use (lazy torch)."""
    import torch

    class FakeQuantizeSTE(torch.autograd.Function):
        """Fake quantization with a straight-through gradient masked outside [qmin, qmax]."""

        @staticmethod
        def forward(ctx, x, inv, scale, zero_point, qmin, qmax, floor):
            q = _torch_codes(x, inv, zero_point, floor)
            mask = (q >= qmin) & (q <= qmax)
            ctx.save_for_backward(mask)
            return (q.clamp(qmin, qmax) - zero_point) * scale

        @staticmethod
        def backward(ctx, grad_output):
            (mask,) = ctx.saved_tensors
            return grad_output * mask, None, None, None, None, None, None

    return FakeQuantizeSTE


def _torch_fake_quantize(x, scale, zero_point, n_bits, scheme, rounding, axis, block_size):
    (qmin, qmax), inv, s, z = _torch_prepare(x, scale, zero_point, n_bits, scheme, axis, block_size)
    out = _fake_quantize_function().apply(x.to(inv.dtype), inv, s, z, qmin, qmax, rounding == "floor")
    return out.to(x.dtype)
