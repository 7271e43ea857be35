"""A small node emitter over skl2onnx's ``scope`` and ``container``.

Every converter of :mod:`unsup.onnx` writes its graph through :class:`Graph`:
``g.op("MatMul", a, b)`` adds a node and returns the name of its output,
``g.const(array)`` adds an initializer. Names come from skl2onnx's scope, so a
converter composes with scikit-learn's converters inside one Pipeline graph.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, numpy_helper

_ONNX_TYPES = {
    np.dtype(np.float32): TensorProto.FLOAT,
    np.dtype(np.float64): TensorProto.DOUBLE,
    np.dtype(np.int64): TensorProto.INT64,
    np.dtype(np.int32): TensorProto.INT32,
    np.dtype(np.int16): TensorProto.INT16,
    np.dtype(np.uint16): TensorProto.UINT16,
    np.dtype(np.int8): TensorProto.INT8,
    np.dtype(np.uint8): TensorProto.UINT8,
    np.dtype(np.bool_): TensorProto.BOOL,
}


def onnx_type(dtype) -> int:
    """The ``TensorProto`` element type of a numpy dtype."""
    return _ONNX_TYPES[np.dtype(dtype)]


class Graph:
    """Emit nodes and initializers into a skl2onnx container.

    Parameters
    ----------
    scope, container
        skl2onnx's objects handed to a converter.
    """

    def __init__(self, scope, container):
        self.scope = scope
        self.container = container
        self.opset = container.target_opset

    def name(self, hint: str) -> str:
        return self.scope.get_unique_variable_name(hint)

    def const(self, value, dtype=None, hint: str = "c") -> str:
        """An initializer holding ``value`` (a numpy array or scalar) as ``dtype``."""
        arr = np.asarray(value, dtype=dtype)
        name = self.name(hint)
        self.container.add_initializer(name, onnx_type(arr.dtype), list(arr.shape), numpy_helper.from_array(arr, name))
        return name

    def op(self, op_type: str, *inputs: str, out: str | None = None, n_out: int = 1, **attrs):
        """Add a node; return its output name (a list of names when ``n_out > 1``)."""
        if n_out == 1:
            outputs = [out or self.name(op_type.lower())]
        else:
            outputs = [self.name(op_type.lower()) for _ in range(n_out)]
        self.container.add_node(
            op_type, list(inputs), outputs, op_version=self.opset, name=self.scope.get_unique_operator_name(op_type), **attrs
        )
        return outputs[0] if n_out == 1 else outputs

    # ----------------------------------------------------------- shorthands
    def cast(self, x: str, dtype, out: str | None = None) -> str:
        return self.op("Cast", x, out=out, to=onnx_type(dtype))

    def identity(self, x: str, out: str) -> str:
        return self.op("Identity", x, out=out)

    def axes(self, *axes: int) -> str:
        return self.const(np.array(axes, dtype=np.int64), hint="axes")

    def reduce(self, op_type: str, x: str, axis: int, keepdims: int = 0) -> str:
        """``ReduceSum``/``ReduceMax``/... over one axis (axes as an input from opset 18, 13 for ReduceSum)."""
        as_input = self.opset >= (13 if op_type == "ReduceSum" else 18)
        if as_input:
            return self.op(op_type, x, self.axes(axis), keepdims=keepdims)
        return self.op(op_type, x, axes=[axis], keepdims=keepdims)

    def slice_cols(self, x: str, start: int, stop: int) -> str:
        return self.op(
            "Slice", x, self.const(np.array([start], np.int64)), self.const(np.array([stop], np.int64)),
            self.axes(1),
        )
