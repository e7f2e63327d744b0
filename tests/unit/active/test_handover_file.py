"""A request file filled in part: what is filled goes into the ledger, blank and refused rows stay requested,
``skip`` takes a clip out for good (``labels/dropped.parquet``), all on real files through the loop's hand-over."""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ser_models.active.handover import LabelHandover
from ser_models.active.loop_config import ActiveConfig
from ser_models.active.training_clips import TrainingClips
from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import LabellingPending
from ser_models.io import storage_path
from ser_models.labelling.oracles import FileOracle

IDS = ["a", "b", "c", "d", "e", "f"]
INFO = pd.DataFrame({"utt_id": IDS, "path": [f"/x/{i}.wav" for i in IDS], "duration": 2.0})


def _handover(tmp_path, logs, dims=()):
    out = storage_path(tmp_path / "run")
    ledger = LabelLedger(out / "labels" / "ledger.parquet")
    oracle = FileOracle(out / "rounds" / "round=000", ["hap", "sad"], INFO, dimensions=list(dims),
                        value_range=(1, 5), request="round 0")
    return LabelHandover(None, out, ledger, ActiveConfig(), ["hap", "sad"], list(dims), (1.0, 5.0),
                         TrainingClips(IDS, [2.0] * len(IDS)), oracle=oracle, log=logs.append), ledger, oracle


def _fill(oracle, cells):
    """Write ``{utt_id: label cell}`` into the request file, as a spreadsheet saves it (other rows kept)."""
    df = pd.read_csv(oracle.file, dtype=str, keep_default_na=False)
    df["label"] = [cells.get(u, cell) for u, cell in zip(df["utt_id"], df["label"])]
    df.to_csv(oracle.file, index=False)


def test_a_partly_filled_file_imports_its_filled_rows_and_keeps_asking_for_the_rest(tmp_path):
    logs: list[str] = []
    handover, ledger, oracle = _handover(tmp_path, logs)
    with pytest.raises(LabellingPending, match=r"^round 0: 6 clips need labels.*or skip for a clip nobody can label"):
        handover.label(IDS, 1, 0)
    # a, b filled; c a typo; d skipped with a note; e, f left blank
    _fill(oracle, {"a": "hap", "b": "sad", "c": "hpa", "d": "Skip: two voices"})
    with pytest.raises(LabellingPending) as pending:
        handover.label(IDS, 1, 0)
    assert "round 0: 3 clips still need labels" in str(pending.value) and "2 left blank, 1 refused" in str(pending.value)
    assert sorted(LabelLedger(ledger.path).labels().items()) == [("a", "hap"), ("b", "sad")]
    dropped = pq.read_table(tmp_path / "run" / "labels" / "dropped.parquet").to_pandas()
    assert dropped[["utt_id", "round"]].to_numpy().tolist() == [["d", 1]]
    assert dropped["reason"].tolist() == ["skipped in round=000/to_label.csv line 5: two voices"]
    text = "\n".join(logs)
    assert "2 rows imported, 2 left blank, 1 skipped, 1 refused" in text
    assert "refused: line 4 ('c'): unknown label 'hpa' (allowed: hap, sad, or skip)" in text
    # the rest filled in; the imported and skipped rows are not read again, even edited
    _fill(oracle, {"a": "sad", "c": "hap", "d": "", "e": "sad", "f": "hap"})
    logs.clear()
    handover.label(IDS, 1, 0)
    ledger = LabelLedger(ledger.path)
    assert sorted(ledger.labels().items()) == [("a", "hap"), ("b", "sad"), ("c", "hap"), ("e", "sad"), ("f", "hap")]
    assert "3 rows imported, 0 left blank, 0 skipped, 0 refused (3 imported or skipped before)" in "\n".join(logs)
    assert len(pq.read_table(tmp_path / "run" / "labels" / "dropped.parquet")) == 1
    handover.label(IDS, 1, 0)  # a rerun with every clip decided adds nothing
    assert len(LabelLedger(ledger.path)) == 5


def test_a_skipped_clip_is_reported_as_skipped_not_as_one_the_oracle_cannot_label(tmp_path):
    logs: list[str] = []
    handover, _, oracle = _handover(tmp_path, logs)
    with pytest.raises(LabellingPending):
        handover.label(IDS[:2], 0, -1)
    _fill(oracle, {"a": "skip: another language", "b": "hap"})
    handover.label(IDS[:2], 0, -1)
    logs.clear()
    assert handover.unlabelable() == {"a"}
    assert logs == [f"  1 clips skipped or dropped in labelling ({tmp_path / 'run' / 'labels' / 'dropped.parquet'}) "
                    "are never asked for again"]


def test_dimension_rows_are_imported_refused_or_skipped_one_by_one(tmp_path):
    logs: list[str] = []
    handover, ledger, oracle = _handover(tmp_path, logs, dims=["arousal"])
    with pytest.raises(LabellingPending):
        handover.label(IDS[:4], 1, 0)
    df = pd.read_csv(oracle.file, dtype=str, keep_default_na=False)
    df["label"] = ["hap", "sad", "hap", ""]
    df["arousal"] = ["4.5", "7", "", "skip"]
    df.to_csv(oracle.file, index=False)
    with pytest.raises(LabellingPending, match="2 clips still need labels"):
        handover.label(IDS[:4], 1, 0)
    assert LabelLedger(ledger.path).labelled()[["utt_id", "label", "arousal"]].to_numpy().tolist() == [["a", "hap", 4.5]]
    text = "\n".join(logs)
    assert "line 3 ('b'): arousal 7 is outside [1, 5] (model.dimension_range)" in text
    assert "line 4 ('c'): arousal is empty" in text and "1 rows imported, 0 left blank, 1 skipped, 2 refused" in text
