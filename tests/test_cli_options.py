"""Options of ``unsup cluster`` a user meets on real data: --scale and its hint, options that do not
apply, minkowski's p, and running out of memory inside an engine.

Oracles: scikit-learn's StandardScaler and scipy's linkage + fcluster on the
same data. The out-of-memory runs are real: a subprocess whose address space
is capped (RLIMIT_AS), so that an engine's own check or the allocation itself
raises MemoryError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from tests.test_cli import blobs, check_one_line_error, ok, run_main
from unsup.cluster import KMeans

ROOT = Path(__file__).resolve().parents[1]


def adbench_file(name):
    """An ADBench file (``UNSUP_DATA`` or ``../shared/data/adbench``), or a skip."""
    env = os.environ.get("UNSUP_DATA")
    candidates = ([Path(env), Path(env) / "adbench"] if env else []) + [ROOT.parent / "shared" / "data" / "adbench"]
    for folder in candidates:
        if (folder / name).exists():
            return folder / name
    pytest.skip(f"ADBench data absent ({name} in ../shared/data/adbench or UNSUP_DATA)")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_options")
    np.save(folder / "blobs.npy", blobs(n=90, n_features=4))
    return folder


# -------------------------------------------------------------------- --scale


@pytest.fixture(scope="module")
def vertebral(tmp_path_factory):
    """ADBench's vertebral column: 240 rows, 6 features with standard deviations from 10 to 40."""
    X = np.load(adbench_file("39_vertebral.npz"))["X"].astype(np.float64)
    path = tmp_path_factory.mktemp("vertebral") / "vertebral.npy"
    np.save(path, X)
    return path, X


def _sizes(stdout):
    line = next(ln for ln in stdout.splitlines() if ln.startswith("cluster sizes: "))
    return np.array(line.split(": ")[1].split(), dtype=int)


def test_unscaled_real_data_gets_the_hint_and_scale_balances_it(vertebral, capsys, monkeypatch):
    path, X = vertebral
    plain = ok(run_main("cluster", path.name, "-k", "2", "-q", cwd=path.parent, capsys=capsys, monkeypatch=monkeypatch))
    sizes = _sizes(plain.stdout)
    assert sizes.max() >= 0.9 * len(X)  # one cluster takes almost every row
    hints = [ln for ln in plain.stdout.splitlines() if ln.startswith("hint: ")]
    assert len(hints) == 1 and "try --scale" in hints[0], plain.stdout
    assert f"{100 * sizes.max() / len(X):.1f} %" in hints[0]

    scaled = ok(
        run_main(
            "cluster", path.name, "-k", "2", "--scale", "-q", "-o", "labels.npz",
            cwd=path.parent, capsys=capsys, monkeypatch=monkeypatch,
        )
    )
    assert "hint:" not in scaled.stdout
    assert scaled.stdout.startswith("kmeans (euclidean, standardised): 240 samples -> 2 clusters")
    assert _sizes(scaled.stdout).max() < 0.75 * len(X)  # balanced
    # The oracle: scikit-learn's StandardScaler, then the same KMeans.
    scaler = StandardScaler().fit(X)
    expected = KMeans(2, random_state=0).fit(scaler.transform(X))
    saved = np.load(path.parent / "labels.npz")
    np.testing.assert_array_equal(saved["labels"], expected.labels_)
    np.testing.assert_allclose(saved["cluster_centers"], expected.cluster_centers_)
    np.testing.assert_array_equal(saved["scale_mean"], scaler.mean_)
    np.testing.assert_array_equal(saved["scale_std"], scaler.scale_)


def test_scaled_model_scales_new_data(folder, capsys, monkeypatch):
    """--save-model with --scale saves the scaler with the clusterer: apply gives the fitted labels."""
    ok(
        run_main(
            "cluster", "blobs.npy", "-k", "3", "-a", "gmm", "--scale", "-q", "-o", "fit.npy",
            "--save-model", "scaled.joblib", cwd=folder, capsys=capsys, monkeypatch=monkeypatch,
        )
    )
    ok(run_main("apply", "scaled.joblib", "blobs.npy", "-q", "-o", "applied.npy", cwd=folder, capsys=capsys, monkeypatch=monkeypatch))
    np.testing.assert_array_equal(np.load(folder / "applied.npy"), np.load(folder / "fit.npy"))


def test_hint_after_scaling_points_elsewhere():
    from unsup.cli import dominance_hint

    assert dominance_hint([95, 5], scaled=False).endswith("try --scale to standardise them first")
    assert "try unsup detect" in dominance_hint([95, 5], scaled=True)
    assert dominance_hint([89, 11], scaled=False) is None
    assert dominance_hint([100], scaled=False) is None  # one cluster asked for: nothing to say


# ---------------------------------------------------------- inapplicable options

