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
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from sklearn.exceptions import ConvergenceWarning

from unsup.neural._modules import seed_dropout

__all__ = ["TOL", "DivergenceWarning", "TrainingResult", "make_adam", "split_validation", "train"]

#: Relative improvement of the monitored loss that counts as progress.
TOL = 1e-4

#: Rows per forward pass when evaluating a validation set (bounds memory).
EVAL_CHUNK = 4096


class DivergenceWarning(ConvergenceWarning):
    """A fit ended far worse than the trivial model (predicting the mean): training diverged.

    A subclass of scikit-learn's ``ConvergenceWarning``, so filters on that
    class catch it too.
    """


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
        Emit a ``ConvergenceWarning`` when ``max_epochs`` runs out while the
        loss still improves.
    verbose : int, default=0
        Print one line per epoch (loss, validation loss, time) to stdout.
    name : str, default="model"
        Name used in messages.

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
    seed_dropout(modules, generator if dropout_generator is None else dropout_generator)
    try:
        for epoch in range(first_epoch, first_epoch + max_epochs):
            t0 = time.perf_counter()
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
            if verbose:
                line = f"{name} epoch {epoch}: loss {epoch_loss:.6g}"
                if use_val:
                    line += f", validation loss {val_loss:.6g}"
                print(f"{line} ({time.perf_counter() - t0:.2f} s)", file=sys.stdout, flush=True)
            if no_improvement >= n_iter_no_change:
                result.converged = True
                if verbose:
                    print(
                        f"{name}: the {'validation' if use_val else 'training'} loss did not improve "
                        f"for {n_iter_no_change} epochs; stopping.",
                        flush=True,
                    )
                break
    finally:
        seed_dropout(modules, None)
        for m in modules:
            m.eval()
    if best_state is not None:
        for m, state in zip(modules, best_state):
            m.load_state_dict(state)
    if not result.converged and warn_max_epochs:
        warnings.warn(
            f"{name}: the maximum number of epochs ({max_epochs}) was reached and the "
            "loss is still improving; increase max_epochs.",
            ConvergenceWarning,
            stacklevel=2,
        )
    result.optimizer_state = optimizer.state_dict()
    return result
