"""``unsup cluster DATA --n-clusters K``: cluster the rows of a file, one label per row.

The estimator comes from :func:`clusterer` (the in-memory command and the Dask
one build the same); scikit-learn and the estimators are imported when the
command runs, not when the parser is built.
"""

from __future__ import annotations

import numpy as np

from unsup.cli import _models, _progress
from unsup.cli._io import check_output, load_data, write_output, writes_npz
from unsup.cli._report import InputError, shape, user_input

__all__ = ["clusterer", "describe", "dominance_hint", "run"]

#: A cluster holding at least this fraction of the rows (with k >= 2) gets a hint in the report.
DOMINANT_FRACTION = 0.9


def metric_params(s):
    return {"p": s.p} if getattr(s, "p", None) is not None else None


def metric_name(s):
    return f"minkowski p={s.p:g}" if getattr(s, "p", None) is not None else s.metric


def clusterer(s):
    """The estimator of ``unsup cluster`` (parameters checked against the data by the caller)."""
    from unsup.cluster import AgglomerativeClustering, DivisiveClustering, KMeans
    from unsup.mixture import GaussianMixture

    rs, mp = s.random_state, metric_params(s)
    if s.algorithm == "kmeans":
        return KMeans(n_clusters=s.n_clusters, metric=s.metric, metric_params=mp, random_state=rs)
    if s.algorithm == "agglomerative":
        return AgglomerativeClustering(n_clusters=s.n_clusters, metric=s.metric, metric_params=mp, linkage=s.linkage)
    if s.algorithm == "divisive":
        return DivisiveClustering(
            n_clusters=s.n_clusters, method=s.method, metric=s.metric, metric_params=mp, random_state=rs
        )
    return GaussianMixture(
        n_components=s.n_clusters,
        covariance_type=s.covariance_type,
        metric=s.metric,
        metric_params=mp,
        random_state=rs,
    )


def describe(s):
    """``kmeans (euclidean)``, ``agglomerative (ward linkage, euclidean, standardised)``, ..."""
    metric = metric_name(s)
    scaled = ", standardised" if getattr(s, "scale", False) else ""
    if s.algorithm == "agglomerative":
        return f"agglomerative ({s.linkage} linkage, {metric}{scaled})"
    if s.algorithm == "divisive":
        return f"divisive ({s.method}, {metric}{scaled})"
    if s.algorithm == "gmm":
        return f"gmm ({s.covariance_type} covariance, {metric} k-means init{scaled})"
    return f"kmeans ({metric}{scaled})"


def dominance_hint(sizes, scaled: bool) -> str | None:
    """A line for the report when one cluster holds almost every row (None otherwise).

    Unscaled features are the usual cause: the feature with the widest range
    decides every distance and a few extreme rows take the other clusters.
    """
    sizes = np.asarray(sizes)
    n = int(sizes.sum())
    if len(sizes) < 2 or n == 0 or sizes.max() < DOMINANT_FRACTION * n:
        return None
    share = f"hint: one cluster holds {100 * sizes.max() / n:.1f} % of the rows"
    if scaled:
        return f"{share}, even on standardised features: the other clusters may be outliers (try unsup detect)"
    return (
        f"{share}: features on very different scales let the widest one decide every distance; "
        "try --scale to standardise them first"
    )


def check_n_clusters(s, n_samples, where):
    if s.n_clusters > n_samples:
        raise InputError(f"{where}--n-clusters {s.n_clusters} is larger than the number of samples ({n_samples})")


def write_labels(s, labels, model, *, probabilities=None, scaling=None) -> None:
    """Write the labels to ``s.output``; an .npz also gets the centres, the probabilities, the scaling.

    ``probabilities``: a function giving them, called only for an .npz (over
    Dask, a pass over every file).
    """
    npz = {"labels": labels}
    centres = getattr(model, "cluster_centers_", getattr(model, "means_", None))
    if centres is not None:
        npz["cluster_centers"] = np.asarray(centres)
    if probabilities is not None and writes_npz(s.output):
        npz["probabilities"] = probabilities()
    if scaling is not None:
        npz["scale_mean"], npz["scale_std"] = scaling
    write_output(s.output, csv_columns={"label": labels}, npy=labels, npz=npz)


