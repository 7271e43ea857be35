"""Anomaly detection on the ADBench datasets: every unsup detector beside its peers.

The protocol of ADBench (Han et al., NeurIPS 2022) for unsupervised
detectors, as ``../shared/data/adbench/README.md`` states it: standardise X,
fit on all of it without labels, score every row, ROC AUC and average
precision of the scores against ``y``. Detectors: unsup's
``AutoencoderEnsemble`` (the recommended one), ``Autoencoder`` and ``VAE``
(defaults), scikit-learn's ``IsolationForest`` and ``LocalOutlierFactor``,
PCA(2) reconstruction error, and PyOD's ``ECOD`` and ``KNN`` when PyOD is
installed. Prints per-dataset ROC AUC (mean over seeds), the mean ROC AUC,
mean average precision, mean rank (1 = best on a dataset), total fit-and-score
time and each detector's time ratio to ``IsolationForest``.

Run: ``python benchmarks/bench_anomaly.py`` (all datasets, seeds 0 1 2: long
on 2 cores, mostly LocalOutlierFactor and the single autoencoders);
``--detectors`` to choose, ``--quick`` for a smoke run (two small datasets,
seed 0, short training). Data is looked up as in ``bench_autoencoder.py``
(``UNSUP_DATA`` or ``../shared/data/adbench``) and skipped with a message
when absent.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import rankdata
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import parser  # noqa: E402
from bench_autoencoder import find_adbench  # noqa: E402

from unsup.neural import VAE, Autoencoder, AutoencoderEnsemble  # noqa: E402


def pca_error(X, seed):
    pca = PCA(min(2, X.shape[1] - 1), random_state=seed).fit(X)
    return ((pca.inverse_transform(pca.transform(X)) - X) ** 2).sum(axis=1)


def detectors(quick):
    short = {"max_epochs": 5} if quick else {}
    found = {
        "AutoencoderEnsemble": lambda X, s: -AutoencoderEnsemble(random_state=s).fit(X).score_samples(X),
        "Autoencoder": lambda X, s: -Autoencoder(random_state=s, **short).fit(X).score_samples(X),
        "VAE": lambda X, s: -VAE(random_state=s, **short).fit(X).score_samples(X),
        "IsolationForest": lambda X, s: -IsolationForest(random_state=s).fit(X).score_samples(X),
        "LocalOutlierFactor": lambda X, s: -LocalOutlierFactor().fit(X).negative_outlier_factor_,
        "PCA(2) error": pca_error,
    }
    try:
        from pyod.models.ecod import ECOD
        from pyod.models.knn import KNN
    except ImportError:
        pass
    else:
        found["ECOD (PyOD)"] = lambda X, s: ECOD().fit(X).decision_scores_
        found["KNN (PyOD)"] = lambda X, s: KNN().fit(X).decision_scores_
    return found


def main():
    ap = parser(__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--detectors", nargs="+", default=None, help="names to run (default: all)")
    args = ap.parse_args()
    path = find_adbench()
    if path is None:
        print("No ADBench data found (set UNSUP_DATA, or put the .npz files in ../shared/data/adbench); "
              "skipped. ratio n/a")
        return 0
    files = sorted(path.glob("*.npz"), key=lambda p: p.stat().st_size)
    seeds = [0] if args.quick else args.seeds
    if args.quick:
        files = files[:2]
    dets = detectors(args.quick)
    if args.detectors:
        dets = {k: v for k, v in dets.items() if k in args.detectors}
    names = list(dets)
    auc = np.zeros((len(files), len(names)))
    apr = np.zeros_like(auc)
    seconds = np.zeros(len(names))
    print(f"ROC AUC (mean over seeds {seeds}), standardised X, fit on all rows")
    print(f"{'dataset':18s} " + " ".join(f"{n[:19]:>19s}" for n in names))
    for i, f in enumerate(files):
        data = np.load(f)
        X = StandardScaler().fit_transform(data["X"].astype(np.float64))
        y = data["y"].astype(int)
        for j, name in enumerate(names):
            for seed in seeds:
                t0 = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    score = np.asarray(dets[name](X, seed), dtype=np.float64)
                seconds[j] += (time.perf_counter() - t0) / len(seeds)
                auc[i, j] += roc_auc_score(y, score) / len(seeds)
                apr[i, j] += average_precision_score(y, score) / len(seeds)
        print(f"{f.stem:18s} " + " ".join(f"{a:19.3f}" for a in auc[i]), flush=True)
    ranks = np.array([rankdata(-row) for row in auc])
    print(f"{'mean ROC AUC':18s} " + " ".join(f"{a:19.4f}" for a in auc.mean(axis=0)))
    print(f"{'mean AP':18s} " + " ".join(f"{a:19.4f}" for a in apr.mean(axis=0)))
    print(f"{'mean rank':18s} " + " ".join(f"{a:19.2f}" for a in ranks.mean(axis=0)))
    print(f"{'total time (s)':18s} " + " ".join(f"{a:19.1f}" for a in seconds))
    if "IsolationForest" in names:
        base = seconds[names.index("IsolationForest")]
        print(f"{'time ratio to IF':18s} " + " ".join(f"{a / base:19.1f}" for a in seconds))
    print(f"({len(files)} datasets; time per dataset is the mean over seeds of fit + score)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
