"""AFTER's cold start over a pool whose pooled features stay sharded: the same initial set as in process.

:class:`~ser_models.active.strategies.ClusterColdStartStrategy` needs the whole pool only to pick its sample
and to assign every clip to a centre. Both split over shards exactly:

1. each shard offers the unlabelled clips with the smallest seeded hashes of their ids (the strategy samples
   by those keys): the merged top is the k-means sample and the PCA's training rows, whose features alone
   come back to the driver (``SAMPLE_PER_CLUSTER x k`` rows at most, never N);
2. the driver fits the projection and the centres on them, as the strategy does in process;
3. each shard assigns its clips to the centres and counts them per cluster (the clusters' sizes order the
   round-robin); the depth the round-robin reaches for ``n`` picks follows from the sizes;
4. each shard offers, per cluster, its clips nearest the centre down to that depth; merged (distance, then
   id), they hold every pick, in the round-robin's order.

A clip's distance to a centre is computed by the same FAISS search either way, so the picks match the
in-process strategy's wherever two distances are not equal to the last bit of float32 (checked over 1, 3 and
7 shards in the tests).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.active.strategies.base import random_keys
from ser_models.active.strategies.diversity import ClusterColdStartStrategy
from ser_models.exceptions import PoolExhaustedError
from ser_models.failpoints import pausepoint
from ser_models.scoring.score_shards import ScoreShards, read_shard

__all__ = ["shard_cold_start"]


def _unlabelled(path: str, excluded: pa.Array, columns: list[str]):
    """One shard's ids [U] and pooled features [U, D] (or [U, 0]) of the clips not in ``excluded``."""
    scores = read_shard(path, columns)
    ids = scores.ids.astype(str)
    if len(excluded):
        keep = ~pc.is_in(pa.array(ids, pa.string()), value_set=excluded).to_numpy(zero_copy_only=False)
        return ids[keep], scores.pooled[keep]
    return ids, scores.pooled


def _keys(path: str, excluded: pa.Array, seed: int, top: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Step 1 on one shard: ``(ids, keys)`` of its ``top`` unlabelled clips with the smallest keys, and how
    many unlabelled clips it holds."""
    pausepoint("select_shard")
    ids, _ = _unlabelled(path, excluded, [])
    keys = random_keys(ids, seed)
    best = np.lexsort((ids, keys))[:top]
    return ids[best], keys[best], len(ids)


def _sizes(path: str, excluded: pa.Array, project, centroids: np.ndarray) -> np.ndarray:
    """Step 3 on one shard: clips per cluster [k]."""
    _, x = _unlabelled(path, excluded, ["pooled"])
    if not len(x):
        return np.zeros(len(centroids), np.int64)
    assign, _ = ClusterColdStartStrategy.assign(project(x), centroids)
    return np.bincount(assign, minlength=len(centroids))


def _nearest(path: str, excluded: pa.Array, project, centroids: np.ndarray, depth: int):
    """Step 4 on one shard: per cluster, its ``depth`` clips nearest the centre (distance, then id):
    ``(ids, cluster, distance)``."""
    ids, x = _unlabelled(path, excluded, ["pooled"])
    if not len(x):
        return ids, np.zeros(0, np.int64), np.zeros(0, np.float32)
    assign, dist = ClusterColdStartStrategy.assign(project(x), centroids)
    order = np.lexsort((ids, dist, assign))
    sorted_assign = assign[order]
    starts = np.r_[0, np.flatnonzero(sorted_assign[1:] != sorted_assign[:-1]) + 1]
    within = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = order[within < depth]
    return ids[keep], assign[keep], dist[keep]


def shard_cold_start(shards: ScoreShards, strategy: ClusterColdStartStrategy, n: int, excluded: set[str],
                     seed: int) -> list[str]:
    """The initial set ``strategy`` picks over sharded scores that carry the ``pooled`` column.

    Args:
        shards: the cold start's scores (``score_to_shards(keep_pooled=True)``).
        strategy: the cold start's settings (clusters, iterations, PCA).
        n: clips to pick.
        excluded: ids never picked (clips the oracle cannot label).
        seed: fixes the sample, the projection and the k-means.

    Returns:
        ``n`` ids in pick order: the in-process strategy's picks over the same pool.

    Raises:
        PoolExhaustedError: fewer than ``n`` unlabelled clips.
    """
    out = pa.array(sorted(excluded), pa.string())
    top = max(strategy.SAMPLE_PER_CLUSTER * strategy.max_clusters, strategy.PCA_TRAIN)
    offers = shards.map(_keys, out, int(seed), top)
    unlabelled = sum(o[2] for o in offers)
    if n > unlabelled:
        raise PoolExhaustedError(f"{strategy!r} was asked for {n} clips but only {unlabelled} of the {len(shards)} "
                                 "scored clips can be labelled; lower the batch size or the budget")
    k = strategy.clusters(n, unlabelled)
    ids = np.concatenate([o[0] for o in offers]).astype(str)
    keys = np.concatenate([o[1] for o in offers])
    first = ids[np.lexsort((ids, keys))]
    pca_size, sample_size = strategy.sample_sizes(k, unlabelled)
    rows = shards.rows_of(first[:max(pca_size, sample_size)])  # sorted by id
    have = rows.ids.astype(str)
    pca_x = rows.pooled[np.isin(have, first[:pca_size])]
    sample = rows.pooled[np.isin(have, first[:sample_size])]
    project, centroids = strategy.fit(pca_x, sample, k, unlabelled, seed)
    sizes = np.sum(shards.map(_sizes, out, project, centroids), axis=0)
    depth = strategy.levels(sizes, n)
    parts = shards.map(_nearest, out, project, centroids, depth)
    ids = np.concatenate([p[0] for p in parts]).astype(str)
    order = np.argsort(ids, kind="stable")  # pool order: ties between equal distances go to the smaller id
    assign = np.concatenate([p[1] for p in parts])[order]
    dist = np.concatenate([p[2] for p in parts])[order]
    picks = strategy.round_robin(assign, dist, np.arange(len(order)), k, n, sizes=sizes)
    return ids[order][picks].tolist()
