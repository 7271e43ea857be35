"""``unsup.quantization.nn``: quantized layers, fake quantization, PTQ and QAT of any ``torch.nn.Module``.

The torch side of :mod:`unsup.quantization`: the building blocks that
:class:`~unsup.neural.Autoencoder` and
:class:`~unsup.neural.VariationalAutoencoder` wire in (``qat=`` and
``quantize(X_calibration)``), written on plain ``torch.nn`` modules so that
they serve any model and are tested on their own. Importing this module
imports torch; ``import unsup.quantization`` does not. Design constraints:

- the arithmetic is the library's quantization core, with nothing of its own
  (:func:`unsup.quantization.calculate_qparams`, :func:`~unsup.quantization.quantize`,
  :func:`~unsup.quantization.dequantize`, :func:`~unsup.quantization.fake_quantize`
  and its observers: the min-max observers' ``batch_range`` and ``combine``
  fold torch batches into ranges held in buffers); no ``torch.ao`` (deprecated upstream);
- weights are quantized per output channel, symmetric (zero point 0, codes in
  ``±(2ⁿ⁻¹ − 1)``): one scale per row of ``W``, which keeps the rows of very
  different norms apart and lets ``y = s_w ⊙ (W_q x̂) + b`` factor the scale out
  of the dot product;
- activations (the input of every ``Linear``) are quantized per feature,
  asymmetric, with min-max ranges calibrated by an observer on
  ``X_calibration`` (static quantization: the ranges are frozen afterwards);
  a value beyond its range by more than a step is passed on in floating
  point (an outlier path, as LLM.int8()), so held-out inputs unlike the
  calibration data keep the float model's codes (see
  ``docs/model_quantization.md`` for the measurements behind both choices);
- the latent code in quantization-aware training is fake-quantized per
  feature (last axis), asymmetric by default, with a moving-average min/max
  range updated in train mode and frozen in eval mode;
- fake quantization passes the gradient straight through (1 inside the
  range, 0 where a value saturates): the straight-through estimator; during
  training the parameters are computed on the tensors' device
  (:func:`~unsup.quantization.calculate_qparams` takes tensors) and applied by
  the core's autograd function, so a step costs a few small ops;
- device-agnostic: nothing is placed on a fixed device; the state lives in
  buffers, so ``state_dict``, ``.to(device)``, ``copy.deepcopy`` and pickling
  carry it;
- a quantized module is a new module: :func:`quantize_model` never modifies
  its input; its forward is deterministic (eval mode, no sampling added).

Public names: :func:`check_qat`, :func:`prepare_qat`, :class:`FakeQuantLinear`,
:class:`FakeQuantConv2d`, :class:`FakeQuantConvTranspose2d`, :class:`LatentFakeQuantize`,
:func:`quantize_model`, :class:`QuantizedLinear`, :class:`QuantizedConv2d`,
:class:`QuantizedConvTranspose2d`, :func:`quantized_structure`, :func:`model_size_bytes`.
"""

from __future__ import annotations

import copy
import functools
import numbers
from collections.abc import Callable

import numpy as np
import torch
from torch.nn import functional as F

from unsup._sklearn_adapter import InvalidParameterError
from unsup.quantization._functional import (
    SCHEMES,
    _fake_quantize_function,
    calculate_qparams,
    dequantize,
    fake_quantize,
    quant_range,
    quantize,
)
from unsup.quantization._observers import OBSERVER_NAMES, MinMaxObserver, Observer, get_observer

__all__ = [
    "LATENT_OBSERVERS",
    "QAT_DEFAULTS",
    "FakeQuantConv2d",
    "FakeQuantConvTranspose2d",
    "FakeQuantLinear",
    "LatentFakeQuantize",
    "QuantizedConv2d",
    "QuantizedConvTranspose2d",
    "QuantizedLinear",
    "check_qat",
    "model_size_bytes",
    "prepare_qat",
    "quantize_model",
    "quantized_structure",
]

#: The keys of a ``qat`` dict and their defaults.
QAT_DEFAULTS: dict = {
    "n_bits": 8,
    "latent": True,
    "weights": True,
    "scheme": "asymmetric",
    "observer": "moving_average",
    "averaging_constant": 0.01,
}

#: The observers that track the latent range during training. Both keep only a
#: running min and max, which live in buffers (so a ``state_dict`` holds the
#: whole state) and cost nothing per batch; the histogram observers would
#: re-search their range on every training batch.
LATENT_OBSERVERS = ("moving_average", "minmax")


# ------------------------------------------------------------------ the config


def _bad_qat(message: str, qat, caller: str | None):
    of = f" of {caller}" if caller else ""
    return InvalidParameterError(f"The 'qat' parameter{of} {message} Got {qat!r} instead.")


