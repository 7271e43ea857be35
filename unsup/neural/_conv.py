"""Convolutional encoders and decoders for images given as flattened rows.

Design constraints
------------------
- The estimators keep scikit-learn's 2-d ``X``: a row is an image of
  ``image_shape = (C, H, W)`` flattened in C order. The encoder views it as
  ``(n, C, H, W)`` (``nn.Unflatten``), the decoder flattens its image back, so
  the training loop, the scaling and the scores see rows as for an MLP.
- Built from plain torch layers (``Conv2d``, ``ConvTranspose2d``, ``Linear``,
  pooling, upsampling, the activations of :data:`ACTIVATIONS`), so the
  quantization helpers find every weight layer by its type.
- Every block halves each spatial dimension larger than 1 (``"pool"``: a
  ``same`` convolution then a 2x2 max-pool; ``"stride"``: a stride-2
  convolution), rounding up, so odd sizes work; the decoder records the sizes
  and restores them exactly (``"upsample"``: nearest-neighbour upsampling to
  the recorded size then a ``same`` convolution; ``"transpose"``: a stride-2
  transposed convolution with the ``output_padding`` the size needs), then
  a ``same`` convolution outputs the image's channels.
  A dimension of 1 is left alone, so ``image_shape=(1, 1, n)`` is a 1-d signal.
- Skip connections (U-Net style): each decoder block also receives the
  encoder's feature map of the same size, concatenated along the channels.
  They bypass the bottleneck, so the code alone no longer determines the
  reconstruction: for denoising, not for dimensionality reduction.
- All randomness from a ``torch.Generator`` (torch's default initialisation
  drawn from it), never the global stream.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from unsup.neural._modules import ACTIVATIONS, SeededDropout

__all__ = ["ConvDecoder", "ConvEncoder", "conv_autoencoder", "conv_sizes"]


def conv_sizes(image_shape, n_blocks: int) -> list[tuple[int, int]]:
    """The spatial size ``(H, W)`` before the first block and after each of ``n_blocks``.

    Each block halves (rounding up) every dimension larger than 1.

    Raises
    ------
    ValueError
        When a block would start on a 1x1 map: the image is too small for
        that many downsampling blocks.
    """
    _, h, w = image_shape
    sizes = [(h, w)]
    for i in range(n_blocks):
        if h == 1 and w == 1:
            raise ValueError(
                f"image_shape={tuple(image_shape)} is too small for {n_blocks} downsampling "
                f"block(s) (conv_channels of length {n_blocks}): each block halves the height "
                f"and width, and after {i} block(s) the image is 1x1. Use fewer conv_channels "
                "or larger images."
            )
        h, w = (h + 1) // 2, (w + 1) // 2
        sizes.append((h, w))
    return sizes


def _kernel(size: tuple[int, int], kernel_size: int) -> tuple[int, int]:
    """A ``same`` kernel on the dimensions larger than 1, width 1 on the others."""
    return tuple(kernel_size if s > 1 else 1 for s in size)


def _stride(size: tuple[int, int]) -> tuple[int, int]:
    return tuple(2 if s > 1 else 1 for s in size)


def _init_(layer: nn.Module, generator: torch.Generator) -> nn.Module:
    """torch's default initialisation of a weight layer, drawn from ``generator``.

    ``kaiming_uniform_(a=sqrt(5))`` on the weight and U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) on the bias, with torch's ``fan_in`` of the weight (as
    ``Conv2d`` / ``ConvTranspose2d`` / ``Linear.reset_parameters``).
    """
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        fan_in, _ = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def _make(cls, generator, *args, **kwargs):
    """A layer created without drawing from torch's global stream, then seeded."""
    return _init_(torch.nn.utils.skip_init(cls, *args, **kwargs), generator)


def _activation(activation: str, dropout: float) -> list[nn.Module]:
    layers = [ACTIVATIONS[activation]()]
    if dropout > 0:
        layers.append(SeededDropout(dropout))
    return layers


