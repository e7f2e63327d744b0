"""A recording (or a show, campaign, customer: its group) never straddles train/dev/test: ``prepare_pool`` refuses
such a manifest on the driver, before any Ray work."""

from __future__ import annotations

import pandas as pd
import pytest

import ser_models.data.prepare as prepare
from ser_models.data.config import PoolConfig
from ser_models.data.prepare import check_split_leaks, prepare_pool
from ser_models.exceptions import PoolError


def segments(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["utt_id", "recording", "group", "split"])


def test_one_recording_in_two_splits_is_refused_with_its_name_and_splits():
    df = segments([("a", "ep1", "show", "train"), ("b", "ep1", "show", "test"), ("c", "ep2", "show2", "dev"),
                   ("d", "ep3", None, "train"), ("e", "ep3", None, "train")])
    with pytest.raises(PoolError) as err:
        check_split_leaks(df, "m.parquet")
    msg = str(err.value)
    assert "m.parquet" in msg and "recording 'ep1' in test, train" in msg and "1 recording" in msg
    assert "ep2" not in msg and "ep3" not in msg


def test_one_group_in_two_splits_is_refused_even_when_each_recording_stays_put():
    df = segments([("a", "ep1", "show-a", "train"), ("b", "ep1", "show-a", "train"),
                   ("c", "ep2", "show-a", "dev"), ("d", "ep3", "show-b", "test")])
    with pytest.raises(PoolError, match=r"group 'show-a' in dev, train"):
        check_split_leaks(df)


def test_rows_without_recording_or_group_are_free_and_a_clean_manifest_passes():
    df = segments([("a", None, None, "train"), ("b", None, None, "test"), ("c", "ep1", "g", "dev"),
                   ("d", "ep1", "g", "dev"), ("e", "ep2", None, "test")])
    check_split_leaks(df)  # no error
    check_split_leaks(df.drop(columns=["recording", "group"]))  # a manifest of the old kind


def test_prepare_pool_refuses_before_any_ray_work(tmp_path, monkeypatch):
    rows = [{"utt_id": "a", "path": "ep1.wav", "recording": "ep1", "start": 0.0, "end": 1.0, "split": "train"},
            {"utt_id": "b", "path": "ep1.wav", "recording": "ep1", "start": 1.0, "end": 2.0, "split": "dev"},
            {"utt_id": "c", "path": "ep1.wav", "recording": "ep1", "start": 2.0, "end": 3.0}]  # no split = train
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)

    def no_ray(*args, **kwargs):
        raise AssertionError("decoding started")

    monkeypatch.setattr(prepare, "_write_shards", no_ray)
    cfg = PoolConfig(manifest=str(tmp_path / "m.csv"), output_dir=str(tmp_path / "pool"), labels=[])
    with pytest.raises(PoolError, match=r"recording 'ep1' in dev, train"):
        prepare_pool(cfg)
    assert not (tmp_path / "pool" / "summary.json").exists()
