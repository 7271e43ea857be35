"""The shared training loop (unsup.neural._training) and the module builders.

Oracles: a plain torch loop with ``torch.optim.Adam`` on the same modules
(full-batch steps are order-free, so both take the same steps), and hand
bookkeeping of early stopping.
"""

import copy
import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning

from unsup.neural import Autoencoder, VariationalAutoencoder
from unsup.neural._modules import SeededDropout, make_generators, mlp, resolve_device
from unsup.neural._training import TOL, TrainConfig, TrainState, make_adam, split_validation, train

rng = np.random.default_rng(0)
X_NP = (rng.standard_normal((96, 3)) @ rng.standard_normal((3, 6))).astype(np.float32)
X = torch.from_numpy(X_NP)


def _net(seed=0, sizes=(6, 8, 6), dropout=0.0):
    return mlp(list(sizes), dropout=dropout, generator=torch.Generator().manual_seed(seed))


def _mse_loss(net):
    def batch_loss(xb):
        return ((net(xb) - xb) ** 2).mean()

    def sample_loss(xb):
        return ((net(xb) - xb) ** 2).mean(dim=1)

    return batch_loss, sample_loss


# ---------------------------------------------------------------- builders
def test_mlp_layers_and_seeded_init():
    net = _net(sizes=(6, 8, 4, 2), dropout=0.25)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "ReLU", "SeededDropout", "Linear", "ReLU", "SeededDropout", "Linear"]
    # same generator seed, same weights; torch's default distributions (|w| <= 1/sqrt(fan_in))
    again = _net(sizes=(6, 8, 4, 2), dropout=0.25)
    for a, b in zip(net.parameters(), again.parameters()):
        assert torch.equal(a, b)
    assert float(net[0].weight.detach().abs().max()) <= 1 / math.sqrt(6)
    assert not torch.equal(_net(seed=1)[0].weight, _net(seed=0)[0].weight)


def test_builders_leave_global_rng_alone():
    state = torch.get_rng_state()
    _net(sizes=(6, 32, 6), dropout=0.5)
    assert torch.equal(state, torch.get_rng_state())


def test_seeded_dropout_draws_from_its_generator():
    layer = SeededDropout(0.5).train()
    x = torch.ones(1000)
    layer.generator = torch.Generator().manual_seed(3)
    a = layer(x)
    layer.generator = torch.Generator().manual_seed(3)
    b = layer(x)
    assert torch.equal(a, b)
    assert set(a.unique().tolist()) == {0.0, 2.0}  # inverted dropout: kept values scaled by 1/(1-p)
    assert abs(float((a == 0).float().mean()) - 0.5) < 0.06
    assert torch.equal(layer.eval()(x), x)
    assert copy.deepcopy(layer).generator is None


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    cpu, dev = make_generators(5, torch.device("cpu"))
    assert cpu is dev and cpu.initial_seed() == 5


