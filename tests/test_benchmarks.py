"""Every benchmark script still runs (on small data, ``--quick --rounds 1``).

Timings are never asserted: the figures come from full runs by hand. Each
script runs as ``python SCRIPT --quick --rounds 1`` would, in a child of an
interpreter that has already imported the heavy libraries (the ``run_script``
fixture, :mod:`tests._scripts`).
"""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_benchmark_runs_quick(script, run_script):
    done = run_script([script, "--quick", "--rounds", "1"], cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if script.name != "bench_anomaly.py":  # its figures: test_anomaly_benchmark_figures_are_in_range
        check_ratios(done.stdout)


# A ratio as the scripts print it: "ratio 0.52x", "ratio to PCA 0.300x", "...: 1.20x"
RATIO = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?(?:e[-+]?\d+)?)x\b")


def check_ratios(stdout):
    """Every ratio the script prints is a finite positive number, and it prints at least one."""
    lines = [line for line in stdout.splitlines() if "ratio" in line]
    assert lines, f"no ratio printed:\n{stdout[-2000:]}"
    values = [float(v) for line in lines for v in RATIO.findall(line)]
    assert values, "no figure in the ratio lines:\n" + "\n".join(lines)
    for line in lines:
        assert not re.search(r"\b(nan|inf)\b", line, re.IGNORECASE), line
    assert all(0 < v < 1e6 for v in values), values


@pytest.mark.parametrize(
    "stdout, ok",
    [
        ("  unsup  1.0 s  ratio 0.52x\n", True),
        ("  MSE 0.1  ratio to PCA(8) 0.300x; AUC ratio 1.02x\n", True),
        ("  unsup  1.0 s  ratio nanx\n", False),
        ("  unsup  1.0 s  ratio inf\n", False),
        ("  unsup 1.0 s\n", False),
        ("  ratio n/a\n", False),
        ("  ratio 0.00x\n", False),
    ],
)
def test_check_ratios_rejects_missing_or_broken_figures(stdout, ok):
    if ok:
        check_ratios(stdout)
    else:
        with pytest.raises(AssertionError):
            check_ratios(stdout)


def test_there_are_benchmarks():
    assert any(s.name == "bench_kmeans.py" for s in SCRIPTS)


def test_anomaly_benchmark_figures_are_in_range(run_script):
    """The anomaly benchmark's summary lines hold finite AUCs in [0, 1] and ranks in [1, n detectors]."""
    script = ROOT / "benchmarks" / "bench_anomaly.py"
    done = run_script(
        [script, "--quick", "--rounds", "1", "--detectors", "AutoencoderEnsemble", "IsolationForest", "PCA(2) error"],
        cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    if "No ADBench data found" in done.stdout:
        pytest.skip("ADBench data absent (../shared/data/adbench or UNSUP_DATA)")
    lines = {line[:18].strip(): line[18:].split() for line in done.stdout.splitlines()}
    auc = np.array(lines["mean ROC AUC"], dtype=float)
    ap = np.array(lines["mean AP"], dtype=float)
    rank = np.array(lines["mean rank"], dtype=float)
    assert auc.shape == (3,) and np.isfinite(auc).all() and ((auc > 0.5) & (auc <= 1)).all()
    assert ((ap > 0) & (ap <= 1)).all()
    assert ((rank >= 1) & (rank <= 3)).all() and rank.sum() == pytest.approx(6)
    assert float(lines["time ratio to IF"][1]) == 1.0
