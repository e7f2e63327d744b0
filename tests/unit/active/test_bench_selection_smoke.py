import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # bench/ is not an installed package
from bench.selection import make_pool, plain_informative_diverse, plain_kcenter, table  # noqa: E402
from ser_models.active import greedy_kcenter  # noqa: E402


def test_bench_functions_run_on_tiny_pool():
    pool = make_pool(500, dim=16)
    assert pool.embeddings.shape == (500, 16) and pool.embeddings.dtype == np.float32
    np.testing.assert_allclose(pool.probs.sum(1), 1.0, rtol=1e-5)
    assert "| kcenter | 500 |" in table([{"strategy": "kcenter", "N": 500, "B": 20, "seconds": 0.1}])


def test_selection_baselines_do_the_same_work_as_the_strategies():
    """bench.selection's plain baselines pick what the library picks (cells on and off): the ratios compare
    equal work."""
    pool = make_pool(3000, dim=32)
    plain = plain_kcenter(pool.embeddings, 40, first=7)
    for cells in (1, 12):
        assert plain.tolist() == list(greedy_kcenter(pool.embeddings, 40, first=7, num_cells=cells, seed=0))
    prefiltered = plain_informative_diverse(pool, 20, prefilter_factor=5)
    assert len(set(prefiltered.tolist())) == 20
