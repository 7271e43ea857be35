"""``unsup cluster|detect|compress`` over several ``.npy`` files or a glob, on Dask.

Design constraints
------------------
- Self-contained: the parser takes ``DATA...`` (one or more paths or glob
  patterns) and ``--scheduler ADDRESS``, and :func:`unsup.cli.main` hands
  over here when there is more than one file, a pattern, or a scheduler
  (``Settings.dask``); one plain file keeps the in-memory path untouched.
- The files become one dask array with a block per file (each read with
  ``np.load(mmap_mode="r")`` inside its task, so no file is read on the
  client); every file is checked first (a 2-d numeric ``.npy``, the same
  number of columns), with the in-memory loader's one-line errors.
- The computation runs on the cluster at ``--scheduler`` or, without it, on a
  ``LocalCluster`` started for the command (and closed after it); the
  variables its nannies set in this process's environment are put back.
- Outputs are the in-memory command's formats; labels, scores and codes are
  gathered to be written (one value per row, or the codes).
"""

from __future__ import annotations

import contextlib
import glob
import os
import warnings

import numpy as np

from unsup.cli import _progress
from unsup.cli._io import check_output, check_readable, npy_header, write_output
from unsup.cli._report import InputError, user_input

__all__ = ["data_label", "expand_paths", "load_dask", "run"]


def expand_paths(patterns):
    """The files named by ``patterns`` (globs expanded, sorted within a pattern, in order)."""
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


def data_label(paths) -> str:
    """What messages name the data by: the one file, or ``"N files"``."""
    return f"{len(paths)} files" if len(paths) > 1 else paths[0]


def _check_file(path):
    """Shape of one ``.npy`` file of several, from its header (the checks of a single file: one-line errors)."""
    if os.path.splitext(path)[1].lower() != ".npy":
        raise InputError(f"{path}: several files must all be .npy arrays (a block per file)")
    check_readable(path)
    return npy_header(path)[0]


def _read(path):
    return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False), dtype=np.float64)


def load_dask(paths):
    """One dask array with a block per file."""
    import dask
    import dask.array as da

    shapes = [_check_file(p) for p in paths]
    widths = {s[1] for s in shapes}
    if len(widths) > 1:
        detail = ", ".join(f"{p}: {s[1]}" for p, s in zip(paths, shapes))
        raise InputError(f"the files have different numbers of columns ({detail})")
    blocks = [da.from_delayed(dask.delayed(_read)(p), shape=s, dtype=np.float64) for p, s in zip(paths, shapes)]
    return da.concatenate(blocks, axis=0)


@contextlib.contextmanager
def _environment_restored():
    """Put back the variables a ``LocalCluster`` sets in this process's environment.

    A ``dask.distributed`` nanny sets its ``pre-spawn-environ`` variables
    (``OMP_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_``, ...),
    ``PYTHONHASHSEED`` and ``__DASK_PARENT_PID`` in the process that runs
    it, before each worker starts, and leaves them there: ``unsup.cli.main`` called from a script or
    a notebook would hand them on to every later subprocess (one thread
    each). The command leaves the environment as it found it.
    """
    import dask

    names = {*dask.config.get("distributed.nanny.pre-spawn-environ", default={}), "PYTHONHASHSEED", "__DASK_PARENT_PID"}
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _client(address):
    from distributed import Client, LocalCluster

    if address is not None:
        return Client(address, set_as_default=False), None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    return Client(cluster, set_as_default=False), cluster


