"""Hugging Face datasets (written by ``datasets``) and NeMo manifests in and out, round trips included."""

from __future__ import annotations

import json
import math
import os

import pandas as pd
import pytest

from ser_models.data.manifest import read_manifest
from ser_models.exceptions import ConfigError
from ser_models.formats.convert import ConvertConfig, convert, detect_format
from ser_models.formats.hf_dataset import import_hf
from ser_models.formats.nemo_manifest import import_nemo

QUIET = {"log": lambda s: None}


def _hf_dataset(audio, embed: bool):
    """Four rows; the third names a copy of the mono file that the caller may delete once the dataset is written
    (``datasets`` stats every file it writes, so a missing file can only be made afterwards)."""
    import shutil

    datasets = pytest.importorskip("datasets")
    gone = os.path.join(os.path.dirname(audio["mono"]), "gone.wav")
    shutil.copy(audio["mono"], gone)
    features = datasets.Features({"audio": datasets.Audio(sampling_rate=16000),
                                  "label": datasets.ClassLabel(names=["angry", "happy", "sad"]),
                                  "speaker_id": datasets.Value("string"), "age": datasets.Value("int64")})
    cells = [{"bytes": open(audio["mono"], "rb").read() if embed else None, "path": audio["mono"]},
             {"bytes": None, "path": audio["stereo"]}, {"bytes": None, "path": gone},
             {"bytes": None, "path": audio["stereo"]}]
    # Built from Arrow cells: datasets 5 needs torchcodec to encode audio values, not to store a {bytes, path} cell.
    return datasets.Dataset.from_dict({"audio": cells, "label": [1, 2, 0, 7 if embed else -1],
                                       "speaker_id": ["s1", "s2", "s3", "s4"], "age": [30, 40, 50, 60]}).cast(features)


def test_hf_save_to_disk_with_embedded_bytes_writes_each_clip_once_by_content(tmp_path, audio):
    datasets = pytest.importorskip("datasets")
    ds = _hf_dataset(audio, embed=True)
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(tmp_path / "disk"))
    assert detect_format(str(tmp_path / "disk")) == "hf"
    with pytest.raises(ConfigError, match="audio_dir"):
        import_hf(str(tmp_path / "disk"), str(tmp_path / "m.parquet"), **QUIET)
    frame, report = import_hf(str(tmp_path / "disk"), str(tmp_path / "m.parquet"), audio_dir=str(tmp_path / "aud"),
                              **QUIET)
    # save_to_disk embeds every local file (gone.wav is a copy of mono.wav); class index 7 is refused
    assert report.reasons() == {"unknown_label": 2} and report.taken == 6
    files = sorted(f for f in os.listdir(tmp_path / "aud") if not f.startswith("."))
    assert len(files) == 2 and all(f.endswith(".wav") for f in files)  # 2 distinct clips, 6 rows using them
    assert json.loads((tmp_path / "aud" / ".ser-output.json").read_text())["kind"] == "audio"  # claimed
    m = read_manifest(tmp_path / "m.parquet").set_index("utt_id")
    assert m.loc["train-0000000", "label"] == "happy" and m.loc["train-0000000", "speaker"] == "s1"
    assert m.loc["validation-0000004", "split"] == "dev" and m.loc["train-0000000", "age"] == 30
    with open(m.loc["train-0000000", "path"], "rb") as fh, open(audio["mono"], "rb") as src:
        assert fh.read() == src.read()


def test_hf_parquet_with_paths_is_followed_and_minus_one_is_unlabelled(tmp_path, audio):
    ds = _hf_dataset(audio, embed=False)
    (tmp_path / "data").mkdir()
    ds.to_parquet(str(tmp_path / "data" / "test-00000-of-00001.parquet"))
    os.remove(os.path.join(os.path.dirname(audio["mono"]), "gone.wav"))
    frame, report = import_hf(str(tmp_path / "data" / "test-00000-of-00001.parquet"), str(tmp_path / "m.csv"),
                              **QUIET)
    assert report.reasons() == {"missing_file": 1}
    m = read_manifest(tmp_path / "m.csv").set_index("utt_id")
    assert m.loc["test-0000001", "path"] == audio["stereo"] and m.loc["test-0000001", "split"] == "test"
    assert m.loc["test-0000003", "label"] is None