INAPPLICABLE = [
    (["--linkage", "single"], "--linkage applies to --algorithm agglomerative only, got --algorithm kmeans"),
    (["--linkage", "ward", "-a", "gmm"], "--linkage applies to --algorithm agglomerative only, got --algorithm gmm"),
    (["--method", "diana"], "--method applies to --algorithm divisive only, got --algorithm kmeans"),
    (["--method", "bisecting", "-a", "agglomerative"], "--method applies to --algorithm divisive only"),
    (["--covariance-type", "diag"], "--covariance-type applies to --algorithm gmm only, got --algorithm kmeans"),
    (["--covariance-type", "full", "-a", "divisive"], "--covariance-type applies to --algorithm gmm only"),
    (["--p", "3"], "--p applies to --metric minkowski only, got --metric euclidean"),
    (["--p", "1", "--metric", "manhattan", "-a", "agglomerative"], "--p applies to --metric minkowski only"),
]


@pytest.mark.parametrize("extra, fragment", INAPPLICABLE, ids=[" ".join(e) for e, _ in INAPPLICABLE])
def test_an_option_that_does_not_apply_is_an_error(folder, extra, fragment, capsys, monkeypatch):
    argv = ["cluster", "blobs.npy", "-k", "3", *extra]
    check_one_line_error(run_main(*argv, cwd=folder, capsys=capsys, monkeypatch=monkeypatch), argv, fragment)


def test_observer_does_not_apply_to_sign_bits(folder, capsys, monkeypatch):
    argv = ["compress", "blobs.npy", "--n-bits", "1", "--observer", "mse"]
    result = run_main(*argv, cwd=folder, capsys=capsys, monkeypatch=monkeypatch)
    check_one_line_error(result, argv, "--observer applies to --n-bits 8 or 4 only, got --n-bits 1")
    ok(run_main("compress", "blobs.npy", "--n-bits", "4", "--observer", "mse", "-q", cwd=folder, capsys=capsys, monkeypatch=monkeypatch))


def test_options_at_their_defaults_are_not_given(folder, capsys, monkeypatch):
    """The defaults themselves, given explicitly with their algorithm, run."""
    for extra in (["-a", "agglomerative", "--linkage", "ward"], ["-a", "divisive", "--method", "bisecting"],
                  ["-a", "gmm", "--covariance-type", "full"]):
        ok(run_main("cluster", "blobs.npy", "-k", "3", "-q", *extra, cwd=folder, capsys=capsys, monkeypatch=monkeypatch))