def run(s, rep) -> None:
    """Run ``s.command`` on the files of ``s.data`` through Dask."""
    import dask

    check_output(s.output)
    if getattr(s, "save_model", None):
        raise InputError(
            "--save-model is not available with several files (a model fitted on Dask is not saved); "
            "fit on one file to save the model, then apply it to each file with 'unsup apply'"
        )
    paths = expand_paths(s.data)
    X = load_dask(paths)
    s = s.replace(data=data_label(paths))  # what the messages name
    with _environment_restored():
        client, cluster = _client(s.scheduler)
        try:
            with dask.config.set(scheduler=client):
                where = s.scheduler or "a local cluster of 2 workers"
                rep.info(f"{s.data}: {X.shape[0]} x {X.shape[1]} in {X.numblocks[0]} blocks, on {where}")
                {"cluster": _cluster, "detect": _detect, "compress": _compress}[s.command](s, rep, X)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _cluster(s, rep, X):
    from unsup.cli import cluster

    if s.algorithm in ("agglomerative", "divisive"):
        raise InputError(
            f"--algorithm {s.algorithm} needs all the rows in one process; with several files, "
            "use kmeans or gmm, or cluster a sample (one file) and assign the rest with predict"
        )
    cluster.check_n_clusters(s, X.shape[0], "")
    model = cluster.clusterer(s)
    if s.scale:  # StandardScaler's arithmetic, lazily: mean and standard deviation in one pass
        import dask

        mean, std = dask.compute(X.mean(axis=0), X.std(axis=0))
        std = np.where(std > 0, std, 1.0)
        X = (X - mean) / std
    with user_input(s.data), rep.step(f"fitting {cluster.describe(s)} with {s.n_clusters} clusters on Dask"):
        model.fit(X)
        labels = np.asarray(model.labels_.compute(), dtype=np.int64)
    if s.output is not None:
        cluster.write_labels(
            s,
            labels,
            model,
            probabilities=(lambda: model.predict_proba(X).compute()) if s.algorithm == "gmm" else None,
            scaling=(np.asarray(mean), np.asarray(std)) if s.scale else None,
        )
    if s.output == "-":
        return
    sizes = np.bincount(labels, minlength=s.n_clusters)
    if s.algorithm == "kmeans":
        figure = f"inertia ({cluster.metric_name(s)}): {model.inertia_:.6g}"
    else:
        figure = f"mean log-likelihood: {float(model.score(X).compute()):.6g}"
    for line in cluster.summary(s, X.shape[0], labels, sizes, [figure]):
        rep.out(line)


def _detect(s, rep, X):
    from unsup.cli import detect

    if s.model == "ensemble":
        raise InputError(
            "--model ensemble needs all the rows in one process; with several files, use --model autoencoder "
            "or --model vae (trained streaming the blocks), or detect on one file"
        )
    if X.shape[0] < 10:
        raise InputError(f"detect needs at least 10 samples, got {X.shape[0]}")
    model, _ = detect.detector(s, X.shape[1], max_epochs=s.max_epochs)
    name = type(model).__name__
    with user_input(s.data), rep.step(f"training {name} on Dask, streaming the blocks") as note:
        with _progress.epochs(rep):
            model.fit(X)
        note["text"] = f"{model.n_iter_} epochs"
    scores = -np.asarray(model.score_samples(X).compute())
    flags = scores > -model.offset_
    if s.output is not None:
        detect.write_scores(s, scores, flags, -model.offset_)
    if s.output == "-":
        return
    rep.out(f"{name}: {int(flags.sum())} of {X.shape[0]} rows flagged as anomalies (contamination {s.contamination})")
    if s.output is not None:
        rep.out(f"wrote {s.output}")


def _compress(s, rep, X):
    from unsup.quantization import Quantizer

    if s.n_bits != 8:
        raise InputError("with several files, compress writes 8-bit codes (--n-bits 8)")
    q = Quantizer(n_bits=8, scheme=s.scheme, granularity=s.granularity, axis=1, observer=s.observer)
    with user_input(s.data), rep.step(f"calibrating 8-bit {s.scheme} codes block by block"):
        q.fit(X)
        codes = np.asarray(q.transform(X).compute())
    if s.output is not None:
        extra = {"n_bits": np.int64(8), "scheme": np.str_(s.scheme), "n_features": np.int64(X.shape[1]),
                 "scale": np.asarray(q.scale_), "zero_point": np.asarray(q.zero_point_)}
        write_output(s.output, csv_columns={"codes": codes}, npy=codes, npz={"codes": codes, **extra}, names=[])
    if s.output == "-":
        return
    rep.out(f"{X.shape[0]} vectors x {X.shape[1]} features -> 8-bit codes ({s.scheme}, {s.granularity})")
    rep.out(f"size: {X.shape[0] * X.shape[1] * 4:,} bytes as float32 -> {codes.nbytes:,} bytes of codes")
    if s.output is not None:
        rep.out(f"wrote {s.output}")
