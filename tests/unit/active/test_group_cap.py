"""GroupCap: at most `cap` clips of one recording per query, in the inner strategy's order."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.active.strategies.capped import GroupCap
from ser_models.active.strategies.uncertainty import UncertaintyStrategy
from ser_models.scoring.scored_pool import ScoredPool


def pool(n: int = 12) -> ScoredPool:
    # margins grow with the index: the inner strategy picks u0, u1, u2, ... in order
    p = np.linspace(0.5, 0.95, n)
    probs = np.stack([p, 1 - p], axis=1).astype(np.float32)
    return ScoredPool(ids=np.array([f"u{i}" for i in range(n)]), probs=probs,
                      embeddings=np.zeros((n, 2), np.float32))


def test_cap_takes_the_next_best_clips_of_other_recordings():
    groups = {f"u{i}": ("a" if i < 6 else "b") for i in range(10)}  # u10, u11 have no recording
    inner = UncertaintyStrategy("margin")
    assert inner.query(pool(), set(), 4, seed=0) == ["u0", "u1", "u2", "u3"]
    capped = GroupCap(inner, groups, cap=2)
    assert capped.query(pool(), set(), 4, seed=0) == ["u0", "u1", "u6", "u7"]
    assert capped.query(pool(), set(), 6, seed=0) == ["u0", "u1", "u6", "u7", "u10", "u11"]
    # already labelled clips are never returned, and they do not count against this query's cap
    assert capped.query(pool(), {"u0", "u6"}, 4, seed=0) == ["u1", "u2", "u7", "u8"]


def test_a_full_batch_is_not_possible_when_every_recording_is_capped():
    groups = {f"u{i}": "a" for i in range(12)}
    assert GroupCap(UncertaintyStrategy("margin"), groups, cap=3).query(pool(), set(), 5, seed=0) == \
        ["u0", "u1", "u2"]
    with pytest.raises(ValueError, match="cap"):
        GroupCap(UncertaintyStrategy("margin"), groups, cap=0)


def test_the_inner_strategys_attributes_show_through():
    capped = GroupCap(UncertaintyStrategy("margin"), {}, cap=1)
    assert capped.uses_model is True and "cap=1" in repr(capped)


def _write_pool(root, utt_ids, recordings, languages):
    """A prepared pool on disk as ``jobs.prepare_pool`` lays it out (train split, no audio)."""
    import json

    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_models.data.pool import SHARD_SCHEMA, Pool

    cols = {"utt_id": utt_ids, "recording": recordings, "language": languages}
    schema = pa.schema([f for f in SHARD_SCHEMA if f.name != "split"])
    table = pa.table({f.name: pa.array(cols.get(f.name, [None] * len(utt_ids)), f.type) for f in schema})
    (root / "build-1" / "data" / "split=train").mkdir(parents=True)
    pq.write_table(table, root / "build-1" / "data" / "split=train" / "part-0.parquet")
    (root / "summary.json").write_text(json.dumps({"build": "build-1", "kept": len(utt_ids),
                                                   "splits": {"train": len(utt_ids)}}))
    return Pool.open(str(root))


def test_the_pools_recordings_are_read_for_the_clips_asked_about(tmp_path):
    from ser_models.active.pool_groups import PoolRecordings

    ids = [f"u{i}" for i in range(12)]
    recordings = ["a", "a", "b", None, "a", "c", "b", "a", "c", None, "d", "d"]
    languages = ["en"] * 10 + ["de"] * 2
    lookup = PoolRecordings(_write_pool(tmp_path / "pool", ids, recordings, languages), {"language": "en"})
    assert lookup.of(np.array(["u0", "u3", "u5", "u10", "elsewhere"])) == \
        {"u0": "a", "u3": None, "u5": "c", "u10": None, "elsewhere": None}  # u10 is German: outside the run
    assert lookup.members(["a", "c", "d"]) == ["u0", "u1", "u4", "u5", "u7", "u8"]
    assert lookup.members([]) == [] and lookup.of(np.array([], str)) == {}
    # the cap over the pool's recordings picks what it picks over the same recordings in a dict
    inner = UncertaintyStrategy("margin")
    whole = dict(zip(ids[:10], recordings[:10]))
    assert GroupCap(inner, lookup, 1).query(pool(10), set(), 5, 0) == GroupCap(inner, whole, 1).query(
        pool(10), set(), 5, 0) == ["u0", "u2", "u3", "u5", "u9"]

