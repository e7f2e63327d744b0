"""Seedings drawn pick by pick over sharded scores: BADGE's k-means++ over a pool no machine holds, the same picks.

A k-means++ pick is drawn with probability proportional to each clip's squared distance to the nearest earlier
pick. :class:`~ser_models.active.strategies.diversity.BadgeSeeding` draws it as an exponential race whose draws
depend on the clip's id, the seed and the pick's number only, so the pool's pick is the smallest of the
shards' offers. Each shard's unlabelled clips are held by a *share* (a Ray actor on the cluster, or this
process for a few shards), which keeps each clip's distance to the picks so far. Per pick:

1. every share offers its best clip (its race key, its id, and what the others need to absorb it);
2. the driver takes the smallest offer (ties by id, as the pool's id order breaks them in process);
3. every share absorbs the pick, the one that offered it marks it taken, and each offers again.

The driver holds one offer per share; the shares (one per CPU of the cluster, each reserving a sliver of one)
hold the pool's probabilities and embeddings (in float64, as the in-process seeding does) spread over the
cluster. A share lost with its node makes the walk start again from the first pick on fresh shares: the draws
are the same, so are the picks (each row's products are computed alone, never in a BLAS call whose rounding
could depend on the shard).

References:
    Arthur and Vassilvitskii, 2007, "k-means++: The Advantages of Careful Seeding".
    Efraimidis and Spirakis, 2006, "Weighted random sampling with a reservoir" (the exponential race).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.active.strategies.base import QueryStrategy, exhausted
from ser_models.exceptions import PoolError
from ser_models.failpoints import pausepoint
from ser_models.scoring.score_shards import SHARD_TASK_RETRIES, ScoreShards, read_shard

__all__ = ["SHARE_CPUS", "SHARE_START_S", "seeded_picks"]

log = logging.getLogger(__name__)

#: CPU each share reserves. A sliver: every pick waits for every share, so none may wait long for a CPU another
#: job holds; but some, so that shares run where the cluster runs work (a head node with no CPUs keeps them off).
SHARE_CPUS = 0.01
#: Seconds the shares have to start and read their shards before the query fails (a cluster with no room for them).
SHARE_START_S = 600.0


class Share:
    """The seedings of some shards' unlabelled clips, one per shard (the driver's, or one Ray actor's).

    Args:
        paths: the shards.
        strategy: a strategy with a ``seeding(scores, seed)`` (a stepwise shard plan).
        out: the excluded ids (Arrow strings).
        seed: the query's seed.
    """

    def __init__(self, paths: list[str], strategy, out: pa.Array, seed: int):
        self.parts, self.rows, self.excluded = [], 0, 0
        for path in paths:
            pausepoint("seed_shard")  # node-loss tests remove this share's node here
            scores = read_shard(path)
            ids = pa.array(scores.ids.astype(str), pa.string())
            gone = pc.is_in(ids, value_set=out).to_numpy(zero_copy_only=False) if len(out) else \
                np.zeros(len(ids), bool)
            self.rows += len(ids)
            self.excluded += int(gone.sum())
            if not gone.all():
                self.parts.append(strategy.seeding(scores.take(np.flatnonzero(~gone)), seed))
        self.last: tuple[int, int] | None = None  # (part, row) of this share's standing offer

    def counts(self) -> tuple[int, int]:
        """``(clips, excluded clips)`` of this share's shards."""
        return self.rows, self.excluded

    def step(self, pick=None, winner: str | None = None) -> tuple | None:
        """Absorb the last ``pick`` (marking it taken when ``winner`` is this share's offer), then offer again.

        Returns:
            ``(key, id, pick)`` of this share's best clip, or None when it has none left.
        """
        if pick is not None:
            if self.last is not None and winner == str(self.parts[self.last[0]].ids[self.last[1]]):
                self.parts[self.last[0]].take(self.last[1])
            for part in self.parts:
                part.absorb(pick)
        best = None
        for i, part in enumerate(self.parts):
            offer = part.offer()
            if offer is None:
                continue
            key, row = offer
            rank = (key, str(part.ids[row]))
            if best is None or rank < best[0]:
                best = (rank, i, row)
        if best is None:
            self.last = None
            return None
        (key, uid), i, row = best
        self.last = (i, row)
        return key, uid, self.parts[i].centre(row)


