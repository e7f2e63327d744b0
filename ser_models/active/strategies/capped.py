"""A cap on how many clips one group (a recording) gives to one query, around any strategy.

An uncertain stretch of one episode yields many similar, equally uncertain segments; without a cap a batch can
be one episode. :class:`GroupCap` takes the inner strategy's picks in order, keeps at most ``cap`` per group,
and asks the strategy again for the rest with the over-represented groups excluded, until the batch is full
or no clip of an open group is left (then the batch is smaller, never capped twice).

The groups are looked up for the clips a query sees (:class:`Groups`): a sharded round asks only about its
candidate rows (:mod:`ser_models.active.sharded_capped`), never about every clip of the pool.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ser_models.active.strategies.base import ShardPlan
from ser_models.scoring.scored_pool import ScoredPool

__all__ = ["CapWalk", "GroupCap", "Groups", "MappedGroups"]


class Groups(Protocol):
    """Where the groups come from: looked up for the ids a query sees, not held for the whole pool."""

    def of(self, ids: np.ndarray) -> dict[str, str | None]:
        """``utt_id -> group`` for ``ids`` [M] (None: no group, no cap)."""

    def members(self, groups: Iterable[str]) -> list[str]:
        """Every clip id of ``groups``."""


class MappedGroups:
    """:class:`Groups` from a ``utt_id -> group`` mapping (ids missing or mapped to None have no group)."""

    def __init__(self, groups: Mapping[str, str | None]):
        self.groups = dict(groups)

    def of(self, ids: np.ndarray) -> dict[str, str | None]:
        return {str(u): self.groups.get(str(u)) for u in np.asarray(ids).tolist()}

    def members(self, groups: Iterable[str]) -> list[str]:
        wanted = set(groups)
        return sorted(u for u, g in self.groups.items() if g in wanted)


@dataclass(frozen=True)
class CapWalk:
    """One capped query as it ran.

    Attributes:
        chosen: the picks, in order.
        banned: the ids the last call to the inner strategy was told to skip (ledger, earlier picks, the clips of
            full groups): every earlier call skipped a subset of them. When the walk stopped short of ``n``, every
            id it skipped at the end (it found no clip left).
        full: the groups that were full at that point.
    """

    chosen: list[str]
    banned: frozenset[str]
    full: frozenset[str]


class GroupCap:
    """At most ``cap`` clips per group in one query (decorates a strategy; clips without a group are free).

    Args:
        inner: the strategy whose picks are capped.
        groups: ``utt_id -> group`` (e.g. the recording; ids missing or mapped to None have no cap), or a
            :class:`Groups` lookup.
        cap: most clips of one group per query (>= 1).
    """

    def __init__(self, inner, groups: Mapping[str, str | None] | Groups, cap: int):
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        self.inner, self.cap = inner, int(cap)
        self.groups: Groups = groups if hasattr(groups, "members") else MappedGroups(groups)

    def __getattr__(self, name: str):  # last_choice, uses_model, ... of the inner strategy
        return getattr(self.inner, name)

    def shard_plan(self, n: int) -> ShardPlan | None:
        """The inner strategy's plan (:func:`~ser_models.active.sharded_capped.capped_candidates`): rankings it
        deepens until they hold every pick of the walk, or the shards' offers of a two-round plan, taken deeper
        until the walk over them fills the batch. None when the inner strategy has no plan of its own (``auto``
        over a two-round candidate chooses first, then the chosen candidate runs capped)."""
        return self.inner.shard_plan(n)

    def sharded(self, n: int) -> bool:
        """Whether a capped query can run over sharded scores: whenever the inner strategy's can."""
        return self.inner.sharded(n)

    def query(self, scored: ScoredPool, ledger_ids: set[str], n: int, seed: int) -> list[str]:
        """Up to ``n`` ids, at most ``cap`` of any one group, in the inner strategy's pick order."""
        return self.walk(scored, self.groups.of(scored.ids), ledger_ids, n, seed).chosen

    def walk(self, scored: ScoredPool, groups: Mapping[str, str | None], ledger_ids: set[str], n: int,
             seed: int) -> CapWalk:
        """:meth:`query` with ``groups`` of ``scored``'s ids given, and what its last inner call was told. An
        ``auto`` inner strategy chooses at the first call, for the whole batch; the later calls (fewer clips
        asked for) go to the candidate it chose."""
        chosen: list[str] = []
        counts: Counter = Counter()
        banned = set(ledger_ids)
        members: dict[str, list[str]] = {}
        all_ids = {str(u) for u in scored.ids.tolist()}
        for uid in all_ids:
            g = groups.get(uid)
            if g is not None:
                members.setdefault(g, []).append(uid)
        last, full = frozenset(banned), frozenset()
        ask, inner = n, self.inner
        while ask > 0:
            last, full = frozenset(banned), frozenset(g for g, c in counts.items() if c >= self.cap)
            for uid in inner.query(scored, banned, ask, seed):
                g = groups.get(str(uid))
                if g is None or counts[g] < self.cap:
                    chosen.append(uid)
                    counts[g] += g is not None
            inner = inner.rest_of_batch()  # auto chose for the whole batch: its later calls ask that candidate
            banned |= set(chosen)
            for g, c in counts.items():
                if c >= self.cap:
                    banned |= set(members.get(g, ()))
            left = len(all_ids - banned)
            ask = min(n - len(chosen), left)
        if len(chosen) < n:  # it stopped for want of clips: that, too, must hold over the whole pool
            last, full = frozenset(banned), frozenset(g for g, c in counts.items() if c >= self.cap)
        return CapWalk(chosen, last, full)

    def __str__(self) -> str:
        return f"{self.inner}, at most {self.cap} clips of a recording per batch"

    def __repr__(self) -> str:
        return f"GroupCap({self.inner!r}, cap={self.cap})"