def check_qat(qat, *, caller: str | None = None) -> dict | None:
    """Validate a quantization-aware-training configuration; fill in the defaults.

    Parameters
    ----------
    qat : None or dict
        ``None``: no quantization-aware training. A dict with the keys (all
        optional):

        - ``"n_bits"`` : int in [1, 8], default 8 — bits of the fake-quantized
          latent code and weights;
        - ``"latent"`` : bool, default True — fake-quantize the latent code
          (:class:`LatentFakeQuantize`);
        - ``"weights"`` : bool, default True — fake-quantize the weights of
          every ``Linear`` (:func:`prepare_qat`); needs ``n_bits >= 2``
          (symmetric codes);
        - ``"scheme"`` : {"asymmetric", "symmetric"}, default "asymmetric" —
          of the latent code;
        - ``"observer"`` : {"moving_average", "minmax"}, default
          "moving_average" — how the latent range follows the training batches;
        - ``"averaging_constant"`` : float in (0, 1], default 0.01 — of the
          moving average.
    caller : str, default=None
        The estimator's name, for the error message.

    Returns
    -------
    config : dict or None
        A new dict with every key above, or ``None``.

    Raises
    ------
    sklearn.utils._param_validation.InvalidParameterError
        (a ``ValueError`` and a ``TypeError``) in scikit-learn's words, naming
        the key at fault.

    Examples
    --------
    >>> from unsup.quantization.nn import check_qat
    >>> check_qat({"n_bits": 4})["n_bits"], check_qat(None)
    (4, None)
    >>> check_qat({"bits": 4})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'qat' parameter has unknown key(s) ['bits']; ...
    """
    if qat is None:
        return None
    if not isinstance(qat, dict):
        raise _bad_qat(f"must be None or a dict with keys {list(QAT_DEFAULTS)}.", qat, caller)
    unknown = sorted(str(k) for k in qat if k not in QAT_DEFAULTS)
    if unknown:
        raise _bad_qat(f"has unknown key(s) {unknown}; the keys are {list(QAT_DEFAULTS)}.", qat, caller)
    config = {**QAT_DEFAULTS, **qat}
    n_bits = config["n_bits"]
    if isinstance(n_bits, (bool, np.bool_)) or not isinstance(n_bits, numbers.Integral) or not 1 <= n_bits <= 8:
        raise _bad_qat(f"needs 'n_bits' an int in the range [1, 8]; 'n_bits' is {n_bits!r}.", qat, caller)
    config["n_bits"] = int(n_bits)
    for key in ("latent", "weights"):
        if not isinstance(config[key], (bool, np.bool_)):
            raise _bad_qat(f"needs {key!r} a bool; {key!r} is {config[key]!r}.", qat, caller)
        config[key] = bool(config[key])
    if config["scheme"] not in SCHEMES:
        raise _bad_qat(
            f"needs 'scheme' one of {list(SCHEMES)}; 'scheme' is {config['scheme']!r}.", qat, caller
        )
    if config["observer"] not in LATENT_OBSERVERS:
        why = (
            " (the histogram observers would re-search their range on every training batch; "
            "use them for post-training quantization)"
            if config["observer"] in OBSERVER_NAMES
            else ""
        )
        raise _bad_qat(
            f"needs 'observer' one of {list(LATENT_OBSERVERS)}{why}; 'observer' is {config['observer']!r}.",
            qat,
            caller,
        )
    c = config["averaging_constant"]
    if isinstance(c, (bool, np.bool_)) or not isinstance(c, numbers.Real) or not 0 < c <= 1:
        raise _bad_qat(f"needs 'averaging_constant' a float in (0, 1]; it is {c!r}.", qat, caller)
    config["averaging_constant"] = float(c)
    if config["n_bits"] < 2 and (config["weights"] or (config["latent"] and config["scheme"] == "symmetric")):
        raise _bad_qat(
            "needs 'n_bits' >= 2 for symmetric codes (the weights, or a symmetric latent): "
            "their range ±(2**(n_bits-1) - 1) holds only 0 at 1 bit.",
            qat,
            caller,
        )
    return config


# ------------------------------------------------------------ weight fake quant


def _fake_quantize_on_device(x, scale, zero_point, qmin, qmax):
    """The core's straight-through fake quantization with parameters already laid out for ``x``.

    ``scale`` (float32) and ``zero_point`` broadcast against ``x``; the
    arithmetic is :func:`~unsup.quantization.fake_quantize`'s (the float32
    reciprocal ``1 / s``, round half to even, clamp, ``(q − z) s``), without
    its host-side parameter checks, which cost more than the op on small layers.
    """
    dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    inv = (1.0 / scale).to(dtype)
    out = _fake_quantize_function().apply(
        x.to(dtype), inv, scale.to(dtype), zero_point.to(dtype), qmin, qmax, False
    )
    return out.to(x.dtype)


@functools.cache
def _weight_observer(axis: int) -> MinMaxObserver:
    """The per-channel min-max observer of weights whose output channels lie along ``axis``.

    Only its :meth:`~unsup.quantization.MinMaxObserver.batch_range` is used,
    which leaves it unchanged: one instance serves every layer.
    """
    return MinMaxObserver(granularity="per_channel", axis=axis)


def _weight_minmax(weight: torch.Tensor, axis: int):
    """Per-output-channel min and max of a weight (the channels along ``axis``), on its device."""
    return _weight_observer(axis).batch_range(weight)


def _weight_scale(weight: torch.Tensor, n_bits: int, axis: int) -> np.ndarray:
    """Per-output-channel symmetric min-max scales of a weight, as float32 numpy (PTQ)."""
    lo, hi = _weight_minmax(weight, axis)
    scale, _ = calculate_qparams(
        lo.double().cpu().numpy(), hi.double().cpu().numpy(), n_bits=n_bits, scheme="symmetric"
    )
    return scale


def _fake_quantize_weight(weight: torch.Tensor, n_bits: int, axis: int) -> torch.Tensor:
    """``Ŵ``: ``weight`` fake-quantized per output channel (``axis``), symmetric min-max (QAT).

    The parameters are recomputed from the current weight on its device; the
    gradient reaches ``weight`` straight through.
    """
    lo, hi = _weight_minmax(weight, axis)
    scale, zero_point = calculate_qparams(lo, hi, n_bits=n_bits, scheme="symmetric")
    shape = [1] * weight.ndim
    shape[axis] = weight.shape[axis]
    qmin, qmax = quant_range(n_bits, "symmetric")
    return _fake_quantize_on_device(weight, scale.reshape(shape), zero_point.reshape(shape), qmin, qmax)


def _sharing_parameters(cls, layer: torch.nn.Module, attrs: tuple, n_bits: int) -> torch.nn.Module:
    """A new ``cls`` (a fake-quantized layer) that shares ``layer``'s ``weight`` and ``bias`` ``Parameter`` objects.

    The attributes ``attrs`` that ``layer`` has are copied, and the training
    mode; ``n_bits`` (2 to 8, symmetric weight codes) is validated.
    """
    quant_range(n_bits, "symmetric")
    new = cls.__new__(cls)
    torch.nn.Module.__init__(new)
    for key in attrs:
        if hasattr(layer, key):
            setattr(new, key, getattr(layer, key))
    new.weight = layer.weight
    new.bias = layer.bias
    new.n_bits = int(n_bits)
    new.train(layer.training)
    return new


