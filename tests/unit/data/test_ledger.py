import numpy as np
import pytest

from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import LedgerError


def test_append_read_and_resume(tmp_path):
    path = tmp_path / "labels" / "ledger.parquet"
    led = LabelLedger(path)
    assert len(led) == 0 and led.rounds() == []
    assert led.append(0, ["a", "b"], ["hap", "sad"], "simulated") == 2
    assert led.append(0, ["a", "b"], ["hap", "sad"], "simulated") == 0  # resume: identical rows are a no-op
    led.append(1, ["c"], ["ang"], "simulated")
    again = LabelLedger(path)  # re-read from disk
    assert again.labels() == {"a": "hap", "b": "sad", "c": "ang"} and again.ids() == {"a", "b", "c"}
    assert again.rounds() == [0, 1] and again.round(1)["utt_id"].tolist() == ["c"]
    assert str(again.labelled()["time"].dt.tz) == "UTC"
    np.testing.assert_array_equal(again.labelled_map(["a", "x", "c"]), [1, 0, 2])
    assert "labelled=3" in repr(again)


def test_conflicts_and_duplicates_name_ids(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    led.append(0, ["a"], ["hap"], "o")
    with pytest.raises(LedgerError, match="'a'.*'hap'.*'sad'"):
        led.append(1, ["a"], ["sad"], "o")
    with pytest.raises(LedgerError, match="repeated.*'z'"):
        led.append(1, ["z", "z"], ["hap", "hap"], "o")
    with pytest.raises(LedgerError, match="empty labels.*'q'"):
        led.append(1, ["q"], [""], "o")
    assert len(LabelLedger(tmp_path / "l.parquet")) == 1  # failed appends wrote nothing


def test_crash_leftover_temp_file_is_ignored(tmp_path):
    path = tmp_path / "l.parquet"
    LabelLedger(path).append(0, ["a"], ["hap"], "o")
    (tmp_path / ".l.parquet.abc.tmp").write_bytes(b"PAR1 half written")  # a crash between write and rename
    led = LabelLedger(path)
    assert led.labels() == {"a": "hap"}
    led.append(1, ["b"], ["sad"], "o")
    assert LabelLedger(path).labels() == {"a": "hap", "b": "sad"}


def test_unreadable_ledger_names_file(tmp_path):
    path = tmp_path / "l.parquet"
    path.write_bytes(b"not parquet")
    with pytest.raises(LedgerError, match="l.parquet"):
        LabelLedger(path)


def test_dimensional_values_are_recorded_compared_and_read_back(tmp_path):
    path = tmp_path / "l.parquet"
    led = LabelLedger(path)
    dims = {"arousal": [4.0, 2.5], "valence": [3.0, None]}
    assert led.append(0, ["a", "b"], ["hap", None], "o", dimensions=dims) == 2
    # a resumed round re-appends the same values: a no-op; other values for the same clip: refused
    assert led.append(0, ["a"], ["hap"], "o", dimensions={"arousal": [4.0], "valence": [3.0]}) == 0
    with pytest.raises(LedgerError, match=r"'a' \(ledger: 'hap' \(arousal=4, valence=3\) in round 0; new: 'hap' "
                                          r"\(arousal=3.5, valence=3\)"):
        led.append(0, ["a"], ["hap"], "o", dimensions={"arousal": [3.5], "valence": [3.0]})
    with pytest.raises(LedgerError, match=r"empty labels for 'c' \(and no dimensional values\)"):
        led.append(1, ["c"], [None], "o", dimensions={"arousal": [None]})
    with pytest.raises(LedgerError, match="unknown dimension 'joy'"):
        led.append(1, ["c"], ["hap"], "o", dimensions={"joy": [1.0]})
    again = LabelLedger(path)
    t = again.targets().to_pandas().set_index("utt_id")
    assert t.loc["a", "arousal"] == 4.0 and t["label"].isna()["b"] and np.isnan(t.loc["b", "valence"])
    assert np.isnan(t.loc["a", "dominance"]) and again.labels() == {"a": "hap", "b": None}
    assert again.as_of(0).targets().num_rows == 2


def test_a_ledger_written_before_dimensions_existed_still_opens(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_models.data.ledger import LEDGER_SCHEMA

    old = LEDGER_SCHEMA.empty_table().select(["utt_id", "label", "round", "oracle", "time"])
    row = pa.table({"utt_id": ["a"], "label": ["hap"], "round": pa.array([0], pa.int32()), "oracle": ["o"],
                    "time": pa.array([0], pa.timestamp("us", tz="UTC"))}, schema=old.schema)
    pq.write_table(row, tmp_path / "l.parquet")
    led = LabelLedger(tmp_path / "l.parquet")
    assert led.labels() == {"a": "hap"} and led.targets().column("arousal").null_count == 1
    assert led.seconds() == 0.0  # no durations recorded then
    assert led.append(1, ["b"], ["sad"], "o") == 1


def test_ledger_records_seconds_labelled(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    led.append(0, ["a", "b"], ["hap", "sad"], "o", seconds=[2.5, 1.25])
    led.append(1, ["c"], ["neu"], "o", seconds=[3.0])
    again = LabelLedger(tmp_path / "l.parquet")
    assert again.seconds() == 6.75 and again.as_of(0).seconds() == 3.75
    assert again.labelled().set_index("utt_id")["seconds"].to_dict() == {"a": 2.5, "b": 1.25, "c": 3.0}
    assert again.append(1, ["c"], ["neu"], "o", seconds=[3.0]) == 0  # a resumed re-append is still a no-op
    with pytest.raises(LedgerError, match="seconds must be finite and >= 0; bad for 'd'"):
        again.append(2, ["d"], ["neu"], "o", seconds=[-1.0])
    with pytest.raises(LedgerError, match="1 ids but 2 seconds values"):
        again.append(2, ["d"], ["neu"], "o", seconds=[1.0, 2.0])


def test_annotator_time_and_soft_label_are_kept_but_not_part_of_a_rows_identity(tmp_path):
    from datetime import datetime, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    ledger = LabelLedger(tmp_path / "ledger.parquet")
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert ledger.append(1, ["a", "b"], ["ang", "sad"], oracle="label_studio", annotators=["x@e.org,y@e.org", None],
                         times=[when, None], soft_labels=['{"ang": 0.5, "sad": 0.5}', None]) == 2
    df = LabelLedger(tmp_path / "ledger.parquet").labelled()
    assert df["annotator"].iloc[0] == "x@e.org,y@e.org" and df["annotator"].isna().iloc[1]
    assert df["time"].iloc[0] == when and df["time"].iloc[1] > when  # None = now
    assert df["soft_label"].iloc[0] == '{"ang": 0.5, "sad": 0.5}' and df["soft_label"].isna().iloc[1]
    assert ledger.targets().column("soft_label").to_pylist() == ['{"ang": 0.5, "sad": 0.5}', None]
    # a resumed round re-appends the same labels with other provenance: a no-op
    assert ledger.append(1, ["a"], ["ang"], oracle="label_studio", annotators=["z@e.org"]) == 0
    with pytest.raises(LedgerError, match="2 ids but 1 annotator values"):
        ledger.append(2, ["c", "d"], ["ang", "sad"], oracle="o", annotators=["x"])
    # a ledger written before these columns existed still opens, with nulls
    old = pq.read_table(tmp_path / "ledger.parquet").drop_columns(["annotator", "soft_label"])
    pq.write_table(old, tmp_path / "old.parquet")
    reopened = LabelLedger(tmp_path / "old.parquet")
    assert reopened.labelled()["annotator"].isna().all() and reopened.targets().schema.field("soft_label").type == pa.string()


def test_evaluation_labels_have_a_purpose_and_never_reach_training_reads(tmp_path):
    path = tmp_path / "ledger.parquet"
    led = LabelLedger(path)
    assert led.append(0, ["t1", "t2"], ["hap", "sad"], "file", seconds=[1.0, 2.0], purpose="test") == 2
    led.append(0, ["d1"], ["neu"], "file", seconds=[4.0], purpose="dev")
    led.append(0, ["a"], ["ang"], "file", seconds=[8.0])
    led.append(1, ["b"], ["hap"], "file", seconds=[16.0])
    again = LabelLedger(path)
    # training reads: train rows only
    assert again.labels() == {"a": "ang", "b": "hap"} and again.ids() == {"a", "b"} and len(again) == 2
    assert again.targets().column("utt_id").to_pylist() == ["a", "b"] and again.seconds() == 24.0
    assert again.as_of(0).ids() == {"a"} and again.as_of(1).targets().num_rows == 2
    assert again.rounds() == [0, 1] and again.round(0)["utt_id"].tolist() == ["a"]
    np.testing.assert_array_equal(again.labelled_map(["t1", "a", "b"]), [0, 1, 2])
    # the evaluation sets, asked for by purpose; the record holds every row
    assert again.view("test").labels() == {"t1": "hap", "t2": "sad"} and len(again.view("dev")) == 1
    assert again.targets("dev").column("label").to_pylist() == ["neu"]
    assert again.ids(None) == {"t1", "t2", "d1", "a", "b"} and again.seconds(None) == 31.0
    assert again.counts() == {"train": 2, "dev": 1, "test": 2}
    assert again.labelled()["purpose"].tolist() == ["test", "test", "dev", "train", "train"]
    assert "evaluation={'dev': 1, 'test': 2}" in repr(again)
    # a resumed evaluation request re-appends: a no-op; an evaluation clip can never become a training label
    assert again.append(0, ["t1"], ["hap"], "file", purpose="test") == 0
    with pytest.raises(LedgerError, match=r"'t1' \(ledger: 'hap' in round 0 for the test set; new: 'hap' in round 0\)"):
        again.append(0, ["t1"], ["hap"], "file")
    with pytest.raises(LedgerError, match="purpose must be one of"):
        again.append(2, ["c"], ["hap"], "file", purpose="holdout")


def test_a_ledger_written_before_purposes_reads_as_training_labels(tmp_path):
    import pyarrow.parquet as pq

    LabelLedger(tmp_path / "new.parquet").append(0, ["a", "b"], ["hap", "sad"], "o")
    old = pq.read_table(tmp_path / "new.parquet").drop_columns(["purpose"])
    pq.write_table(old, tmp_path / "old.parquet")
    led = LabelLedger(tmp_path / "old.parquet")
    assert led.labelled()["purpose"].tolist() == ["train", "train"] and led.labels() == {"a": "hap", "b": "sad"}
    assert led.counts() == {"train": 2, "dev": 0, "test": 0}
    assert led.append(0, ["a"], ["hap"], "o") == 0  # the old rows keep their identity: a re-append is a no-op
    led.append(1, ["c"], ["neu"], "o", purpose="test")
    assert pq.read_table(tmp_path / "old.parquet").column("purpose").to_pylist() == ["train", "train", "test"]
