"""``unsup demo``: the main job on scikit-learn's digits, as a report and three plots.

An autoencoder learns a code of the images, the codes are compressed to 8, 4
and 1 bits and searched, the int8 codes are clustered five ways, anomalies
are flagged; :func:`run_demo` prints the report and :func:`save_demo_plots`
saves the figures of :func:`demo_figures`. Kept apart from the parser: the
demo is a command like the others.

matplotlib is imported only to save the plots, drawn on
``matplotlib.figure.Figure`` objects (no pyplot, no window, no backend to
set); without it the demo says so and skips them.
"""

from __future__ import annotations

import os
import time
import warnings

import numpy as np

from unsup.cli import _progress
from unsup.cli._parser import DEMO_OUTPUT
from unsup.cli._report import InputError, Reporter
from unsup.cli.compress import search_recall

__all__ = ["PLOT_FILES", "demo_figures", "run", "run_demo", "save_demo_plots"]

DEMO_COMPONENTS = 8
DEMO_HIDDEN = (128, 64)
DEMO_MAX_EPOCHS = 100
DEMO_WEIGHT_DECAY = 1e-4
DEMO_CONTAMINATION = 0.05
DEMO_SHUFFLED = 40
PLOT_FILES = ("latent_map.png", "dendrogram.png", "anomaly_scores.png")


