"""The clips a run may ask about, held in Arrow and NumPy: ids and seconds of audio, no Python object per clip.

A run keeps its training split for every round: which clips it may select, what labelling each costs (hour
budgets), how many there are. Held as pandas objects (a list of id strings, a Series of seconds indexed by
them, the metadata frame with paths) that took about 370 bytes a clip: 3.7 GB of the driver at 10 M clips.
Here it is a sorted Arrow string array and a float64 array, about 36 bytes a clip; paths are read from the
pool for the clips a request names, when it names them.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.data.id_keys import arrow_ids

__all__ = ["TrainingClips"]


class TrainingClips:
    """Clip ids (sorted, unique) and their durations.

    Args:
        ids: [N] clip ids, any order (Arrow, NumPy or a list of str).
        seconds: [N] seconds of audio of each clip, in the order of ``ids``.

    Raises:
        ValueError: an id appears twice, or the lengths differ.
    """

    def __init__(self, ids, seconds):
        ids = arrow_ids(ids)
        seconds = np.asarray(seconds, np.float64)
        if len(ids) != len(seconds):
            raise ValueError(f"{len(ids)} clip ids but {len(seconds)} durations")
        order = pc.array_sort_indices(ids).to_numpy() if len(ids) else np.zeros(0, np.int64)
        self.ids: pa.Array = ids.take(pa.array(order)) if len(ids) else ids
        self.seconds: np.ndarray = seconds[order]
        if len(self.ids) > 1:
            same = pc.equal(self.ids.slice(1), self.ids.slice(0, len(self.ids) - 1))
            if pc.any(same).as_py():
                first = self.ids.slice(1).filter(same)[0].as_py()
                raise ValueError(f"clip id {first!r} appears more than once")

    @classmethod
    def read(cls, pool, where: dict | None = None) -> TrainingClips:
        """The training split of ``pool`` (rows matching ``where``), read as Arrow."""
        t = pool.table(["utt_id", "duration"], split="train", where=where or {})
        return cls(t.column("utt_id"), t.column("duration").to_numpy(zero_copy_only=False).astype(np.float64))

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"TrainingClips({len(self)} clips, {self.total_seconds / 3600:.2f} h)"

    @property
    def total_seconds(self) -> float:
        """Seconds of audio of every clip (a clip without a duration counts none, as pandas sums)."""
        return float(np.nansum(self.seconds))

    def positions(self, ids: Iterable[str]) -> np.ndarray:
        """[len(ids)] int64: where each of ``ids`` is in :attr:`ids`, -1 when it is not a clip here.

        Hashes ``ids`` (the few clips asked about) and probes every clip once: no index over N is built."""
        asked = arrow_ids(ids)
        out = np.full(len(asked), -1, np.int64)
        if not len(asked) or not len(self.ids):
            return out
        uniq = pc.unique(asked)
        at = pc.index_in(self.ids, value_set=uniq)  # [N]: which asked id each clip is, or null
        found = np.flatnonzero(pc.is_valid(at).to_numpy(zero_copy_only=False))
        where_in_uniq = np.full(len(uniq), -1, np.int64)
        where_in_uniq[pc.take(at, pa.array(found)).to_numpy(zero_copy_only=False)] = found
        return where_in_uniq[pc.index_in(asked, value_set=uniq).to_numpy(zero_copy_only=False)]

    def seconds_of(self, ids: Iterable[str]) -> np.ndarray:
        """[len(ids)] float64 seconds of each of ``ids`` (NaN for an id that is not a clip here)."""
        pos = self.positions(ids)
        out = np.full(len(pos), np.nan)
        out[pos >= 0] = self.seconds[pos[pos >= 0]]
        return out

    def mask_without(self, ids: Iterable[str]) -> np.ndarray:
        """[N] bool: the clips that are not among ``ids``."""
        asked = arrow_ids(ids)
        if not len(asked):
            return np.ones(len(self), bool)
        return ~pc.is_in(self.ids, value_set=asked).to_numpy(zero_copy_only=False)

    def without(self, ids: Iterable[str]) -> TrainingClips:
        """These clips but ``ids`` (e.g. the held-out evaluation sets)."""
        keep = self.mask_without(ids)
        out = TrainingClips.__new__(TrainingClips)
        out.ids, out.seconds = self.ids.filter(pa.array(keep)), self.seconds[keep]
        return out

    def sample(self, n: int, rng: np.random.Generator, skip: Iterable[str] = ()) -> list[str]:
        """``n`` ids drawn without replacement by ``rng`` from the clips not in ``skip``, in draw order: the
        draw ``rng.choice`` makes from the same clips as a sorted list (positions, then ids)."""
        pool = self.ids.filter(pa.array(self.mask_without(skip)))
        return pool.take(pa.array(rng.choice(len(pool), size=n, replace=False))).to_pylist()
