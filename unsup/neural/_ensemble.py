"""An ensemble of small autoencoders as an outlier detector (RandNet-style).

Design constraints
------------------
- The score stays a reconstruction error: each member is an autoencoder
  (``n_features -> hidden -> code -> hidden -> n_features``) and a row's
  anomaly score is the mean over members of its standardised reconstruction
  error (Chen et al., "Outlier detection with autoencoder ensembles", SDM
  2017: members with varied inputs, scores standardised before averaging).
  Standardised per feature: each squared residual is divided by the member's
  median squared residual of that feature on the training rows, so a
  feature the member rebuilds well weighs more than one it rebuilds poorly
  (as the weighted PCA detector of Shyu et al. 2003 divides each principal
  direction by its variance). Measured on the 23 ADBench datasets this lifts
  the mean ROC AUC by 0.007 over one scale per member at equal training.
- Robust standardised errors. A feature's scale is floored at a tenth of
  the member's median scale over its features: a column that is nearly
  always 0 (an edge pixel of optdigits) is rebuilt almost exactly on most
  rows, and its rare ordinary values would otherwise weigh thousands of
  times a typical residual (optdigits' ROC AUC 0.38 without the floor, 0.53
  with it). Above five typical residuals a feature's standardised error
  counts logarithmically (``5 * (1 + log(z / 5))``): a row stands out by
  being off in several features rather than wildly off in one (celeba,
  campaign, skin gain most). Measured at equal training on the 23 ADBench
  datasets, seeds 0-2: mean ROC AUC 0.7923 -> 0.7995 (floor) -> 0.8025
  (floor and knee).
- Members differ by their random rows (each trains on ``max_samples`` rows
  drawn afresh every epoch, as ``IsolationForest`` subsamples: outliers are
  rarely seen twice, so they are not learnt, and the cost does not grow with
  ``n_samples``), their random feature subsets and initialisations.
- Trimmed training (``trim_fraction=0.2``): each member's loss on a batch is
  the mean over the 80 % of its rows it rebuilds best, so the rows that
  stand out, the likely outliers, give it no gradient (as the single
  networks' ``trim_fraction``). Measured on the 23 ADBench datasets, seeds
  0-2: mean ROC AUC 0.7905 untrimmed, 0.7947 at 0.2 (0.7817 at 0.05, 0.7877
  at 0.1, 0.7922 at 0.3, 0.7929 at 0.4).
- Small on purpose: a one-unit code and 16 hidden units per member, 20
  epochs of 1,024 rows. Measured on the 23 ADBench datasets, more capacity
  (wider codes, 64 hidden units, 50 epochs) lets the members rebuild the
  anomalies too and lowers the mean ROC AUC (``docs/anomaly_detection.md``);
  more steps of the small members raised it: 1,024 rows an epoch rather
  than 256 by 0.010, then 20 epochs rather than 10, with the robust
  scores above, by 0.002 (0.8025 -> 0.8048; a two-unit code 0.7972, 32
  hidden units 0.8031 at 10 epochs).
- All members train at once as one batched network (``torch.baddbmm`` over
  stacked weights), so an ensemble costs about as much as one wide network.
- Scores are per row (batch-independent: chunks padded to a multiple of 16
  rows), deterministic, finite for finite inputs (standardised values are
  clipped to +-``_CLIP``, errors summed in float64), and a row whose score
  cannot be computed is called an outlier.
- All randomness from ``random_state`` through a ``torch.Generator``; torch's
  global random state is never touched, and its thread count is restored
  after training and scoring (``n_jobs``, as the other neural estimators).
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from unsup._dask import dask_support
from unsup._sklearn_adapter import Interval, StrOptions, fit_context
from unsup.neural._modules import ACTIVATIONS, DEVICES, loaded_device, resolve_device
from unsup.neural._outlier import ScoreOffsetOutlierMixin
from unsup.neural._training import EpochProgress, make_adam
from unsup.utils._threads import torch_n_threads, torch_threads

__all__ = ["AutoencoderEnsemble"]

#: Standardised values are clipped to this magnitude (finite squares in float32 sums of float64).
_CLIP = 1e6
#: Inference chunks are padded to a multiple of this many rows (batch-independent outputs).
_ROW_MULTIPLE = 16
#: Bound on the elements of one inference chunk's reconstruction (members x rows x features).
_CHUNK_ELEMENTS = 1 << 22
#: Rows whose member errors set each member's standardisation.
_REFERENCE_ROWS = 4096
#: A feature's scale is at least this fraction of the member's median scale over its features.
_SCALE_FLOOR = 0.1
#: Standardised squared residuals above this many typical ones count logarithmically.
_KNEE = 5.0


def _compressed(z, knee):
    """``z`` (standardised squared residuals, >= 0) up to ``knee``, ``knee * (1 + log(z / knee))`` above it.

    Continuous with a continuous slope, increasing, and finite for finite
    ``z``: one feature rebuilt thousands of times worse than usual counts as
    a few typical features, not as thousands of them. ``knee=None``: ``z``.
    """
    if knee is None:
        return z
    return torch.where(z > knee, knee * (1.0 + torch.log(torch.clamp(z, min=knee) / knee)), z)


def _member_masks(n_features, n_estimators, max_features, generator):
    """Feature masks (n_estimators, n_features) of float32 0/1: each member a random subset."""
    masks = torch.zeros((n_estimators, n_features))
    for e in range(n_estimators):
        if max_features >= 1.0 or n_features < 3:
            k = n_features
        else:
            low = max(2, int(math.ceil(max_features * n_features)))
            k = int(torch.randint(low, n_features + 1, (1,), generator=generator))
        cols = torch.randperm(n_features, generator=generator)[:k]
        masks[e, cols] = 1.0
    return masks


@dask_support
class AutoencoderEnsemble(ScoreOffsetOutlierMixin, BaseEstimator):
    """Ensemble of small autoencoders: the recommended reconstruction-error outlier detector.

    Each of ``n_estimators`` small autoencoders sees a random subset of the
    (standardised) features and trains on ``max_samples`` rows drawn afresh
    at every epoch, leaving out of its loss the ``trim_fraction`` of each
    batch it rebuilds worst. A row's anomaly score is its standardised reconstruction
    error under each member (the mean over the member's features of the
    squared residual divided by ``error_scale_``, that member's typical
    squared residual of the feature on the training rows, and counted
    logarithmically above 5), averaged over members (RandNet, Chen et
    al. 2017, with robust per-feature standardisation). ``score_samples`` is minus
    that score, and ``predict`` gives +1 / -1 with scikit-learn's outlier
    contract.

    Parameters
    ----------
    n_estimators : int, default=32
        Number of autoencoders.
    max_samples : int, default=1024
        Rows each member trains on per epoch (all rows when fewer).
    max_features : float, default=0.5
        Each member keeps a random number of features between
        ``ceil(max_features * n_features)`` and ``n_features``; ``1.0`` gives
        every member all features.
    n_components : int, default=1
        Code width of each member.
    hidden_size : int, default=16
        Width of each member's hidden layer (one before and one after the code).
    max_epochs : int, default=20
        Epochs per member (each epoch: ``max_samples`` fresh rows, in batches
        of ``batch_size``).
    batch_size : int, default=64
        Rows per gradient step of each member.
    learning_rate : float, default=3e-3
        Adam's step size.
    activation : str, default="relu"
        Hidden activation (as :class:`Autoencoder`).
    trim_fraction : float, default=0.2
        Fraction of each batch's rows left out of each member's training
        loss: those the member reconstructs worst (a trimmed mean, as
        :class:`Autoencoder`'s ``trim_fraction``). Outliers in the training
        rows then do not teach the members to reconstruct them. ``0`` trains
        on the plain mean.
    contamination : float, default=0.1
        Expected fraction of outliers in the training data, in (0, 0.5]:
        ``offset_`` is the matching percentile of the training scores.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where to train and infer.
    n_jobs : int or None, default=None
        torch intra-op threads for training and scoring, as
        :class:`Autoencoder`'s (``None``: chosen from the size of a step,
        one thread for the default ensemble; the caller's setting is
        restored after every call).
    random_state : int, RandomState instance or None, default=None
        Seeds the rows, features and initial weights of the members.
    verbose : int, default=0
        Print the progress of training to stdout, as :class:`Autoencoder`'s
        (epoch, mean loss of the members, time so far, ETA).

    Attributes
    ----------
    mean_, scale_ : ndarray of shape (n_features_in_,)
        Training mean and standard deviation (1 for constant columns).
    feature_masks_ : ndarray of shape (n_estimators, n_features_in_)
        Which features each member sees (bool).
    error_scale_ : ndarray of shape (n_estimators, n_features_in_)
        Median squared residual of each member on each of its features over
        (up to 4096 of) the training rows, at least a tenth of the member's
        median of them over its features (1 for features the member does not
        see): the squared residuals are divided by it, so every member and
        every feature counts alike on a typical training row.
    offset_ : float
        ``decision_function = score_samples - offset_``.
    n_iter_ : int
        Epochs run (``partial_fit`` adds one per call).
    device_ : str
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    See Also
    --------
    Autoencoder : one autoencoder (a transformer too).
    sklearn.ensemble.IsolationForest : the same outlier contract.

    Examples
    --------
    >>> import numpy as np
    >>> from unsup.neural import AutoencoderEnsemble
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.standard_normal((200, 2)) @ rng.standard_normal((2, 6)),
    ...                rng.uniform(-8, 8, (5, 6))])
    >>> det = AutoencoderEnsemble(contamination=0.05, random_state=0).fit(X)
    >>> det.score_samples(X).shape
    (205,)
    >>> bool((det.predict(X)[200:] == -1).all())
    True
    """

    _parameter_constraints: dict = {
        "n_estimators": [Interval(Integral, 1, None, closed="left")],
        "max_samples": [Interval(Integral, 1, None, closed="left")],
        "max_features": [Interval(Real, 0, 1, closed="right")],
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "hidden_size": [Interval(Integral, 1, None, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "trim_fraction": [Interval(Real, 0, 0.5, closed="both")],
        "contamination": [Interval(Real, 0, 0.5, closed="right")],
        "device": [StrOptions(set(DEVICES))],
        "n_jobs": [Interval(Integral, None, -1, closed="right"), Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        n_estimators=32,
        *,
        max_samples=1024,
        max_features=0.5,
        n_components=1,
        hidden_size=16,
        max_epochs=20,
        batch_size=64,
        learning_rate=3e-3,
        activation="relu",
        trim_fraction=0.2,
        contamination=0.1,
        device="cpu",
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.n_components = n_components
        self.hidden_size = hidden_size
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.activation = activation
        self.trim_fraction = trim_fraction
        self.contamination = contamination
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    # ------------------------------------------------------------ helpers
    def _standardise(self, X) -> torch.Tensor:
        """Rows of ``X`` standardised (float64 arithmetic), clipped to +-_CLIP, as float32."""
        out = (np.asarray(X, dtype=np.float64) - self.mean_) / self.scale_
        np.clip(out, -_CLIP, _CLIP, out=out)
        out[np.isnan(out)] = _CLIP  # only from inf - inf: an extreme value
        return torch.from_numpy(out.astype(np.float32)).to(self._device)

    def _initialise(self, X):
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self._device = resolve_device(self.device)
        self.device_ = str(self._device)
        self._generator = torch.Generator(device="cpu").manual_seed(seed)
        n, d = X.shape
        mean = X.mean(axis=0, dtype=np.float64)
        scale = X.std(axis=0, dtype=np.float64)
        mean, scale = np.nan_to_num(mean), np.nan_to_num(scale, posinf=1.0)
        scale[~(scale > 1e-12 * np.maximum(1.0, np.abs(mean)))] = 1.0
        self.mean_, self.scale_ = mean, scale
        g, E, h = self._generator, self.n_estimators, self.hidden_size
        masks = _member_masks(d, E, self.max_features, g)
        n_feat = masks.sum(dim=1)
        k = self.n_components

        def layer(n_in, n_out):
            bound = 1.0 / math.sqrt(n_in)
            w = (torch.rand((E, n_in, n_out), generator=g) * 2 - 1) * bound
            b = (torch.rand((E, 1, n_out), generator=g) * 2 - 1) * bound
            return w, b

        params = [*layer(d, h), *layer(h, k), *layer(k, h), *layer(h, d)]
        # every member's first layer sees only its features (fan-in of its own subset)
        params[0] = params[0] * masks[:, :, None] * torch.sqrt(d / n_feat)[:, None, None]
        self._params = [p.to(self._device).requires_grad_(True) for p in params]
        self._input_mask = masks.to(self._device)
        self._optimizer = make_adam(self._params, self.learning_rate, 0.0)
        self.feature_masks_ = masks.numpy().astype(bool)
        self.n_iter_ = 0
        self.loss_curve_ = []

    def _forward(self, x, members=slice(None)):
        """Reconstructions (E, m, d) of rows ``x`` (E, m, d) or (m, d) by the ``members`` (all by default)."""
        w1, b1, w2, b2, w3, b3, w4, b4 = (p[members] for p in self._params)
        act = ACTIVATIONS[self.activation]()
        w1 = w1 * self._input_mask[members, :, None]
        hid = act(torch.baddbmm(b1, x, w1) if x.dim() == 3 else torch.matmul(x, w1) + b1)
        code = torch.baddbmm(b2, hid, w2)
        hid = act(torch.baddbmm(b3, code, w3))
        return torch.baddbmm(b4, hid, w4)

    def _member_errors(self, x, recon):
        """Mean squared error of each member over its features: (E, m), float32."""
        diff = (recon - x) * self._input_mask[:, None, :]
        return (diff * diff).sum(dim=2) / self._input_mask.sum(dim=1)[:, None]

    def _threads(self, rows):
        """:func:`torch_threads` for passes of ``rows`` rows through every member (``n_jobs``)."""
        d, h, k = self._input_mask.shape[1], self.hidden_size, self.n_components
        work = self.n_estimators * rows * (2 * d * h + 2 * h * k)
        return torch_threads(torch_n_threads(getattr(self, "n_jobs", None), work))

    def _epoch(self, xs):
        """One epoch: every member draws ``max_samples`` rows and takes batches of them."""
        n = xs.shape[0]
        m = min(n, self.max_samples)
        E = self.n_estimators
        rows = torch.stack([torch.randperm(n, generator=self._generator)[:m] for _ in range(E)]).to(self._device)
        total = 0.0
        for start in range(0, m, self.batch_size):
            xb = xs[rows[:, start : start + self.batch_size]]  # (E, batch, d): gathered a batch at a time
            loss = self._trimmed_mean(self._member_errors(xb, self._forward(xb))).sum()
            self._optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._optimizer.step()
            total += float(loss.detach()) * xb.shape[1]
        loss = total / (m * E)
        if not math.isfinite(loss):
            raise ValueError(
                f"AutoencoderEnsemble: the training loss became {loss} at epoch {self.n_iter_ + 1}. "
                f"Training diverged: lower learning_rate (now {self.learning_rate:g})."
            )
        self.loss_curve_.append(loss)
        self.n_iter_ += 1

    def _trimmed_mean(self, errors):
        """Each member's mean of its ``1 - trim_fraction`` smallest errors of a batch (at least one row): (E,).

        As :class:`Autoencoder`'s ``trim_fraction``, member by member: the rows
        a member rebuilds worst, the likely outliers, give it no gradient.
        """
        n = errors.shape[1]
        keep = max(1, math.ceil((1.0 - self.trim_fraction) * n - 1e-9))
        if keep >= n:
            return errors.mean(dim=1)
        return torch.topk(errors, keep, dim=1, largest=False, sorted=False).values.mean(dim=1)

    def _member_errors_all(self, xs):
        """Each member's standardised reconstruction error of each row: (n, E) float64 numpy, finite.

        A member's error of a row is the mean over the member's features of
        the squared residual divided by ``error_scale_`` (that member's typical
        squared residual of the feature on the training rows), compressed
        logarithmically above ``_KNEE`` (:func:`_compressed`).
        """
        n, d = xs.shape
        E = self.n_estimators
        step = max(_ROW_MULTIPLE, (_CHUNK_ELEMENTS // max(1, E * d)) // _ROW_MULTIPLE * _ROW_MULTIPLE)
        out = np.empty((n, E))
        weight = self._input_mask.double() / torch.from_numpy(self.error_scale_).to(self._input_mask.device)
        weight = weight[:, None, :]  # 1 / scale on the member's features, 0 elsewhere
        n_feat = self._input_mask.sum(dim=1)[:, None].double()
        knee = getattr(self, "_knee", None)
        with torch.no_grad(), self._threads(min(n, step)):
            for start in range(0, n, step):
                block = xs[start : start + step]
                m = block.shape[0]
                pad = (-m) % _ROW_MULTIPLE
                if pad:
                    block = torch.cat([block, block.new_zeros((pad, d))])
                diff = self._forward(block).double() - block.double()
                err = _compressed(diff * diff * weight, knee).sum(dim=2) / n_feat
                out[start : start + m] = err[:, :m].T.cpu().numpy()
        return out

    def _feature_scales(self, xs):
        """Typical squared residual of every member on every feature over rows ``xs``: (E, d) float64.

        The median over the rows, floored at ``_SCALE_FLOOR`` times the
        member's median of those medians over its features: a feature the
        member rebuilds almost exactly on most rows (a column that is nearly
        always 0) would otherwise turn its rare ordinary values into
        enormous standardised errors. One member at a time, so the residuals
        held are (rows, features), not (members, rows, features); features a
        member does not see get 1.
        """
        E, d = self._input_mask.shape
        scales = np.ones((E, d))
        with torch.no_grad(), self._threads(xs.shape[0]):
            for e in range(E):
                cols = self._input_mask[e].bool()
                diff = (self._forward(xs, slice(e, e + 1))[0].double() - xs.double())[:, cols]
                med = np.median((diff * diff).cpu().numpy(), axis=0)
                scales[e, cols.cpu().numpy()] = np.maximum(med, _SCALE_FLOOR * np.median(med))
        return np.maximum(scales, 1e-12)

    def _raw_scores(self, xs):
        """Anomaly score (higher = more anomalous): mean over members of their standardised errors."""
        return self._member_errors_all(xs).mean(axis=1)

    def _finish(self, xs):
        n = xs.shape[0]
        g = torch.Generator().manual_seed(int(self.n_iter_))
        ref = xs if n <= _REFERENCE_ROWS else xs[torch.randperm(n, generator=g)[:_REFERENCE_ROWS].to(xs.device)]
        self.error_scale_ = self._feature_scales(ref)
        self._knee = _KNEE
        scores = -self._raw_scores(xs)
        self.offset_ = float(np.percentile(scores, 100.0 * self.contamination))

    # ------------------------------------------------------------ public API
    @fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Train the members on ``X`` and set each member's standardisation and ``offset_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data.
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=True)
        self._initialise(X)
        xs = self._standardise(X)
        progress = EpochProgress(type(self).__name__, self.max_epochs, self.verbose)
        with self._threads(min(self.batch_size, self.max_samples, xs.shape[0])):
            for _ in range(self.max_epochs):
                self._epoch(xs)
                progress.epoch(self.n_iter_, self.loss_curve_[-1])
        self._finish(xs)
        return self

    @fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y=None):
        """Train every member one more epoch on rows of ``X``.

        The first call fixes the standardisation and builds the members;
        each call then runs one epoch (``max_samples`` rows per member drawn
        from ``X``) and recomputes the members' standardisation and
        ``offset_`` from ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.

        Returns
        -------
        self : object
        """
        first = not hasattr(self, "_params")
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=first)
        if first:
            self._initialise(X)
        xs = self._standardise(X)
        with self._threads(min(self.batch_size, self.max_samples, xs.shape[0])):
            self._epoch(xs)
        self._finish(xs)
        return self

    def score_samples(self, X):
        """Minus the anomaly score: higher is more normal (as ``IsolationForest.score_samples``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        scores : ndarray of shape (n_samples,)
            float64, finite for finite ``X``.
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return -self._raw_scores(self._standardise(X))

    # ------------------------------------------------------------ pickling
    def __getstate__(self):
        state = dict(super().__getstate__())
        if "_params" in state:
            state["_params"] = [p.detach().cpu() for p in state["_params"]]
            state["_optimizer"] = self._optimizer.state_dict()
            state["_input_mask"] = self._input_mask.cpu()
            state["_generator"] = self._generator.get_state()
            state.pop("_device", None)
        return state

    def __setstate__(self, state):
        state = dict(state)
        state.setdefault("trim_fraction", 0.0)  # pickled before the parameter: trained untrimmed
        super().__setstate__(state)
        if "_params" not in state:
            return
        # pickled before the floor and the knee: no "_knee" in the state, so the scores stay as they were
        if np.ndim(self.error_scale_) == 1:  # pickled by an earlier version: one scale per member, same scores
            self.error_scale_ = np.repeat(self.error_scale_[:, None], self.n_features_in_, axis=1)
        device = self._device = loaded_device(self)
        self._params = [p.to(device).requires_grad_(True) for p in self._params]
        self._input_mask = self._input_mask.to(device)
        optimizer_state = self._optimizer
        self._optimizer = make_adam(self._params, self.learning_rate, 0.0)
        self._optimizer.load_state_dict(optimizer_state)
        gen = torch.Generator(device="cpu")
        gen.set_state(state["_generator"])
        self._generator = gen