def _ours(tmp_path, audio) -> str:
    rows = pd.DataFrame({
        "utt_id": ["s1", "s2", "clip"], "path": [audio["stereo"], audio["stereo"], audio["mono"]],
        "recording": ["call1", "call1", None], "channel": [0, 1, -1], "start": [0.25, 1.0, math.nan],
        "end": [1.0, 2.5, math.nan], "label": ["happy", "sad", None], "speaker": ["a", "b", None],
        "split": ["train", "test", "dev"], "transcript": ["hi", None, None]})
    rows.to_parquet(tmp_path / "ours.parquet")
    return str(tmp_path / "ours.parquet")


COLS = ["utt_id", "path", "recording", "channel", "start", "end", "label", "speaker", "split", "transcript"]


def test_hf_export_is_read_by_datasets_and_imports_back_to_the_same_rows(tmp_path, audio):
    datasets = pytest.importorskip("datasets")
    ours = _ours(tmp_path, audio)
    convert(ConvertConfig(input=ours, output=str(tmp_path / "hf"), to="hf", labels=["angry", "happy", "sad"]), **QUIET)
    loaded = datasets.load_dataset(str(tmp_path / "hf"))
    assert set(loaded) == {"train", "validation", "test"}
    assert loaded["train"].features["label"].names == ["angry", "happy", "sad"]
    cell = loaded["train"].with_format("arrow")[0]["audio"][0].as_py()
    assert cell == {"bytes": None, "path": audio["stereo"]}  # audio by path, never copied
    convert(ConvertConfig(input=str(tmp_path / "hf"), output=str(tmp_path / "back.parquet"), id_field="utt_id"),
            **QUIET)
    back = read_manifest(tmp_path / "back.parquet").sort_values("utt_id").reset_index(drop=True)
    want = read_manifest(ours).sort_values("utt_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(back[COLS], want[COLS])


def test_nemo_export_and_import_give_the_same_rows(tmp_path, audio):
    ours = _ours(tmp_path, audio)
    convert(ConvertConfig(input=ours, output=str(tmp_path / "nemo.json"), to="nemo"), **QUIET)
    lines = [json.loads(x) for x in (tmp_path / "nemo.json").read_text().splitlines()]
    assert lines[0]["audio_filepath"] == audio["stereo"] and lines[0]["offset"] == 0.25
    assert lines[0]["duration"] == 0.75 and lines[2]["duration"] == 3.0 and "offset" not in lines[2]
    convert(ConvertConfig(input=str(tmp_path / "nemo.json"), output=str(tmp_path / "back.csv"), format="nemo"),
            **QUIET)
    pd.testing.assert_frame_equal(read_manifest(tmp_path / "back.csv")[COLS], read_manifest(ours)[COLS])


def test_nemo_rows_without_ids_get_path_ids_and_bad_rows_are_refused(tmp_path, audio):
    root = os.path.dirname(audio["mono"])
    lines = [{"audio_filepath": "mono.wav", "duration": 3.0, "label": "happy"},
             {"audio_filepath": "stereo.wav", "offset": 0.5, "duration": 1.0, "label": "sad", "snr": 12.5},
             {"audio_filepath": "stereo.wav", "offset": -1.0, "duration": 1.0, "label": "sad"},
             {"audio_filepath": "gone.wav", "duration": 1.0, "label": "sad"},
             {"audio_filepath": "stereo.wav", "offset": 0.5, "duration": 1.0, "label": "sad"},
             {"audio_filepath": "mono.wav", "offset": 1.0, "duration": 1.0, "label": "bored"},
             {"utt_id": "a\tb", "audio_filepath": "mono.wav", "offset": 2.0, "duration": 0.5, "label": "sad"}]
    (tmp_path / "wavs" / "train.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    frame, report = import_nemo(str(tmp_path / "wavs" / "train.json"), str(tmp_path / "m.parquet"),
                                labels=["happy", "sad"], **QUIET)
    assert [r[2] for r in report.refused] == ["bad_offset", "missing_file", "duplicate_id", "unknown_label",
                                              "bad_id"]
    m = read_manifest(tmp_path / "m.parquet").set_index("utt_id")
    assert m.loc["mono", "path"] == os.path.join(root, "mono.wav") and math.isnan(m.loc["mono", "start"])
    assert (m.loc["stereo@0.500", "start"], m.loc["stereo@0.500", "end"], m.loc["stereo@0.500", "snr"]) == (
        0.5, 1.5, 12.5)


def test_file_uris_of_this_machine_are_read_and_of_another_host_refused(tmp_path, audio):
    """``file://localhost/abs/mono.wav`` was read as ``localhost/abs/mono.wav`` under the manifest's folder."""
    lines = [{"utt_id": "a", "audio_filepath": f"file://localhost{audio['mono']}", "duration": 3.0},
             {"utt_id": "b", "audio_filepath": f"file://{audio['stereo']}", "duration": 3.0},
             {"utt_id": "c", "audio_filepath": f"file://nas01{audio['mono']}", "duration": 3.0}]
    (tmp_path / "m.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    for check_files in (True, False):  # refused by what it is, not because no such file is found
        frame, report = import_nemo(str(tmp_path / "m.json"), str(tmp_path / "m.csv"), check_files=check_files,
                                    **QUIET)
        assert frame["path"].tolist() == [audio["mono"], audio["stereo"]]
        assert [(r[1], r[2]) for r in report.refused] == [("c", "unsupported_source")]
        assert "another host" in report.refused[0][3]


def test_an_export_never_writes_into_a_folder_it_did_not_make(tmp_path, audio):
    from ser_models.exceptions import ForeignFolderError

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ForeignFolderError):
        convert(ConvertConfig(input=_ours(tmp_path, audio), output=str(tmp_path / "mine"), to="lhotse"), **QUIET)
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]



