"""K-means under several metrics on scikit-learn's bundled digits.

What this shows, on ``sklearn.datasets.load_digits`` (1797 images of 8 x 8
pixels, no download):

1. ``unsup.cluster.KMeans`` under four metrics, each with the centre rule that
   matches it: euclidean (Lloyd, mean centres), manhattan (k-medians),
   cosine (spherical k-means) and hamming on binarised pixels (k-modes). For
   each: the adjusted Rand index (ARI) against the digit labels and the
   inertia (in that metric's own units, so not comparable across metrics).
2. With the euclidean metric, the same ``random_state`` gives the same labels
   and inertia as ``sklearn.cluster.KMeans``.
3. KMeans as the last step of a scikit-learn ``Pipeline``.
4. ``GridSearchCV``: choosing the metric with a label-based scorer (ARI), and
   tuning ``init`` with KMeans' own ``score`` (-inertia) at a fixed metric.
5. ``partial_fit`` over chunks of the data (streaming k-means).

Run from the repository root (a few seconds on two cores)::

    python examples/kmeans_metrics.py

Everything is seeded, so the printed report is the same on every run.
"""

import numpy as np
import sklearn.cluster
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from unsup.cluster import KMeans

N_CLUSTERS = 10  # ten digits
SEED = 0


def section(title):
    print()
    print(title)
    print("-" * len(title))


def compare_metrics(X, y):
    section("1. One KMeans, four metrics (k = 10, n_init = 4)")
    X_binary = (X > 7).astype(np.float64)  # pixel on/off: categorical data for k-modes
    cases = [
        ("euclidean", X, "mean (Lloyd)"),
        ("manhattan", X, "median (k-medians)"),
        ("cosine", X, "unit mean (spherical)"),
        ("hamming", X_binary, "mode (k-modes), X > 7"),
    ]
    print(f"{'metric':10s}  {'centre rule':22s}  {'ARI':>5s}  {'inertia':>12s}")
    for metric, data, rule in cases:
        km = KMeans(N_CLUSTERS, metric=metric, n_init=4, random_state=SEED).fit(data)
        ari = adjusted_rand_score(y, km.labels_)
        print(f"{metric:10s}  {rule:22s}  {ari:5.3f}  {km.inertia_:12.2f}")
    print(
        "The inertia is each metric's own k-means cost (squared distances for\n"
        "euclidean, distances for the others): compare it within a metric, never across."
    )


def euclidean_matches_sklearn(X):
    section("2. Euclidean KMeans equals scikit-learn's KMeans")
    ours = KMeans(N_CLUSTERS, metric="euclidean", n_init=4, random_state=SEED).fit(X)
    theirs = sklearn.cluster.KMeans(N_CLUSTERS, n_init=4, random_state=SEED).fit(X)
    same_labels = np.array_equal(ours.labels_, theirs.labels_)
    same_inertia = ours.inertia_ == theirs.inertia_
    print(f"unsup inertia:   {ours.inertia_:.6f}")
    print(f"sklearn inertia: {theirs.inertia_:.6f}")
    print(f"identical labels: {same_labels}, identical inertia: {same_inertia}")
    if not (same_labels and same_inertia):
        raise SystemExit("euclidean KMeans differs from scikit-learn's")


def in_a_pipeline(X, y):
    section("3. In a Pipeline: StandardScaler -> KMeans(metric='cosine')")
    pipe = make_pipeline(
        StandardScaler(), KMeans(N_CLUSTERS, metric="cosine", n_init=4, random_state=SEED)
    )
    labels = pipe.fit_predict(X)
    distances = pipe.transform(X[:3])  # cosine distances to the 10 centres
    print(f"ARI: {adjusted_rand_score(y, labels):.3f}")
    print(f"transform(X[:3]).shape = {distances.shape}, nearest centres {distances.argmin(axis=1)}")
    print(f"predict(X[:3])         = {pipe.predict(X[:3])}")


def ari_scorer(estimator, X, y):
    """A GridSearchCV scorer: agreement of the predicted clusters with known labels."""
    return adjusted_rand_score(y, estimator.predict(X))


def grid_searches(X, y):
    section("4. GridSearchCV")
    cv = KFold(n_splits=3, shuffle=True, random_state=SEED)

    # KMeans.score is -inertia, and inertia is measured in the metric's own
    # units (squared pixels for euclidean, pixels for manhattan, a number in
    # [0, 2] per point for cosine). Ranking metrics by it would compare numbers
    # on different scales, so to choose the metric we score with something that
    # does not depend on it: the ARI against the digit labels, which this data
    # set happens to have.
    search = GridSearchCV(
        KMeans(N_CLUSTERS, n_init=1, random_state=SEED),
        {"metric": ["euclidean", "manhattan", "cosine"]},
        scoring=ari_scorer,
        cv=cv,
    ).fit(X, y)
    print("Choosing the metric, scored by ARI on the held-out folds:")
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"  {params['metric']:10s} mean ARI {score:.3f}")
    print(f"  best: {search.best_params_}")

    # With the metric and n_clusters fixed, -inertia on held-out data is a fair
    # label-free criterion, so the default scoring (KMeans.score) can tune the
    # initialisation. (It cannot tune n_clusters: more clusters lower the
    # inertia, so the largest k in the grid would win.)
    search = GridSearchCV(
        KMeans(N_CLUSTERS, metric="euclidean", n_init=3, random_state=SEED),
        {"init": ["k-means++", "random"]},
        cv=cv,
    ).fit(X)
    print("Choosing init for euclidean KMeans, scored by -inertia (no labels):")
    for params, score in zip(search.cv_results_["params"], search.cv_results_["mean_test_score"]):
        print(f"  {params['init']:10s} mean score {score:.1f}")
    print(f"  best: {search.best_params_}")


def streaming(X, y):
    section("5. partial_fit over 6 chunks (metric='cosine')")
    order = np.random.default_rng(SEED).permutation(len(X))  # chunks in shuffled order
    km = KMeans(N_CLUSTERS, metric="cosine", random_state=SEED)
    for i, chunk in enumerate(np.array_split(order, 6)):
        # The first call seeds the centres from its chunk (k-means++ in the metric).
        km.partial_fit(X[chunk])
        print(f"  after chunk {i + 1}: {len(chunk)} rows, inertia on the chunk {km.inertia_:7.2f}")
    streamed = adjusted_rand_score(y, km.predict(X))
    full = adjusted_rand_score(
        y, KMeans(N_CLUSTERS, metric="cosine", random_state=SEED).fit_predict(X)
    )
    print(f"ARI streamed: {streamed:.3f}   ARI full-batch fit (n_init=1): {full:.3f}")


def main():
    X, y = load_digits(return_X_y=True)
    print(f"load_digits: {X.shape[0]} images, {X.shape[1]} pixels, values 0..16, 10 classes")
    compare_metrics(X, y)
    euclidean_matches_sklearn(X)
    in_a_pipeline(X, y)
    grid_searches(X, y)
    streaming(X, y)


if __name__ == "__main__":
    main()
