"""read_manifest: formats, EmoBox, label maps, path resolution, and every error's message."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from ser_models.data.manifest import MANIFEST_COLUMNS, SPLITS, read_manifest
from ser_models.exceptions import ManifestError

ROWS = [
    {"utt_id": "007", "path": "audio/a.wav", "label": "happy", "arousal": 4.0, "speaker": "s1", "split": "train"},
    {"utt_id": "008", "path": "/data/b.flac", "label": "sad", "start": 0.5, "end": 2.0, "split": "test",
     "transcript": "none of it"},
]
LABELS = ("neutral", "happy", "angry", "sad")


def write(tmp_path, name: str, rows: list[dict]) -> os.PathLike:
    path = tmp_path / name
    df = pd.DataFrame(rows)
    if name.endswith(".csv"):
        df.to_csv(path, index=False)
    elif name.endswith(".tsv"):
        df.to_csv(path, index=False, sep="\t")
    elif name.endswith(".parquet"):
        df.to_parquet(path)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("name", ["m.csv", "m.tsv", "m.parquet", "m.jsonl", "m.json"])
def test_each_format_gives_the_canonical_frame(tmp_path, name):
    df = read_manifest(write(tmp_path, name, ROWS), labels=LABELS)
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert df.utt_id.tolist() == ["007", "008"]  # leading zeros kept (CSV read as text)
    assert df.path.tolist() == [str(tmp_path / "audio" / "a.wav"), "/data/b.flac"]
    assert df.label.tolist() == ["happy", "sad"]
    assert df.start.dtype == np.float64 and np.isnan(df.start[0]) and df.end[1] == 2.0
    assert df.arousal[0] == 4.0 and np.isnan(df.arousal[1])
    assert df.speaker.tolist() == ["s1", None]  # missing -> None, not NaN or ""
    assert df.language.tolist() == [None, None] and df.corpus.dtype == object
    assert df.transcript.tolist() == [None, "none of it"]
    assert df.split.tolist() == ["train", "test"]


def test_json_array_file(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(ROWS))
    assert read_manifest(path).utt_id.tolist() == ["007", "008"]


def test_only_required_columns_get_all_optional_ones(tmp_path):
    df = read_manifest(write(tmp_path, "m.csv", [{"utt_id": "a", "path": "x.wav"}]))
    assert list(df.columns) == list(MANIFEST_COLUMNS)
    assert df.loc[0, ["start", "end", "arousal", "valence", "dominance"]].isna().all()
    assert df.loc[0, ["label", "speaker", "language", "corpus", "split", "transcript"]].tolist() == [None] * 6


def test_extra_columns_follow_the_canonical_ones(tmp_path):
    df = read_manifest(write(tmp_path, "m.csv", [{"gender": "f", "utt_id": "a", "path": "x.wav"}]))
    assert list(df.columns) == [*MANIFEST_COLUMNS, "gender"] and df.gender[0] == "f"


def test_paths_relative_absolute_and_file_uri(tmp_path):
    sub = tmp_path / "lists"
    sub.mkdir()
    rows = [{"utt_id": "a", "path": "../wavs/a.wav"}, {"utt_id": "b", "path": "file:///abs/b.wav"},
            {"utt_id": "c", "path": "s3://bucket/c.flac"}, {"utt_id": "d", "path": "d.wav"}]
    path = write(sub, "m.csv", rows)
    df = read_manifest(f"file://{path}")
    assert df.path.tolist() == [str(tmp_path / "wavs" / "a.wav"), "/abs/b.wav", "s3://bucket/c.flac",
                                str(sub / "d.wav")]


def test_a_file_uri_of_localhost_is_its_absolute_path_and_of_another_host_is_refused(tmp_path):
    """``file://localhost/abs/b.wav`` was read as ``localhost/abs/b.wav`` beside the manifest."""
    rows = [{"utt_id": "a", "path": "file://localhost/abs/a.wav"}, {"utt_id": "b", "path": "file:///abs/b%20c.wav"}]
    df = read_manifest(f"file://localhost{write(tmp_path, 'm.csv', rows)}")
    assert df.path.tolist() == ["/abs/a.wav", "/abs/b c.wav"]
    rows.append({"utt_id": "c", "path": "file://nas01/abs/c.wav"})
    with pytest.raises(ManifestError, match="row 3.*file://nas01/abs/c.wav.*the host 'nas01'"):
        read_manifest(write(tmp_path, "n.csv", rows))


