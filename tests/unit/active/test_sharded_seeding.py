"""BADGE drawn pick by pick over shards held by Ray actors: the whole pool's picks in its order, also when a share
dies mid-walk."""

from __future__ import annotations

import dataclasses
import logging
import os

import numpy as np
import pyarrow as pa
import pytest

from ser_models.active.config import StrategyConfig
from ser_models.active.sharded_seeding import seeded_picks
from ser_models.active.strategies import build_strategy
from ser_models.active.strategies.diversity import BadgeSeeding, BadgeStrategy
from ser_models.exceptions import PoolError, PoolExhaustedError
from ser_models.scoring.scorer import Scores

from .test_sharded_selection import _labelled, _query, _scores, _shard

pytestmark = pytest.mark.usefixtures("ray_local")


def _excluded(ledger: dict[str, int]) -> pa.Array:
    return pa.array(sorted(ledger), pa.string())


def test_ray_shares_draw_the_whole_pools_picks_in_order(tmp_path):
    scores = _scores(seed=7)
    ledger = _labelled(scores)
    n, seed = 40, 3
    whole = _query(build_strategy(StrategyConfig("badge")), scores, ledger, n, seed)
    shards = dataclasses.replace(_shard(scores, tmp_path, 7), in_process=False)
    assert not shards.runs_here  # seven shards on a connected Ray: the shares are actors
    assert seeded_picks(shards, BadgeStrategy(), n, _excluded(ledger), seed) == whole


@pytest.mark.parametrize("parts", [3, 7])
def test_duplicate_clips_past_the_distinct_ones_draw_the_same_picks_over_shards(tmp_path, parts):
    """Every clip has three exact duplicates and the batch asks for more picks than there are distinct clips:
    a duplicate's distance to its picked twin must come out the same on every shard (0, the uniform tier), or
    the shards' walk and the whole pool's part ways. The re-query over the picks keeps their order."""
    base = _scores(seed=9, n=60)
    take = np.repeat(np.arange(60), 4)
    ids = np.array([f"dup{i:04d}" for i in range(240)], dtype=object)
    scores = Scores(ids, base.probs[take], base.embedding[take], np.zeros((240, 0), np.float32),
                    base.mc_probs[take], base.dims[take], base.mc_dims[take]).sorted_by_id()
    n, seed = 90, 2
    whole = _query(BadgeStrategy(), scores, {}, n, seed)
    shards = _shard(scores, tmp_path, parts)
    picks = seeded_picks(shards, BadgeStrategy(), n, _excluded({}), seed)
    assert picks == whole
    rows = shards.rows_of(picks)
    assert _query(BadgeStrategy(), rows, {}, n, seed) == whole


def test_a_share_that_dies_mid_walk_is_drawn_again_to_the_same_picks(tmp_path, caplog):
    """The first share to absorb its sixth pick kills its own process (once: a file marks it), as a node loss
    would; the walk starts again on fresh shares and draws the same picks."""
    marker = str(tmp_path / "died")

    class Dying(BadgeSeeding):
        def absorb(self, pick):
            if self.step == 5 and not os.path.exists(marker):
                open(marker, "w").close()
                os._exit(1)
            super().absorb(pick)

    class DyingBadge(BadgeStrategy):
        def seeding(self, scores, seed):
            plain = super().seeding(scores, seed)
            return Dying(plain.a, plain.h, plain.ids, seed)

    scores = _scores(seed=8)
    ledger = _labelled(scores)
    n, seed = 20, 1
    whole = _query(build_strategy(StrategyConfig("badge")), scores, ledger, n, seed)
    shards = dataclasses.replace(_shard(scores, tmp_path / "shards", 5), in_process=False)
    with caplog.at_level(logging.WARNING, "ser_models.active.sharded_seeding"):
        assert seeded_picks(shards, DyingBadge(), n, _excluded(ledger), seed) == whole
    assert os.path.exists(marker)
    assert "drawing the 20 picks again on fresh shares" in caplog.text


def test_a_batch_larger_than_the_unlabelled_shards_is_refused_as_in_process(tmp_path):
    scores = _scores(n=400)
    ledger = _labelled(scores)
    shards = _shard(scores, tmp_path, 6)
    n = 400 - len(ledger) + 1
    with pytest.raises(PoolExhaustedError) as gathered:
        _query(BadgeStrategy(), scores, ledger, n, 0)
    with pytest.raises(PoolExhaustedError) as sharded:
        seeded_picks(shards, BadgeStrategy(), n, _excluded(ledger), 0)
    assert str(sharded.value) == str(gathered.value)


def test_shares_no_node_can_place_fail_the_query_naming_why(tmp_path, monkeypatch):
    """Shares that cannot start (here each asks for more CPU than any node has) fail the query after
    SHARE_START_S with what to do, instead of waiting for ever for every share of the first pick."""
    from ser_models.active import sharded_seeding

    monkeypatch.setattr(sharded_seeding, "SHARE_CPUS", 64.0)
    monkeypatch.setattr(sharded_seeding, "SHARE_START_S", 2.0)
    scores = _scores(n=300)
    shards = dataclasses.replace(_shard(scores, tmp_path, 5), in_process=False)
    with pytest.raises(PoolError, match="did not start within 2 s.*active.selection.rows_per_shard"):
        seeded_picks(shards, BadgeStrategy(), 10, _excluded({}), 0)
