"""GaussianMixture per-EM-step time against scikit-learn's, at the same lower bound.

Target (issue 4), on 100,000 x 16, k = 16, the same data and the same initial
parameters (``weights_init``, ``means_init``, ``precisions_init``), the same
number of iterations (``tol=0``), interleaved: per-step time <= 0.5x
scikit-learn's for ``full`` and ``diag``, float32 and float64. ``tied`` and
``spherical`` are timed too (no target). Each fit's time is divided by its
``n_iter_`` (it includes the initialisation and the final E-step, for both).

Run: ``python benchmarks/bench_gmm.py`` (``--quick`` for a smoke run,
``--types full diag tied spherical`` to choose).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SKGaussianMixture

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import interleaved, parser, report  # noqa: E402

from unsup.mixture import GaussianMixture  # noqa: E402


def blobs(n_samples, n_features, k, rng):
    """k Gaussian clusters with random centres and random full covariances."""
    centres = 4.0 * rng.standard_normal((k, n_features))
    mix = rng.standard_normal((k, n_features, n_features)) / np.sqrt(n_features)
    labels = rng.integers(0, k, n_samples)
    noise = rng.standard_normal((n_samples, n_features))
    return centres[labels] + np.einsum("nd,nde->ne", noise, mix[labels] + np.eye(n_features))


def speed(n_samples, n_features, k, n_iter, rounds, types):
    rng = np.random.default_rng(0)
    X64 = blobs(n_samples, n_features, k, rng)
    summary = []
    for covariance_type in types:
        for dtype in (np.float64, np.float32):
            X = X64.astype(dtype)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                start = SKGaussianMixture(k, covariance_type=covariance_type, max_iter=1, random_state=0).fit(X)
            init = {
                "weights_init": start.weights_,
                "means_init": start.means_,
                "precisions_init": start.precisions_,
            }
            fitted = {}

            def per_step(cls, name):
                def run():
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", ConvergenceWarning)
                        gm = cls(k, covariance_type=covariance_type, max_iter=n_iter, tol=0, **init).fit(X)
                    fitted[name] = gm
                    return gm.n_iter_

                return run

            names = ("sklearn GaussianMixture", "unsup GaussianMixture")
            times = interleaved(
                {names[0]: per_step(SKGaussianMixture, names[0]), names[1]: per_step(GaussianMixture, names[1])},
                rounds=rounds,
            )
            dt = np.dtype(dtype).name
            r = report(
                f"{covariance_type} {dt}: {n_samples} x {n_features}, k = {k}, time per EM step ({n_iter} steps)",
                times, names[0],
            )
            lb_sk, lb_un = float(fitted[names[0]].lower_bound_), float(fitted[names[1]].lower_bound_)
            rel = abs(lb_un - lb_sk) / abs(lb_sk)
            print(f"  final lower bound: sklearn {lb_sk:.12f}  unsup {lb_un:.12f}  (relative difference {rel:.1e})")
            summary.append((covariance_type, dt, r[names[1]], rel))
    print("\nSummary (median ratio unsup / sklearn per EM step; target <= 0.5 for full and diag)")
    for covariance_type, dt, ratio, rel in summary:
        print(f"  {covariance_type:9s} {dt:8s} ratio {ratio:.2f}x   lower bounds differ by {rel:.1e}")


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--types", nargs="+", default=["full", "diag", "tied", "spherical"],
                   choices=["full", "diag", "tied", "spherical"])
    args = p.parse_args(argv)
    if args.quick:
        speed(2_000, 4, 4, 3, rounds=1, types=args.types)
    else:
        speed(100_000, 16, 16, 10, rounds=args.rounds, types=args.types)


if __name__ == "__main__":
    main()
