"""Progress of long work on the command line (stderr; ``--quiet`` shows none).

Kept apart from :mod:`unsup.cli`, whose commands wrap their long steps in
these context managers:

- :func:`epochs`: every epoch of a neural fit inside the block (``unsup
  detect``, the demo's autoencoder) arrives through
  :func:`unsup.neural._training.listen_to_epochs`. On a terminal
  (``sys.stderr.isatty()``) one line is redrawn in place,
  ``[########------------] epoch 80/200, loss 0.4123, ETA 2.1 s``; otherwise
  (a log file, a pipe) plain lines, about ten a fit, in the format of the
  estimators' ``verbose`` lines.
- :func:`engine_lines`: the clustering estimators' own ``verbose`` lines
  (the iterations of k-medoids, the engine and time of a large linkage, the
  splits of a large divisive tree) on stderr, where stdout keeps the results.

The ETA is the time to the last allowed epoch at the mean epoch time so far:
an upper bound when early stopping ends the fit sooner.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time

__all__ = ["LARGE", "MEDOID_METRICS", "engine_lines", "epochs"]

#: Rows from which hierarchical clustering shows its engine lines (the linkage takes seconds).
LARGE = 10_000
#: Metrics whose k-means is k-medoids (no closed-form centre): slow enough to show its iterations.
MEDOID_METRICS = ("chebyshev", "minkowski")
#: Width of the bar, in characters.
_BAR = 20
#: Least seconds between two redraws of the bar.
_REDRAW = 0.1


class _EpochLines:
    """The listener of one block: the bar on a terminal, plain lines elsewhere."""

    def __init__(self, rep, stream):
        self.rep, self.stream = rep, stream
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.drawn = 0  # characters of the bar line now on the terminal (0: none)
        self.last = -math.inf

    def __call__(self, info: dict) -> None:
        from unsup.neural._training import EpochProgress

        self.rep._close()  # the step's "training ... " line ends before the first epoch line
        epoch, total = info["epoch"], info["total"]
        if self.tty:
            now = time.perf_counter()
            if now - self.last < _REDRAW and epoch != total:
                return
            self.last = now
            done = int(_BAR * epoch / total)
            text = f"  [{'#' * done}{'-' * (_BAR - done)}] epoch {epoch}/{total}, loss {info['loss']:.4g}"
            if info["eta"] is not None:
                text += f", ETA {info['eta']:.1f} s"
            self.stream.write("\r" + text + " " * max(0, self.drawn - len(text)))
            self.stream.flush()
            self.drawn = len(text)
        else:
            every = max(1, math.ceil(total / 10))
            if epoch == 1 or epoch % every == 0 or epoch == total:
                print("  " + EpochProgress.format(info), file=self.stream, flush=True)

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = 0


@contextlib.contextmanager
def epochs(rep):
    """Show the training epochs run inside the block on stderr (nothing when ``rep`` is quiet)."""
    if rep.quiet:
        yield
        return
    from unsup.neural._training import listen_to_epochs

    lines = _EpochLines(rep, sys.stderr)
    try:
        with listen_to_epochs(lines):
            yield
    finally:
        lines.finish()


@contextlib.contextmanager
def engine_lines(rep, model, n_samples: int):
    """The ``verbose`` lines of a slow clustering fit inside the block, on stderr.

    Slow means k-medoids (KMeans with a metric of ``MEDOID_METRICS``) or a
    hierarchical clustering of at least ``LARGE`` rows; other fits take a
    fraction of a second and show only the step's start and end.
    """
    name = type(model).__name__
    metric = getattr(model, "metric", None)
    slow = (name == "KMeans" and metric in MEDOID_METRICS) or (
        name in ("AgglomerativeClustering", "DivisiveClustering") and n_samples >= LARGE
    )
    if rep.quiet or not slow or not hasattr(model, "verbose"):
        yield
        return
    rep._close()
    model.set_params(verbose=1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        model.set_params(verbose=0)
