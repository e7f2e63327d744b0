"""BADGE drawn pick by pick over shards held by Ray actors: the whole pool's picks in its order, also when a share
dies mid-walk."""

from __future__ import annotations

import dataclasses
import logging
import os

import pyarrow as pa
import pytest

from ser_models.active.config import StrategyConfig
from ser_models.active.sharded_seeding import seeded_picks
from ser_models.active.strategies import build_strategy
from ser_models.active.strategies.diversity import BadgeSeeding, BadgeStrategy
from ser_models.exceptions import PoolExhaustedError

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


@pytest.mark.parametrize("in_process", [True, False])
def test_a_batch_larger_than_the_unlabelled_shards_is_refused_as_in_process(tmp_path, in_process):
    scores = _scores(n=400)
    ledger = _labelled(scores)
    shards = dataclasses.replace(_shard(scores, tmp_path, 6), in_process=in_process)
    n = 400 - len(ledger) + 1
    with pytest.raises(PoolExhaustedError) as gathered:
        _query(BadgeStrategy(), scores, ledger, n, 0)
    with pytest.raises(PoolExhaustedError) as sharded:
        seeded_picks(shards, BadgeStrategy(), n, _excluded(ledger), 0)
    assert str(sharded.value) == str(gathered.value)