class FakeQuantLinear(torch.nn.Linear):
    """A ``Linear`` whose weight is fake-quantized in every forward pass.

    The weight is quantized per output channel (row), symmetric, with the
    min-max scale of the current weight (recomputed each pass:
    ``s_i = max_j |W_ij| / (2ⁿ⁻¹ − 1)``), then dequantized; the matmul runs on
    ``Ŵ``. The gradient reaches ``W`` straight through (the min-max range
    contains every weight, so no weight saturates and the mask is all ones).
    The bias stays in floating point (it is added after the matmul, as a
    quantized inference engine adds it in int32 or float).

    Parameters
    ----------
    in_features, out_features, bias, device, dtype
        As :class:`torch.nn.Linear`.
    n_bits : int, default=8
        2 to 8.

    Examples
    --------
    >>> import torch
    >>> from unsup.quantization.nn import FakeQuantLinear
    >>> layer = FakeQuantLinear(3, 2, n_bits=2)   # codes -1, 0, 1 per row
    >>> with torch.no_grad():
    ...     _ = layer.weight.copy_(torch.tensor([[0.9, -0.2, 0.5], [0.1, 0.3, -0.04]]))
    >>> layer.quantized_weight().detach()
    tensor([[0.9000, 0.0000, 0.9000],
            [0.0000, 0.3000, 0.0000]])
    """

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *, n_bits: int = 8):
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        quant_range(n_bits, "symmetric")  # validates n_bits
        self.n_bits = int(n_bits)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, n_bits: int = 8) -> FakeQuantLinear:
        """A fake-quantized linear that shares ``linear``'s parameter tensors.

        The ``weight`` and ``bias`` are the same ``Parameter`` objects, so an
        optimiser built on the original module keeps updating them.
        """
        return _sharing_parameters(
            cls, linear, ("in_features", "out_features", "input_channels", "output_channels"), n_bits
        )

    def quantized_weight(self) -> torch.Tensor:
        """``Ŵ``: the weight fake-quantized per row (straight-through gradient).

        A layer whose output feeds ``output_channels`` feature maps (see
        :class:`QuantizedLinear`) shares one scale among each map's rows, as
        its post-training copy will.
        """
        groups = getattr(self, "output_channels", None)
        if not groups:
            return _fake_quantize_weight(self.weight, self.n_bits, 0)
        return _fake_quantize_weight(self.weight.reshape(groups, -1), self.n_bits, 0).reshape(self.weight.shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.quantized_weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_bits={self.n_bits}"


def _replace_linears(
    module: torch.nn.Module, make: Callable, skip: tuple = (), types: tuple = (torch.nn.Linear,)
) -> torch.nn.Module:
    """Replace, recursively and in place, every child of ``types`` (``nn.Linear``) by ``make(name, child)``.

    ``name`` is the child's qualified name in the root module. Returns the
    root, or its replacement when the root itself is of ``types``.
    """

    def visit(parent, prefix):
        for name, child in list(parent.named_children()):
            qualified = f"{prefix}{name}"
            if isinstance(child, types) and not isinstance(child, skip):
                setattr(parent, name, make(qualified, child))
            else:
                visit(child, qualified + ".")

    if isinstance(module, types) and not isinstance(module, skip):
        return make("", module)
    visit(module, "")
    return module


def prepare_qat(module: torch.nn.Module, config: dict | None) -> torch.nn.Module:
    """Prepare a module for quantization-aware training of its weights.

    With ``config["weights"]``, every ``torch.nn.Linear`` of ``module`` is
    replaced, in place and recursively, by a :class:`FakeQuantLinear` with
    ``config["n_bits"]`` that shares its parameter tensors: an optimiser built
    before the call keeps working, and ``module.parameters()`` yields the same
    tensors. The latent code is not touched here: the model places a
    :class:`LatentFakeQuantize` where its code is.

    Parameters
    ----------
    module : torch.nn.Module
    config : dict or None
        A ``qat`` configuration (see :func:`check_qat`; validated again here).
        ``None``, or ``weights=False``, leaves the module as it is.

    Returns
    -------
    module : torch.nn.Module
        ``module`` itself (or, when ``module`` is a bare ``Linear``, its
        fake-quantized replacement: use the return value).

    Examples
    --------
    >>> import torch
    >>> from unsup.quantization.nn import prepare_qat
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> weight = net[0].weight
    >>> net = prepare_qat(net, {"n_bits": 4, "weights": True})
    >>> type(net[0]).__name__, net[0].weight is weight
    ('FakeQuantLinear', True)
    """
    config = check_qat(config)
    if config is None or not config["weights"]:
        return module
    n_bits = config["n_bits"]

    def make(_, layer):
        if isinstance(layer, torch.nn.Linear):
            return FakeQuantLinear.from_linear(layer, n_bits=n_bits)
        return _conv_classes(layer)[0].from_conv(layer, n_bits=n_bits)

    return _replace_linears(module, make, skip=_FAKE_QUANT_TYPES, types=_WEIGHT_TYPES)


# ------------------------------------------------------------ latent fake quant


class LatentFakeQuantize(torch.nn.Module):
    """Fake quantization of the latent code, per feature, for QAT.

    In train mode each batch ``z`` of shape ``(..., n_features)`` updates the
    range of every feature (last axis) with its batch min and max, through
    the observer :class:`~unsup.quantization.MovingAverageMinMaxObserver`
    (``observer="moving_average"``: ``m ← m + c (batch_min − m)``, starting
    from the first batch) or :class:`~unsup.quantization.MinMaxObserver`
    (``"minmax"``), per channel on the last axis: its ``batch_range`` and
    ``combine`` run on the module's buffers, on their device. In eval mode
    the range is frozen. The forward returns
    ``fake_quantize(z, s, z0)`` with the scale and zero point of
    :func:`~unsup.quantization.calculate_qparams`, and a straight-through
    gradient (1 inside the range, 0 for a code that saturates).

    The range lives in the buffers ``min_val`` and ``max_val`` (``+inf`` and
    ``-inf`` before any batch), so it travels with ``state_dict``, ``.to()``
    and pickling; a module built without ``n_features`` sizes them on its
    first batch or on ``load_state_dict``.

    Parameters
    ----------
    config : dict or None, default=None
        A ``qat`` configuration (see :func:`check_qat`): ``n_bits``, ``scheme``,
        ``observer``, ``averaging_constant`` are used. ``None``: the defaults
        (8 bits, asymmetric, moving average with ``c = 0.01``).
    n_features : int, default=None
        The code's width, to allocate the buffers now.

    Examples
    --------
    >>> import torch
    >>> from unsup.quantization.nn import LatentFakeQuantize
    >>> fq = LatentFakeQuantize({"n_bits": 2, "observer": "minmax"})
    >>> _ = fq(torch.tensor([[0.0, -1.0], [3.0, 2.0]]))    # train mode: observes
    >>> fq.eval()(torch.tensor([[1.2, 0.4], [5.0, -2.0]]))  # levels 0..3 and -1..2
    tensor([[ 1.,  0.],
            [ 3., -1.]])
    """

    def __init__(self, config: dict | None = None, n_features: int | None = None):
        super().__init__()
        config = check_qat(config) if config is not None else dict(QAT_DEFAULTS)
        self.n_bits = config["n_bits"]
        self.scheme = config["scheme"]
        self.observer = config["observer"]
        self.averaging_constant = config["averaging_constant"]
        size = 0 if n_features is None else int(n_features)
        # float64, as the core observers: the moving average is their arithmetic exactly.
        self.register_buffer("min_val", torch.full((size,), float("inf"), dtype=torch.float64))
        self.register_buffer("max_val", torch.full((size,), float("-inf"), dtype=torch.float64))

    @property
    def observed(self) -> bool:
        """Whether a batch has set the range."""
        return self.min_val.numel() > 0 and bool(torch.all(self.min_val <= self.max_val))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Size the range buffers to the saved ones (a module built without n_features).
        for name in ("min_val", "max_val"):
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.shape != getattr(self, name).shape:
                setattr(self, name, getattr(self, name).new_empty(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def range_observer(self) -> MinMaxObserver:
        """The observer whose arithmetic folds the batches into ``min_val`` and ``max_val``.

        Built from ``n_bits``, ``scheme``, ``observer`` and
        ``averaging_constant`` (per channel, last axis) on first use, so a
        module unpickled from an earlier version has it too; its own state
        stays unused (the range lives in the buffers).
        """
        observer = self.__dict__.get("_range_observer")
        if observer is None:
            extra = {"averaging_constant": self.averaging_constant} if self.observer == "moving_average" else {}
            observer = get_observer(
                self.observer, n_bits=self.n_bits, scheme=self.scheme, granularity="per_channel", axis=-1, **extra
            )
            self.__dict__["_range_observer"] = observer
        return observer

    @torch.no_grad()
    def _observe(self, z: torch.Tensor) -> None:
        observer = self.range_observer
        lo, hi = observer.batch_range(z)
        lo, hi = lo.to(self.min_val.dtype), hi.to(self.max_val.dtype)
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise ValueError(
                "The latent code contains NaN or infinity: training diverged; "
                "try a smaller learning_rate or scaled inputs."
            )
        if self.min_val.numel() == 0:  # built without n_features: sized by the first batch
            self.min_val, self.max_val = lo, hi
        elif self.min_val.shape != lo.shape:
            raise ValueError(
                f"LatentFakeQuantize was set up for {self.min_val.numel()} features; got a code with {lo.numel()}."
            )
        else:
            self.min_val, self.max_val = observer.combine(self.min_val, self.max_val, lo, hi)

    def qparams(self) -> tuple[np.ndarray, np.ndarray]:
        """Scale and zero point per feature from the current range (:func:`calculate_qparams`).

        Returns
        -------
        scale : ndarray of float32 of shape (n_features,)
        zero_point : ndarray of int32 of shape (n_features,)
        """
        self._check_observed()
        return calculate_qparams(
            self.min_val.double().cpu().numpy(),
            self.max_val.double().cpu().numpy(),
            n_bits=self.n_bits,
            scheme=self.scheme,
        )

    def _check_observed(self):
        if self.min_val.numel() == 0 or bool(torch.isinf(self.min_val).any()):
            raise RuntimeError(
                "LatentFakeQuantize has not observed any batch: run it in train mode "
                "(or load a state_dict) before evaluating."
            )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.training:
            self._observe(z)
        else:
            self._check_observed()
        scale, zero_point = calculate_qparams(self.min_val, self.max_val, n_bits=self.n_bits, scheme=self.scheme)
        return _fake_quantize_on_device(z, scale, zero_point, *quant_range(self.n_bits, self.scheme))

    def extra_repr(self) -> str:
        return (
            f"n_bits={self.n_bits}, scheme={self.scheme!r}, observer={self.observer!r}, "
            f"averaging_constant={self.averaging_constant}"
        )


# ------------------------------------------------------ post-training quantization


ACTIVATION_GRANULARITIES = ("per_channel", "per_tensor")
OUTLIER_MODES = ("float", "saturate")


class QuantizedLinear(torch.nn.Module):
    """A ``Linear`` with integer weights and a calibrated input quantizer.

    Buffers (no parameters: nothing left to train):

    - ``weight_codes`` : int8 of shape (out_features, in_features) — per
      output channel, symmetric, in ``±(2ⁿ⁻¹ − 1)``;
    - ``weight_scale`` : float32 of shape (out_features,), or
      (output_channels,);
    - ``bias`` : float32 of shape (out_features,), or None;
    - ``input_scale`` : float32, ``input_zero_point`` : uint8 — the static,
      asymmetric quantizer of the input, of shape (in_features,) per channel
      (one range per input feature), (input_channels,), or () per tensor.

    Next to a convolution's feature maps the "channels" are the maps': a
    layer reading a flattened ``(C, H, W)`` map (``input_channels=C``) gets one
    input range per map channel, and one whose output is unflattened into
    ``C`` maps (``output_channels=C``) one weight scale per map, each shared by
    the ``H × W`` consecutive features (C order) of that channel, as for the
    convolutions themselves; per flattened feature these scales would
    outweigh the int8 codes of a small network.

    The forward quantizes the input to its ``n_bits`` codes and back,
    ``x̂ = s_x (clamp(round(x / s_x) + z_x, 0, 2ⁿ − 1) − z_x)``, dequantizes
    the weight, ``Ŵ = s_w ⊙ W_q``, and returns ``x̂ Ŵᵀ + b``: on any device,
    deterministically, row by row (a row's output does not depend on the other
    rows of the batch).

    An input value beyond the calibrated range saturates at its end; with
    ``outliers="float"`` (the default) a value that would saturate by more
    than one step (``|x − x̂| > s_x``, which no value inside the range reaches)
    is passed on in floating point instead: an outlier path, as LLM.int8()'s
    mixed-precision decomposition, that an integer engine runs as a sparse
    correction ``W[:, j] (x_j − x̂_j)`` for those rare entries. It keeps the
    outputs of inputs unlike the calibration data (held-out samples with an
    unusual feature, the anomalies a detector must score) close to the float
    model's.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default=True
    n_bits : int, default=8
        Bits of the weight codes (symmetric, 2 to 8) and of the input codes
        (asymmetric).
    granularity : {"per_channel", "per_tensor"}, default="per_channel"
        Of the input quantizer.
    outliers : {"float", "saturate"}, default="float"
        What becomes of an input value outside the calibrated range.
    input_channels : int, default=None
        The input is a flattened map of this many channels (C order): one
        input range per channel (with ``granularity="per_channel"``).
    output_channels : int, default=None
        The output is unflattened into this many channels: one weight scale
        per channel.
    device : torch.device, default=None

    Examples
    --------
    >>> import torch
    >>> from unsup.quantization.nn import QuantizedLinear
    >>> linear = torch.nn.Linear(3, 2)
    >>> with torch.no_grad():
    ...     _ = linear.weight.copy_(torch.tensor([[0.5, -1.0, 0.25], [2.0, 0.0, -0.1]]))
    ...     _ = linear.bias.zero_()
    >>> q = QuantizedLinear.from_linear(linear, n_bits=8, input_scale=0.01, input_zero_point=100,
    ...                                 granularity="per_tensor")
    >>> q.weight_codes
    tensor([[  64, -127,   32],
            [ 127,    0,   -6]], dtype=torch.int8)
    >>> q(torch.tensor([[1.0, 0.5, -0.5]]))
    tensor([[-0.1220,  2.0472]])
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        n_bits: int = 8,
        granularity: str = "per_channel",
        outliers: str = "float",
        input_channels: int | None = None,
        output_channels: int | None = None,
        device=None,
    ):
        super().__init__()
        quant_range(n_bits, "symmetric")
        _check_option(granularity, ACTIVATION_GRANULARITIES, "granularity")
        _check_option(outliers, OUTLIER_MODES, "outliers")
        self.in_features, self.out_features, self.n_bits = int(in_features), int(out_features), int(n_bits)
        self.granularity, self.outliers = granularity, outliers
        self.input_channels = _map_channels(input_channels, self.in_features, "input_channels", "in_features")
        self.output_channels = _map_channels(output_channels, self.out_features, "output_channels", "out_features")
        shape = (self.input_channels or in_features,) if granularity == "per_channel" else ()
        self.register_buffer("weight_codes", torch.zeros((out_features, in_features), dtype=torch.int8, device=device))
        self.register_buffer(
            "weight_scale", torch.ones(self.output_channels or out_features, dtype=torch.float32, device=device)
        )
        self.register_buffer("bias", torch.zeros(out_features, dtype=torch.float32, device=device) if bias else None)
        self.register_buffer("input_scale", torch.ones(shape, dtype=torch.float32, device=device))
        self.register_buffer("input_zero_point", torch.zeros(shape, dtype=torch.uint8, device=device))

    @classmethod
    def from_linear(
        cls,
        linear: torch.nn.Linear,
        *,
        n_bits: int = 8,
        input_scale=1.0,
        input_zero_point=0,
        granularity: str = "per_channel",
        outliers: str = "float",
        input_channels: int | None = None,
        output_channels: int | None = None,
    ) -> QuantizedLinear:
        """Quantize ``linear``'s weight per output channel (min-max, symmetric).

        Parameters
        ----------
        linear : torch.nn.Linear
        n_bits : int, default=8
        input_scale : float or array-like of shape (in_features,) or (input_channels,)
            The calibrated scale(s) of the input (positive).
        input_zero_point : int or array-like of the shape of ``input_scale``
            The calibrated zero point(s) of the input, in ``[0, 2ⁿ − 1]``.
        granularity, outliers, input_channels, output_channels
            See the class.
        """
        weight = linear.weight.detach()
        new = cls(
            linear.in_features, linear.out_features, linear.bias is not None,
            n_bits=n_bits, granularity=granularity, outliers=outliers, input_channels=input_channels,
            output_channels=output_channels, device=weight.device,
        )
        groups = new.weight_scale.numel()
        scale = _weight_scale(weight.reshape(groups, -1), n_bits, 0)
        with torch.no_grad():
            new.weight_codes.copy_(quantize(
                weight, np.repeat(scale, linear.out_features // groups), 0, n_bits=n_bits, scheme="symmetric", axis=0
            ))
            new.weight_scale.copy_(torch.from_numpy(scale))
            if linear.bias is not None:
                new.bias.copy_(linear.bias.detach())
        new.set_input_qparams(input_scale, input_zero_point)
        return new

    def set_input_qparams(self, scale, zero_point) -> None:
        """Set the input quantizer's scale and zero point (validated, broadcast to the buffers)."""
        qmin, qmax = quant_range(self.n_bits, "asymmetric")
        shape = tuple(self.input_scale.shape)
        s = np.broadcast_to(np.asarray(scale, dtype=np.float32), shape)
        z = np.broadcast_to(np.asarray(zero_point), shape)
        if not (np.all(np.isfinite(s)) and np.all(s > 0)) or not np.all((z >= qmin) & (z <= qmax)):
            raise ValueError(f"Bad input quantization parameters: scale={s}, zero_point={z}.")
        with torch.no_grad():
            self.input_scale.copy_(torch.from_numpy(np.array(s)))
            self.input_zero_point.copy_(torch.from_numpy(np.array(z, dtype=np.uint8)))

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight ``s_w ⊙ W_q``, float32 of shape (out_features, in_features)."""
        return dequantize(self.weight_codes, _per_feature(self.weight_scale, self.out_features), 0, axis=0)

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x̂``: the input through its quantizer (out-of-range values as ``outliers`` says)."""
        axis = -1 if self.granularity == "per_channel" else None
        scale = _per_feature(self.input_scale, self.in_features)
        zero_point = _per_feature(self.input_zero_point, self.in_features).to(torch.int32)
        x_hat = fake_quantize(x, scale, zero_point, n_bits=self.n_bits, scheme="asymmetric", axis=axis)
        if self.outliers == "saturate":
            return x_hat
        # Inside the calibrated range the error is at most one step (half a step of
        # rounding, plus up to half a step where the rounded zero point shifts the
        # grid): a larger error means the value saturated, far outside the range.
        x = x.to(x_hat.dtype)
        return torch.where((x - x_hat).abs() > scale.to(x_hat.dtype), x, x_hat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.quantize_input(x)
        weight = self.weight.to(x_hat.dtype)
        bias = None if self.bias is None else self.bias.to(x_hat.dtype)
        return F.linear(x_hat, weight, bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, n_bits={self.n_bits}, granularity={self.granularity!r}, "
            f"outliers={self.outliers!r}"
            + "".join(f", {k}={getattr(self, k)}" for k in ("input_channels", "output_channels") if getattr(self, k))
        )

    def __setstate__(self, state):
        state.setdefault("input_channels", None)  # pickled by an earlier version: per feature
        state.setdefault("output_channels", None)
        super().__setstate__(state)


def _map_channels(channels, features, name, of):
    """``channels`` of a flattened map checked to divide ``features`` (None: per feature)."""
    if channels is None:
        return None
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1 or features % channels:
        raise ValueError(f"{name} must be a positive int that divides {of}={features}; got {channels!r}.")
    return int(channels)


def _per_feature(values: torch.Tensor, features: int) -> torch.Tensor:
    """Per-channel values of a flattened map repeated over each channel's features (C order)."""
    if values.dim() == 1 and values.numel() != features:
        return values.repeat_interleave(features // values.numel())
    return values


def _check_option(value, options, name):
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {options}; got {value!r}.")


def _check_n_bits(n_bits) -> int:
    if isinstance(n_bits, (bool, np.bool_)) or not isinstance(n_bits, numbers.Integral) or not 2 <= n_bits <= 8:
        raise ValueError(
            f"n_bits must be an int in the range [2, 8] (symmetric weight codes); got {n_bits!r}."
        )
    return int(n_bits)


def _device_dtype(module: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Device and float dtype of the module's first parameter (or floating buffer)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def quantized_structure(
    module: torch.nn.Module, *, n_bits: int = 8, granularity: str = "per_channel", outliers: str = "float"
) -> torch.nn.Module:
    """A copy of ``module`` with every ``Linear`` (convolution) replaced by an uncalibrated :class:`QuantizedLinear` (``QuantizedConv2d``, ``QuantizedConvTranspose2d``).

    The layout of a quantized model with placeholder values (zero codes, unit
    scales), to restore one from its ``state_dict`` (e.g. when unpickling):
    ``quantized_structure(float_module, n_bits=n).load_state_dict(saved)``.

    Parameters
    ----------
    module : torch.nn.Module
        The float model (or any module of the same architecture); not modified.
    n_bits : int, default=8
    granularity : {"per_channel", "per_tensor"}, default="per_channel"
    outliers : {"float", "saturate"}, default="float"
        As the saved model was quantized with (:func:`quantize_model`).

    Returns
    -------
    module : torch.nn.Module
        New, in eval mode.
    """
    n_bits = _check_n_bits(n_bits)
    model = copy.deepcopy(module)
    def make(_, lin):
        if not isinstance(lin, torch.nn.Linear):  # a convolution
            return _conv_classes(lin)[1](lin, n_bits=n_bits, granularity=granularity, outliers=outliers)
        input_channels, output_channels = _map_channel_counts(lin)
        return QuantizedLinear(
            lin.in_features,
            lin.out_features,
            lin.bias is not None,
            n_bits=n_bits,
            granularity=granularity,
            outliers=outliers,
            input_channels=input_channels,
            output_channels=output_channels,
            device=lin.weight.device,
        )

    model = _replace_linears(model, make, types=_WEIGHT_TYPES)
    return model.eval()


def _observing_hook(observer: Observer, map_channels: int | None = None) -> Callable:
    """A forward pre-hook that feeds a layer's input to ``observer`` (a flattened map as (n, C, H * W))."""

    def hook(_module, args):
        x = args[0].detach()
        observer.update(x if map_channels is None else x.reshape(x.shape[0], map_channels, -1))

    return hook


def _map_channel_counts(layer) -> tuple[int | None, int | None]:
    """``(input_channels, output_channels)`` a ``Linear`` next to feature maps declares (None: per feature).

    The convolutional autoencoders' factory sets them on the ``Linear`` that
    reads the encoder's flattened map (``input_channels``) and on the one whose
    output the decoder unflattens (``output_channels``).
    """
    if not isinstance(layer, torch.nn.Linear):
        return None, None
    return getattr(layer, "input_channels", None), getattr(layer, "output_channels", None)


def _default_forward(module, X):
    return module(X)


def quantize_model(
    module: torch.nn.Module,
    X_calibration,
    *,
    n_bits: int = 8,
    observer: str | Observer = "minmax",
    granularity: str = "per_channel",
    outliers: str = "float",
    forward: Callable | None = None,
    batch_size: int = 4096,
) -> torch.nn.Module:
    """Post-training static quantization of every ``Linear`` of a module.

    Returns a new module (``module`` is not modified) where every
    ``torch.nn.Linear`` (including a :class:`FakeQuantLinear` of QAT) is a
    :class:`QuantizedLinear`:

    - weights: ``n_bits`` codes per output channel, symmetric min-max (stored
      as int8, one byte a code), float32 scales, float32 bias;
    - activations: the input of every ``Linear`` is quantized per tensor,
      asymmetric, to ``n_bits``, with the range an ``observer`` chose while
      ``X_calibration`` ran through the float model (static quantization).

    Other submodules (activations, dropout, a :class:`LatentFakeQuantize`,
    custom containers with several heads) are kept as they are. The result is
    in eval mode, so its forward is deterministic.

    A ``Linear`` next to convolutional feature maps may say so with an
    attribute: ``input_channels = C`` when its input is a flattened ``(C, H,
    W)`` map (one input range per map channel, with ``granularity=
    "per_channel"``), ``output_channels = C`` when its output is unflattened
    into ``C`` maps (one weight scale per map); see :class:`QuantizedLinear`.
    The convolutional autoencoders set both on their heads.

    Parameters
    ----------
    module : torch.nn.Module
        The float model. Every ``Linear`` must be reached by the calibration
        pass.
    X_calibration : torch.Tensor or array-like of shape (n_samples, n_features)
        Inputs of ``module``, as the model sees them (after any scaling the
        estimator applies). Moved to the module's device and float dtype.
    n_bits : int, default=8
        2 to 8: the weight and activation codes.
    observer : str or Observer, default="minmax"
        The activation range: a name of :data:`unsup.quantization.OBSERVER_NAMES`
        or an observer instance (its ``n_bits`` and scheme are set here).
        Min-max keeps every calibrated value in range; see
        ``docs/model_quantization.md`` for the measured alternatives.
    forward : callable, default=None
        ``forward(model, X)`` runs one calibration batch through the model
        (default: ``model(X)``), for a module whose forward needs more, e.g.
        ``lambda m, X: m.decoder(m.encoder(X))``.
    batch_size : int, default=4096
        Calibration rows per forward pass (the observers stream).

    Returns
    -------
    quantized : torch.nn.Module
        A new module, in eval mode, on the device of ``module``.

    Raises
    ------
    ValueError
        If ``n_bits`` is not in [2, 8], ``X_calibration`` is empty or not
        finite, the module has no ``Linear``, or a ``Linear`` was not reached
        by the calibration pass.

    Examples
    --------
    >>> import torch
    >>> from unsup.quantization.nn import model_size_bytes, quantize_model
    >>> net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    >>> X = torch.randn(256, 16, generator=torch.Generator().manual_seed(0))
    >>> q = quantize_model(net, X, n_bits=8)
    >>> type(q[0]).__name__, q[0].weight_codes.dtype
    ('QuantizedLinear', torch.int8)
    >>> model_size_bytes(net), model_size_bytes(q)
    (5392, 2224)
    >>> with torch.no_grad():
    ...     rel = (q(X) - net(X)).norm() / net(X).norm()
    >>> bool(rel < 0.02)
    True
    """
    n_bits = _check_n_bits(n_bits)
    _check_option(granularity, ACTIVATION_GRANULARITIES, "granularity")
    _check_option(outliers, OUTLIER_MODES, "outliers")
    if isinstance(observer, str) and observer not in OBSERVER_NAMES:
        raise ValueError(f"observer must be one of {OBSERVER_NAMES} or an Observer instance; got {observer!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}.")
    forward = _default_forward if forward is None else forward
    device, dtype = _device_dtype(module)
    X = torch.as_tensor(X_calibration).to(device=device, dtype=dtype)
    if X.ndim == 0 or X.shape[0] == 0:
        raise ValueError(f"X_calibration must hold at least one sample; got shape {tuple(X.shape)}.")
    if not bool(torch.isfinite(X).all()):
        raise ValueError("X_calibration contains NaN or infinity.")

    model = copy.deepcopy(module).eval()
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, _WEIGHT_TYPES)]
    if not linears:
        raise ValueError("The module has no torch.nn.Linear (or Conv2d, ConvTranspose2d) layer to quantize.")
    # the input's channel axis: the last for a Linear, 1 of (n, C, H, W) for a convolution and of
    # (n, C, H * W) for a Linear reading a flattened map of C channels (``input_channels``)
    maps = {name: _map_channel_counts(m) for name, m in linears}
    observers = {
        name: get_observer(
            observer, n_bits=n_bits, scheme="asymmetric", granularity=granularity,
            axis=-1 if isinstance(m, torch.nn.Linear) and maps[name][0] is None else 1,
        )
        for name, m in linears
    }
    hooks = [m.register_forward_pre_hook(_observing_hook(observers[name], maps[name][0])) for name, m in linears]
    try:
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                forward(model, X[start : start + batch_size])
    finally:
        for hook in hooks:
            hook.remove()
    missed = [name or "<root>" for name, _ in linears if not observers[name].observed]
    if missed:
        raise ValueError(
            f"The calibration pass did not reach the Linear layer(s) {missed}: pass a "
            "forward(model, X) that runs them."
        )
    qparams = {name: obs.calculate_qparams() for name, obs in observers.items()}
    model = _replace_linears(
        model,
        lambda name, layer: _quantized_layer(
            layer,
            n_bits=n_bits,
            input_scale=qparams[name][0],
            input_zero_point=qparams[name][1],
            granularity=granularity,
            outliers=outliers,
            maps=maps[name],
        ),
        types=_WEIGHT_TYPES,
    )
    return model.eval()


def model_size_bytes(module: torch.nn.Module) -> int:
    """Bytes of all the parameters and buffers of a module.

    Each tensor counts ``numel × element_size`` (an int8 code 1 byte, a
    float32 4); a tensor shared by several submodules counts once.

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    n_bytes : int

    Examples
    --------
    >>> import torch
    >>> from unsup.quantization.nn import model_size_bytes
    >>> model_size_bytes(torch.nn.Linear(10, 4))   # (40 + 4) float32
    176
    """
    seen, total = set(), 0
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return int(total)


# ------------------------------------------------------------------ convolutions


def _weight_axis(layer: torch.nn.Module) -> int:
    """The output-channel (per-filter) axis of a layer's weight: 1 for a transposed convolution.

    ``Conv2d`` weights are ``(out, in, kh, kw)``, ``ConvTranspose2d`` weights
    ``(in, out, kh, kw)``, ``Linear`` weights ``(out, in)``.
    """
    return 1 if isinstance(layer, (torch.nn.ConvTranspose2d, QuantizedConvTranspose2d)) else 0


_CONV_ATTRS = (
    "in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
    "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice",
)


class _FakeQuantConvMixin:
    """Per-filter symmetric fake quantization of a convolution's weight, as :class:`FakeQuantLinear`."""

    @classmethod
    def from_conv(cls, conv, *, n_bits: int = 8):
        """A fake-quantized convolution that shares ``conv``'s parameter tensors."""
        return _sharing_parameters(cls, conv, _CONV_ATTRS, n_bits)

    def quantized_weight(self) -> torch.Tensor:
        """``Ŵ``: the weight fake-quantized per output channel (straight-through gradient)."""
        return _fake_quantize_weight(self.weight, self.n_bits, _weight_axis(self))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, n_bits={self.n_bits}"


class FakeQuantConv2d(_FakeQuantConvMixin, torch.nn.Conv2d):
    """A ``Conv2d`` whose weight is fake-quantized per filter in every forward pass (QAT).

    Built with :meth:`from_conv`, sharing the parameters of a ``Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The convolution of ``x`` with the fake-quantized weight."""
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class FakeQuantConvTranspose2d(_FakeQuantConvMixin, torch.nn.ConvTranspose2d):
    """A ``ConvTranspose2d`` whose weight is fake-quantized per output channel (axis 1) in every pass.

    Built with :meth:`from_conv`, sharing the parameters of a ``ConvTranspose2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The transposed convolution of ``x`` with the fake-quantized weight."""
        return F.conv_transpose2d(
            x, self.quantized_weight(), self.bias, self.stride, self.padding, self.output_padding,
            self.groups, self.dilation,
        )


class _QuantizedConv(torch.nn.Module):
    """A convolution with int8 weights per filter and a calibrated input quantizer.

    As :class:`QuantizedLinear`, with the weight quantized per output channel
    (axis 0 of a ``Conv2d`` weight, axis 1 of a ``ConvTranspose2d`` one) and
    the input quantized per input channel (axis 1 of ``(n, C, H, W)``) or per
    tensor; out-of-range inputs take the same floating-point outlier path.
    """

    _float_type: type = torch.nn.Conv2d

    def __init__(self, conv, *, n_bits=8, granularity="per_channel", outliers="float"):
        super().__init__()
        quant_range(n_bits, "symmetric")
        _check_option(granularity, ACTIVATION_GRANULARITIES, "granularity")
        _check_option(outliers, OUTLIER_MODES, "outliers")
        for key in _CONV_ATTRS:
            if hasattr(conv, key):
                setattr(self, key, getattr(conv, key))
        self.n_bits, self.granularity, self.outliers = int(n_bits), granularity, outliers
        weight = conv.weight.detach()
        device = weight.device
        axis = _weight_axis(conv)
        shape = (conv.in_channels,) if granularity == "per_channel" else ()
        self.register_buffer("weight_codes", torch.zeros(weight.shape, dtype=torch.int8, device=device))
        self.register_buffer("weight_scale", torch.ones(weight.shape[axis], dtype=torch.float32, device=device))
        has_bias = conv.bias is not None
        self.register_buffer(
            "bias", torch.zeros(conv.out_channels, dtype=torch.float32, device=device) if has_bias else None
        )
        self.register_buffer("input_scale", torch.ones(shape, dtype=torch.float32, device=device))
        self.register_buffer("input_zero_point", torch.zeros(shape, dtype=torch.uint8, device=device))

    @classmethod
    def from_conv(cls, conv, *, n_bits=8, input_scale=1.0, input_zero_point=0, granularity="per_channel",
                  outliers="float"):
        """Quantize ``conv``'s weight per filter (min-max, symmetric); set the input quantizer."""
        new = cls(conv, n_bits=n_bits, granularity=granularity, outliers=outliers)
        weight = conv.weight.detach()
        axis = _weight_axis(conv)
        scale = _weight_scale(weight, n_bits, axis)
        with torch.no_grad():
            new.weight_codes.copy_(quantize(weight, scale, 0, n_bits=n_bits, scheme="symmetric", axis=axis))
            new.weight_scale.copy_(torch.from_numpy(scale))
            if conv.bias is not None:
                new.bias.copy_(conv.bias.detach())
        new.set_input_qparams(input_scale, input_zero_point)
        return new

    set_input_qparams = QuantizedLinear.set_input_qparams

    @property
    def weight(self) -> torch.Tensor:
        """The dequantized weight ``s_w ⊙ W_q`` (float32, the float layer's shape)."""
        return dequantize(self.weight_codes, self.weight_scale, 0, axis=_weight_axis(self))

    def quantize_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x̂``: the input through its quantizer (out-of-range values as ``outliers`` says)."""
        axis = 1 if self.granularity == "per_channel" else None
        zero_point = self.input_zero_point.to(torch.int32)
        x_hat = fake_quantize(x, self.input_scale, zero_point, n_bits=self.n_bits, scheme="asymmetric", axis=axis)
        if self.outliers == "saturate":
            return x_hat
        step = self.input_scale.to(x_hat.dtype)
        if step.ndim:
            step = step.reshape(1, -1, *([1] * (x.ndim - 2)))
        x = x.to(x_hat.dtype)
        return torch.where((x - x_hat).abs() > step, x, x_hat)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
            f"n_bits={self.n_bits}, granularity={self.granularity!r}, outliers={self.outliers!r}"
        )


class QuantizedConv2d(_QuantizedConv):
    """A ``Conv2d`` with int8 weights per filter and a calibrated input quantizer (see :class:`_QuantizedConv`).

    Examples
    --------
    >>> import torch
    >>> from unsup.quantization.nn import QuantizedConv2d
    >>> conv = torch.nn.Conv2d(2, 4, 3, padding=1)
    >>> q = QuantizedConv2d.from_conv(conv, input_scale=0.02, input_zero_point=128)
    >>> q.weight_codes.dtype, tuple(q.weight_scale.shape)
    (torch.int8, (4,))
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.quantize_input(x)
        bias = None if self.bias is None else self.bias.to(x_hat.dtype)
        return F.conv2d(x_hat, self.weight.to(x_hat.dtype), bias, self.stride, self.padding, self.dilation, self.groups)


class QuantizedConvTranspose2d(_QuantizedConv):
    """A ``ConvTranspose2d`` with int8 weights per output channel (the weight's axis 1).

    See :class:`_QuantizedConv`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_hat = self.quantize_input(x)
        bias = None if self.bias is None else self.bias.to(x_hat.dtype)
        return F.conv_transpose2d(
            x_hat, self.weight.to(x_hat.dtype), bias, self.stride, self.padding, self.output_padding,
            self.groups, self.dilation,
        )


#: The float layers whose weights are quantized, and their fake-quantized (QAT) versions.
_WEIGHT_TYPES = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
_FAKE_QUANT_TYPES = (FakeQuantLinear, FakeQuantConv2d, FakeQuantConvTranspose2d)


def _conv_classes(layer) -> tuple[type, type]:
    """``(fake-quantized class, quantized class)`` of a convolution layer."""
    if isinstance(layer, torch.nn.ConvTranspose2d):
        return FakeQuantConvTranspose2d, QuantizedConvTranspose2d
    return FakeQuantConv2d, QuantizedConv2d


def _quantized_layer(layer, *, n_bits, input_scale, input_zero_point, granularity, outliers, maps=(None, None)):
    """The post-training-quantized version of a ``Linear``, ``Conv2d`` or ``ConvTranspose2d``."""
    kwargs = dict(
        n_bits=n_bits, input_scale=input_scale, input_zero_point=input_zero_point, granularity=granularity,
        outliers=outliers,
    )
    if isinstance(layer, torch.nn.Linear):
        return QuantizedLinear.from_linear(layer, **kwargs, input_channels=maps[0], output_channels=maps[1])
    return _conv_classes(layer)[1].from_conv(layer, **kwargs)
