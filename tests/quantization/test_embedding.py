"""QuantizedEmbedding: codes against the Quantizer and numpy oracles, saturation,
kneighbors against scikit-learn's NearestNeighbors and scipy, recall on the digits,
Pipeline and GridSearchCV."""

import pickle
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.cluster import KMeans as SKKMeans
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import Normalizer, StandardScaler

import unsup
import unsup.quantization._search as search
from unsup.metrics import recall_at_k  # tie-aware: a neighbour counts within the exact k-th distance
from unsup.quantization import QuantizedEmbedding, Quantizer, pack_bits, unpack_bits
from unsup.quantization._search import _TopK

rng = np.random.default_rng(0)
Z = (rng.standard_normal((300, 12)) * np.linspace(0.5, 3.0, 12) + np.linspace(-1, 2, 12)).astype(np.float32)
Q = (rng.standard_normal((40, 12)) * np.linspace(0.5, 3.0, 12)).astype(np.float32)


def digits():
    X = StandardScaler().fit_transform(load_digits().data).astype(np.float32)
    return {"64-d": X, "16-d PCA": PCA(16, random_state=0).fit_transform(X).astype(np.float32)}


DIGITS = digits()


def test_exported_at_top_level():
    assert unsup.QuantizedEmbedding is QuantizedEmbedding
    assert "QuantizedEmbedding" in unsup.__all__ and "QuantizedEmbedding" in unsup.quantization.__all__


# ----------------------------------------------------------------- the codes


@pytest.mark.parametrize("scheme, dtype", [("asymmetric", np.uint8), ("symmetric", np.int8)])
@pytest.mark.parametrize("granularity", ["per_channel", "per_tensor", "per_block"])
def test_8bit_codes_are_the_quantizers(scheme, dtype, granularity):
    qe = QuantizedEmbedding(n_bits=8, scheme=scheme, granularity=granularity, block_size=5).fit(Z)
    q = Quantizer(8, scheme=scheme, granularity=granularity, block_size=5).fit(Z)
    codes = qe.transform(Z)
    assert codes.dtype == dtype and codes.shape == Z.shape
    np.testing.assert_array_equal(codes, q.transform(Z))
    np.testing.assert_array_equal(qe.codes_, codes)
    np.testing.assert_array_equal(qe.quantizer_.scale_, q.scale_)
    np.testing.assert_array_equal(qe.inverse_transform(codes), q.inverse_transform(codes))
    assert qe.inverse_transform(codes).dtype == np.float32
    assert qe.compression_ratio_ == 4.0


