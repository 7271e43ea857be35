"""ONNX graphs of the Autoencoder and the VAE, built from their weights.

The networks are plain ``nn.Sequential`` stacks (see
:mod:`unsup.neural._modules`), so the graph is written layer by layer with
the exact weights: ``MatMul`` + ``Add`` per ``Linear``, the activation's own
operator, and the scaling of the inputs and outputs around them. Layers of
the quantized models:

- ``FakeQuantLinear`` (QAT): its fake-quantized weight, as forward uses it;
- ``QuantizedLinear`` (``quantize(...)``): int8 weight codes per output
  channel as initializers, dequantized by ``Cast`` and ``Mul`` (one scale per
  output channel; see ``_quantized_linear`` for why not ``DequantizeLinear``),
  and the calibrated input quantizer as quantize-dequantize (``Round``, clipping, ``Mul``) with the outlier path
  (``Where``) when ``outliers="float"``;
- ``LatentFakeQuantize`` (QAT on the code): quantize-dequantize per feature.

Anything else raises :class:`~unsup.onnx.ExportError` naming the layer.
"""

from __future__ import annotations

import math

import numpy as np
from skl2onnx.common.data_types import Int64TensorType

from unsup.onnx._converters import (
    ExportError,
    _float_dtype,
    _float_type,
    _n_rows,
)
from unsup.onnx._graph import Graph


def _linear(g: Graph, x: str, weight: np.ndarray, bias) -> str:
    y = g.op("MatMul", x, g.const(np.ascontiguousarray(weight.T, dtype=np.float32), hint="W"))
    return y if bias is None else g.op("Add", y, g.const(np.asarray(bias, dtype=np.float32), hint="b"))


def _fake_quantize(g: Graph, x: str, scale, zero_point, n_bits, scheme) -> str:
    """Quantize then dequantize in float32: ``clip(round(x · (1/s)), qmin − z, qmax − z) · s``.

    The same numbers as ``(clamp(round(x/s) + z, qmin, qmax) − z) · s`` (unsup's
    and torch's arithmetic: the bounds are integers, so clipping commutes with
    rounding), in four element-wise nodes: onnxruntime's per-axis
    ``QuantizeLinear`` runs several times slower than these (measured).
    """
    from unsup.quantization._functional import quant_range

    qmin, qmax = quant_range(n_bits, scheme)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.asarray(zero_point, dtype=np.float32)
    y = g.op("Round", g.op("Mul", x, g.const(np.float32(1.0) / scale)))
    lo = g.const(qmin - zp)
    hi = g.op("Add", lo, g.const(np.float32(qmax - qmin)))  # folded at load: one vector fewer in the file
    y = g.op("Min", g.op("Max", y, lo), hi)
    return g.op("Mul", y, g.const(scale))


def _quantized_linear(g: Graph, x: str, layer) -> str:
    scale = layer.input_scale.cpu().numpy().astype(np.float32)
    zp = layer.input_zero_point.cpu().numpy().astype(np.int64)
    x_hat = _fake_quantize(g, x, scale, zp, layer.n_bits, "asymmetric")
    if layer.outliers == "float":
        far = g.op("Greater", g.op("Abs", g.op("Sub", x, x_hat)), g.const(scale))
        x_hat = g.op("Where", far, x, x_hat)
    codes = np.ascontiguousarray(layer.weight_codes.cpu().numpy().T)  # (in, out) int8
    w_scale = layer.weight_scale.cpu().numpy().astype(np.float32)
    # s_w ⊙ W_q as Cast and Mul, not DequantizeLinear: onnxruntime fuses a
    # DequantizeLinear that feeds a MatMul into MatMulNBits, which quantizes the
    # activations again (to int8, measured: 1e-2 relative error). Constant
    # folding turns these two nodes into a float weight when the session loads.
    weight = g.op("Mul", g.cast(g.const(codes, hint="W_int8"), np.float32), g.const(w_scale[None, :], hint="W_scale"))
    y = g.op("MatMul", x_hat, weight)
    bias = layer.bias
    return y if bias is None else g.op("Add", y, g.const(bias.cpu().numpy().astype(np.float32), hint="b"))


def _activation(g: Graph, x: str, layer) -> str:
    from torch import nn

    if isinstance(layer, nn.ReLU):
        return g.op("Relu", x)
    if isinstance(layer, nn.LeakyReLU):
        return g.op("LeakyRelu", x, alpha=float(layer.negative_slope))
    if isinstance(layer, nn.ELU):
        return g.op("Elu", x, alpha=float(layer.alpha))
    if isinstance(layer, nn.GELU) and layer.approximate == "none":
        # 0.5 x (1 + erf(x / sqrt 2)), torch's exact GELU
        erf = g.op("Erf", g.op("Mul", x, g.const(np.float32(1.0 / math.sqrt(2.0)))))
        return g.op("Mul", g.op("Mul", x, g.const(np.float32(0.5))), g.op("Add", erf, g.const(np.float32(1.0))))
    if isinstance(layer, nn.SiLU):
        return g.op("Mul", x, g.op("Sigmoid", x))
    if isinstance(layer, nn.Tanh):
        return g.op("Tanh", x)
    if isinstance(layer, nn.Sigmoid):
        return g.op("Sigmoid", x)
    return None