def test_a_second_export_keeps_what_a_person_added_and_replaces_only_its_own_files(tmp_path, audio):
    """A README and a curated/ folder added to an export folder were deleted by the next export."""
    pytest.importorskip("datasets")
    ours, out = _ours(tmp_path, audio), tmp_path / "hf"
    convert(ConvertConfig(input=ours, output=str(out), to="hf", labels=["angry", "happy", "sad"]), **QUIET)
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name[0] != ".")
    (out / "README.md").write_text("our curation notes")
    (out / "curated").mkdir()
    (out / "curated" / "picked.csv").write_text("utt_id\na\n")
    (out / "data" / "mine.txt").write_text("inside the export's own folder")
    # the second export writes one split only: the first's other split files are its own, and go
    only_train = tmp_path / "train_only.parquet"
    frame = read_manifest(ours)
    frame[frame["split"] == "train"].to_parquet(only_train)
    lines = []
    convert(ConvertConfig(input=str(only_train), output=str(out), to="hf", labels=["angry", "happy", "sad"]),
            log=lines.append)
    after = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name[0] != ".")
    assert (out / "README.md").read_text() == "our curation notes"
    assert (out / "curated" / "picked.csv").read_text() == "utt_id\na\n"
    assert (out / "data" / "mine.txt").read_text() == "inside the export's own folder"
    gone = sorted(set(first) - set(after))
    assert gone and all(g.startswith("data/") and "train" not in g for g in gone)
    assert [line for line in lines if line.startswith("removed ")] == [
        f"removed {g}: written by the previous export of {out}, not by this one" for g in gone]


