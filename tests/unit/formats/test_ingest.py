"""Foreign manifests straight into jobs.prepare_pool and jobs.segment: the seam finds the format as jobs.convert does,
imports it with jobs.convert's importer into the job's output folder under its claim, and hands back the same
manifest jobs.convert writes, with the same report of refused rows (printed, and listed beside it)."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest

from ser_models import io
from ser_models.data.config import PoolConfig
from ser_models.data.manifest import read_manifest
from ser_models.data.prepare import claim_pool, pool_fingerprint
from ser_models.exceptions import ConfigError, ForeignFolderError, ManifestError
from ser_models.formats.convert import ConvertConfig, convert
from ser_models.formats.ingest import as_ours, foreign_format, read_as_ours
from ser_models.ownership import MARKER_NAME, claim_output
from ser_models.segment.recordings import read_recordings

QUIET = {"log": lambda s: None}


def _seam(manifest: str, out: str, lines: list[str] | None = None) -> str:
    """What jobs.prepare_pool does before Ray starts: the file it reads, imported under the pool's claim."""
    cfg = PoolConfig(manifest=manifest, output_dir=out, labels=[])
    log = lines.append if lines is not None else (lambda s: None)
    with read_as_ours(manifest, out, "segments", lambda: claim_pool(cfg), log=log) as source:
        return source


def _convert(manifest: str, output: str, **kwargs) -> pd.DataFrame:
    convert(ConvertConfig(input=manifest, output=output, **kwargs), **QUIET)
    return read_manifest(output)


def _lhotse_sets(lhotse, audio):
    recs = lhotse.RecordingSet.from_recordings([lhotse.Recording.from_file(audio["mono"], recording_id="ep1"),
                                                lhotse.Recording.from_file(audio["stereo"], recording_id="call1")])
    S = lhotse.SupervisionSegment
    sups = lhotse.SupervisionSet.from_segments([
        S("ep1-a", "ep1", 0.5, 1.0, channel=0, speaker="spk1", custom={"emotion": "happy", "split": "train"}),
        S("call1-a", "call1", 0.0, 1.2, channel=1, speaker="agent", custom={"emotion": "angry", "split": "test"}),
        S("call1-b", "call1", 1.5, 1.0, channel=0, custom={"emotion": "sad", "split": "test"}),
    ])
    return recs, sups


def test_lhotse_cuts_jsonl_gz_go_straight_in_as_the_manifest_convert_writes(tmp_path, audio):
    lhotse = pytest.importorskip("lhotse")
    recs, sups = _lhotse_sets(lhotse, audio)
    cuts = lhotse.CutSet.from_manifests(recordings=recs, supervisions=sups).trim_to_supervisions(
        keep_overlapping=False)
    cuts.to_file(tmp_path / "cuts.jsonl.gz")
    manifest, out = str(tmp_path / "cuts.jsonl.gz"), str(tmp_path / "pool")
    assert foreign_format(manifest) == "lhotse"
    lines: list[str] = []
    source = _seam(manifest, out, lines)
    assert source == io.join(out, "imported", "manifest.parquet")
    assert "cuts.jsonl.gz: a Lhotse manifest; importing" in lines[0] and "took 3 of 3 rows" in lines[1]
    assert json.loads((tmp_path / "pool" / MARKER_NAME).read_text())["kind"] == "pool"  # claimed before writing
    got = read_manifest(source)
    pd.testing.assert_frame_equal(got, _convert(manifest, str(tmp_path / "convert.parquet")))
    assert sorted(got["label"]) == ["angry", "happy", "sad"] and set(got["split"]) == {"train", "test"}
    # A rerun imports again to the same bytes: the same fingerprint, so an unchanged pool stays up to date.
    cfg = PoolConfig(manifest=manifest, output_dir=out, labels=[])
    first = pool_fingerprint(cfg, source)
    assert pool_fingerprint(cfg, _seam(manifest, out)) == first


