"""Anomaly detection with the autoencoder ensemble, an autoencoder and a VAE: fit, threshold, report, plot the scores.

The data: the Wisconsin breast-cancer measurements bundled with scikit-learn
(30 numeric features), set up as the outlier benchmark "WBC" is: every
benign tumour plus a few malignant ones, which are to be flagged. Nothing
tells the models which rows are odd: they learn to reconstruct the data, and rows they reconstruct
badly (or, for the VAE, whose codes are unlikely) get low ``score_samples``.
``contamination`` sets the threshold ``offset_``: the share of training rows
``predict`` marks -1.

Run: ``python examples/anomaly_detection.py`` (the histogram is saved in the
folder named by ``UNSUP_EXAMPLES_OUT``, or the temporary folder).
"""

import os
import tempfile
import warnings

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from unsup import VAE, Autoencoder, AutoencoderEnsemble

warnings.simplefilter("ignore", ConvergenceWarning)

data = load_breast_cancer()
rng = np.random.default_rng(0)
benign = np.flatnonzero(data.target == 1)
malignant = rng.choice(np.flatnonzero(data.target == 0), size=21, replace=False)
rows = rng.permutation(np.r_[benign, malignant])
X = data.data[rows]                           # raw units: the models standardise inside
y = np.isin(rows, malignant).astype(int)      # 1 = anomaly (known here only to grade the models)
print(f"{len(X)} tumours, {y.sum()} malignant ({y.mean():.1%}), {X.shape[1]} features")

models = {
    "AutoencoderEnsemble": AutoencoderEnsemble(contamination=0.05, random_state=0),  # the recommended detector
    "Autoencoder": Autoencoder(n_components=2, contamination=0.05, max_epochs=60, random_state=0),
    "VAE": VAE(n_components=2, contamination=0.05, max_epochs=60, random_state=0),
    "IsolationForest": IsolationForest(contamination=0.05, random_state=0),
}
print(f"\n{'model':20s} {'ROC AUC':>8s} {'flagged':>8s} {'precision':>10s} {'recall':>7s}")
for name, model in models.items():
    labels = model.fit_predict(X)                # +1 inlier, -1 outlier
    scores = model.score_samples(X)              # higher = more normal
    flagged = labels == -1
    auc = roc_auc_score(y, -scores)
    print(f"{name:20s} {auc:8.3f} {flagged.sum():8d} {precision_score(y, flagged):10.2f} {recall_score(y, flagged):7.2f}")

# The same threshold by hand: decision_function = score_samples - offset_ < 0.
ensemble = models["AutoencoderEnsemble"]
assert np.array_equal(ensemble.decision_function(X) < 0, ensemble.predict(X) == -1)
worst = np.argsort(ensemble.score_samples(X))[:10]
print(f"\nThe ensemble's 10 most anomalous rows: {y[worst].sum()} of them are malignant")

try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from unsup.plotting import plot_scores
except ImportError:
    print("matplotlib is not installed: no plot")
else:
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, name in zip(axes, ["AutoencoderEnsemble", "Autoencoder", "VAE"]):
        plot_scores(X, y, estimator=models[name], ax=ax, bins=40)
        ax.set_title(f"{name}: score_samples, threshold = offset_")
    out = os.path.join(os.environ.get("UNSUP_EXAMPLES_OUT", tempfile.gettempdir()), "anomaly_scores.png")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"score histograms saved to {out}")
