"""Choose a Gaussian mixture with GridSearchCV, then look at its soft clustering.

On scikit-learn's bundled digits, reduced to 10 dimensions by PCA, one grid
search over ``n_components`` and ``covariance_type`` of
``unsup.mixture.GaussianMixture`` scores every candidate twice on the held-out
folds: by the log-likelihood (the estimator's ``score``, GridSearchCV's
default) and by BIC (a scorer returning ``-bic``, since a lower BIC is
better); the BIC choice is refitted on all the digits. The chosen mixture's ``predict_proba`` is the soft
clustering: each digit gets a probability for every component. A figure shows
the digits in the first two principal components, coloured by their most
probable component and faded where that probability is low, beside the
histogram of those probabilities.

Run: ``python examples/gmm_model_selection.py [OUTPUT_DIR]`` (or set
``UNSUP_EXAMPLES_OUT``); the figure goes to ``OUTPUT_DIR/gmm_soft_assignments.png``
(a temporary directory when neither is given).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV

from unsup.mixture import GaussianMixture


def log_likelihood(estimator, X, y=None):
    """The estimator's own score: mean log-likelihood of the held-out fold."""
    return estimator.score(X)


def bic_score(estimator, X, y=None):
    """Higher is better for GridSearchCV: the negated BIC of the held-out fold."""
    return -estimator.bic(X)


def output_dir() -> Path:
    if len(sys.argv) > 1:
        out = Path(sys.argv[1])
    elif os.environ.get("UNSUP_EXAMPLES_OUT"):
        out = Path(os.environ["UNSUP_EXAMPLES_OUT"])
    else:
        out = Path(tempfile.mkdtemp(prefix="unsup_gmm_"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def main():
    t0 = time.perf_counter()
    digits, y = load_digits(return_X_y=True)
    X = PCA(n_components=10, random_state=0).fit_transform(digits)
    print(f"digits: {digits.shape[0]} images, PCA to {X.shape[1]} dimensions")

    grid = {"n_components": [4, 8, 12], "covariance_type": ["full", "tied", "diag", "spherical"]}
    scoring = {"log-likelihood": log_likelihood, "BIC": bic_score}
    search = GridSearchCV(GaussianMixture(random_state=0), grid, scoring=scoring, refit="BIC", cv=3).fit(X)
    res = search.cv_results_
    for name in scoring:
        scores = res[f"mean_test_{name}"]
        print(f"\nscored by {name} (mean over 3 held-out folds, higher is better):")
        print("  covariance   " + "".join(f"k={k:<9d}" for k in grid["n_components"]))
        for ct in grid["covariance_type"]:
            row = [scores[i] for i, p in enumerate(res["params"]) if p["covariance_type"] == ct]
            print(f"  {ct:12s} " + "".join(f"{v:<11.4g}" for v in row))
        print(f"  best: {res['params'][int(np.argmax(scores))]}")

    gm = search.best_estimator_
    proba = gm.predict_proba(X)
    labels = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    print(f"\nBIC's choice on all digits: {gm.n_components} {gm.covariance_type} components, "
          f"converged in {gm.n_iter_} EM iterations")
    print(f"  ARI of the most probable component against the digit labels: {adjusted_rand_score(y, labels):.3f}")
    print(f"  digits assigned with probability > 0.99: {np.mean(confidence > 0.99):.1%}; "
          f"< 0.6 (between components): {np.mean(confidence < 0.6):.1%}")

    import matplotlib

    if not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = plt.cm.tab20(labels % 20)
    colours[:, 3] = 0.15 + 0.85 * (confidence - confidence.min()) / max(np.ptp(confidence), 1e-12)
    ax0.scatter(X[:, 0], X[:, 1], c=colours, s=8)
    ax0.set(title=f"most probable of {gm.n_components} components (faded: uncertain)",
            xlabel="PC 1", ylabel="PC 2")
    ax1.hist(confidence, bins=40, color="tab:blue")
    ax1.set(title="probability of the most probable component", xlabel="max predict_proba", ylabel="digits")
    fig.tight_layout()
    path = output_dir() / "gmm_soft_assignments.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"\nfigure: {path}")
    print(f"done in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
