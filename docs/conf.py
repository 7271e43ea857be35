"""Sphinx configuration: the user guide (the Markdown pages of this folder) and the API reference.

Build from the repository root (``pip install -e ".[docs]"`` first)::

    python -m sphinx -b html docs docs/_build/html

The API reference (``api.rst``) is generated from the numpydoc docstrings by
autodoc, module by module, following each module's ``__all__``: a new public
name appears in it by being exported.
"""

import unsup

project = "unsup"
author = "the unsup developers"
release = version = unsup.__version__

extensions = [
    "myst_parser",
    "numpydoc",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_heading_anchors = 3  # the pages link to their own sections by #anchor
numpydoc_show_class_members = False  # autodoc lists the members itself
numpydoc_class_members_toctree = False
autodoc_default_options = {"members": True, "inherited-members": False, "show-inheritance": False}
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types

html_theme = "alabaster"
html_title = f"unsup {release}"

suppress_warnings = ["myst.xref_missing"]  # links to ../README.md and the like, outside the docs tree

import re  # noqa: E402

_TRAILING_UNDERSCORE = re.compile(r"\b([A-Za-z]\w*?)_(?=[\s,.;:)\]]|$)")
_HEADER = re.compile(r"^(\s*\**\w+\s:\s)(.*)$")


def _escape(text):
    """Escape the trailing underscore of fitted names (``labels_``) outside literals.

    In reStructuredText ``name_`` is a hyperlink reference; scikit-learn-style
    docstrings write ``(n_features_in_,)`` in types and ``labels_`` in prose.
    """
    parts = text.split("`")
    parts[::2] = [_TRAILING_UNDERSCORE.sub(r"\1\\_", p) for p in parts[::2]]
    return "`".join(parts)


def _escape_fitted_names(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith((">>>", "...")) or stripped.startswith(".. "):
            continue
        header = _HEADER.match(line)
        lines[i] = header.group(1) + _escape(header.group(2)) if header else _escape(line)


def _skip_inherited_machinery(app, what, name, obj, skip, options):
    # scikit-learn's metadata-routing setters (set_fit_request, ...) are generated
    # per class; their docstrings refer to scikit-learn's own glossary.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-process-docstring", _escape_fitted_names)
    app.connect("autodoc-skip-member", _skip_inherited_machinery)
