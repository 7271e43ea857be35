"""The base of the neural estimators: the scikit-learn contract around torch modules.

Design constraints
------------------
- ``__init__`` stores parameters only; ``fit`` validates, builds the modules
  (``encoder_``, ``decoder_``, plain ``nn.Sequential`` stacks), trains them with
  the one loop of :mod:`unsup.neural._training`, and sets the outlier offset.
  Subclasses fill in what differs: the width of the encoder's output, the
  code, the training loss of a batch and the per-sample evaluation loss.
- numpy in, numpy out: ``transform`` and ``reconstruct`` keep the float dtype
  of ``X`` (float32 or float64), scores are float64; the arithmetic inside is
  float32 torch.
- Inference is batch-independent: rows go through the network in chunks
  padded to a multiple of 16 rows, so that a row's output does not depend on
  which other rows come with it (float32 matrix products round differently in
  their remainder rows; scikit-learn's common checks compare rows computed
  alone and together).
- Inputs are standardised inside (``scale=True``) with the training mean and
  standard deviation, a zero (or round-off) deviation counting as 1; the
  standardisation runs in chunks into a float32 array, so a float64 ``X`` is
  never copied whole in float64.
- All randomness from ``random_state`` through ``torch.Generator`` objects;
  torch's global random stream is never touched. Training and inference run
  with the intra-op threads ``n_jobs`` asks for (one for small networks by
  default) and restore the caller's thread count after.
- Pickling stores the modules with CPU tensors and the generators as their
  states, and reloads onto the fitted device when it exists, else the CPU.
"""

from __future__ import annotations

import math

import copy
import warnings
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import check_array, check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from unsup._sklearn_adapter import Interval, StrOptions, fit_context
from unsup.neural._architectures import ARCHITECTURES
from unsup.neural._modules import ACTIVATIONS, DEVICES, loaded_device, make_generators, resolve_device
from unsup.neural._outlier import ScoreOffsetOutlierMixin
from unsup.neural._training import (
    DivergenceWarning,
    TrainConfig,
    TrainState,
    forward_profile,
    split_validation,
    thread_scope,
    train,
)

__all__ = ["BaseNeuralEstimator"]

#: Rows per chunk of the numpy work around inference (standardising, writing out): bounds memory.
_CHUNK = 4096
#: Activation elements of a network's widest layer in one forward pass at inference. Small enough
#: for a convolution's feature maps to stay in cache (about 300 rows of 1x28x28 images in 24
#: channels: 2.5x faster than 4,096 rows), large enough for a fully connected network's products to
#: run at full speed (about 2,000 rows of 784 features).
_FORWARD_ELEMENTS = 3 << 19
#: Inference chunks are padded to a multiple of this many rows (batch-independent outputs).
_ROW_MULTIPLE = 16
#: Attributes holding torch modules (moved to the CPU for pickling).
_MODULE_ATTRS = ("encoder_", "decoder_", "latent_quantizer_")
#: Standardised inputs are clipped to this magnitude (finite codes and scores for finite inputs).
_CLIP = 1e10
#: A fit whose reconstruction error ends this many times above the trivial model's has diverged.
_DIVERGENCE_FACTOR = 10.0
#: Bound on a VAE's log-variance, so that exp() never overflows in float32.
LOGVAR_CLAMP = (-30.0, 20.0)
#: With scale=False, columns spread wider than this share one power-of-two divisor (float32 squares).
_RAW_SPREAD_LIMIT = 1e12


def common_scale(std, n_features):
    """``scale_`` of ``scale=False``: ones, or one power of two for every column when the widest
    column's standard deviation passes :data:`_RAW_SPREAD_LIMIT` (values near 1e38 would
    overflow float32 in the network). One divisor keeps the columns' relative units."""
    widest = float(np.max(std, initial=0.0))
    if not widest > _RAW_SPREAD_LIMIT:
        return np.ones(n_features)
    return np.full(n_features, 2.0 ** math.ceil(math.log2(widest)))


def _quantize_module():
    """The quantization helpers (imported when first needed: they import the quantization core)."""
    from unsup.quantization import nn as _quantize

    return _quantize


