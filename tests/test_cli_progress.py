"""Progress on the command line: training epochs (a bar on a terminal, lines elsewhere), slow clusterings; -q shows none."""

import os
import pty
import re
import subprocess
import sys

import numpy as np
import pytest

from unsup import cli
from unsup.cli import _progress as _cli_progress

EPOCH_LINE = re.compile(r"^  (\w+): epoch (\d+)/(\d+): loss [-+.e\d]+(, validation loss [-+.e\d]+)?; \d+\.\d\d s, ETA \d+\.\d s$")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("progress")
    rng = np.random.default_rng(0)
    np.savetxt(path / "rows.csv", rng.standard_normal((300, 5)), delimiter=",")
    return path


def run(capsys, monkeypatch, folder, *argv):
    monkeypatch.chdir(folder)
    capsys.readouterr()
    assert cli.main(list(argv)) == 0
    return capsys.readouterr()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("model", ["autoencoder", "vae", "ensemble"])
def test_detect_shows_epoch_lines_on_stderr_when_not_a_terminal(model, capsys, monkeypatch, folder):
    out = run(capsys, monkeypatch, folder, "detect", "rows.csv", "--model", model, "--max-epochs", "30")
    lines = [line for line in out.err.splitlines() if ": epoch " in line]
    matches = [EPOCH_LINE.match(line) for line in lines]
    assert matches and all(matches), out.err
    epochs = [int(m[2]) for m in matches]
    assert epochs[0] == 1 and epochs == sorted(epochs) and len(epochs) <= 11  # about ten lines a fit
    assert {m[3] for m in matches} == {"30"}
    assert ": epoch " not in out.out  # stdout keeps the results only
    # the step's line is closed before the first epoch line, and its end comes after the last
    err = out.err.splitlines()
    assert err[err.index(lines[0]) - 1].startswith("training ")
    assert re.match(r"  \.\.\. training .*: \d+\.\d\d s, \d+ epochs$", err[-1])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_quiet_shows_no_progress(capsys, monkeypatch, folder):
    out = run(capsys, monkeypatch, folder, "detect", "rows.csv", "--model", "autoencoder", "--max-epochs", "5", "-q")
    assert out.err == ""
    assert out.out.startswith("Autoencoder: ")
    out = run(capsys, monkeypatch, folder, "cluster", "rows.csv", "--n-clusters", "3", "--metric", "chebyshev", "-q")
    assert out.err == ""


def test_a_terminal_gets_one_redrawn_bar(folder):
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "unsup", "detect", "rows.csv", "--model", "autoencoder", "--max-epochs", "5"],
            cwd=folder, stdout=subprocess.PIPE, stderr=slave, timeout=300, text=True,
        )
        os.close(slave)
        slave = None
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    err = b"".join(chunks).decode()
    assert proc.returncode == 0
    assert re.search(r"\r  \[#{20}\] epoch 5/5, loss [-+.e\d]+, ETA 0\.0 s", err), repr(err)
    assert not re.search(r"^  Autoencoder: epoch", err, re.MULTILINE)  # the bar, not the plain lines
    assert proc.stdout.startswith("Autoencoder: ")


def test_k_medoids_shows_its_iterations_on_stderr(capsys, monkeypatch, folder):
    out = run(capsys, monkeypatch, folder, "cluster", "rows.csv", "--n-clusters", "3", "--metric", "chebyshev")
    assert re.search(r"^Iteration \d+, inertia ", out.err, re.MULTILINE), out.err
    assert "Iteration" not in out.out
    out = run(capsys, monkeypatch, folder, "cluster", "rows.csv", "--n-clusters", "3")  # Lloyd: fast, no lines
    assert "Iteration" not in out.err


@pytest.mark.parametrize("algorithm", ["agglomerative", "divisive"])
def test_a_large_hierarchical_clustering_shows_its_engine_lines(algorithm, capsys, monkeypatch, folder):
    out = run(capsys, monkeypatch, folder, "cluster", "rows.csv", "--n-clusters", "3", "--algorithm", algorithm)
    assert f"[{'Agglomerative' if algorithm == 'agglomerative' else 'Divisive'}Clustering]" not in out.err
    monkeypatch.setattr(_cli_progress, "LARGE", 300)  # this file counts as large
    out = run(capsys, monkeypatch, folder, "cluster", "rows.csv", "--n-clusters", "3", "--algorithm", algorithm)
    name = "AgglomerativeClustering" if algorithm == "agglomerative" else "DivisiveClustering"
    assert re.search(rf"^\[{name}\] .* \d+\.\d+ s", out.err, re.MULTILINE), out.err
    assert f"[{name}]" not in out.out
