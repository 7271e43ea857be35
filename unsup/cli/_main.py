""":func:`main`: parse, resolve the settings, run the command, turn errors into exit statuses.

Exit statuses: 0 on success; 2 for a problem with the user's input
(:class:`~unsup.cli.InputError`, one line on stderr; out of memory, which the
size of the input causes, the same way); 130 on Ctrl-C. Any other exception
is a bug and propagates with its traceback (the console script exits 1).
``--debug`` prints the traceback of an input error too.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings

from unsup.cli._parser import EXIT_USAGE, build_parser, resolve
from unsup.cli._report import PROG, InputError, Reporter, one_line

__all__ = ["main"]

#: command -> (module, function) that runs it; imported only when the command runs.
COMMANDS = {
    "demo": ("unsup.cli.demo", "run"),
    "cluster": ("unsup.cli.cluster", "run"),
    "detect": ("unsup.cli.detect", "run"),
    "compress": ("unsup.cli.compress", "run"),
    "apply": ("unsup.cli._models", "run_apply"),
    "export": ("unsup.cli._models", "run_export"),
}


def _runner(settings):
    """The command's function: the Dask one for several files, a glob or ``--scheduler``."""
    module, name = ("unsup.cli._dask", "run") if settings.dask else COMMANDS[settings.command]
    return getattr(importlib.import_module(module), name)


#: Words of the engines' MemoryError messages that already give the way out.
_ENGINE_REMEDIES = ("Use ", "pip install", "memory_budget")


def _is_torch_oom(exc: BaseException) -> bool:
    """Whether a RuntimeError is torch failing to allocate memory (its CPU allocator raises RuntimeError)."""
    text = str(exc)
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


def _memory_message(settings, exc: BaseException) -> str:
    """The one line of an out-of-memory error: the data, and the engine's own message when it has one.

    The engines' messages (AgglomerativeClustering, DivisiveClustering) say
    what was needed and the way out; numpy's say how much it tried to allocate.
    """
    where = getattr(settings, "data", None)
    if isinstance(where, (list, tuple)) and where:  # the files (or globs) of one dask array, named as run() names them
        from unsup.cli._dask import data_label, expand_paths

        try:
            where = data_label(expand_paths(where))
        except InputError:  # a pattern matched nothing (since): name them as given
            where = " ".join(where)
    prefix = f"{where}: " if isinstance(where, str) else ""
    advice = "the data or the model is too large for this machine; try fewer rows, a smaller model or a float32 .npy"
    text = one_line(exc)
    if not text:
        return f"{prefix}out of memory ({advice})"
    if isinstance(exc, MemoryError) and any(way in text for way in _ENGINE_REMEDIES):
        if "method='bisecting'" in text:
            text += " On the command line: --method bisecting."
        return f"{prefix}out of memory: {text}"
    return f"{prefix}out of memory: {text} ({advice})"


def main(argv: list[str] | None = None) -> int:
    """Run the ``unsup`` command line; return the exit status.

    Parameters
    ----------
    argv : list of str, default=None
        The arguments after the program name (``sys.argv[1:]`` when None).

    Returns
    -------
    status : int
        0 on success, 2 on bad input (one line on stderr; with ``--debug``
        the traceback before it). argparse's own exits (``--help``,
        ``--version``, a bad option) raise ``SystemExit`` with 0 or 2, after
        one line on stderr for an error. Any other error is a bug: its
        exception propagates, with its traceback.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from unsup.cli import main
    >>> path = os.path.join(tempfile.mkdtemp(), "points.csv")
    >>> np.savetxt(path, [[0, 0], [0, 1], [10, 10], [10, 11]], delimiter=",", header="x,y", comments="")
    >>> main(["cluster", path, "--n-clusters", "2", "--quiet"])
    kmeans (euclidean): 4 samples -> 2 clusters
    cluster sizes: 2 2
    inertia (euclidean): 1
    silhouette (euclidean): 0.9...
    0
    """
    args = build_parser().parse_args(argv)
    rep = Reporter(args.quiet)
    command = f"{PROG} {args.command}"
    settings = args  # until resolved: what an error message can name

    def fail(message: str) -> int:
        rep._close("failed")
        if args.debug:
            traceback.print_exc(file=sys.stderr)
        print(f"{command}: error: {message}", file=sys.stderr, flush=True)
        return EXIT_USAGE

    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            else:
                warnings.showwarning = rep.warning
            settings = resolve(args)
            _runner(settings)(settings, rep)
    except InputError as exc:
        return fail(str(exc))
    except (MemoryError, RuntimeError) as exc:
        # Out of memory, from numpy, an engine's own check or torch's CPU allocator (a RuntimeError).
        if not isinstance(exc, MemoryError) and not _is_torch_oom(exc):
            raise
        return fail(_memory_message(settings, exc))
    except BrokenPipeError:
        # The reader of stdout went away (| head): not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        rep._close("interrupted")
        print(f"{command}: interrupted", file=sys.stderr, flush=True)
        return 130
    return 0
