"""Package exports loaded on first use, so importing a package (in a Ray worker, a tool) does not import the
heavy modules behind each of its names (Ray, FAISS, torch)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, modules: dict[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package``: each name in ``modules`` is imported from its module
    (a dotted name) the first time it is asked for.

    Raises (from the returned function):
        AttributeError: a name ``package`` does not export.
    """

    def __getattr__(name: str) -> Any:
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