def test_a_later_export_keeps_an_earlier_exports_file_that_a_person_edited(tmp_path, audio):
    """A later export deleted the earlier export's files it did not write again by name, edited or not."""
    pytest.importorskip("datasets")
    ours, out = _ours(tmp_path, audio), tmp_path / "hf"
    convert(ConvertConfig(input=ours, output=str(out), to="hf", labels=["angry", "happy", "sad"]), **QUIET)
    first = sorted(p.relative_to(out).as_posix() for p in (out / "data").iterdir())
    assert len(first) == 3
    edited = next(out / rel for rel in first if "test" in rel)
    edited.write_bytes(edited.read_bytes() + b"a person's edit")
    only_train = tmp_path / "train_only.parquet"
    frame = read_manifest(ours)
    frame[frame["split"] == "train"].to_parquet(only_train)
    lines = []
    convert(ConvertConfig(input=str(only_train), output=str(out), to="hf", labels=["angry", "happy", "sad"]),
            log=lines.append)
    assert edited.read_bytes().endswith(b"a person's edit")  # kept, with a warning naming it
    warned = [line for line in lines if line.startswith("WARNING")]
    assert len(warned) == 1 and str(edited) in warned[0] and "changed since" in warned[0]
    untouched = next(rel for rel in first if "validation" in rel)
    assert not (out / untouched).exists()  # the unedited file of the previous export still goes
    assert [line for line in lines if line.startswith("removed ")] == [
        f"removed {untouched}: written by the previous export of {out}, not by this one"]
    # the kept file is the person's now: a third export neither deletes it nor warns again
    lines.clear()
    convert(ConvertConfig(input=str(only_train), output=str(out), to="hf", labels=["angry", "happy", "sad"]),
            log=lines.append)
    assert edited.exists() and not [line for line in lines if line.startswith(("WARNING", "removed"))]


def test_an_import_never_writes_over_its_input(tmp_path, audio):
    from ser_models.exceptions import OutputOverlapError

    ours = _ours(tmp_path, audio)
    before = open(ours, "rb").read()
    with pytest.raises(OutputOverlapError, match="is the input input="):
        convert(ConvertConfig(input=ours, output=ours, format="hf"), **QUIET)
    assert open(ours, "rb").read() == before


