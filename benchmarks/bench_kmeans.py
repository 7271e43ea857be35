"""KMeans per-iteration time against its anchors, and ARI on load_digits per metric.

Targets (issue 2), on 200,000 x 32, k = 64, same data, same initial centres,
same iteration count (tol=0), interleaved:

- euclidean per-iteration time <= 1.0x scikit-learn's KMeans (float32 and float64);
- cosine (spherical k-means) <= 1.5x scikit-learn's euclidean;
- manhattan (k-medians) <= 1.5x ``scipy.spatial.distance.cdist(X, C, "cityblock")`` alone.

Run: ``python benchmarks/bench_kmeans.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import interleaved, parser, report  # noqa: E402

from unsup.cluster import KMeans  # noqa: E402


def per_iteration(make):
    """A callable that fits and returns the iteration count (the harness divides by it)."""

    def run():
        return make().n_iter_

    return run


def speed(n_samples, n_features, k, n_iter, rounds):
    rng = np.random.default_rng(0)
    ratios = {}
    for dtype in (np.float32, np.float64):
        X = rng.standard_normal((n_samples, n_features)).astype(dtype)
        C = X[rng.choice(n_samples, k, replace=False)].copy()

        def fit(cls, metric=None):
            kw = {} if metric is None else {"metric": metric}
            return lambda: cls(k, init=C, n_init=1, max_iter=n_iter, tol=0, **kw).fit(X)

        times = interleaved(
            {
                "sklearn KMeans (euclidean)": per_iteration(fit(SKKMeans)),
                "unsup KMeans euclidean": per_iteration(fit(KMeans, "euclidean")),
                "unsup KMeans cosine": per_iteration(fit(KMeans, "cosine")),
                "unsup KMeans manhattan": per_iteration(fit(KMeans, "manhattan")),
                "scipy cdist cityblock alone": lambda: cdist(X, C, "cityblock"),
            },
            rounds=rounds,
        )
        name = np.dtype(dtype).name
        r = report(
            f"{name}: {n_samples} x {n_features}, k = {k}, per-iteration time", times,
            "sklearn KMeans (euclidean)",
        )
        r_l1 = report(f"{name}: manhattan vs cdist alone", {
            "scipy cdist cityblock alone": times["scipy cdist cityblock alone"],
            "unsup KMeans manhattan": times["unsup KMeans manhattan"],
        }, "scipy cdist cityblock alone")
        ratios[name] = {
            "euclidean / sklearn (target <= 1.0)": r["unsup KMeans euclidean"],
            "cosine / sklearn euclidean (target <= 1.5)": r["unsup KMeans cosine"],
            "manhattan / cdist alone (target <= 1.5)": r_l1["unsup KMeans manhattan"],
        }
    print("\nSummary (median ratios)")
    for name, rs in ratios.items():
        for what, value in rs.items():
            print(f"  {name:8s} {what:45s} {value:.2f}x")


def digits_ari():
    X, y = load_digits(return_X_y=True)
    print("\nARI on load_digits (k = 10, n_init = 10, random_state = 0)")
    print("  metric        centre            ARI")
    cases = [
        ("euclidean", None, X),
        ("manhattan", None, X),
        ("cosine", None, X),
        ("chebyshev", None, X),
        ("minkowski", {"p": 3}, X),
        ("hamming", None, (X > 7).astype(float)),  # binarised pixels
    ]
    for metric, params, data in cases:
        km = KMeans(10, metric=metric, metric_params=params, n_init=10, random_state=0).fit(data)
        rule = km._metric.centre_rule
        label = metric + (" p=3" if params else "") + (" (X>7)" if metric == "hamming" else "")
        print(f"  {label:13s} {rule:16s} {adjusted_rand_score(y, km.labels_):.3f}")


def main(argv=None):
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    if args.quick:
        speed(2_000, 8, 8, 3, rounds=1)
    else:
        speed(200_000, 32, 64, 10, rounds=args.rounds)
        digits_ari()


if __name__ == "__main__":
    main()
