"""Drawn evaluation sets with sizes from the planner, at most N clips per unit, and the budget check that names
the evaluation keys. ``evaluation_sets`` reads a real prepared pool from disk (pyarrow, no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ser_models.active.loop_config import ActiveConfig
from ser_models.data.pool import SHARD_SCHEMA, Pool
from ser_models.exceptions import ConfigError
from ser_models.io import storage_path
from ser_models.planning.evaluation_sets import EvaluationConfig, draw_evaluation_sets, evaluation_sets

LABELS = ["angry", "happy", "neutral", "sad"]


def _speakers(n_speakers=10, per_speaker=46) -> pd.DataFrame:
    """The reported pool: 460 unlabelled clips, whole speakers of 46 (an acted corpus), 3 s each."""
    return pd.DataFrame([{"utt_id": f"s{s:02d}c{c:02d}", "duration": 3.0, "speaker": f"spk{s}"}
                         for s in range(n_speakers) for c in range(per_speaker)])


def _recordings(n=20, per_recording=40) -> pd.DataFrame:
    """Long recordings cut into segments: ``n`` recordings of ``per_recording`` segments, two speakers each."""
    return pd.DataFrame([{"utt_id": f"r{r:02d}s{c:03d}", "duration": 4.0, "recording": f"rec{r}",
                          "speaker": f"rec{r}spk{c % 2}"} for r in range(n) for c in range(per_recording)])


def _write_pool(root: Path, clips: pd.DataFrame) -> Pool:
    """A prepared pool on disk as ``jobs.prepare_pool`` lays it out (train split, no audio)."""
    schema = pa.schema([f for f in SHARD_SCHEMA if f.name != "split"])
    table = pa.table({f.name: pa.array(clips[f.name].tolist() if f.name in clips.columns else [None] * len(clips),
                                       f.type) for f in schema})
    (root / "build-1" / "data" / "split=train").mkdir(parents=True)
    pq.write_table(table, root / "build-1" / "data" / "split=train" / "part-0.parquet")
    (root / "summary.json").write_text(json.dumps({"build": "build-1", "kept": len(clips),
                                                   "splits": {"train": len(clips)}}))
    return Pool.open(str(root))


def test_the_reported_case_old_sizes_swallow_the_pool_and_the_error_names_every_key(tmp_path):
    # From zero labels on a 460-clip pool, test 300 / dev 100 of whole speakers drew 414 clips (422 in the
    # report's pool) and the error blamed active.budget_labels alone.
    pool = _write_pool(tmp_path / "pool", _speakers())
    folder = storage_path(tmp_path / "run" / "evaluation")
    cfg = EvaluationConfig(test_size=300, dev_size=100)
    with pytest.raises(ConfigError) as err:
        evaluation_sets(pool, folder, cfg, 0, labels=LABELS, budget=ActiveConfig(budget_labels=[20, 40, 80]),
                        log=lambda _: None)
    msg = str(err.value)
    for part in ("active.budget_labels asks for 80 labelled training clips but the training pool has 46",
                 "the training split holds 460 clips", "test 322 and dev 92 clips",
                 "active.evaluation.test_size=300, active.evaluation.dev_size=100", "hold out 414 clips",
                 "lower active.evaluation.test_size / active.evaluation.dev_size", "active.evaluation.max_share=0.3"):
        assert part in msg, (part, msg)
    assert not (tmp_path / "run" / "evaluation" / "selection.parquet").exists()  # nothing written: a rerun redraws


def test_unset_sizes_come_from_the_planner_within_the_share_and_the_budget_fits(tmp_path):
    pool = _write_pool(tmp_path / "pool", _speakers())
    lines = []
    sel = evaluation_sets(pool, storage_path(tmp_path / "run"), EvaluationConfig(), 0, labels=LABELS,
                          budget=ActiveConfig(budget_labels=[20, 40, 80]), log=lines.append)
    counts = sel["purpose"].value_counts()
    assert (counts["test"], counts["dev"]) == (92, 46) and len(sel) <= 0.3 * 460
    assert sel["unit"].str.startswith("speaker=").all()
    summary = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert summary["sizes"]["source"] == "planner" and summary["sizes"]["test_size"] == 92
    assert summary["held_out"] == {"clips": 138, "training_clips": 322}
    assert summary["composition"]["test"]["speakers"] == 2
    text = "\n".join(lines)
    assert "evaluation sizes from the planner (active.evaluation.test_size / dev_size unset): test 92, dev 46" in text
    assert "design effect 5.50 (46 clips per cluster, ICC 0.1 assumed)" in text
    assert "test: 92 clips from 0 recordings, 2 speakers, 0 groups" in text
    assert "warning: the test set spans 2 speakers, under 10" in text
    # read back on a rerun, never drawn again, whatever the config says now
    again = evaluation_sets(pool, storage_path(tmp_path / "run"), EvaluationConfig(test_size=5, dev_size=0), 0)
    pd.testing.assert_frame_equal(again, sel)


def test_planner_sizes_follow_the_class_shares_of_a_labelled_pool():
    clips = _speakers(40, 10)
    clips["label"] = ["sad" if i % 20 == 0 else LABELS[i % 3] for i in range(len(clips))]  # sad 5 %
    _, skewed = draw_evaluation_sets(clips, EvaluationConfig(), 0, labels=LABELS)
    _, uniform = draw_evaluation_sets(clips.drop(columns="label"), EvaluationConfig(), 0, labels=LABELS)
    assert skewed["sizes"]["needed"] > uniform["sizes"]["needed"]  # a rare class needs more clips


def test_given_sizes_win_and_a_missing_dev_size_comes_from_the_planner():
    clips = _speakers(40, 10)
    _, summary = draw_evaluation_sets(clips, EvaluationConfig(test_size=50), 0, labels=LABELS)
    assert summary["test"]["target"] == 50 and summary["sizes"]["source"] == "planner"
    assert summary["dev"]["target"] == summary["sizes"]["dev_size"]
    _, given = draw_evaluation_sets(clips, EvaluationConfig(test_size=150, dev_size=150), 0, labels=LABELS)
    assert given["sizes"] == {"source": "given"} and given["test"]["clips"] == 150  # over the share: asked for


@pytest.mark.parametrize("per_speaker", [7, 13, 29, 46, 61])
def test_planned_sets_never_take_more_than_the_share_whatever_the_unit_size(per_speaker):
    clips = _speakers(600 // per_speaker, per_speaker)
    sel, summary = draw_evaluation_sets(clips, EvaluationConfig(), 3, labels=LABELS)
    assert len(sel) <= summary["sizes"]["cap"] == int(0.3 * len(clips))


def test_max_per_unit_spreads_the_same_labels_over_more_recordings():
    clips = _recordings(40)
    whole, s_whole = draw_evaluation_sets(clips, EvaluationConfig(test_size=100, dev_size=40), 0)
    capped, s_cap = draw_evaluation_sets(clips, EvaluationConfig(test_size=100, dev_size=40, max_per_unit=5), 0)
    assert s_whole["disjoint_by"] == s_cap["disjoint_by"] == "recording"
    assert s_whole["test"]["units"] in (2, 3) and s_cap["test"]["units"] == 20 and s_cap["dev"]["units"] == 8
    assert (s_cap["test"]["clips"], s_cap["dev"]["clips"]) == (100, 40)
    per_unit = capped.groupby("unit").size()
    assert per_unit.max() == 5 and (capped.groupby("unit")["purpose"].nunique() == 1).all()
    assert not set(capped.query("purpose == 'test'").unit) & set(capped.query("purpose == 'dev'").unit)
    assert s_cap["composition"]["test"]["design_effect"] < s_whole["composition"]["test"]["design_effect"]
    assert s_cap["composition"]["test"]["cluster_size"] == 5.0
    assert s_cap["max_per_unit"] == 5
    # deterministic under the seed, another seed samples other segments
    again, _ = draw_evaluation_sets(clips, EvaluationConfig(test_size=100, dev_size=40, max_per_unit=5), 0)
    other, _ = draw_evaluation_sets(clips, EvaluationConfig(test_size=100, dev_size=40, max_per_unit=5), 1)
    pd.testing.assert_frame_equal(again, capped)
    assert set(other.utt_id) != set(capped.utt_id)


def test_max_per_unit_holds_the_units_other_clips_out_of_training(tmp_path):
    pool = _write_pool(tmp_path / "pool", _recordings())
    lines = []
    sel = evaluation_sets(pool, storage_path(tmp_path / "run"), EvaluationConfig(test_size=40, dev_size=10,
                                                                                  max_per_unit=5), 0,
                          labels=LABELS, budget=ActiveConfig(budget_labels=[10, 20]), log=lines.append)
    summary = json.loads((tmp_path / "run" / "evaluation.json").read_text())
    assert len(sel) == 50 and sel["unit"].nunique() == 10
    assert summary["held_out"] == {"clips": 400, "training_clips": 400}  # 10 recordings of 40
    assert any("at most 5 clips per unit (350 more clips of those units held out of training)" in x for x in lines)
    # a budget the held-out recordings leave no room for names max_per_unit among the fixes
    with pytest.raises(ConfigError, match=r"training pool has 400 .*hold out 400 clips.*active.evaluation.max_per_unit"):
        evaluation_sets(pool, storage_path(tmp_path / "run2"), EvaluationConfig(test_size=40, dev_size=10,
                                                                                 max_per_unit=5), 0,
                        labels=LABELS, budget=ActiveConfig(budget_labels=[10, 500]), log=lambda _: None)


def test_hour_budgets_are_checked_too(tmp_path):
    pool = _write_pool(tmp_path / "pool", _speakers())
    with pytest.raises(ConfigError, match=r"active.budget_hours asks for 0.4 h .*training pool holds 0.268 h "
                                          r"\(the training split holds 460 clips"):
        evaluation_sets(pool, storage_path(tmp_path / "run"), EvaluationConfig(), 0, labels=LABELS,
                        budget=ActiveConfig(budget_hours=[0.1, 0.4]), log=lambda _: None)


@pytest.mark.parametrize(("kw", "match"), [
    ({"max_per_unit": -1}, "active.evaluation.max_per_unit must be a whole number >= 0"),
    ({"max_share": 1.5}, r"active.evaluation.max_share must be in \(0, 1\)"),
    ({"half_width": 0}, r"active.evaluation.half_width must be in \(0, 1\)"),
    ({"icc": 2.0}, r"active.evaluation.icc must be in"),
    ({"test_size": -3}, "active.evaluation.test_size must be a whole number of clips >= 0 \\(or null"),
])
def test_new_keys_are_checked_and_named(kw, match):
    with pytest.raises(ConfigError, match=match):
        EvaluationConfig(**kw)


def test_max_per_unit_too_small_for_the_sets_is_named():
    from ser_models.exceptions import PoolExhaustedError

    with pytest.raises(PoolExhaustedError, match=r"\(at most active.evaluation.max_per_unit=5 of each unit\)"):
        draw_evaluation_sets(_recordings(20), EvaluationConfig(test_size=100, dev_size=40, max_per_unit=5), 0)
