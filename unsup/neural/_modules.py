"""Torch building blocks of the neural estimators: MLPs, seeded initialisation, devices.

Design constraints
------------------
- Plain ``nn.Sequential`` stacks of ``nn.Linear``, activation and (optional)
  ``nn.Dropout`` layers, nothing custom: the quantization helpers
  (:mod:`unsup.quantization.nn`) find every ``nn.Linear`` and swap it for a
  fake-quantized or an int8 one without knowing the architecture.
- All randomness from a ``torch.Generator``: the layers are created without
  touching torch's global random stream (``torch.nn.utils.skip_init``) and
  initialised from the generator, so the same seed gives the same weights and
  a fit never disturbs the user's own random state.
- The device is resolved in one place, :func:`resolve_device`.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "DEVICES", "SeededDropout", "make_generators", "mlp", "resolve_device", "seed_dropout"]

#: Activation names accepted by ``activation=`` (``"logistic"`` is scikit-learn's name for the sigmoid).
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "logistic": nn.Sigmoid,
    "sigmoid": nn.Sigmoid,
    "identity": nn.Identity,
}

#: Values of ``device=``: ``"auto"`` is CUDA when available, else the CPU.
DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: str) -> torch.device:
    """The torch device for ``device=`` (``"cpu"``, ``"cuda"`` or ``"auto"``).

    Raises
    ------
    ValueError
        ``device="cuda"`` on a machine where CUDA is not available.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available (torch "
            f"{torch.__version__}, torch.cuda.is_available() is False). Use "
            "device='cpu', or device='auto' to use a GPU only when there is one."
        )
    return torch.device(device)


def loaded_device(estimator) -> torch.device:
    """The device of an estimator being unpickled: its ``device_``, or the CPU.

    A model fitted on CUDA and loaded where CUDA is not available warns and
    moves to the CPU (``device_`` becomes ``"cpu"``) rather than failing.
    """
    device = torch.device(estimator.device_)
    if device.type == "cuda" and not torch.cuda.is_available():
        warnings.warn(
            f"This {type(estimator).__name__} was fitted on {estimator.device_}, which is not "
            "available here: it is loaded on the CPU.",
            UserWarning,
            stacklevel=3,
        )
        device = torch.device("cpu")
        estimator.device_ = "cpu"
    return device


def make_generators(seed: int, device: torch.device) -> tuple[torch.Generator, torch.Generator]:
    """A CPU generator (initialisation, shuffling) and one on ``device`` (noise, sampling).

    On the CPU both are the same generator. On another device the second is a
    generator of that device seeded from the same ``seed``, so that noise and
    samples are drawn where the data lives, without a copy per batch.
    """
    cpu = torch.Generator(device="cpu")
    cpu.manual_seed(seed)
    if device.type == "cpu":
        return cpu, cpu
    dev = torch.Generator(device=device)
    dev.manual_seed(seed + 1)
    return cpu, dev


class SeededDropout(nn.Module):
    """Dropout whose masks are drawn from a ``torch.Generator``, not from torch's global stream.

    ``nn.Dropout`` always draws from the global generator, so two fits with
    the same ``random_state`` would differ and a fit would move the user's
    random state. This layer draws its Bernoulli masks from ``generator``
    (set by the training loop through :func:`seed_dropout`, and cleared after
    it); in eval mode, or with ``p == 0``, it is the identity, as
    ``nn.Dropout``.

    Parameters
    ----------
    p : float
        Probability of zeroing an element, in [0, 1).
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = torch.empty_like(x).bernoulli_(keep, generator=self.generator)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state["generator"] = None  # a generator is session state, not part of the model
        return state

    def __deepcopy__(self, memo):
        clone = SeededDropout(self.p)
        clone.training = self.training
        return clone


def seed_dropout(modules, generator: torch.Generator | None) -> None:
    """Point every :class:`SeededDropout` layer of ``modules`` at ``generator`` (``None`` clears)."""
    for module in modules:
        if module is None:
            continue
        for layer in module.modules():
            if isinstance(layer, SeededDropout):
                layer.generator = generator


def _init_linear_(layer: nn.Linear, generator: torch.Generator) -> None:
    """torch's own default initialisation of ``nn.Linear``, drawn from ``generator``.

    The weights are ``kaiming_uniform_(a=sqrt(5))``, i.e. U(-1/sqrt(fan_in),
    1/sqrt(fan_in)), and the bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the same
    distributions as ``nn.Linear.reset_parameters``, so a model here starts
    where a plain torch model would.
    """
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.in_features) if layer.in_features > 0 else 0.0
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def mlp(
    sizes: list[int],
    *,
    activation: str = "relu",
    dropout: float = 0.0,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> nn.Sequential:
    """A multilayer perceptron: ``Linear`` layers between consecutive ``sizes``.

    Every layer but the last is followed by the activation and, when
    ``dropout > 0``, by :class:`SeededDropout` (``nn.Dropout`` drawing from
    the estimator's generator); the last layer is linear (the
    code of an encoder, or the standardised reconstruction of a decoder).

    Parameters
    ----------
    sizes : list of int
        Widths ``[in_features, hidden_1, ..., out_features]`` (at least two).
    activation : str, default="relu"
        A key of :data:`ACTIVATIONS`.
    dropout : float, default=0.0
        Dropout probability after each hidden activation.
    generator : torch.Generator
        The CPU generator the weights are drawn from.
    device : torch.device or str, default="cpu"
        Where the module is put after initialisation.

    Returns
    -------
    module : torch.nn.Sequential

    Examples
    --------
    >>> import torch
    >>> from unsup.neural._modules import mlp
    >>> net = mlp([4, 8, 2], generator=torch.Generator().manual_seed(0))
    >>> net
    Sequential(
      (0): Linear(in_features=4, out_features=8, bias=True)
      (1): ReLU()
      (2): Linear(in_features=8, out_features=2, bias=True)
    )
    >>> net(torch.zeros(3, 4)).shape
    torch.Size([3, 2])
    """
    layers: list[nn.Module] = []
    n_layers = len(sizes) - 1
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        linear = torch.nn.utils.skip_init(nn.Linear, n_in, n_out)  # no draw from the global stream
        with torch.no_grad():
            _init_linear_(linear, generator)
        layers.append(linear)
        if i < n_layers - 1:
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(SeededDropout(dropout))
    return nn.Sequential(*layers).to(device)