@pytest.mark.parametrize("scheme", ["asymmetric", "symmetric"])
@pytest.mark.parametrize("d", [12, 7])
def test_4bit_codes_are_packed_two_a_byte(scheme, d):
    V = Z[:, :d]
    qe = QuantizedEmbedding(n_bits=4, scheme=scheme, observer="mse").fit(V)
    q = Quantizer(4, scheme=scheme, granularity="per_channel", observer="mse").fit(V)
    codes = qe.transform(V)
    assert codes.dtype == np.uint8 and codes.shape == (len(V), -(-d // 2))
    np.testing.assert_array_equal(codes, pack_bits(q.transform(V), 4))
    np.testing.assert_array_equal(unpack_bits(codes, 4, d, signed=scheme == "symmetric"), q.transform(V))
    np.testing.assert_array_equal(qe.inverse_transform(codes), q.inverse_transform(q.transform(V)))
    assert qe.compression_ratio_ == pytest.approx(4 * d / -(-d // 2))


@pytest.mark.parametrize("d", [12, 16])
def test_1bit_codes_are_centred_sign_bits(d):
    V = np.hstack([Z, Z[:, :4] * 2 - 1])[:, :d].astype(np.float64)
    qe = QuantizedEmbedding(n_bits=1).fit(V)
    centre = V.mean(axis=0)
    bits = V >= centre
    codes = qe.transform(V)
    assert codes.dtype == np.uint8 and codes.shape == (len(V), -(-d // 8))
    np.testing.assert_array_equal(codes, pack_bits(bits.astype(np.uint8), 1))
    np.testing.assert_allclose(qe.threshold_, centre, rtol=1e-12)
    # bits decode to the mean of each side: the least-squares levels
    low = np.array([V[~bits[:, j], j].mean() for j in range(d)])
    high = np.array([V[bits[:, j], j].mean() for j in range(d)])
    np.testing.assert_allclose(qe.levels_, [low, high], rtol=1e-12)
    np.testing.assert_allclose(qe.inverse_transform(codes), np.where(bits, high, low), rtol=1e-12)
    assert qe.compression_ratio_ == 4 * d / -(-d // 8)


def test_1bit_symmetric_is_plain_signs_with_mean_abs_levels():
    qe = QuantizedEmbedding(n_bits=1, scheme="symmetric", granularity="per_tensor").fit(Z)
    np.testing.assert_array_equal(qe.transform(Z), np.packbits(Z >= 0, axis=1, bitorder="little"))
    alpha = np.abs(Z.astype(np.float64)).mean()
    np.testing.assert_allclose(qe.inverse_transform(qe.transform(Z)), np.where(Z >= 0, alpha, -alpha), rtol=1e-6)


@pytest.mark.parametrize(
    "n_bits, scheme", [(8, "asymmetric"), (8, "symmetric"), (4, "asymmetric"), (4, "symmetric"), (1, "asymmetric")]
)
def test_codes_saturate_never_wrap(n_bits, scheme):
    """Latents 10⁴ times the calibrated range land on the extreme codes."""
    qe = QuantizedEmbedding(n_bits=n_bits, scheme=scheme).fit(Z)
    span = Z.max(axis=0) - Z.min(axis=0)
    high = Z.max(axis=0) + 1e4 * span
    low = Z.min(axis=0) - 1e4 * span
    far = np.vstack([high, low, np.where(np.arange(12) % 2, high, low)]).astype(np.float32)
    levels = qe._codec().unpack(qe.transform(far))
    if n_bits == 1:
        top, bottom = 1, 0
    elif scheme == "symmetric":
        top, bottom = 2 ** (n_bits - 1) - 1, -(2 ** (n_bits - 1) - 1)
    else:
        top, bottom = 2**n_bits - 1, 0
    np.testing.assert_array_equal(levels[0], top)
    np.testing.assert_array_equal(levels[1], bottom)
    np.testing.assert_array_equal(levels[2], np.where(np.arange(12) % 2, top, bottom))
    # and decode within the calibrated range (widened to hold 0; symmetric: ±max|z|),
    # with one step of slack for the rounded zero point
    back = qe.inverse_transform(qe.transform(far))
    lo, hi = np.minimum(Z.min(axis=0), 0), np.maximum(Z.max(axis=0), 0)
    if scheme == "symmetric":
        hi = np.maximum(hi, -lo)
        lo = -hi
    step = 0 if n_bits == 1 else qe.quantizer_.scale_
    assert np.all(back <= hi + step) and np.all(back >= lo - step)
    assert np.all(back[0] >= back[1])


def test_saturation_through_an_encoder():
    pca = PCA(4, random_state=0)
    qe = QuantizedEmbedding(pca).fit(Z)
    codes = qe.transform(Z * 1e4)
    latents = qe.encoder_.transform(Z * 1e4)
    expected = np.where(latents > 0, 255, 0)
    big = np.abs(latents) > 10 * np.abs(qe.encoder_.transform(Z)).max()
    np.testing.assert_array_equal(codes[big], expected[big])


def test_output_dequantized_and_inverse_transform():
    qe = QuantizedEmbedding(n_bits=4, output="dequantized").fit(Z)
    codes_qe = QuantizedEmbedding(n_bits=4).fit(Z)
    out = qe.transform(Z)
    assert out.dtype == np.float32 and out.shape == Z.shape
    np.testing.assert_array_equal(out, codes_qe.inverse_transform(codes_qe.transform(Z)))
    np.testing.assert_array_equal(qe.inverse_transform(out), out)  # idempotent
    np.testing.assert_array_equal(qe.fit_transform(Z), out)
    np.testing.assert_array_equal(qe.transform(Z.astype(np.float64)), out)


def test_float64_latents_stay_float64():
    qe = QuantizedEmbedding(output="dequantized").fit(Z.astype(np.float64))
    assert qe.transform(Z).dtype == np.float64 and qe.embedding_.dtype == np.float64


def test_score_is_minus_mean_squared_error():
    for n_bits in (8, 4, 1):
        qe = QuantizedEmbedding(n_bits=n_bits).fit(Z)
        err = Z.astype(np.float64) - qe.inverse_transform(qe.transform(Z))
        assert qe.score(Z) == pytest.approx(-np.mean(err**2), rel=1e-12)
    scores = [QuantizedEmbedding(n_bits=b).fit(Z).score(Z) for b in (1, 4, 8)]
    assert scores[0] < scores[1] < scores[2] < 0


def test_encoder_is_cloned_and_reconstruct():
    pca = PCA(5, random_state=0)
    qe = QuantizedEmbedding(pca, n_bits=8).fit(Z)
    assert not hasattr(pca, "components_")  # the given encoder stays unfitted
    ref = PCA(5, random_state=0).fit(Z)
    np.testing.assert_allclose(qe.encoder_.components_, ref.components_, rtol=1e-5, atol=1e-6)
    assert qe.n_components_ == 5 and qe.codes_.shape == (len(Z), 5)
    codes = qe.transform(Z)
    np.testing.assert_array_equal(codes, qe.quantizer_.transform(qe.encoder_.transform(Z)))
    rec = qe.reconstruct(Z)
    np.testing.assert_allclose(rec, qe.encoder_.inverse_transform(qe.inverse_transform(codes)), rtol=1e-6)
    assert np.mean((rec - Z) ** 2) < np.mean((Z - Z.mean(0)) ** 2)
    # without an encoder, reconstruct is the dequantised input
    plain = QuantizedEmbedding().fit(Z)
    np.testing.assert_array_equal(plain.reconstruct(Z), plain.inverse_transform(plain.transform(Z)))
    # an encoder without inverse_transform: no reconstruct
    assert not hasattr(QuantizedEmbedding(Normalizer()), "reconstruct")


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="n_bits must be one of"):
        QuantizedEmbedding(n_bits=2).fit(Z)
    with pytest.raises(TypeError, match="fit and transform"):
        QuantizedEmbedding(encoder=NearestNeighbors()).fit(Z)
    with pytest.raises(ValueError, match="keep_float"):
        QuantizedEmbedding(keep_float="yes").fit(Z)
    qe = QuantizedEmbedding(n_bits=4).fit(Z)
    with pytest.raises(ValueError, match="expecting 6 code columns"):
        qe.inverse_transform(np.zeros((2, 12), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"bytes in \[0, 255\]"):
        qe.inverse_transform(np.full((2, 6), 300))
    with pytest.raises(ValueError, match=r"Codes must lie in \[0, 255\]"):
        QuantizedEmbedding().fit(Z).inverse_transform(np.full((2, 12), -1))
    with pytest.raises(ValueError, match="metric must be one of"):
        qe.kneighbors(Q, metric="manhattan")


def test_pickle_round_trip():
    qe = QuantizedEmbedding(n_bits=4).fit(Z)
    again = pickle.loads(pickle.dumps(qe))
    np.testing.assert_array_equal(again.transform(Q), qe.transform(Q))
    for a, b in zip(again.kneighbors(Q, 3), qe.kneighbors(Q, 3)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "n_bits, output, names",
    [
        (8, "codes", [f"quantizedembedding{i}" for i in range(12)]),  # one code per dimension
        (4, "codes", [f"quantizedembedding_packed_byte{i}" for i in range(6)]),  # two codes a byte
        (1, "codes", ["quantizedembedding_packed_byte0", "quantizedembedding_packed_byte1"]),  # eight a byte
        (4, "dequantized", [f"quantizedembedding{i}" for i in range(12)]),  # the dimensions again
    ],
)
def test_set_output_pandas_names_the_code_columns(n_bits, output, names):
    """Packed codes are bytes, not latent dimensions: the pandas columns say so; values are unchanged."""
    pd = pytest.importorskip("pandas")
    qe = QuantizedEmbedding(n_bits=n_bits, output=output).set_output(transform="pandas").fit(Z)
    out = qe.transform(Z)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == names
    assert list(qe.get_feature_names_out()) == names
    plain = clone(qe).set_output(transform="default").fit(Z)
    np.testing.assert_array_equal(out.to_numpy(), plain.transform(Z))
    if output == "codes":  # the DataFrame decodes as the array does
        np.testing.assert_array_equal(qe.inverse_transform(out), plain.inverse_transform(plain.transform(Z)))
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        QuantizedEmbedding(n_bits=n_bits).fit(pd.DataFrame(Z, columns=[f"f{i}" for i in range(12)])).get_feature_names_out(
            ["wrong"] * 12
        )


# ------------------------------------------------------------------ search


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("n_bits", [8, 4, 1])
@pytest.mark.parametrize("query", ["X", "None"])
def test_kneighbors_with_every_candidate_rescored_is_exact(metric, n_bits, query):
    """Rescoring all rows with the kept floats gives NearestNeighbors' answer."""
    qe = QuantizedEmbedding(n_bits=n_bits, rescore_multiplier=1000).fit(Z)
    nn = NearestNeighbors(n_neighbors=7, metric=metric, algorithm="brute").fit(Z.astype(np.float64))
    X = Q if query == "X" else None
    dist, ind = qe.kneighbors(X, 7, metric=metric)
    ref_dist, ref_ind = nn.kneighbors(None if X is None else X.astype(np.float64))
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6, atol=1e-7)
    assert dist.dtype == np.float64 and ind.dtype == np.intp


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("n_bits, scheme", [(8, "asymmetric"), (8, "symmetric"), (4, "asymmetric"), (4, "symmetric")])
def test_kneighbors_without_rescoring_searches_the_dequantized_vectors(metric, n_bits, scheme):
    qe = QuantizedEmbedding(n_bits=n_bits, scheme=scheme, granularity="per_block", block_size=5).fit(Z)
    dequantized = qe.inverse_transform(qe.codes_).astype(np.float64)
    ref = NearestNeighbors(n_neighbors=6, metric=metric, algorithm="brute").fit(dequantized)
    ref_dist, ref_ind = ref.kneighbors(Q.astype(np.float64))
    dist, ind = qe.kneighbors(Q, 6, metric=metric, rescore=False)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-6, atol=1e-7)
    # codes only (keep_float=False): rescoring has nothing better, the same answer
    codes_only = clone(qe).set_params(keep_float=False).fit(Z)
    assert codes_only.embedding_ is None
    for a, b in zip(codes_only.kneighbors(Q, 6, metric=metric), (dist, ind)):
        np.testing.assert_array_equal(a, b)


def test_1bit_kneighbors_without_rescoring_is_hamming():
    qe = QuantizedEmbedding(n_bits=1).fit(Z)
    bits_fit = Z >= qe.threshold_
    bits_q = Q >= qe.threshold_
    H = cdist(bits_q, bits_fit, "hamming")  # fraction of differing bits
    dist, ind = qe.kneighbors(Q, 5, rescore=False)
    order = np.lexsort((np.broadcast_to(np.arange(len(Z)), H.shape), H), axis=1)[:, :5]
    np.testing.assert_array_equal(ind, order)
    np.testing.assert_allclose(dist, np.take_along_axis(H, order, axis=1), rtol=1e-12)
    # X=None: the same against the fitted bits, each point excluded
    H = cdist(bits_fit, bits_fit, "hamming")
    np.fill_diagonal(H, np.inf)
    dist, ind = qe.kneighbors(None, 5, rescore=False)
    order = np.lexsort((np.broadcast_to(np.arange(len(Z)), H.shape), H), axis=1)[:, :5]
    np.testing.assert_array_equal(ind, order)


def test_kneighbors_X_none_excludes_each_point_as_sklearn():
    V = np.vstack([Z[:20], Z[:3]])  # three duplicated rows
    qe = QuantizedEmbedding(rescore_multiplier=100).fit(V)
    nn = NearestNeighbors(n_neighbors=4).fit(V)
    dist, ind = qe.kneighbors(n_neighbors=4)
    ref_dist, ref_ind = nn.kneighbors()
    assert not np.any(ind == np.arange(len(V))[:, None])
    np.testing.assert_allclose(dist, ref_dist, atol=1e-6)
    assert dist[0, 0] == 0.0 and ind[0, 0] == 20 and ind[20, 0] == 0  # the duplicate, not itself
    # as many neighbours as other points, and no more
    assert qe.kneighbors(n_neighbors=len(V) - 1)[1].shape == (len(V), len(V) - 1)
    with pytest.raises(ValueError, match="Expected n_neighbors < n_samples_fit, but n_neighbors = 23"):
        qe.kneighbors(n_neighbors=len(V))
    with pytest.raises(ValueError, match="Expected n_neighbors <= n_samples_fit, but n_neighbors = 24"):
        qe.kneighbors(V, n_neighbors=len(V) + 1)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError), (2.0, TypeError), (2.5, TypeError)])
def test_n_neighbors_errors_are_sklearns(bad, error):
    qe = QuantizedEmbedding().fit(Z)
    nn = NearestNeighbors().fit(Z)
    with pytest.raises(error) as ours:
        qe.kneighbors(Q, bad)
    with pytest.raises(error) as theirs:
        nn.kneighbors(Q, bad)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("magnitude", [1e-3, 1e30])
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_kneighbors_whatever_the_magnitude(magnitude, metric):
    """Latents near float32's limit: the scan is scaled, nothing overflows."""
    V = Z.astype(np.float64) * magnitude
    nn = NearestNeighbors(n_neighbors=5, metric=metric).fit(V)
    for n_bits in (8, 4):
        qe = QuantizedEmbedding(n_bits=n_bits, rescore_multiplier=100).fit(V)
        dist, ind = qe.kneighbors(Q * magnitude, 5, metric=metric)
        ref_dist, ref_ind = nn.kneighbors(Q * magnitude)
        np.testing.assert_array_equal(ind, ref_ind)
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-6)
        scaled = QuantizedEmbedding(n_bits=n_bits).fit(Z.astype(np.float64))
        np.testing.assert_array_equal(
            qe.kneighbors(Q * magnitude, 5, metric=metric, rescore=False)[1],
            scaled.kneighbors(Q, 5, metric=metric, rescore=False)[1],
        )


def test_kneighbors_return_distance_false():
    qe = QuantizedEmbedding().fit(Z)
    np.testing.assert_array_equal(qe.kneighbors(Q, 3, return_distance=False), qe.kneighbors(Q, 3)[1])


@pytest.mark.parametrize("n_bits", [8, 4, 1])
@pytest.mark.parametrize("keep_float", [True, False])
def test_scan_blocks_do_not_change_the_answer(monkeypatch, n_bits, keep_float):
    """Tiny blocks: many merges, sparse and dense, and self-exclusion across blocks."""
    qe = QuantizedEmbedding(n_bits=n_bits, keep_float=keep_float).fit(Z)
    expected = [qe.kneighbors(X, 6, metric=m) for X in (Q, None) for m in ("euclidean", "cosine")]
    monkeypatch.setattr(search, "BLOCK_ROWS", 37)
    monkeypatch.setattr(search, "QUERY_ROWS", 16)
    got = [qe.kneighbors(X, 6, metric=m) for X in (Q, None) for m in ("euclidean", "cosine")]
    for (d1, i1), (d2, i2) in zip(expected, got):
        np.testing.assert_allclose(d1, d2, rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(i1, i2)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_one_block_scan_breaks_ties_by_row(monkeypatch, metric):
    """A base that fits one block takes torch.topk's candidates; rows tied at the
    k-th distance are re-selected so that lower rows win, as the blockwise scan does."""
    g = np.random.default_rng(5)
    V = g.integers(-2, 3, (400, 3)).astype(np.float32)  # 125 distinct points: ties everywhere
    qe = QuantizedEmbedding(n_bits=8).fit(V)
    decode = qe._codec().decoder(qe.codes_)
    one_block = search.scan_dequantized(V, len(V), decode, 9, metric=metric, exclude_self=True)
    monkeypatch.setattr(search, "BLOCK_ROWS", 64)
    blockwise = search.scan_dequantized(V, len(V), decode, 9, metric=metric, exclude_self=True)
    np.testing.assert_array_equal(one_block, blockwise)


@pytest.mark.parametrize("exclude_self", [False, True])
def test_threads_do_not_change_the_scan(monkeypatch, exclude_self):
    monkeypatch.setattr(search, "BLOCK_ROWS", 128)  # the blockwise scan, which threads share
    g = np.random.default_rng(2)
    V = g.standard_normal((700, 9)).astype(np.float32)
    qe = QuantizedEmbedding(n_bits=8).fit(V)
    queries = V if exclude_self else g.standard_normal((300, 9)).astype(np.float32)
    decode = qe._codec().decoder(qe.codes_)
    one = search.scan_dequantized(queries, len(V), decode, 12, metric="euclidean", exclude_self=exclude_self)
    three = search.scan_dequantized(
        queries, len(V), decode, 12, metric="euclidean", exclude_self=exclude_self, n_threads=3
    )
    np.testing.assert_array_equal(one, three)
    bits = QuantizedEmbedding(n_bits=1).fit(V)
    qbits = bits.codes_ if exclude_self else bits.transform(queries)
    for a, b in zip(
        search.scan_hamming(qbits, bits.codes_, 12, exclude_self=exclude_self),
        search.scan_hamming(qbits, bits.codes_, 12, exclude_self=exclude_self, n_threads=3),
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("integer", [False, True])
def test_topk_keeps_the_k_smallest(integer):
    """Against a sort, with many ties when the values are small integers (Hamming)."""
    g = np.random.default_rng(1)
    D = g.standard_normal((37, 500)).astype(np.float32)
    if integer:
        D = np.floor(D * 3)
    for k in (1, 5, 40):
        top = _TopK(len(D), k)
        for c0 in range(0, 500, 64):
            for r0 in (0, 20):
                top.push(r0, D[r0 : r0 + 20, c0 : c0 + 64], c0)
        # the k smallest, sorted by (value, index): ties go to the lower index
        order = np.lexsort((np.broadcast_to(np.arange(500), D.shape), D), axis=1)[:, :k]
        np.testing.assert_array_equal(top.index, order)
        np.testing.assert_array_equal(top.dist, np.take_along_axis(D, order, axis=1))


# ------------------------------------------------------- recall on the digits


def _recall(V, n_bits, rescore, metric="euclidean", **params):
    qe = QuantizedEmbedding(n_bits=n_bits, **params).fit(V)
    return recall_at_k(V, qe.kneighbors(None, 10, metric=metric, rescore=rescore)[1], metric=metric)


@pytest.mark.parametrize("name", list(DIGITS))
def test_recall_targets_on_digits(name):
    """The issue's targets, recall@10 against exact float neighbours (benchmarks/bench_embedding.py)."""
    V = DIGITS[name]
    assert _recall(V, 8, rescore=True) >= 0.995
    assert _recall(V, 8, rescore=False) >= (0.995 if name == "64-d" else 0.97)
    assert _recall(V, 4, rescore=True) >= 0.99
    assert _recall(V, 1, rescore=True) >= 0.85
    assert _recall(V, 8, rescore=True, metric="cosine") >= 0.98
    # the codes alone (keep_float=False) at 8 bits, the scan's own recall
    assert _recall(V, 8, rescore=True, keep_float=False) >= 0.97


def test_rescoring_recovers_what_4bit_codes_lose():
    V = DIGITS["16-d PCA"]
    plain = _recall(V, 4, rescore=False)
    assert plain < 0.9 <= _recall(V, 4, rescore=True)
    assert _recall(V, 4, rescore=False, observer="mse") > plain  # calibration matters


# ---------------------------------------------------- Pipeline, GridSearchCV


def test_pipeline_and_grid_search_over_n_bits():
    X = load_digits().data[:400]
    pipe = make_pipeline(
        StandardScaler(),
        QuantizedEmbedding(PCA(8, random_state=0), output="dequantized"),
        SKKMeans(10, n_init=1, random_state=0),
    )
    pipe.fit(X)
    assert pipe.predict(X).shape == (400,)
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), QuantizedEmbedding(PCA(8, random_state=0))),
        {"quantizedembedding__n_bits": [1, 4, 8]},
        cv=3,
    ).fit(X)
    assert grid.best_params_ == {"quantizedembedding__n_bits": 8}  # least quantization error
    assert grid.best_estimator_[-1].compression_ratio_ == 4.0


def test_with_an_autoencoder():
    neural = pytest.importorskip("unsup.neural")
    X = DIGITS["64-d"]
    ae = neural.Autoencoder(8, hidden_layer_sizes=(32,), max_epochs=3, batch_size=256, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few epochs to converge
        qe = QuantizedEmbedding(ae, n_bits=8).fit(X)
    latents = qe.encoder_.transform(X)
    np.testing.assert_array_equal(qe.transform(X), qe.quantizer_.transform(latents))
    assert qe.reconstruct(X).shape == X.shape
    np.testing.assert_allclose(
        qe.reconstruct(X[:5]), qe.encoder_.inverse_transform(qe.inverse_transform(qe.transform(X[:5]))), rtol=1e-5
    )
    ind = qe.kneighbors(None, 10)[1]
    assert recall_at_k(latents, ind) >= 0.995
