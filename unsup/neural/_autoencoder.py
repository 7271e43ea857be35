"""The autoencoder: an MLP encoder and its mirrored decoder, as a transformer and an outlier detector."""

from __future__ import annotations

from unsup._dask import dask_support
from unsup.neural._base import BaseNeuralEstimator

__all__ = ["Autoencoder"]


@dask_support
class Autoencoder(BaseNeuralEstimator):
    """Autoencoder: a scikit-learn transformer and outlier detector around a torch MLP.

    The encoder maps the ``n_features`` inputs (standardised first with
    ``scale=True``) through ``hidden_layer_sizes`` to ``n_components``
    numbers, the code; the decoder mirrors it back. Training minimises the
    mean squared reconstruction error with Adam. The defaults are those of a
    dimensionality reduction, PCA's job done nonlinearly: the error in the
    units of ``X``, every row in the loss. For anomaly detection on tabular
    data, :class:`AutoencoderEnsemble` is the recommended detector. ``transform`` is the encoder, ``inverse_transform`` the decoder,
    and rows that reconstruct badly are outliers: ``score_samples`` is minus
    the reconstruction error, ``predict`` gives +1 / -1 as scikit-learn's
    ``IsolationForest``.

    =================  ===================================================
    kind               training
    =================  ===================================================
    ``undercomplete``  reconstruct the input (the code is the bottleneck)
    ``sparse``         plus ``sparsity`` x the mean absolute code (L1)
    ``denoising``      reconstruct the clean input from a corrupted one:
                       Gaussian noise of std ``noise`` (standardised units)
                       or, with ``corruption="masking"``, a fraction
                       ``noise`` of the inputs set to their mean
    =================  ===================================================

    Parameters
    ----------
    n_components : int, default=2
        Width of the code.
    hidden_layer_sizes : int or tuple of int, default=(256, 128)
        Widths of the encoder's hidden layers; the decoder uses them in
        reverse. ``()`` gives a linear autoencoder.
    activation : str, default="relu"
        Hidden activation: ``"relu"``, ``"leaky_relu"``, ``"elu"``,
        ``"gelu"``, ``"silu"``, ``"tanh"``, ``"logistic"`` (``"sigmoid"``)
        or ``"identity"``.
    architecture : {"mlp", "conv"}, default="mlp"
        ``"mlp"``: the fully connected network of ``hidden_layer_sizes``.
        ``"conv"``: a convolutional network for images (``docs/conv_autoencoder.md``):
        one block per entry of ``conv_channels`` (a convolution and the
        activation, downsampling by 2), a ``Linear`` to the code, and a
        mirrored decoder; ``hidden_layer_sizes`` is then not used, and
        ``scale=True`` standardises each channel rather than each pixel.
    image_shape : tuple of 3 int or None, default=None
        ``(C, H, W)`` of the images (``architecture="conv"``): each row of
        ``X`` is an image flattened in C order, ``C * H * W == n_features``.
        ``None``: each row is a 1-d signal, ``(1, 1, n_features)``.
    conv_channels : int or tuple of int, default=(32, 64)
        Output channels of each encoder block (``architecture="conv"``).
        The default was tuned on the digits (``benchmarks/bench_conv.py``):
        it reconstructs better than the fully connected default with half
        its parameters (51,177 against 101,192 for 8x8 images and 8
        components).
    kernel_size : int, default=3
        Side of the (odd, ``same``-padded) convolution filters.
    downsampling : {"pool", "stride"}, default="stride"
        Each encoder block halves the image with a 2x2 max-pool after its
        convolution (``"pool"``) or with a stride-2 convolution (``"stride"``).
    upsampling : {"upsample", "transpose"}, default="upsample"
        Each decoder block doubles the image with nearest-neighbour
        upsampling then a convolution (``"upsample"``) or with a stride-2
        transposed convolution (``"transpose"``); a last ``same``
        convolution outputs the image's channels. Upsampling reconstructed
        the digits better (held-out MSE 0.41-0.44 of PCA(8)'s against
        0.44-0.45 over three seeds) for more arithmetic (it convolves at
        every output pixel).
    skip_connections : bool, default=False
        U-Net style: each decoder block also receives the encoder's feature
        map of its size. They bypass the bottleneck, so the reconstruction no
        longer comes from the code alone: for denoising, not for
        dimensionality reduction. ``transform`` still returns the bottleneck
        code; ``inverse_transform`` is not available (use ``reconstruct``).
    kind : {"undercomplete", "sparse", "denoising"}, default="undercomplete"
        The training objective (table above).
    sparsity : float, default=1e-3
        Weight of the L1 penalty on the code (``kind="sparse"``).
    noise : float, default=0.2
        Corruption strength (``kind="denoising"``): the standard deviation of
        the Gaussian noise, or the fraction of inputs masked.
    corruption : {"gaussian", "masking"}, default="gaussian"
        Corruption of ``kind="denoising"``.
    dropout : float, default=0.0
        Dropout probability after every hidden activation (training only).
    batch_size : int, default=64
        Rows per gradient step.
    max_epochs : int, default=200
        Passes over the training data at most.
    learning_rate : float, default=1e-3
        Adam's step size.
    weight_decay : float, default=0.0
        Adam's L2 penalty on the weights.
    early_stopping : bool, default=True
        Hold out ``validation_fraction`` of the rows and stop when their loss
        has not improved for ``n_iter_no_change`` epochs, restoring the best
        epoch's weights. ``False``: train on all rows and stop when the
        training loss stops improving.
    validation_fraction : float, default=0.1
        Fraction of rows held out for early stopping.
    n_iter_no_change : int, default=10
        Epochs without improvement (relative 1e-4) before stopping.
    contamination : float, default=0.1
        Expected fraction of outliers in the training data, in (0, 0.5]:
        ``offset_`` is the matching percentile of the training scores.
    trim_fraction : float, default=0.0
        Fraction of each batch's rows left out of the training loss: those
        it reconstructs worst (a trimmed mean, as least trimmed squares).
        Outliers in the training data then do not teach the network to
        reconstruct them, which sharpens the anomaly scores (``0.1`` suits a
        detector trained on contaminated data). ``0`` trains on the plain
        mean, as a reduction should. The validation loss of early stopping is
        not trimmed.
    scale : bool, default=False
        Standardise the inputs with the training mean and standard deviation
        (a constant column is only centred); the reconstruction error is then
        measured in standardised units. ``False``: the inputs are only
        centred (as PCA centres them; columns spread beyond 1e12 also share
        one power-of-two divisor, so float32 cannot overflow) and the error is
        in the units of ``X``, which is right when the columns share one unit
        (pixels, embeddings, standardised features). Use ``True`` (or a
        ``StandardScaler`` first) for tabular columns in different units.
    qat : dict or None, default=None
        Quantization-aware training, e.g. ``{"n_bits": 4, "latent": True,
        "weights": True}``: fake quantization with the straight-through
        estimator on the code (``latent``) and on the ``Linear`` weights
        (``weights``). See :mod:`unsup.quantization.nn` for the keys.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to train and infer; ``"auto"`` is CUDA when available.
    n_jobs : int or None, default=None
        torch intra-op threads for training and inference (``fit``,
        ``partial_fit``, ``transform``, ``score_samples``, ...). ``None``
        chooses from the size of the work: one thread per 2**28
        multiply-adds of a step (a batch through the network), so one thread
        for the small networks of tabular data, where more threads only
        wait for each other (and far longer when other processes share the
        cores), and up to torch's own count for wide networks and batches.
        ``-1`` uses all cores, as joblib's ``n_jobs``. torch's thread
        setting is restored after every call, so the caller's process is
        left as it was.
    random_state : int, RandomState instance or None, default=None
        Seeds a ``torch.Generator`` for the initialisation, the validation
        split, the shuffling, the noise and the dropout masks. The same
        integer gives the same model on the CPU; torch's global random state
        is never used.
    verbose : int, default=0
        Print the progress of training to stdout: ``1``, the epoch, the loss
        (and validation loss), the time so far and an ETA, for the first
        and last epochs and about 20 between; ``2``, every epoch.

    Attributes
    ----------
    encoder_ : torch.nn.Sequential or ConvEncoder
        ``n_features -> hidden_layer_sizes -> n_components`` (with
        ``architecture="conv"``: convolution blocks, then a ``Linear``).
    decoder_ : torch.nn.Sequential or ConvDecoder
        ``n_components -> reversed(hidden_layer_sizes) -> n_features`` (with
        ``architecture="conv"``: a ``Linear``, then the mirrored blocks).
    latent_quantizer_ : torch.nn.Module or None
        The fake quantizer of the code (``qat`` with ``latent``), else None.
    mean_ : ndarray of shape (n_features_in_,)
        Training mean: the inputs are centred on it whatever ``scale`` says.
    scale_ : ndarray of shape (n_features_in_,)
        Training standard deviation, 1 for constant columns; with
        ``scale=False`` ones (or one common power of two for columns spread
        beyond 1e12).
    loss_curve_ : list of float
        Mean training loss of each epoch.
    validation_scores_ : list of float
        Minus the validation loss of each epoch (empty without early stopping).
    best_loss_ : float
        Least monitored loss: the validation loss with early stopping, else
        the training loss.
    n_iter_ : int
        Epochs run (``partial_fit`` adds one per call).
    offset_ : float
        ``decision_function = score_samples - offset_``.
    model_size_bytes_ : int
        Bytes of the encoder's and decoder's parameters and buffers.
    quantized_bits_ : int or None
        Bits of the weights after :meth:`quantize`, else None.
    device_ : str
        The device the model lives on.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    See Also
    --------
    VariationalAutoencoder : the probabilistic version, with ``sample``.
    sklearn.decomposition.PCA : the linear baseline.
    sklearn.ensemble.IsolationForest : the same outlier contract.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.neural import Autoencoder
    >>> rng = np.random.default_rng(0)
    >>> X = rng.standard_normal((200, 2)) @ rng.standard_normal((2, 6))
    >>> ae = Autoencoder(n_components=2, hidden_layer_sizes=(16,), max_epochs=20,
    ...                  random_state=0).fit(X)
    >>> ae.transform(X).shape
    (200, 2)
    >>> ae.reconstruct(X).shape
    (200, 6)
    >>> sorted(set(ae.predict(X).tolist()))
    [-1, 1]
    """

    def __init__(
        self,
        n_components=2,
        *,
        hidden_layer_sizes=(256, 128),
        activation="relu",
        architecture="mlp",
        image_shape=None,
        conv_channels=(32, 64),
        kernel_size=3,
        downsampling="stride",
        upsampling="upsample",
        skip_connections=False,
        kind="undercomplete",
        sparsity=1e-3,
        noise=0.2,
        corruption="gaussian",
        dropout=0.0,
        batch_size=64,
        max_epochs=200,
        learning_rate=1e-3,
        weight_decay=0.0,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        contamination=0.1,
        trim_fraction=0.0,
        scale=False,
        qat=None,
        device="cpu",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_components = n_components
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.architecture = architecture
        self.image_shape = image_shape
        self.conv_channels = conv_channels
        self.kernel_size = kernel_size
        self.downsampling = downsampling
        self.upsampling = upsampling
        self.skip_connections = skip_connections
        self.kind = kind
        self.sparsity = sparsity
        self.noise = noise
        self.corruption = corruption
        self.dropout = dropout
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.contamination = contamination
        self.trim_fraction = trim_fraction
        self.scale = scale
        self.qat = qat
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def _encoder_width(self):
        return self.n_components

    def _code(self, xs):
        return self._latent(self.encoder_(xs))

    def _batch_loss(self, xb):
        z, skips = self._encode(self._corrupt(xb))
        diff = self._decode(self._latent(z), skips) - xb
        return self._trimmed_mean((diff * diff).mean(dim=1)) + self._sparsity_penalty(z)

    def _sample_loss(self, xs):
        diff = self._reconstruct_std(xs) - xs
        return (diff * diff).mean(dim=1)

