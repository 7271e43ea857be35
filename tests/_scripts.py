"""Run the repository's scripts (examples, benchmarks) as ``python SCRIPT ARGS`` does, without paying the imports each time.

A fresh interpreter that imports scikit-learn, torch, matplotlib and unsup
takes about 3.5 s on the CI machines before the script does anything; the
examples and benchmarks are some thirty scripts. :class:`ScriptRunner` starts
one *template* interpreter that imports the third-party libraries (not unsup,
below) and then only forks:
each script runs in a child forked from it, as ``__main__``
(:func:`runpy.run_path`), with its own ``sys.argv``, ``sys.path[0]`` (the
script's folder), working directory, environment, stdin (``/dev/null``),
stdout and stderr; the child exits as the interpreter would (an uncaught
exception prints its traceback and gives status 1, ``sys.exit`` its code;
non-daemon threads are waited for, ``atexit`` handlers run, the script's
globals are released, the streams flushed) but without tearing down the
imported modules one by one, which takes a second. The child gets the
script's environment; as libraries read some variables while they load
(``OMP_NUM_THREADS``, ``MPLBACKEND``), the template itself is started with
the script's environment, and again whenever a script comes with another
(apart from the variables only scripts read, ``UNSUP_EXAMPLES_FAST``).

Forking is safe because the template never runs anything after its imports:
it checks that it holds a single Python thread (no thread pool for a child to
inherit dead) and refuses otherwise. No OpenMP region has run, so no OpenMP
pool exists yet; the threads that libraries start as they load (OpenBLAS's
pool, jemalloc's background thread) are remade in a child by their own fork
handlers, as in any fork of a process that imported numpy. It does not import
unsup, whose own fork handler gives a forked child one torch thread (more
could hang there): each script imports unsup itself and keeps the thread
counts of a fresh interpreter. Where ``os.fork`` is missing, the template
could not start, or ``UNSUP_TESTS_FRESH_INTERPRETERS=1`` is set, every script
runs in a fresh interpreter (``subprocess.run``) instead.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

#: What the template imports; never unsup.
PRELOAD = (
    "numpy",
    "scipy.linalg",
    "scipy.spatial.distance",
    "scipy.cluster.hierarchy",
    "sklearn.base",
    "sklearn.cluster",
    "sklearn.decomposition",
    "sklearn.ensemble",
    "sklearn.mixture",
    "sklearn.model_selection",
    "sklearn.neighbors",
    "sklearn.pipeline",
    "sklearn.datasets",
    "torch",
    "matplotlib.pyplot",
)

# The template: import, check it is single-threaded, then serve one JSON request a line: fork, run, wait.
TEMPLATE = r"""
import atexit, gc, importlib, json, os, runpy, signal, sys, threading, traceback
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except ImportError:  # an optional library: the scripts that need it import it themselves
        pass
reply = sys.stdout
if threading.active_count() != 1 or "unsup" in sys.modules:
    why = f"{threading.active_count()} Python threads after the imports, unsup imported: {'unsup' in sys.modules}"
    reply.write(json.dumps({"ready": False, "why": why}) + "\n")
    reply.flush()
    sys.exit(0)
reply.write(json.dumps({"ready": True}) + "\n")
reply.flush()


def run_child(request):
    signal.alarm(request["timeout"])  # past it the child is killed by SIGALRM
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, fd)
        os.close(out)
    sys.stdin = open(0, closefd=False)
    sys.stdout = open(1, "w", closefd=False)
    sys.stderr = open(2, "w", closefd=False, buffering=1)
    script = os.path.abspath(request["argv"][0])
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(script)
    namespace = {}
    try:
        namespace = runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as exc:  # as the interpreter reads sys.exit's argument
        code = 0 if exc.code is None else exc.code
        if not isinstance(code, int):
            print(code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    # The interpreter's exit, less the teardown of the imported modules (a second here): wait for the
    # non-daemon threads, run the atexit handlers, let the script's own objects go, flush.
    threading._shutdown()
    atexit._run_exitfuncs()
    namespace.clear()
    gc.collect()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code & 0xFF)


