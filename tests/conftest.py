"""Fixtures shared by the test modules."""

import pytest

from tests._scripts import ScriptRunner


@pytest.fixture(scope="session")
def run_script():
    """``run_script(argv, cwd=..., env=..., timeout=...)``: ``python *argv`` as a finished ``CompletedProcess``.

    The scripts run in children forked from one interpreter that has imported
    the heavy libraries (:mod:`tests._scripts`), not in fresh interpreters.
    """
    runner = ScriptRunner()
    yield runner.run
    runner.close()
