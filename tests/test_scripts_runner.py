"""The ``run_script`` fixture behaves as ``python SCRIPT ARGS`` in a fresh interpreter (:mod:`tests._scripts`)."""

import os
import subprocess
import sys
import textwrap

import pytest

PROBE = """
import os, sys, threading, atexit
import torch
print("argv", sys.argv[1:], "name", __name__, "file", os.path.basename(__file__))
print("cwd", os.path.basename(os.getcwd()), "env", os.environ.get("PROBE_VALUE"))
print("threads", torch.get_num_threads(), "stdin", repr(sys.stdin.read()))
import helper  # the script's folder is sys.path[0]
print("helper", helper.VALUE)
print("to stderr", file=sys.stderr)
atexit.register(lambda: print("atexit ran"))
threading.Thread(target=lambda: print("thread ran")).start()
"""


@pytest.fixture
def scripts(tmp_path):
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "helper.py").write_text("VALUE = 7\n")
    (folder / "probe.py").write_text(textwrap.dedent(PROBE))
    (folder / "fails.py").write_text("raise ValueError('boom')\n")
    (folder / "exits.py").write_text("import sys\nsys.exit(3)\n")
    (folder / "exits_text.py").write_text("import sys\nsys.exit('stopped here')\n")
    (folder / "sleeps.py").write_text("import time\ntime.sleep(30)\n")
    return folder


def fresh(argv, cwd, env=None):
    return subprocess.run([sys.executable, *map(str, argv)], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("omp_threads", [None, "1"])
def test_a_script_sees_what_a_fresh_interpreter_gives_it(run_script, scripts, tmp_path, monkeypatch, omp_threads):
    """Output, argv, cwd, environment, stdin, imports, threads (torch's count read from OMP_NUM_THREADS at load)."""
    monkeypatch.setenv("PROBE_VALUE", "given")
    if omp_threads is None:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    else:  # as a dask.distributed nanny leaves it in the process that runs it
        monkeypatch.setenv("OMP_NUM_THREADS", omp_threads)
    args = [scripts / "probe.py", "a", "--b"]
    ours, theirs = run_script(args, cwd=tmp_path), fresh(args, tmp_path, dict(os.environ))
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout.splitlines() == theirs.stdout.splitlines()
    assert ours.stderr == theirs.stderr == "to stderr\n"
    assert "thread ran" in ours.stdout and ours.stdout.rstrip().endswith("atexit ran")


@pytest.mark.parametrize(
    "name, code, stderr_end",
    [("fails.py", 1, "ValueError: boom\n"), ("exits.py", 3, ""), ("exits_text.py", 1, "stopped here\n")],
)
def test_failures_and_exit_codes_as_in_a_fresh_interpreter(run_script, scripts, tmp_path, name, code, stderr_end):
    ours, theirs = run_script([scripts / name], cwd=tmp_path), fresh([scripts / name], tmp_path)
    assert ours.returncode == theirs.returncode == code
    assert ours.stderr.endswith(stderr_end) and theirs.stderr.endswith(stderr_end)


def test_the_scripts_run_in_forks_of_the_template(run_script, scripts, tmp_path):
    """Not in fresh interpreters: the template started (unless asked not to, or fork is missing)."""
    runner = run_script.__self__
    if os.environ.get("UNSUP_TESTS_FRESH_INTERPRETERS") == "1" or not hasattr(os, "fork"):
        pytest.skip(runner.why_fresh)
    assert run_script([scripts / "exits.py"], cwd=tmp_path).returncode == 3
    assert runner.why_fresh is None and runner._template is not None


def test_a_script_past_its_timeout_is_killed(run_script, scripts, tmp_path):
    with pytest.raises(subprocess.TimeoutExpired):
        run_script([scripts / "sleeps.py"], cwd=tmp_path, timeout=1)
    assert run_script([scripts / "exits.py"], cwd=tmp_path).returncode == 3  # and the runner goes on
