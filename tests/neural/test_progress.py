"""Progress (``verbose``) of the neural estimators and their one ``ConvergenceWarning`` about max_epochs."""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

from unsup.neural import Autoencoder, AutoencoderEnsemble, VariationalAutoencoder
from unsup.neural._training import listen_to_epochs

X = np.random.default_rng(0).standard_normal((120, 6))
LINE = re.compile(
    r"^(?P<name>\w+): epoch (?P<epoch>\d+)/(?P<total>\d+): loss [-+.e\d]+(, validation loss [-+.e\d]+)?; "
    r"\d+\.\d\d s, ETA \d+\.\d s$"
)


def _epoch_lines(out):
    return [LINE.match(line) for line in out.splitlines() if ": epoch " in line]


@pytest.mark.parametrize(
    "model",
    [
        Autoencoder(hidden_layer_sizes=(8,), max_epochs=5, early_stopping=False, verbose=1, random_state=0),
        VariationalAutoencoder(hidden_layer_sizes=(8,), max_epochs=5, verbose=1, random_state=0),
        AutoencoderEnsemble(n_estimators=4, max_epochs=5, verbose=1, random_state=0),
    ],
    ids=lambda m: type(m).__name__,
)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_verbose_prints_epoch_of_total_loss_and_eta_to_stdout(model, capsys):
    model.fit(X)
    captured = capsys.readouterr()
    lines = _epoch_lines(captured.out)
    assert lines and all(lines), captured.out
    assert [int(m["epoch"]) for m in lines] == list(range(1, model.n_iter_ + 1))
    assert {m["name"] for m in lines} == {type(model).__name__}
    assert {int(m["total"]) for m in lines} == {5}
    assert lines[-1].group(0).endswith("ETA 0.0 s") or model.n_iter_ < 5
    assert ": epoch" not in captured.err


def test_verbose_1_prints_about_20_lines_for_many_epochs_and_2_every_epoch(capsys):
    params = dict(hidden_layer_sizes=(4,), max_epochs=100, early_stopping=False, n_iter_no_change=1000, random_state=0)
    Autoencoder(verbose=1, **params).fit(X[:40])
    lines = _epoch_lines(capsys.readouterr().out)
    assert all(lines)
    assert [int(m["epoch"]) for m in lines] == [1, *range(5, 101, 5)]
    Autoencoder(verbose=2, **params).fit(X[:40])
    assert len(_epoch_lines(capsys.readouterr().out)) == 100


def test_partial_fit_lines_have_no_total(capsys):
    ae = Autoencoder(hidden_layer_sizes=(4,), verbose=1, random_state=0)
    ae.partial_fit(X)
    ae.partial_fit(X)
    out = capsys.readouterr().out.splitlines()
    assert [line.split(":")[1] for line in out] == [" epoch 1", " epoch 2"]
    assert all("ETA" not in line for line in out)


def test_the_listener_hears_every_epoch_without_verbose(capsys):
    seen = []
    with listen_to_epochs(seen.append):
        Autoencoder(hidden_layer_sizes=(4,), max_epochs=3, early_stopping=False, random_state=0).fit(X)
    assert [(i["name"], i["epoch"], i["total"]) for i in seen] == [("Autoencoder", e, 3) for e in (1, 2, 3)]
    assert all(i["eta"] >= 0 and i["validation_loss"] is None for i in seen)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------ the warning


def _convergence_warnings(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if issubclass(w.category, ConvergenceWarning)]


def test_max_epochs_reached_with_early_stopping_warns_once_per_fit():
    caught = _convergence_warnings(lambda: Autoencoder(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X))
    assert len(caught) == 1
    assert re.search(r"maximum number of epochs \(2\) was reached.*early_stopping=False", str(caught[0].message))
    assert caught[0].filename == __file__  # points at the user's call


@pytest.mark.parametrize("cls", [Autoencoder, VariationalAutoencoder])
def test_a_budget_chosen_with_early_stopping_false_never_warns(cls):
    model = cls(hidden_layer_sizes=(8,), max_epochs=2, early_stopping=False, random_state=0)
    assert _convergence_warnings(lambda: model.fit(X)) == []
    assert _convergence_warnings(lambda: model.partial_fit(X)) == []


def test_a_grid_search_over_short_fits_on_purpose_is_quiet():
    search = GridSearchCV(
        Autoencoder(hidden_layer_sizes=(8,), max_epochs=2, early_stopping=False, random_state=0),
        {"n_components": [1, 2, 3]},
        cv=3,
    )
    assert _convergence_warnings(lambda: search.fit(X)) == []
    assert len(search.cv_results_["mean_test_score"]) == 3
