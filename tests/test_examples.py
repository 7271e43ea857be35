"""Every script in examples/ runs to completion and prints something.

The scripts are found by glob, so a new example is tested by being added to
``examples/``, with nothing to register here. Each runs as ``python SCRIPT``
would, in a child of an interpreter that has already imported the heavy
libraries (the ``run_script`` fixture, :mod:`tests._scripts`).
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script, run_script):
    result = run_script(
        [script.relative_to(ROOT)],
        cwd=ROOT,
        timeout=300,
        # examples that plot must not need a display; long ones take their fast settings
        env={**os.environ, "MPLBACKEND": "Agg", "UNSUP_EXAMPLES_FAST": "1"},
    )
    assert result.returncode == 0, (
        f"{script.name} exited with status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )
    assert result.stdout.strip(), f"{script.name} printed nothing"
    if script.name == "adbench_anomaly_detection.py":
        check_adbench_output(result.stdout)


def adbench_data():
    """The ADBench folder the example reads (``UNSUP_DATA`` or ``../shared/data/adbench``), or None."""
    env = os.environ.get("UNSUP_DATA")
    candidates = ([Path(env), Path(env) / "adbench"] if env else []) + [ROOT.parent / "shared" / "data" / "adbench"]
    return next((p for p in candidates if p.is_dir() and any(p.glob("*.npz"))), None)


def check_adbench_output(stdout):
    """The example scored real data: a mean ROC AUC line with figures in (0.5, 1]."""
    if adbench_data() is None:
        pytest.skip("ADBench data absent (../shared/data/adbench or UNSUP_DATA): the example had nothing to score")
    assert "skipped" not in stdout, stdout
    line = next((line for line in stdout.splitlines() if line.startswith("mean ROC AUC")), None)
    assert line is not None, stdout
    aucs = [float(v) for v in line.split()[3:]]
    assert aucs and all(0.5 < a <= 1.0 for a in aucs), line


def test_examples_exist():
    assert EXAMPLES, "no examples/*.py found"
