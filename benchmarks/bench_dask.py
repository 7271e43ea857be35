"""The Dask engine on a LocalCluster of 2 worker processes, against dask-ml (issue 15).

Figures (``--scale 1``: the issue's sizes; every array is generated lazily,
so nothing but blocks ever exists on a worker):

- KMeans, k = 64, on 20M x 32 float32 (``da.random``, drawn as float32 in
  1M-row blocks, so a block never exists as float64 on a worker): time
  per Lloyd iteration against dask-ml's ``KMeans`` from the same initial
  centres (target <= 0.7x), the final inertia of each from its own k-means||
  seeding (target: unsup <= dask-ml; both computed by the same function,
  since dask-ml's ``inertia_`` sums unsquared distances), and the peak RSS
  per worker against 4 blocks + 200 MiB (also shown above the idle RSS).
- GaussianMixture, full, k = 16, on 10M x 16: time per EM iteration, with
  the same memory bound; dask-ml has no mixture, so the ratio is against the
  in-memory fit of one block's rows, scaled to all rows (one process).
- Autoencoder ``transform`` over 50M rows (one 1M-row block sent to each
  worker once, referenced 50 times): rows per second with 2 workers against
  the in-memory ``transform`` of that block in one process
  (``--no-malloc-trim``: workers started without dask's
  ``MALLOC_TRIM_THRESHOLD_``, see docs/scaling.md).
- ADBench ``11_donors`` repeated to 10M rows: KMeans and GaussianMixture
  fitted on the dask array equal the in-memory fits on the same rows.

Per-iteration times are differences: a fit of ``a + m`` iterations minus a
fit of ``a`` (``tol=0``), over ``m``, so the seeding and final passes cancel.
dask-ml is installed in the benchmark's environment only (``pip install
dask-ml``); without it the dask-ml columns are skipped and the script says so.

Run: ``python benchmarks/bench_dask.py`` (``--scale 0.1`` for a tenth of the
rows, ``--quick`` for a smoke run).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import parser  # noqa: E402

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from distributed import Client, LocalCluster  # noqa: E402

from unsup import Autoencoder, GaussianMixture, KMeans  # noqa: E402

MiB = 2**20
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "adbench" / "11_donors.npz"

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dask_ml.cluster import KMeans as DaskMLKMeans
except Exception as exc:  # noqa: BLE001 - any failure to import means no anchor
    DaskMLKMeans = None
    DASK_ML_MISSING = f"{type(exc).__name__}: {exc}"


def _rss():
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Peak RSS of each worker process while the block runs, polled every 0.2 s."""

    def __init__(self, client):
        self.client = client

    def __enter__(self):
        self.idle = self.client.run(_rss)
        self.peak = dict(self.idle)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.wait(0.2):
            try:
                for w, v in self.client.run(_rss).items():
                    self.peak[w] = max(self.peak.get(w, 0), v)
            except Exception:  # noqa: BLE001 - a worker restarting: skip one sample
                pass

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def line(self, bound):
        peak = max(self.peak.values()) / MiB
        idle = max(self.idle.values()) / MiB
        grown = max(self.peak[w] - self.idle.get(w, 0) for w in self.peak) / MiB
        ok = "within" if grown <= bound else "ABOVE"
        return (
            f"peak RSS per worker {peak:.0f} MiB, idle {idle:.0f} MiB (numpy, torch, unsup imported): "
            f"{grown:.0f} MiB for the fit, {ok} 4 blocks + 200 MiB = {bound:.0f} MiB"
        )


def _sqdist_min_sum(block, centres):
    from sklearn.metrics import pairwise_distances_argmin_min

    _, d = pairwise_distances_argmin_min(block.astype(np.float64), centres, metric="sqeuclidean")
    return np.array([d.sum()])


def inertia(X, centres):
    """Sum of squared distances to the nearest centre (the same function for both fits)."""
    centres = np.asarray(centres, dtype=np.float64)
    parts = X.map_blocks(_sqdist_min_sum, centres, drop_axis=1, chunks=((1,) * X.numblocks[0],), dtype=np.float64)
    return float(parts.sum().compute())


