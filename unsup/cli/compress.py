"""``unsup compress DATA``: quantize the rows of a file to 8-, 4- or 1-bit codes and report the error."""

from __future__ import annotations


import numpy as np

from unsup.cli import _models
from unsup.cli._io import check_output, load_data, write_output, writes_npz
from unsup.cli._report import count, shape, user_input

__all__ = ["run", "search_recall"]


def search_recall(model, X, queries, k=10):
    """Recall@k of ``model.kneighbors`` for the rows ``queries`` of the fitted set ``X``, codes alone and rescored.

    :func:`unsup.metrics.recall_at_k` against exact euclidean search (computed once for both); each
    query finds itself in both searches. Returns ``(recall of the codes alone,
    recall after reranking with float distances)``.
    """
    from unsup.metrics._ranking import recalls_at_k

    k = min(k, X.shape[0])
    found = [model.kneighbors(X[queries], n_neighbors=k, rescore=rescore)[1] for rescore in (False, True)]
    return tuple(recalls_at_k(X, found, queries=X[queries]))


def _unpack_codes(codes, n_bits, scheme, n_features):
    from unsup.quantization import unpack_bits

    if n_bits == 8:
        return codes
    return unpack_bits(codes, n_bits, n_features, signed=n_bits == 4 and scheme == "symmetric")


def run(s, rep) -> None:
    """``unsup compress`` on one file, in memory."""
    check_output(s.output)
    _models.check_save_path(s)
    X, header = load_data(s.data)
    from unsup.quantization import QuantizedEmbedding

    model = QuantizedEmbedding(None, n_bits=s.n_bits, scheme=s.scheme, granularity=s.granularity, observer=s.observer)
    n, d = X.shape
    rep.info(f"{s.data}: {shape(X)}")
    settings = f"{s.granularity}, {s.observer}" if s.n_bits != 1 else f"{s.granularity}, sign bits"
    with user_input(s.data), rep.step(f"calibrating {s.n_bits}-bit {s.scheme} codes ({settings})"):
        model.fit(X)
        codes = model.transform(X)
    _models.save_model(s, model, rep)
    if s.output is not None:
        if writes_npz(s.output):
            # Everything needed to decode: x = scale * (code - zero_point), or the 1-bit levels.
            extra = {"n_bits": np.int64(s.n_bits), "scheme": np.str_(s.scheme), "n_features": np.int64(d)}
            if model.quantizer_ is not None:
                extra["scale"] = np.asarray(model.quantizer_.scale_)
                extra["zero_point"] = np.asarray(model.quantizer_.zero_point_)
            else:
                extra["threshold"] = np.asarray(model.threshold_)
                extra["levels"] = np.asarray(model.levels_)
            write_output(s.output, csv_columns={}, npy=codes, npz={"codes": codes, **extra})
        else:
            # CSV: one integer code per feature (unpacked); .npy: the codes as stored (packed below 8 bits).
            unpacked = _unpack_codes(codes, s.n_bits, s.scheme, d)
            write_output(s.output, csv_columns={"codes": unpacked}, npy=codes, npz={}, names=header or [])
    if s.output == "-":
        return
    X_hat = model.inverse_transform(codes)
    err = X - X_hat
    rmse = float(np.sqrt(np.mean(err**2)))
    signal, noise = float(np.sum(X**2)), float(np.sum(err**2))
    if noise == 0:
        sqnr = "inf (exact)"
    else:
        sqnr = f"{10 * np.log10(signal / noise):.2f} dB" if signal > 0 else "undefined (all values are 0)"
    rep.out(f"{count(n, 'vector')} x {count(d, 'feature')} -> {s.n_bits}-bit codes ({s.scheme}, {settings})")
    rep.out(
        f"size: {n * d * 4:,} bytes as float32 -> {codes.nbytes:,} bytes of codes "
        f"(compression ratio {model.compression_ratio_:.2f}x)"
    )
    rep.out(f"round trip: RMSE {rmse:.4g}, SQNR {sqnr}")
    if n > 10:
        rng = np.random.default_rng(s.random_state)
        queries = np.sort(rng.choice(n, size=min(n, 200), replace=False))
        codes_only, rescored = search_recall(model, X, queries, k=10)
        rep.out(
            f"recall@10 against exact euclidean search ({len(queries)} queries): "
            f"{codes_only:.3f} from the codes, {rescored:.3f} reranked with float distances"
        )
    if s.output is not None:
        rep.out(f"wrote {s.output}")
