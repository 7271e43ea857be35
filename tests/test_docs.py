"""Every docs page's code runs and prints what the page shows."""

import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS))
from update_outputs import run_page  # noqa: E402

PAGES = sorted(p for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_outputs_match_the_code(page):
    _, mismatches = run_page(str(page))
    assert not mismatches, "\n\n".join(
        f"{code}--- page shows ---\n{shown}--- code prints ---\n{printed}" for code, shown, printed in mismatches
    )
