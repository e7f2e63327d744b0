"""How ``prepare_pool`` splits a manifest into blocks (one Parquet file each): never more than
``rows_per_file`` rows in a file, since every reader of the pool holds about one file's worth of rows."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.data.config import PoolConfig
from ser_models.data.prepare import _num_blocks


@pytest.mark.parametrize("n", [1, 7, 100, 1161, 18581, 1_000_000])
@pytest.mark.parametrize("rows_per_file, batch_size, workers", [(128, 32, 2), (128, 256, 4), (2000, 32, 2)])
def test_files_hold_at_most_rows_per_file_and_every_worker_gets_blocks(n, rows_per_file, batch_size, workers):
    cfg = PoolConfig(manifest="m.csv", rows_per_file=rows_per_file, batch_size=batch_size, num_workers=workers)
    blocks = _num_blocks(n, cfg)
    sizes = np.diff(np.linspace(0, n, blocks + 1).astype(int))  # as _write_shards cuts the manifest
    assert sizes.max() <= rows_per_file and sizes.sum() == n
    assert blocks >= min(4 * workers, -(-n // batch_size))  # enough blocks to keep the decode tasks busy
