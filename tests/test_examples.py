"""Every script in examples/ runs to completion and prints something.

The scripts are found by glob, so a new example is tested by being added to
``examples/``, with nothing to register here.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(script):
    result = subprocess.run(
        [sys.executable, str(script.relative_to(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        # examples that plot must not need a display; long ones take their fast settings
        env={**os.environ, "MPLBACKEND": "Agg", "UNSUP_EXAMPLES_FAST": "1"},
    )
    assert result.returncode == 0, (
        f"{script.name} exited with status {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
    )
    assert result.stdout.strip(), f"{script.name} printed nothing"


def test_examples_exist():
    assert EXAMPLES, "no examples/*.py found"