def mlp(g: Graph, x: str, module) -> str:
    """The graph of an eval-mode ``nn.Sequential`` of unsup's layers, on float32 ``x``."""
    from torch import nn

    from unsup.neural._modules import SeededDropout
    from unsup.quantization.nn import FakeQuantLinear, QuantizedLinear

    for layer in module:
        if isinstance(layer, (nn.Identity, SeededDropout, nn.Dropout)):
            continue  # identities in eval mode
        if isinstance(layer, FakeQuantLinear):
            with _no_grad():
                w = layer.quantized_weight().detach().cpu().numpy()
            x = _linear(g, x, w, None if layer.bias is None else layer.bias.detach().cpu().numpy())
        elif isinstance(layer, nn.Linear):
            bias = None if layer.bias is None else layer.bias.detach().cpu().numpy()
            x = _linear(g, x, layer.weight.detach().cpu().numpy(), bias)
        elif isinstance(layer, QuantizedLinear):
            x = _quantized_linear(g, x, layer)
        else:
            y = _activation(g, x, layer)
            if y is None:
                raise ExportError(f"The layer {layer!r} has no ONNX converter in unsup.onnx.")
            x = y
    return x


def _no_grad():
    import torch

    return torch.no_grad()


def _latent(g: Graph, z: str, est) -> str:
    q = getattr(est, "latent_quantizer_", None)
    if q is None:
        return z
    scale, zero_point = q.qparams()
    return _fake_quantize(g, z, scale, zero_point, q.n_bits, q.scheme)


def shape(operator):
    est = operator.raw_operator
    n = _n_rows(operator)
    ftype = _float_type(operator.inputs[0])
    operator.outputs[0].type = ftype([n, est.n_components])
    operator.outputs[1].type = ftype([n, est.n_features_in_])
    operator.outputs[2].type = ftype([n])
    operator.outputs[3].type = Int64TensorType([n])


def convert(scope, operator, container):
    """Outputs: transform, reconstruction (inverse_transform of the code), score_samples, predict."""
    from unsup.neural import VariationalAutoencoder
    from unsup.neural._base import _CLIP, LOGVAR_CLAMP

    est = operator.raw_operator
    if getattr(est, "architecture", "mlp") != "mlp":
        raise ExportError(
            f"{type(est).__name__} with architecture={est.architecture!r} cannot be exported to ONNX: "
            "unsup.onnx converts the fully connected networks (architecture='mlp') only."
        )
    g = Graph(scope, container)
    x = operator.inputs[0].full_name
    dtype = _float_dtype(operator.inputs[0])
    outs = [o.full_name for o in operator.outputs]
    # standardise in the input's dtype, clipped as unsup's _standardise does
    # (finite extreme inputs stay finite; inf - inf counts as extreme), then float32
    xs = _standardised(g, x, est, dtype, _CLIP)
    if dtype == np.float64:
        xs = g.cast(xs, np.float32)
    encoded = mlp(g, xs, est.encoder_)
    vae = isinstance(est, VariationalAutoencoder)
    k = est.n_components
    if vae:
        mu = g.slice_cols(encoded, 0, k)
        logvar = g.op("Clip", g.slice_cols(encoded, k, 2 * k), g.const(np.float32(LOGVAR_CLAMP[0])),
                      g.const(np.float32(LOGVAR_CLAMP[1])))
    else:
        mu = encoded
    code = _latent(g, mu, est)
    g.identity(code, outs[0]) if dtype == np.float32 else g.cast(code, dtype, out=outs[0])
    rec = mlp(g, code, est.decoder_)
    # back to the data's units in float64 (unsup's _unstandardise)
    rec64 = g.op("Add", g.op("Mul", g.cast(rec, np.float64), g.const(est.scale_.astype(np.float64))),
                 g.const(est.mean_.astype(np.float64)))
    g.identity(rec64, outs[1]) if dtype == np.float64 else g.cast(rec64, np.float32, out=outs[1])
    if vae:
        diff = g.op("Sub", g.cast(rec, np.float64), g.cast(xs, np.float64))
        recon = g.op("Mul", g.reduce("ReduceSum", g.op("Mul", diff, diff), 1), g.const(0.5))
        mu64, lv64 = g.cast(mu, np.float64), g.cast(logvar, np.float64)
        kl_terms = g.op("Sub", g.op("Sub", g.op("Add", g.op("Mul", mu64, mu64), g.op("Exp", lv64)), g.const(1.0)), lv64)
        kl = g.op("Mul", g.reduce("ReduceSum", kl_terms, 1), g.const(0.5))
        loss = g.op("Add", recon, g.op("Mul", kl, g.const(float(est.beta))))
    else:
        diff = g.op("Sub", rec, xs)
        loss = g.cast(g.reduce("ReduceMean", g.op("Mul", diff, diff), 1), np.float64)
        if est._error_unit != 1.0:  # scale=False on extremely wide columns: back to the units of X
            loss = g.op("Mul", loss, g.const(float(est._error_unit)))
    score = g.op("Neg", loss)
    g.identity(score, outs[2]) if dtype == np.float64 else g.cast(score, np.float32, out=outs[2])
    _outlier_labels(g, score, est.offset_, outs[3])


