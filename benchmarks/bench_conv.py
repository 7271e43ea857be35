"""Convolutional autoencoders: reconstruction against the fully connected one and PCA, throughput against torch.

Targets (issue 17):

- digits: ``load_digits`` / 16, 80/20 split, code size 8: the held-out MSE (in
  the units of X) of ``Autoencoder(architecture="conv", image_shape=(1, 8, 8))``
  at most 0.85x the fully connected default's and 0.45x PCA(8)'s, with no more
  parameters than the fully connected default; and its int8 copy
  (``quantize``): ``model_size_bytes_`` at most 0.3x, held-out codes within 3 %;
- photo patches: 16x16 colour patches of ``load_sample_images()`` (cut with
  ``extract_patches_2d``, / 255, rows in C order ``(3, 16, 16)``), 80/20 split,
  code size 32: held-out MSE at most 0.8x PCA(32)'s;
- throughput: 60,000 random 1x28x28 images, batch 256, Adam 1e-3:
  ``Autoencoder.fit`` (no early stopping, ``trim_fraction=0``: the plain loop's
  objective) against a plain torch loop over the same network, timed
  interleaved: rows per second of one-epoch fits, and per epoch (fits of 3
  and 1 epochs: the fit's fixed costs, such as scoring the training rows for
  ``offset_``, cancel), with ``n_jobs=None`` (the thread rule of
  docs/processes.md) and with the loop's threads; target at least 0.9x.

Run: ``python benchmarks/bench_conv.py`` (``--quick`` for a smoke run,
``--only digits|patches|throughput``, ``--device cuda``; ``--seeds`` for the
digits' model seeds; ``--patches-per-image`` and ``--max-epochs`` for the
patches' data size and training budget).
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits, load_sample_images
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.image import extract_patches_2d
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import interleaved, parser, report  # noqa: E402

from unsup.neural import Autoencoder  # noqa: E402


def _fit(model, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(X)


def _mse(model, Xte):
    rec = model.reconstruct(Xte) if hasattr(model, "reconstruct") else model.inverse_transform(model.transform(Xte))
    return float(np.mean((rec - Xte) ** 2))


def _n_params(model):
    return sum(p.numel() for m in (model.encoder_, model.decoder_) for p in m.parameters())


def digits(quick, device, seeds=(0,)):
    X = load_digits().data / 16.0
    Xtr, Xte = train_test_split(X, test_size=0.2, random_state=0)
    extra = {"max_epochs": 3} if quick else {}
    pca = _mse(PCA(8).fit(Xtr), Xte)
    print("\nload_digits / 16, 80/20 split, code size 8: held-out MSE")
    print(f"  {'model':58s} {'params':>7s} {'MSE':>9s}  ratios")
    print(f"  {'PCA(8)':58s} {'':>7s} {pca:9.5f}")
    cases = [{}]
    if not quick:
        cases += [{"upsampling": "transpose"}, {"conv_channels": (24, 48)}, {"conv_channels": (40, 80)},
                  {"downsampling": "pool"}]
    conv = None
    for seed in seeds:
        fc = _fit(Autoencoder(8, random_state=seed, device=device, **extra), Xtr)
        fc_mse = _mse(fc, Xte)
        print(f"  {f'Autoencoder() (fully connected default), seed {seed}':58s} {_n_params(fc):7d} {fc_mse:9.5f}  "
              f"ratio to PCA {fc_mse / pca:.3f}x")
        for params in cases if seed == seeds[0] else cases[:1]:
            est = Autoencoder(8, architecture="conv", image_shape=(1, 8, 8), random_state=seed, device=device,
                              **params, **extra)
            _fit(est, Xtr)
            conv = conv or est
            mse = _mse(est, Xte)
            name = "conv" + ("(" + ", ".join(f"{a}={b}" for a, b in params.items()) + ")" if params else " (defaults)")
            print(f"  {name + f', seed {seed}':58s} {_n_params(est):7d} {mse:9.5f}  ratio to FC {mse / fc_mse:.3f}x "
                  f"(target <= 0.85), to PCA {mse / pca:.3f}x (target <= 0.45)")
    q = conv.quantize(Xtr)
    Z, Zq = conv.transform(Xte), q.transform(Xte)
    rel = float(np.linalg.norm(Zq - Z) / np.linalg.norm(Z))
    print(f"  int8 copy of the default conv model: size ratio {q.model_size_bytes_ / conv.model_size_bytes_:.3f}x "
          f"(target <= 0.3), held-out code relative error {rel:.4f} (target < 0.03)")


def photo_patches(n_per_image, seed=0):
    """16x16 colour patches of scikit-learn's two sample photographs, / 255, rows in C order (3, 16, 16)."""
    patches = [
        extract_patches_2d(img, (16, 16), max_patches=n_per_image, random_state=seed + i)
        for i, img in enumerate(load_sample_images().images)
    ]
    P = np.concatenate(patches).astype(np.float64) / 255.0
    return P.transpose(0, 3, 1, 2).reshape(len(P), -1)


