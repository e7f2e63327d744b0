"""What an export reads: a timeline joined with its segments' files, and the refusals that name what is missing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ser_models.exceptions import ConfigError
from ser_models.formats.convert import ConvertConfig, convert
from ser_models.formats.sources import export_table, source_kind
from ser_models.segment.timeline import build_timeline

QUIET = {"log": lambda s: None}


def _predict_folder(tmp_path, audio):
    """A ``jobs.predict recordings=...`` output's two files: ``segments/segments.parquet`` and ``timeline.parquet``."""
    out = tmp_path / "predict"
    (out / "segments").mkdir(parents=True)
    segments = pd.DataFrame({"utt_id": ["call-0-000", "call-1-000"], "path": [audio["stereo"]] * 2,
                             "recording": ["call", "call"], "channel": [0, 1], "start": [0.1, 0.5],
                             "end": [1.1, 2.0], "speaker": [None, "caller"]})
    segments.to_parquet(out / "segments" / "segments.parquet")
    preds = pd.DataFrame({"utt_id": ["call-1-000", "call-0-000"], "predicted": ["angry", "neutral"],
                          "confidence": [0.8, 0.6], "probs": [np.array([0.8, 0.2]), np.array([0.4, 0.6])]})
    timeline = build_timeline(preds, segments)
    timeline.to_parquet(out / "timeline.parquet")
    return out


def test_a_timeline_exports_with_its_segments_files_predictions_and_probabilities(tmp_path, audio):
    out = _predict_folder(tmp_path, audio)
    assert source_kind(str(out / "timeline.parquet"))[0] == "timeline"
    kind, rows = export_table(str(out / "timeline.parquet"))
    assert kind == "timeline" and rows.set_index("utt_id").loc["call-1-000", "path"] == audio["stereo"]
    convert(ConvertConfig(input=str(out / "timeline.parquet"), output=str(tmp_path / "t.jsonl"), to="nemo"), **QUIET)
    lines = {x["utt_id"]: x for x in map(json.loads, (tmp_path / "t.jsonl").read_text().splitlines())}
    caller = lines["call-1-000"]
    assert (caller["label"], caller["offset"], caller["duration"], caller["channel"]) == ("angry", 0.5, 1.5, 1)
    assert caller["probs"] == [0.8, 0.2] and caller["confidence"] == 0.8 and caller["speaker"] == "caller"
    convert(ConvertConfig(input=str(out / "timeline.parquet"), output=str(tmp_path / "lh"), to="lhotse"), **QUIET)
    sups = [json.loads(x) for x in (tmp_path / "lh" / "supervisions.jsonl").read_text().splitlines()]
    assert {s["id"]: s["custom"]["emotion"] for s in sups} == {"call-0-000": "neutral", "call-1-000": "angry"}


def test_a_timeline_without_its_segments_and_a_ledger_without_its_pool_are_refused_by_key(tmp_path, audio):
    out = _predict_folder(tmp_path, audio)
    (out / "segments" / "segments.parquet").unlink()
    with pytest.raises(ConfigError, match="segments="):
        export_table(str(out / "timeline.parquet"))
    from ser_models.data.ledger import LabelLedger

    LabelLedger(tmp_path / "run" / "labels" / "ledger.parquet").append(0, ["a"], ["happy"], "file:x")
    with pytest.raises(ConfigError, match="pool_dir="):
        export_table(str(tmp_path / "run"))
