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
  :func:`torch_threads` does the same for torch's intra-op thread count, which
  is half process-wide: ``torch.set_num_threads`` sets the calling thread's
  OpenMP count and the count every thread started later begins with. Each
  caller restores its own thread's count; the last to leave restores the
  count that the first found, so threads started afterwards begin with it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

__all__ = [
    "TORCH_WORK_PER_THREAD",
    "openmp_n_threads",
    "single_threaded",
    "thread_pool",
    "threadpool_controller",
    "torch_n_threads",
    "torch_threads",
]

_LOCK = threading.Lock()
_POOLS: dict[str, ThreadPoolExecutor] = {}
_CONTROLLER: ThreadpoolController | None = None
# user_api -> [number of callers inside single_threaded, threadpoolctl limiter holding the saved limits]
_LIMITED: dict[str, list] = {}
_FORKED = False  # this process is a child made by fork: its OpenMP runtime has no usable threads
# [number of callers inside torch_threads, torch's thread count when the first entered, whether one changed it]
_TORCH: list = [0, None, False]

#: Multiply-adds of one forward pass (a batch through a network) that make one
#: more torch intra-op thread worth its synchronisation. Below it, one thread:
#: a small network's matrix products take microseconds, and threads that wait
#: for each other at every operation cost more than they save, many times more
#: when other processes share the cores (a 30-epoch fit of a digits
#: autoencoder: 1.2 s on one thread, 14.9 s on two busy cores).
TORCH_WORK_PER_THREAD = 1 << 28


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


def torch_n_threads(n_jobs, work: float) -> int:
    """torch intra-op threads for ``n_jobs`` and a step of ``work`` multiply-adds.

    ``n_jobs=None`` chooses: one thread per ``TORCH_WORK_PER_THREAD`` of
    work, at least 1 and at most torch's current count (which follows
    ``torch.set_num_threads`` and ``OMP_NUM_THREADS``). A positive ``n_jobs``
    is the count; a negative one counts from the usable cores as joblib's
    (``-1``: all of them, ``-2``: all but one). 1 in a child made by fork
    (GNU OpenMP threads there wait forever).
    """
    if _FORKED:
        return 1
    if n_jobs is None:
        import torch

        return int(max(1, min(torch.get_num_threads(), work // TORCH_WORK_PER_THREAD)))
    if n_jobs < 0:
        from joblib import cpu_count

        return max(1, cpu_count() + 1 + int(n_jobs))
    return int(n_jobs)


@contextlib.contextmanager
def torch_threads(n_threads: int):
    """Run the block with ``n_threads`` torch intra-op threads in this thread, then restore.

    Safe under concurrency, nesting and exceptions: this thread gets back the
    count it had, and when the last caller leaves, torch's process-wide
    count (the one threads started later begin with) is the one the first
    caller found. Nothing is set when the count is already ``n_threads``.
    """
    import torch

    with _LOCK:
        if _TORCH[0] == 0:
            _TORCH[1], _TORCH[2] = torch.get_num_threads(), False
        _TORCH[0] += 1
        own = torch.get_num_threads()
        if own != n_threads:
            torch.set_num_threads(n_threads)
            _TORCH[2] = True
    try:
        yield
    finally:
        with _LOCK:
            _TORCH[0] = max(0, _TORCH[0] - 1)  # (a fork inside the block reset the count in the child)
            if _TORCH[0] == 0:
                if _TORCH[2] or torch.get_num_threads() != _TORCH[1]:
                    torch.set_num_threads(_TORCH[1])
            elif torch.get_num_threads() != own:
                torch.set_num_threads(own)


def _after_fork_in_child() -> None:
    """Forget the parent's pools, controller and lock: their threads did not come along."""
    global _LOCK, _POOLS, _CONTROLLER, _LIMITED, _FORKED, _TORCH
    limited = _LIMITED
    _TORCH = [0, None, False]
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
