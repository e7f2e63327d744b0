"""Drawing the evaluation sets (``active.evaluation``) from a training split: sizes, whole units, strata,
determinism, and the errors of a pool too small for them. No Ray: plain frames of clips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ser_models.exceptions import ConfigError, PoolExhaustedError
from ser_models.planning.evaluation_sets import EvaluationConfig, draw_evaluation_sets
from ser_models.planning.run_evaluation import without_ids


def _clips(n_groups=6, recordings_per_group=4, clips_per_recording=5, languages=("en", "de")) -> pd.DataFrame:
    """Groups of recordings of clips; two speakers per recording (a call), languages by group, 2 s each."""
    rows = []
    for g in range(n_groups):
        for r in range(recordings_per_group):
            for c in range(clips_per_recording):
                rows.append({"utt_id": f"g{g}r{r}c{c}", "duration": 2.0 + 0.1 * c, "group": f"show{g}",
                             "recording": f"g{g}r{r}", "speaker": f"g{g}r{r}s{c % 2}",
                             "language": languages[g % len(languages)]})
    return pd.DataFrame(rows)


def _units(clips: pd.DataFrame, sel: pd.DataFrame, column: str) -> dict[str, set]:
    by = clips.set_index("utt_id")[column]
    return {p: set(by[sel.loc[sel.purpose == p, "utt_id"]]) for p in ("test", "dev")}


def test_auto_takes_whole_groups_and_no_group_straddles_evaluation_and_training():
    clips = _clips()
    sel, summary = draw_evaluation_sets(clips, EvaluationConfig(test_size=40, dev_size=20), seed=0)
    assert summary["disjoint_by"] == "group" and summary["stratify"] == "language"
    groups = _units(clips, sel, "group")
    assert len(groups["test"]) == 2 and len(groups["dev"]) == 1 and not groups["test"] & groups["dev"]
    # every clip of a drawn group is in the set (whole units), none elsewhere
    for purpose, gs in groups.items():
        assert set(sel.loc[sel.purpose == purpose, "utt_id"]) == set(clips.loc[clips.group.isin(gs), "utt_id"])
    assert summary["test"] == {"clips": 40, "seconds": pytest.approx(88.0), "units": 2, "target": 40.0,
                               "target_unit": "clips"}
    # stratified by language: the two test groups are one English, one German show
    lang = clips.drop_duplicates("group").set_index("group")["language"]
    assert sorted(lang[list(groups["test"])]) == ["de", "en"]
    assert list(sel.columns) == ["utt_id", "purpose", "unit"] and sel["unit"].str.startswith("group=").all()
    assert list(sel.purpose.unique()) == ["test", "dev"] and sel.utt_id.is_unique


@pytest.mark.parametrize("disjoint, column", [("recording", "recording"), ("speaker", "speaker")])
def test_disjoint_by_recording_or_speaker_spreads_units_over_the_coarser_column(disjoint, column):
    clips = _clips()
    cfg = EvaluationConfig(test_size=30, dev_size=15, disjoint_by=disjoint)
    sel, summary = draw_evaluation_sets(clips, cfg, seed=3)
    assert summary["disjoint_by"] == disjoint
    # auto stratify: the finest column coarser than the unit (groups for recordings, recordings for speakers)
    assert summary["stratify"] == {"recording": "group", "speaker": "recording"}[disjoint]
    units = _units(clips, sel, column)
    assert not units["test"] & units["dev"]
    taken = set(sel.utt_id)
    train = clips[~clips.utt_id.isin(taken)]
    assert not (units["test"] | units["dev"]) & set(train[column])  # none straddles evaluation and training
    assert abs(summary["test"]["clips"] - 30) <= 3 and abs(summary["dev"]["clips"] - 15) <= 3  # half a unit
    if disjoint == "recording":  # 6 recordings over 6 groups: one per group (systematic, proportional)
        assert len(_units(clips, sel[sel.purpose == "test"], "group")["test"]) == 6


def test_stratify_language_keeps_each_language_share_without_groups():
    clips = _clips(n_groups=8, languages=("en", "en", "en", "de"))  # 75 % English audio
    clips["group"] = None
    cfg = EvaluationConfig(test_size=40, dev_size=0, disjoint_by="recording", stratify="language")
    sel, summary = draw_evaluation_sets(clips, cfg, seed=1)
    langs = clips.set_index("utt_id").loc[sel.utt_id, "language"].value_counts()
    assert langs.to_dict() == {"en": 30, "de": 10} and "dev" not in summary and set(sel.purpose) == {"test"}


def test_same_seed_same_draw_other_seed_other_draw():
    clips = _clips()
    cfg = EvaluationConfig(test_size=20, dev_size=10, disjoint_by="recording")
    a, _ = draw_evaluation_sets(clips, cfg, seed=5)
    b, _ = draw_evaluation_sets(clips.sample(frac=1.0, random_state=1), cfg, seed=5)  # row order is irrelevant
    c, _ = draw_evaluation_sets(clips, cfg, seed=6)
    pd.testing.assert_frame_equal(a, b)
    assert set(a.utt_id) != set(c.utt_id)


def test_hours_size_clips_without_units_and_excluded_clips():
    clips = _clips(n_groups=4)
    clips[["group", "recording", "speaker", "language"]] = None
    excluded = set(clips.utt_id[:10])
    cfg = EvaluationConfig(test_hours=60 / 3600, dev_size=5)  # 60 s of audio, then 5 clips
    sel, summary = draw_evaluation_sets(clips, cfg, seed=0, exclude=excluded)
    assert summary["disjoint_by"] == "none" and summary["stratify"] == "none"
    test = clips.set_index("utt_id").loc[sel.loc[sel.purpose == "test", "utt_id"], "duration"]
    assert abs(test.sum() - 60.0) <= 1.2 and summary["test"]["target_unit"] == "seconds"
    assert (sel.purpose == "dev").sum() == 5 and not excluded & set(sel.utt_id)
    assert sel["unit"].str.startswith("clip=").all()


def test_too_small_pool_names_the_numbers_and_keys():
    clips = _clips(n_groups=2, recordings_per_group=2)  # 20 clips in 2 groups
    with pytest.raises(PoolExhaustedError, match=r"asks for 30 clips test \+ 10 clips dev, but the training split "
                                                 r"holds 20 clips .* in 2 group units.*active.evaluation.test_size"):
        draw_evaluation_sets(clips, EvaluationConfig(test_size=30, dev_size=10), seed=0)
    with pytest.raises(PoolExhaustedError, match="would take every training clip"):
        draw_evaluation_sets(clips, EvaluationConfig(test_size=10, dev_size=8), seed=0)
    with pytest.raises(PoolExhaustedError, match="every group unit is more than twice the test set's size "
                                                 r"\(2 clips; the smallest holds 10 clips\)"):
        draw_evaluation_sets(clips, EvaluationConfig(test_size=2, dev_size=0), seed=0)


def test_config_is_checked_and_names_keys():
    with pytest.raises(ConfigError, match="active.evaluation.source"):
        EvaluationConfig(source="manifest")
    with pytest.raises(ConfigError, match="active.evaluation.stratify"):
        EvaluationConfig(stratify="label")
    with pytest.raises(ConfigError, match="test set needs"):
        EvaluationConfig(test_size=0)
    with pytest.raises(ConfigError, match="dev_size"):
        EvaluationConfig(dev_size=-1)
    clips = _clips()
    clips["speaker"] = None
    with pytest.raises(ConfigError, match="disjoint_by=speaker but no candidate clip has a speaker"):
        draw_evaluation_sets(clips, EvaluationConfig(test_size=5, disjoint_by="speaker"), seed=0)


def test_without_ids_drops_the_evaluation_rows():
    import pyarrow as pa

    table = pa.table({"utt_id": ["a", "b", "c"], "x": [1, 2, 3]})
    out = without_ids(table, pa.array(["b"]))
    assert out.column("utt_id").to_pylist() == ["a", "c"] and np.array_equal(out.column("x").to_numpy(), [1, 3])