def test_nemo_manifest_on_each_store_is_imported_with_its_refused_rows_listed_beside_it(store, audio):
    with open(audio["stereo"], "rb") as fh:
        io.write_bytes_atomic(io.join(store, "wavs", "call.wav"), fh.read())
    lines = [{"audio_filepath": "wavs/call.wav", "offset": 0.5, "duration": 1.0, "label": "happy", "channel": 1},
             {"audio_filepath": "wavs/call.wav", "offset": -1.0, "duration": 1.0, "label": "sad"},
             {"audio_filepath": "wavs/gone.wav", "offset": 0.0, "duration": 1.0, "label": "sad"}]
    manifest, out = io.join(store, "train_manifest.json"), io.join(store, "pool")
    io.write_bytes_atomic(manifest, "".join(json.dumps(x) + "\n" for x in lines).encode())
    printed: list[str] = []
    source = _seam(manifest, out, printed)
    report = printed[1]
    assert "took 1 of 3 rows; refused 2 (bad_offset 1, missing_file 1)" in report
    assert "refused row 2" in report and "refused row 3" in report
    listing = io.join(out, "imported", "manifest.refused.csv")
    assert f"refused rows listed in {listing}" in report
    refused = pd.read_csv(__import__("io").BytesIO(io.read_bytes(listing)))
    assert refused["reason"].tolist() == ["bad_offset", "missing_file"]
    want = _convert(manifest, io.join(store, "convert.parquet"))
    pd.testing.assert_frame_equal(read_manifest(source), want)
    assert want.loc[0, "path"] == io.join(store, "wavs", "call.wav") and want.loc[0, "channel"] == 1


def test_hf_dataset_folder_is_imported_with_its_embedded_audio_written_into_the_pool_folder(tmp_path, audio):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features({"audio": datasets.Audio(sampling_rate=16000),
                                  "label": datasets.ClassLabel(names=["angry", "happy", "sad"])})
    cells = [{"bytes": open(audio["mono"], "rb").read(), "path": "mono.wav"},
             {"bytes": None, "path": audio["stereo"]}, {"bytes": None, "path": audio["stereo"]}]
    ds = datasets.Dataset.from_dict({"audio": cells, "label": [1, 2, 7]}).cast(features)
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "hf"))
    manifest, out = str(tmp_path / "hf"), str(tmp_path / "pool")
    printed: list[str] = []
    got = read_manifest(_seam(manifest, out, printed))
    assert ": a Hugging Face dataset; importing" in printed[0]
    assert "unknown_label 1" in printed[1]  # class index 7 of 3 names
    clips = os.listdir(tmp_path / "pool" / "imported" / "audio")
    assert len(clips) == 2 and all(c.endswith(".wav") for c in clips)  # save_to_disk embeds every local file
    assert set(got["path"]) == {str(tmp_path / "pool" / "imported" / "audio" / c) for c in clips}
    want = _convert(manifest, str(tmp_path / "convert.parquet"), audio_dir=str(tmp_path / "pool" / "imported" / "audio"))
    pd.testing.assert_frame_equal(got, want)
    assert got["label"].tolist() == ["happy", "sad"]


def test_a_corpus_release_folder_goes_straight_in_with_convert_s_default_splits(tmp_path, audio):
    root = tmp_path / "Audio_Speech_Actors_01-24"
    for actor in range(1, 6):  # RAVDESS names: modality-channel-emotion-intensity-statement-repetition-actor
        (root / f"Actor_{actor:02d}").mkdir(parents=True)
        for emotion in (1, 5):
            name = f"03-01-{emotion:02d}-01-01-01-{actor:02d}.wav"
            (root / f"Actor_{actor:02d}" / name).write_bytes(open(audio["mono"], "rb").read())
    printed: list[str] = []
    got = read_manifest(_seam(str(root), str(tmp_path / "pool"), printed))
    assert ": the ravdess corpus folder; importing" in printed[0] and "took 10 of 10 rows" in printed[1]
    pd.testing.assert_frame_equal(got, _convert(str(root), str(tmp_path / "convert.parquet")))
    assert sorted(set(got["label"])) == ["angry", "neutral"]


def test_emobox_and_our_own_manifests_are_read_as_they_are_with_nothing_written(tmp_path):
    (tmp_path / "fold_1").mkdir()
    emobox = tmp_path / "fold_1" / "train.jsonl"
    emobox.write_text(json.dumps({"key": "u1", "wav": "a.wav", "emo": "hap", "length": 1.5, "sample_rate": 16000,
                                  "channel": 1, "dataset": "iemocap"}) + "\n")
    (tmp_path / "label_map.json").write_text(json.dumps({"hap": "happy"}))
    ours = tmp_path / "ours.jsonl"  # an extra recording_id column does not make our manifest a Lhotse one
    ours.write_text(json.dumps({"utt_id": "u1", "path": "a.wav", "recording_id": "r1", "label": "sad"}) + "\n")
    csv = tmp_path / "ours.csv"
    csv.write_text("utt_id,path\nu1,a.wav\n")
    for path in (emobox, ours, csv):
        assert foreign_format(str(path)) is None
        assert _seam(str(path), str(tmp_path / "pool")) == str(path)
    assert not (tmp_path / "pool").exists()  # nothing claimed, nothing written: the pool reads them itself
    m = read_manifest(emobox)
    assert (m.loc[0, "utt_id"], m.loc[0, "label"], m.loc[0, "corpus"]) == ("u1", "happy", "iemocap")


