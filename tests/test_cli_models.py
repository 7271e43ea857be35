"""Saved models on the command line: ``--save-model``, ``unsup apply``, ``unsup export``.

The model a command saves is the one it fitted: ``apply`` on new rows gives
what the estimator's own methods give, and the exported graph run in
onnxruntime gives the same labels. Bad model files and mismatched data end
with exit status 2 and one line on stderr.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from tests.test_cli import blobs, ok, run_cli, run_main
from unsup.cli import _models as _cli_models


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_models")
    X = blobs(n=90, n_features=4)
    np.save(folder / "train.npy", X)
    np.save(folder / "new.npy", blobs(n=30, n_features=4, seed=1))
    np.save(folder / "narrow.npy", X[:, :3])
    with open(folder / "notamodel.joblib", "wb") as f:
        f.write(b"this is not a pickle")
    with open(folder / "adict.joblib", "wb") as f:
        pickle.dump({"a": 1}, f)
    return folder


def _model(folder, name):
    return _cli_models.load_model(str(folder / name))


@pytest.mark.parametrize(
    "argv, model",
    [
        (["cluster", "train.npy", "--n-clusters", "3", "-a", "gmm"], "gmm.joblib"),
        (["cluster", "train.npy", "--n-clusters", "3", "-a", "agglomerative"], "agg.joblib"),
        (["detect", "train.npy", "--max-epochs", "3"], "ae.joblib"),
        (["compress", "train.npy", "--n-bits", "4"], "codes.joblib"),
    ],
    ids=["gmm", "agglomerative", "detect", "compress"],
)
def test_save_apply_export(folder, argv, model, capsys, monkeypatch):
    ok(run_main(*argv, "--save-model", model, "-q", cwd=folder, capsys=capsys, monkeypatch=monkeypatch))
    est = _model(folder, model)
    new = np.load(folder / "new.npy")
    out = f"{model}.npz"
    ok(run_main("apply", model, "new.npy", "-o", out, cwd=folder, capsys=capsys, monkeypatch=monkeypatch))
    saved = np.load(folder / out)
    if argv[0] == "cluster":
        np.testing.assert_array_equal(saved["labels"], est.predict(new))
    elif argv[0] == "detect":
        np.testing.assert_array_equal(saved["score"], -est.score_samples(new))
        np.testing.assert_array_equal(saved["outlier"], est.predict(new) == -1)
    else:
        np.testing.assert_array_equal(saved["codes"], est.transform(new))
    ort = pytest.importorskip("onnxruntime")
    result = run_main("export", model, "-o", "model.onnx", cwd=folder, capsys=capsys, monkeypatch=monkeypatch)
    ok(result)
    assert "model.onnx" in result.stdout
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    first = session.run(None, {"X": new.astype(np.float32)})[0]
    if argv[0] == "cluster":
        np.testing.assert_array_equal(first, est.predict(new.astype(np.float32)))
    elif argv[0] == "compress":
        np.testing.assert_array_equal(first, est.transform(new.astype(np.float32)))


def test_subprocess_round_trip(folder):
    ok(run_cli("cluster", "train.npy", "--n-clusters", "3", "--save-model", "km.joblib", "-q", cwd=folder))
    result = ok(run_cli("apply", "km.joblib", "new.npy", "-o", "-", cwd=folder))
    labels = np.array(result.stdout.split()[1:], dtype=int)
    np.testing.assert_array_equal(labels, _model(folder, "km.joblib").predict(np.load(folder / "new.npy")))


def test_help_warns_about_pickles(capsys, monkeypatch, tmp_path):
    for command in ("apply", "export"):
        result = run_main(command, "--help", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
        assert result.returncode == 0
        assert "untrusted source can run arbitrary code" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["apply", "notamodel.joblib", "new.npy"], "notamodel.joblib: not a model file saved by --save-model"),
        (["apply", "adict.joblib", "new.npy"], "adict.joblib: not a model file saved by --save-model"),
        (["apply", "missing.joblib", "new.npy"], "missing.joblib"),
        (["apply", "km2.joblib", "narrow.npy"], "narrow.npy: 3 features, but the model in km2.joblib was fitted on 4"),
        (["export", "notamodel.joblib", "-o", "x.onnx"], "not a model file"),
        (["export", "km2.joblib", "-o", "x.txt"], "must be a .onnx file"),
        (["cluster", "train.npy", "--n-clusters", "2", "--save-model", "nofolder/m.joblib"], "does not exist"),
        (["export", "km2.joblib", "-o", "nofolder/x.onnx"], "nofolder/x.onnx: cannot write: folder 'nofolder' does not exist"),
        (["export", "km2.joblib", "-o", "adir.onnx"], "adir.onnx: is a directory, expected an .onnx file name"),
    ],
    ids=["garbage", "not-an-estimator", "missing", "features", "export-garbage", "export-extension", "save-folder",
         "export-folder", "export-directory"],
)
def test_bad_model_files_exit_2_with_one_line(folder, argv, fragment, capsys, monkeypatch):
    if not (folder / "km2.joblib").exists():
        ok(run_main("cluster", "train.npy", "--n-clusters", "2", "--save-model", "km2.joblib", "-q",
                    cwd=folder, capsys=capsys, monkeypatch=monkeypatch))
    (folder / "adir.onnx").mkdir(exist_ok=True)
    result = run_main(*argv, cwd=folder, capsys=capsys, monkeypatch=monkeypatch)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"unsup {argv[0]}: error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert result.stdout == ""
