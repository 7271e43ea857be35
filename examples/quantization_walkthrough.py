"""The course's quantization walkthrough, with ``unsup.quantization``.

Four steps, each computed by hand with numpy from the course's formulas and
then by the library, which must agree:

1. symmetric vs asymmetric (affine) quantization of a small vector, n bits:

   - asymmetric: s = (α − β) / (2ⁿ − 1), z = round(−β / s),
     x_q = clamp(round(x / s) + z, 0, 2ⁿ − 1), x̂ = s (x_q − z);
   - symmetric: s = max|x| / (2ⁿ⁻¹ − 1), x_q = clamp(round(x / s), −(2ⁿ⁻¹ − 1), 2ⁿ⁻¹ − 1),
     x̂ = s x_q;

2. the outlier case: values within ±50 plus one rare 1000. Min-max spends the
   range on the outlier; the percentile range clips it and keeps the inliers'
   resolution;
3. percentile and MSE ranges on heavy-tailed data: clipping error against
   rounding error, at 8 and 4 bits;
4. per-channel vs per-tensor ranges on features of very different scales.

Prints a report; deterministic (seeded) and a few seconds long.
"""

import numpy as np

from unsup.quantization import MSEObserver, PercentileObserver, Quantizer, calculate_qparams

rng = np.random.default_rng(0)


def round_trip(q, X):
    """Codes and dequantised values of X under a fitted quantizer."""
    codes = q.transform(X)
    return codes, q.inverse_transform(codes)


def section(title):
    print(f"\n{title}\n{'=' * len(title)}")


# ------------------------------------------------------------------ 1. schemes
section("1. Symmetric vs asymmetric, 8 bits, on a small vector")
x = np.array([-0.35, 0.0, 0.42, 1.0, 1.63, 2.5])  # skewed, as ReLU-like activations are
n = 8
print(f"x = {x.tolist()}")

# Asymmetric, by hand (the range always contains 0).
alpha, beta = max(x.max(), 0.0), min(x.min(), 0.0)
s_a = (alpha - beta) / (2**n - 1)
z = int(np.round(-beta / s_a))
xq_a = np.clip(np.round(x / s_a) + z, 0, 2**n - 1).astype(int)
xhat_a = s_a * (xq_a - z)
print("\nasymmetric: s = (α − β)/(2ⁿ − 1), z = round(−β/s), x_q = clamp(round(x/s) + z, 0, 2ⁿ − 1)")
print(f"  α = {alpha}, β = {beta}: s = {alpha - beta:.2f}/{2**n - 1} = {s_a:.6f}, z = round({-beta / s_a:.3f}) = {z}")
print(f"  x_q = {xq_a.tolist()}")
print(f"  x̂ = s (x_q − z) = {np.round(xhat_a, 4).tolist()}")

# Symmetric, by hand.
qmax = 2 ** (n - 1) - 1
s_s = np.abs(x).max() / qmax
xq_s = np.clip(np.round(x / s_s), -qmax, qmax).astype(int)
xhat_s = s_s * xq_s
print("\nsymmetric: s = max|x|/(2ⁿ⁻¹ − 1), x_q = clamp(round(x/s), −(2ⁿ⁻¹ − 1), 2ⁿ⁻¹ − 1)")
print(f"  s = {np.abs(x).max()}/{qmax} = {s_s:.6f}, z = 0")
print(f"  x_q = {xq_s.tolist()}")
print(f"  x̂ = s x_q = {np.round(xhat_s, 4).tolist()}")

# The library: the same parameters and codes (codes -> int for printing).
X = x.reshape(-1, 1)
qa = Quantizer(n, scheme="asymmetric").fit(X)
qs = Quantizer(n, scheme="symmetric").fit(X)
codes_a, lib_a = round_trip(qa, X)
codes_s, lib_s = round_trip(qs, X)
assert codes_a.ravel().tolist() == xq_a.tolist() and int(qa.zero_point_[0]) == z
assert codes_s.ravel().tolist() == xq_s.tolist()
np.testing.assert_allclose(qa.scale_[0], s_a, rtol=1e-6)
np.testing.assert_allclose(qs.scale_[0], s_s, rtol=1e-6)
print(
    f"\nunsup.quantization.Quantizer gives the same: asymmetric scale {qa.scale_[0]:.6f}, zero point "
    f"{int(qa.zero_point_[0])}, codes {codes_a.dtype}; symmetric scale {qs.scale_[0]:.6f}, codes {codes_s.dtype}"
)
scale, zero_point = calculate_qparams(beta, alpha, n_bits=n, scheme="asymmetric")
print(f"  calculate_qparams(β, α, scheme='asymmetric'): scale {float(scale):.6f}, zero point {int(zero_point)}")
err_a, err_s = np.abs(x - lib_a.ravel()), np.abs(x - lib_s.ravel())
print(f"  mean |x − x̂| on these six values: asymmetric {err_a.mean():.5f}, symmetric {err_s.mean():.5f}")
unused = int(np.round(x.min() / s_s)) + qmax
print(
    f"  The symmetric grid spans ±{np.abs(x).max()} although nothing lies below {x.min()}: {unused} of its "
    f"{2 * qmax + 1} levels are never used, so its step is {s_s / s_a:.2f}x the asymmetric one."
)
U = rng.uniform(x.min(), x.max(), size=(10_000, 1))  # many values from the same range, same parameters
rmse_a = np.sqrt(np.mean((U - round_trip(qa, U)[1]) ** 2))
rmse_s = np.sqrt(np.mean((U - round_trip(qs, U)[1]) ** 2))
print(
    f"  On 10,000 values uniform in [β, α], quantized with the same parameters: RMSE asymmetric {rmse_a:.5f}, "
    f"symmetric {rmse_s:.5f} (ratio {rmse_s / rmse_a:.2f}, the ratio of the steps; uniform rounding error is s/√12)"
)


