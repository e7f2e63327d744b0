"""Segment quality columns and labels by overlap, on constructed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ser_models.exceptions import ManifestError
from ser_models.segment.overlap import labels_by_overlap
from ser_models.segment.quality import QualityGate, noise_floor, segment_quality

F = 512


def test_vad_gated_snr_level_speech_ratio_and_clipping():
    # 100 noise frames at power 1e-4, then 50 speech frames at power 1e-2 with 10 clipped samples each
    probs = np.r_[np.full(100, 0.05), np.full(50, 0.95)]
    power = np.r_[np.full(100, 1e-4), np.full(50, 1e-2)].astype(np.float32)
    clipped = np.r_[np.zeros(100), np.full(50, 10)].astype(np.int32)
    assert noise_floor(power, probs, 0.35) == pytest.approx(1e-4)
    q = segment_quality(np.array([[100 * F, 150 * F], [75 * F, 125 * F]]), probs, power, clipped, 0.5, 0.35)
    assert q["snr_db"][0] == pytest.approx(10 * math.log10((1e-2 - 1e-4) / 1e-4), abs=1e-3)
    assert q["speech_ratio"].tolist() == [1.0, 0.5]
    assert q["level_dbfs"][0] == pytest.approx(-20.0, abs=1e-3)
    assert q["clipping"][0] == pytest.approx(10 / F)


def test_gate_names_the_first_failed_rule():
    q = {"snr_db": np.array([20.0, 2.0, 20.0, 20.0]), "speech_ratio": np.array([0.9, 0.9, 0.1, 0.9]),
         "clipping": np.array([0.0, 0.0, 0.0, 0.5]), "level_dbfs": np.array([-20.0, -20.0, -20.0, -20.0])}
    assert QualityGate(min_snr_db=5.0, min_speech_ratio=0.3).reasons(q).tolist() == [
        None, "low_snr", "low_speech_ratio", "clipped"]
    assert QualityGate().reasons(q).tolist() == [None, None, None, "clipped"]


def test_labels_by_overlap_takes_the_label_covering_most_above_the_share():
    seg = pd.DataFrame({"recording": ["r"] * 4 + ["s"], "channel": [0, 0, 1, -1, 0],
                        "start": [0.0, 10.0, 0.0, 0.0, 0.0], "end": [4.0, 14.0, 4.0, 4.0, 4.0]})
    ann = pd.DataFrame({"recording": ["r", "r", "r", "r", "r"], "channel": [0, 0, 0, 1, 0],
                        "start": [0.0, 1.0, 3.0, 0.0, 10.0], "end": [2.0, 2.5, 4.0, 1.0, 11.0],
                        "label": ["angry", "angry", "sad", "happy", "sad"]})
    out = labels_by_overlap(seg, ann, min_share=0.5)
    # r/ch0 0-4 s: angry covers the union of 0-2 and 1-2.5 = 2.5 s (62.5 %), sad 1 s
    assert out["label"].tolist()[0] == "angry" and out["label_share"][0] == pytest.approx(0.625)
    assert out["label"][1] is None and out["label_share"][1] == pytest.approx(0.25)  # sad 1 s of 4
    assert out["label"][2] is None  # channel 1 has only 1 s of happy
    assert out["label"][3] == "angry"  # a mixed segment sees every channel's annotations
    assert out["label"][4] is None and out["label_share"][4] == 0.0  # no annotations for recording s


def test_annotations_without_channel_cover_every_channel_and_bad_rows_are_named():
    seg = pd.DataFrame({"recording": ["r", "r"], "channel": [0, 1], "start": [0.0, 0.0], "end": [2.0, 2.0]})
    ann = pd.DataFrame({"recording": ["r"], "start": [0.0], "end": [2.0], "label": ["sad"]})
    assert labels_by_overlap(seg, ann)["label"].tolist() == ["sad", "sad"]
    with pytest.raises(ManifestError, match="row 1"):
        labels_by_overlap(seg, ann.assign(end=[0.0]))
    with pytest.raises(ManifestError, match="label"):
        labels_by_overlap(seg, ann.drop(columns=["label"]))


def test_unlabelled_segments_leave_evaluation_splits_only_when_asked():
    from ser_models.segment.run import _drop_unlabelled

    seg = pd.DataFrame({"utt_id": list("abcd"), "split": ["train", "dev", "test", "dev"],
                        "label": [None, None, None, "sad"]})
    kept, dropped = _drop_unlabelled(seg, "eval")
    assert kept["utt_id"].tolist() == ["a", "d"] and dropped["utt_id"].tolist() == ["b", "c"]
    assert set(dropped["reason"]) == {"no_label"}
    assert _drop_unlabelled(seg, "all")[0]["utt_id"].tolist() == ["d"]
    assert len(_drop_unlabelled(seg, "none")[1]) == 0
