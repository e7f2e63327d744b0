"""connect_ray: joins the running Ray instance and keeps Ray Data's INFO lines off the console only."""

import logging

import pytest

from ser_models.runtime import DATA_CONSOLE_LEVEL_ENV, connect_ray

pytestmark = pytest.mark.usefixtures("ray_local")


def _handlers():
    hs = logging.getLogger("ray.data").handlers
    console = [h for h in hs if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    files = [h for h in hs if h not in console]
    return console, files


def test_console_quiet_file_untouched(monkeypatch):
    import ray

    console, files = _handlers()
    assert console and files
    file_levels = [h.level for h in files]
    monkeypatch.delenv(DATA_CONSOLE_LEVEL_ENV, raising=False)
    connect_ray()
    assert ray.is_initialized()
    assert all(h.level == logging.WARNING for h in console)
    assert [h.level for h in files] == file_levels  # everything still reaches ray-data.log

    monkeypatch.setenv(DATA_CONSOLE_LEVEL_ENV, "info")
    try:
        connect_ray()
        assert all(h.level == logging.INFO for h in console)
    finally:
        for h in console:
            h.setLevel(logging.WARNING)
