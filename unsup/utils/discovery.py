"""Find every public estimator of ``unsup``.

One registry serves the common checks, the bad-input tests and the docs: an
estimator is public when its class is exported in the ``__all__`` of ``unsup``
or of one of its subpackages. A new estimator joins the test suites by being
exported, with nothing else to register.
"""

from __future__ import annotations

import importlib
import inspect

from sklearn.base import BaseEstimator

_SUBPACKAGES = ("cluster", "metrics", "mixture", "neural", "quantization")


def all_estimators() -> list[tuple[str, type]]:
    """Return the public estimators of ``unsup``, sorted by name.

    Returns
    -------
    estimators : list of (name, class) tuples
        Each class a subclass of :class:`sklearn.base.BaseEstimator`, found in
        the ``__all__`` of ``unsup`` or of one of its subpackages. Aliases
        (two names for one class) appear once, under the class's own name.
    """
    import unsup

    modules = [unsup]
    for name in _SUBPACKAGES:
        try:
            modules.append(importlib.import_module(f"unsup.{name}"))
        except ModuleNotFoundError as exc:
            if exc.name != f"unsup.{name}":
                raise
    found: dict[type, str] = {}
    for module in modules:
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseEstimator)
                and not inspect.isabstract(obj)
            ):
                found.setdefault(obj, obj.__name__)
    return sorted(((name, cls) for cls, name in found.items()), key=lambda t: t[0])
