"""IEMOCAP, MSP-Podcast, CREMA-D and RAVDESS into our manifest through ``python -m jobs.convert``.

Each test builds a miniature tree laid out as the corpus's release is (its label files written line for line as
the corpus writes them, tiny real WAV files) and converts it with the job's own entry point, then reads the
manifest back with ``read_manifest`` and checks every row: the label after mapping, the speaker, the split, the
dimensions, and each row the import must refuse with its reason.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from jobs.convert import main
from ser_models.data.manifest import read_manifest
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.formats.convert import detect_format

REPO = Path(__file__).resolve().parents[3]


def _wav(path: Path) -> None:
    """A real 0.1 s, 16 kHz PCM16 WAV file (a tone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(1600) / 16000
    sf.write(path, (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000, subtype="PCM_16")


def _convert(capsys, *args: str):
    """Run the job in-process as ``python -m jobs.convert`` runs it; returns ``(report, stdout)``."""
    _, report = main(list(args))
    return report, capsys.readouterr().out


def _rows(path: Path, columns: list[str]) -> dict[str, tuple]:
    """``{utt_id: (columns...)}`` of a written manifest, read back through our own reader."""
    m = read_manifest(path)
    return {r["utt_id"]: tuple(None if isinstance(v, float) and math.isnan(v) else v for v in
                               (r[c] for c in columns)) for r in m.to_dict("records")}


def _refused(report) -> dict[str | None, tuple[str, str]]:
    return {uid: (reason, detail) for _, uid, reason, detail in report.refused}


# --- IEMOCAP ---------------------------------------------------------------------------------------------------

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]"
S1_IMPRO = [
    HEADER, "",
    "[6.2901 - 8.2357]\tSes01F_impro01_F000\tneu\t[2.5000, 2.5000, 2.5000]",
    "C-E2:\tNeutral;\t()", "C-E3:\tNeutral;\t()", "A-E3:\tval 3; act 2; dom  2;\t()", "",
    "[10.0100 - 11.3925]\tSes01F_impro01_M000\texc\t[3.5000, 4.0000, 3.0000]", "C-E1:\tExcited;\t()", "",
    "[14.8872 - 18.0175]\tSes01F_impro01_F001\tfru\t[2.0000, 3.5000, 3.5000]", "",
    "[20.0000 - 22.5000]\tSes01F_impro01_M001\tang\t[1.5000, 4.5000]", "",       # two numbers: malformed (line 13)
    "[23.0000 - 25.0000]\tSes01F_impro01_M002\thap\t[4.0000, 3.0000, 3.0000]", "",  # its wav is missing
]
S1_SCRIPT = [HEADER, "", "[1.0000 - 2.0000]\tSes01M_script01_1_F000\tsad\t[1.5000, 2.0000, 2.5000]", ""]
S2 = [HEADER, "", "[0.5000 - 1.5000]\tSes02F_impro02_M000\thap\t[4.0000, 3.0000, 3.0000]", ""]
S5 = [HEADER, "", "[0.5000 - 1.5000]\tSes05M_impro03_F000\tang\t[1.5000, 4.0000, 4.0000]", "",
      "[1.6000 - 2.5000]\tSes05M_impro03_M000\txxx\t[2.5000, 3.0000, 3.0000]", ""]


def _iemocap(root: Path) -> Path:
    labels = {1: {"Ses01F_impro01": S1_IMPRO, "Ses01M_script01_1": S1_SCRIPT}, 2: {"Ses02F_impro02": S2},
              5: {"Ses05M_impro03": S5}}
    for session, files in labels.items():
        folder = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        folder.mkdir(parents=True)
        (folder / "Categorical").mkdir()  # the release's per-evaluator folders sit beside the files
        for dialog, lines in files.items():
            (folder / f"{dialog}.txt").write_text("\n".join(lines) + "\n")
    (root / "Session1" / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt").write_bytes(b"\x00\x05\x16\x07")
    for turn in ("Ses01F_impro01_F000", "Ses01F_impro01_M000", "Ses01F_impro01_F001", "Ses01F_impro01_M001",
                 "Ses01M_script01_1_F000", "Ses02F_impro02_M000", "Ses05M_impro03_F000", "Ses05M_impro03_M000"):
        session = int(turn[3:5])
        _wav(root / f"Session{session}" / "sentences" / "wav" / turn.rsplit("_", 1)[0] / f"{turn}.wav")
    return root


def test_iemocap_four_classes_exc_as_happy_speakers_and_leave_one_session_out(tmp_path, capsys):
    root = _iemocap(tmp_path / "IEMOCAP_full_release")
    out = tmp_path / "iemocap.csv"
    report, printed = _convert(capsys, f"input={root}", f"output={out}", "format=iemocap", "test_session=5",
                               "dev_session=2")
    cols = ["label", "speaker", "split", "valence", "arousal", "dominance", "session", "dialog_type", "gender",
            "source_label"]
    assert _rows(out, cols) == {
        "Ses01F_impro01_F000": ("neutral", "Ses01F", "train", 2.5, 2.5, 2.5, "1", "improvised", "female", "neu"),
        "Ses01F_impro01_M000": ("happy", "Ses01M", "train", 3.5, 4.0, 3.0, "1", "improvised", "male", "exc"),
        "Ses01M_script01_1_F000": ("sad", "Ses01F", "train", 1.5, 2.0, 2.5, "1", "scripted", "female", "sad"),
        "Ses02F_impro02_M000": ("happy", "Ses02M", "dev", 4.0, 3.0, 3.0, "2", "improvised", "male", "hap"),
        "Ses05M_impro03_F000": ("angry", "Ses05F", "test", 1.5, 4.0, 4.0, "5", "improvised", "female", "ang"),
    }
    m = read_manifest(out).set_index("utt_id")
    assert m.loc["Ses01F_impro01_M000", "path"] == str(
        root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "Ses01F_impro01_M000.wav")
    assert m["start"].isna().all() and (m["corpus"] == "iemocap").all() and (m["language"] == "en").all()
    label_file = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01F_impro01.txt"
    refused = _refused(report)
    assert report.rows == 9 and report.taken == 5
    assert report.reasons() == {"excluded_label": 2, "malformed_line": 1, "missing_file": 1}
    assert refused["Ses01F_impro01_F001"][0] == "excluded_label" and "frustration" in refused["Ses01F_impro01_F001"][1]
    assert refused["Ses05M_impro03_M000"][0] == "excluded_label"
    assert refused["Ses01F_impro01_M001"] == (
        "malformed_line", f"{label_file}: line 13: [1.5000, 4.5000] is not three numbers [valence, activation, "
        "dominance]: '[20.0000 - 22.5000]\\tSes01F_impro01_M001\\tang\\t[1.5000, 4.5000]'")
    assert refused["Ses01F_impro01_M002"][0] == "missing_file"
    assert "left out of the four classes (excluded_label): fru 1 (frustration), xxx 1 (no majority)" in printed
    assert "skipped 1 hidden file(s)" in printed
    assert "leave one session out: test session 5, dev session 2, train session 1" in printed
    assert (tmp_path / "iemocap.refused.csv").exists()


def test_iemocap_found_by_its_layout_and_a_session_it_lacks_is_a_config_error(tmp_path, capsys):
    root = _iemocap(tmp_path / "IEMOCAP_full_release")
    assert detect_format(str(root)) == "iemocap"
    report, printed = _convert(capsys, f"input={root}", f"output={tmp_path / 'm.parquet'}", "test_session=1")
    assert f"{root}: the iemocap layout (Session<N>/dialog/EmoEvaluation/): importing as format=iemocap" in printed
    splits = read_manifest(tmp_path / "m.parquet").set_index("utt_id")["split"].to_dict()
    assert splits == {"Ses01F_impro01_F000": "test", "Ses01F_impro01_M000": "test", "Ses01M_script01_1_F000": "test",
                      "Ses02F_impro02_M000": "train", "Ses05M_impro03_F000": "train"}
    with pytest.raises(ConfigError, match=r"test_session=3: .* holds sessions \[1, 2, 5\]"):
        main([f"input={root}", f"output={tmp_path / 'x.csv'}", "format=iemocap", "test_session=3"])


# --- MSP-Podcast -----------------------------------------------------------------------------------------------

MSP_LABELS = """FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.4,127,Female,Train
MSP-PODCAST_0001_0009.wav,A,5.8,2.2,5.6,127,Female,Development
MSP-PODCAST_0002_0001.wav,H,4.6,5.4,4.0,Unknown,Unknown,Test1
MSP-PODCAST_0002_0002.wav,C,3.0,3.0,3.0,1033,Male,Test2
MSP-PODCAST_0003_0001.wav,X,3.5,3.5,3.5,45,Male,Train
MSP-PODCAST_0003_0002.wav,O,3.5,3.5,3.5,45,Male,Train
MSP-PODCAST_0003_0003.wav,A,high,3.0,3.0,45,Male,Train
MSP-PODCAST_0003_0004.wav,S,2.0,2.0,2.0,45,Male,Train
MSP-PODCAST_0003_0005.wav,S,2.0,2.0
"""


def _msp(root: Path) -> Path:
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "labels_consensus.csv").write_text(MSP_LABELS)
    for line in MSP_LABELS.splitlines()[1:]:
        name = line.split(",")[0]
        if name != "MSP-PODCAST_0003_0004.wav":
            _wav(root / "Audios" / name)
    return root


def test_msp_podcast_consensus_classes_dims_and_official_partitions(tmp_path, capsys):
    root = _msp(tmp_path / "MSP-Podcast")
    out = tmp_path / "msp.parquet"
    report, printed = _convert(capsys, f"input={root}", f"output={out}", "format=msp_podcast")
    cols = ["label", "speaker", "split", "msp_split", "arousal", "valence", "dominance", "gender"]
    assert _rows(out, cols) == {
        "MSP-PODCAST_0001_0008": ("neutral", "127", "train", "Train", 4.2, 4.0, 4.4, "female"),
        "MSP-PODCAST_0001_0009": ("angry", "127", "dev", "Development", 5.8, 2.2, 5.6, "female"),
        "MSP-PODCAST_0002_0001": ("happy", "Unknown", "test", "Test1", 4.6, 5.4, 4.0, None),
        "MSP-PODCAST_0002_0002": ("contempt", "1033", "test", "Test2", 3.0, 3.0, 3.0, "male"),
    }
    assert read_manifest(out).set_index("utt_id").loc["MSP-PODCAST_0001_0008", "path"] == str(
        root / "Audios" / "MSP-PODCAST_0001_0008.wav")
    label_file = root / "Labels" / "labels_consensus.csv"
    refused = _refused(report)
    assert report.reasons() == {"excluded_label": 2, "malformed_line": 2, "missing_file": 1}
    assert refused["MSP-PODCAST_0003_0001"][0] == refused["MSP-PODCAST_0003_0002"][0] == "excluded_label"
    assert refused["MSP-PODCAST_0003_0003"] == ("malformed_line", f"{label_file}: line 8: EmoAct 'high' is not a number")
    assert refused["MSP-PODCAST_0003_0004"][0] == "missing_file"
    assert refused["MSP-PODCAST_0003_0005"] == ("malformed_line", f"{label_file}: line 10: 4 cells where the header "
                                                "has 8")
    assert "left out (excluded_label): O 1 (other), X 1 (no agreement)" in printed
    assert "1 row(s) have SpkrID 'Unknown'" in printed
    # a label file without MSP-Podcast's columns is refused whole, naming the file
    (root / "Labels" / "labels_consensus.csv").write_text("FileName,Label\na.wav,N\n")
    with pytest.raises(ManifestError, match=r"labels_consensus.csv: line 1: columns \['EmoClass'"):
        main([f"input={root}", f"output={out}", "format=msp_podcast"])


def test_msp_podcast_unpacked_into_folders_of_their_own_name_and_older_partition_names(tmp_path, capsys):
    root = tmp_path / "MSP-Podcast"
    (root / "Labels" / "Labels").mkdir(parents=True)
    (root / "Labels" / "Labels" / "labels_consensus.csv").write_text(
        "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
        "MSP-PODCAST_0001_0001.wav,S,2.0,2.0,2.0,3,Male,Validation\n"
        "MSP-PODCAST_0001_0002.wav,S,2.0,2.0,2.0,3,Male,Holdout\n")
    for name in ("MSP-PODCAST_0001_0001.wav", "MSP-PODCAST_0001_0002.wav"):
        _wav(root / "Audios" / "Audios" / name)
    out = tmp_path / "msp.csv"
    report, _ = _convert(capsys, f"input={root}", f"output={out}")
    m = read_manifest(out).set_index("utt_id")
    assert m.loc["MSP-PODCAST_0001_0001", "split"] == "dev"
    assert m.loc["MSP-PODCAST_0001_0001", "path"] == str(root / "Audios" / "Audios" / "MSP-PODCAST_0001_0001.wav")
    assert _refused(report)["MSP-PODCAST_0001_0002"] == (
        "malformed_line", f"{root / 'Labels' / 'Labels' / 'labels_consensus.csv'}: line 3: Split_Set 'Holdout' is "
        "none of Train, Development, Test1, Test2, Test3")


# --- CREMA-D ---------------------------------------------------------------------------------------------------

CREMA_FILES = ["1001_DFA_ANG_XX.wav", "1001_IEO_HAP_HI.wav", "1002_TIE_SAD_LO.wav", "1003_IOM_NEU_XX.wav",
               "1004_IWW_DIS_MD.wav", "1005_TAI_FEA_HI.wav", "1006_MTI_ANG_XX.wav",
               "1007_DFA_BOR_XX.wav",   # an emotion outside the six
               "1008-DFA-ANG-XX.wav"]   # not the naming scheme


def _by_hash(speakers: list[str], seed: int) -> list[str]:
    """The documented draw order: SHA-256 of "<seed>:<speaker>", hex."""
    return sorted(speakers, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())


def test_crema_d_six_classes_from_the_names_and_speaker_disjoint_splits(tmp_path, capsys):
    root = tmp_path / "CREMA-D"
    for name in CREMA_FILES:
        _wav(root / "AudioWAV" / name)
    (root / "AudioWAV" / "readme.txt").write_text("not audio")
    out = tmp_path / "crema.jsonl"
    report, printed = _convert(capsys, f"input={root}", f"output={out}", "format=crema_d", "seed=3")
    order = _by_hash(["1001", "1002", "1003", "1004", "1005", "1006"], 3)  # 6 actors: 1 test, 1 dev, 4 train
    split = {order[0]: "test", order[1]: "dev", **{a: "train" for a in order[2:]}}
    assert _rows(out, ["label", "speaker", "split", "sentence", "intensity"]) == {
        "1001_DFA_ANG_XX": ("angry", "1001", split["1001"], "DFA", "unspecified"),
        "1001_IEO_HAP_HI": ("happy", "1001", split["1001"], "IEO", "high"),
        "1002_TIE_SAD_LO": ("sad", "1002", split["1002"], "TIE", "low"),
        "1003_IOM_NEU_XX": ("neutral", "1003", split["1003"], "IOM", "unspecified"),
        "1004_IWW_DIS_MD": ("disgusted", "1004", split["1004"], "IWW", "medium"),
        "1005_TAI_FEA_HI": ("fearful", "1005", split["1005"], "TAI", "high"),
        "1006_MTI_ANG_XX": ("angry", "1006", split["1006"], "MTI", "unspecified"),
    }
    folder = root / "AudioWAV"
    assert _refused(report) == {
        "1007_DFA_BOR_XX": ("bad_file_name", f"{folder / '1007_DFA_BOR_XX.wav'}: emotion 'BOR' is none of ANG, DIS, "
                            "FEA, HAP, NEU, SAD"),
        "1008-DFA-ANG-XX": ("bad_file_name", f"{folder / '1008-DFA-ANG-XX.wav'}: not "
                            "<ActorID>_<Sentence>_<Emotion>_<Level>.wav (e.g. 1001_DFA_ANG_XX.wav)"),
    }
    assert f"actors per split: train 4, dev 1 ({order[1]}), test 1 ({order[0]})" in printed
    assert "skipped in AudioWAV/: not .wav 1" in printed
    assert detect_format(str(root)) == "crema_d"


# --- RAVDESS ---------------------------------------------------------------------------------------------------

RAVDESS_FILES = {
    "Actor_01": ["03-01-01-01-01-01-01.wav", "03-01-05-02-02-01-01.wav", "03-02-03-01-01-01-01.wav",  # + a song
                 "03-01-05-01-01-01-02.wav"],   # actor 02's name in actor 01's folder
    "Actor_02": ["03-01-02-01-01-02-02.wav", "03-01-08-02-02-02-02.wav",
                 "03-01-01-02-01-01-02.wav"],   # neutral has no strong take
    "Actor_03": ["03-01-06-01-01-01-03.wav", "02-01-03-01-01-01-03.wav"],  # video-only modality
    "Actor_04": ["03-01-07-02-01-02-04.wav", "03-01-04-01-02-01-04.wav", "03-01-09-01-01-01-04.wav"],  # emotion 09
}


def _ravdess(root: Path) -> Path:
    for actor, names in RAVDESS_FILES.items():
        for name in names:
            _wav(root / actor / name)
    (root / "Actor_02" / ".DS_Store").write_bytes(b"\x00")
    return root


def test_ravdess_speech_only_eight_classes_actor_genders_and_refused_names(tmp_path, capsys):
    root = _ravdess(tmp_path / "Audio_Speech_Actors_01-24")
    out = tmp_path / "ravdess.csv"
    report, printed = _convert(capsys, f"input={root}", f"output={out}", "format=ravdess", "dev_fraction=0.25",
                               "test_fraction=0.25")
    order = _by_hash(["Actor_01", "Actor_02", "Actor_03", "Actor_04"], 0)  # 4 actors: 1 test, 1 dev, 2 train
    split = {order[0]: "test", order[1]: "dev", order[2]: "train", order[3]: "train"}
    assert _rows(out, ["label", "speaker", "split", "gender", "intensity", "statement", "repetition"]) == {
        "03-01-01-01-01-01-01": ("neutral", "Actor_01", split["Actor_01"], "male", "normal", "01", "01"),
        "03-01-05-02-02-01-01": ("angry", "Actor_01", split["Actor_01"], "male", "strong", "02", "01"),
        "03-01-02-01-01-02-02": ("calm", "Actor_02", split["Actor_02"], "female", "normal", "01", "02"),
        "03-01-08-02-02-02-02": ("surprised", "Actor_02", split["Actor_02"], "female", "strong", "02", "02"),
        "03-01-06-01-01-01-03": ("fearful", "Actor_03", split["Actor_03"], "male", "normal", "01", "01"),
        "03-01-07-02-01-02-04": ("disgusted", "Actor_04", split["Actor_04"], "female", "strong", "01", "02"),
        "03-01-04-01-02-01-04": ("sad", "Actor_04", split["Actor_04"], "female", "normal", "02", "01"),
    }
    refused = _refused(report)
    assert report.reasons() == {"bad_file_name": 4, "excluded_song": 1}
    assert refused["03-02-03-01-01-01-01"][0] == "excluded_song"
    assert refused["03-01-05-01-01-01-02"] == ("bad_file_name", f"{root / 'Actor_01' / '03-01-05-01-01-01-02.wav'}: "
                                               "actor 02 is not the actor of its folder Actor_01")
    assert "RAVDESS has no strong neutral take" in refused["03-01-01-02-01-01-02"][1]
    assert "modality 02 is not audio-only" in refused["02-01-03-01-01-01-03"][1]
    assert "emotion 09" in refused["03-01-09-01-01-01-04"][1]
    assert "skipped in the Actor_NN folders: hidden 1" in printed
    # songs on request; the split of every actor stays (the draw takes every well-formed name)
    _convert(capsys, f"input={root}", f"output={out}", "format=ravdess", "dev_fraction=0.25", "test_fraction=0.25",
             "include_song=true")
    song = read_manifest(out).set_index("utt_id").loc["03-02-03-01-01-01-01"]
    assert (song["label"], song["split"], song["vocal_channel"]) == ("happy", split["Actor_01"], "song")


def test_corpus_splits_never_share_a_speaker_and_follow_the_seed(tmp_path, capsys):
    root = tmp_path / "CREMA-D"
    actors = [str(a) for a in range(1001, 1092)]  # the 91 actors
    for actor in actors:
        _wav(root / "AudioWAV" / f"{actor}_DFA_NEU_XX.wav")
        _wav(root / "AudioWAV" / f"{actor}_IEO_SAD_LO.wav")
    splits = {}
    for seed in (0, 1):
        _convert(capsys, f"input={root}", f"output={tmp_path / f's{seed}.csv'}", "format=crema_d", f"seed={seed}")
        m = read_manifest(tmp_path / f"s{seed}.csv")
        per_actor = m.groupby("speaker")["split"].agg(lambda v: sorted(set(v)))
        assert per_actor.map(len).eq(1).all()  # no actor in two splits
        splits[seed] = per_actor.map(lambda v: v[0]).to_dict()
        counts = pd.Series(splits[seed]).value_counts().to_dict()
        assert counts == {"train": 64, "test": 18, "dev": 9}  # 91 * 0.2 -> 18, 91 * 0.1 -> 9
        order = _by_hash(actors, seed)
        assert {a for a, s in splits[seed].items() if s == "test"} == set(order[:18])
    assert splits[0] != splits[1]


def test_a_corpus_folder_is_named_or_found_never_silently_taken_for_hugging_face(tmp_path):
    """The job as a user runs it finds the layout and says so; a bad key is a typed error (exit 2: test_convert_cli)."""
    root = _msp(tmp_path / "MSP-Podcast")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "jobs.convert", f"input={root}", f"output={tmp_path / 'm.csv'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "importing as format=msp_podcast" in done.stdout
    assert f"msp_podcast {root}: took 4 of 9 rows; refused 5" in done.stdout
    with pytest.raises(ConfigError, match=r"^dev_fraction=0.1, test_fraction=0.9: each in \[0, 1\)"):
        main([f"input={root}", f"output={tmp_path / 'm.csv'}", "format=ravdess", "test_fraction=0.9"])
    with pytest.raises(ConfigError, match=r"^format='kaldi': use one of \['lhotse', 'hf', 'nemo', 'iemocap', "):
        main([f"input={root}", f"output={tmp_path / 'm.csv'}", "format=kaldi"])
    plain = tmp_path / "plain"
    plain.mkdir()
    assert detect_format(str(plain)) == "hf"
