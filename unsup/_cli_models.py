"""Saved models on the command line: ``--save-model``, ``unsup apply`` and ``unsup export``.

Kept apart from :mod:`unsup.cli`, which calls :func:`add_model_commands` from
its parser and :func:`save_model` after each fit; the errors, data loading and
output writing are the command line's own.

A model file is a joblib (pickle) file holding ``{"unsup_model": estimator,
"version": ..., "command": ...}``. Loading a pickle runs code chosen by whoever
wrote the file: load model files only from sources you trust. ``--help`` of
every command that reads one says so.
"""

from __future__ import annotations

import os

import numpy as np

PICKLE_WARNING = (
    "Security: a model file is a pickle; loading one from an untrusted source can run "
    "arbitrary code. Only load model files you made or trust."
)
_KEY = "unsup_model"


def add_model_commands(sub, common, data_help, saving_parsers) -> None:
    """Add ``--save-model`` to ``saving_parsers`` and the ``apply`` and ``export`` commands."""
    for parser in saving_parsers:
        parser.add_argument(
            "--save-model",
            metavar="MODEL",
            help="also save the fitted model to MODEL (a joblib file, for 'unsup apply' and 'unsup export')",
        )
    apply = sub.add_parser(
        "apply",
        parents=[common],
        help="score new data with a model saved by --save-model",
        description=(
            "Apply a model saved by 'unsup cluster|detect|compress --save-model MODEL' to the rows "
            "of DATA: cluster labels (and probabilities for gmm), anomaly scores and flags, or codes."
        ),
        epilog=PICKLE_WARNING + " OUT: as the command that saved the model writes it.",
    )
    apply.add_argument("model", metavar="MODEL", help="a model file saved by --save-model")
    apply.add_argument("data", metavar="DATA", help=data_help)
    apply.add_argument("-o", "--output", metavar="OUT", help="write the results to OUT (.csv, .npy, .npz, or -)")
    apply.set_defaults(run=run_apply)
    export = sub.add_parser(
        "export",
        parents=[common],
        help="write the ONNX graph of a model saved by --save-model",
        description=(
            "Write MODEL as an ONNX graph that onnxruntime (or any ONNX runtime) runs without Python. "
            'Needs the extra: pip install "unsup[onnx]".'
        ),
        epilog=PICKLE_WARNING + " See docs/deployment.md for each graph's outputs and tolerances.",
    )
    export.add_argument("model", metavar="MODEL", help="a model file saved by --save-model")
    export.add_argument("-o", "--output", metavar="FILE.onnx", required=True, help="the ONNX file to write")
    export.add_argument(
        "--float64", action="store_true", help="a graph with a float64 input (default float32)"
    )
    export.set_defaults(run=run_export)


def check_save_path(args) -> None:
    """Refuse a ``--save-model`` path that cannot be written, before any work."""
    from unsup.cli import check_writable

    path = getattr(args, "save_model", None)
    if path is not None:
        check_writable(path, "a model file name")


def save_model(args, model, rep) -> None:
    """Save the fitted ``model`` where ``--save-model`` says (nothing without it)."""
    import joblib

    from unsup import __version__
    from unsup.cli import InputError

    path = getattr(args, "save_model", None)
    if path is None:
        return
    try:
        joblib.dump({_KEY: model, "version": __version__, "command": args.command}, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    rep.info(f"saved the model to {path}")


def load_model(path: str):
    """The estimator in a model file; one-line ``InputError`` for anything else."""
    import joblib
    from sklearn.base import BaseEstimator

    from unsup.cli import InputError, _check_readable

    _check_readable(path)
    try:
        content = joblib.load(path)
    except Exception as exc:  # a pickle can fail in any way: all mean "not a model file"
        raise InputError(
            f"{path}: not a model file saved by --save-model ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        ) from None
    model = content.get(_KEY) if isinstance(content, dict) else content
    if not isinstance(model, BaseEstimator) or not hasattr(model, "n_features_in_"):
        raise InputError(f"{path}: not a model file saved by --save-model (it holds a {type(content).__name__})")
    return model


def _check_features(model, X, model_path, data_path):
    from unsup.cli import InputError

    if X.shape[1] != model.n_features_in_:
        raise InputError(
            f"{data_path}: {X.shape[1]} features, but the model in {model_path} was fitted on "
            f"{model.n_features_in_} features"
        )


def run_apply(args, rep) -> None:
    import sys

    from unsup.cli import check_output, load_data, write_output
    from unsup.quantization import QuantizedEmbedding

    check_output(args.output)
    model = load_model(args.model)
    X, _ = load_data(args.data)
    _check_features(model, X, args.model, args.data)
    name = type(model).__name__
    rep.info(f"{args.data}: {X.shape[0]} rows x {X.shape[1]} features; model {name} from {args.model}")
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
    if args.output is not None:
        write_output(args.output, csv_columns=columns, npy=npy, npz=npz)
    if args.output == "-":
        return
    rep.out(summary)
    if args.output is not None:
        rep.out(f"wrote {args.output}")


def run_export(args, rep) -> None:
    from unsup.cli import InputError

    if os.path.splitext(args.output)[1].lower() != ".onnx":
        raise InputError(f"{args.output}: the output of export must be a .onnx file")
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        raise InputError(f"{args.output}: cannot write: folder {os.path.dirname(args.output)!r} does not exist")
    try:
        from unsup.onnx import to_onnx
    except ImportError as exc:
        raise InputError(" ".join(str(exc).split())) from None
    model = load_model(args.model)
    dtype = np.float64 if args.float64 else np.float32
    with rep.step(f"converting {type(model).__name__} to ONNX"):
        onnx_model = to_onnx(model, np.zeros((1, model.n_features_in_), dtype=dtype))
    data = onnx_model.SerializeToString()
    try:
        with open(args.output, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise InputError(f"{args.output}: cannot write: {exc.strerror or exc}") from None
    outputs = ", ".join(o.name for o in onnx_model.graph.output)
    rep.out(f"{type(model).__name__} -> {args.output} ({len(data):,} bytes; input X, outputs {outputs})")