def patches(quick, device, per_image=5000, max_epochs=None):
    X = photo_patches(250 if quick else per_image)
    Xtr, Xte = train_test_split(X, test_size=0.2, random_state=0)
    extra = {"max_epochs": 2} if quick else ({} if max_epochs is None else {"max_epochs": max_epochs})
    pca = _mse(PCA(32).fit(Xtr), Xte)
    print(f"\n16x16x3 patches of load_sample_images() / 255 ({len(X)} patches, 80/20 split), code size 32")
    print(f"  {'PCA(32)':40s} {pca:9.6f}")
    for params in [{}] if quick else [{}, {"upsampling": "transpose"}]:
        est = _fit(Autoencoder(32, architecture="conv", image_shape=(3, 16, 16), random_state=0, device=device,
                               **params, **extra), Xtr)
        mse = _mse(est, Xte)
        name = "conv" + ("(" + ", ".join(f"{a}={b}" for a, b in params.items()) + ")" if params else " (defaults)")
        print(f"  {name:40s} {mse:9.6f}  ratio to PCA {mse / pca:.3f}x (target <= 0.8), {est.n_iter_} epochs")


def plain_conv_network(n_components):
    """The default conv autoencoder for 1x28x28 written in plain torch (torch's own initialisation)."""
    nn = torch.nn
    encoder = nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(64 * 7 * 7, n_components),
    )
    decoder = nn.Sequential(
        nn.Linear(n_components, 64 * 7 * 7), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.Upsample(size=(14, 14)), nn.Conv2d(64, 32, 3, padding=1), nn.ReLU(),
        nn.Upsample(size=(28, 28)), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 1, 3, padding=1), nn.Flatten(),
    )
    return nn.Sequential(encoder, decoder)


