"""The ``Examples`` sections of the docstrings run as doctests.

Every module of ``unsup`` is found by walking the package, so a new module's
examples are checked by being written, with nothing to register here.
"""

import doctest
import importlib
import pkgutil

import numpy as np
import pytest

import unsup

MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(unsup.__path__, prefix="unsup.")
    if not info.name.endswith("__main__")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    with np.printoptions(legacy=False):
        result = doctest.testmod(
            module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS, verbose=False, report=True
        )
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"


def test_the_public_classes_have_examples():
    from unsup.utils import all_estimators

    for name, cls in all_estimators():
        assert "Examples\n" in (cls.__doc__ or ""), f"{name} has no Examples section"
