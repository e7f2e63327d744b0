import numpy as np
import pytest

from ser_models.active import VectorIndex


def test_build_search_remove():
    x = np.arange(20, dtype=np.float64).reshape(10, 2)[:, ::-1]  # float64, non-contiguous: converted
    idx = VectorIndex(2).build(x)
    assert len(idx) == 10 and "size=10" in repr(idx)
    d, i = idx.search(x[[3]] + 0.1, 2)
    assert i[0].tolist() == [3, 4] and d[0, 0] == pytest.approx(0.02, rel=1e-4)
    assert idx.remove([3, 99]) == 1
    _, i = idx.search(x[[3]], 1)
    assert i[0, 0] in (2, 4) and len(idx) == 9


def test_dimension_mismatch():
    idx = VectorIndex(3).build(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="dimension 2"):
        idx.search(np.zeros((1, 2)), 1)
    with pytest.raises(ValueError, match="metric"):
        VectorIndex(3, metric="cos")
