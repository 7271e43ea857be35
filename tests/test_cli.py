"""The ``unsup`` command line, driven as a user drives it: ``python -m unsup ...`` in a subprocess.

Results are compared with the library's estimators fitted in this process on
the same data (the CLI adds reading, writing and reporting, never its own
maths). Every bad input is checked for exit status 2, exactly one line on
stderr naming the file and the problem, nothing on stdout and no traceback.

A subprocess costs an interpreter start-up with torch (about 2 s), so the
subprocess runs are one good run of each subcommand (the demo included) and
the representative bad inputs of each data command (started two at a time).
The other good runs, and every bad case again, go through
:func:`unsup.cli.main` in this process: what the console script and
``python -m unsup`` call with the same arguments.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import silhouette_score

import unsup
from unsup import cli
from unsup.cli import _io, compress, demo
from unsup.cluster import AgglomerativeClustering, DivisiveClustering, KMeans

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, cwd, env=None):
    env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "unsup", *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def ok(result):
    assert result.returncode == 0, f"exit {result.returncode}\n--- stderr ---\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_main(*args, cwd, capsys, monkeypatch):
    """cli.main in this process, from ``cwd``: what the console script runs."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse's errors, --help, --version
        code = exc.code
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def blobs(n=120, n_features=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0] * n_features, [6.0] * n_features, [0.0, 6.0] * (n_features // 2)])
    return np.vstack([c + rng.standard_normal((n // 3, n_features)) for c in centres])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A folder with blobs as CSV (with a header) and as .npy, and their array."""
    folder = tmp_path_factory.mktemp("cli")
    X = blobs()
    with open(folder / "blobs.csv", "w") as f:
        f.write("a,b,c,d\n")
        np.savetxt(f, X, delimiter=",", fmt="%.17g")
    np.savetxt(folder / "plain.csv", X[:30], delimiter=",", fmt="%.17g")  # no header
    np.save(folder / "blobs.npy", X)
    return folder, X


# ------------------------------------------------------------------ reading


def test_csv_header_is_detected_and_values_are_exact(data):
    folder, X = data
    Xc, header = cli.load_data(str(folder / "blobs.csv"))
    assert header == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(Xc, X)
    np.testing.assert_array_equal(_io._load_csv_checked(str(folder / "blobs.csv"))[0], X)
    Xp, header = cli.load_data(str(folder / "plain.csv"))
    assert header is None
    np.testing.assert_array_equal(Xp, X[:30])
    Xn, header = cli.load_data(str(folder / "blobs.npy"))
    assert header is None and Xn.dtype == np.float64
    np.testing.assert_array_equal(Xn, X)


def test_csv_skips_blank_lines_and_reads_quoted_numbers(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('\ufeff\nx,y\n\n1, 2.5\n"3",-4e1\n\n')  # BOM, blank lines, spaces, quotes
    # numpy's parser (clean files) and the checked reader (the fallback) read the same.
    for reader in (cli.load_data, _io._load_csv_checked):
        X, header = reader(str(path))
        assert header == ["x", "y"]
        np.testing.assert_array_equal(X, [[1.0, 2.5], [3.0, -40.0]])


# ------------------------------------------------------------------ cluster


def test_cluster_kmeans_csv_labels_summary_and_progress(data):
    folder, X = data
    result = ok(
        run_cli("cluster", "blobs.csv", "--algorithm", "kmeans", "--n-clusters", "3", "-o", "labels.csv", cwd=folder)
    )
    lines = (folder / "labels.csv").read_text().splitlines()
    assert lines[0] == "label"
    labels = np.array(lines[1:], dtype=int)
    expected = KMeans(3, random_state=0).fit(X)
    np.testing.assert_array_equal(labels, expected.labels_)
    out = result.stdout.splitlines()
    assert out[0] == f"kmeans (euclidean): {len(X)} samples -> 3 clusters"
    assert out[1] == "cluster sizes: " + " ".join(map(str, np.bincount(expected.labels_)))
    assert out[2] == f"inertia (euclidean): {expected.inertia_:.6g}"
    assert out[3] == f"silhouette (euclidean): {silhouette_score(X, expected.labels_):.4f}"
    assert out[4] == "wrote labels.csv"
    # Progress on stderr: the input, then the step with its time.
    assert result.stderr.splitlines()[0] == f"blobs.csv: {len(X)} samples x 4 features"
    assert re.fullmatch(
        r"fitting kmeans \(euclidean\) with 3 clusters \.\.\. \d+\.\d\d s", result.stderr.splitlines()[1]
    )


def test_cluster_agglomerative_npy_quiet_matches_scipy(data, capsys, monkeypatch):
    from scipy.cluster.hierarchy import fcluster, linkage
    from sklearn.metrics import adjusted_rand_score

    folder, X = data
    argv = ("cluster", "blobs.npy", "-a", "agglomerative", "-k", "3", "--metric", "manhattan", "-q", "-o", "agg.npy")
    result = ok(run_main(*argv, cwd=folder, capsys=capsys, monkeypatch=monkeypatch))
    assert result.stderr == ""  # --quiet: no progress
    labels = np.load(folder / "agg.npy")
    assert labels.dtype == np.int64
    expected = AgglomerativeClustering(3, metric="manhattan", linkage="average").fit(X).labels_
    np.testing.assert_array_equal(labels, expected)
    scipy_labels = fcluster(linkage(X, method="average", metric="cityblock"), 3, criterion="maxclust")
    assert adjusted_rand_score(scipy_labels, labels) == 1.0
    assert (
        result.stdout.splitlines()[0] == f"agglomerative (average linkage, manhattan): {len(X)} samples -> 3 clusters"
    )


def test_cluster_divisive_npz_and_gmm_stdout(data, capsys, monkeypatch):
    from unsup.mixture import GaussianMixture

    folder, X = data
    kw = dict(cwd=folder, capsys=capsys, monkeypatch=monkeypatch)
    ok(
        run_main(
            "cluster", "blobs.csv", "-a", "divisive", "-k", "3", "--random-state", "7", "-q", "-o", "div.npz", **kw
        )
    )
    with np.load(folder / "div.npz") as saved:
        expected = DivisiveClustering(3, random_state=7).fit(X)
        np.testing.assert_array_equal(saved["labels"], expected.labels_)
        np.testing.assert_allclose(saved["cluster_centers"], expected.cluster_centers_)

    result = ok(
        run_main("cluster", "blobs.csv", "-a", "gmm", "-k", "3", "--covariance-type", "diag", "-q", "-o", "-", **kw)
    )
    gmm = GaussianMixture(3, covariance_type="diag", random_state=0).fit(X)
    lines = result.stdout.splitlines()
    assert lines[0] == "label"  # -o -: the CSV on stdout and nothing else
    np.testing.assert_array_equal(np.array(lines[1:], dtype=int), gmm.predict(X))


# ------------------------------------------------------------------- detect


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short training on purpose
def test_detect_autoencoder_scores_equal_the_estimator(data):
    from unsup.neural import Autoencoder

    folder, X = data
    result = ok(
        run_cli(
            "detect", "blobs.csv", "--model", "autoencoder", "--contamination", "0.05", "--max-epochs", "15",
            "-q", "-o", "scores.csv", cwd=folder
        )
    )
    table = np.loadtxt(folder / "scores.csv", delimiter=",", skiprows=1)
    assert (folder / "scores.csv").read_text().splitlines()[0] == "score,outlier"
    ae = Autoencoder(
        2, hidden_layer_sizes=(64, 32), max_epochs=15, contamination=0.05, scale=True, trim_fraction=0.1, random_state=0
    ).fit(X)
    np.testing.assert_allclose(table[:, 0], -ae.score_samples(X), rtol=1e-6)
    np.testing.assert_array_equal(table[:, 1], ae.predict(X) == -1)
    n_flagged = int(table[:, 1].sum())
    assert (
        result.stdout.splitlines()[0]
        == f"Autoencoder: {n_flagged} of {len(X)} rows flagged as anomalies (contamination 0.05)"
    )
    top = np.argsort(-table[:, 0], kind="stable")[:5]
    assert result.stdout.splitlines()[2].startswith(f"top rows (0-based): {top[0]} (")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # short training on purpose
def test_detect_vae_npz(data, capsys, monkeypatch):
    from unsup.neural import VariationalAutoencoder

    folder, X = data
    argv = ("detect", "blobs.npy", "--model", "vae", "--n-components", "3", "--max-epochs", "10", "-q", "-o", "vae.npz")
    ok(run_main(*argv, cwd=folder, capsys=capsys, monkeypatch=monkeypatch))
    vae = VariationalAutoencoder(3, hidden_layer_sizes=(64, 32), max_epochs=10, random_state=0).fit(X)
    with np.load(folder / "vae.npz") as saved:
        np.testing.assert_allclose(saved["score"], -vae.score_samples(X), rtol=1e-6)
        np.testing.assert_array_equal(saved["outlier"], vae.predict(X) == -1)
        assert float(saved["threshold"]) == pytest.approx(-vae.offset_)


def test_detect_default_is_the_autoencoder_ensemble(data):
    from unsup.neural import AutoencoderEnsemble

    folder, X = data
    result = ok(run_cli("detect", "blobs.csv", "--contamination", "0.05", "-q", "-o", "ens.csv", cwd=folder))
    table = np.loadtxt(folder / "ens.csv", delimiter=",", skiprows=1)
    model = AutoencoderEnsemble(contamination=0.05, random_state=0).fit(X)
    np.testing.assert_allclose(table[:, 0], -model.score_samples(X), rtol=1e-6)
    np.testing.assert_array_equal(table[:, 1], model.predict(X) == -1)
    assert result.stdout.splitlines()[0].startswith("AutoencoderEnsemble: ")


# ----------------------------------------------------------------- compress


def test_compress_codes_in_every_format(data, capsys, monkeypatch):
    from unsup.quantization import QuantizedEmbedding, unpack_bits

    folder, X = data
    kw = dict(cwd=folder, capsys=capsys, monkeypatch=monkeypatch)
    result = ok(run_cli("compress", "blobs.csv", "-q", "-o", "codes8.csv", cwd=folder))
    qe8 = QuantizedEmbedding(None, n_bits=8).fit(X)
    lines = (folder / "codes8.csv").read_text().splitlines()
    assert lines[0] == "a,b,c,d"  # the input's header
    np.testing.assert_array_equal(np.loadtxt(lines[1:], delimiter=",", dtype=int), qe8.transform(X))
    out = result.stdout.splitlines()
    assert out[1] == f"size: {X.size * 4:,} bytes as float32 -> {X.size:,} bytes of codes (compression ratio 4.00x)"
    rmse = np.sqrt(np.mean((qe8.inverse_transform(qe8.transform(X)) - X) ** 2))
    assert out[2].startswith(f"round trip: RMSE {rmse:.4g}, SQNR ")
    codes_only, rescored = compress.search_recall(qe8, X, np.sort(np.random.default_rng(0).choice(len(X), 120, replace=False)))
    assert out[3].endswith(f"{codes_only:.3f} from the codes, {rescored:.3f} reranked with float distances")

    ok(run_main("compress", "blobs.npy", "--n-bits", "4", "--scheme", "symmetric", "-q", "-o", "codes4.npy", **kw))
    qe4 = QuantizedEmbedding(None, n_bits=4, scheme="symmetric").fit(X)
    packed = np.load(folder / "codes4.npy")
    np.testing.assert_array_equal(packed, qe4.transform(X))
    assert packed.shape == (len(X), 2)  # two 4-bit codes a byte

    ok(run_main("compress", "plain.csv", "--n-bits", "4", "-q", "-o", "codes4.csv", **kw))
    unpacked = np.loadtxt(folder / "codes4.csv", delimiter=",", dtype=int)  # no header in, none out
    qe4a = QuantizedEmbedding(None, n_bits=4).fit(X[:30])
    np.testing.assert_array_equal(unpacked, unpack_bits(qe4a.transform(X[:30]), 4, 4))

    ok(
        run_main(
            "compress", "blobs.csv", "--scheme", "symmetric", "--observer", "percentile", "-q", "-o", "c.npz", **kw
        )
    )
    qs = QuantizedEmbedding(None, n_bits=8, scheme="symmetric", observer="percentile").fit(X)
    with np.load(folder / "c.npz") as saved:
        assert int(saved["n_bits"]) == 8 and str(saved["scheme"]) == "symmetric" and int(saved["n_features"]) == 4
        decoded = saved["scale"] * (saved["codes"].astype(np.float64) - saved["zero_point"])
        np.testing.assert_allclose(decoded, qs.inverse_transform(qs.transform(X)), rtol=1e-6)

    ok(run_main("compress", "blobs.npy", "--n-bits", "1", "-q", "-o", "c1.npz", **kw))
    q1 = QuantizedEmbedding(None, n_bits=1).fit(X)
    with np.load(folder / "c1.npz") as saved:
        np.testing.assert_array_equal(saved["codes"], q1.transform(X))
        bits = unpack_bits(saved["codes"], 1, 4)
        decoded = np.where(bits.astype(bool), saved["levels"][1], saved["levels"][0])
        np.testing.assert_allclose(decoded, q1.inverse_transform(q1.transform(X)))


# ---------------------------------------------------------------- bad input

# (name, argv, fragment of the one stderr line). Files are made by make_bad_files.
BAD_CASES = [
    # files (rotated over the three data commands)
    ("missing file", ["cluster", "missing.csv", "-k", "2"], "missing.csv: no such file"),
    ("empty file", ["detect", "empty.csv"], "empty.csv: empty file"),
    ("blank lines only", ["compress", "blank.csv"], "blank.csv: no data rows"),
    ("header only", ["cluster", "header.csv", "-k", "2"], "header.csv: no data rows (only a header)"),
    (
        "ragged rows",
        ["detect", "ragged.csv"],
        "ragged.csv: malformed CSV: line 3 has 2 fields, expected 3 as on line 1",
    ),
    ("non-numeric value", ["compress", "text.csv"], "text.csv: non-numeric value 'abc' at line 3, column 2"),
    (
        "semicolons",
        ["cluster", "semicolon.csv", "-k", "2"],
        "semicolon.csv: non-numeric value '3;4' at line 2, column 1 (fields must be separated by commas)",
    ),
    ("NaN in CSV", ["cluster", "nan.csv", "-k", "2"], "nan.csv: NaN value at line 4, column 1"),
    ("infinity in CSV", ["detect", "inf.csv"], "inf.csv: infinite value at line 1, column 2"),
    ("empty field", ["compress", "hole.csv"], "hole.csv: empty field at line 2, column 2"),
    ("binary CSV", ["cluster", "binary.csv", "-k", "2"], "binary.csv: not a text CSV file"),
    (
        "unsupported extension",
        ["compress", "data.txt"],
        "data.txt: unsupported file type '.txt', expected a .csv or .npy file",
    ),
    ("a folder", ["compress", "folder.csv"], "folder.csv: is a directory"),
    ("corrupt npy", ["cluster", "corrupt.npy", "-k", "2"], "corrupt.npy: not a valid .npy file"),
    ("1-d npy", ["detect", "vector.npy"], "vector.npy: expected a 2-d array (n_samples, n_features), got shape (12,)"),
    ("string npy", ["compress", "strings.npy"], "strings.npy: non-numeric values (dtype <U1)"),
    ("object npy", ["cluster", "objects.npy", "-k", "2"], "objects.npy: holds Python objects, not numbers"),
    ("NaN in npy", ["detect", "nan.npy"], "nan.npy: NaN value at row 1, column 0 (0-based)"),
    ("npz as data", ["compress", "archive.npy"], "archive.npy: is an .npz archive"),
    ("no rows in npy", ["cluster", "norows.npy", "-k", "2"], "norows.npy: no data rows"),
    # data versus options
    (
        "more clusters than samples",
        ["cluster", "small.csv", "-k", "50"],
        "small.csv: --n-clusters 50 is larger than the number of samples (12)",
    ),
    ("too few rows to detect", ["detect", "tiny.csv"], "tiny.csv: detect needs at least 10 samples, got 3"),
    (
        "code wider than the data",
        ["detect", "small.csv", "--n-components", "9"],
        "small.csv: --n-components 9 is larger than the number of features (3)",
    ),
    (
        "ward with cosine",
        ["cluster", "small.csv", "-k", "2", "-a", "agglomerative", "--metric", "cosine", "--linkage", "ward"],
        "--linkage ward needs the euclidean metric",
    ),
    (  # an option conflict is found before any data is read
        "centroid with manhattan, no such file",
        ["cluster", "nosuchfile.npy", "-k", "2", "-a", "agglomerative", "--metric", "manhattan", "--linkage", "centroid"],
        "--linkage centroid needs the euclidean metric, got --metric manhattan",
    ),
    # option values
    (
        "n_clusters 0",
        ["cluster", "small.csv", "-k", "0"],
        "argument -k/--n-clusters: expected a positive integer, got '0'",
    ),
    (
        "n_clusters text",
        ["cluster", "small.csv", "-k", "three"],
        "argument -k/--n-clusters: expected a positive integer, got 'three'",
    ),
    ("n_clusters missing", ["cluster", "small.csv"], "the following arguments are required: -k/--n-clusters"),
    (
        "unknown algorithm",
        ["cluster", "small.csv", "-k", "2", "--algorithm", "dbscan"],
        "argument -a/--algorithm: invalid choice: 'dbscan'",
    ),
    (
        "unknown metric",
        ["cluster", "small.csv", "-k", "2", "--metric", "jaccard"],
        "argument --metric: invalid choice: 'jaccard'",
    ),
    (
        "contamination too big",
        ["detect", "small.csv", "--contamination", "0.7"],
        "argument --contamination: expected a number in (0, 0.5], got '0.7'",
    ),
    (
        "contamination nan",
        ["detect", "small.csv", "--contamination", "nan"],
        "argument --contamination: expected a number in (0, 0.5], got 'nan'",
    ),
    ("unknown model", ["detect", "small.csv", "--model", "pca"], "argument --model: invalid choice: 'pca'"),
    ("3 bits", ["compress", "small.csv", "--n-bits", "3"], "argument --n-bits: invalid choice: 3"),
    ("unknown scheme", ["compress", "small.csv", "--scheme", "affine"], "argument --scheme: invalid choice: 'affine'"),
    (
        "negative seed",
        ["compress", "small.csv", "--random-state", "-1"],
        "argument --random-state: expected an integer in [0, 2**32 - 1], got '-1'",
    ),
    ("no command", [], "the following arguments are required: COMMAND"),
    ("unknown command", ["plot", "small.csv"], "argument COMMAND: invalid choice: 'plot'"),
    # outputs
    (
        "output extension",
        ["cluster", "small.csv", "-k", "2", "-o", "labels.txt"],
        "labels.txt: unsupported output type '.txt', expected .csv, .npy or .npz",
    ),
    (
        "output folder missing",
        ["compress", "small.csv", "-o", "nowhere/codes.csv"],
        "nowhere/codes.csv: cannot write: folder 'nowhere' does not exist",
    ),
    (
        "output is a folder",
        ["detect", "small.csv", "-o", "folder.csv"],
        "folder.csv: is a directory, expected an output file name",
    ),
    ("demo output is a file", ["demo", "-o", "small.csv"], "small.csv: exists and is not a folder"),
]


def make_bad_files(folder: Path):
    (folder / "empty.csv").write_bytes(b"")
    (folder / "blank.csv").write_text("\n  \n\n")
    (folder / "header.csv").write_text("a,b,c\n")
    (folder / "ragged.csv").write_text("1,2,3\n4,5,6\n7,8\n")
    (folder / "text.csv").write_text("x,y\n1,2\n3,abc\n")
    (folder / "semicolon.csv").write_text("a;b\n3;4\n")
    (folder / "nan.csv").write_text("1,2\n3,4\n5,6\nnan,7\n")
    (folder / "inf.csv").write_text("1,inf\n")
    (folder / "hole.csv").write_text("1,2,3\n1,,3\n")
    (folder / "binary.csv").write_bytes(b"\xff\xfe\x00\x81\x9f binary")
    (folder / "data.txt").write_text("1,2\n")
    (folder / "folder.csv").mkdir()
    (folder / "corrupt.npy").write_bytes(b"not an npy file at all")
    np.save(folder / "vector.npy", np.arange(12.0))
    np.save(folder / "strings.npy", np.array([["a", "b"], ["c", "d"]]))
    np.save(folder / "objects.npy", np.array([[1, None]], dtype=object), allow_pickle=True)
    np.save(folder / "nan.npy", np.array([[1.0, 2.0], [np.nan, 3.0]]))
    with open(folder / "archive.npy", "wb") as f:
        np.savez(f, X=np.ones((2, 2)))
    np.save(folder / "norows.npy", np.empty((0, 3)))
    np.savetxt(folder / "small.csv", np.arange(36.0).reshape(12, 3), delimiter=",")
    np.savetxt(folder / "tiny.csv", np.arange(9.0).reshape(3, 3), delimiter=",")


# The bad cases run as subprocesses too: each data command with bad files and bad options.
SUBPROCESS_CASES = (
    "missing file",
    "empty file",
    "ragged rows",
    "non-numeric value",
    "NaN in CSV",
    "unsupported extension",
    "more clusters than samples",
    "contamination too big",
    "3 bits",
)


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    make_bad_files(folder)
    return folder


@pytest.fixture(scope="module")
def bad_results(bad_folder):
    """The subprocess cases, started together (each is an interpreter start-up and one check)."""
    cases = [c for c in BAD_CASES if c[0] in SUBPROCESS_CASES]
    with concurrent.futures.ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as pool:
        futures = {name: pool.submit(run_cli, *argv, cwd=bad_folder) for name, argv, _ in cases}
        return {name: f.result() for name, f in futures.items()}


def check_one_line_error(result, argv, fragment):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    command = f"unsup {argv[0]}" if argv and argv[0] in ("cluster", "detect", "compress", "demo") else "unsup"
    assert lines[0].startswith(f"{command}: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert result.stdout == ""


@pytest.mark.parametrize("name, argv, fragment", BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_bad_input_exits_2_with_one_line(bad_folder, name, argv, fragment, capsys, monkeypatch):
    check_one_line_error(run_main(*argv, cwd=bad_folder, capsys=capsys, monkeypatch=monkeypatch), argv, fragment)


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_in_a_subprocess(bad_results, name):
    ((argv, fragment),) = [(argv, fragment) for n, argv, fragment in BAD_CASES if n == name]
    check_one_line_error(bad_results[name], argv, fragment)


def test_every_bad_case_is_named_once():
    names = [c[0] for c in BAD_CASES]
    assert len(names) == len(set(names)) and set(SUBPROCESS_CASES) <= set(names)
    for command in ("cluster", "detect", "compress"):
        assert sum(argv[:1] == [command] for _, argv, _ in BAD_CASES[:20]) >= 5  # each meets bad files
        assert sum(argv[:1] == [command] for n, argv, _ in BAD_CASES if n in SUBPROCESS_CASES) >= 3


def test_an_estimators_refusal_is_one_line(tmp_path, monkeypatch, capsys):
    """A ValueError raised inside a fit (scikit-learn's wording) is reported as one line, exit 2."""
    path = tmp_path / "x.csv"
    path.write_text("1,2\n3,4\n5,6\n")

    def refuse(self, X, y=None, sample_weight=None):
        raise ValueError("Input X contains a\nproblem.")

    monkeypatch.setattr(KMeans, "fit_predict", refuse)
    assert cli.main(["cluster", str(path), "-k", "2", "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"unsup cluster: error: {path}: Input X contains a problem.\n"
    assert captured.out == ""


def test_version_and_console_script(tmp_path, capsys, monkeypatch):
    result = ok(run_main("--version", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch))
    assert result.stdout == f"unsup {unsup.__version__}\n"
    text = (ROOT / "pyproject.toml").read_text()
    scripts = text.split("[project.scripts]\n", 1)[1].split("\n\n", 1)[0]
    assert scripts.strip() == 'unsup = "unsup.cli:main"'
    # Where this environment installed the script, it calls that function.
    script = Path(sys.executable).with_name("unsup")
    if script.exists():
        assert "from unsup.cli import main" in script.read_text()


# --------------------------------------------------------------------- demo


def test_demo_report_and_plots(tmp_path):
    pytest.importorskip("matplotlib")
    out_dir = tmp_path / "demo-out"
    # Not --quiet, and every warning an error (PYTHONWARNINGS=error, as python -W error): the main job
    # runs clean, no warning of any kind, and stderr holds the progress lines only.
    result = ok(run_cli("demo", "-o", out_dir, cwd=tmp_path, env={"PYTHONWARNINGS": "error"}))
    assert "warning" not in result.stderr.lower(), result.stderr
    progress = re.compile(r" \.\.\. |^  Autoencoder: epoch \d+/100: ")  # the steps, and the training's epochs
    assert all(progress.search(line) for line in result.stderr.splitlines()), result.stderr
    report = result.stdout
    lines = report.splitlines()
    assert (
        lines[0]
        == "unsup demo: scikit-learn's digits, 1797 images of 8x8 pixels (values 0-16), 10 classes; random_state=0"
    )

    mse = re.search(r"autoencoder (\d+\.\d+), PCA \(8 components, \d+\.\d+ s\) (\d+\.\d+)", report)
    assert mse, report
    mse_ae, mse_pca = map(float, mse.groups())
    assert mse_ae < mse_pca  # the non-linear code reconstructs better than PCA at the same width

    codes = {
        int(m[0]): (float(m[1]), float(m[2]), float(m[3]))
        for m in re.findall(r"^ +([841]) +(\d+\.\d)x +(\d\.\d+) +(\d\.\d+) +\d+\.\d\d s$", report, re.M)
    }
    assert sorted(codes) == [1, 4, 8], report
    assert [codes[b][0] for b in (8, 4, 1)] == [4.0, 8.0, 32.0]  # 8 float32 = 32 bytes -> 8, 4, 1 bytes
    assert codes[8][1] > codes[4][1] > codes[1][1]  # fewer bits, lower recall from the codes alone
    assert codes[8][1] > 0.8 and all(c[2] >= codes[b][1] for b, c in codes.items())  # rescoring only helps
    explained = [ln for ln in lines if ln.startswith("  recall@10: ")]  # what the two columns measure
    assert len(explained) == 1 and "codes: scanning the codes alone; rescored: " in explained[0], report

    scores = {}
    for name in (
        "KMeans (euclidean)",
        "KMeans (cosine)",
        "AgglomerativeClustering (ward)",
        "DivisiveClustering (bisecting)",
        "GaussianMixture (full)",
        "KMeans on the raw pixels",
    ):
        m = re.search(rf"^  {re.escape(name)} +(-?\d\.\d+) +(\d\.\d+) +\d+\.\d\d s", report, re.M)
        assert m, (name, report)
        scores[name] = tuple(map(float, m.groups()))
    assert all(0.3 < ari <= 1 and 0.4 < nmi <= 1 for ari, nmi in scores.values()), scores

    m = re.search(
        r"^  all 1797 images: (\d+) flagged; most flagged digits: \d \(\d+\), \d \(\d+\), \d \(\d+\)$", report, re.M
    )
    assert m and 72 <= int(m[1]) <= 360, report  # 5 % of the training images, more of the held-out ones
    m = re.search(r"^  360 held-out images: (\d+) flagged", report, re.M)
    assert m and int(m[1]) < 120, report
    m = re.search(
        r"^  40 held-out images with shuffled pixels: (\d+) flagged; ROC AUC (\d\.\d+) against the 360 clean ones$",
        report,
        re.M,
    )
    assert m and int(m[1]) >= 36 and float(m[2]) > 0.95, report

    assert f"Plots in {out_dir}{os.sep}: latent_map.png, dendrogram.png, anomaly_scores.png" in report
    for name in demo.PLOT_FILES:
        content = (out_dir / name).read_bytes()
        assert content.startswith(b"\x89PNG\r\n\x1a\n") and len(content) > 10_000, name
    assert re.search(r"^Done in \d+\.\d s$", report, re.M)


def test_demo_plots_skipped_without_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    paths, note = demo.save_demo_plots(
        str(tmp_path / "out"),
        Z=None,
        y=None,
        agglomerative=None,
        divisive=None,
        scores=None,
        is_anomaly=None,
        threshold=None,
        random_state=0,
    )
    assert paths == []
    assert note == "Plots: skipped, matplotlib is not installed (pip install matplotlib)"
    assert not (tmp_path / "out").exists()


def test_python_dash_m_unsup_cli_runs_the_command_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "unsup.cli", "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("unsup ")
