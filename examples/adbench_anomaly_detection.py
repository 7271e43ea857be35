"""Unsupervised anomaly detection on the ADBench tabular datasets, as ADBench scores it.

The protocol of ADBench (Han et al., NeurIPS 2022) for unsupervised
detectors: fit on all of ``X`` without labels, score every sample, report the
ROC AUC of the scores against the labels ``y`` (1 = anomaly). Side by side:
unsup's ``VAE`` and ``Autoencoder`` (score = reconstruction error, through
``score_samples``), PCA reconstruction error and scikit-learn's
``IsolationForest``. Each detector also flags samples with its own threshold
(``contamination=0.1``: the 10 % least normal training samples), and the
script reports how many true anomalies those flags catch.

The data are the ``.npz`` files of ``../shared/data/adbench`` beside the
repository (or of the folder named by ``UNSUP_DATA``); when they are absent
the script says so and exits cleanly. ``UNSUP_EXAMPLES_FAST=1`` (set by the
tests) runs two small datasets with short training.

Run: ``python examples/adbench_anomaly_detection.py``
"""

import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from unsup import VAE, Autoencoder

FAST = os.environ.get("UNSUP_EXAMPLES_FAST") == "1"


def find_data():
    """The folder holding the ADBench ``.npz`` files, or None."""
    env = os.environ.get("UNSUP_DATA")
    here = Path(__file__).resolve().parents[1]
    candidates = ([Path(env), Path(env) / "adbench"] if env else []) + [here.parent / "shared" / "data" / "adbench"]
    return next((p for p in candidates if p.is_dir() and any(p.glob("*.npz"))), None)


def pca_scores(X, n_components=2):
    """Squared PCA reconstruction error of standardised ``X`` (higher = more anomalous)."""
    Xs = StandardScaler().fit_transform(X)
    pca = PCA(n_components).fit(Xs)
    return ((pca.inverse_transform(pca.transform(Xs)) - Xs) ** 2).sum(axis=1)


def main():
    folder = find_data()
    if folder is None:
        print("No ADBench data found (put the .npz files in ../shared/data/adbench or set UNSUP_DATA): skipped.")
        return 0
    files = sorted(folder.glob("*.npz"), key=lambda p: p.stat().st_size)
    if FAST:
        files = files[:2]
    epochs = {"max_epochs": 20} if FAST else {}
    print(f"ADBench data from {folder}: fit on all X, ROC AUC of the anomaly scores against y")
    names = ["VAE", "Autoencoder", "PCA error", "IsolationForest"]
    print(f"{'dataset':16s} {'n x d':>9s} {'anomalies':>9s}  " + "  ".join(f"{n:>15s}" for n in names))
    aucs, caught = [], []
    for path in files:
        data = np.load(path)
        X, y = data["X"].astype(np.float64), data["y"].astype(int)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            vae = VAE(random_state=0, **epochs).fit(X)
            ae = Autoencoder(random_state=0, **epochs).fit(X)
        forest = IsolationForest(contamination=0.1, random_state=0).fit(X)
        scores = [-vae.score_samples(X), -ae.score_samples(X), pca_scores(X), -forest.score_samples(X)]
        aucs.append([roc_auc_score(y, s) for s in scores])
        # The flags each detector raises with its own threshold (10 % of the training samples).
        flags = [vae.predict(X) == -1, ae.predict(X) == -1, forest.predict(X) == -1]
        caught.append([(f & (y == 1)).sum() / max(1, (y == 1).sum()) for f in flags])
        shape = f"{X.shape[0]}x{X.shape[1]}"
        print(f"{path.stem:16s} {shape:>9s} {y.mean():9.1%}  " + "  ".join(f"{a:15.3f}" for a in aucs[-1])
              + f"   ({time.perf_counter() - t0:.1f} s)")
    mean = np.mean(aucs, axis=0)
    print(f"{'mean ROC AUC':16s} {'':>9s} {'':>9s}  " + "  ".join(f"{a:15.3f}" for a in mean))
    recall = np.mean(caught, axis=0)
    print(f"\nShare of the true anomalies among the flagged 10 % (mean over datasets): "
          f"VAE {recall[0]:.2f}, Autoencoder {recall[1]:.2f}, IsolationForest {recall[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
