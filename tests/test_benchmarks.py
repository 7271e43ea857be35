"""Every benchmark script still runs (on small data, ``--quick --rounds 1``).

Timings are never asserted: the figures come from full runs by hand.
"""

import subprocess
import sys
from pathlib import Path

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
