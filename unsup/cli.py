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
  status 2 and one line on stderr naming the file and the problem, never a
  traceback. Every such check runs before any work starts (and before any
  progress line), so the one line is the whole of stderr. What an estimator
  refuses during its fit (scikit-learn's ``ValueError``) is reported the same
  way, after the progress line of that step, and so is running out of
  memory (the engine's own message when it has one).
- An option given for an algorithm or setting it does not serve
  (``--linkage`` with k-means, ``--observer`` at 1 bit, ...) is bad input
  too: an option is never silently ignored (:func:`check_options`).
- ``--random-state`` defaults to 0: the same command gives the same result.
- matplotlib is imported only to save the demo's plots, drawn on
  ``matplotlib.figure.Figure`` objects (no pyplot, no window, no backend to
  set); without it the demo says so and skips them.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import sys
import time
import warnings

import numpy as np

from unsup import _cli_models, _cli_progress

__all__ = ["main"]

PROG = "unsup"
EXIT_USAGE = 2
DATA_EXTENSIONS = (".csv", ".npy")
OUTPUT_EXTENSIONS = (".csv", ".npy", ".npz")
ALGORITHMS = ("kmeans", "agglomerative", "divisive", "gmm")
LINKAGES = ("ward", "complete", "average", "single", "weighted", "centroid", "median")
EUCLIDEAN_LINKAGES = ("ward", "centroid", "median")
DEMO_OUTPUT = "unsup-demo-output"


class InputError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


# --------------------------------------------------------------------- parser


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (usage goes to ``--help``)."""

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32 - 1], got {text!r}") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"expected an integer in [0, 2**32 - 1], got {text!r}")
    return value


def _contamination(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 0.5], got {text!r}") from None
    if not 0.0 < value <= 0.5:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number in (0, 0.5], got {text!r}")
    return value


def _minkowski_p(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def _version():
    from unsup import __version__

    return __version__


def build_parser() -> argparse.ArgumentParser:
    """The ``unsup`` argument parser (one subparser per command)."""
    # not the registries: --help imports no estimator
    from unsup._cli_names import METRIC_NAMES, OBSERVER_NAMES

    common = _Parser(add_help=False)
    common.add_argument(
        "-q", "--quiet", action="store_true", help="no progress or warnings on stderr (results are still printed)"
    )
    common.add_argument(
        "--random-state",
        type=_seed,
        default=0,
        metavar="N",
        help="seed of every random choice (default 0: the same command gives the same result)",
    )

    parser = _Parser(
        prog=PROG,
        description="Unsupervised learning from the command line: cluster, detect anomalies, compress.",
        epilog="Run 'unsup COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="the main job on scikit-learn's digits: autoencoder, int8 codes, clustering, anomalies",
        description=(
            "Train an autoencoder on scikit-learn's bundled digits, compress its latent codes, cluster "
            "them five ways, flag anomalies, print a report and save plots (when matplotlib is installed)."
        ),
    )
    demo.add_argument(
        "-o", "--output", default=DEMO_OUTPUT, metavar="OUTDIR", help=f"folder for the plots (default ./{DEMO_OUTPUT})"
    )
    demo.set_defaults(run=_run_demo)

    data_help = (
        "a numeric .csv (header optional) or a 2-d .npy file; several .npy files or a glob "
        "('parts/*.npy') are read as one dask array, a block per file"
    )
    scaling = _Parser(add_help=False)
    scaling.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        default=None,
        help="run on the Dask cluster at ADDRESS (e.g. tcp://10.0.0.1:8786); several files without it "
        "start a local cluster of 2 workers",
    )

    cluster = sub.add_parser(
        "cluster",
        parents=[common, scaling],
        help="cluster the rows of DATA",
        description="Cluster the rows of DATA and write one label per row.",
        epilog=(
            "An option that does not apply to the chosen algorithm (--linkage without agglomerative, "
            "--method without divisive, --covariance-type without gmm, --p without --metric minkowski) "
            "is an error (exit status 2), never silently ignored. "
            "OUT: .csv has a 'label' column; .npy holds the labels (int64); .npz holds 'labels', "
            "'cluster_centers' (kmeans, divisive; the means for gmm; in standardised units with --scale, "
            "with 'scale_mean' and 'scale_std' to map them back) and 'probabilities' (gmm). "
            "Without -o only the summary is printed."
        ),
    )
    cluster.add_argument("data", metavar="DATA", nargs="+", help=data_help)
    cluster.add_argument(
        "-a", "--algorithm", choices=ALGORITHMS, default="kmeans", help="the clustering model (default kmeans)"
    )
    cluster.add_argument(
        "-k", "--n-clusters", type=_positive_int, required=True, metavar="K", help="number of clusters"
    )
    cluster.add_argument(
        "--metric",
        choices=METRIC_NAMES,
        default="euclidean",
        metavar="M",
        help=f"distance: {', '.join(METRIC_NAMES)} (default euclidean; gmm uses it in its k-means initialisation)",
    )
    cluster.add_argument(
        "--p",
        type=_minkowski_p,
        default=None,
        metavar="P",
        help="the exponent p of --metric minkowski, > 0 (default 2; 1 is manhattan, inf is chebyshev)",
    )
    cluster.add_argument(
        "--scale",
        action="store_true",
        help="standardise every feature (zero mean, unit variance; scikit-learn's StandardScaler) before "
        "clustering: use it when the features are in different units or on very different scales, which "
        "otherwise let the widest feature decide every distance",
    )
    cluster.add_argument(
        "--linkage",
        choices=LINKAGES,
        default=None,
        help="agglomerative only (default ward with the euclidean metric, average otherwise)",
    )
    cluster.add_argument(
        "--method", choices=("bisecting", "diana"), default=None, help="divisive only (default bisecting)"
    )
    cluster.add_argument(
        "--covariance-type",
        choices=("full", "tied", "diag", "spherical"),
        default=None,
        help="gmm only (default full)",
    )
    cluster.add_argument(
        "-o", "--output", metavar="OUT", help="write the labels to OUT (.csv, .npy, .npz, or - for stdout)"
    )
    cluster.set_defaults(run=_run_cluster)

    detect = sub.add_parser(
        "detect",
        parents=[common, scaling],
        help="flag anomalous rows of DATA with an autoencoder",
        description=(
            "Train an autoencoder on DATA and flag the rows it reconstructs worst: the 'contamination' "
            "fraction of the rows with the highest anomaly scores. Every model standardises the features "
            "itself (zero mean, unit variance, learnt on DATA), so features in different units need no "
            "scaling first."
        ),
        epilog=(
            "The score is minus score_samples: the members' mean standardised reconstruction error "
            "(ensemble), the reconstruction error (autoencoder) or the negative ELBO (vae), higher is "
            "more anomalous. OUT: .csv has 'score' and 'outlier' (1 flagged, 0 not) "
            "columns; .npy a (n, 2) float array of both; .npz 'score', 'outlier' and 'threshold'."
        ),
    )
    detect.add_argument("data", metavar="DATA", nargs="+", help=data_help)
    detect.add_argument(
        "--model",
        choices=("ensemble", "autoencoder", "vae"),
        default="ensemble",
        help="an AutoencoderEnsemble (its defaults), or an Autoencoder or a VariationalAutoencoder with "
        "hidden layers 64 and 32, standardised inputs and a trimmed loss (default ensemble, the "
        "recommended detector)",
    )
    detect.add_argument(
        "--contamination",
        type=_contamination,
        default=0.1,
        metavar="C",
        help="expected fraction of anomalies, in (0, 0.5] (default 0.1)",
    )
    detect.add_argument(
        "--n-components",
        type=_positive_int,
        default=None,
        metavar="K",
        help="width of the code (default: 1 per member for the ensemble; half the features, at most 8, otherwise)",
    )
    detect.add_argument(
        "--max-epochs",
        type=_positive_int,
        default=None,
        metavar="N",
        help="training epochs (at most, with early stopping) (default 10 for the ensemble, 200 otherwise)",
    )
    detect.add_argument("-o", "--output", metavar="OUT", help="write scores and flags to OUT (.csv, .npy, .npz, or -)")
    detect.set_defaults(run=_run_detect)

    compress = sub.add_parser(
        "compress",
        parents=[common, scaling],
        help="compress the rows of DATA to 8-, 4- or 1-bit codes",
        description=(
            "Quantize the rows of DATA (vectors, embeddings) to integer codes and report the error. "
            "With --granularity per_channel (the default) every feature gets its own range, so features "
            "on different scales need no scaling first (the codes then decode to the original units)."
        ),
        epilog=(
            "OUT: .csv has one integer code per feature (the input's header, if any); .npy holds the codes "
            "as stored (4-bit codes two a byte, 1-bit codes eight a byte); .npz holds those 'codes' with "
            "'n_bits', 'scheme', 'n_features' and what decodes them: 'scale' and 'zero_point' "
            "(x = scale * (code - zero_point)), or at 1 bit 'threshold' and 'levels'."
        ),
    )
    compress.add_argument("data", metavar="DATA", nargs="+", help=data_help)
    compress.add_argument("--n-bits", type=int, choices=(8, 4, 1), default=8, help="bits per value (default 8)")
    compress.add_argument(
        "--scheme",
        choices=("asymmetric", "symmetric"),
        default="asymmetric",
        help="asymmetric (affine, a zero point) or symmetric (zero point 0) (default asymmetric)",
    )
    compress.add_argument(
        "--granularity",
        choices=("per_channel", "per_tensor"),
        default="per_channel",
        help="one range per feature or one for all (default per_channel)",
    )
    compress.add_argument(
        "--observer",
        choices=OBSERVER_NAMES,
        default=None,
        help="how the 8- and 4-bit ranges are chosen (default minmax; an error with --n-bits 1, whose "
        "codes are sign bits around a threshold)",
    )
    compress.add_argument("-o", "--output", metavar="OUT", help="write the codes to OUT (.csv, .npy, .npz, or -)")
    compress.set_defaults(run=_run_compress)
    _cli_models.add_model_commands(sub, common, data_help, (cluster, detect, compress))
    return parser


# ---------------------------------------------------------------- reporting


class Reporter:
    """Progress and warnings on stderr (unless quiet); results on stdout."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self._open = False  # a progress line is waiting for its end

    def out(self, text: str = "") -> None:
        print(text, file=sys.stdout, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._close()
            print(text, file=sys.stderr, flush=True)

    def _close(self, end: str = "") -> None:
        if self._open:
            sys.stderr.write(end + "\n")
            sys.stderr.flush()
            self._open = False

    @contextlib.contextmanager
    def step(self, text: str):
        """``text ...`` on stderr, completed with the seconds taken; yields a dict for a note."""
        note = {"text": ""}
        if not self.quiet:
            self._close()
            sys.stderr.write(f"{text} ... ")
            sys.stderr.flush()
            self._open = True
        t0 = time.perf_counter()
        try:
            yield note
        except BaseException:
            if not self.quiet:
                self._close("failed")
            raise
        if not self.quiet:
            extra = f", {note['text']}" if note["text"] else ""
            if self._open:
                self._close(f"{time.perf_counter() - t0:.2f} s{extra}")
            else:
                print(f"  ... {text}: {time.perf_counter() - t0:.2f} s{extra}", file=sys.stderr, flush=True)

    def warning(self, message, category, filename, lineno, file=None, line=None):
        """``warnings.showwarning`` replacement: one line."""
        self._close()
        text = " ".join(str(message).split())
        print(f"{PROG}: warning: {category.__name__}: {text}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------- input


def _check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected a .csv or .npy file")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: permission denied")


def load_data(path: str) -> tuple[np.ndarray, list[str] | None]:
    r"""Read ``DATA``: a float64 array of shape (n_samples, n_features), and the CSV header if any.

    Raises
    ------
    InputError
        With a one-line message naming the file and the problem.

    Examples
    --------
    >>> import os, tempfile
    >>> from unsup.cli import load_data
    >>> path = os.path.join(tempfile.mkdtemp(), "points.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("x,y\n1,2\n\n3,4.5\n")
    >>> X, header = load_data(path)
    >>> header, X
    (['x', 'y'], array([[1. , 2. ],
           [3. , 4.5]]))
    >>> with open(path, "w") as f:
    ...     _ = f.write("1,2\n3\n")
    >>> load_data(path)
    Traceback (most recent call last):
    ...
    unsup.cli.InputError: ...points.csv: malformed CSV: line 2 has 1 fields, expected 2 as on line 1
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in DATA_EXTENSIONS:
        raise InputError(f"{path}: unsupported file type {ext or '(no extension)'!r}, expected a .csv or .npy file")
    _check_readable(path)
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file")
    if ext == ".npy":
        return _load_npy(path), None
    return _load_csv(path)


def _load_npy(path: str) -> np.ndarray:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise InputError(f"{path}: is an .npz archive, expected a single .npy array")
    if magic != b"\x93NUMPY":
        raise InputError(f"{path}: not a valid .npy file (no .npy header)")
    _check_npy_size(path)
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError(f"{path}: holds Python objects, not numbers") from None
        raise InputError(f"{path}: not a valid .npy file ({' '.join(str(exc).split())})") from None
    except (OSError, EOFError) as exc:
        raise InputError(
            f"{path}: not a valid .npy file ({' '.join(str(exc).split()) or type(exc).__name__})"
        ) from None
    if X.dtype.kind == "c":
        raise InputError(f"{path}: complex values, expected real numbers")
    if X.dtype.kind not in "biuf":
        raise InputError(f"{path}: non-numeric values (dtype {X.dtype}), expected numbers")
    if X.ndim != 2:
        raise InputError(f"{path}: expected a 2-d array (n_samples, n_features), got shape {X.shape}")
    _check_shape(path, X.shape)
    X = X.astype(np.float64, copy=False)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"{path}: {_kind_of(X[i, j])} at row {i}, column {j} (0-based)")
    return X


def _check_npy_size(path: str) -> None:
    """Compare the shape and dtype in a .npy header with the bytes that follow it.

    ``np.load`` allocates what the header claims before reading: a 1 KB file
    claiming (1e9, 16) would ask for 119 GiB. An object array (no fixed size)
    is left to ``np.load``, which refuses it.
    """
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a valid .npy file ({' '.join(str(exc).split()) or type(exc).__name__})") from None
    if dtype.hasobject:
        return
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = os.path.getsize(path) - offset
    if claimed > held:
        raise InputError(
            f"{path}: truncated or corrupt .npy file: its header claims shape {tuple(shape)} of {dtype} "
            f"({claimed:,} bytes) but the file holds {held:,} bytes of data"
        )


def _kind_of(value: float) -> str:
    return "NaN value" if np.isnan(value) else "infinite value"


def _check_shape(path, shape):
    if shape[0] == 0:
        raise InputError(f"{path}: no data rows")
    if shape[1] == 0:
        raise InputError(f"{path}: no columns")


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _first_row(path: str) -> tuple[list[str] | None, int]:
    """The first non-blank row if it is a header (no cell is a number), and its line number (0: none)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if any(cell.strip() for cell in row):
                if any(_is_number(c) for c in row):
                    return None, 0
                return [c.strip() for c in row], reader.line_num
    return None, 0


def _load_csv(path: str) -> tuple[np.ndarray, list[str] | None]:
    """numpy's C parser when the file is clean; else the checked reader, which names the problem."""
    try:
        header, header_line = _first_row(path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": the checked reader says it better
            X = np.loadtxt(
                path, delimiter=",", comments=None, skiprows=header_line, ndmin=2, encoding="utf-8-sig", quotechar='"'
            )
    except (ValueError, UnicodeDecodeError, csv.Error):
        return _load_csv_checked(path)
    if X.size == 0 or not np.all(np.isfinite(X)):
        return _load_csv_checked(path)
    return X, header


def _load_csv_checked(path: str) -> tuple[np.ndarray, list[str] | None]:
    """Read a CSV row by row with Python's csv module; raise an InputError naming the first problem."""
    rows, lines = [], []
    header, width, width_line = None, None, None
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue  # a blank line
                if width is None:
                    width, width_line = len(row), reader.line_num
                    if not any(_is_number(c) for c in row):
                        header = [c.strip() for c in row]
                        continue
                if len(row) != width:
                    raise InputError(
                        f"{path}: malformed CSV: line {reader.line_num} has {len(row)} fields, "
                        f"expected {width} as on line {width_line}"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text CSV file (cannot decode it as UTF-8)") from None
    except csv.Error as exc:
        raise InputError(f"{path}: malformed CSV ({' '.join(str(exc).split())})") from None
    if not rows:
        raise InputError(f"{path}: no data rows" + (" (only a header)" if header is not None else ""))
    try:
        X = np.array(rows, dtype=np.float64)
    except ValueError:
        for row, line in zip(rows, lines, strict=True):
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    what = "empty field" if not cell.strip() else f"non-numeric value {cell.strip()!r}"
                    hint = " (fields must be separated by commas)" if ";" in cell or "\t" in cell else ""
                    raise InputError(f"{path}: {what} at line {line}, column {j + 1}{hint}") from None
        raise InputError(f"{path}: non-numeric values") from None  # pragma: no cover - numpy and float() agree
    _check_shape(path, X.shape)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"{path}: {_kind_of(X[i, j])} at line {lines[i]}, column {j + 1}")
    return X, header


# -------------------------------------------------------------------- output


def check_output(path: str | None) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if path is None or path == "-":
        return
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_EXTENSIONS:
        raise InputError(
            f"{path}: unsupported output type {ext or '(no extension)'!r}, "
            "expected .csv, .npy or .npz (or - for stdout)"
        )
    check_writable(path, "an output file name")


def check_writable(path: str, expected: str) -> None:
    """Refuse a file path whose folder is missing or read-only, or that names a folder."""
    if os.path.isdir(path):
        raise InputError(f"{path}: is a directory, expected {expected}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise InputError(f"{path}: cannot write: folder {os.path.dirname(path)!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{path}: cannot write: permission denied")


def write_output(
    path: str,
    *,
    csv_columns: dict[str, np.ndarray],
    npy: np.ndarray,
    npz: dict[str, np.ndarray],
    names: list[str] | None = None,
) -> None:
    """Write results to ``path`` (``-``: the CSV to stdout) in the format its extension names.

    A CSV gets ``csv_columns`` under a header row: ``names`` when given (one
    per column of a single 2-d column; ``[]`` for none), else the column names.
    """
    if path == "-":
        _write_csv(sys.stdout, csv_columns, names)
        sys.stdout.flush()
        return
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".csv":
            with open(path, "w", newline="") as f:
                _write_csv(f, csv_columns, names)
        elif ext == ".npy":
            np.save(path, npy)
        else:
            np.savez(path, **npz)
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _write_csv(f, columns, names):
    arrays = [np.asarray(a) for a in columns.values()]
    if len(arrays) == 1 and arrays[0].ndim == 2:  # a matrix: the codes
        table, header = arrays[0], names
        fmt = "%d"
    else:
        table = np.column_stack(arrays)
        header = list(columns) if names is None else names
        fmt = ["%d" if a.dtype.kind in "biu" else "%.9g" for a in arrays]
    if header:  # quoted where a name holds a comma, a quote or a line break
        csv.writer(f, lineterminator="\n").writerow(header)
    np.savetxt(f, table, fmt=fmt, delimiter=",")


# ----------------------------------------------------------------- commands


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _shape(X) -> str:
    return f"{_count(X.shape[0], 'sample')} x {_count(X.shape[1], 'feature')}"


def _check_n_samples(path, X, needed, what):
    if X.shape[0] < needed:
        raise InputError(f"{path}: {what} needs at least {needed} samples, got {X.shape[0]}")


#: Options that serve one algorithm (cluster) or some settings (compress): (option, attribute, applies, where, default).
_SPECIFIC_OPTIONS = {
    "cluster": (
        ("--linkage", "linkage", lambda a: a.algorithm == "agglomerative", "--algorithm agglomerative", None),
        ("--method", "method", lambda a: a.algorithm == "divisive", "--algorithm divisive", "bisecting"),
        ("--covariance-type", "covariance_type", lambda a: a.algorithm == "gmm", "--algorithm gmm", "full"),
        ("--p", "p", lambda a: a.metric == "minkowski", "--metric minkowski", None),
    ),
    "compress": (("--observer", "observer", lambda a: a.n_bits != 1, "--n-bits 8 or 4", "minmax"),),
}


def check_options(args) -> None:
    """Refuse an option given for an algorithm or setting it does not apply to; fill in the defaults.

    An option applies or it is an error (``InputError``: one line, exit 2),
    the same for every such option: a silently ignored option hides a
    mistake. "Given" means given on the command line: these options default
    to None in the parser.
    """
    for option, attr, applies, where, default in _SPECIFIC_OPTIONS.get(args.command, ()):
        if not hasattr(args, attr):
            continue
        value = getattr(args, attr)
        if value is not None and not applies(args):
            if attr == "p":
                got = f"--metric {args.metric}"
            else:
                got = f"--algorithm {args.algorithm}" if args.command == "cluster" else f"--n-bits {args.n_bits}"
            raise InputError(f"{option} applies to {where} only, got {got} (leave {option} out)")
        if value is None:
            setattr(args, attr, default)
    if args.command == "cluster" and args.linkage is None:
        args.linkage = "ward" if args.metric in ("euclidean", "l2") else "average"


def _metric_params(args):
    return {"p": args.p} if getattr(args, "p", None) is not None else None


def _clusterer(args):
    """The estimator of ``unsup cluster`` (parameters checked against the data by the caller)."""
    from unsup.cluster import AgglomerativeClustering, DivisiveClustering, KMeans
    from unsup.mixture import GaussianMixture

    rs, mp = args.random_state, _metric_params(args)
    if args.algorithm == "kmeans":
        return KMeans(n_clusters=args.n_clusters, metric=args.metric, metric_params=mp, random_state=rs)
    if args.algorithm == "agglomerative":
        return AgglomerativeClustering(
            n_clusters=args.n_clusters, metric=args.metric, metric_params=mp, linkage=args.linkage
        )
    if args.algorithm == "divisive":
        return DivisiveClustering(
            n_clusters=args.n_clusters, method=args.method, metric=args.metric, metric_params=mp, random_state=rs
        )
    return GaussianMixture(
        n_components=args.n_clusters,
        covariance_type=args.covariance_type,
        metric=args.metric,
        metric_params=mp,
        random_state=rs,
    )


def _metric_name(args):
    return f"minkowski p={args.p:g}" if getattr(args, "p", None) is not None else args.metric


def _describe(args):
    metric = _metric_name(args)
    scaled = ", standardised" if getattr(args, "scale", False) else ""
    if args.algorithm == "agglomerative":
        return f"agglomerative ({args.linkage} linkage, {metric}{scaled})"
    if args.algorithm == "divisive":
        return f"divisive ({args.method}, {metric}{scaled})"
    if args.algorithm == "gmm":
        return f"gmm ({args.covariance_type} covariance, {metric} k-means init{scaled})"
    return f"kmeans ({metric}{scaled})"


#: A cluster holding at least this fraction of the rows (with k >= 2) gets a hint in the report.
DOMINANT_FRACTION = 0.9


def dominance_hint(sizes, scaled: bool) -> str | None:
    """A line for the report when one cluster holds almost every row (None otherwise).

    Unscaled features are the usual cause: the feature with the widest range
    decides every distance and a few extreme rows take the other clusters.
    """
    sizes = np.asarray(sizes)
    n = int(sizes.sum())
    if len(sizes) < 2 or n == 0 or sizes.max() < DOMINANT_FRACTION * n:
        return None
    share = f"hint: one cluster holds {100 * sizes.max() / n:.1f} % of the rows"
    if scaled:
        return f"{share}, even on standardised features: the other clusters may be outliers (try unsup detect)"
    return (
        f"{share}: features on very different scales let the widest one decide every distance; "
        "try --scale to standardise them first"
    )


def _silhouette(X, labels, metric, random_state, metric_params=None):
    """Silhouette on at most 2000 rows, with unsup's metric; None when undefined."""
    from sklearn.metrics import silhouette_score

    from unsup.metrics import pairwise_distances

    n_labels = len(np.unique(labels))
    if not 2 <= n_labels <= X.shape[0] - 1:
        return None
    rng = np.random.default_rng(random_state)
    idx = np.sort(rng.choice(X.shape[0], size=2000, replace=False)) if X.shape[0] > 2000 else np.arange(X.shape[0])
    if len(np.unique(labels[idx])) < 2 or len(np.unique(labels[idx])) > len(idx) - 1:
        return None
    D = pairwise_distances(X[idx], metric=metric, **(metric_params or {}))
    np.fill_diagonal(D, 0.0)
    return float(silhouette_score(D, labels[idx], metric="precomputed"))


def _run_cluster(args, rep: Reporter) -> None:
    check_output(args.output)
    _cli_models.check_save_path(args)
    X, _ = load_data(args.data)
    if args.n_clusters > X.shape[0]:
        raise InputError(
            f"{args.data}: --n-clusters {args.n_clusters} is larger than the number of samples ({X.shape[0]})"
        )
    if (
        args.algorithm == "agglomerative"
        and args.linkage in EUCLIDEAN_LINKAGES
        and args.metric not in ("euclidean", "l2")
    ):
        raise InputError(
            f"--linkage {args.linkage} needs the euclidean metric, got --metric {args.metric} "
            f"(use --linkage average, complete or single)"
        )
    if args.algorithm == "gmm":
        _check_n_samples(args.data, X, 2, "gmm")
    model = _clusterer(args)
    rep.info(f"{args.data}: {_shape(X)}")
    scaler = None
    if args.scale:
        from sklearn.preprocessing import StandardScaler

        scaler = StandardScaler().fit(X)
        X = scaler.transform(X)  # every figure below (inertia, silhouette, centres) is in these units
    step = rep.step(f"fitting {_describe(args)} with {args.n_clusters} clusters")
    with step, _cli_progress.engine_lines(rep, model, X.shape[0]):
        labels = np.asarray(model.fit_predict(X), dtype=np.int64)
    if scaler is not None:
        from sklearn.pipeline import make_pipeline

        # The saved model scales new data the same way ('unsup apply', 'unsup export').
        _cli_models.save_model(args, make_pipeline(scaler, model), rep)
    else:
        _cli_models.save_model(args, model, rep)
    sizes = np.bincount(labels, minlength=args.n_clusters)
    if args.output is not None:
        npz = {"labels": labels}
        centres = getattr(model, "cluster_centers_", getattr(model, "means_", None))
        if centres is not None:
            npz["cluster_centers"] = np.asarray(centres)
        if args.algorithm == "gmm":
            npz["probabilities"] = model.predict_proba(X)
        if scaler is not None:
            npz["scale_mean"], npz["scale_std"] = scaler.mean_, scaler.scale_
        write_output(args.output, csv_columns={"label": labels}, npy=labels, npz=npz)
    if args.output == "-":
        return
    lines = [
        f"{_describe(args)}: {X.shape[0]} samples -> {len(np.unique(labels))} clusters",
        "cluster sizes: " + " ".join(str(int(s)) for s in sizes),
    ]
    metric = _metric_name(args)
    if args.algorithm == "kmeans":
        lines.append(f"inertia ({metric}): {model.inertia_:.6g}")
    if args.algorithm == "gmm":
        lines.append(f"mean log-likelihood: {model.score(X):.6g}, BIC: {model.bic(X):.6g}")
    sil = _silhouette(X, labels, args.metric, args.random_state, _metric_params(args))
    if sil is not None:
        lines.append(f"silhouette ({metric}{', 2000-row sample' if X.shape[0] > 2000 else ''}): {sil:.4f}")
    hint = dominance_hint(sizes, args.scale)
    if hint is not None:
        lines.append(hint)
    if args.output is not None:
        lines.append(f"wrote {args.output}")
    for line in lines:
        rep.out(line)


def _run_detect(args, rep: Reporter) -> None:
    check_output(args.output)
    _cli_models.check_save_path(args)
    X, _ = load_data(args.data)
    _check_n_samples(args.data, X, 10, "detect")
    if args.n_components is not None and args.n_components > X.shape[1]:
        raise InputError(
            f"{args.data}: --n-components {args.n_components} is larger than the number of features ({X.shape[1]})"
        )
    from unsup.neural import Autoencoder, AutoencoderEnsemble, VariationalAutoencoder

    rep.info(f"{args.data}: {_shape(X)}")
    if args.model == "ensemble":
        name = "AutoencoderEnsemble"
        extra = {} if args.max_epochs is None else {"max_epochs": args.max_epochs}
        if args.n_components is not None:
            extra["n_components"] = args.n_components
        model = AutoencoderEnsemble(contamination=args.contamination, random_state=args.random_state, **extra)
        description = (
            f"training {name} ({model.n_estimators} autoencoders {X.shape[1]} -> {model.hidden_size} -> "
            f"{model.n_components}, {model.max_epochs} epochs)"
        )
    else:
        n_components = args.n_components or max(1, min(8, X.shape[1] // 2))
        max_epochs = 200 if args.max_epochs is None else args.max_epochs
        name = "Autoencoder" if args.model == "autoencoder" else "VariationalAutoencoder"
        Model = Autoencoder if args.model == "autoencoder" else VariationalAutoencoder
        # a detector on a file's raw columns: standardised, trimmed (the VAE's defaults; the
        # Autoencoder's own defaults are a reduction's)
        model = Model(
            n_components=n_components,
            hidden_layer_sizes=(64, 32),
            max_epochs=max_epochs,
            contamination=args.contamination,
            scale=True,
            trim_fraction=0.1,
            random_state=args.random_state,
        )
        description = f"training {name} ({X.shape[1]} -> 64 -> 32 -> {n_components}, up to {max_epochs} epochs)"
    with rep.step(description) as note:
        with _cli_progress.epochs(rep):
            model.fit(X)
        note["text"] = f"{model.n_iter_} epochs"
    _cli_models.save_model(args, model, rep)
    scores = -model.score_samples(X)  # higher = more anomalous
    flags = model.predict(X) == -1
    threshold = -model.offset_
    if args.output is not None:
        columns = {"score": scores, "outlier": flags.astype(np.int8)}
        write_output(
            args.output,
            csv_columns=columns,
            npy=np.column_stack([scores, flags]).astype(np.float64),
            npz={**columns, "threshold": np.float64(threshold)},
        )
    if args.output == "-":
        return
    order = np.argsort(-scores, kind="stable")[: min(5, int(flags.sum()))]
    what = {
        "ensemble": "mean standardised reconstruction error",
        "autoencoder": "reconstruction error",
        "vae": "negative ELBO",
    }[args.model]
    rep.out(
        f"{name}: {int(flags.sum())} of {X.shape[0]} rows flagged as anomalies (contamination {args.contamination})"
    )
    rep.out(
        f"anomaly score ({what}): median {np.median(scores):.4g}, threshold {threshold:.4g}, max {scores.max():.4g}"
    )
    if len(order):
        rep.out("top rows (0-based): " + ", ".join(f"{i} ({scores[i]:.4g})" for i in order))
    if args.output is not None:
        rep.out(f"wrote {args.output}")


def _run_compress(args, rep: Reporter) -> None:
    check_output(args.output)
    _cli_models.check_save_path(args)
    X, header = load_data(args.data)
    from unsup.quantization import QuantizedEmbedding

    model = QuantizedEmbedding(
        None, n_bits=args.n_bits, scheme=args.scheme, granularity=args.granularity, observer=args.observer
    )
    n, d = X.shape
    rep.info(f"{args.data}: {_shape(X)}")
    settings = f"{args.granularity}, {args.observer}" if args.n_bits != 1 else f"{args.granularity}, sign bits"
    with rep.step(f"calibrating {args.n_bits}-bit {args.scheme} codes ({settings})"):
        model.fit(X)
        codes = model.transform(X)
    _cli_models.save_model(args, model, rep)
    if args.output is not None:
        if args.output != "-" and os.path.splitext(args.output)[1].lower() == ".npz":
            # Everything needed to decode: x = scale * (code - zero_point), or the 1-bit levels.
            extra = {"n_bits": np.int64(args.n_bits), "scheme": np.str_(args.scheme), "n_features": np.int64(d)}
            if model.quantizer_ is not None:
                extra["scale"] = np.asarray(model.quantizer_.scale_)
                extra["zero_point"] = np.asarray(model.quantizer_.zero_point_)
            else:
                extra["threshold"] = np.asarray(model.threshold_)
                extra["levels"] = np.asarray(model.levels_)
            write_output(args.output, csv_columns={}, npy=codes, npz={"codes": codes, **extra})
        else:
            # CSV: one integer code per feature (unpacked); .npy: the codes as stored (packed below 8 bits).
            unpacked = _unpack_codes(codes, args.n_bits, args.scheme, d)
            write_output(args.output, csv_columns={"codes": unpacked}, npy=codes, npz={}, names=header or [])
    if args.output == "-":
        return
    X_hat = model.inverse_transform(codes)
    err = X - X_hat
    rmse = float(np.sqrt(np.mean(err**2)))
    signal, noise = float(np.sum(X**2)), float(np.sum(err**2))
    if noise == 0:
        sqnr = "inf (exact)"
    else:
        sqnr = f"{10 * np.log10(signal / noise):.2f} dB" if signal > 0 else "undefined (all values are 0)"
    rep.out(
        f"{_count(n, 'vector')} x {_count(d, 'feature')} -> {args.n_bits}-bit codes "
        f"({args.scheme}, {settings})"
    )
    rep.out(
        f"size: {n * d * 4:,} bytes as float32 -> {codes.nbytes:,} bytes of codes "
        f"(compression ratio {model.compression_ratio_:.2f}x)"
    )
    rep.out(f"round trip: RMSE {rmse:.4g}, SQNR {sqnr}")
    if n > 10:
        rng = np.random.default_rng(args.random_state)
        queries = np.sort(rng.choice(n, size=min(n, 200), replace=False))
        codes_only, rescored = recall_at_k(model, X, queries, k=10)
        rep.out(
            f"recall@10 against exact euclidean search ({len(queries)} queries): "
            f"{codes_only:.3f} from the codes, {rescored:.3f} reranked with float distances"
        )
    if args.output is not None:
        rep.out(f"wrote {args.output}")


def _unpack_codes(codes, n_bits, scheme, n_features):
    from unsup.quantization import unpack_bits

    if n_bits == 8:
        return codes
    return unpack_bits(codes, n_bits, n_features, signed=n_bits == 4 and scheme == "symmetric")


def recall_at_k(model, X, queries, k=10):
    """Recall@k of ``model.kneighbors`` against exact euclidean search, codes alone and rescored.

    The queries are rows of the fitted set ``X`` (each finds itself in both
    searches). Returns ``(recall of the codes alone, recall after reranking
    with float distances)``: the mean fraction of the ``k`` exact neighbours found.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(k, X.shape[0])
    _, exact = NearestNeighbors(n_neighbors=k).fit(X).kneighbors(X[queries])
    recalls = []
    for rescore in (False, True):
        _, found = model.kneighbors(X[queries], n_neighbors=k, rescore=rescore)
        recalls.append(float(np.mean([len(np.intersect1d(e, f)) / k for e, f in zip(exact, found, strict=True)])))
    return tuple(recalls)


def _run_demo(args, rep: Reporter) -> None:
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise InputError(f"{args.output}: exists and is not a folder")
    parent = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(parent):
        raise InputError(f"{args.output}: cannot create the folder: {parent!r} does not exist")
    run_demo(args.output, random_state=args.random_state, rep=rep)


# ---------------------------------------------------------------------- demo

DEMO_COMPONENTS = 8
DEMO_HIDDEN = (128, 64)
DEMO_MAX_EPOCHS = 100
DEMO_WEIGHT_DECAY = 1e-4
DEMO_CONTAMINATION = 0.05
DEMO_SHUFFLED = 40
PLOT_FILES = ("latent_map.png", "dendrogram.png", "anomaly_scores.png")


def _timed(fn, *args):
    """``fn(*args)`` and the seconds it took."""
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def run_demo(output: str = DEMO_OUTPUT, *, random_state: int = 0, rep: Reporter | None = None) -> dict:
    """The main job on scikit-learn's digits; print the report and save the plots.

    An :class:`~unsup.neural.Autoencoder` learns an 8-d code of the 64-pixel
    images (trained on 80 % of them; its reconstruction error on the other
    20 % is compared with PCA's at the same width), a
    :class:`~unsup.quantization.QuantizedEmbedding` compresses the codes to
    8, 4 and 1 bits (compression ratio and recall@10 of the code search),
    the int8 codes are clustered by KMeans (euclidean and cosine),
    AgglomerativeClustering, DivisiveClustering and GaussianMixture (ARI and
    NMI against the digit labels), and the autoencoder flags anomalies among
    the images and among held-out images whose pixels were shuffled.

    Parameters
    ----------
    output : str, default="unsup-demo-output"
        Folder for the plots (created if needed; plots need matplotlib).
    random_state : int, default=0
        Seeds the split, the models and the shuffled images.
    rep : Reporter, default=None
        Where the report and the progress go (a quiet one when None).

    Returns
    -------
    results : dict
        The figures of the report, by name.
    """
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score, roc_auc_score
    from sklearn.model_selection import train_test_split

    from unsup.cluster import AgglomerativeClustering, DivisiveClustering, KMeans
    from unsup.mixture import GaussianMixture
    from unsup.neural import Autoencoder
    from unsup.quantization import QuantizedEmbedding

    rep = Reporter(quiet=True) if rep is None else rep
    t_start = time.perf_counter()
    X, y = load_digits(return_X_y=True)
    n, d = X.shape
    train, test = train_test_split(np.arange(n), test_size=0.2, random_state=random_state, stratify=y)
    results: dict = {}

    def emit():  # print a finished section (never while a progress line is open)
        for line in report:
            rep.out(line)
        report.clear()

    report = [
        f"unsup demo: scikit-learn's digits, {n} images of 8x8 pixels (values 0-16), "
        f"{len(np.unique(y))} classes; random_state={random_state}"
    ]

    # 1. The autoencoder, and PCA at the same width.
    ae = Autoencoder(
        n_components=DEMO_COMPONENTS,
        hidden_layer_sizes=DEMO_HIDDEN,
        max_epochs=DEMO_MAX_EPOCHS,
        weight_decay=DEMO_WEIGHT_DECAY,
        contamination=DEMO_CONTAMINATION,
        random_state=random_state,
    )
    arch = " -> ".join(str(w) for w in (d, *DEMO_HIDDEN, DEMO_COMPONENTS))
    with rep.step(f"training the autoencoder {arch} on {len(train)} images") as note:
        # The epoch budget is the demo's own choice, not the user's: reaching it
        # is reported in the figures below, not as a ConvergenceWarning.
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=ConvergenceWarning, message=".*max_epochs.*")
            with _cli_progress.epochs(rep):
                _, t_ae = _timed(ae.fit, X[train])
        note["text"] = f"{ae.n_iter_} epochs"
    pca, t_pca = _timed(PCA(n_components=DEMO_COMPONENTS, random_state=random_state).fit, X[train])
    mse_ae = float(np.mean((ae.reconstruct(X[test]) - X[test]) ** 2))
    mse_pca = float(np.mean((pca.inverse_transform(pca.transform(X[test])) - X[test]) ** 2))
    results.update(mse_autoencoder=mse_ae, mse_pca=mse_pca, autoencoder_fit_s=t_ae)
    report += [
        "",
        f"Autoencoder {arch}, trained on {len(train)} images: {ae.n_iter_} epochs in {t_ae:.2f} s"
        + (" (the demo's budget)" if ae.n_iter_ >= DEMO_MAX_EPOCHS else ""),
        f"  reconstruction MSE on the {len(test)} held-out images: autoencoder {mse_ae:.3f}, "
        f"PCA ({DEMO_COMPONENTS} components, {t_pca:.2f} s) {mse_pca:.3f}",
    ]

    emit()

    # 2. The codes: 8, 4 and 1 bits; recall@10 of the code search from every image.
    Z = ae.transform(X)
    report += [
        "",
        f"Codes of the {DEMO_COMPONENTS}-d latents (QuantizedEmbedding, asymmetric, per channel), {n} images",
        "  bits   ratio   recall@10 codes   recall@10 rescored   fit",
    ]
    embeddings = {}
    with rep.step("compressing the latents to 8, 4 and 1 bits and searching them"):
        for n_bits in (8, 4, 1):
            qe, t_qe = _timed(QuantizedEmbedding(None, n_bits=n_bits).fit, Z)
            codes_only, rescored = recall_at_k(qe, Z, np.arange(n), k=10)
            embeddings[n_bits] = qe
            results[f"ratio_{n_bits}"] = qe.compression_ratio_
            results[f"recall_{n_bits}"] = (codes_only, rescored)
            report.append(
                f"  {n_bits:>4}  {qe.compression_ratio_:5.1f}x  {codes_only:16.3f}  {rescored:19.3f}   {t_qe:.2f} s"
            )
    report.append(
        "  recall@10: the share of each image's 10 nearest neighbours (exact search of the float codes) "
        "that the search finds; codes: scanning the codes alone; rescored: a longer candidate list from "
        "the codes, reranked with float distances"
    )
    qe8 = embeddings[8]
    Zq = qe8.inverse_transform(qe8.transform(Z))

    emit()

    # 3. Clustering the int8 codes (dequantised), against the digit labels.
    models = [
        ("KMeans (euclidean)", KMeans(10, metric="euclidean", random_state=random_state), Zq),
        ("KMeans (cosine)", KMeans(10, metric="cosine", random_state=random_state), Zq),
        ("AgglomerativeClustering (ward)", AgglomerativeClustering(10, linkage="ward"), Zq),
        ("DivisiveClustering (bisecting)", DivisiveClustering(10, random_state=random_state), Zq),
        ("GaussianMixture (full)", GaussianMixture(10, covariance_type="full", random_state=random_state), Zq),
        ("KMeans on the raw pixels", KMeans(10, random_state=random_state), X),
    ]
    report += [
        "",
        "Clustering the int8 codes into 10 clusters, scored against the digit labels",
        f"  {'model':<32} {'ARI':>6} {'NMI':>6}   fit",
    ]
    fitted = {}
    with rep.step("clustering the codes five ways"):
        for name, model, data in models:
            labels, t_fit = _timed(model.fit_predict, data)
            ari = adjusted_rand_score(y, labels)
            nmi = normalized_mutual_info_score(y, labels)
            fitted[name] = model
            results[name] = (ari, nmi, t_fit)
            note = "   (baseline, no autoencoder)" if data is X else ""
            report.append(f"  {name:<32} {ari:6.3f} {nmi:6.3f}   {t_fit:.2f} s{note}")

    emit()

    # 4. Anomalies: the training threshold on every image, the held-out ones, and shuffled pixels.
    rng = np.random.default_rng(random_state)
    shuffled = X[rng.choice(test, size=DEMO_SHUFFLED, replace=False)].copy()
    for row in shuffled:
        rng.shuffle(row)
    flagged = ae.predict(X) == -1
    normal_test, normal_shuffled = ae.score_samples(X[test]), ae.score_samples(shuffled)
    is_anomaly = np.r_[np.zeros(len(test), dtype=bool), np.ones(DEMO_SHUFFLED, dtype=bool)]
    auc = roc_auc_score(is_anomaly, -np.r_[normal_test, normal_shuffled])
    caught = int(np.sum(normal_shuffled < ae.offset_))
    false_alarms = int(np.sum(normal_test < ae.offset_))
    results.update(roc_auc=auc, flagged=int(flagged.sum()), caught=caught, false_alarms=false_alarms)
    per_digit = np.bincount(y[flagged], minlength=10)
    top = np.argsort(-per_digit, kind="stable")[:3]
    report += [
        "",
        f"Anomalies (reconstruction error above the {100 * (1 - DEMO_CONTAMINATION):g}th percentile of the "
        f"training images, contamination {DEMO_CONTAMINATION})",
        f"  all {n} images: {int(flagged.sum())} flagged; most flagged digits: "
        + ", ".join(f"{k} ({per_digit[k]})" for k in top),
        f"  {len(test)} held-out images: {false_alarms} flagged (unseen digits reconstruct worse than trained ones)",
        f"  {DEMO_SHUFFLED} held-out images with shuffled pixels: {caught} flagged; "
        f"ROC AUC {auc:.3f} against the {len(test)} clean ones",
    ]

    emit()

    # 5. Plots.
    with rep.step("saving the plots"):
        saved, note_text = save_demo_plots(
            output,
            Z=Z,
            y=y,
            agglomerative=fitted["AgglomerativeClustering (ward)"],
            divisive=fitted["DivisiveClustering (bisecting)"],
            codes=Zq,
            scores=np.r_[normal_test, normal_shuffled],
            is_anomaly=is_anomaly,
            threshold=ae.offset_,
            random_state=random_state,
        )
    results["plots"] = saved
    report += ["", note_text, f"Done in {time.perf_counter() - t_start:.1f} s"]
    emit()
    return results


#: Points of the latent map: t-SNE stays a few seconds up to here (the digits' 1797 are all drawn).
DEMO_TSNE_MAX = 2000


def save_demo_plots(
    output, *, Z, y, agglomerative, divisive, scores, is_anomaly, threshold, random_state, codes=None
):
    """Save the demo's three figures into ``output``; return (paths, a line for the report).

    The figures are :func:`demo_figures`'. Without matplotlib nothing is
    saved and the line says so.
    """
    try:
        # The package first: a submodule already imported would be found without it.
        import matplotlib  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError:
        return [], "Plots: skipped, matplotlib is not installed (pip install matplotlib)"

    figures = demo_figures(
        Z=Z, y=y, agglomerative=agglomerative, divisive=divisive, scores=scores, is_anomaly=is_anomaly,
        threshold=threshold, random_state=random_state, codes=codes,
    )
    os.makedirs(output, exist_ok=True)
    paths = [os.path.join(output, name) for name in PLOT_FILES]
    for fig, path in zip(figures, paths, strict=True):
        fig.savefig(path, dpi=100)
    return paths, f"Plots in {output}{os.sep}: " + ", ".join(PLOT_FILES)


def demo_figures(*, Z, y, agglomerative, divisive, scores, is_anomaly, threshold, random_state, codes=None):
    """The demo's three matplotlib Figures: the latent map, the two dendrograms, the anomaly scores.

    ``Z`` are the latent codes (mapped to the plane by t-SNE when wider than
    2, up to ``DEMO_TSNE_MAX`` points, else PCA), ``y`` the digits.
    ``scores`` are ``score_samples`` values (higher is more normal) and
    ``threshold`` the detector's ``offset_``. ``codes``, when given, are the
    data ``divisive`` was fitted on: its tree is grown on to single samples
    for the plot (the same clusters), so that its branches below the cut
    show as the agglomerative ones do.
    """
    from matplotlib.figure import Figure  # Figure objects, not pyplot: no backend, no window, no global state
    from sklearn.base import clone

    from unsup.plotting import plot_dendrogram, plot_latent, plot_scores
    from unsup.utils._threads import single_threaded

    latent = Figure(figsize=(7, 6), layout="constrained")
    ax = latent.subplots()
    width = np.asarray(Z).shape[1]
    # t-SNE keeps the neighbourhoods (the course's picture of a latent space); PCA beyond its reach.
    method = "tsne" if width > 2 and len(Z) <= DEMO_TSNE_MAX else "pca"
    # One OpenMP thread: t-SNE's gradient on a shared machine is several times slower with more.
    with single_threaded("openmp"):
        plot_latent(Z, y, method=method, random_state=random_state, ax=ax)
    how = {"tsne": f"t-SNE of the {width}-d code", "pca": f"PCA of the {width}-d code"}[method]
    ax.set_title(
        f"Autoencoder latents of the digits ({how}), by digit" if width > 2
        else "Autoencoder latents of the digits, by digit"
    )

    if codes is not None:
        divisive = clone(divisive).set_params(compute_full_tree=True).fit(codes)
    n_clusters = len(np.unique(agglomerative.labels_))
    trees = Figure(figsize=(12, 5.6), layout="constrained")
    ax1, ax2 = trees.subplots(1, 2)
    plot_dendrogram(agglomerative, truncate_mode="lastp", p=30, leaf_rotation=90, leaf_font_size=8, ax=ax1)
    ax1.set_title("Agglomerative (ward) on the int8 codes")
    ax1.set_ylabel("Ward merge height: sqrt(2 x rise in within-cluster SS)")
    plot_dendrogram(divisive, truncate_mode="lastp", p=30, leaf_rotation=90, leaf_font_size=8, ax=ax2)
    ax2.set_title("Divisive (bisecting k-means) on the int8 codes")
    ax2.set_ylabel("split height: within-cluster SS of the cluster split")
    trees.suptitle(
        f"Dashed line: the cut into {n_clusters} clusters; the links below it are coloured by cluster. "
        "(n) under a leaf: n images drawn as one leaf.\n"
        "The heights differ in kind (SS: sum of squared distances to the cluster mean): Ward's is what one "
        "merge adds to the SS,\nthe divisive one is all the SS of the cluster it splits. "
        "Compare the shapes and the cuts, not the numbers.",
        fontsize=9,
    )

    # Log scale: the shuffled images' errors are 100x the digits', which would crush the digits into one bin.
    anomalies = Figure(figsize=(7, 4.5), layout="constrained")
    ax = anomalies.subplots()
    plot_scores(-np.log10(-scores), is_anomaly, threshold=-np.log10(-threshold), bins=60, ax=ax)
    ax.set_title("Autoencoder: held-out digits and images with shuffled pixels")
    ax.set_xlabel("-log10 reconstruction error (higher is more normal)")
    return [latent, trees, anomalies]


# ---------------------------------------------------------------------- main


def _runner(args):
    """The command's function: the Dask one for several files, a glob or ``--scheduler``."""
    if isinstance(getattr(args, "data", None), list):
        from unsup import _dask_cli

        if _dask_cli.wants_dask(args):
            return _dask_cli.run
        args.data = args.data[0]
    return args.run


#: Words of the engines' MemoryError messages that already give the way out.
_ENGINE_REMEDIES = ("Use ", "pip install", "memory_budget")


def _is_torch_oom(exc: BaseException) -> bool:
    """Whether a RuntimeError is torch failing to allocate memory (its CPU allocator raises RuntimeError)."""
    text = str(exc)
    return type(exc).__name__ == "OutOfMemoryError" or "can't allocate memory" in text or "out of memory" in text


def _memory_message(args, exc: BaseException) -> str:
    """The one line of an out-of-memory error: the data, and the engine's own message when it has one.

    The engines' messages (AgglomerativeClustering, DivisiveClustering) say
    what was needed and the way out; numpy's say how much it tried to allocate.
    """
    where = getattr(args, "data", None)
    prefix = f"{where}: " if isinstance(where, str) else ""
    advice = "the data or the model is too large for this machine; try fewer rows, a smaller model or a float32 .npy"
    text = " ".join(str(exc).split())
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
        0 on success, 2 on bad input (one line on stderr). argparse's own
        exits (``--help``, ``--version``, a bad option) raise ``SystemExit``
        with 0 or 2, after one line on stderr for an error.

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
    parser = build_parser()
    args = parser.parse_args(argv)
    rep = Reporter(args.quiet)
    command = f"{PROG} {args.command}"
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            else:
                warnings.showwarning = rep.warning
            check_options(args)
            _runner(args)(args, rep)
    except InputError as exc:
        rep._close("failed")
        print(f"{command}: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except ValueError as exc:
        # What an estimator refuses in the data (scikit-learn's wording), as one line.
        rep._close("failed")
        where = getattr(args, "data", None)
        prefix = f"{where}: " if where else ""
        print(f"{command}: error: {prefix}{' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return EXIT_USAGE
    except (MemoryError, RuntimeError) as exc:
        # Out of memory, from numpy, an engine's own check or torch's CPU allocator (a RuntimeError).
        if not isinstance(exc, MemoryError) and not _is_torch_oom(exc):
            raise
        rep._close("failed")
        print(f"{command}: error: {_memory_message(args, exc)}", file=sys.stderr, flush=True)
        return EXIT_USAGE
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


if __name__ == "__main__":  # pragma: no cover - ``python -m unsup`` goes through __main__.py
    sys.exit(main())
