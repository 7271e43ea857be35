"""Reading ``DATA`` and writing ``OUT``: the command line's files.

Design constraints:

- ``DATA`` is a numeric ``.csv`` (comma-separated; a first row without a
  single number is a header; blank lines are skipped) or a 2-d ``.npy``.
  ``OUT`` is a ``.csv``, ``.npy`` or ``.npz`` file, or ``-`` for CSV on
  stdout.
- Every problem with a file is an :class:`~unsup.cli.InputError` naming the
  file and the problem in one line, found before any work starts: a missing,
  empty, malformed or non-numeric file, NaN values, a ``.npy`` header that
  claims more bytes than the file holds, an output folder that does not exist.
- numpy's C parser reads a clean CSV; only a file it refuses goes through the
  slower checked reader, whose job is to name the first problem.
"""

from __future__ import annotations

import contextlib
import csv
import os
import sys
import warnings

import numpy as np

from unsup.cli._report import InputError, one_line

__all__ = ["check_output", "check_readable", "check_writable", "load_data", "npy_header", "write_output", "writes_npz"]

DATA_EXTENSIONS = (".csv", ".npy")
OUTPUT_EXTENSIONS = (".csv", ".npy", ".npz")


def check_readable(path: str) -> None:
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
    check_readable(path)
    if os.path.getsize(path) == 0:
        raise InputError(f"{path}: empty file")
    if ext == ".npy":
        return _load_npy(path), None
    return _load_csv(path)


def _load_npy(path: str) -> np.ndarray:
    npy_header(path)
    try:
        X = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"{path}: not a valid .npy file ({one_line(exc)})") from None
    except (OSError, EOFError) as exc:
        raise InputError(
            f"{path}: not a valid .npy file ({one_line(exc) or type(exc).__name__})"
        ) from None
    X = X.astype(np.float64, copy=False)
    bad = ~np.isfinite(X)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"{path}: {_kind_of(X[i, j])} at row {i}, column {j} (0-based)")
    return X


def npy_header(path: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` file, from its header: every check that needs no data (one-line errors).

    An ``.npz`` archive or another file, a header that claims more bytes than
    the file holds (``np.load`` would allocate what it claims first: a 1 KB
    file claiming (1e9, 16) would ask for 119 GiB), Python objects, complex
    or other non-numeric values, not 2-d, no rows or no columns.
    """
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:4] == b"PK\x03\x04":
        raise InputError(f"{path}: is an .npz archive, expected a single .npy array")
    if magic != b"\x93NUMPY":
        raise InputError(f"{path}: not a valid .npy file (no .npy header)")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a valid .npy file ({one_line(exc) or type(exc).__name__})") from None
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects, not numbers")
    claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    held = os.path.getsize(path) - offset
    if claimed > held:
        raise InputError(
            f"{path}: truncated or corrupt .npy file: its header claims shape {tuple(shape)} of {dtype} "
            f"({claimed:,} bytes) but the file holds {held:,} bytes of data"
        )
    if dtype.kind == "c":
        raise InputError(f"{path}: complex values, expected real numbers")
    if dtype.kind not in "biuf":
        raise InputError(f"{path}: non-numeric values (dtype {dtype}), expected numbers")
    if len(shape) != 2:
        raise InputError(f"{path}: expected a 2-d array (n_samples, n_features), got shape {tuple(shape)}")
    _check_shape(path, shape)
    return tuple(shape), dtype


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
        raise InputError(f"{path}: malformed CSV ({one_line(exc)})") from None
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


@contextlib.contextmanager
def writing(path: str):
    """Around the writing of ``path``: an ``OSError`` becomes the one-line ``InputError`` of the command line."""
    try:
        yield
    except OSError as exc:
        raise InputError(f"{path}: cannot write: {exc.strerror or exc}") from None


def writes_npz(path: str | None) -> bool:
    """Whether results go to an ``.npz`` file (the format with the extras: centres, probabilities, scales)."""
    return path is not None and path != "-" and os.path.splitext(path)[1].lower() == ".npz"


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
    with writing(path):
        if ext == ".csv":
            with open(path, "w", newline="") as f:
                _write_csv(f, csv_columns, names)
        elif ext == ".npy":
            np.save(path, npy)
        else:
            np.savez(path, **npz)


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
