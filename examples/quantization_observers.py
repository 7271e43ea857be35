"""How the observer (the choice of clipping range) decides the quantization error.

Prints two tables, as Markdown (they are the tables of docs/quantization.md):

1. the course's outlier case: values within ±50 plus one rare 1000. Min-max
   spends the int8 range on the outlier; the percentile observer clips it and
   recovers the resolution of the inliers;
2. the SQNR, ``10 log10(Σx² / Σ(x − x̂)²)`` in dB, of every observer on a
   Gaussian and on a Gaussian with 0.1 % of its values multiplied by 100,
   with int8 and int4 codes (symmetric, per tensor).

Deterministic (a seeded generator) and a few seconds long.
"""

import numpy as np

from unsup.quantization import OBSERVER_NAMES, Quantizer

rng = np.random.default_rng(0)


def fit_round_trip(X, observer, n_bits):
    """Calibrate a symmetric per-tensor quantizer on X; return it and the round trip of X."""
    q = Quantizer(n_bits, scheme="symmetric", observer=observer).fit(X)
    return q, q.inverse_transform(q.transform(X))


def outlier_table():
    inliers = rng.uniform(-50.0, 50.0, size=(9_999, 1))
    X = np.vstack([inliers, [[1000.0]]])
    is_inlier = np.arange(len(X)) < len(inliers)
    print("Outlier case: 9,999 values uniform in [-50, 50] plus one 1000 (int8, symmetric)\n")
    print("| observer | clipping range | scale | inlier MSE | inlier MSE / min-max's | MSE, all values |")
    print("|---|---|---|---|---|---|")
    reference = None
    for name in OBSERVER_NAMES:
        q, X_hat = fit_round_trip(X, name, 8)
        err = (X - X_hat) ** 2
        inlier_mse = err[is_inlier].mean()
        reference = inlier_mse if reference is None else reference
        lo, hi = q.observer_.calculate_range()
        print(
            f"| {name} | [{float(lo):.1f}, {float(hi):.1f}] | {q.scale_[0]:.4f} | {inlier_mse:.4f} "
            f"| {inlier_mse / reference:.4f} | {err.mean():.3f} |"
        )


def sqnr_db(X, X_hat):
    return 10 * np.log10(np.sum(X**2) / np.sum((X - X_hat) ** 2))


def sqnr_table():
    gaussian = rng.standard_normal((100_000, 1))
    with_outliers = gaussian.copy()
    idx = rng.choice(len(gaussian), size=len(gaussian) // 1000, replace=False)  # 0.1 %
    with_outliers[idx] *= 100.0
    datasets = {"Gaussian": gaussian, "Gaussian + 0.1 % outliers x100": with_outliers}
    print("\nSQNR in dB (higher is better), symmetric, per tensor, 100,000 values\n")
    header = " | ".join(f"{d}, int{b}" for d in datasets for b in (8, 4))
    print(f"| observer | {header} |")
    print("|---|" + "---|" * 2 * len(datasets))
    for name in OBSERVER_NAMES:
        cells = []
        for X in datasets.values():
            for n_bits in (8, 4):
                _, X_hat = fit_round_trip(X, name, n_bits)
                cells.append(f"{sqnr_db(X, X_hat):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    outlier_table()
    sqnr_table()
