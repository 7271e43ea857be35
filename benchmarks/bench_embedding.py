"""QuantizedEmbedding: recall@10 of searching the codes, and kneighbors speed against scikit-learn.

Targets (issue 7):

- recall@10 against the exact float32 neighbours, on ``load_digits``
  standardised (64-d), on a 16-d PCA of it and on 16-d Autoencoder latents,
  each point's neighbours among the others (``kneighbors()``): 8-bit >= 0.995
  with rescoring (>= 0.97 without, on 16-d), 4-bit + rescoring >= 0.99, 1-bit +
  rescoring >= 0.85;
- ``kneighbors`` over 8-bit codes no slower than
  ``NearestNeighbors(algorithm="brute")`` on the float32 vectors (time ratio
  <= 1.0), at 4x less memory: on the digits (each point against the others)
  and on 100,000 x 64 clustered vectors with 1,000 queries, interleaved.

Recall is :func:`unsup.metrics.recall_at_k`, tie-aware: a returned neighbour
counts when its exact distance is within the exact 10th-neighbour distance
(float64 arithmetic on the float32 vectors).

Run from the repository root:

    python benchmarks/bench_embedding.py            # full size
    python benchmarks/bench_embedding.py --quick    # smoke run
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import interleaved, parser, report  # noqa: E402

from unsup.metrics import recall_at_k  # noqa: E402 - tie-aware recall@k against exact float64 search
from unsup.quantization import QuantizedEmbedding  # noqa: E402

K = 10

# (label, parameters, rescore, target for 64-d, target for 16-d), in table order.
CONFIGS = [
    ("8-bit, rescored", {"n_bits": 8}, True, 0.995, 0.995),
    ("8-bit, no rescoring", {"n_bits": 8}, False, None, 0.97),
    ("8-bit, codes only (keep_float=False)", {"n_bits": 8, "keep_float": False}, True, None, None),
    ("8-bit percentile, no rescoring", {"n_bits": 8, "observer": "percentile"}, False, None, 0.97),
    ("4-bit, rescored", {"n_bits": 4}, True, 0.99, 0.99),
    ("4-bit, no rescoring", {"n_bits": 4}, False, None, None),
    ("4-bit mse, no rescoring", {"n_bits": 4, "observer": "mse"}, False, None, None),
    ("1-bit, rescored", {"n_bits": 1}, True, 0.85, 0.85),
    ("1-bit, no rescoring (Hamming)", {"n_bits": 1}, False, None, None),
]


def digits_latents(quick):
    """The three embeddings of the digits: standardised, 16-d PCA, 16-d Autoencoder latents."""
    X = StandardScaler().fit_transform(load_digits().data).astype(np.float32)
    sets = {"digits 64-d": X, "PCA 16-d": PCA(16, random_state=0).fit_transform(X).astype(np.float32)}
    try:
        from unsup.neural import Autoencoder
    except ImportError:
        print("(unsup.neural not available: no Autoencoder rows)")
        return sets
    epochs = 2 if quick else 60
    ae = Autoencoder(16, hidden_layer_sizes=(64,), max_epochs=epochs, batch_size=64, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at the epoch cap
        ae.fit(X)
    sets[f"Autoencoder 16-d ({epochs} epochs)"] = ae.transform(X).astype(np.float32)
    return sets


def recall_table(quick):
    sets = digits_latents(quick)
    names = list(sets)
    print("\nrecall@10 on the digits (1797 points, each against the 1796 others), euclidean")
    print(f"  {'configuration':40s}" + "".join(f"{n:>30s}" for n in names))
    failures = []
    for label, params, rescore, target64, target16 in CONFIGS:
        cells = []
        for name in names:
            V = sets[name]
            qe = QuantizedEmbedding(**params).fit(V)
            r = recall_at_k(V, qe.kneighbors(None, K, rescore=rescore)[1])
            target = target64 if name.startswith("digits") else target16
            mark = ""
            if target is not None:
                mark = f" (>= {target})" if r >= target else f" (MISSES {target})"
                if r < target:
                    failures.append((label, name, r, target))
            cells.append(f"{r:.4f}{mark}")
        print(f"  {label:40s}" + "".join(f"{c:>30s}" for c in cells))
    print("\nrecall@10, cosine, rescored")
    for n_bits in (8, 4, 1):
        cells = []
        for name in names:
            V = sets[name]
            qe = QuantizedEmbedding(n_bits=n_bits).fit(V)
            cells.append(f"{recall_at_k(V, qe.kneighbors(None, K, metric='cosine')[1], metric='cosine'):.4f}")
        print(f"  {f'{n_bits}-bit, rescored':40s}" + "".join(f"{c:>30s}" for c in cells))
    print("\nrecall targets: " + ("all met" if not failures else f"{len(failures)} missed: {failures}"))


def clustered(n, d, n_clusters, rng):
    """Embedding-like data: anisotropic Gaussian clusters."""
    centres = rng.standard_normal((n_clusters, d)) * 3
    widths = rng.uniform(0.3, 1.5, (n_clusters, d))
    labels = rng.integers(0, n_clusters, n)
    return (centres[labels] + rng.standard_normal((n, d)) * widths[labels]).astype(np.float32)


def speed(n_base, n_queries, d, rounds):
    rng = np.random.default_rng(0)
    data = clustered(n_base + n_queries, d, 100, rng)
    base, queries = data[:n_base], data[n_base:]
    nn = NearestNeighbors(n_neighbors=K, algorithm="brute").fit(base)
    exact = nn.kneighbors(queries)[1]
    models = {
        "unsup 8-bit, no rescoring": (QuantizedEmbedding(n_bits=8).fit(base), False),
        "unsup 8-bit, rescored (float kept)": (QuantizedEmbedding(n_bits=8).fit(base), True),
        "unsup 8-bit, codes only": (QuantizedEmbedding(n_bits=8, keep_float=False).fit(base), True),
        "unsup 4-bit, rescored": (QuantizedEmbedding(n_bits=4).fit(base), True),
        "unsup 1-bit, rescored": (QuantizedEmbedding(n_bits=1).fit(base), True),
    }
    fns = {"sklearn NearestNeighbors brute float32": lambda: nn.kneighbors(queries)}
    for name, (qe, rescore) in models.items():
        fns[name] = lambda qe=qe, rescore=rescore: qe.kneighbors(queries, K, rescore=rescore)
    times = interleaved(fns, rounds=rounds)
    ratios = report(
        f"kneighbors, k={K}: {n_base} x {d} base, {n_queries} queries (clustered, float32)",
        times, "sklearn NearestNeighbors brute float32",
    )
    float_bytes = base.nbytes
    print(f"\n  {'':40s} {'time ratio':>10s} {'recall@10':>10s} {'codes':>12s} {'index held':>12s}")
    print(f"  {'sklearn (float32 array)':40s} {1.0:10.2f} {1.0:10.4f} {'':>12s} {float_bytes / 1e6:9.1f} MB")
    for name, (qe, rescore) in models.items():
        found = qe.kneighbors(queries, K, rescore=rescore)[1]
        recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact)])
        held = qe.codes_.nbytes + (qe.embedding_.nbytes if qe.embedding_ is not None else 0)
        print(
            f"  {name:40s} {ratios[name]:10.2f} {recall:10.4f} {qe.codes_.nbytes / 1e6:9.1f} MB "
            f"{held / 1e6:9.1f} MB"
        )
    codes8 = models["unsup 8-bit, codes only"][0].codes_.nbytes
    print(
        f"\n  8-bit scan: {ratios['unsup 8-bit, no rescoring']:.2f}x sklearn's time (target <= 1.00); "
        f"codes {float_bytes / codes8:.1f}x smaller than the float32 array (target 4x)"
    )
    print(
        "  (index held = codes + the float vectors kept for rescoring; keep_float=False holds "
        "the codes alone and rescoring then uses the dequantised vectors)"
    )


def speed_digits(rounds):
    """kneighbors() of every digit among the others (X=None), 8-bit codes against float32."""
    X = StandardScaler().fit_transform(load_digits().data).astype(np.float32)
    nn = NearestNeighbors(n_neighbors=K, algorithm="brute").fit(X)
    qe = QuantizedEmbedding(n_bits=8).fit(X)
    times = interleaved(
        {
            "sklearn NearestNeighbors brute float32": lambda: nn.kneighbors(),
            "unsup 8-bit, no rescoring": lambda: qe.kneighbors(None, K, rescore=False),
            "unsup 8-bit, rescored (float kept)": lambda: qe.kneighbors(None, K),
        },
        rounds=rounds,
    )
    report(f"kneighbors() on the digits, k={K}: 1797 x 64, each point against the others", times,
           "sklearn NearestNeighbors brute float32")


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    recall_table(args.quick)
    speed_digits(args.rounds)
    if args.quick:
        speed(5_000, 200, 64, args.rounds)
    else:
        speed(100_000, 1_000, 64, args.rounds)


if __name__ == "__main__":
    main()
