"""``unsup cluster|detect|compress`` over several ``.npy`` files or a glob, on Dask.

Design constraints
------------------
- Self-contained: :mod:`unsup.cli` parses ``DATA...`` (one or more paths or
  glob patterns) and ``--scheduler ADDRESS`` and hands over here when there
  is more than one file, a pattern, or a scheduler; one plain file keeps the
  in-memory path untouched.
- The files become one dask array with a block per file (each read with
  ``np.load(mmap_mode="r")`` inside its task, so no file is read on the
  client); every file is checked first (a 2-d numeric ``.npy``, the same
  number of columns), with the in-memory loader's one-line errors.
- The computation runs on the cluster at ``--scheduler`` or, without it, on a
  ``LocalCluster`` started for the command (and closed after it).
- Outputs are the in-memory command's formats; labels, scores and codes are
  gathered to be written (one value per row, or the codes).
"""

from __future__ import annotations

import glob
import os
import warnings

import numpy as np

__all__ = ["expand_paths", "wants_dask", "run"]


def expand_paths(patterns):
    """The files named by ``patterns`` (globs expanded, sorted within a pattern, in order)."""
    from unsup.cli import InputError

    paths = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(glob.glob(pattern))
            if not found:
                raise InputError(f"{pattern}: no file matches this pattern")
            paths.extend(found)
        else:
            paths.append(pattern)
    return paths


def wants_dask(args) -> bool:
    """More than one file, a glob pattern, or ``--scheduler``: the Dask path."""
    data = args.data if isinstance(args.data, list) else [args.data]
    return len(data) > 1 or any(glob.has_magic(p) for p in data) or getattr(args, "scheduler", None) is not None


def _check_file(path):
    """Shape and dtype of one ``.npy`` file, read from its header only (one-line errors)."""
    from unsup.cli import InputError, _check_readable

    if os.path.splitext(path)[1].lower() != ".npy":
        raise InputError(f"{path}: several files must all be .npy arrays (a block per file)")
    _check_readable(path)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path}: not a valid .npy file ({' '.join(str(exc).split())})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: not a valid .npy file ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise InputError(f"{path}: non-numeric values (dtype {arr.dtype}), expected numbers")
    if arr.ndim != 2:
        raise InputError(f"{path}: expected a 2-d array (n_samples, n_features), got shape {arr.shape}")
    return arr.shape


def _read(path):
    return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False), dtype=np.float64)


def load_dask(paths):
    """One dask array with a block per file."""
    import dask
    import dask.array as da

    from unsup.cli import InputError

    shapes = [_check_file(p) for p in paths]
    widths = {s[1] for s in shapes}
    if len(widths) > 1:
        detail = ", ".join(f"{p}: {s[1]}" for p, s in zip(paths, shapes))
        raise InputError(f"the files have different numbers of columns ({detail})")
    blocks = [da.from_delayed(dask.delayed(_read)(p), shape=s, dtype=np.float64) for p, s in zip(paths, shapes)]
    return da.concatenate(blocks, axis=0)


def _client(address):
    from distributed import Client, LocalCluster

    if address is not None:
        return Client(address, set_as_default=False), None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster, set_as_default=False), cluster


