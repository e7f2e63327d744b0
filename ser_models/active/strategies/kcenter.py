"""Greedy k-center (core-set) selection, exact and fast on large pools.

Greedy k-center repeatedly takes the point farthest from every centre chosen so far. Done plainly, each pick
costs a pass over all N x D embeddings (N = 1M, D = 768, 10k picks is 7.7e12 flops). We keep the greedy
result exact and skip most of that work:

* the pool is split into K coarse cells (FAISS k-means on a sample, in a 64-d random projection: the cells
  only steer the pruning, so they need not be good clusters) and stored cell by cell, so a cell is a
  contiguous slice (a product over it needs no gather);
* each cell keeps its radius ``r_j`` (farthest member from its centroid ``mu_j``) and an upper bound ``u_j``
  on its members' nearest-centre distances (their stored distances only ever fall);
* lazy refresh: a new centre ``c`` is not applied to any cell when picked. Its squared lower bound
  ``max(||mu_j - c|| - r_j, 0)^2`` per cell is noted. The next pick looks at the cell with the largest
  ``u_j`` and applies the centres it has not absorbed yet, skipping those whose lower bound is at least
  ``u_j`` (they cannot lower any member), as one matrix product; if ``u_j`` is still the largest bound, its
  farthest member is the exact farthest point of the pool. Cells far from every new centre are never read.

Skipping never changes a distance that could have changed, so the picks equal those of the plain algorithm
(up to float32 rounding on near-ties). How much is skipped depends on the data: well-separated clusters
(typical of speech embeddings across speakers/corpora) prune most cells; an isotropic blob in high dimension
prunes little (``stats`` reports the fraction scanned). For such pools ``reduce_dim`` runs k-center on a FAISS
PCA projection instead (approximate).

References:
    Sener and Savarese, 2018, "Active Learning for Convolutional Neural Networks: A Core-Set Approach".
    Gonzalez, 1985, "Clustering to minimize the maximum intercluster distance" (the greedy 2-approximation).
    Elkan, 2003, "Using the Triangle Inequality to Accelerate k-Means" (the pruning idea).
    Minoux, 1978, "Accelerated greedy algorithms for maximizing submodular set functions" (lazy evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from ser_models.active.index import VectorIndex, as_float32

__all__ = ["KCenterStats", "greedy_kcenter", "pca_reduce"]

# Below this many points the bookkeeping costs about what the scan it saves (clustered 768-d pool, N / 100
# picks: 10k rows 0.15 s one cell vs 0.21 s with 39; 16k rows 0.43 vs 0.37 s; 30k rows 1.23 vs 0.35 s).
_MIN_POINTS_FOR_CELLS = 16384
# The coarse cells are found in a random projection to this many dimensions (a k-means in 768-d costs more
# than the whole selection at N = 100k).
_CELL_DIM = 64


@dataclass
class KCenterStats:
    """Work done by one :func:`greedy_kcenter` call (for benchmarks and logs)."""

    num_cells: int = 1
    rows_scanned: int = 0
    rows_total: int = 0
    picks: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def scan_fraction(self) -> float:
        """Rows scanned per pick over pool size (1.0 = no pruning)."""
        return self.rows_scanned / max(1, self.rows_total * self.picks)


def pca_reduce(x: np.ndarray, others: list[np.ndarray], dim: int, seed: int,
               max_train: int = 50_000) -> tuple[np.ndarray, list[np.ndarray]]:
    """Project ``x`` ``[N, D]`` (and each of ``others`` ``[*, D]``) onto ``dim`` principal axes fitted by FAISS.

    The PCA is trained on at most ``max_train`` rows drawn with ``seed`` (fitting on all 1M rows buys nothing
    for a 64-d projection). Returns float32 C-contiguous arrays.
    """
    x = as_float32(x)
    if dim >= x.shape[1]:
        return x, [as_float32(o) for o in others]
    rng = np.random.default_rng(seed)
    train = x if len(x) <= max_train else x[np.sort(rng.choice(len(x), max_train, replace=False))]
    pca = faiss.PCAMatrix(x.shape[1], dim)
    pca.train(as_float32(train))
    return pca.apply(x), [pca.apply(as_float32(o)) if len(o) else np.zeros((0, dim), np.float32) for o in others]


def _cells(x: np.ndarray, num_cells: int, seed: int) -> np.ndarray:
    """Coarse cell of each row [N]: FAISS k-means (5 iterations, 32 sample rows per cell) in a seeded random
    projection to ``_CELL_DIM`` dimensions, then one assignment pass."""
    if x.shape[1] > _CELL_DIM:
        proj = np.random.default_rng(seed).standard_normal((x.shape[1], _CELL_DIM)).astype(np.float32)
        x = x @ proj
    km = faiss.Kmeans(x.shape[1], num_cells, niter=5, seed=seed, max_points_per_centroid=32,
                      min_points_per_centroid=1)
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= 32 * num_cells else x[np.sort(rng.choice(len(x), 32 * num_cells, replace=False))]
    km.train(as_float32(sample))
    _, assign = VectorIndex(x.shape[1]).build(km.centroids).search(as_float32(x), 1)
    return assign[:, 0]


def greedy_kcenter(x: np.ndarray, n: int, centres: np.ndarray | None = None, first: int | None = None,
                   num_cells: int | None = None, seed: int = 0,
                   stats: KCenterStats | None = None) -> np.ndarray:
    """Greedy k-center: ``n`` rows of ``x``, each the farthest from all previous picks and ``centres``.

    Args:
        x: [N, D] candidate embeddings (any float; used as float32).
        n: number of picks, ``1 <= n <= N``.
        centres: [L, D] existing centres (the labelled set), or None.
        first: row of ``x`` to take first when there are no ``centres`` (required then).
        num_cells: coarse cells for pruning; None picks ``clip(N / 256, 1, 1024)`` (1 below 16384 rows).
        seed: seeds the coarse cells (affects speed only, never the picks).
        stats: filled with the work done, when given.

    Returns:
        [n] int64 rows of ``x`` in pick order.
    """
    x = as_float32(x, "x")
    num, dim = x.shape
    if not 1 <= n <= num:
        raise ValueError(f"n must be in [1, {num}], got {n}")
    has_centres = centres is not None and len(centres) > 0
    if not has_centres and first is None:
        raise ValueError("greedy_kcenter needs `first` when no centres are given")
    if num_cells is None:
        num_cells = 1 if num < _MIN_POINTS_FOR_CELLS else int(np.clip(num // 256, 1, 1024))
    num_cells = max(1, min(int(num_cells), num))
    stats = stats if stats is not None else KCenterStats()

    if num_cells > 1:
        assign = _cells(x, num_cells, seed)
        order = np.argsort(assign, kind="stable")
        cell_of_row = assign[order]
    else:
        order = np.arange(num)
        cell_of_row = np.zeros(num, np.int64)
    # Centring keeps xx - 2xc + cc accurate in float32 (distances are translation invariant, so a sample's
    # mean serves); the copy also lays each cell out contiguously.
    mean = x[:: max(1, num // 4096)].mean(axis=0, dtype=np.float64).astype(np.float32)
    if num_cells > 1:
        xp = x[order]
        xp -= mean
    else:
        xp = x - mean
    xx = np.einsum("ij,ij->i", xp, xp)
    cells, starts = np.unique(cell_of_row, return_index=True)
    ends = np.append(starts[1:], num)
    k = len(cells)
    cell_ids = np.repeat(np.arange(k), ends - starts)

    if has_centres:
        cen = as_float32(centres, "centres") - mean
        dist, _ = VectorIndex(dim).build(cen).search(xp, 1)
        mind = np.ascontiguousarray(np.maximum(dist[:, 0], 0))
    else:
        mind = np.full(num, np.inf, dtype=np.float32)
    if k == 1:
        return _plain_kcenter(xp, xx, mind, n, first, stats)
    centroids = np.stack([xp[s:e].mean(axis=0) for s, e in zip(starts, ends)]).astype(np.float32)
    cn = np.einsum("ij,ij->i", centroids, centroids)
    # per-cell matvecs: gathering centroids[cell_ids] would allocate another [N, D] matrix
    radius = np.array([np.sqrt(max(float((xx[s:e] - 2.0 * (xp[s:e] @ centroids[j]) + cn[j]).max()), 0.0))
                       for j, (s, e) in enumerate(zip(starts, ends))], dtype=np.float32)
    best_row = starts + np.array([np.argmax(mind[s:e]) for s, e in zip(starts, ends)], dtype=np.int64)
    bound = mind[best_row].copy()  # u_j: the largest stored distance in cell j
    # lower2[j, t]: squared lower bound on the distance from any member of cell j to centre t; [K, n] float32
    # (1024 x 10k picks = 40 MiB).
    lower2 = np.empty((k, n), np.float32)
    absorbed = np.zeros(k, np.int64)  # cell j has taken centres [0, absorbed[j]) into account

    inv = np.empty(num, np.int64)
    inv[order] = np.arange(num)
    picks = np.empty(n, np.int64)
    stats.num_cells, stats.rows_total, stats.picks = k, num, n
    for t in range(n):
        if t == 0 and not has_centres:
            p = int(inv[first])
        else:
            while True:
                j = int(np.argmax(bound))
                since, absorbed[j] = absorbed[j], t
                if since == t:
                    break
                pending = since + np.flatnonzero(lower2[j, since:t] < bound[j])
                if not len(pending):
                    break  # no pending centre can lower cell j: its bound is exact and the largest
                s, e = starts[j], ends[j]
                cp = picks[pending]
                d = xp[s:e] @ xp[cp].T  # [cell rows, pending centres]
                d *= -2.0
                d += xx[s:e, None]
                d += xx[cp][None, :]
                seg = mind[s:e]
                np.minimum(seg, d.min(axis=1), out=seg)
                a = int(np.argmax(seg))
                best_row[j], bound[j] = s + a, seg[a]
                stats.rows_scanned += int(e - s)
            p = int(best_row[j])
        picks[t] = p
        d_c = np.sqrt(np.maximum(cn - 2.0 * (centroids @ xp[p]) + xx[p], 0))
        low = np.maximum(d_c - radius, 0)
        lower2[:, t] = low * low
        mind[p] = -1.0  # never pick a centre twice (duplicates would otherwise tie at 0)
        own = cell_ids[p]
        lower2[own, t] = -1.0  # its own cell always absorbs it
        if best_row[own] == p:
            s, e = starts[own], ends[own]
            a = int(np.argmax(mind[s:e]))
            best_row[own], bound[own] = s + a, mind[s + a]
    return order[picks]


def _plain_kcenter(xp: np.ndarray, xx: np.ndarray, mind: np.ndarray, n: int, first: int | None,
                   stats: KCenterStats) -> np.ndarray:
    """One cell: one matvec per pick over the whole (centred) pool ``xp`` [N, D], nothing to prune."""
    num = len(xp)
    picks = np.empty(n, np.int64)
    stats.num_cells, stats.rows_total, stats.picks = 1, num, n
    p = int(np.argmax(mind)) if first is None else int(first)
    d = np.empty(num, np.float32)
    for t in range(n):
        picks[t] = p
        np.matmul(xp, xp[p], out=d)
        d *= -2.0
        d += xx
        d += xx[p]
        np.minimum(mind, d, out=mind)
        mind[p] = -1.0  # never pick a centre twice (duplicates would otherwise tie at 0)
        stats.rows_scanned += num
        p = int(np.argmax(mind))
    return picks