def _timed(fn, *args):
    """``fn(*args)`` and the seconds it took."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run_demo(output: str = DEMO_OUTPUT, *, random_state: int = 0, rep: Reporter | None = None) -> dict:
    """The main job on scikit-learn's digits; print the report and save the plots.

    An :class:`~unsup.neural.Autoencoder` learns an 8-d code of the 64-pixel
    images (trained on 80 % of them; its reconstruction error on the other
    20 % is compared with PCA's at the same width), a
    :class:`~unsup.quantization.QuantizedEmbedding` compresses the codes to
    8, 4 and 1 bits (compression ratio and recall@10 of the code search),
    the int8 codes are clustered by KMeans (euclidean and cosine),
    AgglomerativeClustering, DivisiveClustering and GaussianMixture (ARI and
    NMI against the digit labels), and the autoencoder flags anomalies among
    the images and among held-out images whose pixels were shuffled.

    Parameters
    ----------
    output : str, default="unsup-demo-output"
        Folder for the plots (created if needed; plots need matplotlib).
    random_state : int, default=0
        Seeds the split, the models and the shuffled images.
    rep : Reporter, default=None
        Where the report and the progress go (a quiet one when None).

    Returns
    -------
    results : dict
        The figures of the report, by name.
    """
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    from unsup.cluster import AgglomerativeClustering, DivisiveClustering, KMeans
    from unsup.mixture import GaussianMixture
    from unsup.neural import Autoencoder
    from unsup.quantization import QuantizedEmbedding

    rep = Reporter(quiet=True) if rep is None else rep
    t_start = time.perf_counter()
    X, y = load_digits(return_X_y=True)
    n, d = X.shape
    train, test = train_test_split(np.arange(n), test_size=0.2, random_state=random_state, stratify=y)
    results: dict = {}

    def emit():  # print a finished section (never while a progress line is open)
        for line in report:
            rep.out(line)
        report.clear()

    report = [
        f"unsup demo: scikit-learn's digits, {n} images of 8x8 pixels (values 0-16), "
        f"{len(np.unique(y))} classes; random_state={random_state}"
    ]

    # 1. The autoencoder, and PCA at the same width.
    ae = Autoencoder(DEMO_COMPONENTS, hidden_layer_sizes=DEMO_HIDDEN, max_epochs=DEMO_MAX_EPOCHS)
    ae.set_params(weight_decay=DEMO_WEIGHT_DECAY, contamination=DEMO_CONTAMINATION, random_state=random_state)
    arch = " -> ".join(str(w) for w in (d, *DEMO_HIDDEN, DEMO_COMPONENTS))
    with rep.step(f"training the autoencoder {arch} on {len(train)} images") as note:
        # The epoch budget is the demo's own choice, not the user's: reaching it
        # is reported in the figures below, not as a ConvergenceWarning.
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning, message=".*max_epochs.*")
            with _progress.epochs(rep):
                _, t_ae = _timed(ae.fit, X[train])
        note["text"] = f"{ae.n_iter_} epochs"
    pca, t_pca = _timed(PCA(n_components=DEMO_COMPONENTS, random_state=random_state).fit, X[train])
    mse_ae = float(np.mean((ae.reconstruct(X[test]) - X[test]) ** 2))
    mse_pca = float(np.mean((pca.inverse_transform(pca.transform(X[test])) - X[test]) ** 2))
    results.update(mse_autoencoder=mse_ae, mse_pca=mse_pca, autoencoder_fit_s=t_ae)
    report += [
        "",
        f"Autoencoder {arch}, trained on {len(train)} images: {ae.n_iter_} epochs in {t_ae:.2f} s"
        + (" (the demo's budget)" if ae.n_iter_ >= DEMO_MAX_EPOCHS else ""),
        f"  reconstruction MSE on the {len(test)} held-out images: autoencoder {mse_ae:.3f}, "
        f"PCA ({DEMO_COMPONENTS} components, {t_pca:.2f} s) {mse_pca:.3f}",
    ]

    emit()

    # 2. The codes: 8, 4 and 1 bits; recall@10 of the code search from every image.
    Z = ae.transform(X)
    report += [
        "",
        f"Codes of the {DEMO_COMPONENTS}-d latents (QuantizedEmbedding, asymmetric, per channel), {n} images",
        "  bits   ratio   recall@10 codes   recall@10 rescored   fit",
    ]
    embeddings = {}
    with rep.step("compressing the latents to 8, 4 and 1 bits and searching them"):
        for n_bits in (8, 4, 1):
            qe, t_qe = _timed(QuantizedEmbedding(None, n_bits=n_bits).fit, Z)
            codes_only, rescored = search_recall(qe, Z, np.arange(n), k=10)
            embeddings[n_bits] = qe
            results[f"ratio_{n_bits}"] = qe.compression_ratio_
            results[f"recall_{n_bits}"] = (codes_only, rescored)
            report.append(
                f"  {n_bits:>4}  {qe.compression_ratio_:5.1f}x  {codes_only:16.3f}  {rescored:19.3f}   {t_qe:.2f} s"
            )
    report.append(
        "  recall@10: the share of each image's 10 nearest neighbours (exact search of the float codes) "
        "that the search finds; codes: scanning the codes alone; rescored: a longer candidate list from "
        "the codes, reranked with float distances"
    )
    qe8 = embeddings[8]
    Zq = qe8.inverse_transform(qe8.transform(Z))

    emit()

    # 3. Clustering the int8 codes (dequantised), against the digit labels.
    models = [
        ("KMeans (euclidean)", KMeans(10, metric="euclidean", random_state=random_state), Zq),
        ("KMeans (cosine)", KMeans(10, metric="cosine", random_state=random_state), Zq),
        ("AgglomerativeClustering (ward)", AgglomerativeClustering(10, linkage="ward"), Zq),
        ("DivisiveClustering (bisecting)", DivisiveClustering(10, random_state=random_state), Zq),
        ("GaussianMixture (full)", GaussianMixture(10, covariance_type="full", random_state=random_state), Zq),
        ("KMeans on the raw pixels", KMeans(10, random_state=random_state), X),
    ]
    report += [
        "",
        "Clustering the int8 codes into 10 clusters, scored against the digit labels",
        f"  {'model':<32} {'ARI':>6} {'NMI':>6}   fit",
    ]
    fitted = {}
    with rep.step("clustering the codes five ways"):
        for name, model, data in models:
            labels, t_fit = _timed(model.fit_predict, data)
            ari = adjusted_rand_score(y, labels)
            nmi = normalized_mutual_info_score(y, labels)
            fitted[name] = model
            results[name] = (ari, nmi, t_fit)
            note = "   (baseline, no autoencoder)" if data is X else ""
            report.append(f"  {name:<32} {ari:6.3f} {nmi:6.3f}   {t_fit:.2f} s{note}")

    emit()

    # 4. Anomalies: the training threshold on every image, the held-out ones, and shuffled pixels.
    rng = np.random.default_rng(random_state)
    shuffled = X[rng.choice(test, size=DEMO_SHUFFLED, replace=False)].copy()
    for row in shuffled:
        rng.shuffle(row)
    flagged = ae.predict(X) == -1
    normal_test, normal_shuffled = ae.score_samples(X[test]), ae.score_samples(shuffled)
    is_anomaly = np.r_[np.zeros(len(test), dtype=bool), np.ones(DEMO_SHUFFLED, dtype=bool)]
    auc = roc_auc_score(is_anomaly, -np.r_[normal_test, normal_shuffled])
    caught = int(np.sum(normal_shuffled < ae.offset_))
    false_alarms = int(np.sum(normal_test < ae.offset_))
    results.update(roc_auc=auc, flagged=int(flagged.sum()), caught=caught, false_alarms=false_alarms)
    per_digit = np.bincount(y[flagged], minlength=10)
    top = np.argsort(-per_digit, kind="stable")[:3]
    report += [
        "",
        f"Anomalies (reconstruction error above the {100 * (1 - DEMO_CONTAMINATION):g}th percentile of the "
        f"training images, contamination {DEMO_CONTAMINATION})",
        f"  all {n} images: {int(flagged.sum())} flagged; most flagged digits: "
        + ", ".join(f"{k} ({per_digit[k]})" for k in top),
        f"  {len(test)} held-out images: {false_alarms} flagged (unseen digits reconstruct worse than trained ones)",
        f"  {DEMO_SHUFFLED} held-out images with shuffled pixels: {caught} flagged; "
        f"ROC AUC {auc:.3f} against the {len(test)} clean ones",
    ]

    emit()

    # 5. Plots.
    with rep.step("saving the plots"):
        saved, note_text = save_demo_plots(
            output,
            Z=Z,
            y=y,
            agglomerative=fitted["AgglomerativeClustering (ward)"],
            divisive=fitted["DivisiveClustering (bisecting)"],
            codes=Zq,
            scores=np.r_[normal_test, normal_shuffled],
            is_anomaly=is_anomaly,
            threshold=ae.offset_,
            random_state=random_state,
        )
    results["plots"] = saved
    report += ["", note_text, f"Done in {time.perf_counter() - t_start:.1f} s"]
    emit()
    return results


#: Points of the latent map: t-SNE stays a few seconds up to here (the digits' 1797 are all drawn).
DEMO_TSNE_MAX = 2000


def save_demo_plots(
    output, *, Z, y, agglomerative, divisive, scores, is_anomaly, threshold, random_state, codes=None
):
    """Save the demo's three figures into ``output``; return (paths, a line for the report).

    The figures are :func:`demo_figures`'. Without matplotlib nothing is
    saved and the line says so.
    """
    try:
        # The package first: a submodule already imported would be found without it.
        import matplotlib  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return [], "Plots: skipped, matplotlib is not installed (pip install matplotlib)"

    figures = demo_figures(
        Z=Z, y=y, agglomerative=agglomerative, divisive=divisive, scores=scores, is_anomaly=is_anomaly,
        threshold=threshold, random_state=random_state, codes=codes,
    )
    os.makedirs(output, exist_ok=True)
    paths = [os.path.join(output, name) for name in PLOT_FILES]
    for fig, path in zip(figures, paths, strict=True):
        fig.savefig(path, dpi=100)
    return paths, f"Plots in {output}{os.sep}: " + ", ".join(PLOT_FILES)


def demo_figures(*, Z, y, agglomerative, divisive, scores, is_anomaly, threshold, random_state, codes=None):
    """The demo's three matplotlib Figures: the latent map, the two dendrograms, the anomaly scores.

    ``Z`` are the latent codes (mapped to the plane by t-SNE when wider than
    2, up to ``DEMO_TSNE_MAX`` points, else PCA), ``y`` the digits.
    ``scores`` are ``score_samples`` values (higher is more normal) and
    ``threshold`` the detector's ``offset_``. ``codes``, when given, are the
    data ``divisive`` was fitted on: its tree is grown on to single samples
    for the plot (the same clusters), so that its branches below the cut
    show as the agglomerative ones do.
    """
    from matplotlib.figure import Figure  # Figure objects, not pyplot: no backend, no window, no global state
    from sklearn.base import clone

    from unsup.plotting import plot_dendrogram, plot_latent, plot_scores
    from unsup.utils._threads import single_threaded

    latent = Figure(figsize=(7, 6), layout="constrained")
    ax = latent.subplots()
    width = np.asarray(Z).shape[1]
    # t-SNE keeps the neighbourhoods (the course's picture of a latent space); PCA beyond its reach.
    method = "tsne" if width > 2 and len(Z) <= DEMO_TSNE_MAX else "pca"
    # One OpenMP thread: t-SNE's gradient on a shared machine is several times slower with more.
    with single_threaded("openmp"):
        plot_latent(Z, y, method=method, random_state=random_state, ax=ax)
    how = {"tsne": f"t-SNE of the {width}-d code", "pca": f"PCA of the {width}-d code"}[method]
    ax.set_title(
        f"Autoencoder latents of the digits ({how}), by digit" if width > 2
        else "Autoencoder latents of the digits, by digit"
    )

    if codes is not None:
        divisive = clone(divisive).set_params(compute_full_tree=True).fit(codes)
    n_clusters = len(np.unique(agglomerative.labels_))
    trees = Figure(figsize=(12, 5.6), layout="constrained")
    ax1, ax2 = trees.subplots(1, 2)
    plot_dendrogram(agglomerative, truncate_mode="lastp", p=30, leaf_rotation=90, leaf_font_size=8, ax=ax1)
    ax1.set_title("Agglomerative (ward) on the int8 codes")
    ax1.set_ylabel("Ward merge height: sqrt(2 x rise in within-cluster SS)")
    plot_dendrogram(divisive, truncate_mode="lastp", p=30, leaf_rotation=90, leaf_font_size=8, ax=ax2)
    ax2.set_title("Divisive (bisecting k-means) on the int8 codes")
    ax2.set_ylabel("split height: within-cluster SS of the cluster split")
    trees.suptitle(
        f"Dashed line: the cut into {n_clusters} clusters; the links below it are coloured by cluster. "
        "(n) under a leaf: n images drawn as one leaf.\n"
        "The heights differ in kind (SS: sum of squared distances to the cluster mean): Ward's is what one "
        "merge adds to the SS,\nthe divisive one is all the SS of the cluster it splits. "
        "Compare the shapes and the cuts, not the numbers.",
        fontsize=9,
    )

    # Log scale: the shuffled images' errors are 100x the digits', which would crush the digits into one bin.
    anomalies = Figure(figsize=(7, 4.5), layout="constrained")
    ax = anomalies.subplots()
    plot_scores(-np.log10(-scores), is_anomaly, threshold=-np.log10(-threshold), bins=60, ax=ax)
    ax.set_title("Autoencoder: held-out digits and images with shuffled pixels")
    ax.set_xlabel("-log10 reconstruction error (higher is more normal)")
    return [latent, trees, anomalies]


def run(s, rep) -> None:
    """``unsup demo``: check the output folder, then :func:`run_demo`."""
    if os.path.exists(s.output) and not os.path.isdir(s.output):
        raise InputError(f"{s.output}: exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(s.output))
    if not os.path.isdir(parent):
        raise InputError(f"{s.output}: cannot create the folder: {parent!r} does not exist")
    run_demo(s.output, random_state=s.random_state, rep=rep)