# ids by name: the bytes would make them, and gzip stamps its output with the time (workers must collect the same ids)
@pytest.mark.parametrize("name, body", [("clips.xlsx", b"PK\x03\x04"),
                                         ("clips.csv.gz", __import__("gzip").compress(b"utt_id,path\nu1,a.wav\n", mtime=0))],
                         ids=["xlsx", "csv.gz"])
def test_an_unknown_format_names_the_formats_accepted_and_jobs_convert(tmp_path, name, body):
    (tmp_path / name).write_bytes(body)
    with pytest.raises(ManifestError) as err:
        _seam(str(tmp_path / name), str(tmp_path / "pool"))
    message = str(err.value)
    for named in ("manifest=", name, ".csv, .tsv, .parquet", "Lhotse", ".jsonl.gz", "NeMo", "Hugging Face",
                  "IEMOCAP", "python -m jobs.convert"):
        assert named in message, (named, message)
    assert not (tmp_path / "pool").exists()


def test_the_import_needs_the_claim_and_an_option_only_convert_has_is_named(tmp_path, audio):
    lhotse = pytest.importorskip("lhotse")
    recs, sups = _lhotse_sets(lhotse, audio)
    sups.to_file(tmp_path / "sups.jsonl.gz")  # supervisions with no recordings file beside them
    recs.to_file(tmp_path / "elsewhere_recs.jsonl.gz")
    manifest, out = str(tmp_path / "sups.jsonl.gz"), str(tmp_path / "pool")
    with pytest.raises(ForeignFolderError, match="has not claimed"):
        as_ours(manifest, out, "segments", **QUIET)
    with pytest.raises(ConfigError, match=r"RecordingSet file.*python -m jobs\.convert input=") as err:
        _seam(manifest, out)
    assert "manifest=" in str(err.value)


def test_lhotse_recordings_go_straight_into_segment_as_a_recordings_manifest_with_annotations(tmp_path, audio):
    lhotse = pytest.importorskip("lhotse")
    recs, sups = _lhotse_sets(lhotse, audio)
    recs.to_file(tmp_path / "x_recordings.jsonl.gz")
    sups.to_file(tmp_path / "x_supervisions.jsonl.gz")
    manifest, out = str(tmp_path / "x_supervisions.jsonl.gz"), str(tmp_path / "segments")
    printed: list[str] = []
    with read_as_ours(manifest, out, "recordings", lambda: claim_output(out, "segments"), key="recordings",
                      log=printed.append) as source:
        assert source == io.join(out, "imported", "recordings.parquet")
        got = read_recordings(source)
    assert printed[0].startswith(f"recordings={manifest}: a Lhotse manifest; importing")
    convert(ConvertConfig(input=manifest, output=str(tmp_path / "recs.parquet"), kind="recordings"), **QUIET)
    pd.testing.assert_frame_equal(got, read_recordings(tmp_path / "recs.parquet"))
    assert sorted(got["recording"]) == ["call1", "ep1"]
    annotations = pd.read_parquet(tmp_path / "segments" / "imported" / "recordings.annotations.parquet")
    assert sorted(annotations["label"]) == ["angry", "happy", "sad"]


def test_a_datasets_embedded_audio_goes_under_the_pools_claim_without_a_claim_of_its_own(tmp_path, audio):
    """jobs.prepare_pool's imported/audio lies inside the pool it has claimed: that claim covers it."""
    datasets = pytest.importorskip("datasets")
    import soundfile as sf

    cells = [{"bytes": open(audio["mono"], "rb").read(), "path": "a.wav"}]
    features = datasets.Features({"audio": datasets.Audio(sampling_rate=16000), "label": datasets.Value("string")})
    datasets.Dataset.from_dict({"audio": cells, "label": ["happy"]}).cast(features).save_to_disk(
        str(tmp_path / "disk"))
    out = tmp_path / "pool"
    source = _seam(str(tmp_path / "disk"), str(out))
    clip = read_manifest(source)["path"].iloc[0]
    assert os.path.dirname(clip) == str(out / "imported" / "audio") and sf.info(clip).frames == 48000
    assert not (out / "imported" / "audio" / MARKER_NAME).exists()  # one owner: the pool
