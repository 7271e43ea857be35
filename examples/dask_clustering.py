"""Clustering a dask array on a LocalCluster: KMeans, GaussianMixture, lazy prediction.

What this shows, on an array generated lazily by dask (blobs in 16
dimensions; only blocks ever exist, each on a worker):

1. A ``dask.distributed.LocalCluster`` with 2 worker processes.
2. ``KMeans(init="k-means||").fit`` on the dask array: one pass over the
   blocks per Lloyd iteration; ``labels_`` is a lazy dask array.
3. The same fit from the same initial centres, on the dask array and in
   memory: the same centres (to round-off) and the same labels.
4. ``GaussianMixture.fit`` on the dask array (k-means|| initialisation),
   ``predict_proba`` and ``score`` over the blocks, lazily.
5. Hierarchical clustering: fit on a sample, ``predict`` over the dask array.

Run from the repository root::

    python examples/dask_clustering.py

``UNSUP_EXAMPLES_FAST=1`` (set by the tests) makes the array small. Needs the
extra ``pip install "unsup[dask]"``.
"""

import os
import warnings

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster

from unsup import AgglomerativeClustering, GaussianMixture, KMeans

FAST = bool(os.environ.get("UNSUP_EXAMPLES_FAST"))
N_ROWS, BLOCK = (40_000, 10_000) if FAST else (2_000_000, 250_000)
N_FEATURES, K = 16, 5


def blobs(block, block_info=None):
    """Add one of K centres to each row of a block of noise (seeded by the block's position)."""
    rng = np.random.default_rng(block_info[None]["chunk-location"][0])
    centres = 4.0 * np.random.default_rng(0).standard_normal((K, N_FEATURES))
    return block + centres[rng.integers(0, K, len(block))]


def section(title):
    print(f"\n{title}\n{'-' * len(title)}")


def main():
    noise = da.random.RandomState(0).standard_normal((N_ROWS, N_FEATURES), chunks=(BLOCK, N_FEATURES))
    X = noise.map_blocks(blobs, dtype=np.float64)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a dashboard port already taken
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client, dask.config.set(scheduler=client):
        section("1. The cluster")
        print(f"{len(client.scheduler_info()['workers'])} worker processes; X is {X.shape[0]:,} x "
              f"{X.shape[1]} in {X.numblocks[0]} blocks of {BLOCK:,} rows")

        section("2. KMeans(init='k-means||') on the dask array")
        km = KMeans(K, init="k-means||", random_state=0).fit(X)
        print(f"{km.n_iter_} iterations, inertia {km.inertia_:.4g}")
        print(f"labels_ is a dask {type(km.labels_).__name__} of {km.labels_.numblocks[0]} blocks (lazy)")
        sizes = np.bincount(km.labels_.compute(), minlength=K)
        print("cluster sizes:", sizes.tolist())

        section("3. The same centres as the in-memory fit")
        sample = X[: 4 * BLOCK].compute() if FAST else X[:BLOCK].compute()
        Xs = da.from_array(sample, chunks=(BLOCK // 4, N_FEATURES))
        init = sample[:K]
        on_dask = KMeans(K, init=init, n_init=1).fit(Xs)
        in_memory = KMeans(K, init=init, n_init=1).fit(sample)
        rel = np.abs(on_dask.cluster_centers_ - in_memory.cluster_centers_).max() / np.abs(in_memory.cluster_centers_).max()
        print(f"{len(sample):,} rows: centres relative difference {rel:.1e}, labels identical: "
              f"{np.array_equal(on_dask.labels_.compute(), in_memory.labels_)}")

        section("4. GaussianMixture on the dask array")
        gm = GaussianMixture(K, covariance_type="diag", random_state=0).fit(X)
        print(f"converged {gm.converged_} in {gm.n_iter_} iterations, lower bound {gm.lower_bound_:.4f}")
        proba = gm.predict_proba(X)
        print(f"predict_proba: lazy {proba.shape}, first row {np.round(proba[0].compute(), 3).tolist()}")
        print(f"score (mean log-likelihood over all rows): {float(gm.score(X).compute()):.4f}")

        section("5. Hierarchical clustering: fit on a sample, predict lazily")
        agg = AgglomerativeClustering(n_clusters=K).fit(X[:2_000].compute())
        labels = agg.predict(X)
        print(f"predict over {labels.shape[0]:,} rows, lazily; first labels {labels[:8].compute().tolist()}")


if __name__ == "__main__":
    main()