for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        try:
            run_child(request)
        finally:
            os._exit(70)  # never back into this loop
    _, status = os.waitpid(pid, 0)
    reply.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")
    reply.flush()
"""


#: Variables that only the scripts read, while they run: the other ones must be those the template started with.
RUN_TIME_VARIABLES = ("UNSUP_EXAMPLES_FAST", "PYTEST_CURRENT_TEST")


def _load_time_environment(env):
    """``env`` less :data:`RUN_TIME_VARIABLES`: what the libraries may read as the template imports them."""
    return {k: v for k, v in env.items() if k not in RUN_TIME_VARIABLES}


class ScriptRunner:
    """Runs ``python SCRIPT ARGS`` in children of a template interpreter (see the module's docstring).

    The template is started with the environment of the first script, and
    started again whenever a script's environment differs in a variable that
    a library may read as it loads (``OMP_NUM_THREADS``, which a
    ``dask.distributed`` nanny sets in the process that runs it, or
    ``MPLBACKEND``): a child sees the thread counts and settings that a fresh
    interpreter with its environment would.
    """

    def __init__(self):
        self._template = None
        self._template_env = None
        self._folder = tempfile.TemporaryDirectory(prefix="unsup-scripts-")
        self._count = 0
        self.why_fresh = None
        if os.environ.get("UNSUP_TESTS_FRESH_INTERPRETERS") == "1":
            self.why_fresh = "UNSUP_TESTS_FRESH_INTERPRETERS=1"
        elif not hasattr(os, "fork"):
            self.why_fresh = "no os.fork on this platform"

    def _start(self, env):
        self._stop()
        self._template_env = _load_time_environment(env)
        self._template = subprocess.Popen(
            [sys.executable, "-c", TEMPLATE, json.dumps(PRELOAD)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=self._folder.name,
            start_new_session=True,  # its own process group: killed with its child if a reply never comes
        )
        ready = json.loads(self._template.stdout.readline() or '{"ready": false, "why": "the template exited"}')
        if not ready["ready"]:
            self.why_fresh = ready["why"]
            self._stop()

    def _stop(self):
        if self._template is not None:
            self._template.stdin.close()
            self._template.wait(timeout=60)
            self._template.stdout.close()
            self._template = None

    def run(self, argv, *, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
        """``subprocess.run([sys.executable, *argv], cwd=cwd, env=env, stdin=DEVNULL, capture_output=True, text=True, timeout=timeout)``."""
        argv = [str(a) for a in argv]
        env = dict(os.environ if env is None else env)
        if self.why_fresh is None and (self._template is None or _load_time_environment(env) != self._template_env):
            self._start(env)
        if self.why_fresh is not None:
            return subprocess.run([sys.executable, *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=timeout)
        self._count += 1
        out = Path(self._folder.name) / f"{self._count}.out"
        err = Path(self._folder.name) / f"{self._count}.err"
        request = {"argv": argv, "cwd": str(cwd), "env": env, "timeout": int(timeout), "stdout": str(out),
                   "stderr": str(err)}
        self._template.stdin.write(json.dumps(request) + "\n")
        self._template.stdin.flush()
        # The child kills itself at ``timeout`` (SIGALRM); should even that fail, the group goes.
        if not select.select([self._template.stdout], [], [], timeout + 60)[0]:
            os.killpg(self._template.pid, signal.SIGKILL)
            self._template.wait()
            self._template = None
            self.why_fresh = f"the template's child outlived its timeout running {argv}"
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout)
        line = self._template.stdout.readline()
        if not line:
            raise RuntimeError(f"the script template exited (status {self._template.poll()}) running {argv}")
        returncode = json.loads(line)["returncode"]
        stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        if returncode == -14:  # SIGALRM: the child's own timeout
            raise subprocess.TimeoutExpired([sys.executable, *argv], timeout, stdout, stderr)
        return subprocess.CompletedProcess([sys.executable, *argv], returncode, stdout, stderr)

    def close(self):
        self._stop()
        self._folder.cleanup()
