"""Quantizer round trip and calibration against an allocating copy and torch.

On 200 MB of float32 (1,000,000 x 50: 50M values per tensor, 50 channels),
through the public ``Quantizer.transform`` + ``inverse_transform`` (input
validation and the finite check included):

- the int8 round trip against ``X.copy()`` (target: time ratio <= 2.0, i.e. at
  least half the speed of a copy) and against
  ``torch.quantize_per_tensor`` / ``quantize_per_channel`` + ``dequantize``
  (target: at least 2.5x torch's speed);
- calibration, ``Quantizer().fit(X)`` with the min-max observer, against
  ``X.copy()`` (target: time ratio <= 1.25, i.e. at least 0.8x copy speed).

Run from the repository root:

    python benchmarks/bench_quantization.py            # full size
    python benchmarks/bench_quantization.py --quick    # smoke run
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _harness import interleaved, parser, report  # noqa: E402

from unsup.quantization import Quantizer  # noqa: E402

# torch marks its quantized tensors deprecated; they are the anchor measured here.
warnings.filterwarnings("ignore", message=".*quantize_per_.*deprecated", category=UserWarning)


def round_trip_case(title, X, granularity, rounds):
    """Time transform + inverse_transform, X.copy() and torch's round trip; print the ratios."""
    q = Quantizer(8, granularity=granularity).fit(X)
    T = torch.from_numpy(X)
    if granularity == "per_tensor":
        scale = float(q.scale_[0])

        def torch_round_trip():
            return torch.quantize_per_tensor(T, scale, 0, torch.qint8).dequantize()

    else:
        scales = torch.from_numpy(q.scale_.astype(np.float64))
        zero_points = torch.zeros(X.shape[1], dtype=torch.int64)

        def torch_round_trip():
            return torch.quantize_per_channel(T, scales, zero_points, 1, torch.qint8).dequantize()

    # Same parameters, same results (torch's qint8 also allows -128, unused here).
    np.testing.assert_array_equal(q.inverse_transform(q.transform(X)), torch_round_trip().numpy())
    times = interleaved(
        {
            "X.copy()": lambda: X.copy(),
            "unsup transform + inverse_transform": lambda: q.inverse_transform(q.transform(X)),
            "torch quantize + dequantize": torch_round_trip,
        },
        rounds=rounds,
    )
    ratios = report(title, times, "X.copy()")
    vs_copy = ratios["unsup transform + inverse_transform"]
    vs_torch = ratios["torch quantize + dequantize"] / vs_copy
    print(f"  unsup round trip: {vs_copy:.2f}x the time of X.copy() (target <= 2.00), "
          f"{1 / vs_copy:.2f}x copy speed")
    print(f"  unsup round trip: {vs_torch:.2f}x torch's speed (target >= 2.50)")


def calibration_case(title, X, granularity, rounds):
    """Time Quantizer().fit(X) (min-max calibration) against X.copy()."""
    times = interleaved(
        {
            "X.copy()": lambda: X.copy(),
            "unsup Quantizer.fit (minmax)": lambda: Quantizer(8, granularity=granularity).fit(X),
        },
        rounds=rounds,
    )
    ratio = report(title, times, "X.copy()")["unsup Quantizer.fit (minmax)"]
    print(f"  calibration: {ratio:.2f}x the time of X.copy() (target <= 1.25), "
          f"{1 / ratio:.2f}x copy speed (target >= 0.80)")


def main():
    args = parser(__doc__.splitlines()[0]).parse_args()
    n_samples, n_features = (20_000, 50) if args.quick else (1_000_000, 50)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    X *= rng.uniform(0.5, 4.0, n_features).astype(np.float32)  # channels of different ranges
    mb = X.nbytes / 1e6
    print(f"X: {n_samples} x {n_features} float32, {mb:.0f} MB; torch threads: {torch.get_num_threads()}")
    for granularity in ("per_tensor", "per_channel"):
        round_trip_case(f"int8 round trip, {granularity} ({mb:.0f} MB)", X, granularity, args.rounds)
    for granularity in ("per_tensor", "per_channel"):
        calibration_case(f"calibration, {granularity} ({mb:.0f} MB)", X, granularity, args.rounds)


if __name__ == "__main__":
    main()