def test_label_map_argument_file_and_discovery(tmp_path):
    rows = [{"utt_id": "a", "path": "a.wav", "label": "hap"}, {"utt_id": "b", "path": "b.wav", "label": "exc"},
            {"utt_id": "c", "path": "c.wav", "label": "sad"}]
    path = write(tmp_path, "m.csv", rows)
    mapping = {"hap": "happy", "exc": "happy"}
    assert read_manifest(path, LABELS, label_map=mapping).label.tolist() == ["happy", "happy", "sad"]
    other = tmp_path / "elsewhere.json"
    other.write_text(json.dumps(mapping))
    assert read_manifest(path, LABELS, label_map=str(other)).label.tolist() == ["happy", "happy", "sad"]
    with pytest.raises(ManifestError, match="'hap' is not allowed"):
        read_manifest(path, LABELS)  # no map next to it yet
    (tmp_path / "label_map.json").write_text(json.dumps(mapping))
    assert read_manifest(path, LABELS).label.tolist() == ["happy", "happy", "sad"]
    with pytest.raises(ManifestError, match="label_map file not found: .*nope.json"):
        read_manifest(path, label_map=tmp_path / "nope.json")


def test_emobox_jsonl_with_label_map_in_the_dataset_folder(tmp_path):
    fold = tmp_path / "iemocap" / "fold_1"
    fold.mkdir(parents=True)
    (tmp_path / "iemocap" / "label_map.json").write_text(
        json.dumps({"neu": "Neutral", "hap": "Happy", "exc": "Happy", "ang": "Angry", "sad": "Sad"})
    )
    rows = [
        {"key": "Ses01F_impro01_F000", "dataset": "iemocap", "wav": "wavs/Ses01F_impro01_F000.wav",
         "type": "raw", "sample_rate": 16000, "length": 1.94, "task": "category", "emo": "exc", "channel": 1},
        {"key": "Ses01F_impro01_F001", "dataset": "iemocap", "wav": "/corpora/F001.wav", "type": "raw",
         "sample_rate": 16000, "length": 2.5, "task": "category", "emo": "neu", "channel": 1},
    ]
    path = write(fold, "iemocap_train_fold_1.jsonl", rows)
    df = read_manifest(path, labels=["Neutral", "Happy", "Angry", "Sad"])
    assert list(df.columns[: len(MANIFEST_COLUMNS)]) == list(MANIFEST_COLUMNS)
    assert df.utt_id.tolist() == ["Ses01F_impro01_F000", "Ses01F_impro01_F001"]
    assert df.path.tolist() == [str(fold / "wavs" / "Ses01F_impro01_F000.wav"), "/corpora/F001.wav"]
    assert df.label.tolist() == ["Happy", "Neutral"]
    assert df.corpus.tolist() == ["iemocap", "iemocap"]
    assert df.length.tolist() == [1.94, 2.5]  # extra EmoBox fields are kept after the canonical columns
    # EmoBox's "channel" counts channels: kept as "channels", never read as channel number 1 of a mono file
    assert df.channel.tolist() == [-1, -1] and df.channels.tolist() == [1, 1]


SEGMENT_ROWS = [
    {"utt_id": "ep1-0", "path": "ep1.m4a", "recording": "ep1", "channel": 0, "start": 0.5, "end": 3.0,
     "group": "show-a", "split": "train", "speech_ratio": 0.8},
    {"utt_id": "ep1-1", "path": "ep1.m4a", "recording": "ep1", "channel": 1, "start": 1.0, "end": 2.0,
     "group": "show-a", "split": "train", "speech_ratio": 0.6},
    {"utt_id": "ep2-0", "path": "ep2.m4a", "recording": "2024", "channel": -1, "start": 0.0, "end": 1.5,
     "split": "test", "speech_ratio": 0.9},
    {"utt_id": "clip", "path": "clip.wav"},
]


@pytest.mark.parametrize("name", ["m.csv", "m.parquet", "m.jsonl"])
def test_segment_columns_recording_group_channel(tmp_path, name):
    df = read_manifest(write(tmp_path, name, SEGMENT_ROWS))
    assert list(df.columns) == [*MANIFEST_COLUMNS, "speech_ratio"]
    assert list(MANIFEST_COLUMNS[-3:]) == ["recording", "group", "channel"]
    assert df.recording.tolist() == ["ep1", "ep1", "2024", None]
    assert df.group.tolist() == ["show-a", "show-a", None, None]
    assert df.channel.dtype == np.int64 and df.channel.tolist() == [0, 1, -1, -1]  # missing = -1 (averaged)
    assert df.start.tolist()[:3] == [0.5, 1.0, 0.0]
    assert pd.to_numeric(df.speech_ratio).tolist()[:3] == [0.8, 0.6, 0.9]  # quality columns pass through


