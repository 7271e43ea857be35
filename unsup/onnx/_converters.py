"""skl2onnx converters, shape calculators and parsers for unsup's estimators.

Design constraints
------------------
- A graph computes what the estimator computes, with the same arithmetic
  where it matters for integers: labels come from the same cost, quantization
  codes from ``x`` times the float32 reciprocal of the scale, rounded half to
  even (unsup's and torch's arithmetic; ``QuantizeLinear`` divides by its
  scale, so it is given the product and a unit scale), clamped to the
  scheme's range.
- The classical estimators (k-means, mixtures, hierarchical clustering)
  compute in float64 inside the graph whatever the input type, as unsup does
  for data fitted in float64, so labels agree to the last tie; float outputs
  are cast back to the input type. The networks run in float32, as unsup's
  torch modules do.
- What cannot be exported (a callable metric, a dynamic quantizer, an unknown
  torch layer) raises :class:`ExportError` naming it: never a wrong graph.
"""

from __future__ import annotations

import math

import numpy as np
from skl2onnx.common.data_types import (
    DoubleTensorType,
    FloatTensorType,
    Int8TensorType,
    Int16TensorType,
    Int64TensorType,
    UInt8TensorType,
    UInt16TensorType,
)

from unsup._names import EUCLIDEAN_LINKAGES
from unsup.metrics._registry import Cosine
from unsup.onnx._graph import Graph

__all__ = ["ExportError", "register_converters"]


class ExportError(ValueError):
    """An estimator, or one of its options, that has no faithful ONNX graph."""


_INT_TYPES = {
    np.dtype(np.int8): Int8TensorType,
    np.dtype(np.uint8): UInt8TensorType,
    np.dtype(np.int16): Int16TensorType,
    np.dtype(np.uint16): UInt16TensorType,
    np.dtype(np.int64): Int64TensorType,
}


def _float_dtype(variable):
    return np.float64 if isinstance(variable.type, DoubleTensorType) else np.float32


def _float_type(variable):
    return DoubleTensorType if isinstance(variable.type, DoubleTensorType) else FloatTensorType


def _n_rows(operator):
    shape = operator.inputs[0].type.shape
    return shape[0] if shape else None


# ===================================================================== metrics
def _sq_norms(g: Graph, x: str) -> str:
    """Row-wise sums of squares, kept as a column (n, 1)."""
    return g.reduce("ReduceSum", g.op("Mul", x, x), 1, keepdims=1)


def _unit_rows(g: Graph, x: str) -> str:
    """Rows scaled to unit length, zero rows kept at zero (``Cosine.normalize``)."""
    norms = g.op("Sqrt", _sq_norms(g, x))
    zero = g.op("Equal", norms, g.const(0.0, np.float64))
    norms = g.op("Where", zero, g.const(1.0, np.float64), norms)
    return g.op("Div", x, norms)


def _diff3(g: Graph, x: str, centres: np.ndarray) -> str:
    """``x[:, None, :] - centres[None]`` of shape (n, k, d) (memory n·k·d: run in batches)."""
    x3 = g.op("Unsqueeze", x, g.axes(1))
    return g.op("Sub", x3, g.const(centres[None].astype(np.float64)))


def _metric_name(metric, estimator):
    from unsup.metrics._registry import CallableMetric

    if isinstance(metric, CallableMetric):
        raise ExportError(
            f"{type(estimator).__name__} with a callable metric cannot be exported to ONNX: "
            "a Python function has no ONNX graph. Use a named metric."
        )
    return metric.name


# One graph builder per registry metric: ``builder(g, x, C, metric) -> D``, the
# distances (float64, (n, k)) from the rows of ``x`` to the rows of ``C``.
def _sqeuclidean_graph(g: Graph, x: str, C: np.ndarray, metric) -> str:
    cc = g.const((C * C).sum(axis=1)[None, :])
    xc = g.op("MatMul", x, g.const(C.T.copy()))
    D = g.op("Add", g.op("Sub", _sq_norms(g, x), g.op("Mul", xc, g.const(2.0, np.float64))), cc)
    return g.op("Max", D, g.const(0.0, np.float64))


def _euclidean_graph(g: Graph, x: str, C: np.ndarray, metric) -> str:
    return g.op("Sqrt", _sqeuclidean_graph(g, x, C, metric))