def test_help_says_inapplicable_options_are_errors(capsys, monkeypatch, tmp_path):
    result = run_main("cluster", "--help", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    assert "does not apply to the chosen algorithm" in text and "is an error (exit status 2)" in text
    assert "in different units or on very different scales" in text  # when to use --scale
    # detect and compress need no --scale, and say why
    detect = " ".join(run_main("detect", "--help", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch).stdout.split())
    assert "Every model standardises the features itself" in detect and "--scale" not in detect
    compress = " ".join(run_main("compress", "--help", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch).stdout.split())
    assert "every feature gets its own range" in compress and "--scale" not in compress


# ----------------------------------------------------------------- minkowski p


def test_minkowski_p_equals_scipy(folder, capsys, monkeypatch):
    X = np.load(folder / "blobs.npy")
    result = ok(
        run_main(
            "cluster", "blobs.npy", "-k", "3", "-a", "agglomerative", "--metric", "minkowski", "--p", "3",
            "-q", "-o", "mink.npy", cwd=folder, capsys=capsys, monkeypatch=monkeypatch,
        )
    )
    assert result.stdout.startswith("agglomerative (average linkage, minkowski p=3): 90 samples -> 3 clusters")
    expected = fcluster(linkage(pdist(X, "minkowski", p=3), "average"), 3, criterion="maxclust")
    assert adjusted_rand_score(np.load(folder / "mink.npy"), expected) == 1.0


def test_minkowski_p_reaches_kmeans_and_is_checked(folder, capsys, monkeypatch):
    X = np.load(folder / "blobs.npy")
    ok(run_main("cluster", "blobs.npy", "-k", "3", "--metric", "minkowski", "--p", "1.5", "-q", "-o", "k.npy",
                cwd=folder, capsys=capsys, monkeypatch=monkeypatch))
    expected = KMeans(3, metric="minkowski", metric_params={"p": 1.5}, random_state=0).fit_predict(X)
    np.testing.assert_array_equal(np.load(folder / "k.npy"), expected)
    for bad in ("0", "-2", "nan", "two"):
        argv = ["cluster", "blobs.npy", "-k", "3", "--metric", "minkowski", "--p", bad]
        result = run_main(*argv, cwd=folder, capsys=capsys, monkeypatch=monkeypatch)
        check_one_line_error(result, argv, f"argument --p: expected a number > 0, got '{bad}'")


# --------------------------------------------------------------- out of memory

_CAPPED = textwrap.dedent(
    """
    import contextlib, io, json, resource, sys
    {before}
    import numpy as np
    import scipy.cluster.hierarchy, torch  # everything the cases load, before the cap
    import unsup.cli, unsup.cluster, unsup.mixture
    from unsup.cluster._hierarchical import available_memory
    results = {{"available": available_memory()}}
    with open("/proc/self/statm") as f:
        used = int(f.read().split()[0]) * resource.getpagesize()
    cap = used + 400 * 2**20  # the libraries are loaded; 400 MiB more, far below what the cases need
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    for name, argv in {cases!r}:
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = unsup.cli.main(argv)
        results[name] = [code, err.getvalue()]
    print(json.dumps(results))
    """
)


def _run_capped(cases, before=""):
    script = _CAPPED.format(before=before, cases=cases)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=240, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _check_memory_line(result, command):
    code, err = result
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"unsup {command}: error: "), err
    assert "out of memory" in lines[0], lines[0]
    return lines[0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS (Linux)")
def test_engines_memory_errors_are_one_line(tmp_path):
    """Ward without fastcluster on 60,000 rows, DIANA on 30,000: each needs far more than it may have.

    Where the machine's free memory is below what they need, the engines'
    own check raises (and its message, with the way out, is the line);
    elsewhere the allocation hits the capped address space. Either way: one
    line, exit 2.
    """
    rng = np.random.default_rng(0)
    np.save(tmp_path / "ward.npy", rng.standard_normal((60_000, 2)))
    np.save(tmp_path / "diana.npy", rng.standard_normal((30_000, 2)))
    cases = [
        ("ward", ["cluster", str(tmp_path / "ward.npy"), "-k", "2", "-a", "agglomerative", "-q"]),
        ("diana", ["cluster", str(tmp_path / "diana.npy"), "-k", "2", "-a", "divisive", "--method", "diana", "-q"]),
        ("average", ["cluster", str(tmp_path / "diana.npy"), "-k", "2", "-a", "agglomerative",
                     "--metric", "manhattan", "-q"]),
    ]
    # No fastcluster in that process: ward has no memory-lean path there.
    results = _run_capped(cases, before='sys.modules["fastcluster"] = None')
    budget = 0.5 * results["available"] if results["available"] is not None else np.inf
    ward = _check_memory_line(results["ward"], "cluster")
    if 2 * 8 * (60_000 * 59_999 // 2) > budget:
        assert "AgglomerativeClustering(linkage='ward') on 60000 samples" in ward
        assert "pip install 'unsup[fast]'" in ward
    diana = _check_memory_line(results["diana"], "cluster")
    if 2 * 8 * 30_000**2 > budget:
        assert "DivisiveClustering(method='diana')" in diana and "Use method='bisecting'" in diana
        assert diana.endswith("On the command line: --method bisecting.")
    # Average linkage fits the engine's budget: its 3.4 GiB allocation meets the cap.
    average = _check_memory_line(results["average"], "cluster")
    assert str(tmp_path / "diana.npy") in average


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS (Linux)")
def test_torch_running_out_of_memory_is_one_line():
    """torch's CPU allocator raises RuntimeError, not MemoryError: the command line maps it the same."""
    script = textwrap.dedent(
        """
        import resource, torch
        from unsup.cli import _main as cli
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        cap = used + 200 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        try:
            torch.empty(10**9)
        except RuntimeError as exc:
            print(cli._is_torch_oom(exc), cli._is_torch_oom(RuntimeError("shape mismatch")))
            print(cli._memory_message(type("A", (), {"data": "x.csv"})(), exc))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    first, second = done.stdout.strip().splitlines()
    assert first == "True False"
    assert second.startswith("x.csv: out of memory: ") and "4000000000 bytes" in second
    assert "try fewer rows" in second


def test_out_of_memory_names_the_files_of_a_dask_array(tmp_path):
    from types import SimpleNamespace

    from unsup.cli import _main as cli

    for name in ("a.npy", "b.npy", "c.npy"):
        np.save(tmp_path / name, np.zeros((2, 2)))
    exc = MemoryError("Unable to allocate 8.00 GiB")
    paths = [str(tmp_path / name) for name in ("a.npy", "b.npy", "c.npy")]
    # as the dask path's other messages name them
    assert cli._memory_message(SimpleNamespace(data=paths), exc).startswith("3 files: out of memory: Unable to allocate")
    one = cli._memory_message(SimpleNamespace(data=[str(tmp_path / "a*.npy")]), exc)
    assert one.startswith(f"{tmp_path / 'a.npy'}: out of memory")
    assert cli._memory_message(SimpleNamespace(data="x.csv"), exc).startswith("x.csv: out of memory")
