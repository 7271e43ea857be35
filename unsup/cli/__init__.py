"""The ``unsup`` command line: ``python -m unsup ...`` and the ``unsup`` console script.

Subcommands::

    unsup demo     [-o OUTDIR]                        the main job on scikit-learn's digits
    unsup cluster  DATA --n-clusters K [--algorithm A] [--metric M [--p P]] [--scale] [-o OUT]
    unsup detect   DATA [--model {ensemble,autoencoder,vae}] [--contamination C] [-o OUT]
    unsup compress DATA [--n-bits {8,4,1}] [--scheme S] [-o OUT]
    unsup apply    MODEL DATA [-o OUT]                a model saved by --save-model MODEL
    unsup export   MODEL -o FILE.onnx                 its ONNX graph (extra unsup[onnx])

Design constraints:

- ``DATA`` is a numeric ``.csv`` (comma-separated; a first row without a
  single number is a header; blank lines are skipped) or a 2-d ``.npy``.
  ``OUT`` is a ``.csv``, ``.npy`` or ``.npz`` file, or ``-`` for CSV on
  stdout. Without ``-o`` a command prints its summary only.
- Streams: results and summaries go to stdout; progress, warnings and errors
  go to stderr. ``--quiet`` silences progress and warnings, never results.
- Bad input (a missing, empty, malformed or non-numeric file, NaN values, an
  option out of range, more clusters than samples, ...) ends with exit
  status 2 and one line on stderr naming the file and the problem
  (:class:`InputError`; ``--debug`` adds its traceback). Every such check
  runs before any work starts (and before any progress line), so the one
  line is the whole of stderr. What an estimator refuses in the user's data
  or options during its fit (scikit-learn's ``ValueError``) is reported the
  same way, after the progress line of that step, and so is running out of
  memory (the engine's own message when it has one).
- Any other error is a bug, not the user's: it propagates with its
  traceback (exit status 1), whatever its type.
- An option given for an algorithm or setting it does not serve
  (``--linkage`` with k-means, ``--observer`` at 1 bit, ...) is bad input
  too: an option is never silently ignored.
- ``--random-state`` defaults to 0: the same command gives the same result.
- matplotlib is imported only to save the demo's plots, drawn on
  ``matplotlib.figure.Figure`` objects (no pyplot, no window, no backend to
  set); without it the demo says so and skips them.

The parts: ``_parser`` (the parser and :func:`resolve`, the settings a
command runs with; the parsed arguments are never changed), ``_io`` (the
files), ``_report`` (printing and :class:`InputError`), a module a command
(``cluster``, ``detect``, ``compress``, ``demo``; ``_models`` for ``apply``
and ``export``; ``_dask`` for several files), ``_progress`` (progress lines),
``_names`` (the choices, without importing the estimators), ``_main``
(:func:`main`).
"""


from unsup.cli._io import check_output, check_writable, load_data, write_output
from unsup.cli._main import main
from unsup.cli._parser import build_parser, resolve
from unsup.cli._report import InputError, Reporter
from unsup.cli.cluster import dominance_hint

__all__ = [
    "InputError",
    "Reporter",
    "build_parser",
    "check_output",
    "check_writable",
    "dominance_hint",
    "load_data",
    "main",
    "resolve",
    "write_output",
]