@pytest.mark.parametrize(
    ("value", "shown"),
    [("left", "'left'"), ("1.5", "'1.5'"), ("-2", "'-2'"), (True, "True")],
)
def test_a_channel_that_is_not_a_channel_number_names_file_row_and_value(tmp_path, value, shown):
    name = "m.jsonl" if isinstance(value, bool) else "m.csv"
    rows = [{"utt_id": "a", "path": "1.wav", "channel": 0}, {"utt_id": "b", "path": "2.wav", "channel": value}]
    msg = error(tmp_path, rows, name=name)
    assert f"{name}: row 2" in msg and "column 'channel'" in msg and f"got {shown}" in msg


# --- errors -------------------------------------------------------------------------------------------
def error(tmp_path, rows, name="m.csv", **kwargs) -> str:
    with pytest.raises(ManifestError) as info:
        read_manifest(write(tmp_path, name, rows), **kwargs)
    return str(info.value)


def test_missing_required_column_lists_the_columns_found(tmp_path):
    msg = error(tmp_path, [{"id": "a", "path": "a.wav", "label": "happy"}])
    assert "['utt_id']" in msg and "columns found: ['id', 'path', 'label']" in msg and "m.csv" in msg


def test_duplicate_utt_id_names_both_rows(tmp_path):
    rows = [{"utt_id": "a", "path": "1.wav"}, {"utt_id": "b", "path": "2.wav"}, {"utt_id": "a", "path": "3.wav"}]
    msg = error(tmp_path, rows)
    assert "row 3 (line 4)" in msg and "'a'" in msg and "duplicates row 1" in msg


def test_unknown_label_lists_allowed_labels(tmp_path):
    rows = [{"utt_id": "a", "path": "1.wav", "label": "happy"}, {"utt_id": "b", "path": "2.wav", "label": "joy"}]
    msg = error(tmp_path, rows, name="m.jsonl", labels=LABELS)
    assert "m.jsonl: row 2" in msg and "'label'" in msg and "'joy'" in msg
    assert "allowed: neutral, happy, angry, sad" in msg


def test_split_outside_train_dev_test(tmp_path):
    msg = error(tmp_path, [{"utt_id": "a", "path": "1.wav", "split": "val"}])
    assert "row 1 (line 2)" in msg and "'split'" in msg and "'val'" in msg
    assert ", ".join(SPLITS) in msg and "use 'dev'" in msg


@pytest.mark.parametrize(
    ("row", "needle"),
    [
        ({"start": "abc", "end": "2"}, "column 'start' must be a number, got 'abc'"),
        ({"start": "2.0", "end": "1.5"}, "column 'end' (1.5) must be greater than 'start' (2.0)"),
        ({"start": "1.0", "end": "1.0"}, "must be greater than 'start'"),
        ({"start": "-1", "end": "1"}, "column 'start' must be >= 0"),
        ({"arousal": "high"}, "column 'arousal' must be a number, got 'high'"),
    ],
)
def test_bad_times_and_numbers(tmp_path, row, needle):
    msg = error(tmp_path, [{"utt_id": "a", "path": "1.wav"}, {"utt_id": "b", "path": "2.wav", **row}])
    assert "row 2 (line 3)" in msg and needle in msg


def test_empty_path_and_empty_id(tmp_path):
    msg = error(tmp_path, [{"utt_id": "a", "path": "1.wav"}, {"utt_id": "b", "path": ""}])
    assert "row 2 (line 3)" in msg and "column 'path' is empty" in msg
    msg = error(tmp_path, [{"utt_id": "", "path": "1.wav"}], name="n.csv")
    assert "row 1" in msg and "column 'utt_id' is empty" in msg


def test_empty_manifest_and_unreadable_files(tmp_path):
    (tmp_path / "header_only.csv").write_text("utt_id,path\n")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(tmp_path / "header_only.csv")
    (tmp_path / "blank.jsonl").write_text("\n")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(tmp_path / "blank.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"utt_id": "a", "path": "a.wav"}\n{"utt_id": \n')
    with pytest.raises(ManifestError, match="bad.jsonl: row 2: invalid JSON"):
        read_manifest(tmp_path / "bad.jsonl")
    (tmp_path / "m.xlsx").write_text("x")
    with pytest.raises(ManifestError, match="unknown manifest extension '.xlsx'"):
        read_manifest(tmp_path / "m.xlsx")
    with pytest.raises(ManifestError, match="manifest not found"):
        read_manifest(tmp_path / "absent.csv")


def test_reads_the_demo_corpus_manifest_format(tmp_path):
    rows = [{"utt_id": "synth_000000", "path": "audio/train/synth_000000.flac", "label": "angry",
             "arousal": 3.9, "valence": 2.4, "dominance": 4.5, "speaker": "spk0000", "language": "en",
             "corpus": "synth", "split": "train", "transcript": "dae hil"}]
    df = read_manifest(write(tmp_path, "manifest.csv", rows), labels=LABELS)
    assert df.loc[0, "dominance"] == 4.5 and df.loc[0, "path"].endswith("audio/train/synth_000000.flac")