def _cosine_graph(g: Graph, x: str, C: np.ndarray, metric) -> str:
    S = g.op("MatMul", _unit_rows(g, x), g.const(Cosine.normalize(C).T.copy()))
    D = g.op("Sub", g.const(1.0, np.float64), S)
    return g.op("Min", g.op("Max", D, g.const(0.0, np.float64)), g.const(2.0, np.float64))


def _hamming_graph(g: Graph, x: str, C: np.ndarray, metric) -> str:
    neq = g.op("Not", g.op("Equal", g.op("Unsqueeze", x, g.axes(1)), g.const(C[None])))
    counts = g.reduce("ReduceSum", g.cast(neq, np.float64), 2)
    return g.op("Div", counts, g.const(float(C.shape[1]), np.float64))


def _manhattan_graph(g: Graph, x: str, C: np.ndarray, metric) -> str:
    return g.reduce("ReduceSum", g.op("Abs", _diff3(g, x, C)), 2)


def _chebyshev_graph(g: Graph, x: str, C: np.ndarray, metric) -> str:
    return g.reduce("ReduceMax", g.op("Abs", _diff3(g, x, C)), 2)


def _minkowski_graph(g: Graph, x: str, C: np.ndarray, metric) -> str:
    p = float(metric.p)
    if math.isinf(p):
        return _chebyshev_graph(g, x, C, metric)
    powered = g.op("Pow", g.op("Abs", _diff3(g, x, C)), g.const(p, np.float64))
    return g.op("Pow", g.reduce("ReduceSum", powered, 2), g.const(1.0 / p, np.float64))


_DISTANCE_GRAPHS = {
    "sqeuclidean": _sqeuclidean_graph,
    "euclidean": _euclidean_graph,
    "cosine": _cosine_graph,
    "hamming": _hamming_graph,
    "manhattan": _manhattan_graph,
    "chebyshev": _chebyshev_graph,
    "minkowski": _minkowski_graph,
}


def pairwise(g: Graph, x: str, centres: np.ndarray, metric, estimator) -> str:
    """Distances (float64, (n, k)) from the rows of ``x`` (float64) to ``centres`` in ``metric``."""
    name = _metric_name(metric, estimator)
    if name not in _DISTANCE_GRAPHS:
        raise ExportError(f"{type(estimator).__name__} with metric {name!r} cannot be exported to ONNX.")
    return _DISTANCE_GRAPHS[name](g, x, np.ascontiguousarray(centres, dtype=np.float64), metric)


def _input_double(g: Graph, operator) -> str:
    x = operator.inputs[0].full_name
    return x if _float_dtype(operator.inputs[0]) == np.float64 else g.cast(x, np.float64)


def _output_float(g: Graph, operator, value: str, index: int) -> None:
    """Write a float64 result into output ``index`` in the input's float type."""
    out = operator.outputs[index].full_name
    if _float_dtype(operator.inputs[0]) == np.float64:
        g.identity(value, out)
    else:
        g.cast(value, np.float32, out=out)


# ====================================================================== KMeans
def _kmeans_shape(operator):
    n = _n_rows(operator)
    operator.outputs[0].type = Int64TensorType([n])
    operator.outputs[1].type = _float_type(operator.inputs[0])([n, operator.raw_operator.n_clusters])


def _kmeans_convert(scope, operator, container):
    est = operator.raw_operator
    g = Graph(scope, container)
    x = _input_double(g, operator)
    metric = est._metric
    C = est.cluster_centers_.astype(np.float64)
    D = pairwise(g, x, C, metric, est)
    if metric.unit_rows:
        # predict: the largest dot product of the unit row with the (unit) centres, as fit.
        S = g.op("MatMul", _unit_rows(g, x), g.const(C.T.copy()))
        g.op("ArgMax", S, out=operator.outputs[0].full_name, axis=1, keepdims=0)
    else:
        g.op("ArgMin", D, out=operator.outputs[0].full_name, axis=1, keepdims=0)
    _output_float(g, operator, D, 1)


# ============================================================ GaussianMixture
def _gmm_shape(operator):
    n = _n_rows(operator)
    k = operator.raw_operator.n_components
    ftype = _float_type(operator.inputs[0])
    operator.outputs[0].type = Int64TensorType([n])
    operator.outputs[1].type = ftype([n, k])
    operator.outputs[2].type = ftype([n])


