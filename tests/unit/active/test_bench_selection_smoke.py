import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/ is not an installed package
from bench.selection import make_pool, naive_kcenter, table  # noqa: E402


def test_bench_functions_run_on_tiny_pool():
    pool = make_pool(500, dim=16)
    assert pool.embeddings.shape == (500, 16) and pool.embeddings.dtype == np.float32
    np.testing.assert_allclose(pool.probs.sum(1), 1.0, rtol=1e-5)
    secs, done = naive_kcenter(pool.embeddings, 20, cap=5)
    assert done == 5 and secs >= 0
    assert "| kcenter | 500 |" in table([{"strategy": "kcenter", "N": 500, "B": 20, "seconds": 0.1}])
