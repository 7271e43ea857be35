"""The Sphinx site (user guide + API reference) builds without a warning and documents every public estimator."""

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the docs build needs the `docs` extra (sphinx, numpydoc, myst-parser)")
pytest.importorskip("numpydoc")
pytest.importorskip("myst_parser")

from unsup.utils import all_estimators  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_sphinx_builds_and_lists_every_estimator(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-W", "--keep-going", str(DOCS), str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    api = (tmp_path / "api.html").read_text()
    for name, cls in all_estimators():
        assert f"{cls.__module__.rsplit('._', 1)[0]}.{name}" in api, f"{name} missing from the API reference"
    for page in DOCS.glob("*.md"):
        assert (tmp_path / f"{page.stem}.html").exists(), f"{page.name} not built"
