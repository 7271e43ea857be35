"""Agglomerative against divisive trees on real data: dendrograms and ARI.

Clusters a subset of scikit-learn's handwritten digits (the digits 0 to 4,
100 images of 8 x 8 pixels each) bottom-up (ward, cosine average linkage)
and top-down (bisecting k-means, DIANA in the cosine metric), prints each one's adjusted Rand index against
the true digits, re-cuts the ward tree at other sizes without refitting,
and saves the two kinds of dendrogram side by side, each with its cut drawn.

Run: ``python examples/dendrograms.py [output.png]`` (default: a file in the
system's temporary folder).
"""

import os
import sys
import tempfile

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

from unsup.cluster import AgglomerativeClustering, DivisiveClustering
from unsup.plotting import plot_dendrogram

digits = load_digits(n_class=5)
keep = np.concatenate([np.flatnonzero(digits.target == d)[:100] for d in range(5)])
X = digits.data[keep]
y = digits.target[keep]

models = {
    "agglomerative, ward": AgglomerativeClustering(n_clusters=5, linkage="ward"),
    "agglomerative, average (cosine)": AgglomerativeClustering(n_clusters=5, linkage="average", metric="cosine"),
    "divisive, bisecting k-means": DivisiveClustering(n_clusters=5, random_state=0),
    "divisive, DIANA (cosine, full tree)": DivisiveClustering(
        n_clusters=5, method="diana", metric="cosine", compute_full_tree=True
    ),
}
print(f"{len(X)} digits (0 to 4), {X.shape[1]} pixels")
print(f"{'model':36s} {'ARI':>6s}  cluster sizes")
for name, model in models.items():
    model.fit(X)
    sizes = np.bincount(model.labels_)
    print(f"{name:36s} {adjusted_rand_score(y, model.labels_):6.3f}  {sizes.tolist()}")

ward = models["agglomerative, ward"]
print("\nThe ward tree re-cut without refitting:")
for k in (2, 5, 10):
    print(f"  {k:2d} clusters: ARI {adjusted_rand_score(y, ward.cut(n_clusters=k)):.3f}")
print(f"  engine: {ward.engine_}; the two highest merges at {ward.distances_[-2]:.1f} and {ward.distances_[-1]:.1f}")

diana = models["divisive, DIANA (cosine, full tree)"]
print(f"\nDIANA's first splits (cluster diameters): {np.round(diana.linkage_matrix_[-4:, 2][::-1], 2).tolist()}")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
plot_dendrogram(ward, p=25, ax=axes[0], leaf_rotation=90)
axes[0].set_title("agglomerative (ward): 5 clusters coloured")
plot_dendrogram(diana, p=25, ax=axes[1], leaf_rotation=90)
axes[1].set_title("divisive (DIANA, cosine): 5 clusters coloured")
for ax in axes:  # each tree's cut: a dashed line halfway between its last merge kept and its first cut
    (cut,) = [line for line in ax.lines if line.get_label().startswith("cut: ")]
    print(f"{ax.get_title().split(':')[0]}: {cut.get_label()} at height {cut.get_ydata()[0]:.3f}")
fig.tight_layout()
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(tempfile.gettempdir(), "unsup_dendrograms.png")
fig.savefig(out, dpi=100)
print(f"\nSaved the dendrograms to {out}")
