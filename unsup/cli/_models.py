"""Saved models on the command line: ``--save-model``, ``unsup apply`` and ``unsup export``.

The commands call :func:`save_model` after each fit; the parser
(:mod:`unsup.cli._parser`) adds ``--save-model`` and the ``apply`` and
``export`` commands, whose runners are :func:`run_apply` and :func:`run_export`.

A model file is a joblib (pickle) file holding ``{"unsup_model": estimator,
"version": ..., "command": ...}``. Loading a pickle runs code chosen by whoever
wrote the file: load model files only from sources you trust. ``--help`` of
every command that reads one says so.
"""

from __future__ import annotations

import os

import numpy as np

from unsup.cli._io import check_output, check_readable, check_writable, load_data, write_output, writing
from unsup.cli._report import InputError, one_line, user_input

_KEY = "unsup_model"


def check_save_path(settings) -> None:
    """Refuse a ``--save-model`` path that cannot be written, before any work."""
    path = getattr(settings, "save_model", None)
    if path is not None:
        check_writable(path, "a model file name")


def save_model(settings, model, rep) -> None:
    """Save the fitted ``model`` where ``--save-model`` says (nothing without it)."""
    import joblib

    from unsup import __version__
    path = getattr(settings, "save_model", None)
    if path is None:
        return
    with writing(path):
        joblib.dump({_KEY: model, "version": __version__, "command": settings.command}, path)
    rep.info(f"saved the model to {path}")


def load_model(path: str):
    """The estimator in a model file; one-line ``InputError`` for anything else."""
    import joblib
    from sklearn.base import BaseEstimator

    check_readable(path)
    try:
        content = joblib.load(path)
    except Exception as exc:  # a pickle can fail in any way: all mean "not a model file"
        raise InputError(
            f"{path}: not a model file saved by --save-model ({type(exc).__name__}: {one_line(exc)[:120]})"
        ) from None
    model = content.get(_KEY) if isinstance(content, dict) else content
    if not isinstance(model, BaseEstimator) or not hasattr(model, "n_features_in_"):
        raise InputError(f"{path}: not a model file saved by --save-model (it holds a {type(content).__name__})")
    return model


def _check_features(model, X, model_path, data_path):
    if X.shape[1] != model.n_features_in_:
        raise InputError(
            f"{data_path}: {X.shape[1]} features, but the model in {model_path} was fitted on "
            f"{model.n_features_in_} features"
        )


def _apply(model, X):
    """What ``unsup apply`` writes and prints: (CSV columns, .npy array, .npz arrays, summary)."""
    import sys

    from unsup.quantization import QuantizedEmbedding

    name = type(model).__name__
    # A neural model's file imported unsup.neural (and torch) as it loaded; other models need neither.
    neural = sys.modules.get("unsup.neural")
    if neural is not None and isinstance(
        model, (neural.Autoencoder, neural.VariationalAutoencoder, neural.AutoencoderEnsemble)
    ):
        scores = -model.score_samples(X)
        flags = model.predict(X) == -1
        columns = {"score": scores, "outlier": flags.astype(np.int8)}
        npy = np.column_stack([scores, flags]).astype(np.float64)
        npz = {**columns, "threshold": np.float64(-model.offset_)}
        summary = f"{name}: {int(flags.sum())} of {X.shape[0]} rows flagged as anomalies"
    elif isinstance(model, QuantizedEmbedding):
        codes = model.transform(X)
        columns, npy, npz = {"codes": codes}, codes, {"codes": codes}
        summary = f"{name}: {X.shape[0]} rows -> {model.n_bits}-bit codes ({codes.shape[1]} bytes a row)"
    elif hasattr(model, "predict"):
        labels = np.asarray(model.predict(X), dtype=np.int64)
        columns, npy, npz = {"label": labels}, labels, {"labels": labels}
        if hasattr(model, "predict_proba"):
            npz["probabilities"] = model.predict_proba(X)
        sizes = np.bincount(labels) if labels.size else np.array([], dtype=np.int64)
        summary = f"{name}: {X.shape[0]} rows -> cluster sizes " + " ".join(str(int(s)) for s in sizes)
    else:
        Xt = np.asarray(model.transform(X))
        columns, npy, npz = {"transform": Xt}, Xt, {"transform": Xt}
        summary = f"{name}: {X.shape[0]} rows transformed to {Xt.shape[1]} columns"
    return columns, npy, npz, summary


def run_apply(settings, rep) -> None:
    """``unsup apply MODEL DATA``."""
    check_output(settings.output)
    model = load_model(settings.model)
    X, _ = load_data(settings.data)
    _check_features(model, X, settings.model, settings.data)
    name = type(model).__name__
    rep.info(f"{settings.data}: {X.shape[0]} rows x {X.shape[1]} features; model {name} from {settings.model}")
    with user_input(settings.data):
        columns, npy, npz, summary = _apply(model, X)
    if settings.output is not None:
        write_output(settings.output, csv_columns=columns, npy=npy, npz=npz)
    if settings.output == "-":
        return
    rep.out(summary)
    if settings.output is not None:
        rep.out(f"wrote {settings.output}")


def run_export(settings, rep) -> None:
    """``unsup export MODEL -o FILE.onnx``."""
    if os.path.splitext(settings.output)[1].lower() != ".onnx":
        raise InputError(f"{settings.output}: the output of export must be a .onnx file")
    check_writable(settings.output, "an .onnx file name")
    try:
        from unsup.onnx import to_onnx
    except ImportError as exc:
        raise InputError(one_line(exc)) from None
    model = load_model(settings.model)
    dtype = np.float64 if settings.float64 else np.float32
    with user_input(), rep.step(f"converting {type(model).__name__} to ONNX"):
        onnx_model = to_onnx(model, np.zeros((1, model.n_features_in_), dtype=dtype))
    data = onnx_model.SerializeToString()
    with writing(settings.output), open(settings.output, "wb") as f:
        f.write(data)
    outputs = ", ".join(o.name for o in onnx_model.graph.output)
    rep.out(f"{type(model).__name__} -> {settings.output} ({len(data):,} bytes; input X, outputs {outputs})")
