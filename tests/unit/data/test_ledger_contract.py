"""The ledger's contract in the details a resumed round, a second writer and a reader rely on: what counts as the
same row, where the append lock lives, how errors list ids, and the types and times it writes. (Each test here
kills mutants of ``ser_models/data/ledger.py`` that the broader tests let survive: bench/results/mutation.md.)"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ser_models.data import ledger as ledger_module
from ser_models.data.ledger import LEDGER_SCHEMA, LabelLedger
from ser_models.exceptions import LedgerError, LockHeldError

ROOT = Path(__file__).resolve().parents[3]


def test_a_missing_value_is_the_same_as_a_missing_one_and_differs_from_a_value(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    assert led.append(0, ["a", "d"], ["hap", None], "o", dimensions={"arousal": [np.nan, 0.3]}) == 2
    # a resumed round re-appends: a missing value equals a missing value, a dimensions-only row has no label
    assert led.append(0, ["a", "d"], ["hap", float("nan")], "o", dimensions={"arousal": [None, 0.3]}) == 0
    with pytest.raises(LedgerError, match=r"1 ids are already labelled differently: 'a'"):
        led.append(0, ["a"], ["hap"], "o", dimensions={"arousal": [0.5]})  # now a value where there was none
    with pytest.raises(LedgerError, match=r"'d'"):
        led.append(0, ["d"], [None], "o", dimensions={"arousal": [np.nan], "valence": [0.2]})


def test_missing_annotators_are_null_and_the_oracle_is_kept(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    led.append(0, ["a", "b", "c"], ["x", "y", "z"], "file:votes.csv", annotators=[float("nan"), None, "ann1"])
    written = pq.read_table(tmp_path / "l.parquet")
    assert written.column("annotator").to_pylist() == [None, None, "ann1"]
    assert written.column("oracle").to_pylist() == ["file:votes.csv"] * 3


def test_the_written_file_has_the_ledgers_schema_even_for_rows_without_labels(tmp_path):
    path = tmp_path / "l.parquet"
    led = LabelLedger(path)
    led.append(0, ["a"], ["hap"], "o")
    led.append(1, ["d"], [None], "o", dimensions={"valence": [0.1]})  # a null-only label column
    assert pq.read_schema(path).remove_metadata() == LEDGER_SCHEMA
    assert LabelLedger(path).labels() == {"a": "hap", "d": None}


def test_the_time_is_utc_whatever_the_machines_zone(tmp_path, monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")  # UTC+9: a naive local time would be nine hours off
    time.tzset()
    try:
        before = dt.datetime.now(dt.timezone.utc)
        led = LabelLedger(tmp_path / "l.parquet")
        led.append(0, ["a"], ["hap"], "o")
        stamp = led.labelled()["time"].iloc[0].to_pydatetime()
    finally:
        monkeypatch.undo()
        time.tzset()
    assert abs((stamp - before).total_seconds()) < 60


def test_given_times_are_kept_and_a_time_without_a_zone_is_read_as_utc(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    naive = dt.datetime(2026, 3, 1, 12, 30)
    tokyo = dt.datetime(2026, 3, 1, 21, 30, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    led.append(0, ["a", "b"], ["hap", "sad"], "o", times=[naive, tokyo])
    stamps = pq.read_table(tmp_path / "l.parquet").column("time").to_pylist()
    assert stamps == [dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.timezone.utc)] * 2


@pytest.mark.parametrize("round_", [1.5, -1])
def test_a_round_that_is_not_a_whole_number_from_0_is_refused(tmp_path, round_):
    with pytest.raises(LedgerError, match=rf"l.parquet: round must be an integer >= 0, got {round_}"):
        LabelLedger(tmp_path / "l.parquet").append(round_, ["a"], ["hap"], "o")


def test_length_and_purpose_errors_say_what_is_wrong(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    with pytest.raises(LedgerError, match=r"l.parquet: 2 ids but 1 labels"):
        led.append(0, ["a", "b"], ["hap"], "o")
    with pytest.raises(LedgerError, match=r"purpose must be one of \['train', 'dev', 'test'\], got 'eval'"):
        led.view("eval")


def test_every_id_of_an_append_is_checked_for_a_label_or_a_value(tmp_path):
    with pytest.raises(LedgerError, match=r"empty labels for 'b' \(and no dimensional values\)"):
        LabelLedger(tmp_path / "l.parquet").append(0, ["a", "b"], [None, None], "o",
                                                   dimensions={"arousal": [0.2, np.nan]})


@pytest.mark.parametrize(("n", "shown"), [
    (10, "'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9'"),
    (11, "'c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9' ... (11 in all)"),
])
def test_an_error_lists_ten_ids_then_how_many_in_all(tmp_path, n, shown):
    ids = [f"c{i}" for i in range(n)]
    with pytest.raises(LedgerError) as info:
        LabelLedger(tmp_path / "l.parquet").append(0, ids, ["x"] * n, "o", seconds=[-1.0] * n)
    assert str(info.value).endswith(f"seconds must be finite and >= 0; bad for {shown}")


@pytest.mark.parametrize("n", [10, 11])
def test_a_conflict_error_lists_ten_conflicts_then_dots(tmp_path, n):
    led = LabelLedger(tmp_path / "l.parquet")
    ids = [f"c{i:02d}" for i in range(n)]
    led.append(0, ids, ["hap"] * n, "o")
    with pytest.raises(LedgerError) as info:
        led.append(0, ids, ["sad"] * n, "o")
    msg = str(info.value)
    assert msg.count("(ledger: 'hap' in round 0; new: 'sad' in round 0)") == 10
    assert "in round 0); 'c01'" in msg  # one conflict after another, "; " between
    last = "'c09' (ledger: 'hap' in round 0; new: 'sad' in round 0)"
    assert msg.endswith(last + (" ..." if n > 10 else ""))


def test_repr_names_the_path_labels_rounds_and_evaluation_sets(tmp_path):
    path = tmp_path / "l.parquet"
    led = LabelLedger(path)
    led.append(0, ["a"], ["hap"], "o")
    assert repr(led) == f"LabelLedger(path={str(path)!r}, labelled=1, rounds=[0])"
    led.append(5, ["e"], ["sad"], "o", purpose="dev")
    assert repr(led) == f"LabelLedger(path={str(path)!r}, labelled=1, rounds=[0], evaluation={{'dev': 1}})"


def test_rounds_round_map_and_views_read_the_training_rows(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    assert led.view("dev").round == 0  # nothing yet: round 0
    led.append(0, ["a", "b"], ["hap", "sad"], "o")
    led.append(2, ["c"], ["ang"], "o")
    led.append(5, ["e"], ["sad"], "o", purpose="dev")
    assert led.rounds() == [0, 2]  # the evaluation set's round is not a training round
    r = led.round(2)
    assert list(r.columns) == list(led.labelled().columns) and list(r.index) == [0]
    stamps = led.labelled_map(["a", "c", "e", "zz"])
    assert stamps.dtype == np.int64 and stamps.tolist() == [1, 3, 0, 0]
    assert led.as_of(0).round == 0 and led.as_of(0).ids() == {"a", "b"}
    assert led.view("dev").round == 5 and led.view("train").round == 2


#: Holds the append lock of the ledger file named in argv[1] until a line arrives on stdin.
HOLDER = ("import sys; sys.path.insert(0, {root!r}); from ser_models.locks import FolderLock; "
          "from pathlib import Path; p = Path(sys.argv[1]); "
          "lock = FolderLock(p.parent, 'x', name='.' + p.name + '.lock').acquire(); print('held', flush=True); "
          "sys.stdin.readline(); lock.release()")


def _holder(path: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER.format(root=str(ROOT)), str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_an_append_waits_for_another_processs_append_lock_next_to_the_file(tmp_path, monkeypatch):
    # the lock is ".<file name>.lock" in the ledger's folder (a name ending in X: nothing is stripped from it)
    path = tmp_path / "labels" / "ledger_X"
    path.parent.mkdir()
    monkeypatch.setattr(ledger_module, "APPEND_WAIT_S", 20.0)
    proc = _holder(path)
    try:
        release = threading.Timer(1.0, lambda: (proc.stdin.write("\n"), proc.stdin.flush()))
        release.start()
        start = time.monotonic()
        assert LabelLedger(path).append(0, ["a"], ["hap"], "o") == 1
        assert time.monotonic() - start >= 0.9  # it waited for the other writer, then appended
        release.join()
    finally:
        proc.kill()
        proc.wait()


def test_an_append_that_waits_too_long_names_the_ledger(tmp_path, monkeypatch):
    path = tmp_path / "ledger.parquet"
    monkeypatch.setattr(ledger_module, "APPEND_WAIT_S", 0.5)
    proc = _holder(path)
    try:
        with pytest.raises(LockHeldError, match=rf"the label ledger {path} {tmp_path} is being written"):
            LabelLedger(path).append(0, ["a"], ["hap"], "o")
    finally:
        proc.kill()
        proc.wait()
    assert not path.exists()


def test_missing_values_are_written_as_nulls_not_nans(tmp_path):
    """Readers outside pandas (Arrow, DuckDB, Spark) count nulls as missing; a NaN would read as a number."""
    led = LabelLedger(tmp_path / "l.parquet")
    led.append(0, ["a", "b"], ["hap", "sad"], "o", dimensions={"arousal": [np.nan, 0.4]}, seconds=[None, 2.5])
    written = pq.read_table(tmp_path / "l.parquet")
    assert written.column("arousal").to_pylist() == [None, 0.4] and written.column("arousal").null_count == 1
    assert written.column("seconds").to_pylist() == [None, 2.5] and written.column("valence").null_count == 2


def test_a_ledger_named_by_a_bare_file_name_appends_in_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert LabelLedger("ledger.parquet").append(0, ["a"], ["hap"], "o") == 1
    assert LabelLedger(tmp_path / "ledger.parquet").labels() == {"a": "hap"}


def test_dimension_errors_name_the_dimension_and_the_ids(tmp_path):
    led = LabelLedger(tmp_path / "l.parquet")
    with pytest.raises(LedgerError, match=r"l.parquet: 2 ids but 1 arousal values$"):
        led.append(0, ["a", "b"], ["x", "y"], "o", dimensions={"arousal": [0.1]})
    with pytest.raises(LedgerError, match=r"l.parquet: infinite valence for 'b', 'c'$"):
        led.append(0, ["a", "b", "c"], ["x", "y", "z"], "o", dimensions={"valence": [0.1, np.inf, -np.inf]})


def test_a_ledger_file_without_the_ledgers_columns_or_types_is_refused_by_name(tmp_path):
    import pyarrow as pa

    path = tmp_path / "l.parquet"
    pq.write_table(pa.table({"utt_id": ["a"], "round": [0]}), path)
    with pytest.raises(LedgerError, match=rf"label ledger {path} lacks columns \['label', 'oracle', 'time'\]; "
                                          r"expected \['utt_id', 'label'"):
        LabelLedger(path)
    pq.write_table(pa.table({"utt_id": ["a"], "label": ["x"], "round": ["first"], "oracle": ["o"],
                             "time": pa.array([0], pa.timestamp("us", tz="UTC"))}), path)
    with pytest.raises(LedgerError, match=rf"label ledger {path} has unexpected column types: "):
        LabelLedger(path)
