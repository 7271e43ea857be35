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
  accumulated on the device and read once per epoch).
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
    "TOL",
    "DivergenceWarning",
    "EpochProgress",
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


def thread_scope(modules, rows: int, n_jobs=None):
    """:func:`~unsup.utils._threads.torch_threads` for passes of ``rows`` rows through ``modules``.

    The work of a pass is ``rows`` times the multiply-adds of one row: the
    weights of every ``Linear`` layer (and the elements of any other weight
    matrix), a lower bound for other layers. ``n_jobs`` as the estimators'
    parameter (``None``: chosen from the work).
    """
    per_row = sum(p.numel() for m in modules if m is not None for p in m.parameters() if p.dim() >= 2)
    return torch_threads(torch_n_threads(n_jobs, rows * per_row))


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


def _mean_eval_loss(sample_loss, X_val: torch.Tensor) -> torch.Tensor:
    total = torch.zeros((), dtype=torch.float64, device=X_val.device)
    for start in range(0, X_val.shape[0], EVAL_CHUNK):
        total += sample_loss(X_val[start : start + EVAL_CHUNK]).sum(dtype=torch.float64)
    return total / X_val.shape[0]


def _non_finite_error(what: str, value: float, epoch: int, name: str, learning_rate: float) -> ValueError:
    return ValueError(
        f"{name}: the {what} became {value} at epoch {epoch}. Training diverged: "
        f"lower learning_rate (now {learning_rate:g}), standardise the inputs "
        "(scale=True, or a StandardScaler in a Pipeline), or check X for values "
        "of very different magnitudes."
    )


def train(
    modules: list[torch.nn.Module],
    batch_loss: Callable[[torch.Tensor], torch.Tensor],
    X: torch.Tensor,
    *,
    X_val: torch.Tensor | None = None,
    sample_loss: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int,
    max_epochs: int,
    n_iter_no_change: int,
    learning_rate: float,
    weight_decay: float = 0.0,
    generator: torch.Generator,
    dropout_generator: torch.Generator | None = None,
    optimizer_state: dict | None = None,
    first_epoch: int = 1,
    warn_max_epochs: bool = True,
    verbose: int = 0,
    name: str = "model",
    n_jobs: int | None = None,
    total_epochs: int | None = -1,
) -> TrainingResult:
    """Train ``modules`` with Adam on the rows of ``X`` for up to ``max_epochs`` epochs.

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
    X : torch.Tensor of shape (n_samples, n_features)
        The training rows.
    X_val : torch.Tensor of shape (n_val, n_features), default=None
        The validation rows: when given, they are monitored for early stopping
        and the best epoch's weights are restored.
    sample_loss : callable, default=None
        ``sample_loss(xb) -> tensor of shape (len(xb),)``: the deterministic
        per-sample loss, evaluated on ``X_val`` (required with ``X_val``).
    batch_size : int
        Rows per gradient step (the last batch of an epoch may be smaller).
    max_epochs : int
        Passes over ``X`` at most.
    n_iter_no_change : int
        Epochs without a relative improvement of ``TOL`` before stopping.
    learning_rate, weight_decay : float
        Of the Adam optimizer (``weight_decay`` as ``torch.optim.Adam``'s L2 term).
    generator : torch.Generator
        CPU generator for the shuffling.
    dropout_generator : torch.Generator, default=None
        Generator of the dropout masks (on the device of the data); defaults
        to ``generator``.
    optimizer_state : dict, default=None
        An Adam ``state_dict`` to continue from (``partial_fit``).
    first_epoch : int, default=1
        Number of the first epoch, for messages.
    warn_max_epochs : bool, default=True
        Emit a ``ConvergenceWarning`` (:func:`warn_max_epochs_reached`) when
        ``max_epochs`` runs out while the loss still improves.
    verbose : int, default=0
        Print the epochs' loss, validation loss, time and ETA to stdout
        (:class:`EpochProgress`).
    name : str, default="model"
        Name used in messages.
    n_jobs : int or None, default=None
        torch intra-op threads for the loop (:func:`thread_scope`, with
        ``batch_size`` rows a step); the caller's count is restored after.
    total_epochs : int or None, default=-1
        The epoch count progress reports show (``epoch i/total``): ``-1``
        means ``first_epoch - 1 + max_epochs``; None shows none (``partial_fit``).

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
    modules = [m for m in modules if m is not None]
    params = [p for m in modules for p in m.parameters() if p.requires_grad]
    optimizer = make_adam(params, learning_rate, weight_decay)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    result = TrainingResult()
    n = X.shape[0]
    device = X.device
    use_val = X_val is not None and X_val.shape[0] > 0
    best_state = None
    no_improvement = 0
    if total_epochs == -1:
        total_epochs = first_epoch - 1 + max_epochs
    progress = EpochProgress(name, total_epochs, verbose, first_epoch)
    seed_dropout(modules, generator if dropout_generator is None else dropout_generator)
    scope = thread_scope(modules, min(batch_size, n), n_jobs)
    scope.__enter__()
    try:
        for epoch in range(first_epoch, first_epoch + max_epochs):
            for m in modules:
                m.train()
            perm = torch.randperm(n, generator=generator).to(device)
            Xs = X[perm]  # one gather per epoch; batches are contiguous slices
            total = torch.zeros((), dtype=torch.float32, device=device)
            for start in range(0, n, batch_size):
                xb = Xs[start : start + batch_size]
                loss = batch_loss(xb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * xb.shape[0]
            epoch_loss = total.item() / n  # the one host synchronisation of the epoch
            if not math.isfinite(epoch_loss):
                raise _non_finite_error("training loss", epoch_loss, epoch, name, learning_rate)
            result.loss_curve.append(epoch_loss)
            result.n_epochs += 1
            for m in modules:
                m.eval()
            monitored = epoch_loss
            if use_val:
                with torch.no_grad():
                    val_loss = _mean_eval_loss(sample_loss, X_val).item()
                if not math.isfinite(val_loss):
                    raise _non_finite_error("validation loss", val_loss, epoch, name, learning_rate)
                result.validation_scores.append(-val_loss)
                monitored = val_loss
            if monitored < result.best_loss - TOL * abs(result.best_loss) or not math.isfinite(result.best_loss):
                no_improvement = 0
                if use_val:
                    best_state = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]
            else:
                no_improvement += 1
            result.best_loss = min(result.best_loss, monitored)
            progress.epoch(epoch, epoch_loss, val_loss if use_val else None)
            if no_improvement >= n_iter_no_change:
                result.converged = True
                progress.note(
                    f"the {'validation' if use_val else 'training'} loss did not improve "
                    f"for {n_iter_no_change} epochs; stopping."
                )
                break
    finally:
        scope.__exit__(None, None, None)
        seed_dropout(modules, None)
        for m in modules:
            m.eval()
    if best_state is not None:
        for m, state in zip(modules, best_state):
            m.load_state_dict(state)
    if not result.converged and warn_max_epochs:
        warn_max_epochs_reached(name, max_epochs, stacklevel=2)
    result.optimizer_state = optimizer.state_dict()
    return result