def _gmm_convert(scope, operator, container):
    est = operator.raw_operator
    g = Graph(scope, container)
    x = _input_double(g, operator)
    means = est.means_.astype(np.float64)
    pc = np.asarray(est.precisions_cholesky_, dtype=np.float64)
    k, d = means.shape
    cov = est.covariance_type
    if cov == "full":
        log_det = np.array([np.sum(np.log(np.diag(pc[j]))) for j in range(k)])
        W = np.concatenate([pc[j] for j in range(k)], axis=1)  # (d, k*d)
        shift = np.concatenate([means[j] @ pc[j] for j in range(k)])[None, :]
        y = g.op("Sub", g.op("MatMul", x, g.const(W)), g.const(shift))
        y = g.op("Reshape", y, g.const(np.array([-1, k, d], dtype=np.int64)))
        log_prob = g.reduce("ReduceSum", g.op("Mul", y, y), 2)
    elif cov == "tied":
        log_det = np.full(k, np.sum(np.log(np.diag(pc))))
        y = g.op("Unsqueeze", g.op("MatMul", x, g.const(pc)), g.axes(1))
        y = g.op("Sub", y, g.const((means @ pc)[None]))
        log_prob = g.reduce("ReduceSum", g.op("Mul", y, y), 2)
    elif cov == "diag":
        log_det = np.sum(np.log(pc), axis=1)
        prec = pc**2
        a = g.const((np.sum(means**2 * prec, axis=1))[None, :])
        b = g.op("MatMul", x, g.const((means * prec).T.copy()))
        c = g.op("MatMul", g.op("Mul", x, x), g.const(prec.T.copy()))
        log_prob = g.op("Add", g.op("Sub", a, g.op("Mul", b, g.const(2.0, np.float64))), c)
    elif cov == "spherical":
        log_det = d * np.log(pc)
        prec = pc**2
        a = g.const((np.sum(means**2, axis=1) * prec)[None, :])
        b = g.op("Mul", g.op("MatMul", x, g.const(means.T.copy())), g.const(2.0 * prec[None, :]))
        c = g.op("Mul", _sq_norms(g, x), g.const(prec[None, :]))
        log_prob = g.op("Add", g.op("Sub", a, b), c)
    else:  # pragma: no cover - validated by fit
        raise ExportError(f"GaussianMixture with covariance_type={cov!r} cannot be exported.")
    # log N(x | mu_k, Sigma_k) + log w_k
    offset = -0.5 * d * np.log(2 * np.pi) + log_det + np.log(np.asarray(est.weights_, dtype=np.float64))
    weighted = g.op("Add", g.op("Mul", log_prob, g.const(-0.5, np.float64)), g.const(offset[None, :]))
    g.op("ArgMax", weighted, out=operator.outputs[0].full_name, axis=1, keepdims=0)
    top = g.reduce("ReduceMax", weighted, 1, keepdims=1)
    shifted = g.op("Sub", weighted, top)
    lse = g.op("Add", g.op("Log", g.reduce("ReduceSum", g.op("Exp", shifted), 1, keepdims=1)), top)
    _output_float(g, operator, g.op("Exp", g.op("Sub", weighted, lse)), 1)
    _output_float(g, operator, g.op("Squeeze", lse, g.axes(1)), 2)


# ==================================================== hierarchical clustering
def _label_shape(operator):
    operator.outputs[0].type = Int64TensorType([_n_rows(operator)])


def _reference_distances(g: Graph, x: str, est, reference) -> str:
    """Distances to the training rows (or ``x`` itself for ``metric="precomputed"``)."""
    if est._metric is None:
        return x
    return pairwise(g, x, reference, est._metric, est)


def _label_graph(scope, operator, container):
    """What a labelling converter starts from: the estimator, the graph, the float64 input, the output's name."""
    g = Graph(scope, container)
    return operator.raw_operator, g, _input_double(g, operator), operator.outputs[0].full_name


def _agglomerative_convert(scope, operator, container):
    est, g, x, out = _label_graph(scope, operator, container)
    summary = est._summary
    linkage = est.linkage
    if linkage in EUCLIDEAN_LINKAGES:
        sizes = summary["sizes"]
        D = pairwise(g, x, summary["centres"], _sqeuclidean(), est)
        if linkage == "ward":
            D = g.op("Mul", D, g.const((2.0 * sizes / (sizes + 1.0))[None, :]))
        g.op("ArgMin", D, out=out, axis=1, keepdims=0)
        return
    labels = np.asarray(summary["labels"], dtype=np.int64)
    D = _reference_distances(g, x, est, est._fit_X)
    if linkage == "single":
        nearest = g.op("ArgMin", D, axis=1, keepdims=0)
        g.op("Gather", g.const(labels), nearest, out=out, axis=0)
        return
    if linkage == "complete":
        columns = []
        for c in range(summary["k"]):
            members = g.const(np.flatnonzero(labels == c).astype(np.int64))
            columns.append(g.reduce("ReduceMax", g.op("Gather", D, members, axis=1), 1, keepdims=1))
        farthest = columns[0] if len(columns) == 1 else g.op("Concat", *columns, axis=1)
        g.op("ArgMin", farthest, out=out, axis=1, keepdims=0)
        return
    # average, weighted: the weighted mean distance to the members of each cluster
    W = summary["weights"].toarray()
    g.op("ArgMin", g.op("MatMul", D, g.const(W)), out=out, axis=1, keepdims=0)


