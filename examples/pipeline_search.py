"""A Pipeline tour: StandardScaler -> QuantizedEmbedding(Autoencoder) -> KMeans, tuned by GridSearchCV.

The pipeline standardises the digits, trains an autoencoder, compresses its
latents to 8- or 1-bit codes (``output="dequantized"``: the following
estimator consumes the decoded latents) and clusters them with ``unsup``'s
k-means, euclidean or spherical (cosine). ``GridSearchCV`` tunes the number of
bits, the number of clusters and the k-means metric, scoring each candidate by
the adjusted Rand index of its clusters against the digit labels (the labels
are used for scoring only; every step is unsupervised).

Fast settings (1,000 digits, a small autoencoder trained for 4 epochs, one
k-means run, 2-fold cross-validation, and the pipeline's ``memory`` cache so
that candidates differing only in the k-means parameters reuse the fitted
embedding): a few seconds on a quiet machine.
"""

import shutil
import tempfile
import warnings

import joblib
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from unsup.cluster import KMeans
from unsup.neural import Autoencoder
from unsup.quantization import QuantizedEmbedding

X, y = load_digits(return_X_y=True)
X, y = X[:1000], y[:1000]  # fast settings: 1,000 digits

# memory= caches each fitted step by its parameters and input: the autoencoder trains
# once per n_bits and fold (4 times, plus the refit), not once per candidate (16).
cache = tempfile.mkdtemp(prefix="unsup-pipeline-")
pipe = Pipeline(memory=joblib.Memory(cache, verbose=0), steps=[
    ("scale", StandardScaler()),
    ("embed", QuantizedEmbedding(
        Autoencoder(8, hidden_layer_sizes=(32,), max_epochs=4, batch_size=128, random_state=0),
        output="dequantized",
    )),
    ("cluster", KMeans(10, n_init=1, random_state=0)),
])
grid = {
    "embed__n_bits": [8, 1],
    "cluster__n_clusters": [10, 12],
    "cluster__metric": ["euclidean", "cosine"],
}
search = GridSearchCV(pipe, grid, scoring="adjusted_rand_score", cv=2)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the short training stops at max_epochs
    search.fit(X, y)

print(f"GridSearchCV over {len(search.cv_results_['params'])} candidates, 2-fold, scored by the adjusted Rand index\n")
print(f"{'n_bits':>6s} {'n_clusters':>10s} {'metric':>10s} {'ARI':>7s} {'rank':>5s}")
results = search.cv_results_
for i in np.argsort(results["rank_test_score"], kind="stable"):
    p = results["params"][i]
    print(f"{p['embed__n_bits']:6d} {p['cluster__n_clusters']:10d} {p['cluster__metric']:>10s} "
          f"{results['mean_test_score'][i]:7.3f} {results['rank_test_score'][i]:5d}")

best = search.best_estimator_
embed = best.named_steps["embed"]
print(f"\nbest: {search.best_params_}")
print(f"its embedding: {embed.n_components_}-d latents as {embed.n_bits}-bit codes, "
      f"{embed.compression_ratio_:.0f}x smaller than float32 ({embed.codes_.nbytes} bytes for "
      f"{len(X)} digits)")
labels = best.predict(X)
print(f"cluster sizes: {np.bincount(labels).tolist()}")

# The fitted embedding is searchable: the nearest neighbours of the first digit.
Xs = best.named_steps["scale"].transform(X[:1])
dist, ind = embed.kneighbors(Xs, 6)
print(f"nearest digits to a '{y[0]}': labels {y[ind[0]].tolist()}, distances {np.round(dist[0], 3).tolist()}")
shutil.rmtree(cache, ignore_errors=True)