def per_iteration(make, X, a, m, rounds):
    """Median over rounds of (time of a + m iterations - time of a) / m.

    Where noise makes the difference not positive (tiny data, a busy
    machine), the round counts the whole a + m fit divided by a + m instead:
    an upper bound, never a negative time.
    """
    out = []
    for _ in range(rounds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            make(a).fit(X)
            t1 = time.perf_counter()
            make(a + m).fit(X)
            t2 = time.perf_counter()
        diff = (t2 - t1) - (t1 - t0)
        out.append(diff / m if diff > 0 else (t2 - t1) / (a + m))
    return statistics.median(out)


def ratio_line(title, name, value, anchor_name, anchor, unit="s"):
    print(f"\n{title}")
    print(f"  {anchor_name:<44s} {anchor:10.3f} {unit}  (anchor)")
    print(f"  {name:<44s} {value:10.3f} {unit}  ratio {value / anchor:.2f}x")


def bench_kmeans(client, n, block, k, rounds, iters):
    d = 32
    X = da.random.default_rng(0).standard_normal((n, d), chunks=(block, d), dtype=np.float32)
    init = X[:k].compute() + 0.0
    bound = 4 * block * d * 4 / MiB + 200
    unsup = per_iteration(lambda it: KMeans(k, init=init, n_init=1, max_iter=it, tol=0), X, 1, iters, rounds)
    if DaskMLKMeans is None:
        print(f"\nKMeans: dask-ml is not installed ({DASK_ML_MISSING}); its columns are skipped.")
        print(f"  unsup time per Lloyd iteration {unsup:.3f} s (no anchor: ratio n/a)")
    else:
        anchor = per_iteration(lambda it: DaskMLKMeans(k, init=init, max_iter=it, tol=0), X, 1, iters, rounds)
        ratio_line(
            f"KMeans k={k} on {n:,} x {d} float32 ({block:,}-row blocks): time per Lloyd iteration",
            "unsup KMeans", unsup, "dask-ml KMeans", anchor,
        )
    with PeakRSS(client) as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = KMeans(k, init="k-means||", max_iter=2 * iters, random_state=0).fit(X)
    print(f"  unsup fit (k-means|| + {ours.n_iter_} iterations): {mem.line(bound)}")
    if DaskMLKMeans is not None:
        with PeakRSS(client) as mem, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = DaskMLKMeans(k, init="k-means||", max_iter=2 * iters, random_state=0).fit(X)
        print(f"  dask-ml fit (k-means|| + {theirs.n_iter_} iterations): {mem.line(bound)}")
        a, b = inertia(X, ours.cluster_centers_), inertia(X, theirs.cluster_centers_)
        print(f"  final inertia: unsup {a:.6g}, dask-ml {b:.6g}, ratio {a / b:.4f}x")


def _blob_block(block, block_info=None, k=16):
    rng = np.random.default_rng(block_info[None]["chunk-location"][0])
    centres = 5.0 * np.random.default_rng(12345).standard_normal((k, block.shape[1]))
    return block + centres[rng.integers(0, k, len(block))]


def bench_gmm(client, n, block, k, rounds, iters):
    d = 16
    noise = da.random.RandomState(1).standard_normal((n, d), chunks=(block, d))
    X = noise.map_blocks(_blob_block, k=k, dtype=np.float64)
    sample = X[:block].compute()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = GaussianMixture(k, max_iter=1, random_state=0).fit(sample)
    init = dict(weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_)

    def make(it):
        return GaussianMixture(k, max_iter=it, tol=0, **init)

    ours = per_iteration(make, X, 1, iters, rounds)
    in_memory = []
    for _ in range(rounds):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            make(1).fit(sample)
            t1 = time.perf_counter()
            make(1 + iters).fit(sample)
            t2 = time.perf_counter()
        in_memory.append(((t2 - t1) - (t1 - t0)) / iters * (n / block))
    ratio_line(
        f"GaussianMixture full k={k} on {n:,} x {d} ({block:,}-row blocks): time per EM iteration",
        "unsup on dask (2 workers)", ours, "unsup in memory, one process (scaled)", statistics.median(in_memory),
    )
    bound = 4 * block * d * 8 / MiB + 200
    with PeakRSS(client) as mem, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        make(iters).fit(X)
    print(f"  unsup fit ({iters} iterations): {mem.line(bound)}")


def bench_predict(client, n, block, rounds, label="dask, 2 workers"):
    d = 32
    rng = np.random.default_rng(0)
    train = rng.standard_normal((20_000, d)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ae = Autoencoder(8, hidden_layer_sizes=(64,), max_epochs=2, random_state=0).fit(train)
    local = rng.standard_normal((block, d)).astype(np.float32)
    # One block sent to each worker once and referenced n / block times: the time is the
    # engine's and the transform's, not the drawing of random numbers.
    X = _repeated(client, local, n)
    ours, anchor = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        ae.transform(X).sum().compute()
        t1 = time.perf_counter()
        ae.transform(local)
        t2 = time.perf_counter()
        ours.append(n / (t1 - t0))
        anchor.append(block / (t2 - t1))
    a, b = statistics.median(ours), statistics.median(anchor)
    print(f"\nAutoencoder.transform over {n:,} x {d} ({block:,}-row blocks): rows per second")
    print(f"  {'in memory, one process':<52s} {b:12,.0f} rows/s  (anchor)")
    print(f"  {label:<52s} {a:12,.0f} rows/s  ratio {a / b:.2f}x")


def without_malloc_trim():
    """dask's worker environment less ``MALLOC_TRIM_THRESHOLD_`` (see docs/scaling.md).

    The nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also
    fixes glibc's mmap threshold at 128 KiB: every larger buffer, such as a
    network's activations for a chunk of rows, is a fresh mmap and page faults.
    """
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
    environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    return dask.config.set({"distributed.nanny.pre-spawn-environ": environ})


def _repeated(client, base, n_rows):
    """``base`` repeated to ``n_rows`` rows as a dask array, a block per copy: ``base`` is
    scattered to the workers once (no copy of it in the graph)."""
    future = client.scatter(base, broadcast=True)
    parts, left = [], n_rows
    while left > 0:
        rows = min(left, len(base))
        part = da.from_delayed(dask.delayed(future), shape=base.shape, dtype=base.dtype)
        parts.append(part if rows == len(base) else part[:rows])
        left -= rows
    return da.concatenate(parts)


def bench_donors(client, n_rows):
    if not DATA.exists():
        print(f"\n11_donors: {DATA} not found; skipped (ratio n/a).")
        return
    base = np.load(DATA)["X"].astype(np.float64)
    reps = max(1, int(np.ceil(n_rows / len(base))))
    Xn = np.tile(base, (reps, 1))[:n_rows]
    X = _repeated(client, base, n_rows)
    k = 8
    init = Xn[np.random.default_rng(0).choice(min(len(base), n_rows), k, replace=False)]
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ref = KMeans(k, init=init, n_init=1).fit(Xn)
        t1 = time.perf_counter()
        got = KMeans(k, init=init, n_init=1).fit(X)
        t2 = time.perf_counter()
    times["kmeans"] = (t1 - t0, t2 - t1)
    rel = np.max(np.abs(ref.cluster_centers_ - got.cluster_centers_)) / np.max(np.abs(ref.cluster_centers_))
    same = bool(np.array_equal(ref.labels_, got.labels_.compute()))
    print(f"\n11_donors repeated to {n_rows:,} x {Xn.shape[1]} ({len(base):,}-row blocks, a copy each)")
    print(f"  KMeans k={k}: centres rel. diff {rel:.2e}, labels identical {same}, n_iter {ref.n_iter_} / {got.n_iter_}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = GaussianMixture(4, covariance_type="diag", max_iter=1, random_state=0).fit(base)
        init = dict(weights_init=start.weights_, means_init=start.means_, precisions_init=start.precisions_)
        t0 = time.perf_counter()
        ref = GaussianMixture(4, covariance_type="diag", max_iter=20, **init).fit(Xn)
        t1 = time.perf_counter()
        got = GaussianMixture(4, covariance_type="diag", max_iter=20, **init).fit(X)
        t2 = time.perf_counter()
    times["gmm"] = (t1 - t0, t2 - t1)
    rel = max(
        np.max(np.abs(getattr(ref, a) - getattr(got, a))) / np.max(np.abs(getattr(ref, a)))
        for a in ("weights_", "means_", "covariances_")
    )
    print(
        f"  GaussianMixture diag k=4: lower_bound_ diff {abs(ref.lower_bound_ - got.lower_bound_):.1e}, "
        f"parameters rel. diff {rel:.1e}, n_iter {ref.n_iter_} / {got.n_iter_}"
    )
    for name, (mem, dsk) in times.items():
        print(f"  {name} fit time: in memory {mem:.2f} s, dask {dsk:.2f} s, ratio {dsk / mem:.2f}x")


def main():
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=1.0, help="fraction of the issue's row counts")
    p.add_argument("--iters", type=int, default=3, help="timed iterations per difference")
    p.add_argument("--only", nargs="*", default=["kmeans", "gmm", "predict", "donors"])
    p.add_argument("--no-malloc-trim", action="store_true",
                   help="start the workers without dask's MALLOC_TRIM_THRESHOLD_ (see docs/scaling.md)")
    args = p.parse_args()
    s = args.scale
    rounds = args.rounds if not args.quick else 1
    iters = 1 if args.quick else args.iters
    sizes = {
        "kmeans": (int(20_000_000 * s), max(int(1_000_000 * s), 10_000)),
        "gmm": (int(10_000_000 * s), max(int(1_000_000 * s), 10_000)),
        "predict": (int(50_000_000 * s), max(int(1_000_000 * s), 10_000)),
        "donors": (int(10_000_000 * s), max(int(1_000_000 * s), 10_000)),
    }
    if args.quick:  # four blocks each: the script runs, the figures mean nothing
        sizes = {name: (40_000, 10_000) for name in sizes}
    label = "dask, 2 workers" + (", no MALLOC_TRIM_THRESHOLD_" if args.no_malloc_trim else "")
    with warnings.catch_warnings(), without_malloc_trim() if args.no_malloc_trim else contextlib.nullcontext():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client, dask.config.set(scheduler=client):
        print(f"LocalCluster: 2 worker processes, 1 thread each; {'quick' if args.quick else f'scale {s}'}")
        if "kmeans" in args.only:
            bench_kmeans(client, *sizes["kmeans"], k=16 if args.quick else 64, rounds=rounds, iters=iters)
        if "gmm" in args.only:
            bench_gmm(client, *sizes["gmm"], k=4 if args.quick else 16, rounds=rounds, iters=iters)
        if "predict" in args.only:
            bench_predict(client, *sizes["predict"], rounds=rounds, label=label)
        if "donors" in args.only:
            bench_donors(client, sizes["donors"][0])


if __name__ == "__main__":
    main()
