"""What the command line prints, and its one error type.

- :class:`Reporter`: results on stdout; progress and warnings on stderr
  (``--quiet`` silences those, never the results).
- :class:`InputError`: a problem with the user's input (a file, an option's
  value, the shape of the data). :func:`unsup.cli.main` prints it as one line
  and exits with status 2; any other exception is a bug and propagates with
  its traceback.
- :func:`user_input`: the places that hand the user's input to a library
  function (an estimator's ``fit`` validating the data, a parser of a file)
  wrap the call in it, so that the ``ValueError`` the library raises about that
  input becomes an :class:`InputError`. A ``ValueError`` anywhere else is a bug.
"""

from __future__ import annotations

import contextlib
import sys
import time

__all__ = ["PROG", "InputError", "Reporter", "count", "one_line", "shape", "user_input"]

PROG = "unsup"


class InputError(Exception):
    """A problem with the user's input: reported as one line, exit status 2."""


InputError.__module__ = "unsup.cli"  # its public home (``unsup.cli.InputError``)


def one_line(text) -> str:
    """``text`` with every run of white space (line breaks included) as one space."""
    return " ".join(str(text).split())


@contextlib.contextmanager
def user_input(where: str | None = None):
    """Turn a ``ValueError`` raised in the block into an :class:`InputError` (prefixed ``where: ``).

    Wrap only calls whose ``ValueError`` can be about the user's input: an
    estimator's ``fit`` (scikit-learn's validation of the data and the
    parameters), a reader of the user's file. The original error stays
    attached as ``__cause__`` (``--debug`` shows its traceback).
    """
    try:
        yield
    except ValueError as exc:
        prefix = f"{where}: " if where else ""
        raise InputError(prefix + one_line(exc)) from exc


def count(n: int, noun: str) -> str:
    """``"1 sample"``, ``"2 samples"``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def shape(X) -> str:
    """``"n samples x d features"``."""
    return f"{count(X.shape[0], 'sample')} x {count(X.shape[1], 'feature')}"


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
        print(f"{PROG}: warning: {category.__name__}: {one_line(message)}", file=sys.stderr, flush=True)
