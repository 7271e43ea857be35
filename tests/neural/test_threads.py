"""torch threads of the neural estimators: ``n_jobs``, and the caller's setting left as it was.

No mocks: the thread count inside training is read by a real epoch
listener, from the thread that trains.
"""

import threading
import warnings

import numpy as np
import pytest
import torch
from joblib import cpu_count
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import InvalidParameterError

from unsup.neural import Autoencoder, AutoencoderEnsemble, VariationalAutoencoder
from unsup.neural._training import listen_to_epochs
from unsup.utils._threads import TORCH_WORK_PER_THREAD, torch_n_threads, torch_threads

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

X = np.random.default_rng(0).standard_normal((200, 6))
SMALL = {
    Autoencoder: dict(hidden_layer_sizes=(8,), max_epochs=3),
    VariationalAutoencoder: dict(hidden_layer_sizes=(8,), max_epochs=3),
    AutoencoderEnsemble: dict(n_estimators=4, max_epochs=3),
}


@pytest.fixture
def three_threads():
    """torch set to 3 intra-op threads for the test (a count no default gives), restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def _count_in_new_thread():
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    t.start()
    t.join()
    return seen[0]


def _threads_while_training(model):
    seen = []
    with listen_to_epochs(lambda info: seen.append(torch.get_num_threads())):
        model.fit(X)
    return set(seen)


@pytest.mark.parametrize("cls", list(SMALL))
@pytest.mark.parametrize("n_jobs", [None, 1, 2, -1])
def test_every_public_call_leaves_the_thread_count_as_it_was(cls, n_jobs, three_threads):
    model = cls(n_jobs=n_jobs, random_state=0, **SMALL[cls]).fit(X)
    model.partial_fit(X)
    model.score_samples(X)
    model.predict(X)
    if hasattr(model, "transform"):
        model.inverse_transform(model.transform(X))
        model.quantize(X[:50]).score_samples(X)
    assert torch.get_num_threads() == three_threads
    assert _count_in_new_thread() == three_threads  # the count threads started later begin with


@pytest.mark.parametrize("cls", list(SMALL))
def test_training_runs_with_the_threads_n_jobs_asks_for(cls, three_threads):
    # A small network: one thread by default; an explicit count is used as given.
    assert _threads_while_training(cls(random_state=0, **SMALL[cls])) == {1}
    assert _threads_while_training(cls(n_jobs=2, random_state=0, **SMALL[cls])) == {2}
    assert _threads_while_training(cls(n_jobs=-1, random_state=0, **SMALL[cls])) == {cpu_count()}
    assert torch.get_num_threads() == three_threads


def test_a_wide_network_gets_more_threads_by_default(three_threads):
    # batches of 300 rows x about 2.1e6 multiply-adds a row: between 2 and 3 times 2**28, so 2 threads
    ae = Autoencoder(n_components=2, hidden_layer_sizes=(1024, 1024), batch_size=300, max_epochs=1, random_state=0)
    seen = []
    with listen_to_epochs(lambda info: seen.append(torch.get_num_threads())):
        ae.fit(np.random.default_rng(0).standard_normal((400, 6)))
    per_row = sum(p.numel() for m in (ae.encoder_, ae.decoder_) for p in m.parameters() if p.dim() >= 2)
    assert 300 * per_row // TORCH_WORK_PER_THREAD == 2
    assert set(seen) == {2}
    assert torch.get_num_threads() == three_threads


def test_a_fit_that_raises_restores_the_thread_count(three_threads):
    X = np.random.default_rng(0).standard_normal((64, 4))
    with pytest.raises(ValueError, match="training loss became"):  # a step size that overflows the weights
        Autoencoder(hidden_layer_sizes=(4,), learning_rate=1e20, early_stopping=False, max_epochs=3, n_jobs=2,
                    random_state=0).fit(X)
    assert torch.get_num_threads() == three_threads
    assert _count_in_new_thread() == three_threads


def test_a_fit_in_a_thread_leaves_that_thread_as_it_was(three_threads):
    seen = []

    def fit():
        before = torch.get_num_threads()
        Autoencoder(hidden_layer_sizes=(8,), max_epochs=2, n_jobs=2, random_state=0).fit(X)
        seen.append((before, torch.get_num_threads()))

    t = threading.Thread(target=fit)
    t.start()
    t.join(timeout=120)
    assert seen == [(three_threads, three_threads)]
    assert torch.get_num_threads() == three_threads


def test_overlapping_fits_in_threads_restore_the_count_new_threads_start_with(three_threads):
    # Thread B starts while A trains on one thread, so B begins with A's count
    # (torch gives a new thread the count last set anywhere); B trains on two
    # threads and its fit ends last. The count threads started afterwards begin with must be the one
    # before A's fit, not the 1 that B found.
    b_inside, a_done = threading.Event(), threading.Event()
    errors = []

    def run(fn):
        def target():
            try:
                fn()
            except Exception as exc:  # reported by the main thread
                errors.append(exc)
        return threading.Thread(target=target)

    def b():
        def listener(info):
            if info["epoch"] == 1:
                b_inside.set()
                assert a_done.wait(timeout=60)
        with listen_to_epochs(listener):
            Autoencoder(hidden_layer_sizes=(8,), max_epochs=2, n_jobs=2, random_state=1).fit(X)

    thread_b = run(b)

    def a():
        def listener(info):
            if info["epoch"] == 1:
                thread_b.start()
                assert b_inside.wait(timeout=60)
        with listen_to_epochs(listener):
            Autoencoder(hidden_layer_sizes=(8,), max_epochs=2, random_state=0).fit(X)
        a_done.set()

    thread_a = run(a)
    thread_a.start()
    thread_a.join(timeout=120)
    thread_b.join(timeout=120)
    assert not errors and a_done.is_set()
    assert torch.get_num_threads() == three_threads
    assert _count_in_new_thread() == three_threads


def test_torch_n_threads_rule(three_threads):
    assert torch_n_threads(None, 0) == 1
    assert torch_n_threads(None, TORCH_WORK_PER_THREAD - 1) == 1
    assert torch_n_threads(None, 2 * TORCH_WORK_PER_THREAD) == 2
    assert torch_n_threads(None, 100 * TORCH_WORK_PER_THREAD) == 3  # never more than torch's own count
    assert torch_n_threads(5, 0) == 5
    assert torch_n_threads(-1, 0) == cpu_count()
    assert torch_n_threads(-10_000, 0) == 1


def test_torch_threads_nests_and_restores(three_threads):
    with torch_threads(1):
        assert torch.get_num_threads() == 1
        with torch_threads(2):
            assert torch.get_num_threads() == 2
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == three_threads


@pytest.mark.parametrize("cls", list(SMALL))
def test_n_jobs_zero_is_refused_in_scikit_learns_words(cls):
    with pytest.raises(InvalidParameterError, match="The 'n_jobs' parameter of .* must be"):
        cls(n_jobs=0, **SMALL[cls]).fit(X)


def test_results_do_not_depend_on_n_jobs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = Autoencoder(hidden_layer_sizes=(8,), max_epochs=3, n_jobs=1, random_state=0).fit(X)
        two = Autoencoder(hidden_layer_sizes=(8,), max_epochs=3, n_jobs=2, random_state=0).fit(X)
    np.testing.assert_allclose(one.score_samples(X), two.score_samples(X), rtol=1e-4)
