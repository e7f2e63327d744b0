"""A cap on how many clips one group (a recording) gives to one query, around any strategy.

An uncertain stretch of one episode yields many similar, equally uncertain segments; without a cap a batch can
be one episode. :class:`GroupCap` takes the inner strategy's picks in order, keeps at most ``cap`` per group,
and asks the strategy again for the rest with the over-represented groups excluded, until the batch is full
or no clip of an open group is left (then the batch is smaller, never capped twice).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from ser_models.scoring.scored_pool import ScoredPool


class GroupCap:
    """At most ``cap`` clips per group in one query (decorates a strategy; clips without a group are free).

    Args:
        inner: the strategy whose picks are capped.
        groups: ``utt_id -> group`` (e.g. the recording); ids missing or mapped to None have no cap.
        cap: most clips of one group per query (>= 1).
    """

    def __init__(self, inner, groups: Mapping[str, str | None], cap: int):
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        self.inner, self.groups, self.cap = inner, dict(groups), int(cap)

    def __getattr__(self, name: str):  # last_choice, uses_model, ... of the inner strategy
        return getattr(self.inner, name)

    def shard_plan(self, n: int) -> None:
        """None: a capped query may reach past the inner strategy's top ``n`` (every capped group hands its
        places on), so no fixed ranking holds its picks; the loop gathers the pool's scores for it."""
        return None

    def query(self, scored: ScoredPool, ledger_ids: set[str], n: int, seed: int) -> list[str]:
        """Up to ``n`` ids, at most ``cap`` of any one group, in the inner strategy's pick order."""
        chosen: list[str] = []
        counts: Counter = Counter()
        banned = set(ledger_ids)
        members: dict[str, list[str]] = {}
        all_ids = {str(u) for u in scored.ids.tolist()}
        for uid in all_ids:
            g = self.groups.get(str(uid))
            if g is not None:
                members.setdefault(g, []).append(str(uid))
        ask = n
        while ask > 0:
            for uid in self.inner.query(scored, banned, ask, seed):
                g = self.groups.get(str(uid))
                if g is None or counts[g] < self.cap:
                    chosen.append(uid)
                    counts[g] += g is not None
            banned |= set(chosen)
            for g, c in counts.items():
                if c >= self.cap:
                    banned |= set(members.get(g, ()))
            left = len(all_ids - banned)
            ask = min(n - len(chosen), left)
        return chosen

    def __str__(self) -> str:
        return f"{self.inner}, at most {self.cap} clips of a recording per batch"

    def __repr__(self) -> str:
        return f"GroupCap({self.inner!r}, cap={self.cap})"


__all__ = ["GroupCap"]
