"""ONNX deployment: onnxruntime against unsup's own inference, and file sizes.

Targets (issue 16), same data, interleaved rounds, in one process:

- Autoencoder 784-512-256-32, float and post-training int8: onnxruntime rows/s
  of the encoder (the ``transform`` output, the graph cut there with
  ``onnx.utils.Extractor``) against unsup's ``transform`` (target: onnxruntime
  float >= 1.0x unsup's rows/s), and the sizes of the full ``.onnx`` files
  (int8 <= 0.3x float);
- KMeans k=64 ``predict`` over 1,000,000 x 32 (float32): onnxruntime (the
  ``label`` output; the graph computes in float64, see docs/deployment.md)
  against unsup's ``predict``.

Ratios are onnxruntime time / unsup time: below 1 means onnxruntime is faster.
Both use their default threads (onnxruntime: one per core; unsup: its own
choice).

Run: ``python benchmarks/bench_onnx.py`` (``--quick`` for a smoke run).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import interleaved, parser, report  # noqa: E402

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

from unsup.cluster import KMeans  # noqa: E402
from unsup.neural import Autoencoder  # noqa: E402
from unsup.onnx import to_onnx  # noqa: E402


def session(model, outputs):
    """An onnxruntime session of ``model`` cut down to ``outputs``."""
    model = onnx.utils.Extractor(model).extract_model(["X"], outputs)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def autoencoder(n_rows, sizes, rounds):
    n_features, *hidden, n_components = sizes
    rng = np.random.default_rng(0)
    # Structured data (a low-rank signal plus noise), so the network has something to learn.
    basis = rng.standard_normal((48, n_features)).astype(np.float32)
    X = (rng.standard_normal((n_rows, 48)).astype(np.float32) @ basis) / 7.0
    X += 0.1 * rng.standard_normal(X.shape).astype(np.float32)
    train = X[: min(n_rows, 4000)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ae = Autoencoder(n_components, hidden_layer_sizes=tuple(hidden), max_epochs=2, random_state=0).fit(train)
    ae_int8 = ae.quantize(train[:1000])
    model, model_int8 = to_onnx(ae, X[:1]), to_onnx(ae_int8, X[:1])
    size, size_int8 = len(model.SerializeToString()), len(model_int8.SerializeToString())
    s_float, s_int8 = session(model, ["transform"]), session(model_int8, ["transform"])
    Z_float = s_float.run(None, {"X": X})[0]
    Z_int8 = s_int8.run(None, {"X": X})[0]
    ref, ref_int8 = ae.transform(X), ae_int8.transform(X)
    rel = lambda a, b: float(np.linalg.norm(a - b) / np.linalg.norm(b))  # noqa: E731
    name = "-".join(map(str, sizes))
    print(f"\nAutoencoder {name} on {n_rows} x {n_features} float32 rows")
    print(f"  .onnx size: float {size:,} bytes, int8 {size_int8:,} bytes, ratio {size_int8 / size:.3f}x")
    print(f"  agreement with unsup: float rel. error {rel(Z_float, ref):.2e}, int8 rel. error {rel(Z_int8, ref_int8):.2e}")
    times = interleaved(
        {
            "unsup Autoencoder.transform (float)": lambda: ae.transform(X),
            "onnxruntime transform (float)": lambda: s_float.run(None, {"X": X}),
            "unsup transform (PTQ int8)": lambda: ae_int8.transform(X),
            "onnxruntime transform (int8 weights)": lambda: s_int8.run(None, {"X": X}),
        },
        rounds=rounds,
    )
    ratios = report(f"Autoencoder {name} transform of {n_rows} rows", times, "unsup Autoencoder.transform (float)")
    for key, ts in times.items():
        print(f"  {key:<40s} {n_rows / np.median(ts):12,.0f} rows/s")
    return ratios


def kmeans(n_rows, n_features, k, rounds):
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((k, n_features)).astype(np.float32) * 3
    X = centres[rng.integers(k, size=n_rows)] + rng.standard_normal((n_rows, n_features)).astype(np.float32)
    km = KMeans(k, n_init=1, max_iter=20, random_state=0).fit(X[: min(n_rows, 50_000)])
    s = session(to_onnx(km, X[:1]), ["label"])
    labels = s.run(None, {"X": X})[0]
    agree = float(np.mean(labels == km.predict(X)))
    print(f"\nKMeans k={k} predict on {n_rows:,} x {n_features} float32: labels equal on {agree:.6f} of the rows")
    times = interleaved(
        {"unsup KMeans.predict": lambda: km.predict(X), "onnxruntime label": lambda: s.run(None, {"X": X})},
        rounds=rounds,
        warmup=1,
    )
    ratios = report(f"KMeans k={k} predict over {n_rows:,} x {n_features}", times, "unsup KMeans.predict")
    for key, ts in times.items():
        print(f"  {key:<40s} {n_rows / np.median(ts):12,.0f} rows/s")
    return ratios


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    if args.quick:
        autoencoder(500, (64, 32, 16, 4), args.rounds)
        kmeans(5000, 8, 8, args.rounds)
    else:
        autoencoder(20_000, (784, 512, 256, 32), args.rounds)
        kmeans(1_000_000, 32, 64, args.rounds)


if __name__ == "__main__":
    main()
