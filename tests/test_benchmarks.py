"""Every benchmark script still runs (on small data, ``--quick --rounds 1``).

Timings are never asserted: the figures come from full runs by hand.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("bench_*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_benchmark_runs_quick(script):
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ratio" in done.stdout


def test_there_are_benchmarks():
    assert any(s.name == "bench_kmeans.py" for s in SCRIPTS)


def test_anomaly_benchmark_figures_are_in_range():
    """The anomaly benchmark's summary lines hold finite AUCs in [0, 1] and ranks in [1, n detectors]."""
    script = ROOT / "benchmarks" / "bench_anomaly.py"
    done = subprocess.run(
        [sys.executable, str(script), "--quick", "--rounds", "1", "--detectors", "AutoencoderEnsemble",
         "IsolationForest", "PCA(2) error"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
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