def _standardised(g: Graph, x: str, est, dtype, bound: float) -> str:
    """``(x - mean_) / scale_`` computed in ``dtype`` (``x`` cast to it), clipped as unsup clips it."""
    xs = g.op("Div", g.op("Sub", x, g.const(est.mean_.astype(dtype))), g.const(est.scale_.astype(dtype)))
    return _clip_extremes(g, xs, dtype, bound)


def _clip_extremes(g: Graph, xs: str, dtype, bound: float) -> str:
    """Standardised values clipped to +-bound, NaN (inf - inf) as +bound: unsup's inference rule."""
    xs = g.op("Where", g.op("IsNaN", xs), g.const(np.asarray(bound, dtype=dtype)), xs)
    return g.op("Clip", xs, g.const(np.asarray(-bound, dtype=dtype)), g.const(np.asarray(bound, dtype=dtype)))


def _outlier_labels(g: Graph, score: str, offset: float, out: str) -> None:
    """+1 where score - offset >= 0, else -1: a score that is not a number is an outlier, as in unsup."""
    inlier = g.op("GreaterOrEqual", g.op("Sub", score, g.const(float(offset))), g.const(0.0))
    g.op("Where", inlier, g.const(np.int64(1)), g.const(np.int64(-1)), out=out)


# ------------------------------------------------------------ AutoencoderEnsemble
def ensemble_shape(operator):
    n = _n_rows(operator)
    operator.outputs[0].type = _float_type(operator.inputs[0])([n])
    operator.outputs[1].type = Int64TensorType([n])


def ensemble_convert(scope, operator, container):
    """Outputs: score_samples, predict (the members batched as one (E, ·, ·) MatMul each)."""
    import torch

    from unsup.neural._ensemble import _CLIP as _ENSEMBLE_CLIP
    from unsup.neural._modules import ACTIVATIONS

    est = operator.raw_operator
    g = Graph(scope, container)
    x = operator.inputs[0].full_name
    dtype = _float_dtype(operator.inputs[0])
    outs = [o.full_name for o in operator.outputs]
    # unsup's _standardise: float64 arithmetic, clipped, then float32
    xs = _standardised(g, g.cast(x, np.float64), est, np.float64, _ENSEMBLE_CLIP)
    x32 = g.cast(xs, np.float32)
    with _no_grad():
        w1, b1, w2, b2, w3, b3, w4, b4 = (p.detach().cpu().numpy().astype(np.float32) for p in est._params)
        mask = est._input_mask.detach().cpu().numpy().astype(np.float32)
    w1 = w1 * mask[:, :, None]
    layer = ACTIVATIONS[est.activation]()

    def dense(h, w, b):  # (n, d) or (E, n, d) @ (E, d, h) + (E, 1, h)
        return g.op("Add", g.op("MatMul", h, g.const(w)), g.const(b))

    def act(h):
        out = _activation(g, h, layer) if isinstance(layer, torch.nn.Module) else None
        if out is None:
            raise ExportError(f"AutoencoderEnsemble with activation={est.activation!r} has no ONNX converter.")
        return out

    hid = act(dense(x32, w1, b1))
    code = dense(hid, w2, b2)
    hid = act(dense(code, w3, b3))
    recon = dense(hid, w4, b4)  # (E, n, d)
    # each member's mean squared error over its features, in float64 as unsup computes it
    diff = g.op("Sub", g.cast(recon, np.float64), g.cast(x32, np.float64))
    # each squared residual over the member's scale of its feature (0 off the member's features)
    weight = mask.astype(np.float64) / np.asarray(est.error_scale_, dtype=np.float64)
    z = g.op("Mul", g.op("Mul", diff, diff), g.const(weight[:, None, :]))
    knee = getattr(est, "_knee", None)
    if knee is not None:  # unsup's _compressed: knee * (1 + log(z / knee)) above the knee
        k = g.const(np.float64(knee))
        above = g.op("Mul", k, g.op("Add", g.const(np.float64(1.0)), g.op("Log", g.op("Div", g.op("Max", z, k), k))))
        z = g.op("Where", g.op("Greater", z, k), above, z)
    err = g.reduce("ReduceSum", z, 2)  # (E, n)
    denom = mask.sum(axis=1).astype(np.float64)[:, None]
    score = g.op("Neg", g.reduce("ReduceMean", g.op("Div", err, g.const(denom)), 0))
    g.identity(score, outs[0]) if dtype == np.float64 else g.cast(score, np.float32, out=outs[0])
    _outlier_labels(g, score, est.offset_, outs[1])