# ------------------------------------------------------------------ 2. outlier
section("2. The outlier case: 9,999 values within ±50 and one 1000 (int8, symmetric)")
inliers = rng.uniform(-50.0, 50.0, size=9_999)
values = np.append(inliers, 1000.0).reshape(-1, 1)
is_inlier = np.arange(len(values)) < len(inliers)
print(f"{'range':<28} {'clip range':>20} {'scale':>9} {'inlier MSE':>11} {'outlier |error|':>16}")
results = {}
for name, observer in (("min-max", "minmax"), ("percentile 99.9 / 0.1", PercentileObserver(percentile=99.9))):
    q = Quantizer(8, scheme="symmetric", observer=observer).fit(values)
    _, v_hat = round_trip(q, values)
    lo, hi = q.observer_.calculate_range()
    mse = float(np.mean((values[is_inlier] - v_hat[is_inlier]) ** 2))
    results[name] = mse
    out_err = float(np.abs(values[~is_inlier] - v_hat[~is_inlier]).max())
    print(f"{name:<28} {f'[{float(lo):.1f}, {float(hi):.1f}]':>20} {q.scale_[0]:9.4f} {mse:11.4f} {out_err:16.1f}")
ratio = results["min-max"] / results["percentile 99.9 / 0.1"]
print(
    f"Min-max sets s = 1000/127 = {1000 / 127:.2f}: each inlier is rounded on a grid of step 7.87, "
    f"and only about {2 * 50 / (1000 / 127):.0f} levels cover ±50."
)
print(
    f"The percentile range clips the outlier to about 50 (it saturates, never wraps) and the inliers' "
    f"MSE drops {ratio:.0f}x: the step falls to about 50/127."
)

# --------------------------------------------------------- 3. percentile / MSE
section("3. Percentile and MSE ranges on heavy-tailed data (Student t, 3 degrees of freedom)")
t = rng.standard_t(3, size=(100_000, 1))
print(
    f"100,000 values, max |x| = {np.abs(t).max():.1f}, 99.9th percentile of |x| = {np.percentile(np.abs(t), 99.9):.1f}"
)
print(f"{'range':<18} {'bits':>4} {'clip range':>18} {'MSE':>10} {'clipped':>8}")
for n_bits in (8, 4):
    for name, observer in (
        ("min-max", "minmax"),
        ("percentile 99.9", PercentileObserver(percentile=99.9)),
        ("percentile 99.99", PercentileObserver(percentile=99.99)),
        ("MSE", MSEObserver()),
    ):
        q = Quantizer(n_bits, scheme="symmetric", observer=observer).fit(t)
        _, t_hat = round_trip(q, t)
        lo, hi = q.observer_.calculate_range()
        clipped = np.abs(t - t_hat) > 0.5001 * float(q.scale_[0])  # off by more than half a step: saturated
        print(
            f"{name:<18} {n_bits:>4} {f'[{float(lo):.2f}, {float(hi):.2f}]':>18} "
            f"{float(np.mean((t - t_hat) ** 2)):10.2e} {float(np.mean(clipped)):8.3%}"
        )
print(
    "Widening the range lowers the clipping error of the tails and raises the rounding error of every\n"
    "value; the MSE range searches for the balance, which moves inwards as the bits fall (at 4 bits\n"
    "the step is 16x coarser, so clipping more of the tails pays)."
)

# ------------------------------------------------ 4. per-channel vs per-tensor
section("4. Per-channel vs per-tensor ranges on features of different scales (int8, symmetric)")
scales = np.array([0.01, 1.0, 100.0, 10_000.0])
F = rng.standard_normal((5_000, len(scales))) * scales
print(f"4 features, standard deviations {scales.tolist()}")
print(f"{'granularity':<12} " + " ".join(f"{f'feature {j} rel. RMSE':>22}" for j in range(len(scales))))
for granularity in ("per_tensor", "per_channel"):
    q = Quantizer(8, scheme="symmetric", granularity=granularity).fit(F)
    codes, F_hat = round_trip(q, F)
    rel = np.sqrt(np.mean((F - F_hat) ** 2, axis=0)) / scales
    print(f"{granularity:<12} " + " ".join(f"{r:22.2e}" for r in rel))
    if granularity == "per_tensor":
        zero_codes = np.mean(codes == 0, axis=0)
        print(
            f"{'':<12} per tensor, one scale ({q.scale_[0]:.1f}) serves all: "
            f"{zero_codes[0]:.0%} of feature 0 and {zero_codes[1]:.0%} of feature 1 quantize to code 0"
        )
    else:
        print(f"{'':<12} per channel, one scale per feature: {np.array2string(q.scale_, precision=4)}")
print("Per channel, every feature keeps the same relative error; per tensor, the largest one sets the step.")
