"""Fixtures of this folder: the session's shared demo corpus + prepared pool (see ``tests/fixtures_pool.py``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load_fixtures_pool():
    # tests/ is not a package: load by path under one sys.modules name, so that every folder that does this
    # shares one module and hence one memoised pool build.
    name = "ser_tests_fixtures_pool"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "fixtures_pool.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


demo_pool = _load_fixtures_pool().demo_pool
