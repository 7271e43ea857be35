"""The module factories behind the neural estimators' ``architecture`` parameter.

Design constraints
------------------
- The base of the estimators (:mod:`unsup.neural._base`) scales, seeds,
  trains and wires quantization-aware training the same way for every
  network. An architecture says only what differs: the parameters it
  validates against the input width, how it builds the encoder and the
  decoder, how the standardisation statistics are pooled (per column, or per
  image channel), and whether a code alone can be decoded.
- Adding an architecture is one subclass of :class:`Architecture` and one
  entry of :data:`ARCHITECTURES`: the estimators' ``architecture``
  constraint reads the registry.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from unsup.neural._conv import conv_autoencoder, conv_sizes
from unsup.neural._modules import mlp

__all__ = ["ARCHITECTURES", "Architecture", "ConvArchitecture", "MLPArchitecture"]


class Architecture:
    """The networks of one ``architecture`` value.

    Every method gets the estimator, whose parameters it reads; ``settings``
    is what :meth:`check` returned for the input width.
    """

    def check(self, est, n_features: int) -> dict:
        """Validate the architecture's parameters against ``n_features``: derived settings."""
        return {}

    def build(self, est, n_features: int, settings: dict):
        """``(encoder, decoder)``: fresh modules on ``est._device``, initialised from ``est._generator``."""
        raise NotImplementedError

    def pool_scaling(self, mean, std, settings: dict):
        """The per-column standardisation statistics, pooled as this network wants them."""
        return mean, std

    def decodes_codes(self, est) -> bool:
        """Whether the decoder works from a code alone (``inverse_transform``)."""
        return True


class MLPArchitecture(Architecture):
    """``architecture="mlp"``: fully connected layers of ``hidden_layer_sizes``, mirrored in the decoder."""

    def build(self, est, n_features, settings):
        common = dict(activation=est.activation, dropout=est.dropout, generator=est._generator, device=est._device)
        encoder = mlp([n_features, *est._hidden, est._encoder_width()], **common)
        decoder = mlp([est.n_components, *reversed(est._hidden), n_features], **common)
        return encoder, decoder


class ConvArchitecture(Architecture):
    """``architecture="conv"``: convolution blocks of ``conv_channels`` over ``image_shape`` (:mod:`unsup.neural._conv`)."""

    def check(self, est, n_features):
        """``image_shape`` and ``conv_channels``, validated against ``n_features``."""
        name = type(est).__name__
        shape = est.image_shape
        if shape is None:
            shape, inferred = (1, 1, n_features), True
        else:
            inferred = False
            shape = tuple(shape) if not isinstance(shape, str) else shape
            if not (
                isinstance(shape, tuple)
                and len(shape) == 3
                and all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in shape)
            ):
                raise ValueError(
                    f"image_shape must be None or a tuple of three positive ints (C, H, W), got {est.image_shape!r}."
                )
            shape = tuple(int(s) for s in shape)
            if math.prod(shape) != n_features:
                raise ValueError(
                    f"X has {n_features} features, but {name} is expecting {math.prod(shape)} features "
                    f"as input: image_shape={shape} holds C * H * W = {math.prod(shape)} values per row "
                    "(images flattened in C order)."
                )
        channels = est.conv_channels
        channels = [channels] if isinstance(channels, Integral) else list(channels)
        if not channels or not all(isinstance(c, Integral) and not isinstance(c, bool) and c >= 1 for c in channels):
            raise ValueError(
                f"conv_channels must be a positive int or a non-empty sequence of positive ints, got {est.conv_channels!r}."
            )
        if est.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd (the convolutions keep the size), got {est.kernel_size}.")
        try:
            conv_sizes(shape, len(channels))
        except ValueError as exc:
            if inferred:
                raise ValueError(
                    f"{exc} With image_shape=None each row is a 1-d signal of n_features={n_features} values, "
                    f"image_shape=(1, 1, {n_features}); pass image_shape=(C, H, W) for images."
                ) from None
            raise
        return {"image_shape": shape, "channels": [int(c) for c in channels]}

    def pool_scaling(self, mean, std, settings):
        """Per-pixel means and deviations pooled per channel, repeated over the channel's pixels.

        Images are standardised per channel (as image pipelines normalise them),
        not per pixel: one shift and scale for all the pixels of a channel keeps
        the spatial patterns the convolutions share weights over. The pooled
        variance is the mean of the pixels' variances plus the variance of their
        means (every pixel has the same number of rows).
        """
        c = settings["image_shape"][0]
        m, s = mean.reshape(c, -1), std.reshape(c, -1)
        channel_mean = m.mean(axis=1, keepdims=True)
        channel_std = np.sqrt((s**2).mean(axis=1, keepdims=True) + ((m - channel_mean) ** 2).mean(axis=1, keepdims=True))
        return np.broadcast_to(channel_mean, m.shape).ravel(), np.broadcast_to(channel_std, s.shape).ravel().copy()

    def build(self, est, n_features, settings):
        return conv_autoencoder(
            settings["image_shape"],
            settings["channels"],
            n_components=est.n_components,
            encoder_width=est._encoder_width(),
            kernel_size=est.kernel_size,
            downsampling=est.downsampling,
            upsampling=est.upsampling,
            activation=est.activation,
            dropout=est.dropout,
            skip_connections=est.skip_connections,
            generator=est._generator,
            device=est._device,
        )

    def decodes_codes(self, est):
        return not est.skip_connections  # skip connections carry the encoder's feature maps


#: The module factory of each ``architecture`` value.
ARCHITECTURES: dict[str, Architecture] = {"mlp": MLPArchitecture(), "conv": ConvArchitecture()}
