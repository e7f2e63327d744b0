"""Diversity strategies over embeddings: k-center, informative+diverse (the default), BADGE, k-means."""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

from ser_models.active.index import VectorIndex, as_float32
from ser_models.active.strategies.base import (
    QueryStrategy,
    ShardPlan,
    TopK,
    random_keys,
    rank_desc,
    uncertainty_scores,
)
from ser_models.active.strategies.kcenter import KCenterStats, greedy_kcenter, pca_reduce
from ser_models.data.id_keys import key_uniforms
from ser_models.scoring.scored_pool import ScoredPool

__all__ = ["BadgeSeeding", "BadgeStrategy", "ClusterColdStartStrategy", "InformativeDiverseStrategy", "KCenterStrategy",
           "KMeansStrategy", "badge_kmeanspp"]


def _rows_of(embeddings: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``embeddings[rows]``, without the gather (a copy of the whole [N, E] matrix at 1M clips) when ``rows``
    is every row in pool order."""
    identity = len(rows) == len(embeddings) and bool(np.array_equal(rows, np.arange(len(rows))))
    return embeddings if identity else embeddings[rows]


def _kcenter(scored: ScoredPool, rows: np.ndarray, labelled: np.ndarray, n: int, first: int | None,
             reduce_dim: int | None, seed: int, stats: KCenterStats | None) -> np.ndarray:
    # No gather when the rows are the pool in pool order (it would copy the whole [N, E] matrix for nothing).
    # A prefilter covering the whole pool hands over every row in *uncertainty* order: picks index into
    # `rows`, so that order must be the embeddings' order too.
    x = _rows_of(scored.embeddings, rows)
    centres = scored.embeddings[labelled] if len(labelled) else None
    if reduce_dim is not None and reduce_dim < x.shape[1]:
        x, (c,) = pca_reduce(x, [centres if centres is not None else x[:0]], reduce_dim, seed)
        centres = c if len(c) else None
    return rows[greedy_kcenter(x, n, centres=centres, first=first, seed=seed, stats=stats)]


class KCenterStrategy(QueryStrategy):
    """Greedy core-set: each pick is the unlabelled clip farthest from the labelled set and earlier picks.

    Labelled clips present in the scored pool are the initial centres (their distances come from one FAISS
    k=1 search). With none, the first pick is a uniformly random unlabelled clip drawn with ``seed`` (a
    random start keeps a cold-start batch from always opening on the same outlier).

    Args:
        reduce_dim: run on a PCA projection of this many dimensions (approximate; for multi-million pools),
            None = exact in the full embedding dimension.

    References:
        Sener and Savarese, 2018, "Active Learning for Convolutional Neural Networks: A Core-Set Approach".
    """

    name = "kcenter"

    def __init__(self, reduce_dim: int | None = None, num_threads: int | None = None):
        super().__init__(num_threads)
        self.reduce_dim = reduce_dim
        self.last_stats: KCenterStats | None = None

    def shard_plan(self, n):
        return ShardPlan(centres=True, local=True)

    def _select(self, scored, candidates, labelled, n, seed):
        first = None if len(labelled) else int(np.random.default_rng(seed).integers(len(candidates)))
        self.last_stats = KCenterStats()
        return _kcenter(scored, candidates, labelled, n, first, self.reduce_dim, seed, self.last_stats)

    def _params(self):
        return {"reduce_dim": self.reduce_dim}


class InformativeDiverseStrategy(QueryStrategy):
    """Default: keep the ``prefilter_factor * n`` most uncertain clips, then k-center ``n`` of them.

    Uncertainty alone fills a batch with near-duplicates from one confusing region; k-center alone spends
    labels on easy outliers. The prefilter keeps only informative clips, the core-set step spreads the
    batch over them, with the labelled clips of the pool as existing centres. With nothing labelled the first
    pick is the most uncertain clip. This is where we go beyond AFTER, whose loop ranks by uncertainty only.

    Args:
        score: uncertainty score name (``active.strategy.uncertainty``).
        prefilter_factor: M = prefilter_factor * n clips survive the prefilter (capped at the pool).
        reduce_dim: as for :class:`KCenterStrategy`.

    References:
        Sener and Savarese, 2018 (core-set); Ash et al., 2020 (uncertainty + diversity);
        Citovsky et al., 2021, "Batch Active Learning at Scale" (prefilter, then diversify).
    """

    name = "informative_diverse"

    def __init__(self, score: str = "entropy", prefilter_factor: int = 10, reduce_dim: int | None = None,
                 num_threads: int | None = None):
        super().__init__(num_threads)
        self.score, self.prefilter_factor, self.reduce_dim = score, prefilter_factor, reduce_dim
        self.last_stats: KCenterStats | None = None

    def _select(self, scored, candidates, labelled, n, seed):
        u = uncertainty_scores(scored, self.score, repr(self))[candidates]
        m = min(len(candidates), self.prefilter_factor * n)
        top = candidates[rank_desc(u)[:m]]
        self.last_stats = KCenterStats()
        # top[0] is the most uncertain clip; kcenter rows are indices into `top`.
        return _kcenter(scored, top, labelled, n, 0 if not len(labelled) else None, self.reduce_dim, seed,
                        self.last_stats)

    def shard_plan(self, n):
        # The prefilter is a top-M (mergeable); k-center then runs on those M with the labelled clips as centres.
        return ShardPlan((TopK(self.score, self.prefilter_factor * n),), centres=True)

    def _params(self):
        return {"score": self.score, "prefilter_factor": self.prefilter_factor, "reduce_dim": self.reduce_dim}


class BadgeSeeding:
    """BADGE's k-means++ seeding over some rows of a pool, one pick at a time: a pool's rows, or one shard's.

    Gradient embeddings ``g_i = a_i h_i^T`` are never built: ``||g_i - g_j||^2 = ||a_i||^2 ||h_i||^2 +
    ||a_j||^2 ||h_j||^2 - 2 (a_i.a_j)(h_i.h_j)``, so a pick costs one [N, C] and one [N, E] matvec, not an
    [N, C*E] one. The first pick is the largest gradient (``argmax ||g_i||``); each later one is drawn with
    probability proportional to the squared distance to the nearest pick, by an exponential race: row ``i``
    draws ``E_i = -log u_i`` with ``u_i`` a uniform of its id, the seed and the pick's number
    (:func:`~ser_models.data.id_keys.key_uniforms`), and the smallest ``E_i / d_i^2`` wins (Efraimidis and
    Spirakis, 2006). A row's draw never depends on the other rows, so the pool's pick is the smallest of the
    shards' offers (:mod:`ser_models.active.sharded_seeding`), and seeding again over rows that hold the picks
    draws the same picks in the same order.

    Args:
        a: [N, C] ``p - onehot(argmax p)``.
        h: [N, E] penultimate embeddings.
        ids: [N] the rows' clip ids, sorted (ties go to the smaller id).
        seed: seeds the draws.
    """

    def __init__(self, a: np.ndarray, h: np.ndarray, ids: np.ndarray, seed: int):
        self.a = np.asarray(a, dtype=np.float64)
        self.h = np.asarray(h, dtype=np.float64)
        self.ids = np.asarray(ids)
        self.keys = random_keys(self.ids, seed)
        self.sq = np.einsum("ij,ij->i", self.a, self.a) * np.einsum("ij,ij->i", self.h, self.h)
        self.d2 = np.full(len(self.a), np.inf)
        self.chosen = np.zeros(len(self.a), bool)
        self.step = 0

    def offer(self) -> tuple[tuple[int, float], int] | None:
        """This share's best row for the next pick: ``((tier, key), row)``, smaller first; None once every row is
        picked. Tier 0 is the first pick (key ``-||g||^2``), tier 1 the race over rows away from every pick,
        tier 2 a uniform race when every row left duplicates a pick."""
        free = ~self.chosen
        if not free.any():
            return None
        if self.step == 0:
            row = int(np.argmax(self.sq))
            return (0, -float(self.sq[row])), row
        race = -np.log(key_uniforms(self.keys, self.step))
        live = free & (self.d2 > 0)
        tier = 1 if live.any() else 2
        key = np.where(live, race / np.where(live, self.d2, 1.0), np.inf) if tier == 1 else \
            np.where(free, race, np.inf)
        row = int(np.argmin(key))
        return (tier, float(key[row])), row

    def centre(self, row: int) -> tuple[np.ndarray, np.ndarray, float]:
        """``row``'s ``(a, h, ||g||^2)``: what every share absorbs when it is picked."""
        return self.a[row], self.h[row], float(self.sq[row])

    def take(self, row: int) -> None:
        """Mark ``row`` picked (it is never offered again)."""
        self.chosen[row] = True

    def absorb(self, pick: tuple[np.ndarray, np.ndarray, float]) -> None:
        """Lower each row's squared distance to its nearest pick by the new ``pick`` (any share's)."""
        a, h, sq = pick
        # einsum, not a BLAS matvec: a row's product must not depend on how many rows share the call (a BLAS
        # kernel's may, in the last bit), or a duplicate of a pick could race in another tier on another shard
        cross = np.einsum("ij,j->i", self.a, a) * np.einsum("ij,j->i", self.h, h)
        np.minimum(self.d2, np.maximum(self.sq + sq - 2.0 * cross, 0.0), out=self.d2)
        self.step += 1


def badge_kmeanspp(a: np.ndarray, h: np.ndarray, n: int, seed: int, *, ids: np.ndarray) -> np.ndarray:
    """k-means++ seeding over gradient embeddings ``g_i = a_i h_i^T`` (:class:`BadgeSeeding` over every row).

    Args:
        a: [N, C] ``p - onehot(argmax p)``.
        h: [N, E] penultimate embeddings.
        n: picks (<= N).
        seed: seeds the draws.
        ids: [N] clip ids, sorted (each clip's draws depend on its id).

    Returns:
        [n] int64 row indices in pick order.
    """
    seeding = BadgeSeeding(a, h, ids, seed)
    picks = []
    for _ in range(n):
        _, row = seeding.offer()
        picks.append(row)
        seeding.take(row)
        seeding.absorb(seeding.centre(row))
    return np.asarray(picks, dtype=np.int64)


def badge_parts(probs: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """BADGE's ``a = p - onehot(argmax p)`` [N, C] (float64) and ``h`` = the embeddings [N, E]."""
    a = np.asarray(probs, dtype=np.float64).copy()
    if len(a):
        a[np.arange(len(a)), a.argmax(axis=1)] -= 1.0
    return a, embeddings


class BadgeStrategy(QueryStrategy):
    """BADGE: k-means++ seeding over hallucinated last-layer gradient embeddings.

    Gradient magnitude carries uncertainty, k-means++ spreading carries diversity. Uses
    ``scored.grad_embedding_parts`` when the scorer provides them, else ``a = p - onehot(argmax p)`` and
    ``h = embeddings``. Over sharded scores it draws pick by pick over every shard: the same picks.

    References:
        Ash et al., 2020, "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds" (ICLR).
        Arthur and Vassilvitskii, 2007, "k-means++: The Advantages of Careful Seeding".
    """

    name = "badge"

    def shard_plan(self, n):
        # Pick by pick over every shard (exact); a recording cap around it goes two rounds (local).
        return ShardPlan(local=True, stepwise=True)

    def seeding(self, scores, seed: int) -> BadgeSeeding:
        """The seeding of one shard's unlabelled clips (:class:`~ser_models.scoring.scorer.Scores`, sorted by id)."""
        a, h = badge_parts(scores.probs, scores.embedding)
        return BadgeSeeding(a, h, scores.ids.astype(str), seed)

    def _select(self, scored: ScoredPool, candidates, labelled, n, seed):
        if scored.grad_embedding_parts is not None:
            a, h = (v[candidates] for v in scored.grad_embedding_parts)
        else:
            a, h = badge_parts(scored.probs[candidates], scored.embeddings[candidates])
        return candidates[badge_kmeanspp(a, h, n, seed, ids=np.asarray(scored.ids)[candidates])]


def _kmeans(x: np.ndarray, k: int, iters: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FAISS k-means on all rows (no silent 256-per-centroid subsample); returns centroids, assign, sq dist."""
    x = as_float32(x)
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, max_points_per_centroid=max(256, len(x)),
                      min_points_per_centroid=1, verbose=False)
    km.train(x)
    dist, assign = VectorIndex(x.shape[1]).build(km.centroids).search(x, 1)
    return km.centroids, assign[:, 0], dist[:, 0]


class KMeansStrategy(QueryStrategy):
    """k-means with n clusters over the unlabelled embeddings; one clip per cluster.

    Per cluster the most uncertain clip (``pick="uncertain"``) or the one nearest the centroid
    (``pick="central"``). Clusters that end up empty leave slots, filled by the most uncertain clips not yet
    taken, so exactly n come back.

    References:
        Zhdanov, 2019, "Diverse mini-batch Active Learning"; Citovsky et al., 2021.
    """

    name = "kmeans"

    def __init__(self, score: str = "entropy", pick: str = "uncertain", iters: int = 20,
                 num_threads: int | None = None):
        super().__init__(num_threads)
        self.score, self.pick, self.iters = score, pick, iters

    def _select(self, scored, candidates, labelled, n, seed):
        u = uncertainty_scores(scored, self.score, repr(self))[candidates]
        if n == len(candidates):
            return candidates[rank_desc(u)]
        _, assign, dist = _kmeans(scored.embeddings[candidates], n, self.iters, seed)
        key = -u if self.pick == "uncertain" else dist
        order = np.lexsort((np.arange(len(candidates)), key, assign))  # by cluster, then best key, then pool order
        first_of_cluster = np.r_[True, assign[order][1:] != assign[order][:-1]]
        chosen = order[first_of_cluster]
        if len(chosen) < n:
            taken = np.zeros(len(candidates), bool)
            taken[chosen] = True
            rest = [i for i in rank_desc(u) if not taken[i]]
            chosen = np.concatenate([chosen, rest[: n - len(chosen)]]).astype(np.int64)
        return candidates[chosen[:n]]

    def shard_plan(self, n):
        return ShardPlan(local=True)

    def _params(self):
        return {"score": self.score, "pick": self.pick, "iters": self.iters}


@dataclass(frozen=True)
class Projection:
    """``y = x A^T + b``: a fitted PCA as plain arrays (``A`` [D', D], ``b`` [D']), so it travels to shard tasks
    and projects every row the same way there as here; no matrix = the identity."""

    matrix: np.ndarray | None = None
    bias: np.ndarray | None = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = as_float32(x)
        if self.matrix is None:
            return x
        return np.ascontiguousarray(x @ self.matrix.T + self.bias, dtype=np.float32)


class ClusterColdStartStrategy(QueryStrategy):
    """AFTER's initial set: k-means over embeddings, the clip nearest each centre, round-robin to fill n.

    Needs no model: usable before anything is labelled. Clusters are visited largest first; within each,
    clips are taken nearest-centre first, one cluster at a time, until n are chosen.

    Scale: AFTER's k = n would be k-means with 50k centres at 1M clips and a 5 % budget (hours). Here k is
    capped at ``max_clusters``, the centroids are fitted on a seeded sample of ``SAMPLE_PER_CLUSTER * k``
    rows (the smallest seeded hashes of the ids, so a sharded pool samples the same rows:
    :mod:`ser_models.active.sharded_cold_start`), and pools above ``REDUCE_ABOVE`` clips are clustered on a
    ``reduce_dim``-d PCA projection; then
    one exact assignment pass over every clip and the round-robin fill (about n / k clips per cluster,
    nearest-centre first). On small pools (k <= max_clusters, N <= REDUCE_ABOVE) nothing is approximated
    but the k-means sample. ``bench/cold_start.py`` times N = 1M x 768.

    Args:
        num_clusters: None = n (one clip per cluster), capped at ``max_clusters``.
        max_clusters: the cap on k.
        reduce_dim: PCA dimensions for pools above ``REDUCE_ABOVE`` clips (None = full dimension).

    References:
        Li et al., 2023, "AFTER: Active Learning Based Fine-Tuning Framework for Speech Emotion Recognition" (ASRU).
    """

    name = "cluster_cold_start"
    #: k-means is fitted on at most this many rows per centre (FAISS's own default subsample is 256).
    SAMPLE_PER_CLUSTER = 128
    #: Pools larger than this are clustered on a PCA projection.
    REDUCE_ABOVE = 100_000
    #: The PCA is fitted on this many rows (fitting on all 1M rows buys nothing for a 64-d projection).
    PCA_TRAIN = 50_000

    def __init__(self, num_clusters: int | None = None, iters: int = 20, max_clusters: int = 1024,
                 reduce_dim: int | None = 64, num_threads: int | None = None):
        super().__init__(num_threads)
        self.num_clusters, self.iters = num_clusters, iters
        self.max_clusters, self.reduce_dim = max_clusters, reduce_dim

    def _select(self, scored, candidates, labelled, n, seed):
        k = self.clusters(n, len(candidates))
        x = as_float32(_rows_of(scored.embeddings, candidates))
        # Samples by the smallest seeded hashes of the ids (in pool order): the same rows whether the pool is
        # whole or in shards (ser_models.active.sharded_cold_start).
        first = np.lexsort((np.arange(len(candidates)), random_keys(scored.ids[candidates], seed)))
        pca_rows, sample_rows = (np.sort(first[:size]) for size in self.sample_sizes(k, len(candidates)))
        project, centroids = self.fit(x[pca_rows], x[sample_rows], k, len(candidates), seed)
        assign, dist = self.assign(project(x), centroids)
        return candidates[self.round_robin(assign, dist, np.arange(len(candidates)), k, n)]

    def clusters(self, n: int, unlabelled: int) -> int:
        """k: ``num_clusters`` (None = n), capped at ``max_clusters`` and at the unlabelled clips."""
        return min(self.num_clusters or n, self.max_clusters, unlabelled)

    def sample_sizes(self, k: int, unlabelled: int) -> tuple[int, int]:
        """``(PCA training rows, k-means sample rows)`` among ``unlabelled`` clips."""
        return min(unlabelled, self.PCA_TRAIN), min(unlabelled, self.SAMPLE_PER_CLUSTER * k)

    def fit(self, pca_x: np.ndarray, sample: np.ndarray, k: int, unlabelled: int, seed: int):
        """``(project, centroids [k, D'])``: the PCA projection (fitted on ``pca_x``, on pools above
        ``REDUCE_ABOVE`` clips; else the identity) and the k-means centres of the projected ``sample``."""
        project = Projection()
        if self.reduce_dim is not None and unlabelled > self.REDUCE_ABOVE and sample.shape[1] > self.reduce_dim:
            pca = faiss.PCAMatrix(sample.shape[1], self.reduce_dim)
            pca.train(as_float32(pca_x))
            project = Projection(faiss.vector_to_array(pca.A).reshape(self.reduce_dim, sample.shape[1]),
                                 faiss.vector_to_array(pca.b))
        sample = project(sample)
        km = faiss.Kmeans(sample.shape[1], k, niter=self.iters, seed=seed, max_points_per_centroid=len(sample),
                          min_points_per_centroid=1, verbose=False)
        km.train(sample)
        return project, km.centroids

    @staticmethod
    def assign(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(nearest centre [N], squared distance to it [N])`` of each projected row."""
        dist, assign = VectorIndex(x.shape[1]).build(centroids).search(x, 1)
        return assign[:, 0], dist[:, 0]

    @staticmethod
    def levels(sizes: np.ndarray, n: int) -> int:
        """How deep the round-robin goes into the clusters for ``n`` picks: the fewest nearest-first levels
        whose clips number at least ``n`` (every pick is among each cluster's ``levels`` nearest clips)."""
        depth = 1
        while np.minimum(sizes, depth).sum() < n:
            depth += 1
        return depth

    @staticmethod
    def round_robin(assign: np.ndarray, dist: np.ndarray, tie: np.ndarray, k: int, n: int,
                    sizes: np.ndarray | None = None) -> np.ndarray:
        """The first ``n`` rows of the round-robin: level by level (nearest first, ties by ``tie``: pool order),
        the clusters largest first (``sizes``: the whole pool's, when the rows are only its nearest)."""
        sizes = np.bincount(assign, minlength=k) if sizes is None else sizes
        cluster_rank = np.empty(k, np.int64)
        cluster_rank[np.lexsort((np.arange(k), -sizes))] = np.arange(k)
        order = np.lexsort((tie, dist, assign))
        within = np.empty(len(assign), np.int64)  # position of each clip inside its cluster (0 = nearest)
        sorted_assign = assign[order]
        starts = np.r_[0, np.flatnonzero(sorted_assign[1:] != sorted_assign[:-1]) + 1]
        within[order] = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        return np.lexsort((cluster_rank[assign], within))[:n]

    def _params(self):
        return {"num_clusters": self.num_clusters, "iters": self.iters, "max_clusters": self.max_clusters,
                "reduce_dim": self.reduce_dim}