def _tree(root) -> dict[str, bytes | None]:
    return {p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def test_an_hf_imports_audio_dir_is_checked_against_the_input_and_claimed(tmp_path, audio):
    """audio_dir was neither claimed nor checked: clips were written into the dataset's own folder or a
    person's folder."""
    from ser_models.exceptions import ForeignFolderError, OutputOverlapError

    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": _hf_dataset(audio, embed=True)}).save_to_disk(str(tmp_path / "disk"))
    before = _tree(tmp_path / "disk")
    with pytest.raises(OutputOverlapError, match="audio_dir=.*lies inside the input input="):
        convert(ConvertConfig(input=str(tmp_path / "disk"), output=str(tmp_path / "m.csv"),
                              audio_dir=str(tmp_path / "disk" / "clips")), **QUIET)
    assert _tree(tmp_path / "disk") == before and not (tmp_path / "m.csv").exists()
    person = tmp_path / "mine"
    person.mkdir()
    (person / "take1.wav").write_bytes(b"RIFF mine")
    with pytest.raises(ForeignFolderError, match=f"refusing to write or delete in {person}"):
        convert(ConvertConfig(input=str(tmp_path / "disk"), output=str(tmp_path / "m.csv"), audio_dir=str(person)),
                **QUIET)
    assert _tree(person) == {"take1.wav": b"RIFF mine"} and not (tmp_path / "m.csv").exists()


def test_an_audio_dir_an_earlier_version_wrote_is_adopted_only_by_its_content(tmp_path, audio):
    datasets = pytest.importorskip("datasets")
    datasets.DatasetDict({"train": _hf_dataset(audio, embed=True)}).save_to_disk(str(tmp_path / "disk"))
    cfg = ConvertConfig(input=str(tmp_path / "disk"), output=str(tmp_path / "m.csv"), audio_dir=str(tmp_path / "aud"))
    convert(cfg, **QUIET)
    (tmp_path / "aud" / ".ser-output.json").unlink()  # as an earlier version left it: no marker
    lines = []
    convert(cfg, log=lines.append)
    assert any("adopted as a folder of imported audio" in x for x in lines)
    (tmp_path / "aud" / ".ser-output.json").unlink()
    clip = next(p for p in (tmp_path / "aud").iterdir() if p.suffix == ".wav")
    clip.write_bytes(clip.read_bytes() + b"edited")  # its name no longer names its content
    from ser_models.exceptions import ForeignFolderError

    with pytest.raises(ForeignFolderError):
        convert(cfg, **QUIET)
    assert clip.read_bytes().endswith(b"edited")


def test_an_import_never_overwrites_a_persons_refused_csv(tmp_path, audio):
    """``<output stem>.refused.csv`` was written over whatever file of that name was there."""
    from ser_models.exceptions import ForeignFolderError

    lines = [{"audio_filepath": audio["mono"], "duration": 3.0, "label": "happy"},
             {"audio_filepath": "gone.wav", "duration": 1.0, "label": "sad"}]
    (tmp_path / "n.json").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    theirs = tmp_path / "m.refused.csv"
    theirs.write_text("utt_id,why\ngone,we re-record it next week\n")  # a person's own file of that name
    cfg = ConvertConfig(input=str(tmp_path / "n.json"), output=str(tmp_path / "m.csv"), format="nemo")
    with pytest.raises(ForeignFolderError, match=f"refusing to write {theirs}: .* refuses 1 rows"):
        convert(cfg, **QUIET)
    assert theirs.read_text() == "utt_id,why\ngone,we re-record it next week\n"
    assert not (tmp_path / "m.csv").exists()  # refused before the first byte
    theirs.unlink()
    convert(cfg, **QUIET)  # the platform's own listing is replaced by the next import, as before
    ours = theirs.read_text()
    assert ours.startswith("row,id,reason,detail\n2,") and "missing_file" in ours
    convert(cfg, **QUIET)
    assert theirs.read_text() == ours


def test_a_folder_at_the_refused_csv_path_is_refused_before_anything_is_written(tmp_path, audio):
    from ser_models.exceptions import ForeignFolderError

    (tmp_path / "n.json").write_text(json.dumps({"audio_filepath": audio["mono"], "duration": 3.0}) + "\n")
    (tmp_path / "m.refused.csv").mkdir()
    with pytest.raises(ForeignFolderError, match="refusing to write the refused-rows list of output=.*a folder"):
        convert(ConvertConfig(input=str(tmp_path / "n.json"), output=str(tmp_path / "m.csv"), format="nemo"),
                **QUIET)
    assert not (tmp_path / "m.csv").exists()


@pytest.mark.parametrize("case", ["edited", "theirs", "linked"])
def test_an_export_never_writes_over_a_file_that_is_not_as_the_platform_wrote_it(tmp_path, audio, case):
    """An export wrote its files over whatever was at their names: a person's edit of the previous export's
    file, or a person's own file of that name (or through a link to their folder)."""
    pytest.importorskip("datasets")
    ours, out = _ours(tmp_path, audio), tmp_path / "hf"
    frame = read_manifest(ours)
    only_train = tmp_path / "train_only.parquet"
    frame[frame["split"] == "train"].to_parquet(only_train)
    convert(ConvertConfig(input=str(only_train), output=str(out), to="hf", labels=["angry", "happy", "sad"]),
            **QUIET)
    train, test = out / "data" / "train-00000-of-00001.parquet", out / "data" / "test-00000-of-00001.parquet"
    if case == "edited":
        train.write_bytes(train.read_bytes() + b"a person's edit")
        at = "data/train-00000-of-00001.parquet"
    elif case == "theirs":
        test.write_bytes(b"a person's own test split")
        at = "data/test-00000-of-00001.parquet"
    else:
        person = tmp_path / "person"
        person.mkdir()
        (out / "data").rename(person / "data")
        (out / "data").symlink_to(person / "data", target_is_directory=True)
        at = "data/train-00000-of-00001.parquet"
    before = _tree(tmp_path)
    from ser_models.exceptions import ForeignFolderError

    with pytest.raises(ForeignFolderError, match=f"refusing to export into {out}: this export writes .*{at}"):
        convert(ConvertConfig(input=ours, output=str(out), to="hf", labels=["angry", "happy", "sad"]), **QUIET)
    assert _tree(tmp_path) == before  # nothing written, nothing deleted
