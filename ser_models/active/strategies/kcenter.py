"""Greedy k-center (core-set) selection, exact and fast on large pools.

Greedy k-center repeatedly takes the point farthest from every centre chosen so far. Done naively, each pick
costs a pass over all N x D embeddings (N = 1M, D = 768, 10k picks is 7.7e12 flops). We keep the greedy
result exact and skip most of that work with the triangle inequality:

* the pool is split into K coarse cells (FAISS k-means on a small sample, one assignment pass) and stored
  cell by cell, so a cell is a contiguous slice (a matvec over it needs no gather);
* each cell keeps its radius ``r_j`` (farthest member from its centroid ``mu_j``) and the largest
  nearest-centre distance of its members;
* a new centre ``c`` can only lower a member's nearest-centre distance if
  ``||mu_j - c|| - r_j < max_{i in j} d_i``; other cells are skipped untouched.

Skipping never changes a distance that could have changed, so the picks equal those of the plain algorithm
(up to float32 rounding on exact ties). How much is skipped depends on the data: well-separated clusters
(typical of speech embeddings across speakers/corpora) prune most cells; an isotropic blob in high dimension
prunes little and the cost falls back to a full pass per pick (``stats`` reports the fraction scanned).
For such pools ``reduce_dim`` runs k-center on a FAISS PCA projection instead (approximate).

References:
    Sener and Savarese, 2018, "Active Learning for Convolutional Neural Networks: A Core-Set Approach".
    Gonzalez, 1985, "Clustering to minimize the maximum intercluster distance" (the greedy 2-approximation).
    Elkan, 2003, "Using the Triangle Inequality to Accelerate k-Means" (the pruning idea).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import faiss
import numpy as np

from ser_models.active.index import VectorIndex, as_float32

__all__ = ["KCenterStats", "greedy_kcenter", "pca_reduce"]

# Below this many points the bookkeeping costs more than the scan it saves (bench.selection: over 10k rows a
# plain matvec per pick beat 39 cells, 0.76 s vs 1.24 s for 1k picks).
_MIN_POINTS_FOR_CELLS = 32768
# When the cells to refresh hold more than this share of the pool, one full matvec beats a Python loop.
_FULL_SCAN_SHARE = 0.5


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
    """Project ``x`` [N, D] (and each of ``others`` [*, D]) onto ``dim`` principal axes fitted by FAISS.

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
    """Coarse cell of each row: FAISS k-means on a small sample, then one exact assignment pass."""
    km = faiss.Kmeans(x.shape[1], num_cells, niter=10, seed=seed, max_points_per_centroid=64)
    rng = np.random.default_rng(seed)
    sample = x if len(x) <= 64 * num_cells else x[np.sort(rng.choice(len(x), 64 * num_cells, replace=False))]
    km.train(as_float32(sample))
    _, assign = VectorIndex(x.shape[1]).build(km.centroids).search(x, 1)
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
        num_cells: coarse cells for pruning; None picks ``clip(N / 256, 1, 1024)`` (1 below 32768 rows).
        seed: seeds the coarse k-means (affects speed only, never the picks).
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
    # Centring keeps xx - 2xc + cc accurate in float32 (distances are translation invariant); the copy also
    # lays each cell out contiguously.
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    xp = x[order] if num_cells > 1 else x.copy()
    xp -= mean
    xx = np.einsum("ij,ij->i", xp, xp)
    cells, starts = np.unique(cell_of_row, return_index=True)
    ends = np.append(starts[1:], num)
    k = len(cells)
    cell_ids = np.repeat(np.arange(k), ends - starts)
    centroids = np.stack([xp[s:e].mean(axis=0) for s, e in zip(starts, ends)]).astype(np.float32)
    cn = np.einsum("ij,ij->i", centroids, centroids)
    # per-cell matvecs: gathering centroids[cell_ids] would allocate another [N, D] matrix
    radius = np.array([np.sqrt(max(float((xx[s:e] - 2.0 * (xp[s:e] @ centroids[j]) + cn[j]).max()), 0.0))
                       for j, (s, e) in enumerate(zip(starts, ends))], dtype=np.float32)

    if has_centres:
        cen = as_float32(centres, "centres") - mean
        dist, _ = VectorIndex(dim).build(cen).search(xp, 1)
        mind = np.ascontiguousarray(np.maximum(dist[:, 0], 0))
    else:
        mind = np.full(num, np.inf, dtype=np.float32)
    best_row = starts + np.array([np.argmax(mind[s:e]) for s, e in zip(starts, ends)], dtype=np.int64)
    best = mind[best_row].copy()

    inv = np.empty(num, np.int64)
    inv[order] = np.arange(num)
    picks = np.empty(n, np.int64)
    stats.num_cells, stats.rows_total, stats.picks = k, num, n
    for t in range(n):
        if t == 0 and not has_centres:
            p = int(inv[first])
        else:
            p = int(best_row[np.argmax(best)])
        picks[t] = p
        c = xp[p]
        cc = xx[p]
        d_c = np.sqrt(np.maximum(cn - 2.0 * (centroids @ c) + cc, 0))
        lower = np.maximum(d_c - radius, 0)
        refresh = lower * lower < best
        refresh[cell_ids[p]] = True
        idx = np.flatnonzero(refresh)
        rows = int((ends[idx] - starts[idx]).sum())
        stats.rows_scanned += rows
        if rows > _FULL_SCAN_SHARE * num:
            d = xp @ c
            d *= -2.0
            d += xx
            d += cc
            np.minimum(mind, d, out=mind)
            mind[p] = -1.0  # never pick a centre twice (duplicates would otherwise tie at 0)
            best_row = starts + np.array([np.argmax(mind[s:e]) for s, e in zip(starts, ends)], dtype=np.int64)
            best = mind[best_row]
            continue
        mind[p] = -1.0
        for j in idx:
            s, e = starts[j], ends[j]
            d = xp[s:e] @ c
            d *= -2.0
            d += xx[s:e]
            d += cc
            seg = mind[s:e]
            np.minimum(seg, d, out=seg)
            a = int(np.argmax(seg))
            best_row[j] = s + a
            best[j] = seg[a]
    return order[picks]
