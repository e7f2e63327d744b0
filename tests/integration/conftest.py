"""Fixtures shared by the integration tests of the installed tool (``test_installed.py``, ``test_tutorial.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def wheels(tmp_path_factory) -> dict[str, Path]:
    """The two wheels built from this checkout, once per test process: ``full`` (``pip wheel .``, the
    ``ser-models`` distribution) and ``serve`` (``pip wheel serving/``, ``ser-models-serve``)."""
    from bench.install import build_wheel

    out = tmp_path_factory.mktemp("wheels")
    return {"full": build_wheel(REPO, out / "full"), "serve": build_wheel(REPO / "serving", out / "serve")}