def plain_torch_loop(X, n_components, batch_size, device, epochs):
    """The textbook loop: Adam, shuffled index batches, the mean squared error."""
    model = plain_conv_network(n_components).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    Xt = torch.as_tensor(X, device=device)
    for _ in range(epochs):
        perm = torch.randperm(len(Xt), device=device)
        for start in range(0, len(Xt), batch_size):
            xb = Xt[perm[start : start + batch_size]]
            loss = torch.nn.functional.mse_loss(model(xb), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return loss.item()


def throughput(n_samples, rounds, device, n_components=16, epochs=(1, 3)):
    """One-epoch fits, and the time per epoch: (fit of 3 epochs - fit of 1) / 2.

    A fit does more than train: it scores the training rows once for
    ``offset_`` (the outlier contract). The difference of two fits cancels
    that and every fixed cost, leaving the training loop's rate.
    """
    X = np.random.default_rng(0).random((n_samples, 784), dtype=np.float32)
    threads = torch.get_num_threads()

    def ours(n_jobs, e):
        _fit(Autoencoder(
            n_components, architecture="conv", image_shape=(1, 28, 28), batch_size=256, max_epochs=e,
            early_stopping=False, n_iter_no_change=e + 1, trim_fraction=0.0, device=device, n_jobs=n_jobs,
            random_state=0,
        ), X)

    probe = _fit(Autoencoder(n_components, architecture="conv", image_shape=(1, 28, 28), max_epochs=1,
                             early_stopping=False, random_state=0), X[:64])
    shapes = [tuple(p.shape) for m in (probe.encoder_, probe.decoder_) for p in m.parameters()]
    if shapes != [tuple(p.shape) for p in plain_conv_network(n_components).parameters()]:
        raise RuntimeError("plain_conv_network is not the default conv network: update it")
    names = {"plain": "plain torch loop", "default": "unsup Autoencoder.fit (n_jobs=None)",
             "same": f"unsup fit, n_jobs={threads} (the loop's threads)"}
    medians = {}
    for e in epochs:
        times = interleaved(
            # (the harness divides a time by a returned number: the loop's final loss is no count of units)
            {f"{names['plain']}, {e} epoch(s)": lambda e=e: plain_torch_loop(X, n_components, 256, device, e) and None,
             f"{names['default']}, {e} epoch(s)": lambda e=e: ours(None, e),
             f"{names['same']}, {e} epoch(s)": lambda e=e: ours(threads, e)},
            rounds=rounds, warmup=1 if e == epochs[0] else 0,
        )
        r = report(f"Training throughput, conv (32, 64) autoencoder (the defaults), code {n_components}, batch 256, "
                   f"Adam, {n_samples} x 1x28x28, {device}, {threads} torch threads: {e} epoch(s)",
                   times, f"{names['plain']}, {e} epoch(s)", unit="s")
        for key, name in names.items():
            medians[key, e] = statistics.median(times[f"{name}, {e} epoch(s)"])
        if e == epochs[0]:
            print(f"  throughput ratio unsup / plain torch, {e}-epoch fits: {1.0 / r[names['default'] + ', 1 epoch(s)']:.2f}x "
                  f"(target >= 0.9); with n_jobs={threads}: {1.0 / r[names['same'] + ', 1 epoch(s)']:.2f}x")
    lo, hi = epochs
    per_epoch = {key: (medians[key, hi] - medians[key, lo]) / (hi - lo) for key in names}
    print(f"\nTime per epoch, (fit of {hi} epochs - fit of {lo}) / {hi - lo}:")
    if min(per_epoch.values()) <= 0.0:  # a smoke run's few rows: the difference is within the noise
        print(f"  not resolved on {n_samples} rows: a fit of {hi} epochs was not slower than one of {lo} for every "
              "contender (the machine's noise is larger than an epoch)")
        return
    for key, name in names.items():
        rate = n_samples / per_epoch[key]
        tag = "(anchor)" if key == "plain" else f"throughput ratio {per_epoch['plain'] / per_epoch[key]:.2f}x"
        print(f"  {name:<48s} {per_epoch[key]:8.2f} s  {rate:10,.0f} rows/s  {tag}")


def main(argv=None):
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--only", choices=["digits", "patches", "throughput"], default=None)
    p.add_argument("--patches-per-image", type=int, default=5000,
                   help="photo patches cut from each of the two images (default 5000)")
    p.add_argument("--max-epochs", type=int, default=None, help="the patches' fits' max_epochs (default: theirs)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="digits: model seeds of the FC and conv defaults (the variants: the first)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    if args.only in (None, "digits"):
        digits(args.quick, args.device, args.seeds)
    if args.only in (None, "patches"):
        patches(args.quick, args.device, args.patches_per_image, args.max_epochs)
    if args.only in (None, "throughput"):
        throughput(256 if args.quick else 60_000, rounds=1 if args.quick else min(args.rounds, 3),
                   device=args.device, epochs=(1, 2) if args.quick else (1, 3))
    print(f"\n(total {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