def summary(s, n_samples, labels, sizes, figures) -> list[str]:
    """The report: what ran, the cluster sizes, ``figures`` (lines), the hint, the file written."""
    lines = [
        f"{describe(s)}: {n_samples} samples -> {len(np.unique(labels))} clusters",
        "cluster sizes: " + " ".join(str(int(v)) for v in sizes),
        *figures,
    ]
    hint = dominance_hint(sizes, s.scale)
    if hint is not None:
        lines.append(hint)
    if s.output is not None:
        lines.append(f"wrote {s.output}")
    return lines


def _silhouette(X, labels, metric, random_state, metric_params=None):
    """Silhouette on at most 2000 rows, with unsup's metric; None when undefined."""
    from sklearn.metrics import silhouette_score

    from unsup.metrics import pairwise_distances

    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= X.shape[0] - 1:
        return None
    rng = np.random.default_rng(random_state)
    idx = np.sort(rng.choice(X.shape[0], size=2000, replace=False)) if X.shape[0] > 2000 else np.arange(X.shape[0])
    if len(np.unique(labels[idx])) < 2 or len(np.unique(labels[idx])) > len(idx) - 1:
        return None
    D = pairwise_distances(X[idx], metric=metric, **(metric_params or {}))
    np.fill_diagonal(D, 0.0)
    return float(silhouette_score(D, labels[idx], metric="precomputed"))


def run(s, rep) -> None:
    """``unsup cluster`` on one file, in memory."""
    check_output(s.output)
    _models.check_save_path(s)
    X, _ = load_data(s.data)
    check_n_clusters(s, X.shape[0], f"{s.data}: ")
    if s.algorithm == "gmm" and X.shape[0] < 2:
        raise InputError(f"{s.data}: gmm needs at least 2 samples, got {X.shape[0]}")
    model = clusterer(s)
    rep.info(f"{s.data}: {shape(X)}")
    scaler = None
    if s.scale:
        from sklearn.preprocessing import StandardScaler

        with user_input(s.data):
            scaler = StandardScaler().fit(X)
        X = scaler.transform(X)  # every figure below (inertia, silhouette, centres) is in these units
    step = rep.step(f"fitting {describe(s)} with {s.n_clusters} clusters")
    with user_input(s.data), step, _progress.engine_lines(rep, model, X.shape[0]):
        labels = np.asarray(model.fit_predict(X), dtype=np.int64)
    if scaler is not None:
        from sklearn.pipeline import make_pipeline

        # The saved model scales new data the same way ('unsup apply', 'unsup export').
        _models.save_model(s, make_pipeline(scaler, model), rep)
    else:
        _models.save_model(s, model, rep)
    sizes = np.bincount(labels, minlength=s.n_clusters)
    if s.output is not None:
        write_labels(
            s,
            labels,
            model,
            probabilities=(lambda: model.predict_proba(X)) if s.algorithm == "gmm" else None,
            scaling=None if scaler is None else (scaler.mean_, scaler.scale_),
        )
    if s.output == "-":
        return
    figures = []
    metric = metric_name(s)
    if s.algorithm == "kmeans":
        figures.append(f"inertia ({metric}): {model.inertia_:.6g}")
    if s.algorithm == "gmm":
        figures.append(f"mean log-likelihood: {model.score(X):.6g}, BIC: {model.bic(X):.6g}")
    sil = _silhouette(X, labels, s.metric, s.random_state, metric_params(s))
    if sil is not None:
        figures.append(f"silhouette ({metric}{', 2000-row sample' if X.shape[0] > 2000 else ''}): {sil:.4f}")
    for line in summary(s, X.shape[0], labels, sizes, figures):
        rep.out(line)
