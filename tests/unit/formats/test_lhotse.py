"""Lhotse manifests written by lhotse itself come in as our manifests, and ours go out as lhotse reads them."""

from __future__ import annotations

import math

import pandas as pd
import pytest

lhotse = pytest.importorskip("lhotse")

from ser_models.data.manifest import read_manifest  # noqa: E402
from ser_models.formats.convert import ConvertConfig, convert, detect_format  # noqa: E402
from ser_models.formats.lhotse_manifest import import_lhotse, write_lhotse  # noqa: E402
from ser_models.segment.recordings import read_recordings  # noqa: E402


def _sets(audio):
    recs = lhotse.RecordingSet.from_recordings([lhotse.Recording.from_file(audio["mono"], recording_id="ep1"),
                                                lhotse.Recording.from_file(audio["stereo"], recording_id="call1")])
    S = lhotse.SupervisionSegment
    sups = lhotse.SupervisionSet.from_segments([
        S("ep1-a", "ep1", 0.5, 1.0, channel=0, speaker="spk1", text="hello", custom={"emotion": "happy", "split": "train",
                                                                                       "arousal": 0.7, "mood": "x"}),
        S("ep1-b", "ep1", 1.75, 1.0, channel=0, speaker="spk1", custom={"emotion": "sad"}),
        S("call1-a", "call1", 0.0, 1.2, channel=1, speaker="agent", language="en", custom={"emotion": "angry"}),
        S("call1-mix", "call1", 1.0, 1.5, channel=[0, 1], custom={"emotion": "neutral"}),
        S("call1-whole", "call1", 0.0, 3.0, channel=0, custom={"emotion": "neutral"}),
        S("bad-end", "call1", 2.5, 1.0, channel=0, custom={"emotion": "sad"}),       # past the 3 s recording
        S("bad-ch", "call1", 0.5, 1.0, channel=3, custom={"emotion": "sad"}),         # no such channel
        S("bad-label", "ep1", 0.1, 0.3, channel=0, custom={"emotion": "bored"}),      # not in labels
    ])
    return recs, sups


def test_supervisions_become_segments_keeping_offsets_channels_speakers_and_fields(tmp_path, audio):
    recs, sups = _sets(audio)
    recs.to_file(tmp_path / "x_recordings.jsonl.gz")
    sups.to_file(tmp_path / "x_supervisions.jsonl.gz")
    lines = []
    frame, report = import_lhotse(str(tmp_path / "x_supervisions.jsonl.gz"), str(tmp_path / "m.parquet"),
                                  labels=["angry", "happy", "neutral", "sad"], log=lines.append)
    assert report.taken == 5 and report.rows == 8
    assert {(r[1], r[2]) for r in report.refused} == {("bad-end", "bad_offset"), ("bad-ch", "bad_channel"),
                                                      ("bad-label", "unknown_label")}
    assert "took 5 of 8 rows" in lines[0] and "bad_offset 1" in lines[0]
    refused = pd.read_csv(tmp_path / "m.refused.csv")
    assert sorted(refused["id"]) == ["bad-ch", "bad-end", "bad-label"]
    m = read_manifest(tmp_path / "m.parquet").set_index("utt_id")
    a = m.loc["ep1-a"]
    assert (a.path, a.start, a.end, a.channel, a.recording, a.speaker, a.label) == (
        audio["mono"], 0.5, 1.5, 0, "ep1", "spk1", "happy")
    assert a.transcript == "hello" and a.split == "train" and a.arousal == 0.7 and a.mood == "x"
    assert m.loc["call1-a", "channel"] == 1 and m.loc["call1-a", "language"] == "en"
    assert m.loc["call1-mix", "channel"] == -1  # both channels of one file: averaged
    assert math.isnan(m.loc["call1-whole", "start"]) and math.isnan(m.loc["call1-whole", "end"])


def test_cuts_become_segments_with_their_supervision_fields(tmp_path, audio):
    recs, sups = _sets(audio)
    good = sups.filter(lambda s: not s.id.startswith("bad"))
    cuts = lhotse.CutSet.from_cuts(list(lhotse.CutSet.from_manifests(recordings=recs, supervisions=good)
                                        .trim_to_supervisions(keep_overlapping=False)))
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    assert detect_format(str(tmp_path / "cuts.jsonl.gz")) == "lhotse"
    frame, report = import_lhotse(str(tmp_path / "cuts.jsonl.gz"), str(tmp_path / "m.csv"), log=lambda s: None)
    assert report.taken == len(cuts) == 5 and not report.refused
    m = read_manifest(tmp_path / "m.csv").set_index("utt_id")
    cut = next(c for c in cuts if c.supervisions[0].id == "call1-a")
    assert m.loc[cut.id, "label"] == "angry" and m.loc[cut.id, "channel"] == 1
    assert m.loc[cut.id, "start"] == pytest.approx(0.0) and m.loc[cut.id, "end"] == pytest.approx(1.2)


