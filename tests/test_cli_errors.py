"""Exit statuses: 2 and one line for the user's input only; a bug inside unsup shows as a bug.

- bad input (a file, an option's value, what an estimator refuses in the
  data during its fit) exits 2 with one clear line on stderr;
- an error raised inside the library where no user input is read (here a
  library function monkeypatched to fail) is not called bad input: it
  propagates with its traceback and the console script exits 1;
- ``--debug`` shows the traceback of an input error too;
- the parsed arguments are never changed: commands run on read-only settings.
"""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from unsup import cli
from unsup.cli import Reporter, build_parser, resolve
from unsup.cli import cluster as cluster_command


@pytest.fixture
def points(tmp_path):
    path = tmp_path / "points.csv"
    rng = np.random.default_rng(0)
    np.savetxt(path, np.r_[rng.normal(0, 1, (30, 2)), rng.normal(6, 1, (30, 2))], delimiter=",")
    return path


def run_python(code, cwd):
    """``code`` in a fresh interpreter: what the console script does with an exception that escapes main."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


# ------------------------------------------------------------- bad input: 2


def test_a_bad_file_exits_2_with_one_clear_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("1,2\n3,x\n")
    assert cli.main(["cluster", str(path), "-k", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert err == f"unsup cluster: error: {path}: non-numeric value 'x' at line 2, column 2\n"


def test_a_bad_option_value_exits_2_with_one_clear_line(points, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["cluster", str(points), "-k", "0"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "expected a positive integer, got '0'" in err


def test_a_value_error_inside_the_fit_is_the_inputs(points, capsys, monkeypatch):
    from unsup.cluster import KMeans

    def refuse(self, X, y=None, sample_weight=None):
        raise ValueError("Input X contains\n a problem.")

    monkeypatch.setattr(KMeans, "fit_predict", refuse)
    assert cli.main(["cluster", str(points), "-k", "2", "-q"]) == 2
    assert capsys.readouterr().err == f"unsup cluster: error: {points}: Input X contains a problem.\n"


# ------------------------------------------------------------ a bug: not 2


@pytest.mark.parametrize("error", ["ValueError", "KeyError", "TypeError"])
def test_a_bug_in_a_library_function_propagates_with_its_traceback(points, error):
    # pairwise_distances runs after the fit (the silhouette): no user input is read there, so even a
    # ValueError is a bug of unsup's, not the user's
    done = run_python(
        f"""
        import sys
        import unsup.metrics
        def broken(*args, **kwargs):
            raise {error}("internal bug in pairwise_distances")
        unsup.metrics.pairwise_distances = broken
        from unsup.cli import main
        sys.exit(main(["cluster", {str(points)!r}, "-k", "2", "-q"]))
        """,
        cwd=points.parent,
    )
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback (most recent call last)" in done.stderr
    assert f"{error}: " in done.stderr and "internal bug in pairwise_distances" in done.stderr
    assert "unsup cluster: error:" not in done.stderr
    assert "silhouette" in done.stderr  # the traceback names where it happened


def test_a_non_value_error_inside_the_fit_is_a_bug(points, monkeypatch):
    from unsup.cluster import KMeans

    def broken(self, X, y=None, sample_weight=None):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(KMeans, "fit_predict", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        cli.main(["cluster", str(points), "-k", "2", "-q"])


def test_the_console_script_exits_1_on_a_bug(points):
    done = run_python(
        f"""
        import runpy, sys
        import unsup.cli.cluster
        def broken(*args, **kwargs):
            raise RuntimeError("a bug")
        unsup.cli.cluster.clusterer = broken
        sys.argv = ["unsup", "cluster", {str(points)!r}, "-k", "2"]
        runpy.run_module("unsup", run_name="__main__")
        """,
        cwd=points.parent,
    )
    assert done.returncode == 1
    assert done.stderr.rstrip().endswith("RuntimeError: a bug") and "Traceback" in done.stderr


# ------------------------------------------------------------------ --debug


def test_debug_shows_the_traceback_of_an_input_error(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert cli.main(["cluster", str(missing), "-k", "2", "--debug"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last)")
    assert "check_readable" in err  # where it was raised
    assert err.endswith(f"unsup cluster: error: {missing}: no such file\n")
    assert cli.main(["cluster", str(missing), "-k", "2"]) == 2  # without --debug: the one line
    assert capsys.readouterr().err == f"unsup cluster: error: {missing}: no such file\n"


def test_debug_shows_the_library_error_behind_an_input_error(points, capsys, monkeypatch):
    from unsup.cluster import KMeans

    def refuse(self, X, y=None, sample_weight=None):
        raise ValueError("Input X is refused.")

    monkeypatch.setattr(KMeans, "fit_predict", refuse)
    assert cli.main(["cluster", str(points), "-k", "2", "-q", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "in refuse" in err and "ValueError: Input X is refused." in err  # the cause, with its frames
    assert "direct cause" in err
    assert err.endswith(f"unsup cluster: error: {points}: Input X is refused.\n")


# --------------------------------------------------------- settings, not args


def test_commands_run_on_read_only_settings_and_leave_the_arguments_alone(points, capsys):
    args = build_parser().parse_args(["cluster", str(points), "-k", "2", "-a", "agglomerative", "-q"])
    before = dict(vars(args))
    settings = resolve(args)
    assert vars(args) == before  # resolve derives, never writes
    assert args.linkage is None and settings.linkage == "ward"  # the default, resolved
    assert settings.data == str(points) and not settings.dask
    with pytest.raises(AttributeError, match="read-only"):
        settings.linkage = "single"
    cluster_command.run(settings, Reporter(quiet=True))
    assert vars(args) == before
    assert capsys.readouterr().out.startswith("agglomerative (ward linkage, euclidean): 60 samples -> 2 clusters")
    assert settings.replace(linkage="single").linkage == "single" and settings.linkage == "ward"


def test_an_option_that_does_not_apply_is_an_input_error():
    args = build_parser().parse_args(["compress", "x.csv", "--n-bits", "1", "--observer", "mse"])
    with pytest.raises(cli.InputError, match="--observer applies to --n-bits 8 or 4 only, got --n-bits 1"):
        resolve(args)
