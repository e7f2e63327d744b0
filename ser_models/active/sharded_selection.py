"""Selection over scores that stay sharded: the few rows a strategy can pick, found shard by shard.

A strategy with a sharded form (:meth:`QueryStrategy.shard_plan
<ser_models.active.strategies.base.QueryStrategy.shard_plan>`) states which per-clip rankings its picks come
from: the top ``k`` clips by an uncertainty score (overall or per predicted class) or by a seeded hash of the
id (random). The global top-k of a ranking is the top-k of the union of every shard's top-k, so two passes
over the shards find every row the strategy could pick:

1. each shard ranks its unlabelled clips under every ranking of the plan and returns its top ``k`` ids and
   keys (ties broken by id, as the in-process path breaks them by pool order, which is id order), plus its
   counts; the driver merges them into the global top-k of each ranking;
2. each shard returns the full score rows of those winners, and of the clips already labelled when the
   strategy uses them (the k-center centres, ``auto``'s replay, class-balanced quotas).

The strategy then runs unchanged on that small pool, sorted by id as a whole pool is, so it picks exactly
the clips it picks in process: the rows it ranks keep their order, and no row it could take is missing. The
driver holds ``sum(k) + L`` rows, never N.

BADGE draws its picks one at a time, each over every shard (:mod:`ser_models.active.sharded_seeding`): the
whole pool's picks; its rows are the picks themselves.

Strategies whose picks no ranking holds (k-center, k-means, greedy sampling) go two rounds instead:
each shard runs the strategy on its own unlabelled clips, with the labelled clips broadcast as existing
centres, and offers its ``n`` picks; the strategy then runs on the union of the offers (``shards x n`` rows).
For k-center this is the composable core-set of Malkomes et al. (2015), a constant-factor approximation of
the greedy over the whole pool; for the others it is a heuristic of the same shape. ``bench/round_scale.py``
measures the k-center objective against the whole-pool greedy. ``auto`` over such a candidate (or BADGE)
chooses first (its replay reads the labelled clips only), then runs the chosen candidate's plan. What a strategy
without a sharded form does is for the caller to say (the loop gathers the pool in process, with a line saying so).

A recording cap around a ranking strategy reaches past the rankings' top ``k``: every full recording hands its
places on. :mod:`ser_models.active.sharded_capped` deepens the rankings until they hold every pick of the
capped walk, with :func:`rank_shards` and :func:`candidate_rows`, the two passes apart.

References:
    Malkomes et al., 2015, "Fast Distributed k-Center Clustering with Outliers on Massive Data" (NeurIPS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.active.sharded_seeding import seeded_picks
from ser_models.active.strategies.auto import AutoStrategy
from ser_models.active.strategies.base import (
    QueryStrategy,
    ShardPlan,
    TopK,
    exhausted,
    random_keys,
    uncertainty_scores,
)
from ser_models.active.strategies.capped import GroupCap
from ser_models.exceptions import PoolError
from ser_models.failpoints import pausepoint
from ser_models.scoring.score_shards import ScoreShards, read_shard, shard_rows
from ser_models.scoring.scorer import Scores

__all__ = ["Ranked", "auto_choice", "candidate_rows", "centre_rows", "costs_of", "rank_shards", "shard_candidates", "with_centres"]


@dataclass(frozen=True)
class Ranked:
    """One ranking's top-k over every shard.

    Attributes:
        top: the ranking.
        ids: [k'] its best unlabelled clips, best first (k' < k: the ranking, or the class, has no more).
        classes: [k'] their predicted classes when ``top.per_class`` (the top k of each class), else None.
    """

    top: TopK
    ids: np.ndarray
    classes: np.ndarray | None


def _columns(plan: ShardPlan) -> list[str]:
    """Score columns pass 1 reads: only what its rankings need (never the embedding)."""
    cols = set()
    for top in plan.tops:
        if top.key == "bald":
            cols |= {"probs", "mc_probs"}
        elif top.key == "mc_variance":
            cols |= {"dims", "mc_dims"}
        elif top.key != "random":
            cols.add("probs")
        if top.per_class:
            cols.add("probs")
    return sorted(cols)


def costs_of(ids: pa.Array, costs: pa.Table | None) -> np.ndarray | None:
    """[M] seconds of each of ``ids`` from ``costs`` (``utt_id, seconds``), or None without costs.

    Raises:
        PoolError: a scored clip has no duration in ``costs``.
    """
    if costs is None:
        return None
    at = pc.index_in(ids, value_set=costs.column("utt_id"))
    if at.null_count:
        missing = pc.filter(ids, pc.is_null(at))[:5].to_pylist()  # five ids, not every missing one
        raise PoolError(f"cost-aware selection has no duration for {at.null_count} scored clips, e.g. {missing}")
    return costs.column("seconds").take(at).to_numpy(zero_copy_only=False).astype(np.float64)


def _ranked(primary: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` best rows: smallest ``primary`` first, ties by id."""
    return np.lexsort((ids, primary))[:k]


def _best(primary: np.ndarray, ids: np.ndarray, classes: np.ndarray | None, k: int) -> np.ndarray:
    """Positions of the ``k`` best rows overall, or of each class's ``k`` best (``classes`` given)."""
    if classes is None:
        return _ranked(primary, ids, k)
    return np.concatenate([np.flatnonzero(classes == c)[_ranked(primary[classes == c], ids[classes == c], k)]
                           for c in np.unique(classes)])


def _primary(top: TopK, scored, who: str, seed: int) -> np.ndarray:
    """The ranking key of every row of ``scored`` (smaller = picked first): a seeded hash of the id for random,
    minus the uncertainty otherwise (in float64, the order ``rank_desc`` sorts in)."""
    if top.key == "random":
        return random_keys(scored.ids, seed)
    return -np.asarray(uncertainty_scores(scored, top.key, who), dtype=np.float64)


def _local_picks(unlabelled: Scores, strategy: QueryStrategy, n: int, seed: int, costs: pa.Table | None,
                 centres: tuple | None) -> list[str]:
    """One shard's offer in a two-round plan: ``strategy``'s picks among the shard's unlabelled clips, with the
    labelled clips (``centres``: their scores, dimensional values and classes) as existing centres."""
    if not len(unlabelled.ids):
        return []
    pool, targets, labels, taken = unlabelled, None, None, set()
    if centres is not None:
        known, known_targets, known_labels = centres
        pool = Scores.from_table(pa.concat_tables([unlabelled.to_table(), known.to_table()],
                                                  promote_options="default"))
        u = len(unlabelled.ids)
        if known_targets is not None:
            targets = np.concatenate([np.full((u, known_targets.shape[1]), np.nan, np.float32), known_targets])
        if known_labels is not None:
            labels = np.concatenate([np.full(u, -1, np.int64), known_labels])
        order = np.argsort(pool.ids.astype(str), kind="stable")
        pool = pool.take(order)
        targets = None if targets is None else targets[order]
        labels = None if labels is None else labels[order]
        taken = set(known.ids.astype(str).tolist())
    ids = pa.array(pool.ids.astype(str), pa.string())
    scored = pool.as_scored_pool(targets, costs=costs_of(ids, costs), labels=labels)
    return strategy.query(scored, taken, min(n, len(unlabelled.ids)), seed)


def shard_tops(path: str, plan: ShardPlan, excluded: pa.Array, seed: int, costs: pa.Table | None,
               strategy: QueryStrategy, n: int, centres: tuple | None = None) -> dict:
    """Pass 1 on one shard: its row counts and, per ranking of ``plan``, its top-k unlabelled clips (or, for a
    two-round plan, the strategy's own ``n`` picks among them).

    Returns:
        ``{"rows", "excluded", "tops": [(ids [k'], primary [k'], classes [k'] or None)], "picks": [ids]}``.
    """
    pausepoint("select_shard")  # node-loss tests remove this task's node here
    who = repr(strategy)
    scores = read_shard(path, None if plan.local else _columns(plan))
    ids_arrow = pa.array(scores.ids.astype(str), pa.string())
    out_mask = pc.is_in(ids_arrow, value_set=excluded).to_numpy(zero_copy_only=False) if len(excluded) \
        else np.zeros(len(scores.ids), bool)
    keep = np.flatnonzero(~out_mask)
    if plan.local:
        picks = _local_picks(scores.take(keep), strategy, n, seed, costs, centres)
        return {"rows": len(scores.ids), "excluded": int(out_mask.sum()), "tops": [], "picks": list(picks)}
    tops = []
    if len(keep):
        scored = scores.as_scored_pool(costs=costs_of(ids_arrow, costs))
        ids = scored.ids[keep]
        classes = scored.probs[keep].argmax(1) if scored.probs.shape[1] else np.zeros(len(keep), np.int64)
        for top in plan.tops:
            primary = _primary(top, scored, who, seed)[keep]
            best = _best(primary, ids, classes if top.per_class else None, top.k)
            tops.append((ids[best], primary[best], classes[best] if top.per_class else None))
    else:
        tops = [(np.zeros(0, str), np.zeros(0), None) for _ in plan.tops]
    return {"rows": len(scores.ids), "excluded": int(out_mask.sum()), "tops": tops, "picks": []}


def _merge(parts: list[tuple], top: TopK) -> Ranked:
    """The global top-k of one ranking from every shard's top-k."""
    parts = [p for p in parts if len(p[0])]
    if not parts:
        return Ranked(top, np.zeros(0, str), np.zeros(0, np.int64) if top.per_class else None)
    ids = np.concatenate([p[0] for p in parts]).astype(str)
    primary = np.concatenate([p[1] for p in parts])
    classes = np.concatenate([p[2] for p in parts]) if top.per_class else None
    best = _best(primary, ids, classes, top.k)
    return Ranked(top, ids[best], None if classes is None else classes[best])


def centre_rows(shards: ScoreShards, excluded: pa.Array, annotate) -> tuple | None:
    """The labelled clips' scores (and, through ``annotate``, their dimensional values and classes), broadcast
    to every shard of a two-round plan; None when none of them is scored."""
    parts = [t for t in shards.map(shard_rows, excluded, False) if t.num_rows]
    if not parts:
        return None
    known = Scores.from_table(pa.concat_tables(parts)).sorted_by_id()
    targets, labels = annotate(known) if annotate is not None else (None, None)
    return known, targets, labels


def shard_candidates(shards: ScoreShards, strategy: QueryStrategy, n: int, excluded: set[str], seed: int,
                     costs: pa.Table | None = None, annotate=None) -> Scores:
    """The scores of every clip ``strategy`` could pick for a batch of ``n`` (and of the excluded clips it
    uses), found over ``shards`` in two passes; the driver holds these rows only.

    Args:
        shards: the round's committed scores.
        strategy: a strategy with a sharded form (``strategy.shard_plan(n)`` is not None); a recording cap
            goes through :func:`~ser_models.active.sharded_capped.capped_candidates`.
        n: the batch size.
        excluded: ids that are never picked (the ledger, unlabelable and held-out clips).
        seed: the query's seed (random's hash keys).
        costs: ``utt_id, seconds`` of every clip for cost-aware scores, or None.
        annotate: ``scores -> (targets [L, K] or None, labels [L] or None)``: the ledger's dimensional values and
            classes of the labelled clips a two-round plan broadcasts as centres, and ``auto``'s replay reads
            before a two-round candidate (None: neither).

    Returns:
        :class:`Scores` of those rows, sorted by id: query ``strategy`` on it as on the whole pool.

    Raises:
        PoolExhaustedError: fewer than ``n`` unlabelled clips are scored (as the in-process query raises it).
        ValueError: the strategy has no sharded form, or is a recording cap.
    """
    if isinstance(strategy, GroupCap):
        raise ValueError(f"{strategy!r} picks past its inner strategy's top n: select with capped_candidates")
    if not strategy.sharded(n):
        raise ValueError(f"{strategy!r} has no sharded form")
    out = pa.array(sorted(excluded), pa.string())
    plan = strategy.shard_plan(n)
    labelled = plan is None or plan.centres  # the rows to return beside the picks: auto replays on them again
    centres = None  # the labelled clips' rows, read at most once: broadcast, replayed on, returned
    if plan is None:  # auto over a two-round candidate: choose first, then gather what the chosen one can pick
        centres = centre_rows(shards, out, annotate) if len(out) else None
        strategy = auto_choice(strategy, n, seed, centres, annotate)
        plan = strategy.shard_plan(n)
    if centres is None and plan.local and plan.centres and len(out):
        centres = centre_rows(shards, out, annotate)
    if plan.stepwise:  # drawn pick by pick over every shard: the picks themselves (and auto's replay rows)
        rows = candidate_rows(shards, seeded_picks(shards, strategy, n, out, seed), False, out)
        return with_centres(rows, centres) if labelled else rows
    ranked, picks = rank_shards(shards, strategy, plan, n, out, seed, costs,
                                centres if plan.local and plan.centres else None)
    winners = set(picks)
    for r in ranked:
        winners.update(r.ids.tolist())
    if centres is None:
        return candidate_rows(shards, winners, labelled, out)
    return with_centres(candidate_rows(shards, winners, False, out), centres)  # the picks are unlabelled


def with_centres(rows: Scores, centres: tuple | None) -> Scores:
    """``rows`` and the labelled clips' rows of ``centres`` (:func:`centre_rows`) that ``rows`` lacks, sorted by id."""
    if centres is None:
        return rows
    known = centres[0].to_table()
    if len(rows.ids):
        have = pa.array(rows.ids.astype(str), pa.string())
        known = known.filter(pc.invert(pc.is_in(known.column("utt_id"), value_set=have)))
    return Scores.from_table(pa.concat_tables([rows.to_table(), known], promote_options="default")).sorted_by_id()


def auto_choice(auto: AutoStrategy, n: int, seed: int, centres: tuple | None, annotate) -> QueryStrategy:
    """The candidate ``auto`` chooses for this query, from its replay on the labelled clips (``centres``: the
    excluded rows, with their classes): the decision the query over the gathered rows then makes again, from the
    same clips."""
    if centres is None:
        return auto.candidates[auto.fallback]  # no labelled clip is scored: too few to simulate
    if annotate is None:
        raise ValueError(f"{auto!r} over a two-round candidate needs the labelled clips' classes (annotate)")
    known, targets, labels = centres
    decision = auto.choose(known.as_scored_pool(targets, labels=labels), np.arange(len(known.ids)), n, seed)
    return auto.candidates[decision["chosen"]]


def rank_shards(shards: ScoreShards, strategy: QueryStrategy, plan: ShardPlan, n: int, out: pa.Array, seed: int,
                costs: pa.Table | None = None, centres: tuple | None = None,
                offer: int | None = None) -> tuple[list[Ranked], list[str]]:
    """Pass 1: each ranking of ``plan`` merged over ``shards`` (and, for a two-round plan, the shards' offers).

    Args:
        n: the batch size (0: no check that the shards hold that many unlabelled clips).
        out: the excluded ids, sorted (Arrow strings).
        centres: a two-round plan's labelled clips (:func:`centre_rows`), or None.
        offer: picks each shard offers in a two-round plan (at most its unlabelled clips); None = ``n``.

    Returns:
        ``(one Ranked per plan.tops, the offered ids)``.

    Raises:
        PoolExhaustedError: fewer than ``n`` unlabelled clips are scored.
    """
    passes = shards.map(shard_tops, plan, out, int(seed), costs, strategy, int(offer or n), centres)
    rows = sum(p["rows"] for p in passes)
    labelled = sum(p["excluded"] for p in passes)
    if n > rows - labelled:
        raise exhausted(strategy, n, rows, labelled)
    ranked = [_merge([p["tops"][i] for p in passes], top) for i, top in enumerate(plan.tops)]
    return ranked, [u for p in passes for u in p["picks"]]


def candidate_rows(shards: ScoreShards, ids, with_excluded: bool, out: pa.Array) -> Scores:
    """Pass 2: the score rows of ``ids`` (and of the excluded clips ``out`` when ``with_excluded``), sorted by id."""
    tables = [t for t in shards.map(shard_rows, pa.array(sorted(ids), pa.string()), with_excluded, out)
              if t.num_rows]
    return Scores.from_table(pa.concat_tables(tables)).sorted_by_id()