def test_recordings_kind_writes_a_recordings_manifest_and_annotations(tmp_path, audio):
    recs, sups = _sets(audio)
    recs.to_file(tmp_path / "recordings.jsonl")
    sups.filter(lambda s: s.recording_id == "ep1").to_file(tmp_path / "supervisions.jsonl")
    frame, report = import_lhotse(str(tmp_path / "supervisions.jsonl"), str(tmp_path / "recs.csv"),
                                  kind="recordings", log=lambda s: None)
    got = read_recordings(tmp_path / "recs.csv").set_index("recording")
    assert got.loc["ep1", "speaker"] == "spk1" and got.loc["call1", "path"] == audio["stereo"]
    notes = pd.read_csv(tmp_path / "recs.annotations.csv")
    assert sorted(notes["label"]) == ["bored", "happy", "sad"] and set(notes["recording"]) == {"ep1"}


def test_missing_files_and_unreadable_sources_are_refused_with_the_reason(tmp_path, audio):
    rec = lhotse.Recording.from_file(audio["mono"], recording_id="gone")
    rec.sources[0].source = str(tmp_path / "nowhere.wav")
    mem = lhotse.Recording(id="mem", sources=[lhotse.AudioSource("command", [0], "sox x.wav -t wav -")], sampling_rate=16000,
                           num_samples=100, duration=100 / 16000)
    ok = lhotse.Recording.from_file(audio["mono"], recording_id="ok")
    lhotse.RecordingSet.from_recordings([rec, mem, ok]).to_file(tmp_path / "recordings.jsonl")
    frame, report = import_lhotse(str(tmp_path / "recordings.jsonl"), str(tmp_path / "m.parquet"),
                                  log=lambda s: None)
    assert report.reasons() == {"missing_file": 1, "unsupported_source": 1} and report.taken == 1


def test_export_then_import_gives_the_same_rows(tmp_path, audio):
    """Our manifest -> Lhotse supervisions (which lhotse loads) -> our manifest: the same rows."""
    rows = pd.DataFrame({
        "utt_id": ["s1", "s2", "s3", "clip"], "path": [audio["stereo"]] * 3 + [audio["mono"]],
        "recording": ["call1", "call1", "call1", None], "channel": [0, 1, -1, -1],
        "start": [0.25, 1.0, 0.5, math.nan], "end": [1.0, 2.5, 2.0, math.nan],
        "label": ["happy", "sad", None, "angry"], "speaker": ["a", "b", None, None],
        "purpose": ["train", "test", "train", "dev"]})
    rows.to_parquet(tmp_path / "ours.parquet")
    convert(ConvertConfig(input=str(tmp_path / "ours.parquet"), output=str(tmp_path / "lh"), to="lhotse"),
            log=lambda s: None)
    sups = lhotse.load_manifest(tmp_path / "lh" / "supervisions.jsonl")
    recs = lhotse.load_manifest(tmp_path / "lh" / "recordings.jsonl")
    cuts = lhotse.CutSet.from_manifests(recordings=recs, supervisions=sups)  # lhotse itself checks they match
    assert len(sups) == 4 and len(cuts) == 2 and sups["s1"].custom == {"emotion": "happy", "purpose": "train"}
    convert(ConvertConfig(input=str(tmp_path / "lh" / "supervisions.jsonl"), output=str(tmp_path / "back.parquet")),
            log=lambda s: None)
    back = read_manifest(tmp_path / "back.parquet")
    cols = ["utt_id", "path", "channel", "start", "end", "label", "speaker", "purpose"]
    expected = read_manifest(tmp_path / "ours.parquet")[cols]
    expected.loc[expected["utt_id"] == "clip", "channel"] = 0  # a mono file's channels averaged is its channel 0
    pd.testing.assert_frame_equal(back[cols], expected)
    assert back.set_index("utt_id").loc["s1", "recording"] == "call1"


def test_write_lhotse_refuses_rows_without_files(tmp_path):
    rows = pd.DataFrame({"utt_id": ["a"], "path": [None], "recording": [None], "channel": [-1],
                         "start": [math.nan], "end": [math.nan], "label": ["x"]})
    from ser_models.exceptions import ConfigError

    with pytest.raises(ConfigError, match="no audio path"):
        write_lhotse(rows, str(tmp_path / "out"), log=lambda s: None)


def test_yaml_manifests_written_by_lhotse_give_the_jsonl_rows(tmp_path, audio):
    recs, sups = _sets(audio)
    for ext in ("jsonl", "yaml"):
        recs.to_file(tmp_path / f"{ext}_recordings.{ext}")
        sups.to_file(tmp_path / f"{ext}_supervisions.{ext}")
    assert detect_format(str(tmp_path / "yaml_supervisions.yaml")) == "lhotse"
    labels = ["angry", "happy", "neutral", "sad"]
    frames = {}
    for ext in ("jsonl", "yaml"):
        frame, report = import_lhotse(str(tmp_path / f"{ext}_supervisions.{ext}"), str(tmp_path / f"{ext}.parquet"),
                                      labels=labels, log=lambda _: None)
        assert report.taken == 5
        frames[ext] = read_manifest(tmp_path / f"{ext}.parquet")
    pd.testing.assert_frame_equal(frames["yaml"], frames["jsonl"])
