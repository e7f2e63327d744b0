"""LabelBudget: clip and hour budgets, what a strategy is asked for, which picks fit, resume checks."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_models.active.budget import LabelBudget, picked_so_far
from ser_models.active.loop_config import ActiveConfig
from ser_models.active.training_clips import TrainingClips
from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import ConfigError, OracleError, PoolError, PoolExhaustedError

DUR = TrainingClips(["a", "b", "c", "d"], [2.0, 4.0, 6.0, 8.0])  # 20 s, i.e. 1/180 h
NO_DROPS = pd.DataFrame({"utt_id": pd.Series(dtype=str), "round": pd.Series(dtype="int64")})


class _Ledger:
    def __init__(self, ids, seconds=0.0):
        self._ids, self._seconds = set(ids), seconds

    def __len__(self):
        return len(self._ids)

    def ids(self):
        return self._ids

    def seconds(self):
        return self._seconds


def test_clip_budget_asks_for_the_difference_and_keeps_every_pick():
    b = LabelBudget(ActiveConfig(budget_labels=[1, 3]), DUR)
    assert b.unit == "clips" and b.targets == [1, 3] and len(b) == 2
    assert b.clips_wanted(3, {"a"}, set()) == 2
    assert b.within(["d", "c"], 3, "round 1") == ["d", "c"]


def test_hour_budget_keeps_picks_that_fit_in_pick_order():
    b = LabelBudget(ActiveConfig(budget_hours=[8 / 3600, 14 / 3600]), DUR)
    assert b.unit == "seconds" and b.targets == pytest.approx([8.0, 14.0])
    # 6 s left after "a": "d" (8 s) is skipped, "b" (4 s) fits, "c" (6 s) no longer does
    assert b.within(["d", "b", "c"], 8.0, "round 0", labelled={"a"}) == ["b"]
    with pytest.raises(ConfigError, match="budget_hours leaves"):
        b.within(["d"], 8.0, "round 0", labelled={"a"})
    # asks for a quarter more than the mean free duration suggests: ceil(1.25 * 12 / 6) + 1 = 4, capped at 3 free
    assert b.clips_wanted(14.0, {"a"}, set()) == 3
    with pytest.raises(PoolExhaustedError):
        b.clips_wanted(14.0, {"a", "b"}, {"c", "d"})


def test_round_cap_truncates_the_targets():
    cfg = ActiveConfig(budget_labels=[1, 2, 3])
    cfg.stopping.max_rounds = 2
    assert LabelBudget(cfg, DUR).targets == [1, 2]


def test_check_refuses_a_changed_budget_and_counts_dropped_clips():
    b = LabelBudget(ActiveConfig(budget_labels=[2, 3]), DUR)
    b.check(0, _Ledger(["a", "b"]), NO_DROPS, "dropped.parquet")
    dropped = pd.DataFrame({"utt_id": ["c"], "round": [0]})
    b.check(0, _Ledger(["a"]), dropped, "dropped.parquet")  # one labelled + one dropped = 2
    with pytest.raises(ConfigError, match="round 1 expects 3 labelled clips, the ledger has 2"):
        b.check(1, _Ledger(["a", "b"]), NO_DROPS, "dropped.parquet")
    with pytest.raises(OracleError, match="dropped.parquet"):
        b.check(0, _Ledger([]), dropped, "dropped.parquet")


def _selection(path, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"utt_id": pa.array(ids, pa.string())}), path)
    return path


def test_check_accepts_a_short_batch_its_selection_explains_and_refuses_what_no_selection_explains(tmp_path):
    """Budget 4 -> 14 -> 20 over 20 clips: round 0 asked for 10 but picked 8 (a recording cap), so round 1 sees 12
    labels. The stored selections explain them; a missing selection keeps the exact target; labels the
    selections do not explain, or more than the target, are a changed budget."""
    clips = TrainingClips([f"c{i:02d}" for i in range(20)], [1.0] * 20)
    b = LabelBudget(ActiveConfig(budget_labels=[4, 14, 20]), clips)
    ids = [f"c{i:02d}" for i in range(20)]
    initial = _selection(tmp_path / "initial" / "selection.parquet", ids[:4])
    round0 = _selection(tmp_path / "round=000" / "selection.parquet", ids[4:12])
    ledger = LabelLedger(tmp_path / "ledger.parquet")
    ledger.append(0, ids[:4], ["a"] * 4, "test")
    ledger.append(1, ids[4:11], ["a"] * 7, "test")
    dropped = pd.DataFrame({"utt_id": [ids[11]], "round": [1]})  # picked in round 0, dropped by annotators
    picked = picked_so_far([initial, round0])
    assert picked == 12 and picked_so_far([initial, tmp_path / "round=001" / "selection.parquet"]) is None
    b.check(0, ledger.as_of(0), NO_DROPS, "dropped.parquet", picked_so_far([initial]))
    b.check(1, ledger.as_of(1), dropped, "dropped.parquet", picked)  # 11 labelled + 1 dropped = 12 picked
    with pytest.raises(ConfigError, match="round 1 expects 14 labelled clips, the ledger has 11 in rounds 0..1 "
                                          r"\(\+ 1 dropped\)"):
        b.check(1, ledger.as_of(1), dropped, "dropped.parquet", None)
    with pytest.raises(ConfigError, match="expects the 12 clips that the initial set and rounds 0..0 picked"):
        b.check(1, ledger.as_of(1), NO_DROPS, "dropped.parquet", picked)  # a label the selections miss
    ledger.append(1, ids[12:14], ["a"] * 2, "test")  # within the target, but picked by no stored selection
    with pytest.raises(ConfigError, match="expects the 12 clips"):
        b.check(1, ledger.as_of(1), dropped, "dropped.parquet", picked)
    ledger.append(1, [ids[14]], ["a"], "test")  # above the target, whatever the selections say
    with pytest.raises(ConfigError, match="round 1 expects at most 14 labelled clips, the ledger has 14 in rounds "
                                          r"0..1 \(\+ 1 dropped\)"):
        b.check(1, ledger.as_of(1), dropped, "dropped.parquet", 15)
    hours = LabelBudget(ActiveConfig(budget_hours=[4 / 3600, 14 / 3600, 20 / 3600]), clips)
    with pytest.raises(ConfigError, match="expects the 12 clips"):  # an hour budget: the same count of picks
        hours.check(1, ledger.as_of(1), NO_DROPS, "dropped.parquet", 12)


def test_a_clip_without_a_duration_counts_none_as_pandas_summed_and_a_stray_pick_is_refused():
    clips = TrainingClips([f"c{i}" for i in range(10)], [1.0] * 9 + [float("nan")])
    b = LabelBudget(ActiveConfig(budget_hours=[3.6 / 3600, 7.2 / 3600]), clips)
    assert clips.total_seconds == 9.0 and b.targets == pytest.approx([3.6, 7.2])
    # 3 s left after c0, mean free duration 1 s (the clip without one does not drag it to NaN)
    assert b.clips_wanted(3.0, {"c0"}, set()) == 4
    with pytest.raises(PoolError, match="1 picks are not training clips of this run, e.g. 'zz'"):
        b.within(["zz", "c1"], 7.2, "round 1")