class ConvEncoder(nn.Module):
    """Flattened images to ``out_features`` numbers: convolution blocks, then a linear layer.

    ``forward(x)`` returns the output; ``forward(x, return_skips=True)`` also
    the feature map after each block (for a decoder with skip connections).
    """

    def __init__(self, image_shape, channels, *, kernel_size, downsampling, activation, dropout, out_features,
                 generator):
        super().__init__()
        c_in = image_shape[0]
        sizes = conv_sizes(image_shape, len(channels))
        self.unflatten = nn.Unflatten(1, tuple(image_shape))
        blocks = []
        for i, c in enumerate(channels):
            kernel = _kernel(sizes[i], kernel_size)
            padding = tuple(k // 2 for k in kernel)
            if downsampling == "pool":
                stride = _stride(sizes[i])
                layers = [
                    _make(nn.Conv2d, generator, c_in, c, kernel, padding=padding),
                    *_activation(activation, dropout),
                    nn.MaxPool2d(stride, stride=stride, ceil_mode=True),
                ]
            else:
                layers = [
                    _make(nn.Conv2d, generator, c_in, c, kernel, stride=_stride(sizes[i]), padding=padding),
                    *_activation(activation, dropout),
                ]
            blocks.append(nn.Sequential(*layers))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        h, w = sizes[-1]
        self.head = nn.Sequential(nn.Flatten(), _make(nn.Linear, generator, c_in * h * w, out_features))
        self.head[1].input_channels = c_in  # reads a flattened map: int8 input ranges per map channel

    def forward(self, x: torch.Tensor, return_skips: bool = False):
        x = self.unflatten(x)
        skips = []
        for block in self.blocks:
            x = block(x)
            skips.append(x)
        out = self.head(x)
        return (out, skips) if return_skips else out


class ConvDecoder(nn.Module):
    """Codes back to flattened images: a linear layer, then upsampling blocks mirroring a :class:`ConvEncoder`.

    Every block ends with the activation; the last one keeps the first
    encoder block's channels at full resolution, and a ``same`` convolution
    with no activation, the output layer, maps them to the image's channels
    (the standardised pixels). The digits reconstruct better so than with a
    last block that outputs the image's channels itself (held-out MSE 0.41
    against 0.53 of PCA(8)'s, ``benchmarks/bench_conv.py``). With
    ``skip_connections`` each block concatenates the encoder's feature map of
    its input size, so ``forward(z, skips)`` needs them.
    """

    def __init__(self, image_shape, channels, *, kernel_size, upsampling, activation, dropout, in_features,
                 skip_connections, generator):
        super().__init__()
        sizes = conv_sizes(image_shape, len(channels))
        self.skip_connections = bool(skip_connections)
        c_last = channels[-1]
        h, w = sizes[-1]
        self.head = nn.Sequential(
            _make(nn.Linear, generator, in_features, c_last * h * w),
            *_activation(activation, dropout),
            nn.Unflatten(1, (c_last, h, w)),
        )
        self.head[0].output_channels = c_last  # feeds maps: int8 weight scales per map channel
        # Each block mirrors an encoder block; the last one keeps the first
        # block's channels at full resolution, and a ``same`` convolution maps
        # them to the image's channels (the output layer).
        outs = [channels[0], *channels[:-1]]
        blocks = []
        for i in reversed(range(len(channels))):
            c_in = channels[i] * (2 if skip_connections else 1)
            c_out = outs[i]
            target, source = sizes[i], sizes[i + 1]
            kernel = _kernel(target, kernel_size)
            padding = tuple(k // 2 for k in kernel)
            if upsampling == "upsample":
                layers = [
                    nn.Upsample(size=target, mode="nearest"),
                    _make(nn.Conv2d, generator, c_in, c_out, kernel, padding=padding),
                ]
            else:
                stride = tuple(2 if t > s else 1 for t, s in zip(target, source))
                extra = tuple(
                    t - ((s - 1) * st - 2 * p + k) for t, s, st, p, k in zip(target, source, stride, padding, kernel)
                )
                layers = [
                    _make(nn.ConvTranspose2d, generator, c_in, c_out, kernel, stride=stride, padding=padding,
                          output_padding=extra),
                ]
            layers += _activation(activation, dropout)
            if i == 0:  # the output layer, on the full-size map: the block's own kernel and padding
                layers.append(_make(nn.Conv2d, generator, c_out, image_shape[0], kernel, padding=padding))
            blocks.append(nn.Sequential(*layers))
        self.blocks = nn.ModuleList(blocks)
        self.flatten = nn.Flatten()

    def forward(self, z: torch.Tensor, skips=None) -> torch.Tensor:
        if self.skip_connections and skips is None:
            raise ValueError(
                "This decoder has skip connections: it needs the encoder's feature maps, "
                "which a code alone does not carry."
            )
        x = self.head(z)
        for j, block in enumerate(self.blocks):
            if self.skip_connections:
                x = torch.cat([x, skips[-1 - j]], dim=1)
            x = block(x)
        return self.flatten(x)


def conv_autoencoder(
    image_shape,
    channels,
    *,
    n_components: int,
    encoder_width: int,
    kernel_size: int = 3,
    downsampling: str = "pool",
    upsampling: str = "upsample",
    activation: str = "relu",
    dropout: float = 0.0,
    skip_connections: bool = False,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> tuple[ConvEncoder, ConvDecoder]:
    """A convolutional encoder and its mirrored decoder for images of ``image_shape``.

    Parameters
    ----------
    image_shape : tuple of 3 int
        ``(C, H, W)`` of an image; rows have ``C * H * W`` features in C order.
    channels : sequence of int
        Output channels of each encoder block (the decoder mirrors them).
    n_components : int
        Width of the code (the decoder's input).
    encoder_width : int
        Width of the encoder's output (the code, or a VAE's mean and log-variance).
    kernel_size : int, default=3
        Odd; the convolutions are ``same`` padded.
    downsampling : {"pool", "stride"}, default="pool"
    upsampling : {"upsample", "transpose"}, default="upsample"
    activation : str, default="relu"
        A key of :data:`ACTIVATIONS`.
    dropout : float, default=0.0
        :class:`SeededDropout` after each hidden activation.
    skip_connections : bool, default=False
    generator : torch.Generator
        The CPU generator the weights are drawn from.
    device : torch.device or str, default="cpu"

    Returns
    -------
    encoder : ConvEncoder
    decoder : ConvDecoder

    Examples
    --------
    >>> import torch
    >>> from unsup.neural._conv import conv_autoencoder
    >>> enc, dec = conv_autoencoder((1, 7, 6), (4, 8), n_components=2, encoder_width=2,
    ...                             generator=torch.Generator().manual_seed(0))
    >>> x = torch.zeros(5, 42)
    >>> enc(x).shape, dec(enc(x)).shape
    (torch.Size([5, 2]), torch.Size([5, 42]))
    """
    common = dict(kernel_size=kernel_size, activation=activation, dropout=dropout, generator=generator)
    encoder = ConvEncoder(image_shape, channels, downsampling=downsampling, out_features=encoder_width, **common)
    decoder = ConvDecoder(
        image_shape, channels, upsampling=upsampling, in_features=n_components, skip_connections=skip_connections,
        **common,
    )
    return encoder.to(device), decoder.to(device)
