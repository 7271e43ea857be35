"""Hierarchical clustering against its engines and scikit-learn: time and peak memory.

Targets (issue 5):

- n = 20,000 and 40,000, d = 16, ward: ``AgglomerativeClustering`` with each
  engine against that engine called directly (``scipy.cluster.hierarchy.linkage``,
  ``fastcluster.linkage``, ``fastcluster.linkage_vector``): time overhead
  <= 1.1x, and the peak memory of each;
- ward at n = 100,000 (d = 16) through the lean path: < 90 s and < 1 GiB of
  extra memory;
- ``DivisiveClustering`` (bisecting, euclidean) against scikit-learn's
  ``BisectingKMeans`` on 100,000 x 32, k = 64: <= 1.2x time (same
  ``random_state``, so the same tree).

Each agglomerative run happens in a fresh process, so that its peak resident
memory (``VmHWM``, reset once the data is in memory) is its own: "extra" is
that peak minus the resident memory before the call. Wall and CPU time are
both printed: the engines are single-threaded, so on a shared machine the
CPU time is the steadier figure. The big runs are
minutes each on a small machine: they run once (``--rounds`` applies to the
bisecting comparison only).

Run: ``python benchmarks/bench_hierarchical.py`` (``--quick`` for a smoke
run, ``--only engines|lean|divisive`` for one part, ``--sizes 20000`` to choose n).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import interleaved, parser, report  # noqa: E402

GiB = 2**30
# Large enough for any run here: the benchmark measures memory, it does not guard it.
NO_BUDGET = 2**40


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def contender(name, method):
    """The callable for one contender on X."""
    if name.startswith("unsup"):
        from unsup.cluster import AgglomerativeClustering

        engine = name.split(":")[1]
        est = AgglomerativeClustering(2, linkage=method, engine=engine, memory_budget=NO_BUDGET)
        return lambda X: est.fit(X).linkage_matrix_
    if name == "scipy":
        from scipy.cluster.hierarchy import linkage

        return lambda X: linkage(X, method)
    import fastcluster

    if name == "fastcluster":
        return lambda X: fastcluster.linkage(X, method)
    return lambda X: fastcluster.linkage_vector(X, method)


def data(n, d):
    return np.random.default_rng(0).standard_normal((n, d))


def worker(spec):
    """Run one contender once, in this process; print seconds and peak extra bytes as JSON."""
    fn = contender(spec["name"], spec["method"])
    X = data(spec["n"], spec["d"])
    fn(X[:50])  # imports and first-call costs out of the way
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset the peak resident set size to the current one
        before = _status_kib("VmRSS")
    except OSError:
        before = None
    c0, t0 = time.process_time(), time.perf_counter()
    Z = fn(X)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    extra = (_status_kib("VmHWM") - before) * 1024 if before is not None else None
    print(json.dumps({"seconds": seconds, "cpu": cpu, "extra": extra, "top": float(Z[-1, 2])}))


def run_isolated(name, method, n, d):
    spec = json.dumps({"name": name, "method": method, "n": n, "d": d})
    done = subprocess.run(
        [sys.executable, __file__, "--worker", spec], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{name} n={n} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt_mem(b):
    return "n/a" if b is None else f"{b / 2**20:9.1f} MiB"


def compare(pairs, method, n, d):
    """unsup against each engine called directly, each run once in its own process, alternating."""
    rows = {}
    for i, (ours, anchor) in enumerate(pairs):
        order = (ours, anchor) if i % 2 == 0 else (anchor, ours)
        for name in order:
            rows[name] = run_isolated(name, method, n, d)
    print(f"\n{method}, n = {n:,}, d = {d}: one run each, fresh process")
    print(f"  {'contender':<24s} {'wall time':>10s} {'CPU time':>10s} {'peak extra memory':>18s}")
    ratios = {}
    for ours, anchor in pairs:
        for name in (anchor, ours):
            r = rows[name]
            print(f"  {name:<24s} {r['seconds']:9.2f}s {r['cpu']:9.2f}s {fmt_mem(r['extra']):>18s}")
        wall = rows[ours]["seconds"] / rows[anchor]["seconds"]
        cpu = rows[ours]["cpu"] / rows[anchor]["cpu"]
        assert abs(rows[ours]["top"] - rows[anchor]["top"]) <= 1e-9 * abs(rows[anchor]["top"]), "trees differ"
        ratios[f"{ours} / {anchor}"] = (wall, cpu)
        print(f"  -> ratio {wall:.3f}x wall, {cpu:.3f}x CPU (target <= 1.1)")
    return rows, ratios


ENGINE_PAIRS = [("unsup:scipy", "scipy"), ("unsup:fastcluster", "fastcluster"), ("unsup:lean", "fastcluster_vector")]


def engines(sizes, d, which=("scipy", "fastcluster", "lean")):
    summary = {}
    pairs = [pair for pair in ENGINE_PAIRS if pair[0].split(":")[1] in which]
    for n in sizes:
        _, ratios = compare(pairs, "ward", n, d)
        summary[n] = ratios
    print("\nSummary: time overhead of AgglomerativeClustering over its engine (ward)")
    for n, ratios in summary.items():
        for what, (wall, cpu) in ratios.items():
            print(f"  n = {n:>7,}  {what:<36s} ratio {wall:.3f}x wall, {cpu:.3f}x CPU")


def lean(n, d):
    rows, _ = compare([("unsup:auto", "fastcluster_vector")], "ward", n, d)
    r = rows["unsup:auto"]
    print(
        f"\nward at n = {n:,} through the lean path: {r['seconds']:.1f} s wall, {r['cpu']:.1f} s CPU "
        f"(target < 90 s), extra memory {fmt_mem(r['extra']).strip()} (target < 1 GiB)"
    )


def divisive(n, d, k, rounds):
    from sklearn.cluster import BisectingKMeans

    from unsup.cluster import DivisiveClustering

    X = data(n, d)
    fits = {}

    def run(name, make):
        def go():
            fits[name] = make().fit(X)

        return go

    times = interleaved(
        {
            "sklearn BisectingKMeans": run("sk", lambda: BisectingKMeans(k, random_state=0)),
            "unsup DivisiveClustering (bisecting)": run("us", lambda: DivisiveClustering(k, random_state=0)),
        },
        rounds=rounds,
        warmup=0 if rounds == 1 else 1,
    )
    report(f"bisecting k-means, {n:,} x {d}, k = {k}", times, "sklearn BisectingKMeans", unit="s")
    print(f"  SSE: unsup {fits['us'].inertia_:.6g}, sklearn {fits['sk'].inertia_:.6g} (target: no worse)")


def quick_engines(n, d, rounds):
    """In-process timing of each engine pair (the quick smoke run)."""
    X = data(n, d)
    for ours, anchor in ENGINE_PAIRS:
        times = interleaved({ours: lambda o=ours: contender(o, "ward")(X), anchor: lambda a=anchor: contender(a, "ward")(X)}, rounds=rounds)
        report(f"ward, n = {n}, d = {d}", times, anchor)


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--only", choices=["engines", "lean", "divisive"], default=None)
    p.add_argument("--sizes", type=int, nargs="+", default=[20_000, 40_000])
    p.add_argument("--lean-n", type=int, default=100_000)
    p.add_argument("--engines", nargs="+", choices=["scipy", "fastcluster", "lean"],
                   default=["scipy", "fastcluster", "lean"], help="engine pairs to time")
    p.add_argument("--worker", default=None, help="internal: run one contender (JSON spec)")
    args = p.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return
    if args.quick:
        quick_engines(1_500, 16, rounds=args.rounds)  # in-process: no memory figures
        divisive(1_000, 8, 4, rounds=args.rounds)
        return
    if args.only in (None, "engines"):
        engines(args.sizes, 16, args.engines)
    if args.only in (None, "lean"):
        lean(args.lean_n, 16)
    if args.only in (None, "divisive"):
        divisive(100_000, 32, 64, rounds=args.rounds if args.rounds != 7 else 3)


if __name__ == "__main__":
    main()
