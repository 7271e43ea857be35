"""Processes and threads: no hang in a child made by fork, no process-wide setting changed.

A child of ``fork`` inherits unsup's thread pools without their threads, and
an OpenMP runtime whose threads are gone: before unsup reset its state at
fork, ``predict`` in such a child waited forever. ``threadpoolctl`` limits
are process-wide: concurrent callers that each save and restore them left
BLAS at one thread. Both run in a subprocess, under a timeout, so that a
regression fails the test instead of hanging the suite.
"""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from unsup.utils._threads import single_threaded, threadpool_controller

ROOT = Path(__file__).resolve().parents[2]

FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp
    import sys
    import warnings

    import numpy as np

    sys.path.insert(0, {tests!r})
    from _instances import estimator_instances

    warnings.simplefilter("ignore")
    rng = np.random.RandomState(0)
    X = rng.randn(3000, 8).astype(np.float32)
    BIG = rng.randn(400000, 8).astype(np.float32)  # enough blocks for the quantization kernels' threads
    METHODS = ("predict", "transform", "score_samples", "predict_proba")

    def rows(est):  # networks train on few rows (fast); inference runs on all
        return X[:400] if hasattr(est, "hidden_layer_sizes") else X

    def use(est):
        for name in METHODS:
            if hasattr(est, name):
                getattr(est, name)(X)
        if type(est).__name__ == "Quantizer":
            est.transform(BIG)
        if hasattr(est, "kneighbors"):
            est.kneighbors(X[:2000], 5)

    # A warm parent: every estimator fitted and used (pools, controller,
    # OpenMP and torch threads all started here).
    estimators = []
    for est in estimator_instances(variants=False):
        est.fit(rows(est))
        use(est)
        estimators.append(est)

    def child(i, queue):
        est = estimators[i]
        use(est)
        est.fit(rows(est))
        use(est)
        queue.put(i)

    ctx = mp.get_context("fork")
    for i, est in enumerate(estimators):
        queue = ctx.Queue()
        proc = ctx.Process(target=child, args=(i, queue))
        proc.start()
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            print(type(est).__name__, "hung")
        elif proc.exitcode != 0 or queue.get(timeout=5) != i:
            print(type(est).__name__, "failed with exit status", proc.exitcode)
        else:
            print(type(est).__name__, "ok")
    """
)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_fork_child_of_a_warm_parent_does_not_hang():
    script = FORK_SCRIPT.format(tests=str(ROOT / "tests"))
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=400
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.split("\n")
    reports = [line for line in lines if line.strip()]
    names = {line.split()[0] for line in reports}
    assert {"KMeans", "GaussianMixture", "Quantizer", "Autoencoder"} <= names, done.stdout
    assert all(line.endswith(" ok") for line in reports), done.stdout


ADAPTER_FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing as mp

    import unsup._sklearn_adapter as adapter

    name = next(iter(adapter._LOADERS))

    def child():
        adapter._RESOLVED.pop(name, None)
        adapter._native(name)  # takes the adapter's lock

    adapter._LOCK.acquire()  # as another thread of the parent would hold it at the fork
    proc = mp.get_context("fork").Process(target=child)
    proc.start()
    proc.join(30)
    if proc.is_alive():
        proc.kill()
        print("hung")
    else:
        print("exit", proc.exitcode)
    """
)


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_adapter_lock_held_at_fork_is_free_in_the_child():
    done = subprocess.run([sys.executable, "-c", ADAPTER_FORK_SCRIPT], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "exit 0", (done.stdout, done.stderr[-2000:])


def _limits():
    return sorted((info["internal_api"], info["filepath"], info["num_threads"]) for info in threadpool_controller().info())


def test_single_threaded_nests_and_restores():
    before = _limits()
    with single_threaded("blas"):
        inside = {info["num_threads"] for info in threadpool_controller().info() if info["user_api"] == "blas"}
        with single_threaded("blas"):
            pass
        again = {info["num_threads"] for info in threadpool_controller().info() if info["user_api"] == "blas"}
    assert inside <= {1} and again <= {1}
    assert _limits() == before


def test_concurrent_calls_leave_thread_limits_as_found():
    """8 threads at once: the results equal the serial ones, and every limit is restored."""
    from concurrent.futures import ThreadPoolExecutor

    from unsup.cluster import DivisiveClustering, KMeans
    from unsup.mixture import GaussianMixture
    from unsup.quantization import QuantizedEmbedding, Quantizer

    rng = np.random.RandomState(0)
    X = rng.randn(4000, 8)
    fitted = [
        KMeans(n_clusters=4, n_init=1, random_state=0).fit(X),
        GaussianMixture(n_components=3, random_state=0).fit(X),
        DivisiveClustering(n_clusters=4, random_state=0).fit(X),
        Quantizer().fit(X),
        QuantizedEmbedding(n_bits=4).fit(X),
    ]

    def calls():
        out = []
        for est in fitted:
            out.append(est.predict(X) if hasattr(est, "predict") else est.transform(X))
            if isinstance(est, KMeans):
                out.append(KMeans(n_clusters=4, n_init=1, random_state=0).fit(X).cluster_centers_)
        return out

    serial = calls()
    before = _limits()
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: calls(), range(16)))
    assert _limits() == before
    for result in results:
        for got, expected in zip(result, serial):
            np.testing.assert_array_equal(got, expected)
