"""How ``prepare_pool`` splits a manifest into decode blocks: bounded blocks (a decode task holds its block's
audio until written) and enough of them to keep every decode worker busy. The file cap itself
(``rows_per_file``) is checked on real files in ``tests/integration/test_prepare_pool.py``."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.data.config import PoolConfig
from ser_models.data.prepare import DECODE_BLOCK_ROWS, _num_blocks


@pytest.mark.parametrize("n", [1, 7, 100, 1161, 18581, 1_000_000])
@pytest.mark.parametrize("batch_size, workers", [(32, 2), (256, 4), (32, 16)])
def test_blocks_are_bounded_and_every_worker_gets_blocks(n, batch_size, workers):
    cfg = PoolConfig(manifest="m.csv", batch_size=batch_size, num_workers=workers)
    blocks = _num_blocks(n, cfg)
    sizes = np.diff(np.linspace(0, n, blocks + 1).astype(int))  # as _write_shards cuts the manifest
    assert sizes.max() <= DECODE_BLOCK_ROWS and sizes.sum() == n
    assert blocks >= min(4 * workers, -(-n // batch_size))  # enough blocks to keep the decode tasks busy