def _cpu_tensors(obj):
    """``obj`` with every tensor inside (dicts, lists, tuples) moved to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _cpu_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_tensors(v) for v in obj)
    return obj


def _module_on_cpu(module: torch.nn.Module) -> torch.nn.Module:
    """``module`` itself when all its tensors are on the CPU, else a CPU copy."""
    tensors = list(module.parameters()) + list(module.buffers())
    if all(t.device.type == "cpu" for t in tensors):
        return module
    return copy.deepcopy(module).to("cpu")


def _column_stats(X):
    """Column means and standard deviations in float64, in chunks of rows (no float64 copy of X)."""
    n = X.shape[0]
    total = np.zeros(X.shape[1])
    for start in range(0, n, _CHUNK):
        total += X[start : start + _CHUNK].sum(axis=0, dtype=np.float64)
    mean = total / n
    squares = np.zeros(X.shape[1])
    for start in range(0, n, _CHUNK):
        d = X[start : start + _CHUNK].astype(np.float64) - mean
        squares += np.einsum("ij,ij->j", d, d)
    return mean, np.sqrt(squares / n)


def _column_stats_on_device(rows):
    """:func:`_column_stats` of a tensor on an accelerator, computed there (float64 sums)."""
    n, d = rows.shape
    step = max(1, (1 << 24) // max(d, 1))
    total = torch.zeros(d, dtype=torch.float64, device=rows.device)
    for start in range(0, n, step):
        total += rows[start : start + step].sum(dim=0, dtype=torch.float64)
    mean = total / n
    squares = torch.zeros_like(total)
    for start in range(0, n, step):
        diff = rows[start : start + step].double() - mean
        squares += (diff * diff).sum(dim=0)
    return mean.cpu().numpy(), torch.sqrt(squares / n).cpu().numpy()


def _decodes_codes(est) -> bool:
    """Whether the decoder works from a code alone (not with skip connections)."""
    return ARCHITECTURES[est.architecture].decodes_codes(est)


class BaseNeuralEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, ScoreOffsetOutlierMixin, BaseEstimator):
    """Shared machinery of :class:`Autoencoder` and :class:`VariationalAutoencoder`.

    Not public: subclasses define ``_encoder_width``, ``_code``,
    ``_batch_loss`` and ``_sample_loss``, and their own docstrings.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "architecture": [StrOptions(set(ARCHITECTURES))],
        "image_shape": ["array-like", None],
        "conv_channels": ["array-like", Interval(Integral, 1, None, closed="left")],
        "kernel_size": [Interval(Integral, 1, None, closed="left")],
        "downsampling": [StrOptions({"pool", "stride"})],
        "upsampling": [StrOptions({"upsample", "transpose"})],
        "skip_connections": ["boolean"],
        "kind": [StrOptions({"undercomplete", "sparse", "denoising"})],
        "sparsity": [Interval(Real, 0, None, closed="left")],
        "noise": [Interval(Real, 0, None, closed="left")],
        "corruption": [StrOptions({"gaussian", "masking"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "trim_fraction": [Interval(Real, 0, 0.5, closed="both")],
        "scale": ["boolean"],
        "qat": [dict, None],
        "device": [StrOptions(set(DEVICES))],
        "n_jobs": [Interval(Integral, None, -1, closed="right"), Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # ------------------------------------------------------------------ tags
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.sparse = False
        return tags

    @property
    def _n_features_out(self):
        return self.n_components

    # ------------------------------------------------------------ subclass API
    def _encoder_width(self) -> int:
        """Width of the encoder's output (the code, or mean and log-variance)."""
        raise NotImplementedError

    def _code(self, xs: torch.Tensor) -> torch.Tensor:
        """The deterministic code of standardised rows (eval mode)."""
        raise NotImplementedError

    def _batch_loss(self, xb: torch.Tensor) -> torch.Tensor:
        """Mean training loss of a batch of standardised rows (train mode, random)."""
        raise NotImplementedError

    def _sample_loss(self, xs: torch.Tensor) -> torch.Tensor:
        """Deterministic per-sample loss of standardised rows (eval mode)."""
        raise NotImplementedError

    # ------------------------------------------------------------ validation
    def _check_hidden_layer_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if not all(isinstance(s, Integral) and not isinstance(s, bool) and s >= 1 for s in sizes):
            raise ValueError(
                f"hidden_layer_sizes must be a positive int or a sequence of positive ints, got {self.hidden_layer_sizes!r}."
            )
        return [int(s) for s in sizes]

    def _check_params_vs_input(self, n_features):
        self._hidden = self._check_hidden_layer_sizes()
        self._architecture_settings = ARCHITECTURES[self.architecture].check(self, n_features)
        if self.kind == "denoising" and self.corruption == "masking" and self.noise >= 1:
            raise ValueError(
                f"noise={self.noise} with corruption='masking' is the fraction of inputs "
                "masked; it must be in [0, 1)."
            )
        self._qat_config = _quantize_module().check_qat(self.qat, caller=type(self).__name__)

    def _validate(self, X, *, reset):
        return validate_data(self, X, dtype=[np.float64, np.float32], reset=reset)

    # ---------------------------------------------------------- data helpers
    def _device_rows(self, X) -> torch.Tensor | None:
        """Validated ``X`` copied to the fitted accelerator in its own dtype; None on the CPU."""
        if self._device.type == "cpu":
            return None
        return torch.from_numpy(X).to(self._device)

    def _standardise(self, X, rows=None, clip=True) -> torch.Tensor:
        """Rows of validated ``X`` standardised into a float32 tensor on the fitted device.

        On an accelerator ``X`` travels as it is (``rows``: already there) and
        is standardised there, with the same arithmetic in the dtype of ``X``
        as on the CPU, so the values are the same. Standardised values are
        clipped to +-``_CLIP`` (finite but extreme inputs, 1e200 say, would
        otherwise become inf in float32 and NaN in the network), so the
        codes and scores of finite inputs are finite. Training data is not
        clipped (``clip=False``): a fit on such values stops with the
        training loop's clear error instead of learning from altered rows.
        """
        bound = _CLIP if clip else np.inf
        if self._device.type != "cpu":
            rows = self._device_rows(X) if rows is None else rows
            mean = torch.as_tensor(self.mean_.astype(X.dtype), device=self._device)
            scale = torch.as_tensor(self.scale_.astype(X.dtype), device=self._device)
            out = (rows - mean) / scale
            if clip:
                out = out.clamp(-_CLIP, _CLIP).nan_to_num(_CLIP)
            return out.to(torch.float32)
        out = np.empty(X.shape, dtype=np.float32)
        mean, scale = self.mean_.astype(X.dtype), self.scale_.astype(X.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            for start in range(0, X.shape[0], _CHUNK):
                block = (X[start : start + _CHUNK] - mean) / scale
                if clip:
                    np.clip(block, -bound, bound, out=block)
                    block[np.isnan(block)] = bound  # inf - inf of extreme inputs: an extreme value
                out[start : start + _CHUNK] = block
        return torch.from_numpy(out).to(self._device)

    def _map_rows(self, fn, X, width, dtype):
        """``fn`` of the standardised rows of ``X``, chunk by chunk, into a new (n, width) array.

        Each chunk of ``_CHUNK`` rows is standardised, run through ``fn``
        (a function of a standardised chunk, giving a CPU tensor) and written
        into the output: the
        extra memory is the output plus one chunk's working set, never a
        standardised copy of the whole ``X``.
        """
        n = X.shape[0]
        out = np.empty((n, width) if width else (n,), dtype=dtype)
        for start in range(0, n, _CHUNK):
            out[start : start + _CHUNK] = fn(self._standardise(X[start : start + _CHUNK])).numpy()
        return out

    def _unstandardise(self, xs: torch.Tensor, dtype) -> np.ndarray:
        """Standardised float32 rows back to the units of ``X``, in ``dtype``."""
        x = xs.detach().cpu().numpy().astype(np.float64)
        x *= self.scale_
        x += self.mean_
        return x.astype(dtype, copy=False)

    def _measure_profile(self, n_features: int) -> tuple[int, int]:
        """The widest activation (input included) and the multiply-adds of one row through the network.

        Measured once, when the modules are built (``_profile``), on one row
        of zeros (:func:`forward_profile`), whatever the architecture; the
        shapes, and so the profile, stay the same through training and
        ``quantize``. The latent quantizer is left out (its output is the
        code; it cannot run before a fit has observed codes).
        """
        row = torch.zeros((1, n_features), dtype=torch.float32, device=self._device)

        def forward():
            out, skips = self._encode(row)
            self._decode(self._split_code(out), skips)

        widest, macs = forward_profile([self.encoder_, self.decoder_], forward)
        return max(widest, n_features), macs

    def _forward_rows(self, n_rows: int | None = None) -> int:
        """Rows per forward pass over ``n_rows`` rows (None: many) at inference.

        On the CPU ``_FORWARD_ELEMENTS`` over the widest activation, a multiple
        of 16 in [16, ``_CHUNK``]; ``_CHUNK`` for 16 rows or fewer (one padded
        pass) and on an accelerator (no cache to stay in).
        """
        if (n_rows is not None and n_rows <= _ROW_MULTIPLE) or self._device.type != "cpu":
            return _CHUNK
        rows = _FORWARD_ELEMENTS // self._profile[0] // _ROW_MULTIPLE * _ROW_MULTIPLE
        return int(min(_CHUNK, max(_ROW_MULTIPLE, rows)))

    def _apply(self, fn, xs: torch.Tensor) -> torch.Tensor:
        """``fn`` over chunks of rows, each padded to a multiple of 16 rows; concatenated on the CPU."""
        outs = []
        step = self._forward_rows(xs.shape[0])
        rows = min(xs.shape[0], step)
        with torch.no_grad(), thread_scope(self._modules(), rows, getattr(self, "n_jobs", None), self._profile[1]):
            for start in range(0, xs.shape[0], step):
                block = xs[start : start + step]
                m = block.shape[0]
                pad = (-m) % _ROW_MULTIPLE
                if pad:
                    block = torch.cat([block, block.new_zeros((pad, block.shape[1]))])
                outs.append(fn(block)[:m].cpu())
        if not outs:
            return torch.empty((0,))
        return torch.cat(outs)

    def _encode(self, xs: torch.Tensor):
        """The encoder's raw output and, with skip connections, its feature maps (else None)."""
        if _decodes_codes(self):
            return self.encoder_(xs), None
        return self.encoder_(xs, return_skips=True)

    def _decode(self, z: torch.Tensor, skips=None) -> torch.Tensor:
        return self.decoder_(z) if skips is None else self.decoder_(z, skips)

    def _reconstruct_std(self, xs: torch.Tensor) -> torch.Tensor:
        out, skips = self._encode(xs)
        return self._decode(self._latent(self._split_code(out)), skips)

    def _errors(self, xs: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared error of the reconstruction, as float64.

        In standardised units with ``scale=True``, else in the units of ``X``
        (times the square of the common divisor, one unless the columns are
        extremely wide). Computed in float32 (a float64 copy of the rows would
        cost as much as the forward pass), and again in float64 for the rare
        chunk where a float32 square overflows.
        """
        unit = self._error_unit

        def fn(block):
            rec = self._reconstruct_std(block)
            diff = rec - block
            err = (diff * diff).mean(dim=1)
            if not bool(torch.isfinite(err).all()):
                diff = rec.double() - block.double()
                err = (diff * diff).mean(dim=1)
            return err.double() * unit

        return self._apply(fn, xs)

    @property
    def _error_unit(self) -> float:
        """What a squared error between network values is worth in the units of reported errors."""
        return 1.0 if self.scale else float(self.scale_[0]) ** 2

    def _latent(self, z: torch.Tensor) -> torch.Tensor:
        """The code as the decoder sees it: fake-quantized when latent QAT is on."""
        q = getattr(self, "latent_quantizer_", None)
        return z if q is None else q(z)

    def _corrupt(self, xb: torch.Tensor) -> torch.Tensor:
        """Corrupted inputs for ``kind="denoising"`` (Gaussian noise or masking to the mean)."""
        if self.kind != "denoising" or self.noise == 0:
            return xb
        if self.corruption == "gaussian":
            eps = torch.randn(xb.shape, generator=self._device_generator, device=xb.device, dtype=xb.dtype)
            return xb + self.noise * eps
        keep = torch.empty_like(xb).bernoulli_(1.0 - self.noise, generator=self._device_generator)
        return xb * keep  # standardised: a masked input is set to the training mean

    def _trimmed_mean(self, losses: torch.Tensor) -> torch.Tensor:
        """Mean of the ``1 - trim_fraction`` smallest per-row losses of a batch (at least one row).

        The rows a batch reconstructs worst, the likely outliers, give no
        gradient, so the network is not taught to reconstruct them: a
        least-trimmed-squares loss. ``trim_fraction=0`` is the plain mean.
        """
        n = losses.shape[0]
        keep = max(1, math.ceil((1.0 - self.trim_fraction) * n - 1e-9))
        if keep >= n:
            return losses.mean()
        return torch.topk(losses, keep, largest=False, sorted=False).values.mean()

    def _sparsity_penalty(self, code: torch.Tensor) -> torch.Tensor | float:
        if self.kind != "sparse" or self.sparsity == 0:
            return 0.0
        return self.sparsity * code.abs().mean()

    # ------------------------------------------------------------ building
    def _initialise(self, X):
        """Scaling statistics, generators and fresh modules for validated ``X``.

        Returns ``X`` on the fitted accelerator (None on the CPU), where the
        statistics were computed, for :meth:`_standardise`.
        """
        self._device = resolve_device(self.device)
        self.device_ = str(self._device)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self._generator, self._device_generator = make_generators(seed, self._device)
        n_features = X.shape[1]
        rows = self._device_rows(X)
        self._set_scaling(*(_column_stats(X) if rows is None else _column_stats_on_device(rows)))
        encoder, decoder = ARCHITECTURES[self.architecture].build(self, n_features, self._architecture_settings)
        config = self._qat_config
        latent_quantizer = None
        if config is not None:
            q = _quantize_module()
            if config.get("weights"):
                encoder = q.prepare_qat(encoder, config).to(self._device)
                decoder = q.prepare_qat(decoder, config).to(self._device)
            if config.get("latent"):
                latent_quantizer = q.LatentFakeQuantize(config).to(self._device)
        self.encoder_, self.decoder_, self.latent_quantizer_ = encoder, decoder, latent_quantizer
        self._profile = self._measure_profile(n_features)
        self._optimizer_state = None
        self.quantized_bits_ = None
        self.loss_curve_, self.validation_scores_ = [], []
        self.best_loss_ = np.inf
        self.n_iter_ = 0
        return rows

    def _set_scaling(self, mean, std):
        """``mean_`` and ``scale_`` from the columns' means and standard deviations (float64).

        Standardised with ``scale=True`` (a constant column is only centred),
        else centred, as PCA centres (one power-of-two divisor for extremely
        wide columns: :func:`common_scale`). Convolutional networks take one
        shift and scale per channel, not per pixel.
        """
        mean, std = ARCHITECTURES[self.architecture].pool_scaling(mean, std, self._architecture_settings)
        if self.scale:
            tiny = 10 * np.finfo(np.float64).eps * np.maximum(np.abs(mean), 1.0)
            std = np.where(std > tiny, std, 1.0)  # constant columns (or round-off) are not divided by ~0
            self.mean_, self.scale_ = mean, std
        else:
            self.mean_, self.scale_ = mean, common_scale(std, len(mean))

    def _modules(self):
        return [self.encoder_, self.decoder_, self.latent_quantizer_]

    def _train(self, xs, *, X_val, max_epochs, n_iter_no_change, warn):
        """Train on ``xs`` (``warn``: a fit, with its progress total and the max_epochs warning)."""
        # warn_stacklevel 5: _train <- fit <- scikit-learn's _fit_context wrapper <- the dask_support
        # wrapper <- the user's call
        config = TrainConfig.of(
            self,
            max_epochs=max_epochs,
            n_iter_no_change=n_iter_no_change,
            total_epochs=-1 if warn else None,
            warn_stacklevel=5 if warn and self.early_stopping else None,
        )
        state = TrainState(self._generator, self._device_generator, self._optimizer_state, self.n_iter_)
        result = train(self._modules(), self._batch_loss, xs, config, state, X_val=X_val, sample_loss=self._sample_loss)
        self._optimizer_state = result.optimizer_state
        self.loss_curve_ = self.loss_curve_ + result.loss_curve
        self.validation_scores_ = self.validation_scores_ + result.validation_scores
        self.best_loss_ = float(min(self.best_loss_, result.best_loss))
        self.n_iter_ += result.n_epochs
        return result

    def _finish(self, xs, *, check_divergence=False):
        """Offset from the training scores and the model size, after training.

        With ``check_divergence``, warn (:class:`DivergenceWarning`) when the
        mean reconstruction error of the training rows ends more than
        ``_DIVERGENCE_FACTOR`` times that of the trivial model, which predicts
        the training mean for every row (in standardised units: the mean of
        the squared standardised values).
        """
        errors = self._errors(xs) if check_divergence else None
        scores = -(errors if errors is not None and self._scores_are_errors else self._scores_std(xs)).numpy()
        self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))
        self.model_size_bytes_ = self._model_size()
        if check_divergence:
            error = float(np.mean(errors.numpy()))
            trivial = float(torch.mean(xs.double() ** 2))
            if trivial > 0 and not error <= _DIVERGENCE_FACTOR * trivial:
                # stacklevel 5: _finish <- fit <- scikit-learn's _fit_context wrapper <- the dask_support
                # wrapper <- the user's call
                warnings.warn(
                    f"{type(self).__name__}: training diverged: the reconstruction error of the "
                    f"training data ({error:.3g}) is {error / trivial:.3g} times that of predicting "
                    f"the mean ({trivial:.3g}). Lower learning_rate (now {self.learning_rate:g}) and "
                    "standardise the inputs (scale=True, or a StandardScaler in a Pipeline).",
                    DivergenceWarning,
                    stacklevel=5,
                )

    def _model_size(self) -> int:
        size = _quantize_module().model_size_bytes
        return int(sum(size(m) for m in (self.encoder_, self.decoder_) if m is not None))

    #: ``_scores_std`` is ``_errors`` (the VAE scores by its loss instead).
    _scores_are_errors = True

    def _scores_std(self, xs: torch.Tensor) -> torch.Tensor:
        """The anomaly score of each standardised row, higher = more anomalous (float64)."""
        return self._errors(xs)

    # ------------------------------------------------------------ public API
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the network on ``X``.

        The rows are standardised (``scale=True``), a ``validation_fraction``
        of them is held out for early stopping (``early_stopping=True``), and
        the network is trained with Adam for up to ``max_epochs`` epochs; then
        ``offset_`` is set from the training scores and ``contamination``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        X = self._validate(X, reset=True)
        self._check_params_vs_input(X.shape[1])
        rows = self._initialise(X)
        xs = self._standardise(X, rows, clip=False)
        del rows
        fraction = self.validation_fraction if self.early_stopping else 0.0
        train_idx, val_idx = split_validation(xs.shape[0], fraction, self._generator)
        if val_idx is None:
            x_train, x_val = xs, None
        else:
            x_train, x_val = xs[train_idx.to(self._device)], xs[val_idx.to(self._device)]
        self._train(x_train, X_val=x_val, max_epochs=self.max_epochs, n_iter_no_change=self.n_iter_no_change, warn=True)
        self._finish(xs, check_divergence=True)
        return self

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train one more epoch, on ``X``.

        The first call (on an unfitted estimator) builds the network and fixes
        the standardisation from that first ``X``; every call then runs one
        epoch over the given rows (no validation split), continuing the Adam
        state and the random stream, and appends to ``loss_curve_``.
        ``offset_`` is recomputed from the scores of the latest ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            A batch of training data.
        y : None
            Ignored.

        Returns
        -------
        self : object
            The estimator, trained one more epoch.
        """
        first = not hasattr(self, "encoder_")
        if not first and getattr(self, "quantized_bits_", None) is not None:
            raise ValueError(
                f"This {type(self).__name__} was quantized after training (quantize(n_bits="
                f"{self.quantized_bits_})); its int weights cannot be trained. Call partial_fit "
                "on the float model, then quantize again."
            )
        X = self._validate(X, reset=first)
        rows = None
        if first:
            self._check_params_vs_input(X.shape[1])
            rows = self._initialise(X)
        xs = self._standardise(X, rows, clip=False)
        self._train(xs, X_val=None, max_epochs=1, n_iter_no_change=2, warn=False)
        self._finish(xs)
        return self

    def transform(self, X):
        """Encode ``X``: the code of each row (the posterior mean for a VAE).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
            In the float dtype of ``X`` (float32 or float64).
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return self._map_rows(lambda xs: self._apply(self._code, xs), X, self.n_components, X.dtype)

    @available_if(_decodes_codes)
    def inverse_transform(self, X):
        """Decode codes back to the input space.

        Not available with ``skip_connections=True``: the decoder then needs
        the encoder's feature maps, which a code does not carry (use
        :meth:`reconstruct`).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Codes, as returned by :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features_in_)
            In the float dtype of the codes, in the units of the training data.
        """
        check_is_fitted(self)
        Z = check_array(X, dtype=[np.float64, np.float32])
        if Z.shape[1] != self.n_components:
            raise ValueError(
                f"X has {Z.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_components} features as input (codes of width n_components)."
            )
        out = np.empty((Z.shape[0], self.n_features_in_), dtype=Z.dtype)
        for start in range(0, Z.shape[0], _CHUNK):
            z = np.clip(Z[start : start + _CHUNK], -_CLIP, _CLIP).astype(np.float32)
            part = self._apply(self._decode, torch.from_numpy(z).to(self._device))
            out[start : start + _CHUNK] = self._unstandardise(part, Z.dtype)
        return out

    def reconstruct(self, X):
        """Encode then decode ``X``: ``inverse_transform(transform(X))`` in one pass.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        X_reconstructed : ndarray of shape (n_samples, n_features)
            In the float dtype and the units of ``X``.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        out = np.empty(X.shape, dtype=X.dtype)
        for start in range(0, X.shape[0], _CHUNK):
            part = self._apply(self._reconstruct_std, self._standardise(X[start : start + _CHUNK]))
            out[start : start + _CHUNK] = self._unstandardise(part, X.dtype)
        return out

    def reconstruction_error(self, X):
        """Per-sample reconstruction error: the mean squared error over the features.

        Measured in standardised units when ``scale=True`` (every feature
        counts alike, whatever its unit), else in the units of ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        error : ndarray of shape (n_samples,)
            float64, non-negative; larger means worse reconstructed.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return self._map_rows(self._errors, X, 0, np.float64)

    def score_samples(self, X):
        """Normality score of each row: minus its anomaly score (higher is more normal).

        As scikit-learn's outlier detectors (``IsolationForest.score_samples``).
        Deterministic: no noise, no dropout, no sampling.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            float64.
        """
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return -self._map_rows(self._scores_std, X, 0, np.float64)

    def score(self, X, y=None):
        """The mean of :meth:`score_samples` (higher is better), for model selection.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        score : float
        """
        return float(np.mean(self.score_samples(X)))

    def quantize(self, X_calibration, n_bits=8):
        """A post-training-quantized copy of this fitted estimator.

        Every ``Linear`` layer of the encoder and the decoder gets per-channel
        symmetric integer weights of ``n_bits`` bits (stored as int8), every
        ``Conv2d`` and ``ConvTranspose2d`` per output channel (per filter; the
        ``Linear`` layers next to feature maps one scale or range per map
        channel), and activation ranges calibrated by running
        ``X_calibration`` through the network: the encoder on ``X_calibration``, the decoder on the
        quantized encoder's codes of it. The copy's ``transform``,
        ``inverse_transform``, ``reconstruct`` and ``score_samples`` run the
        quantized model; its ``model_size_bytes_`` reports the smaller size.
        ``offset_`` and the training history are kept from this model.

        Parameters
        ----------
        X_calibration : array-like of shape (n_samples, n_features)
            Representative rows (a few hundred are usually enough).
        n_bits : int, default=8
            Bits of the weights and activations (2 to 8).

        Returns
        -------
        quantized : estimator of the same class
            A fitted deep copy; this estimator is left unchanged.
        """
        check_is_fitted(self)
        if not isinstance(n_bits, Integral) or isinstance(n_bits, bool) or not 2 <= n_bits <= 8:
            raise ValueError(f"n_bits must be an int in [2, 8], got {n_bits!r}.")
        if self.quantized_bits_ is not None:
            raise ValueError(f"This {type(self).__name__} is already quantized (n_bits={self.quantized_bits_}).")
        X = self._validate(X_calibration, reset=False)
        xs = self._standardise(X)
        q = _quantize_module()
        with thread_scope(self._modules(), min(xs.shape[0], _CHUNK), getattr(self, "n_jobs", None), self._profile[1]):
            encoder = q.quantize_model(self.encoder_, xs, n_bits=int(n_bits))
            encoder.eval()
            if _decodes_codes(self):
                with torch.no_grad():
                    codes = self._latent(self._split_code(encoder(xs)))
                decoder = q.quantize_model(self.decoder_, codes, n_bits=int(n_bits))
            else:  # the decoder also needs the quantized encoder's feature maps of each calibration batch

                def forward(model, xb):
                    out, skips = encoder(xb, return_skips=True)
                    return model(self._latent(self._split_code(out)), skips)

                decoder = q.quantize_model(self.decoder_, xs, n_bits=int(n_bits), forward=forward)
            decoder.eval()
        modules = {"encoder_": self.encoder_, "decoder_": self.decoder_}
        memo = {id(m): None for m in modules.values()}  # do not copy the float modules
        quantized = copy.deepcopy(self, memo)
        quantized.encoder_, quantized.decoder_ = encoder, decoder
        quantized.quantized_bits_ = int(n_bits)
        quantized._optimizer_state = None
        quantized.model_size_bytes_ = quantized._model_size()
        return quantized

    def _split_code(self, out: torch.Tensor) -> torch.Tensor:
        """The deterministic code from the encoder's raw output."""
        return out

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        for key in _MODULE_ATTRS:
            if state.get(key) is not None:
                state[key] = _module_on_cpu(state[key])
        if state.get("_optimizer_state") is not None:
            state["_optimizer_state"] = _cpu_tensors(state["_optimizer_state"])
        if "_generator" in state:
            gen, dev_gen = state.pop("_generator"), state.pop("_device_generator")
            state["_generator_states"] = (
                gen.get_state(),
                None if dev_gen is gen else dev_gen.get_state().cpu(),
            )
        state.pop("_device", None)
        return state

    def __setstate__(self, state):
        state = dict(state)
        gen_states = state.pop("_generator_states", None)
        super().__setstate__(state)
        if "device_" not in state:
            return
        device = self._device = loaded_device(self)
        for key in _MODULE_ATTRS:
            module = getattr(self, key, None)
            if module is not None:
                setattr(self, key, module.to(device))
        if "_profile" not in state and getattr(self, "encoder_", None) is not None:  # pickled before it was kept
            self._profile = self._measure_profile(self.n_features_in_)
        if gen_states is not None:
            cpu_state, dev_state = gen_states
            gen = torch.Generator(device="cpu")
            gen.set_state(cpu_state)
            if device.type == "cpu":
                dev_gen = gen
            else:
                dev_gen = torch.Generator(device=device)
                if dev_state is not None:
                    dev_gen.set_state(dev_state)
                else:
                    dev_gen.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self._generator, self._device_generator = gen, dev_gen
