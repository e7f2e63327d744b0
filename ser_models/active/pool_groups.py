"""The recordings of a pool's training clips, looked up for the clips a query sees (never held for every clip)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["PoolRecordings"]


class PoolRecordings:
    """:class:`~ser_models.active.strategies.capped.Groups` read from ``pool``'s ``recording`` column.

    Each lookup filters the pool's training split on ``utt_id`` (or ``recording``) in Arrow, so a sharded round
    reads the recordings of its candidate rows alone; a pool that grows is read as it is now.

    Args:
        pool: an opened ``ser_models.data.Pool``.
        where: keep only rows whose columns equal these values (as ``Pool.table`` takes them).
    """

    def __init__(self, pool, where: dict | None = None):
        self.pool, self.where = pool, dict(where or {})

    def of(self, ids: np.ndarray) -> dict[str, str | None]:
        """``utt_id -> recording`` for ``ids`` [M] (None: the clip has no recording, or the split lacks it)."""
        wanted = sorted({str(u) for u in np.asarray(ids).tolist()})
        out: dict[str, str | None] = dict.fromkeys(wanted)
        if wanted:
            t = self.pool.table(["utt_id", "recording"], split="train", where={**self.where, "utt_id": wanted})
            out.update(zip(t.column("utt_id").to_pylist(), t.column("recording").to_pylist()))
        return out

    def members(self, groups: Iterable[str]) -> list[str]:
        """The training clip ids of the recordings ``groups``, sorted."""
        wanted = sorted(set(groups))
        if not wanted:
            return []
        t = self.pool.table(["utt_id"], split="train", where={**self.where, "recording": wanted})
        return sorted(t.column("utt_id").to_pylist())