def _sqeuclidean():
    from unsup.metrics import get_metric

    return get_metric("sqeuclidean")


def _divisive_convert(scope, operator, container):
    est, g, x, out = _label_graph(scope, operator, container)
    state = est._predict_state
    nodes = state["nodes"]
    if not len(nodes):
        zeros = g.op("Mul", g.cast(g.op("ArgMin", x, axis=1, keepdims=0), np.int64), g.const(0, np.int64))
        g.identity(zeros, out)
        return
    if est.method == "bisecting":
        scores = pairwise(g, x, state["centres"], est._metric.cost(), est)
    else:
        k = len(state["heads"])
        onehot = np.zeros((len(est.labels_), k))
        onehot[np.arange(len(est.labels_)), est.labels_] = 1.0
        D = _reference_distances(g, x, est, est._fit_X)
        sums = g.op("MatMul", D, g.const(onehot))
        scores = g.op("Div", g.op("MatMul", sums, g.const(state["membership"])), g.const(state["sizes"][None, :]))
    col = {int(v): j for j, v in enumerate(nodes)}
    cur = g.op("Mul", g.op("ArgMin", scores, axis=1, keepdims=0), g.const(0, np.int64))
    columns = {}

    def column(j):
        if j not in columns:
            columns[j] = g.op("Squeeze", g.slice_cols(scores, j, j + 1), g.axes(1))
        return columns[j]

    for p, left, right in state["splits"]:
        at = g.op("Equal", cur, g.const(int(p), np.int64))
        go_left = g.op("Not", g.op("Greater", column(col[int(left)]), column(col[int(right)])))
        step = g.op("Where", go_left, g.const(int(left), np.int64), g.const(int(right), np.int64))
        cur = g.op("Where", at, step, cur)
    label_of_head = np.full(len(est._members), -1, dtype=np.int64)
    label_of_head[state["heads"]] = np.arange(len(state["heads"]))
    g.op("Gather", g.const(label_of_head), cur, out=out, axis=0)


# ================================================================= quantizers
def _expand_params(q, n_features):
    """``(scale, zero_point)`` of a fitted Quantizer laid out per feature (or scalars per tensor)."""
    scale = np.asarray(q.scale_, dtype=np.float32)
    zero_point = np.asarray(q.zero_point_, dtype=np.int64)
    if q.granularity == "per_tensor":
        return scale.reshape(()), zero_point.reshape(())
    if q.granularity == "per_block":
        scale = np.repeat(scale, q.block_size)[:n_features]
        zero_point = np.repeat(zero_point, q.block_size)[:n_features]
    return scale, zero_point


def _check_quantizer(q, owner):
    if q.dynamic:
        raise ExportError(
            f"{owner} with dynamic=True cannot be exported to ONNX: its ranges are computed per "
            "sample at transform time. Export a static quantizer (dynamic=False)."
        )