def run(args, rep) -> None:
    """Run ``args.command`` on the files of ``args.data`` through Dask."""
    import dask

    from unsup.cli import check_output

    check_output(args.output)
    paths = expand_paths(args.data if isinstance(args.data, list) else [args.data])
    X = load_dask(paths)
    args.data = f"{len(paths)} files" if len(paths) > 1 else paths[0]
    client, cluster = _client(args.scheduler)
    try:
        with dask.config.set(scheduler=client):
            where = args.scheduler or "a local cluster of 2 workers"
            rep.info(f"{args.data}: {X.shape[0]} x {X.shape[1]} in {X.numblocks[0]} blocks, on {where}")
            {"cluster": _cluster, "detect": _detect, "compress": _compress}[args.command](args, rep, X)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _cluster(args, rep, X):
    from unsup.cli import InputError, _clusterer, _describe, _metric_name, dominance_hint, write_output

    if args.algorithm in ("agglomerative", "divisive"):
        raise InputError(
            f"--algorithm {args.algorithm} needs all the rows in one process; with several files, "
            "use kmeans or gmm, or cluster a sample (one file) and assign the rest with predict"
        )
    if args.n_clusters > X.shape[0]:
        raise InputError(f"--n-clusters {args.n_clusters} is larger than the number of samples ({X.shape[0]})")
    model = _clusterer(args)
    if args.scale:  # StandardScaler's arithmetic, lazily: mean and standard deviation in one pass
        import dask

        mean, std = dask.compute(X.mean(axis=0), X.std(axis=0))
        std = np.where(std > 0, std, 1.0)
        X = (X - mean) / std
    with rep.step(f"fitting {_describe(args)} with {args.n_clusters} clusters on Dask"):
        model.fit(X)
        labels = np.asarray(model.labels_.compute(), dtype=np.int64)
    if args.output is not None:
        npz = {"labels": labels}
        centres = getattr(model, "cluster_centers_", getattr(model, "means_", None))
        npz["cluster_centers"] = np.asarray(centres)
        if args.algorithm == "gmm":
            npz["probabilities"] = model.predict_proba(X).compute()
        if args.scale:
            npz["scale_mean"], npz["scale_std"] = np.asarray(mean), np.asarray(std)
        write_output(args.output, csv_columns={"label": labels}, npy=labels, npz=npz)
    if args.output == "-":
        return
    sizes = np.bincount(labels, minlength=args.n_clusters)
    rep.out(f"{_describe(args)}: {X.shape[0]} samples -> {len(np.unique(labels))} clusters")
    rep.out("cluster sizes: " + " ".join(str(int(s)) for s in sizes))
    if args.algorithm == "kmeans":
        rep.out(f"inertia ({_metric_name(args)}): {model.inertia_:.6g}")
    else:
        rep.out(f"mean log-likelihood: {float(model.score(X).compute()):.6g}")
    hint = dominance_hint(sizes, args.scale)
    if hint is not None:
        rep.out(hint)
    if args.output is not None:
        rep.out(f"wrote {args.output}")


def _detect(args, rep, X):
    from unsup.cli import InputError, write_output
    from unsup.neural import Autoencoder, VariationalAutoencoder

    if X.shape[0] < 10:
        raise InputError(f"detect needs at least 10 samples, got {X.shape[0]}")
    n_components = args.n_components or max(1, min(8, X.shape[1] // 2))
    Model = Autoencoder if args.model == "autoencoder" else VariationalAutoencoder
    model = Model(
        n_components=n_components, hidden_layer_sizes=(64, 32), max_epochs=args.max_epochs,
        contamination=args.contamination, random_state=args.random_state,
    )
    from unsup import _cli_progress

    with rep.step(f"training {Model.__name__} on Dask, streaming the blocks") as note:
        with _cli_progress.epochs(rep):
            model.fit(X)
        note["text"] = f"{model.n_iter_} epochs"
    scores = -np.asarray(model.score_samples(X).compute())
    flags = scores > -model.offset_
    if args.output is not None:
        columns = {"score": scores, "outlier": flags.astype(np.int8)}
        write_output(
            args.output, csv_columns=columns, npy=np.column_stack([scores, flags]).astype(np.float64),
            npz={**columns, "threshold": np.float64(-model.offset_)},
        )
    if args.output == "-":
        return
    rep.out(f"{Model.__name__}: {int(flags.sum())} of {X.shape[0]} rows flagged as anomalies "
            f"(contamination {args.contamination})")
    if args.output is not None:
        rep.out(f"wrote {args.output}")


def _compress(args, rep, X):
    from unsup.cli import write_output
    from unsup.quantization import Quantizer

    if args.n_bits != 8:
        from unsup.cli import InputError

        raise InputError("with several files, compress writes 8-bit codes (--n-bits 8)")
    q = Quantizer(n_bits=8, scheme=args.scheme, granularity=args.granularity, axis=1, observer=args.observer)
    with rep.step(f"calibrating 8-bit {args.scheme} codes block by block"):
        q.fit(X)
        codes = np.asarray(q.transform(X).compute())
    if args.output is not None:
        extra = {"n_bits": np.int64(8), "scheme": np.str_(args.scheme), "n_features": np.int64(X.shape[1]),
                 "scale": np.asarray(q.scale_), "zero_point": np.asarray(q.zero_point_)}
        write_output(args.output, csv_columns={"codes": codes}, npy=codes, npz={"codes": codes, **extra}, names=[])
    if args.output == "-":
        return
    rep.out(f"{X.shape[0]} vectors x {X.shape[1]} features -> 8-bit codes ({args.scheme}, {args.granularity})")
    rep.out(f"size: {X.shape[0] * X.shape[1] * 4:,} bytes as float32 -> {codes.nbytes:,} bytes of codes")
    if args.output is not None:
        rep.out(f"wrote {args.output}")
