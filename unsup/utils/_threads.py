"""Process-wide thread pools, ``threadpoolctl`` controller and thread limits.

Starting a pool costs thread starts on every call that makes one, and a
``ThreadpoolController`` reads ``/proc/self/maps`` (milliseconds) to find the
BLAS and OpenMP libraries: the hot paths (quantization kernels, code scans, EM
steps, bisections) share these instead.

Two hazards come with process-wide objects, and this module handles both:

- **fork.** A child made by ``os.fork`` (``multiprocessing``'s ``fork`` start
  method, pre-forking servers) inherits the pools' bookkeeping but none of
  their threads: a task submitted there waits forever. The child therefore
  drops every pool, the controller and the lock at fork
  (``os.register_at_fork``) and makes new ones on first use. GNU OpenMP
  (scikit-learn's and torch's kernels) has the same hazard and no remedy: a
  parallel region in the child waits for the parent's threads. So in a child
  made by fork :func:`openmp_n_threads` is 1, and torch's intra-op threads are
  set to 1 (more would hang there, whoever calls torch).
- **concurrency.** ``threadpoolctl``'s limits are process-wide, and two
  threads that each save the current limit, lower it and restore what they
  saved restore each other's values (the last to leave may restore the
  lowered one). :func:`single_threaded` counts its users instead: the first to
  enter saves the limits and lowers them, the last to leave restores them.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

__all__ = ["openmp_n_threads", "single_threaded", "thread_pool", "threadpool_controller"]

_LOCK = threading.Lock()
_POOLS: dict[str, ThreadPoolExecutor] = {}
_CONTROLLER: ThreadpoolController | None = None
# user_api -> [number of callers inside single_threaded, threadpoolctl limiter holding the saved limits]
_LIMITED: dict[str, list] = {}
_FORKED = False  # this process is a child made by fork: its OpenMP runtime has no usable threads


def thread_pool(name: str, n_threads: int) -> ThreadPoolExecutor:
    """The pool called ``name``, with ``n_threads`` workers (a new one when that number changes).

    Each user has its own name: a task of one pool never waits on a task
    queued behind it in the same pool. A replaced pool is not shut down (a
    caller on another thread may still be using it); its threads end once
    it is no longer referenced.
    """
    with _LOCK:
        pool = _POOLS.get(name)
        if pool is None or pool._max_workers != n_threads:
            pool = _POOLS[name] = ThreadPoolExecutor(n_threads, thread_name_prefix=f"unsup-{name}")
        return pool


def threadpool_controller() -> ThreadpoolController:
    """The process's ``ThreadpoolController``, made on first use."""
    global _CONTROLLER
    with _LOCK:
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
        return _CONTROLLER


def openmp_n_threads() -> int:
    """Threads for an OpenMP kernel: scikit-learn's count (usable cores, or
    ``OMP_NUM_THREADS``), or 1 in a child made by fork."""
    if _FORKED:
        return 1
    from unsup._sklearn_adapter import effective_n_threads

    return effective_n_threads()


@contextlib.contextmanager
def single_threaded(user_api: str = "blas"):
    """Limit the ``user_api`` libraries ("blas" or "openmp") to one thread inside the block.

    Safe under concurrency and nesting: the limits are saved by the first
    caller in and restored by the last one out, so the process leaves the
    block with the limits it had before any caller entered. Libraries that
    other threads use meanwhile run single-threaded too (the limits are
    process-wide, as with ``threadpoolctl.threadpool_limits``).
    """
    controller = threadpool_controller()
    with _LOCK:
        entry = _LIMITED.setdefault(user_api, [0, None])
        if entry[0] == 0:
            entry[1] = controller.limit(limits=1, user_api=user_api)
        entry[0] += 1
    try:
        yield
    finally:
        with _LOCK:
            entry = _LIMITED[user_api]
            entry[0] -= 1
            if entry[0] == 0:
                limiter, entry[1] = entry[1], None
                limiter.restore_original_limits()


def _after_fork_in_child() -> None:
    """Forget the parent's pools, controller and lock: their threads did not come along."""
    global _LOCK, _POOLS, _CONTROLLER, _LIMITED, _FORKED
    limited = _LIMITED
    _FORKED = True
    _LOCK = threading.Lock()
    _POOLS = {}
    _CONTROLLER = None
    _LIMITED = {}
    # A parent thread was inside single_threaded at the fork: no thread of
    # the child will leave that block, so the child restores the limits now.
    for _, limiter in limited.values():
        if limiter is not None:
            limiter.restore_original_limits()
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() > 1:
        torch.set_num_threads(1)


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