def emit_codes(g: Graph, x: str, dtype, scale, zero_point, *, n_bits, scheme, rounding) -> str:
    """Integer codes of ``x``: ``clamp(round(x · (1/s)) + z, qmin, qmax)`` in the scheme's dtype.

    ``scale``/``zero_point`` are scalars or per-feature vectors. The float32
    reciprocal of the scale multiplies ``x`` (unsup's and torch's arithmetic),
    the product is clipped to ``[qmin − z, qmax − z]`` and handed to
    ``QuantizeLinear`` with a unit scale, which rounds half to even and adds
    the zero point; float64 inputs round in float64 and cast.
    """
    from unsup.quantization._functional import code_dtype, quant_range

    qmin, qmax = quant_range(n_bits, scheme)
    cdtype = np.dtype(code_dtype(n_bits, scheme))
    inv = (np.float32(1.0) / np.asarray(scale, dtype=np.float32)).astype(dtype)
    zp = np.asarray(zero_point, dtype=np.int64)
    y = g.op("Mul", x, g.const(inv))
    if rounding == "floor":  # unsup's floor_with_tolerance: nudged up by 4 float32 ulps of |y|
        from unsup.quantization._kernels import FLOOR_TOLERANCE

        y = g.op("Floor", g.op("Add", y, g.op("Mul", g.op("Abs", y), g.const(FLOOR_TOLERANCE, dtype))))
    info = np.iinfo(cdtype)
    if np.dtype(dtype) == np.float32 and (cdtype.itemsize == 1 or g.opset >= 21):
        # QuantizeLinear saturates to the code dtype's range: clip only to a narrower one.
        if qmin > info.min:
            y = g.op("Max", y, g.const((qmin - zp).astype(dtype)))
        if qmax < info.max:
            y = g.op("Min", y, g.const((qmax - zp).astype(dtype)))
        attrs = {"axis": 1} if zp.ndim else {}
        unit = g.const(np.ones(zp.shape, dtype=np.float32))
        return g.op("QuantizeLinear", y, unit, g.const(zp.astype(cdtype)), **attrs)
    y = g.op("Min", g.op("Max", y, g.const((qmin - zp).astype(dtype))), g.const((qmax - zp).astype(dtype)))
    if rounding != "floor":
        y = g.op("Round", y)
    if np.any(zp):
        y = g.op("Add", y, g.const(zp.astype(dtype)))
    return g.cast(y, cdtype)


def emit_dequantize(g: Graph, codes: str, dtype, scale, zero_point, code_dtype) -> str:
    """``(codes − z) · s`` in ``dtype`` (``DequantizeLinear`` for float32 where the opset takes the codes)."""
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.asarray(zero_point, dtype=np.int64)
    if np.dtype(dtype) == np.float32 and (np.dtype(code_dtype).itemsize == 1 or g.opset >= 21):
        attrs = {"axis": 1} if scale.ndim else {}
        return g.op("DequantizeLinear", codes, g.const(scale), g.const(zp.astype(code_dtype)), **attrs)
    y = g.cast(codes, dtype)
    if np.any(zp):
        y = g.op("Sub", y, g.const(zp.astype(dtype)))
    return g.op("Mul", y, g.const(scale.astype(dtype)))


def _quantizer_outputs(q, n_features):
    from unsup.quantization._functional import code_dtype

    return np.dtype(code_dtype(q.n_bits, q.scheme))


def _quantizer_shape(operator):
    q = operator.raw_operator
    n = _n_rows(operator)
    d = q.n_features_in_
    operator.outputs[0].type = _INT_TYPES[_quantizer_outputs(q, d)]([n, d])
    operator.outputs[1].type = _float_type(operator.inputs[0])([n, d])


def _quantizer_convert(scope, operator, container):
    q = operator.raw_operator
    _check_quantizer(q, "Quantizer")
    g = Graph(scope, container)
    x = operator.inputs[0].full_name
    dtype = _float_dtype(operator.inputs[0])
    scale, zp = _expand_params(q, q.n_features_in_)
    codes = emit_codes(g, x, dtype, scale, zp, n_bits=q.n_bits, scheme=q.scheme, rounding=q.rounding)
    g.identity(codes, operator.outputs[0].full_name)
    deq = emit_dequantize(g, codes, dtype, scale, zp, _quantizer_outputs(q, q.n_features_in_))
    g.identity(deq, operator.outputs[1].full_name)


def _pack(g: Graph, codes: str, n_bits: int, d: int) -> str:
    """unsup's packing along the features: 4-bit nibbles low first, 1-bit little-endian bits."""
    per_byte = 8 // n_bits
    v = g.op("BitwiseAnd", g.cast(codes, np.int32), g.const(np.int32((1 << n_bits) - 1)))
    pad = -d % per_byte
    if pad:
        v = g.op("Pad", v, g.const(np.array([0, 0, 0, pad], dtype=np.int64)))
    v = g.op("Reshape", v, g.const(np.array([0, -1, per_byte], dtype=np.int64)))
    shifts = (1 << (n_bits * np.arange(per_byte))).astype(np.int32)
    packed = g.reduce("ReduceSum", g.op("Mul", v, g.const(shifts[None, None, :])), 2)
    return g.cast(packed, np.uint8)


