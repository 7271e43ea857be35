"""Process-wide thread pools and ``threadpoolctl`` controller, each made once.

Starting a pool costs thread starts on every call that makes one, and a
``ThreadpoolController`` reads ``/proc/self/maps`` (milliseconds) to find the
BLAS and OpenMP libraries: the hot paths (quantization kernels, code scans, EM
steps, bisections) share these instead.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController

__all__ = ["thread_pool", "threadpool_controller"]

_LOCK = threading.Lock()
_POOLS: dict[str, ThreadPoolExecutor] = {}
_CONTROLLER: ThreadpoolController | None = None


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
