"""The one training loop shared by the neural estimators.

Design constraints
------------------
- Model-agnostic: the loop sees a list of modules, a function giving the mean
  loss of a training batch and (optionally) one giving the per-sample loss of
  a validation set. ``Autoencoder``, ``VariationalAutoencoder`` and later
  models differ only in those two functions.
- Fast: the data is one tensor already on the device; each epoch gathers it
  once in shuffled order and takes contiguous slices (no per-batch indexing,
  no numpy conversion, no host synchronisation per batch: the epoch loss is
  accumulated on the device and read once per epoch). A row source that is
  not one tensor (the blocks of a dask array) gives each epoch's rows in
  chunks instead (:class:`ShuffledRows` is the in-memory one).
- Small parts: :class:`TrainConfig` (the parameters), :class:`TrainState`
  (where to continue from), :class:`EarlyStopping` (when to stop, the best
  weights).
- All randomness (the validation split, the shuffling) from the generator it
  is given; never torch's global stream.
- A loss that becomes NaN or infinite stops training with an error that names
  the epoch and what to change, instead of silently returning NaN weights.
- Early stopping as scikit-learn's MLP: stop when the monitored loss (on the
  validation set when there is one, else the training loss) has not improved
  by a relative ``tol`` for ``n_iter_no_change`` epochs; with a validation set
  the weights of the best epoch are restored.
- Threads: the loop runs with the torch intra-op threads chosen for the size
  of a step (:func:`thread_scope`: one for small networks), and leaves the
  caller's thread count as it found it.
- Progress: every epoch goes to :class:`EpochProgress`, which prints
  ``verbose`` lines to stdout (as scikit-learn's verbose estimators) and hands
  each epoch to the listener set by :func:`listen_to_epochs` (the command
  line's progress bar).
- The one ``ConvergenceWarning`` about ``max_epochs`` comes from
  :func:`warn_max_epochs_reached`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from sklearn.exceptions import ConvergenceWarning

from unsup.neural._modules import seed_dropout
from unsup.utils._threads import torch_n_threads, torch_threads

__all__ = [
    "DivergenceWarning",
    "EarlyStopping",
    "EpochProgress",
    "ShuffledRows",
    "TOL",
    "TrainConfig",
    "TrainState",
    "TrainingResult",
    "listen_to_epochs",
    "make_adam",
    "split_validation",
    "thread_scope",
    "train",
    "warn_max_epochs_reached",
]

#: Relative improvement of the monitored loss that counts as progress.
TOL = 1e-4

#: Rows per forward pass when evaluating a validation set (bounds memory).
EVAL_CHUNK = 4096


class DivergenceWarning(ConvergenceWarning):
    """A fit ended far worse than the trivial model (predicting the mean): training diverged.

    A subclass of scikit-learn's ``ConvergenceWarning``, so filters on that
    class catch it too.
    """


def warn_max_epochs_reached(name: str, max_epochs: int, *, stacklevel: int) -> None:
    """The ``ConvergenceWarning`` of a fit that ran out of ``max_epochs`` while its loss still improved.

    The one place it is raised. The estimators raise it at most once per
    ``fit``, and only with ``early_stopping=True``: early stopping was asked
    to end the training and did not. With ``early_stopping=False``,
    ``max_epochs`` is the training budget the user chose (a grid search over
    short fits stays quiet); ``partial_fit`` never warns.
    """
    warnings.warn(
        f"{name}: the maximum number of epochs ({max_epochs}) was reached and the "
        "loss is still improving; increase max_epochs (or set early_stopping=False "
        "to train for max_epochs on purpose).",
        ConvergenceWarning,
        stacklevel=stacklevel + 1,
    )


def thread_scope(modules, rows: int, n_jobs=None, per_row: int | None = None):
    """:func:`~unsup.utils._threads.torch_threads` for passes of ``rows`` rows through ``modules``.

    The work of a pass is ``rows`` times the multiply-adds of one row,
    ``per_row`` (see :func:`forward_profile`); without it, the elements of
    every weight matrix of ``modules``, which are the multiply-adds of a fully
    connected network and a lower bound for a convolutional one. ``n_jobs``
    as the estimators' parameter (``None``: chosen from the work).
    """
    if per_row is None:
        per_row = sum(p.numel() for m in modules if m is not None for p in m.parameters() if p.dim() >= 2)
    return torch_threads(torch_n_threads(n_jobs, rows * per_row))


def forward_profile(modules, forward) -> tuple[int, int]:
    """The widest activation and the multiply-adds of the forward pass ``forward()`` through ``modules``.

    Called with a one-row pass, these are a row's: the widest activation
    sizes inference chunks, the multiply-adds choose torch's threads
    (:func:`thread_scope`). A layer's multiply-adds are the elements of its
    weight tensors (parameters or buffers of two or more dimensions, so
    quantized layers' int8 codes count) times the positions the weight meets:
    one for a fully connected layer, the output's pixels for a convolution,
    the input's for a transposed one. ``forward`` runs under
    ``torch.no_grad()`` with every submodule in eval mode (no dropout draw, no
    observer update: nothing of a fit changes); their modes are restored.
    """
    widest = macs = 0

    def hook(module, inputs, output):
        nonlocal widest, macs
        outs = [t for t in (output if isinstance(output, (tuple, list)) else (output,)) if isinstance(t, torch.Tensor)]
        # inputs too: a tensor built between modules (a skip connection's concatenation) is one's input
        widest = max([widest] + [t.numel() for t in (*outs, *inputs) if isinstance(t, torch.Tensor)])
        own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
        weights = sum(t.numel() for t in own if t is not None and t.dim() >= 2)
        if not weights or not outs:
            return
        ref = inputs[0] if "Transpose" in type(module).__name__ and inputs else outs[0]
        positions = ref[0].numel() // ref.shape[1] if ref.dim() > 2 else 1
        macs += weights * positions

    subs = [m for module in modules if module is not None for m in module.modules()]
    modes = [m.training for m in subs]
    handles = [m.register_forward_hook(hook) for m in subs]
    try:
        for m in subs:
            m.training = False
        with torch.no_grad():
            forward()
    finally:
        for h in handles:
            h.remove()
        for m, mode in zip(subs, modes):
            m.training = mode
    return widest, macs


_LISTENER: contextvars.ContextVar = contextvars.ContextVar("unsup_epoch_listener", default=None)


@contextlib.contextmanager
def listen_to_epochs(listener: Callable[[dict], None]):
    """Hand every training epoch run inside the block (in this thread or context) to ``listener``.

    ``listener`` gets a dict with ``name``, ``epoch``, ``total`` (the epochs
    of this fit at most; ``partial_fit`` reports none), ``loss``,
    ``validation_loss`` (or None), ``elapsed`` and ``eta`` (seconds to
    ``total`` at the mean epoch time so far; None without a total).
    """
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


class EpochProgress:
    """Reports the epochs of one training call: lines on stdout with ``verbose``, and the listener.

    With ``verbose=1`` a line for the first and the last epoch and for about
    20 epochs between (every one when there are at most 20); ``verbose >= 2``
    every epoch. A line reads
    ``Autoencoder: epoch 12/200: loss 0.4123, validation loss 0.4410; 0.31 s, ETA 4.9 s``:
    the ETA is the time to ``total`` epochs at the mean epoch time so far,
    an upper bound when early stopping ends the fit sooner.

    Parameters
    ----------
    name : str
        The estimator's name.
    total : int or None
        Epochs of this fit at most (None: unknown, as in ``partial_fit``).
    verbose : int
        The estimator's ``verbose``.
    first_epoch : int, default=1
        Number of the first epoch of this call.
    """

    def __init__(self, name: str, total: int | None, verbose: int, first_epoch: int = 1):
        self.name, self.total, self.verbose = name, total, int(verbose or 0)
        self.first_epoch = first_epoch
        self.listener = _LISTENER.get() if total else None  # a fit's epochs, not partial_fit's or a block's
        self.every = 1 if self.verbose >= 2 or not total else max(1, math.ceil(total / 20))
        self.t0 = time.perf_counter()

    @staticmethod
    def format(info: dict) -> str:
        """The line of one epoch."""
        epoch = f"{info['epoch']}/{info['total']}" if info["total"] else str(info["epoch"])
        line = f"{info['name']}: epoch {epoch}: loss {info['loss']:.6g}"
        if info["validation_loss"] is not None:
            line += f", validation loss {info['validation_loss']:.6g}"
        line += f"; {info['elapsed']:.2f} s"
        if info["eta"] is not None:
            line += f", ETA {info['eta']:.1f} s"
        return line

    def epoch(self, epoch: int, loss: float, validation_loss: float | None = None) -> None:
        """Report the end of ``epoch``."""
        if not self.verbose and self.listener is None:
            return
        elapsed = time.perf_counter() - self.t0
        done = epoch - self.first_epoch + 1
        eta = None
        if self.total:
            eta = elapsed / done * max(0, self.total - epoch)
        info = {
            "name": self.name, "epoch": epoch, "total": self.total, "loss": loss,
            "validation_loss": validation_loss, "elapsed": elapsed, "eta": eta,
        }
        if self.listener is not None:
            self.listener(info)
        if self.verbose and (done == 1 or epoch % self.every == 0 or epoch == self.total):
            print(self.format(info), file=sys.stdout, flush=True)

    def note(self, text: str) -> None:
        """A line of its own with ``verbose`` (why training stopped)."""
        if self.verbose:
            print(f"{self.name}: {text}", file=sys.stdout, flush=True)


@dataclass
class TrainingResult:
    """What one call of :func:`train` did.

    Attributes
    ----------
    loss_curve : list of float
        Mean training loss of each epoch run.
    validation_scores : list of float
        Minus the mean validation loss of each epoch (higher is better, as
        scikit-learn's ``validation_scores_``); empty without a validation set.
    best_loss : float
        The least monitored loss (validation loss with a validation set, else
        training loss).
    n_epochs : int
        Epochs run.
    converged : bool
        Whether training stopped because the loss stopped improving.
    optimizer_state : dict
        The optimizer's ``state_dict`` at the end (to continue with ``partial_fit``).
    """

    loss_curve: list = field(default_factory=list)
    validation_scores: list = field(default_factory=list)
    best_loss: float = math.inf
    n_epochs: int = 0
    converged: bool = False
    optimizer_state: dict | None = None


def split_validation(n_samples: int, fraction: float, generator: torch.Generator):
    """Random train / validation row indices (CPU ``int64`` tensors) from ``generator``.

    The validation set has ``ceil(fraction * n_samples)`` rows, as
    ``train_test_split(test_size=fraction)``; ``None`` for it when that would
    leave no row to train on (or ``fraction == 0``).
    """
    n_val = math.ceil(fraction * n_samples) if fraction > 0 else 0
    if n_val < 1 or n_samples - n_val < 1:
        return torch.arange(n_samples), None
    perm = torch.randperm(n_samples, generator=generator)
    return perm[n_val:], perm[:n_val]


def make_adam(params, learning_rate: float, weight_decay: float) -> torch.optim.Adam:
    """Adam, with the fused kernel where this torch has one for the parameters' device.

    The fused step updates every tensor in one kernel: for the small networks
    of tabular data the optimiser step otherwise costs as much as the forward
    and backward passes (about 1.5x faster per step on a CPU).
    """
    try:
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError, ValueError):  # torch < 2.4 on CPU, or an unsupported device
        return torch.optim.Adam(params, lr=learning_rate, weight_decay=weight_decay)


def _mean_eval_loss(sample_loss, X_val: torch.Tensor, rows: int) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64, device=X_val.device)
    for start in range(0, X_val.shape[0], rows):
        total += sample_loss(X_val[start : start + rows]).sum(dtype=torch.float64)
    return total / X_val.shape[0]


def _non_finite_error(what: str, value: float, epoch: int, name: str, learning_rate: float) -> ValueError:
    return ValueError(
        f"{name}: the {what} became {value} at epoch {epoch}. Training diverged: "
        f"lower learning_rate (now {learning_rate:g}), standardise the inputs "
        "(scale=True, or a StandardScaler in a Pipeline), or check X for values "
        "of very different magnitudes."
    )


@dataclass(frozen=True)
class TrainConfig:
    """How :func:`train` trains: the training parameters of a neural estimator, in one object.

    Attributes
    ----------
    batch_size : int
        Rows per gradient step (the last batch of a chunk may be smaller).
    max_epochs : int
        Passes over the rows at most.
    n_iter_no_change : int
        Epochs without a relative improvement of ``TOL`` before stopping.
    learning_rate, weight_decay : float
        Of the Adam optimizer (``weight_decay`` as ``torch.optim.Adam``'s L2 term).
    n_jobs : int or None, default=None
        torch intra-op threads for the loop (:func:`thread_scope`, with
        ``batch_size`` rows a step); the caller's count is restored after.
    verbose : int, default=0
        Print the epochs' loss, validation loss, time and ETA to stdout
        (:class:`EpochProgress`).
    name : str, default="model"
        Name used in messages.
    total_epochs : int or None, default=-1
        The epoch count progress reports show (``epoch i/total``): ``-1``
        means the epochs run before plus ``max_epochs``; None shows none
        (``partial_fit``).
    eval_rows : int, default=EVAL_CHUNK
        Rows per forward pass of the validation loss. :meth:`of` sizes it to
        the estimator's network (``BaseNeuralEstimator._forward_rows``).
    work_per_row : int or None, default=None
        Multiply-adds of one row's forward pass, for the thread choice
        (:func:`thread_scope`); None counts the weights. :meth:`of` takes the
        estimator's measured profile.
    warn_stacklevel : int or None, default=1
        Emit the ``ConvergenceWarning`` of :func:`warn_max_epochs_reached`
        when ``max_epochs`` runs out while the loss still improves, pointing
        at this frame above :func:`train`'s caller (1: the caller's line);
        None: no warning.
    """

    batch_size: int
    max_epochs: int
    n_iter_no_change: int
    learning_rate: float
    weight_decay: float = 0.0
    n_jobs: int | None = None
    verbose: int = 0
    name: str = "model"
    total_epochs: int | None = -1
    eval_rows: int = EVAL_CHUNK
    work_per_row: int | None = None
    warn_stacklevel: int | None = 1

    @classmethod
    def of(cls, estimator, **changes) -> TrainConfig:
        """The configuration of a neural estimator's parameters; ``changes`` replace fields."""
        fields = dict(
            batch_size=estimator.batch_size,
            max_epochs=estimator.max_epochs,
            n_iter_no_change=estimator.n_iter_no_change,
            learning_rate=estimator.learning_rate,
            weight_decay=estimator.weight_decay,
            n_jobs=getattr(estimator, "n_jobs", None),
            verbose=estimator.verbose,
            name=type(estimator).__name__,
        )
        if getattr(estimator, "_profile", None) is not None:  # measured when its modules were built
            fields.update(eval_rows=estimator._forward_rows(), work_per_row=estimator._profile[1])
        fields.update(changes)
        return cls(**fields)


@dataclass
class TrainState:
    """Where :func:`train` continues from.

    Attributes
    ----------
    generator : torch.Generator
        CPU generator for the shuffling.
    dropout_generator : torch.Generator, default=None
        Generator of the dropout masks (on the device of the data); defaults
        to ``generator``.
    optimizer_state : dict, default=None
        An Adam ``state_dict`` to continue from (``partial_fit``).
    epochs_done : int, default=0
        Epochs run before (the first epoch of this call is numbered
        ``epochs_done + 1`` in messages).
    """

    generator: torch.Generator
    dropout_generator: torch.Generator | None = None
    optimizer_state: dict | None = None
    epochs_done: int = 0


class ShuffledRows:
    """The epochs of the rows of one tensor: each epoch one chunk, all the rows in a new order.

    :func:`train` takes any object with ``max_rows`` (the most rows of one
    chunk) and ``epoch(generator)`` (an iterable of row tensors on the
    modules' device, the epoch's rows in shuffled order): the Dask engine
    streams the blocks of a dask array that way.
    """

    def __init__(self, X: torch.Tensor):
        self.X = X
        self.max_rows = X.shape[0]

    def epoch(self, generator: torch.Generator):
        perm = torch.randperm(self.X.shape[0], generator=generator).to(self.X.device)
        yield self.X[perm]  # one gather per epoch; batches are contiguous slices


class EarlyStopping:
    """The monitored loss of each epoch: when to stop, and the best epoch's weights to restore.

    As scikit-learn's MLP: an epoch improves on the best when its loss is
    lower by more than a relative ``TOL``; training stops after
    ``n_iter_no_change`` epochs without one. With ``keep_best`` (a validation
    set is monitored) the weights of the best epoch are kept for
    :meth:`restore`.
    """

    def __init__(self, modules, n_iter_no_change: int, keep_best: bool):
        self.modules, self.n_iter_no_change, self.keep_best = modules, n_iter_no_change, keep_best
        self.best_loss, self.no_improvement, self.best_state = math.inf, 0, None

    def update(self, loss: float) -> bool:
        """Record an epoch's monitored ``loss``; whether training should stop."""
        if loss < self.best_loss - TOL * abs(self.best_loss) or not math.isfinite(self.best_loss):
            self.no_improvement = 0
            if self.keep_best:
                self.best_state = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in self.modules]
        else:
            self.no_improvement += 1
        self.best_loss = min(self.best_loss, loss)
        return self.no_improvement >= self.n_iter_no_change

    def restore(self) -> None:
        """Load the best epoch's weights (with ``keep_best``)."""
        if self.best_state is not None:
            for m, state in zip(self.modules, self.best_state):
                m.load_state_dict(state)


def train(
    modules: list[torch.nn.Module],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    X,
    config: TrainConfig,
    state: TrainState,
    *,
    X_val: torch.Tensor | None = None,
    sample_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> TrainingResult:
    """Train ``modules`` with Adam on the rows of ``X`` for up to ``config.max_epochs`` epochs.

    Prior validation of data is assumed: ``X`` (and ``X_val``) are float
    tensors on the modules' device.

    Parameters
    ----------
    modules : list of torch.nn.Module
        Modules whose parameters are trained (``None`` entries are skipped).
        They are put in train mode for the epochs, in eval mode for validation
        and at the end.
    batch_loss : callable
        ``batch_loss(xb) -> scalar tensor``: the mean loss of a training batch
        (noise, sampling and penalties included).
    X : torch.Tensor of shape (n_samples, n_features), or a row source
        The training rows, or an object giving each epoch's rows in chunks
        (see :class:`ShuffledRows`).
    config : TrainConfig
        Batch size, epochs, early stopping, optimizer, threads, messages.
    state : TrainState
        The random streams, and the optimizer state and epoch count to
        continue from.
    X_val : torch.Tensor of shape (n_val, n_features), default=None
        The validation rows: when given, they are monitored for early stopping
        and the best epoch's weights are restored.
    sample_loss : callable, default=None
        ``sample_loss(xb) -> tensor of shape (len(xb),)``: the deterministic
        per-sample loss, evaluated on ``X_val`` (required with ``X_val``).

    Returns
    -------
    result : TrainingResult

    Raises
    ------
    ValueError
        When the training or validation loss becomes NaN or infinite; the
        message names the epoch and suggests a lower ``learning_rate`` or
        scaled inputs.
    """
    c = config
    data = ShuffledRows(X) if isinstance(X, torch.Tensor) else X
    modules = [m for m in modules if m is not None]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = make_adam(params, c.learning_rate, c.weight_decay)
    if state.optimizer_state is not None:
        optimizer.load_state_dict(state.optimizer_state)
    result = TrainingResult()
    use_val = X_val is not None and X_val.shape[0] > 0
    stopping = EarlyStopping(modules, c.n_iter_no_change, keep_best=use_val)
    first_epoch = state.epochs_done + 1
    total_epochs = state.epochs_done + c.max_epochs if c.total_epochs == -1 else c.total_epochs
    progress = EpochProgress(c.name, total_epochs, c.verbose, first_epoch)
    seed_dropout(modules, state.generator if state.dropout_generator is None else state.dropout_generator)
    scope = thread_scope(modules, min(c.batch_size, data.max_rows), c.n_jobs, c.work_per_row)
    scope.__enter__()
    try:
        for epoch in range(first_epoch, first_epoch + c.max_epochs):
            for m in modules:
                m.train()
            total, n = 0.0, 0
            for Xs in data.epoch(state.generator):
                chunk = torch.zeros((), dtype=torch.float32, device=Xs.device)
                for start in range(0, Xs.shape[0], c.batch_size):
                    xb = Xs[start : start + c.batch_size]
                    loss = batch_loss(xb)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    chunk += loss.detach() * xb.shape[0]
                total += chunk.item()  # the one host synchronisation of a chunk
                n += Xs.shape[0]
            epoch_loss = total / n
            if not math.isfinite(epoch_loss):
                raise _non_finite_error("training loss", epoch_loss, epoch, c.name, c.learning_rate)
            result.loss_curve.append(epoch_loss)
            result.n_epochs += 1
            for m in modules:
                m.eval()
            monitored = epoch_loss
            if use_val:
                with torch.no_grad():
                    val_loss = _mean_eval_loss(sample_loss, X_val, c.eval_rows).item()
                if not math.isfinite(val_loss):
                    raise _non_finite_error("validation loss", val_loss, epoch, c.name, c.learning_rate)
                result.validation_scores.append(-val_loss)
                monitored = val_loss
            stop = stopping.update(monitored)
            result.best_loss = stopping.best_loss
            progress.epoch(epoch, epoch_loss, val_loss if use_val else None)
            if stop:
                result.converged = True
                progress.note(
                    f"the {'validation' if use_val else 'training'} loss did not improve "
                    f"for {c.n_iter_no_change} epochs; stopping."
                )
                break
    finally:
        scope.__exit__(None, None, None)
        seed_dropout(modules, None)
        for m in modules:
            m.eval()
    stopping.restore()
    if not result.converged and c.warn_stacklevel is not None:
        warn_max_epochs_reached(c.name, c.max_epochs, stacklevel=1 + c.warn_stacklevel)
    result.optimizer_state = optimizer.state_dict()
    return result
