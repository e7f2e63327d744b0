"""The espeak-ng corpus: manifest, splits, decodable files, determinism across workers, emotion in prosody."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_models.data import espeak_corpus
from ser_models.data.espeak_corpus import generate_espeak_corpus, plan_espeak_corpus, speak
from ser_models.data.synth import CORPUS_COLUMNS, EMOTIONS
from ser_models.exceptions import CorpusError

#: On the tests that run espeak-ng; planning a corpus and the missing-binary error run everywhere.
needs_espeak = pytest.mark.skipif(shutil.which(espeak_corpus.ESPEAK_BINARY) is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("espeak") / "a"
    return out, generate_espeak_corpus(out, n=24, seed=3, workers=1)


@needs_espeak
def test_manifest_columns_splits_and_speakers(corpus):
    out, df = corpus
    manifest = pd.read_csv(out / "manifest.csv")
    assert list(manifest.columns) == list(CORPUS_COLUMNS) and len(manifest) == 24
    assert manifest.utt_id.is_unique and set(manifest.corpus) == {"espeak"}
    for split in ("train", "dev", "test"):
        assert set(manifest.label[manifest.split == split]) == set(EMOTIONS), split
    assert manifest.groupby("speaker").split.nunique().max() == 1  # speaker-disjoint
    assert manifest.label.value_counts().nunique() == 1  # balanced: 6 of each
    assert manifest[["arousal", "valence", "dominance"]].stack().between(1.0, 5.0).all()
    info = pd.read_csv(out / "clip_info.csv")
    assert list(info.utt_id) == list(manifest.utt_id)


@needs_espeak
def test_files_decode_at_recorded_rate_and_duration(corpus):
    out, df = corpus
    formats = set()
    for row in df.itertuples():
        assert row.path.startswith(f"audio/{row.split}/")
        wav, sr = sf.read(out / row.path, dtype="float32")
        assert wav.ndim == 1 and sr == row.sample_rate
        assert len(wav) / sr == pytest.approx(row.duration, abs=1e-3)
        assert 0.05 < np.abs(wav).max() < 1.0 and np.isfinite(wav).all()
        formats.add(sf.info(out / row.path).format)
    assert formats == {"WAV", "FLAC"} and df.sample_rate.nunique() >= 2


@needs_espeak
def test_same_seed_identical_bytes_across_workers_other_seed_differs(corpus, tmp_path):
    out, df = corpus
    again = tmp_path / "b"
    generate_espeak_corpus(again, n=24, seed=3, workers=2)
    assert (out / "manifest.csv").read_bytes() == (again / "manifest.csv").read_bytes()
    assert (out / "clip_info.csv").read_bytes() == (again / "clip_info.csv").read_bytes()
    for rel in df.path:
        assert (out / rel).read_bytes() == (again / rel).read_bytes(), rel

    other = generate_espeak_corpus(tmp_path / "c", n=24, seed=4)
    assert list(other.transcript) != list(df.transcript)
    assert (tmp_path / "c" / other.path[0]).read_bytes() != (out / df.path[0]).read_bytes()


@needs_espeak
def test_espeak_itself_is_deterministic():
    a, sr = speak("The bus stops twice.", "en-gb-scotland+f3", pitch=60, pitch_range=150, amplitude=140)
    b, _ = speak("The bus stops twice.", "en-gb-scotland+f3", pitch=60, pitch_range=150, amplitude=140)
    assert sr == 22050 and len(a) > 0.5 * sr and np.array_equal(a, b)


def test_speakers_get_distinct_voices():
    specs = plan_espeak_corpus(400, seed=0)
    speakers = {s.speaker for s in specs}
    assert len(speakers) == 20 and len({s.voice for s in speakers}) == 20


@needs_espeak
def test_angry_is_louder_and_faster_than_sad(tmp_path):
    df = generate_espeak_corpus(tmp_path, n=48, seed=1)

    def active_rms_db(rel: str) -> float:
        wav, _ = sf.read(tmp_path / rel, dtype="float32")
        frames = wav[: len(wav) // 512 * 512].reshape(-1, 512)
        energy = (frames**2).mean(axis=1)
        return float(10 * np.log10(energy[energy > 0.1 * energy.max()].mean()))

    df["rms_db"] = [active_rms_db(p) for p in df.path]
    df["chars_per_s"] = df.transcript.str.len() / df.duration  # the text is drawn independently of emotion
    means = df.groupby("label")[["rms_db", "chars_per_s", "arousal"]].mean()
    assert means.loc["angry", "rms_db"] > means.loc["sad", "rms_db"] + 2.0
    assert means.loc["angry", "chars_per_s"] > means.loc["sad", "chars_per_s"]
    assert means.loc["angry", "arousal"] > means.loc["neutral", "arousal"] > means.loc["sad", "arousal"]


def test_missing_binary_error_names_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(espeak_corpus, "ESPEAK_BINARY", "espeak-ng-definitely-not-installed")
    with pytest.raises(CorpusError, match="apt-get install espeak-ng"):
        generate_espeak_corpus(tmp_path, n=12)
    assert not (tmp_path / "manifest.csv").exists()