def _groups(shards: ScoreShards, count: int) -> list[list[str]]:
    """``shards`` in ``count`` groups of about equal rows (largest first into the lightest group)."""
    groups, load = [[] for _ in range(count)], np.zeros(count)
    for i in np.argsort(-np.asarray(shards.rows), kind="stable"):
        g = int(np.argmin(load))
        groups[g].append(shards.paths[i])
        load[g] += shards.rows[i]
    return [g for g in groups if g]


def _caller(shares: list, ray) -> Callable:
    """``call(method, *args)``: ``method`` of every share, their results in order (Ray actors when ``ray``)."""
    if ray is None:
        return lambda name, *args: [getattr(s, name)(*args) for s in shares]
    return lambda name, *args: ray.get([getattr(s, name).remote(*args) for s in shares])


def _started(ray, shares: list, num_shards: int) -> None:
    """Wait until every share has read its shards.

    Raises:
        PoolError: some share did not start within :data:`SHARE_START_S` (no node can place it).
    """
    _, pending = ray.wait([s.counts.remote() for s in shares], num_returns=len(shares), timeout=SHARE_START_S)
    if pending:
        raise PoolError(f"{len(pending)} of the {len(shares)} Ray actors that hold the {num_shards} score shards for "
                        f"the selection did not start within {SHARE_START_S:g} s: the cluster has no node with "
                        f"{SHARE_CPUS} CPU and the memory to spare. Free a node, or run with fewer shards "
                        "(active.selection.rows_per_shard) or in process (active.selection.shard_above_clips)")


def _walk(call: Callable, strategy: QueryStrategy, n: int) -> list[str]:
    """The ``n`` picks: the smallest offer of every share, pick by pick."""
    counts = call("counts")
    rows, labelled = sum(c[0] for c in counts), sum(c[1] for c in counts)
    if n > rows - labelled:
        raise exhausted(strategy, n, rows, labelled)
    offers, picks = call("step"), []
    while len(picks) < n:
        key, uid, pick = min((o for o in offers if o is not None), key=lambda o: (o[0], o[1]))
        picks.append(uid)
        if len(picks) < n:
            offers = call("step", pick, uid)
    return picks


def seeded_picks(shards: ScoreShards, strategy: QueryStrategy, n: int, out: pa.Array, seed: int) -> list[str]:
    """``strategy``'s ``n`` picks over ``shards``, drawn pick by pick: those of the whole pool, in its order.

    Args:
        shards: the round's committed scores.
        strategy: a strategy with a stepwise shard plan (``seeding(scores, seed)``).
        n: the batch size.
        out: the excluded ids (the ledger, unlabelable and held-out clips), Arrow strings.
        seed: the query's seed.

    Returns:
        ``n`` clip ids in pick order.

    Raises:
        PoolExhaustedError: fewer than ``n`` unlabelled clips are scored.
        PoolError: the shares did not start within :data:`SHARE_START_S`.
    """
    if shards.runs_here:
        return _walk(_caller([Share(shards.paths, strategy, out, int(seed))], None), strategy, n)
    ray = sys.modules["ray"]
    out_ref = ray.put(out)
    for attempt in range(SHARD_TASK_RETRIES + 1):
        # One share per CPU of the cluster. SPREAD: the shares read shared storage and hold their clips, so every
        # node takes a part of both.
        cpus = int(ray.cluster_resources().get("CPU", 1))
        actor = ray.remote(Share).options(num_cpus=SHARE_CPUS, scheduling_strategy="SPREAD")
        shares = [actor.remote(group, strategy, out_ref, int(seed))
                  for group in _groups(shards, max(1, min(cpus, len(shards))))]
        try:
            _started(ray, shares, len(shards))
            return _walk(_caller(shares, ray), strategy, n)
        except ray.exceptions.RayActorError as err:
            if attempt == SHARD_TASK_RETRIES or err.actor_init_failed:  # a share that cannot start never will
                raise
            log.warning("a seeding share was lost (%s); drawing the %d picks again on fresh shares", err, n)
        finally:
            for s in shares:
                ray.kill(s)
    raise AssertionError("unreachable")
