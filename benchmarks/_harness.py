"""Side-by-side timing: run unsup and its anchor in one process, interleaved.

Machines are noisy, so every figure is a median over rounds in which the
contenders take turns (the order rotates each round, so neither always runs on
a warm or a cold cache). Scripts print ratios ``unsup / anchor``: below 1 means
unsup is faster. Tests never assert timings; these scripts are run by hand and
their output goes into the notes.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
import tracemalloc
from typing import Callable


def interleaved(fns: dict[str, Callable[[], object]], *, rounds: int = 7, warmup: int = 1):
    """Time each callable ``rounds`` times, taking turns; return ``{name: [seconds, ...]}``.

    Each call may return a number of units (e.g. iterations) to divide its time by;
    anything else counts as one unit.
    """
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            gc.collect()
            t0 = time.perf_counter()
            units = fns[name]()
            elapsed = time.perf_counter() - t0
            if isinstance(units, (int, float)) and not isinstance(units, bool) and units > 0:
                elapsed /= units
            times[name].append(elapsed)
    return times


def report(title: str, times: dict[str, list[float]], anchor: str, *, unit: str = "ms") -> dict[str, float]:
    """Print median times and each contender's median ratio to ``anchor``; return the ratios."""
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    base = statistics.median(times[anchor])
    print(f"\n{title}")
    ratios = {}
    for name, ts in times.items():
        med = statistics.median(ts)
        ratios[name] = med / base
        tag = "(anchor)" if name == anchor else f"ratio {ratios[name]:.2f}x"
        print(f"  {name:<40s} median {med * scale:10.2f} {unit}  {tag}")
    return ratios


def peak_memory(fn: Callable[[], object]) -> int:
    """Peak bytes traced (numpy and Python allocations) while ``fn`` runs."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def parser(description: str) -> argparse.ArgumentParser:
    """Common command line: ``--rounds`` and ``--quick`` (smaller data, for a smoke run)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per contender")
    p.add_argument("--quick", action="store_true", help="small data: check the script runs")
    return p
