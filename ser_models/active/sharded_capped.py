"""A recording cap over sharded scores: the rows that hold every pick of the capped query, found shard by shard.

:class:`~ser_models.active.strategies.capped.GroupCap` walks its inner strategy's picks, keeps at most ``cap``
per recording, and asks again with the clips of full recordings skipped, so its picks reach past the inner
strategy's top ``n``. When rankings hold the inner strategy's picks (random, the uncertainty scores,
informative_diverse's prefilter, class-balanced quotas, ``auto`` over those), each call of the walk takes the
top of every ranking among the clips it is not told to skip (the ledger, the picks so far, the clips of full
recordings). So the walk over a few rows gives the whole pool's picks when those rows hold, for each ranking,
its top ``K`` unlabelled clips, and at the walk's last call each ranking (each class of a per-class ranking)
either was complete (fewer than ``K``: every clip it has) or still held the ``k`` clips the inner strategy's
plan asks for outside the skipped ones: every earlier call skipped fewer. Then each call sees the same top and
the same count of clips left, so it asks for as many and gets the same answer. A walk that stopped short of
``n`` (no clip of an open recording left) is checked where it stopped: the rows must then hold every clip. An
inner strategy that reads the rows of the clips it skips (informative_diverse's k-center takes them as existing
centres, so the gathered round counts a full recording as covered) also gets every scored clip of each
recording that was full at that call. When a ranking ran short, ``K`` grows fourfold and
the shards are ranked again, up to the whole pool (a ranking then holds every clip).

An inner strategy with a two-round plan (k-center, k-means, BADGE, greedy sampling) goes two rounds under the cap
too: each shard offers the strategy's picks among its own clips (the labelled clips as centres; the shards never
look up recordings), then the capped walk runs on the union of the offers, with the recordings looked up for
those clips alone. When the walk falls short of the batch (the offers crowd into a few recordings), the shards
offer again from the clips of open recordings. It is approximate, as the strategy is uncapped, and a little
more: the gathered walk counts every clip of a full recording as covered (a k-center centre), this one only
the clips it was offered.

``auto`` over such a candidate chooses first, from its replay over the labelled clips (as the uncapped sharded
query does); the chosen candidate then runs capped in its own sharded form, and the labelled clips' rows go back
with its rows, for the replay the capped walk runs again.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.active.sharded_selection import (
    Ranked,
    auto_choice,
    candidate_rows,
    centre_rows,
    costs_of,
    rank_shards,
    with_centres,
)
from ser_models.active.strategies.base import ShardPlan
from ser_models.active.strategies.capped import GroupCap
from ser_models.scoring.score_shards import ScoreShards
from ser_models.scoring.scored_pool import ScoredPool
from ser_models.scoring.scorer import Scores

__all__ = ["GROWTH", "capped_candidates"]

#: How much deeper every ranking goes when one ran short of the walk.
GROWTH = 4


def _short(ranked: Ranked, need: int, skipped: frozenset[str]) -> bool:
    """Whether a ranking (a class of it, when per class) is cut off (``K`` long) and holds fewer than ``need``
    clips outside ``skipped``: the walk may have wanted a clip beyond it."""
    lists = [ranked.ids] if ranked.classes is None else \
        [ranked.ids[ranked.classes == c] for c in np.unique(ranked.classes)]
    return any(len(ids) >= ranked.top.k and sum(u not in skipped for u in ids.tolist()) < need for ids in lists)


def _scored(rows: Scores, costs: pa.Table | None, annotate) -> ScoredPool:
    """``rows`` as the loop hands a pool to a strategy: the ledger's values and classes, the clips' costs."""
    targets, labels = annotate(rows) if annotate is not None else (None, None)
    ids = pa.array(rows.ids.astype(str), pa.string())
    return rows.as_scored_pool(targets, costs=costs_of(ids, costs), labels=labels)


def capped_candidates(shards: ScoreShards, capped: GroupCap, n: int, excluded: set[str], seed: int,
                      costs: pa.Table | None = None, annotate=None) -> Scores:
    """The scores of every clip ``capped`` could pick for a batch of ``n`` (and of the clips its inner strategy
    reads), found over ``shards``; ``capped.query`` on them picks what it picks on the whole pool.

    Args:
        shards: the round's committed scores.
        capped: a recording cap with a sharded form (``capped.shard_plan(n)`` not None: a ranking plan, exact, or
            a two-round one, approximate); its :class:`~ser_models.active.strategies.capped.Groups` are asked
            about these rows only.
        n: the batch size.
        excluded: ids that are never picked (the ledger, unlabelable and held-out clips).
        seed: the query's seed.
        costs: ``utt_id, seconds`` of every clip for cost-aware scores, or None.
        annotate: ``scores -> (targets [M, K] or None, labels [M] or None)``: the ledger's dimensional values and
            classes of those rows, as the caller hands them to the strategy (None: neither).

    Returns:
        :class:`Scores` of those rows, sorted by id.

    Raises:
        PoolExhaustedError: fewer than ``n`` unlabelled clips are scored.
        ValueError: the cap has no sharded form.
    """
    plan = capped.shard_plan(n)
    if plan is None and not capped.sharded(n):
        raise ValueError(f"{capped!r} has no sharded form")
    out = pa.array(sorted(excluded), pa.string())
    if plan is None:  # auto over a two-round candidate: choose from the labelled clips, then cap the chosen one
        centres = centre_rows(shards, out, annotate) if len(out) else None
        chosen = GroupCap(auto_choice(capped.inner, n, seed, centres, annotate), capped.groups, capped.cap)
        # auto's replay in the walk reads the labelled clips again: they go back with the chosen one's rows
        return with_centres(capped_candidates(shards, chosen, n, excluded, seed, costs, annotate), centres)
    if plan.local:
        return _two_round(shards, capped, plan, n, out, excluded, seed, costs, annotate)
    grow, ranked, members, fetched = 1, None, set(), frozenset()
    while True:
        if ranked is None:
            deeper = ShardPlan(tuple(dataclasses.replace(t, k=t.k * grow) for t in plan.tops), plan.centres)
            ranked, _ = rank_shards(shards, capped.inner, deeper, n, out, seed, costs)
        wanted = set(members)
        for r in ranked:
            wanted.update(r.ids.tolist())
        rows = candidate_rows(shards, wanted, plan.centres, out)
        walk = capped.walk(_scored(rows, costs, annotate), capped.groups.of(rows.ids), excluded, n, seed)
        short = any(_short(r, top.k, walk.banned) for r, top in zip(ranked, plan.tops))
        missing = walk.full - fetched if plan.centres else frozenset()
        if not short and not missing:
            return rows
        if short:
            grow, ranked = grow * GROWTH, None
        if missing:  # the inner strategy reads the rows it skips: every clip of a full recording
            members.update(capped.groups.members(sorted(missing)))
            fetched |= missing


def _two_round(shards: ScoreShards, capped: GroupCap, plan: ShardPlan, n: int, out: pa.Array, excluded: set[str],
               seed: int, costs: pa.Table | None, annotate) -> Scores:
    """The union of the shards' offers (and the labelled rows the inner strategy reads), wide enough that the
    capped walk over it fills the batch, or that no shard has another clip of an open recording to offer.

    Each time the walk falls short, the shards offer again, skipping what they offered before and every clip of
    the recordings that were full: the next offers come from open recordings only. It stops once an offer brings
    no new clip and no recording filled up since the last (the pool cannot fill the batch: the walk is as short
    as the gathered one), so it never reads the pool because the cap cannot be met."""
    centres = centre_rows(shards, out, annotate) if plan.centres and len(out) else None
    offered: set[str] = set()
    skipped: set[str] = set()  # the clips of full recordings: ids only, their rows are never read
    full: frozenset[str] = frozenset()
    skip, need = out, n  # the exhaustion check counts the excluded clips only, on the first offers
    while True:
        _, picks = rank_shards(shards, capped.inner, plan, need, skip, seed, costs, centres, offer=n)
        new = set(picks) - offered
        offered |= new
        rows = with_centres(candidate_rows(shards, offered, False, out), centres)
        walk = capped.walk(_scored(rows, costs, annotate), capped.groups.of(rows.ids), excluded, n, seed)
        filled = walk.full - full
        if len(walk.chosen) >= n or not (new or filled):
            return rows
        full |= filled
        skipped.update(capped.groups.members(sorted(filled)))
        # The excluded ids stay Arrow (the unlabelable and held-out clips can be many); only the offers and the
        # full recordings' clips, which the walk already holds, are Python strings.
        skip = pc.unique(pa.concat_arrays([out, pa.array(sorted(offered | skipped), pa.string())]))
        skip, need = skip.take(pc.sort_indices(skip)), 0
