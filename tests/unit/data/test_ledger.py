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
