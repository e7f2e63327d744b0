"""Session fixture ``demo_pool``: a small synthetic corpus and its prepared pool, built ONCE per test session.

Any test that needs a realistic pool (fine-tuning, scoring, the active-learning loop, job smoke runs) should
request ``demo_pool`` instead of building its own: generating and preparing even 48 clips costs a Ray Data
run, and the machine running the suite has 2 cores.

How to get the fixture into a test folder: ``tests/`` is not a package and ``tests/conftest.py`` is shared,
so a folder's ``conftest.py`` loads this file by path and re-exports the fixture::

    # tests/<folder>/conftest.py
    import importlib.util, sys
    from pathlib import Path

    def _load_fixtures_pool():
        name = "ser_tests_fixtures_pool"
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, Path(__file__).parents[1] / "fixtures_pool.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        return sys.modules[name]

    demo_pool = _load_fixtures_pool().demo_pool

``tests/integration/conftest.py`` and ``tests/jobs/conftest.py`` already do this. Every folder gets the same
module object (it is registered in ``sys.modules`` under one name), and the module memoises the build, so
the pool is built once even though each folder registers its own session fixture.

The pool must be treated as read-only: tests write their outputs under their own ``tmp_path``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ser_models.data import Pool, PoolConfig, PoolSummary, generate_corpus, prepare_pool

#: Clips in the demo corpus: enough for speaker-disjoint train/dev/test with all 4 emotions in each split.
DEMO_N = 48
#: Corpus seed (same arguments give byte-identical audio).
DEMO_SEED = 0
#: The emotions of the synthetic corpus, in the order the smoke configs use as ``model.labels``.
DEMO_LABELS = ("neutral", "happy", "angry", "sad")


@dataclass(frozen=True)
class DemoPool:
    """Where the session's demo corpus and prepared pool live.

    Attributes:
        corpus_dir: generated corpus (``audio/``, ``manifest.csv``, ``clip_info.csv``).
        manifest: ``corpus_dir / "manifest.csv"``.
        pool_dir: the prepared pool (``data/``, ``summary.json``, ``quarantine.parquet``, ``config.yaml``).
        summary: what :func:`ser_models.data.prepare_pool` reported.
        labels: the label set the pool was validated against.
    """

    corpus_dir: Path
    manifest: Path
    pool_dir: Path
    summary: PoolSummary
    labels: tuple[str, ...] = DEMO_LABELS

    def open(self) -> Pool:
        """The prepared pool (cheap: reads ``summary.json`` only)."""
        return Pool.open(self.pool_dir)


_BUILT: dict[Path, DemoPool] = {}


def build_demo_pool(root: str | Path, n: int = DEMO_N, seed: int = DEMO_SEED) -> DemoPool:
    """Generate ``n`` synthetic clips under ``root/corpus`` and prepare them into ``root/pool``.

    Needs a running Ray (the ``ray_local`` fixture). Memoised per ``root``: a second call returns the first
    result without touching the disk.

    Args:
        root: an empty folder (e.g. from ``tmp_path_factory``).
        n: clips in the corpus (>= 12).
        seed: corpus seed.
    """
    root = Path(root)
    if root in _BUILT:
        return _BUILT[root]
    corpus = root / "corpus"
    generate_corpus(corpus, n=n, seed=seed)
    # Same storage settings as jobs/configs/prepare_pool_smoke.yaml, so the tests exercise what users run.
    cfg = PoolConfig(manifest=str(corpus / "manifest.csv"), output_dir=str(root / "pool"),
                     labels=list(DEMO_LABELS), max_duration=8.0, audio_format="flac", batch_size=8,
                     num_workers=1)
    summary = prepare_pool(cfg)
    if summary.quarantined or set(summary.splits) != {"train", "dev", "test"}:
        raise RuntimeError(f"demo pool build is not what the tests assume: {summary.table()}")
    _BUILT[root] = DemoPool(corpus, corpus / "manifest.csv", root / "pool", summary)
    return _BUILT[root]


@pytest.fixture(scope="session")
def demo_pool(ray_local, tmp_path_factory) -> DemoPool:
    """The session's 48-clip demo corpus (seed 0) and its prepared pool (FLAC, all clips kept).

    Splits are speaker-disjoint train/dev/test, each holding all four emotions. Read-only for tests.
    """
    if _BUILT:
        return next(iter(_BUILT.values()))
    return build_demo_pool(tmp_path_factory.mktemp("demo_pool"))
