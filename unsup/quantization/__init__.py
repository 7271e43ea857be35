"""Quantization: the int8 and lower-bit compression of vectors and weights.

The library's own quantizers (``torch.ao`` is deprecated upstream and not
used). Design constraints:

- numpy first, with a torch twin where training needs gradients
  (:func:`fake_quantize` on a tensor has a straight-through gradient);
- three stages kept apart: observers collect statistics, the one shared
  :func:`calculate_qparams` turns a range into a scale and zero point, and
  :func:`quantize` / :func:`dequantize` apply them;
- the arithmetic is torch's, so the round trip equals
  ``torch.fake_quantize_per_tensor_affine`` / ``_per_channel_affine``
  element for element with the same parameters;
- values out of range saturate and never wrap; a zero range never divides by
  zero; NaN and infinity raise ``ValueError``;
- the heavy passes are chunked so ``X`` is read once, with the finite check
  fused into the pass (no validation pass that costs as much as a copy).

Public names:

- functional: :func:`calculate_qparams`, :func:`quantize`, :func:`dequantize`,
  :func:`fake_quantize`, :func:`quant_range`, :func:`code_dtype`;
- packing: :func:`pack_bits`, :func:`unpack_bits` (4-bit codes two per byte,
  1-bit codes as bits);
- observers: :class:`MinMaxObserver`, :class:`MovingAverageMinMaxObserver`,
  :class:`PercentileObserver`, :class:`MSEObserver`, :class:`EntropyObserver`,
  named by ``OBSERVER_NAMES`` through :func:`get_observer`;
- :class:`Quantizer`, the scikit-learn transformer (fit = calibrate);
- :class:`QuantizedEmbedding`, 8-, 4- and 1-bit codes of latent vectors
  inside a Pipeline, searchable with ``kneighbors``;
- :mod:`unsup.quantization.nn`, the torch side: quantized and fake-quantized
  layers, post-training quantization and QAT of any ``torch.nn.Module``
  (imported on first use, with torch: ``import unsup.quantization`` does not
  import torch).
"""

import importlib

from unsup.quantization._embedding import QuantizedEmbedding
from unsup.quantization._functional import (
    EPS,
    N_BITS,
    ROUNDINGS,
    SCHEMES,
    calculate_qparams,
    code_dtype,
    dequantize,
    fake_quantize,
    quant_range,
    quantize,
)
from unsup.quantization._observers import (
    GRANULARITIES,
    OBSERVER_NAMES,
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    Observer,
    PercentileObserver,
    get_observer,
)
from unsup.quantization._packing import PACKABLE_BITS, pack_bits, unpack_bits
from unsup.quantization._quantizer import Quantizer

__all__ = [
    "EPS",
    "GRANULARITIES",
    "N_BITS",
    "OBSERVER_NAMES",
    "PACKABLE_BITS",
    "ROUNDINGS",
    "SCHEMES",
    "EntropyObserver",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "Observer",
    "PercentileObserver",
    "QuantizedEmbedding",
    "Quantizer",
    "calculate_qparams",
    "code_dtype",
    "dequantize",
    "fake_quantize",
    "get_observer",
    "pack_bits",
    "quant_range",
    "quantize",
    "unpack_bits",
]


def __getattr__(name):
    # The torch toolkit loads on first use, so that importing the package stays torch-free.
    if name == "nn":
        return importlib.import_module("unsup.quantization.nn")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
