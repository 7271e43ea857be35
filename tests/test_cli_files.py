"""Files a careful user meets: a .npy header that lies, header names that need quoting, no memory left.

Each ends with exit status 2 and one line (or, for the header names, a CSV
that reads back), never with a traceback or a 119 GiB allocation.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.test_cli import check_one_line_error, ok, run_main


def _npy_header(shape, dtype="<f8"):
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def test_npy_whose_header_claims_more_than_the_file_holds(tmp_path, capsys, monkeypatch):
    path = tmp_path / "liar.npy"
    path.write_bytes(_npy_header((1_000_000_000, 16)) + b"\0" * 1024)  # 1 KB claiming 119 GiB
    argv = ["cluster", "liar.npy", "--n-clusters", "2"]
    result = run_main(*argv, cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch)
    check_one_line_error(result, argv, "header claims shape (1000000000, 16)")
    assert "1,024 bytes" in result.stderr


def test_npy_with_an_honest_header_still_loads(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "X.npy", np.random.RandomState(0).randn(20, 3))
    ok(run_main("cluster", "X.npy", "--n-clusters", "2", "--quiet", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch))


def test_output_csv_quotes_header_names(tmp_path, capsys, monkeypatch):
    names = ["a,b", 'say "hi"', "plain"]
    rows = np.random.RandomState(0).randn(30, 3)
    with open(tmp_path / "X.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(names)
        writer.writerows(rows.tolist())
    ok(run_main("compress", "X.csv", "-o", "codes.csv", "--quiet", cwd=tmp_path, capsys=capsys, monkeypatch=monkeypatch))
    with open(tmp_path / "codes.csv", newline="") as f:
        table = list(csv.reader(f))
    assert table[0] == names
    assert all(len(row) == 3 for row in table[1:]) and len(table) == 31


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS (Linux)")
def test_memory_error_is_one_line_and_exit_2(tmp_path):
    """A real MemoryError: the address space is capped, then a valid 640 MB .npy is loaded."""
    path = tmp_path / "big.npy"
    header = _npy_header((20_000_000, 4))
    with open(path, "wb") as f:  # a sparse file: 640 MB of zeros that take no disk
        f.write(header)
        f.truncate(len(header) + 20_000_000 * 4 * 8)
    script = textwrap.dedent(
        f"""
        import resource, sys
        import unsup.cli  # torch, scikit-learn and numpy loaded before the cap
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * resource.getpagesize()
        cap = used + 300 * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        sys.exit(unsup.cli.main(["cluster", {str(path)!r}, "--n-clusters", "2"]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("unsup cluster: error: "), done.stderr
    assert "out of memory" in lines[0]
