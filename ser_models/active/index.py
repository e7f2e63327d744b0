"""``VectorIndex``: the one place that talks to FAISS for nearest-neighbour search.

Strategies search through this seam, so swapping FAISS for another library (or a GPU index) touches one file.
FAISS runs on its own OpenMP pool: this class never changes its thread count, so a caller's
``faiss.omp_set_num_threads(k)`` holds.
"""

from __future__ import annotations

import faiss
import numpy as np

__all__ = ["VectorIndex", "as_float32"]

_METRICS = ("l2", "ip")


def as_float32(x: np.ndarray, name: str = "vectors", ndim: int = 2) -> np.ndarray:
    """``x`` as float32 C-contiguous (FAISS reads raw memory: a strided or float64 view gives garbage)."""
    arr = np.ascontiguousarray(x, dtype=np.float32)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    return arr


class VectorIndex:
    """Exact (flat) nearest-neighbour index with stable integer ids and removal.

    Args:
        dim: vector dimension D.
        metric: ``"l2"`` (squared Euclidean distances, smaller = nearer) or ``"ip"`` (inner product,
            larger = nearer).

    Ids are the row positions passed to :meth:`build` (or explicit ``ids``); :meth:`remove` drops them
    without renumbering the rest, through ``faiss.IndexIDMap2``.
    """

    def __init__(self, dim: int, metric: str = "l2"):
        if dim <= 0:
            raise ValueError(f"dim must be > 0, got {dim}")
        if metric not in _METRICS:
            raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
        self.dim = int(dim)
        self.metric = metric
        self._index = self._empty()

    def _empty(self) -> faiss.Index:
        flat = faiss.IndexFlatL2(self.dim) if self.metric == "l2" else faiss.IndexFlatIP(self.dim)
        return faiss.IndexIDMap2(flat)

    def build(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> VectorIndex:
        """Replace the contents with ``vectors``.

        Args:
            vectors: [N, D] (converted to float32 C-contiguous).
            ids: [N] int64 ids; default ``arange(N)``.

        Returns:
            ``self``, for chaining.
        """
        x = as_float32(vectors)
        if x.shape[1] != self.dim:
            raise ValueError(f"vectors have dimension {x.shape[1]}, index expects {self.dim}")
        ids = np.arange(len(x), dtype=np.int64) if ids is None else np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (len(x),):
            raise ValueError(f"ids must have shape ({len(x)},), got {ids.shape}")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids must be unique")
        self._index = self._empty()
        if len(x):
            self._index.add_with_ids(x, ids)
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored vectors of each query.

        Args:
            queries: [Q, D].
            k: neighbours per query (>= 1).

        Returns:
            (distances [Q, k] float32, ids [Q, k] int64); squared L2 for ``"l2"``. Where fewer than k
            vectors are stored the tail is padded with id -1 (FAISS convention).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        q = as_float32(queries, "queries")
        if q.shape[1] != self.dim:
            raise ValueError(f"queries have dimension {q.shape[1]}, index expects {self.dim}")
        return self._index.search(q, k)

    def remove(self, ids) -> int:
        """Drop the vectors with these ids; unknown ids are ignored. Returns how many were removed."""
        sel = np.ascontiguousarray(np.atleast_1d(ids), dtype=np.int64)
        if not len(sel):
            return 0
        return int(self._index.remove_ids(faiss.IDSelectorBatch(sel)))

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, metric={self.metric!r}, size={len(self)})"
