"""Run a docs page's ```python blocks and refresh (or check) the outputs shown under them.

The blocks of one page run in order in one namespace; what each prints goes
into the ```text block right after it. ``tests/test_docs.py`` runs every page
in check mode, so a page whose printed output no longer matches the code fails
the tests.

What "matches" means: the text between numbers must be identical, and each
number printed must equal the one the page shows within a relative tolerance
(``RTOL``, 5 %) plus one unit of the last digit the page shows. Trained models
and float32 sums round differently on other CPUs and BLAS builds (a 4-bit QAT
error of 0.02909 on one machine is 0.02967 on another), so exact digits would
make the page a test of the machine. A page that needs a looser bound for its
figures says so with a line ``<!-- docs-test: rtol=0.1 -->``; integers such as
labels, counts and sizes are held to the same rule, which for small integers
means equality.

Usage::

    python docs/update_outputs.py docs/kmeans.md           # rewrite the outputs
    python docs/update_outputs.py docs/kmeans.md --check   # exit 1 on a mismatch
"""

from __future__ import annotations

import contextlib
import io
import re
import sys

BLOCK = re.compile(r"```python\n(.*?)```(\n\n(?:Output:\n\n)?```text\n(.*?)```)?", re.S)
#: A number as printed: sign, digits, optional fraction and exponent (also nan and inf).
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?|(?<![A-Za-z_])[-+]?(?:nan|inf)\b")
#: Default relative tolerance between a printed figure and the one the page shows.
RTOL = 0.05
PAGE_RTOL = re.compile(r"<!--\s*docs-test:\s*rtol\s*=\s*([0-9.eE+-]+)\s*-->")


def _last_digit_unit(token: str) -> float:
    """One unit of the last digit written in ``token`` (``"0.029"`` -> 0.001, ``"1.5e-3"`` -> 1e-4)."""
    mantissa, _, exponent = token.lower().partition("e")
    decimals = len(mantissa.split(".", 1)[1]) if "." in mantissa else 0
    return 10.0 ** (int(exponent or 0) - decimals)


def outputs_match(shown: str, printed: str, rtol: float = RTOL) -> bool:
    """Whether ``printed`` equals ``shown`` up to the tolerance on its numbers (see the module docstring)."""
    if shown == printed:
        return True
    if NUMBER.split(shown) != NUMBER.split(printed):
        return False
    for a, b in zip(NUMBER.findall(shown), NUMBER.findall(printed)):
        x, y = float(a), float(b)
        if x == y or (x != x and y != y):
            continue
        atol = _last_digit_unit(a) if "." in a or "e" in a.lower() else 0.0
        if not abs(x - y) <= rtol * max(abs(x), abs(y)) + atol:
            return False
    return True


def run_page(path: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Return the page with refreshed outputs, and the (code, shown, printed) mismatches."""
    src = open(path).read()
    found = PAGE_RTOL.search(src)
    rtol = float(found.group(1)) if found else RTOL
    namespace = {"__name__": "__docs__"}
    parts, pos, mismatches = [], 0, []
    for m in BLOCK.finditer(src):
        code, tail, shown = m.group(1), m.group(2), m.group(3)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(compile(code, path, "exec"), namespace)
        printed = buf.getvalue()
        parts.append(src[pos : m.start()])
        if tail is None:
            parts.append(m.group(0))
        else:
            if not outputs_match(shown, printed, rtol):
                mismatches.append((code, shown, printed))
            parts.append("```python\n" + code + "```" + tail.replace("```text\n" + shown + "```", "```text\n" + printed + "```"))
        pos = m.end()
    parts.append(src[pos:])
    return "".join(parts), mismatches


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    path, check = argv[0], "--check" in argv
    page, mismatches = run_page(path)
    if check:
        for code, shown, printed in mismatches:
            print(f"MISMATCH\n{code}--- page ---\n{shown}--- code prints ---\n{printed}", file=sys.stderr)
        print(f"{path}: {'OK' if not mismatches else f'{len(mismatches)} mismatches'}")
        return 1 if mismatches else 0
    open(path, "w").write(page)
    print(f"refreshed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
