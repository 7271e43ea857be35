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


@pytest.mark.parametrize(
    "shown, printed, rtol, expected",
    [
        ("MSE 0.02909, 16232 bytes\n", "MSE 0.02967, 16232 bytes\n", 0.05, True),  # another machine's last digits
        ("MSE 0.02909\n", "MSE 0.03300\n", 0.05, False),  # 13 % off: a real change
        ("MSE 0.02909\n", "MSE 0.03300\n", 0.2, True),  # a page that states a looser bound
        ("labels [0 1 1 2]\n", "labels [0 1 2 2]\n", 0.05, False),  # small integers stay exact
        ("ratio 0.5\n", "ratio 0.54\n", 0.05, True),  # one unit of the last digit shown
        ("int8 codes\n", "int4 codes\n", 0.05, False),
        ("a: 1.0\n", "b: 1.0\n", 0.05, False),  # the words must be identical
        ("3 figures\n", "3 figures, 4\n", 0.05, False),
        ("loss nan, 1e-3\n", "loss nan, 1.02e-3\n", 0.05, True),
        ("information 0.1\n", "information 0.1\n", 0.05, True),
    ],
)
def test_outputs_match_compares_figures_with_a_tolerance(shown, printed, rtol, expected):
    from update_outputs import outputs_match

    assert outputs_match(shown, printed, rtol) is expected
