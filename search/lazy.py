"""PEP 562 lazy attributes for a package's face: names are imported from their modules on first use, so importing the
package stays cheap (torch and Ray take seconds) while ``help()`` and IDEs see the real functions.

Example:
    >>> getattr_, dir_ = lazy_names("pkg", {"dumps": "json"}, {"x": 1})
    >>> getattr_("dumps").__name__, dir_()
    ('dumps', ['dumps', 'x'])
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_names(package: str, names: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """The package's ``__getattr__`` and ``__dir__`` for ``names`` (public name -> module that defines it); a
    resolved name is kept in ``namespace`` (the package's globals), so the next access does not come back here."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *names})

    return __getattr__, __dir__


__all__ = ["lazy_names"]