def test_split_validation():
    g = torch.Generator().manual_seed(0)
    train_idx, val_idx = split_validation(101, 0.1, g)
    assert len(val_idx) == 11 and len(train_idx) == 90  # ceil, as train_test_split
    assert sorted(torch.cat([train_idx, val_idx]).tolist()) == list(range(101))
    again = split_validation(101, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(again[1], val_idx)
    assert split_validation(1, 0.5, g)[1] is None  # nothing would be left to train on
    assert split_validation(10, 0.0, g)[1] is None


# ------------------------------------------------------------------ the loop
def test_full_batch_steps_equal_a_plain_torch_adam_loop():
    """batch_size >= n: each epoch is one step on the whole set, whatever the shuffling."""
    ours, ref = _net(), _net()
    batch_loss, _ = _mse_loss(ours)
    train([ours], batch_loss, X,
          TrainConfig(batch_size=1000, max_epochs=15, n_iter_no_change=100, learning_rate=1e-2, warn_stacklevel=None),
          TrainState(torch.Generator().manual_seed(0)))
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    for _ in range(15):
        loss = ((ref(X) - X) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_make_adam_is_adam():
    net = _net()
    opt = make_adam(net.parameters(), 1e-3, 0.1)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["weight_decay"] == 0.1


def test_loss_curve_decreases_and_bookkeeping():
    net = _net()
    batch_loss, _ = _mse_loss(net)
    result = train([net], batch_loss, X,
                   TrainConfig(batch_size=16, max_epochs=30, n_iter_no_change=100, learning_rate=1e-2, warn_stacklevel=None),
                   TrainState(torch.Generator().manual_seed(0)))
    assert result.n_epochs == len(result.loss_curve) == 30
    assert result.loss_curve[-1] < 0.5 * result.loss_curve[0]
    assert result.best_loss == min(result.loss_curve)
    assert result.validation_scores == [] and not result.converged
    assert not net.training  # left in eval mode


def test_early_stopping_restores_the_best_epoch():
    net = _net()
    batch_loss, sample_loss = _mse_loss(net)
    X_val = X[:20] + 0.5  # shifted: validation loss turns up while training goes on
    result = train([net], batch_loss, X[20:],
                   TrainConfig(batch_size=8, max_epochs=200, n_iter_no_change=3, learning_rate=3e-2),
                   TrainState(torch.Generator().manual_seed(0)), X_val=X_val, sample_loss=sample_loss)
    scores = result.validation_scores
    assert len(scores) == result.n_epochs and result.converged
    best = int(np.argmax(scores))
    # stopped n_iter_no_change epochs after the last improvement
    assert result.n_epochs <= best + 1 + 3
    assert result.best_loss == pytest.approx(-max(scores))
    with torch.no_grad():
        restored = float(sample_loss(X_val).double().mean())
    assert restored == pytest.approx(-max(scores), rel=1e-6)


def test_no_improvement_rule_uses_relative_tol():
    net = _net()
    calls = {"n": 0}

    def flat_loss(xb):  # exactly constant: never an improvement after the first epoch
        calls["n"] += 1
        return (net(xb) * 0.0).sum() + 1.0

    result = train([net], flat_loss, X,
                   TrainConfig(batch_size=1000, max_epochs=50, n_iter_no_change=4, learning_rate=1e-3),
                   TrainState(torch.Generator().manual_seed(0)))
    assert result.converged and result.n_epochs == 5
    assert TOL == 1e-4


def test_max_epochs_warns():
    net = _net()
    batch_loss, _ = _mse_loss(net)
    with pytest.warns(ConvergenceWarning, match="maximum number of epochs \\(2\\)"):
        train([net], batch_loss, X,
              TrainConfig(batch_size=16, max_epochs=2, n_iter_no_change=10, learning_rate=1e-3, name="Net"),
              TrainState(torch.Generator().manual_seed(0)))


def test_nan_loss_names_the_epoch():
    net = _net()
    calls = {"n": 0}

    def exploding(xb):
        calls["n"] += 1
        loss = ((net(xb) - xb) ** 2).mean()
        return loss * float("nan") if calls["n"] > 2 else loss

    with pytest.raises(ValueError, match=r"became nan at epoch 3.*lower learning_rate \(now 0.5\)"):
        train([net], exploding, X,
              TrainConfig(batch_size=1000, max_epochs=10, n_iter_no_change=10, learning_rate=0.5, name="Net"),
              TrainState(torch.Generator().manual_seed(0)))


def test_divergent_estimator_fit_raises_clearly():
    X = np.random.default_rng(0).standard_normal((64, 4))
    with pytest.raises(ValueError, match=r"Autoencoder: the training loss became (nan|inf) at epoch \d.*learning_rate"):
        Autoencoder(hidden_layer_sizes=(4,), learning_rate=1e20, early_stopping=False, max_epochs=3,
                    random_state=0).fit(X)


def test_verbose_prints_progress(capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        Autoencoder(hidden_layer_sizes=(4,), max_epochs=3, verbose=1, random_state=0).fit(X_NP)
    out = capsys.readouterr().out.splitlines()
    epochs = [line for line in out if line.startswith("Autoencoder: epoch")]
    assert len(epochs) == 3
    assert "loss" in epochs[0] and "validation loss" in epochs[0] and epochs[0].endswith(" s")


@pytest.mark.parametrize("cls, params", [
    (Autoencoder, {"kind": "denoising", "dropout": 0.3}),
    (Autoencoder, {"kind": "denoising", "corruption": "masking", "noise": 0.3}),
    (VariationalAutoencoder, {"dropout": 0.2}),
])
def test_fit_never_touches_global_torch_state(cls, params):
    torch_state, threads = torch.get_rng_state(), torch.get_num_threads()
    np_state = np.random.get_state()[1].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = cls(hidden_layer_sizes=(8,), max_epochs=3, random_state=0, **params).fit(X_NP)
    model.score_samples(X_NP)
    assert torch.equal(torch_state, torch.get_rng_state())
    assert torch.get_num_threads() == threads
    np.testing.assert_array_equal(np_state, np.random.get_state()[1])
