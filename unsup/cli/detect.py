"""``unsup detect DATA``: train an autoencoder detector on a file and flag the rows it reconstructs worst.

Without ``--model`` the detector is :class:`~unsup.neural.AutoencoderEnsemble`
(its defaults: the detector the docs recommend). torch is imported when the
command runs.
"""

from __future__ import annotations

import numpy as np

from unsup.cli import _models, _progress
from unsup.cli._io import check_output, load_data, write_output
from unsup.cli._report import InputError, shape, user_input

__all__ = ["detector", "run", "write_scores"]

#: What the score of each ``--model`` is (the report's wording).
SCORE_NAMES = {
    "ensemble": "mean standardised reconstruction error",
    "autoencoder": "reconstruction error",
    "vae": "negative ELBO",
}


def detector(s, n_features, **params):
    """The Autoencoder or VariationalAutoencoder of ``--model autoencoder|vae``, and its description.

    ``params`` are the estimator's further parameters (the in-memory command
    standardises and trims; the Dask one keeps the defaults).
    """
    from unsup.neural import Autoencoder, VariationalAutoencoder

    n_components = s.n_components or max(1, min(8, n_features // 2))
    Model = {"autoencoder": Autoencoder, "vae": VariationalAutoencoder}[s.model]
    model = Model(
        n_components=n_components,
        hidden_layer_sizes=(64, 32),
        contamination=s.contamination,
        random_state=s.random_state,
        **params,
    )
    return model, f"{Model.__name__} ({n_features} -> 64 -> 32 -> {n_components}"


def write_scores(s, scores, flags, threshold) -> None:
    """Write the anomaly scores and flags (and the threshold to an .npz) to ``s.output``."""
    columns = {"score": scores, "outlier": flags.astype(np.int8)}
    write_output(
        s.output,
        csv_columns=columns,
        npy=np.column_stack([scores, flags]).astype(np.float64),
        npz={**columns, "threshold": np.float64(threshold)},
    )


def run(s, rep) -> None:
    """``unsup detect`` on one file, in memory."""
    check_output(s.output)
    _models.check_save_path(s)
    X, _ = load_data(s.data)
    if X.shape[0] < 10:
        raise InputError(f"{s.data}: detect needs at least 10 samples, got {X.shape[0]}")
    if s.n_components is not None and s.n_components > X.shape[1]:
        raise InputError(
            f"{s.data}: --n-components {s.n_components} is larger than the number of features ({X.shape[1]})"
        )
    rep.info(f"{s.data}: {shape(X)}")
    if s.model == "ensemble":
        from unsup.neural import AutoencoderEnsemble

        name = "AutoencoderEnsemble"
        extra = {} if s.max_epochs is None else {"max_epochs": s.max_epochs}
        if s.n_components is not None:
            extra["n_components"] = s.n_components
        model = AutoencoderEnsemble(contamination=s.contamination, random_state=s.random_state, **extra)
        description = (
            f"training {name} ({model.n_estimators} autoencoders {X.shape[1]} -> {model.hidden_size} -> "
            f"{model.n_components}, {model.max_epochs} epochs)"
        )
    else:
        max_epochs = 200 if s.max_epochs is None else s.max_epochs
        # a detector on a file's raw columns: standardised, trimmed (the VAE's defaults; the
        # Autoencoder's own defaults are a reduction's)
        model, what = detector(s, X.shape[1], max_epochs=max_epochs, scale=True, trim_fraction=0.1)
        name = type(model).__name__
        description = f"training {what}, up to {max_epochs} epochs)"
    with user_input(s.data), rep.step(description) as note:
        with _progress.epochs(rep):
            model.fit(X)
        note["text"] = f"{model.n_iter_} epochs"
    _models.save_model(s, model, rep)
    scores = -model.score_samples(X)  # higher = more anomalous
    flags = model.predict(X) == -1
    threshold = -model.offset_
    if s.output is not None:
        write_scores(s, scores, flags, threshold)
    if s.output == "-":
        return
    order = np.argsort(-scores, kind="stable")[: min(5, int(flags.sum()))]
    rep.out(f"{name}: {int(flags.sum())} of {X.shape[0]} rows flagged as anomalies (contamination {s.contamination})")
    rep.out(
        f"anomaly score ({SCORE_NAMES[s.model]}): median {np.median(scores):.4g}, threshold {threshold:.4g}, "
        f"max {scores.max():.4g}"
    )
    if len(order):
        rep.out("top rows (0-based): " + ", ".join(f"{i} ({scores[i]:.4g})" for i in order))
    if s.output is not None:
        rep.out(f"wrote {s.output}")