def _embedding_shape(operator):
    qe = operator.raw_operator
    n = _n_rows(operator)
    d = qe.n_components_
    ftype = _float_type(operator.inputs[0])
    if qe.n_bits == 8:
        ctype = _INT_TYPES[_quantizer_outputs(qe.quantizer_, d)]([n, d])
    else:
        ctype = UInt8TensorType([n, qe._codec().n_columns])
    types = [ctype, ftype([n, d])]
    if qe.output == "dequantized":
        types = types[::-1]
    for out, t in zip(operator.outputs, types):
        out.type = t


def _embedding_convert(scope, operator, container):
    qe = operator.raw_operator
    g = Graph(scope, container)
    z = operator.inputs[0].full_name
    dtype = _float_dtype(operator.inputs[0])
    d = qe.n_components_
    if qe.n_bits == 1:
        bits = g.cast(g.op("Not", g.op("Less", z, g.const(qe.threshold_.astype(dtype)))), np.uint8)
        codes = _pack(g, bits, 1, d)
        levels = qe.levels_.astype(dtype)
        deq = g.op("Where", g.cast(bits, np.bool_), g.const(levels[1]), g.const(levels[0]))
    else:
        q = qe.quantizer_
        _check_quantizer(q, "QuantizedEmbedding's quantizer")
        scale, zp = _expand_params(q, d)
        levels = emit_codes(g, z, dtype, scale, zp, n_bits=q.n_bits, scheme=q.scheme, rounding=q.rounding)
        deq = emit_dequantize(g, levels, dtype, scale, zp, _quantizer_outputs(q, d))
        codes = _pack(g, levels, 4, d) if qe.n_bits == 4 else levels
    outputs = [codes, deq] if qe.output == "codes" else [deq, codes]
    for value, out in zip(outputs, operator.outputs):
        g.identity(value, out.full_name)


# ====================================================================== parsers
def _make_parser(alias, names):
    """A parser declaring one operator of ``alias`` with outputs ``names`` (types set by the shape calculator)."""

    def parser(scope, model, inputs, custom_parsers=None):
        operator = scope.declare_local_operator(alias, model)
        operator.inputs = inputs
        for name in names(model) if callable(names) else names:
            operator.outputs.append(scope.declare_local_variable(name, FloatTensorType()))
        return operator.outputs

    return parser


def _embedding_parser(scope, model, inputs, custom_parsers=None):
    from skl2onnx._parse import _parse_sklearn

    if model.encoder_ is not None:
        inputs = _parse_sklearn(scope, model.encoder_, inputs, custom_parsers=custom_parsers)[:1]
    names = ["codes", "dequantized"] if model.output == "codes" else ["dequantized", "codes"]
    return _make_parser("UnsupQuantizedEmbedding", names)(scope, model, inputs)


def _converters():
    from unsup.cluster import AgglomerativeClustering, DivisiveClustering, KMeans
    from unsup.mixture import GaussianMixture
    from unsup.neural import Autoencoder, AutoencoderEnsemble, VariationalAutoencoder
    from unsup.onnx import _neural
    from unsup.quantization import QuantizedEmbedding, Quantizer

    neural_names = ["transform", "reconstruction", "score_samples", "predict"]
    return [
        (KMeans, "UnsupKMeans", _kmeans_shape, _kmeans_convert, ["label", "distances"]),
        (GaussianMixture, "UnsupGaussianMixture", _gmm_shape, _gmm_convert, ["label", "probabilities", "score_samples"]),
        (AgglomerativeClustering, "UnsupAgglomerativeClustering", _label_shape, _agglomerative_convert, ["label"]),
        (DivisiveClustering, "UnsupDivisiveClustering", _label_shape, _divisive_convert, ["label"]),
        (Quantizer, "UnsupQuantizer", _quantizer_shape, _quantizer_convert, ["codes", "dequantized"]),
        (QuantizedEmbedding, "UnsupQuantizedEmbedding", _embedding_shape, _embedding_convert, _embedding_parser),
        (Autoencoder, "UnsupAutoencoder", _neural.shape, _neural.convert, neural_names),
        (VariationalAutoencoder, "UnsupVariationalAutoencoder", _neural.shape, _neural.convert, neural_names),
        (AutoencoderEnsemble, "UnsupAutoencoderEnsemble", _neural.ensemble_shape, _neural.ensemble_convert,
         ["score_samples", "predict"]),
    ]


_REGISTERED = False


def register_converters() -> None:
    """Register unsup's estimators with skl2onnx (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from skl2onnx import update_registered_converter

    for cls, alias, shape, convert, names in _converters():
        parser = names if callable(names) else _make_parser(alias, names)
        update_registered_converter(cls, alias, shape, convert, parser=parser)
    _REGISTERED = True

