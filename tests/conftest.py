"""Shared fixtures. Ray starts once per test session (start-up costs seconds on 2 cores)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole session (2 CPUs, no dashboard)."""
    import ray
    from ray.data import DataContext

    if not ray.is_initialized():
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            logging_level="WARNING",
            runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}},
        )
    DataContext.get_current().enable_progress_bars = False
    yield ray
    # left running until interpreter exit: several test modules share it


@pytest.fixture(scope="session")
def demo_pool(ray_local, tmp_path_factory):
    """The session's 48-clip demo corpus (seed 0) and its prepared pool (FLAC, all clips kept), built once.

    Splits are speaker-disjoint train/dev/test, each holding all four emotions. Read-only for tests: write
    outputs under your own ``tmp_path``. See ``ser_models.testing.build_demo_pool``.
    """
    from ser_models.testing import build_demo_pool

    return build_demo_pool(tmp_path_factory.mktemp("demo_pool"))


def pytest_sessionfinish(session, exitstatus):
    try:
        import ray

        if ray.is_initialized():
            ray.shutdown()
    except Exception:
        pass


@pytest.fixture(scope="session")
def smart_turn_dir():
    """The pretrained Smart Turn v3.2 Whisper-tiny encoder, imported into ``<repo>/.cache/encoders``.

    The same cached fetch as ``make demo`` (the ``pipecat-ai`` wheel alone, from the package registry, checked
    by sha256), so a machine downloads it once. Tests about quality or conversion use it.
    """
    from pathlib import Path

    from ser_models.encoders.smart_turn import cached_encoder

    return cached_encoder(Path(__file__).parents[1] / ".cache", quiet=True)
