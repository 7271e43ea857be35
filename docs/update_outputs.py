"""Run a docs page's ```python blocks and refresh (or check) the outputs shown under them.

The blocks of one page run in order in one namespace; what each prints goes
into the ```text block right after it. ``tests/test_docs.py`` runs every page
in check mode, so a page whose printed output no longer matches the code fails
the tests.

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


def run_page(path: str) -> tuple[str, list[tuple[str, str, str]]]:
    """Return the page with refreshed outputs, and the (code, shown, printed) mismatches."""
    src = open(path).read()
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
            if printed != shown:
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
