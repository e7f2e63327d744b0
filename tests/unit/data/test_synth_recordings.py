"""Long synthetic recordings with ground truth: files, manifest, truth, music, determinism, streaming, CLI."""

from __future__ import annotations

import av
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from ser_models.data.synth import EMOTIONS, generate_archive
from ser_models.data.synth.recordings import (
    MUSIC_COLUMNS,
    RECORDING_COLUMNS,
    TRUTH_COLUMNS,
    plan_archive,
    plan_timeline,
)
from ser_models.data.synth.soundscape import MusicBed, NoiseStream

# Seed 3: a 16 kHz M4A episode, a 44.1 kHz FLAC episode with music, a WAV call (see plan_archive).
SMALL = dict(seed=3, n_episodes=2, n_calls=1, episode_minutes=(0.5, 0.5), call_minutes=(0.3, 0.3),
             snr_db=(30.0, 30.0), music_share=0.5, m4a_share=0.34)
NEUTRAL_HEAVY = (0.7, 0.12, 0.1, 0.08)


def load(path) -> tuple[np.ndarray, int]:
    """[C, n] float32 and the rate; M4A through PyAV, the rest through soundfile."""
    if str(path).endswith(".m4a"):
        with av.open(str(path)) as c:
            return np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1), c.streams.audio[0].rate
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    return x.T, sr


def db(x: np.ndarray) -> float:
    return 10.0 * np.log10(np.mean(np.asarray(x, dtype=np.float64) ** 2) + 1e-20)


def mask(n: int, sr: int, spans, pad: float = 0.0) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    for a, b in spans:
        m[max(0, int((a - pad) * sr)): int((b + pad) * sr)] = True
    return m


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("archive")
    info = generate_archive(out, **SMALL, class_prior=NEUTRAL_HEAVY)
    return out, info, pd.read_csv(out / "recordings.csv", keep_default_na=False), pd.read_csv(out / "truth.csv"), \
        pd.read_csv(out / "music.csv")


def test_archive_files_and_manifest(archive):
    out, info, recs, truth, music = archive
    assert list(recs.columns) == [*RECORDING_COLUMNS, "split"] and list(truth.columns) == list(TRUTH_COLUMNS)
    assert list(music.columns) == list(MUSIC_COLUMNS)
    assert info["audio_dir"] == str(out / "audio") and info["hours"] == pytest.approx(recs.duration.sum() / 3600)
    assert sum(info["regions"].values()) == len(truth) and set(info["regions"]) == set(EMOTIONS)
    assert list(recs.kind) == ["episode", "episode", "call"] and list(recs.channels) == [1, 1, 2]
    assert set(recs.group) == {"show-0", "campaign-0"} and set(recs.language) == {"en"}
    assert recs.path.str.endswith(".m4a").sum() == 1 and recs.music.sum() == 1
    assert set(recs[recs.kind == "call"].sample_rate) == {8000} and set(recs.sample_rate) <= {8000, 16000, 44100}
    for r in recs.itertuples():
        x, sr = load(out / r.path)
        assert sr == r.sample_rate and x.shape[0] == r.channels and np.abs(x).max() <= 1.0
        assert x.shape[1] / sr == pytest.approx(r.duration, abs=0.05)  # m4a: decoded length, priming skipped
        assert 0.3 * 60 - 1 <= r.duration <= 0.5 * 60 + 25  # target plus intro/outro music
        n_speakers = truth[truth.recording == r.recording].speaker.nunique()
        # A speaker only where the whole recording is one voice (a monologue episode).
        assert r.speaker == (truth[truth.recording == r.recording].speaker.iloc[0] if n_speakers == 1
                             and r.kind == "episode" else "")


def test_m4a_decodes_to_its_duration_and_channels(archive):
    out, _, recs, _, _ = archive
    r = recs[recs.path.str.endswith(".m4a")].iloc[0]
    with av.open(str(out / r.path)) as c:
        stream = c.streams.audio[0]
        assert stream.codec_context.name == "aac"
        frames = list(c.decode(stream))
    assert frames[0].layout.nb_channels == r.channels
    assert sum(f.samples for f in frames) / stream.rate == pytest.approx(r.duration, abs=0.05)


def test_truth_regions_are_in_bounds_on_sample_times_and_never_overlap_per_channel(archive):
    _, _, recs, truth, _ = archive
    assert set(truth.label) <= set(EMOTIONS) and truth.speaker.str.len().min() > 0
    for r in recs.itertuples():
        t = truth[truth.recording == r.recording]
        assert len(t) >= 3 and set(t.channel) == set(range(r.channels))
        assert (t.start >= 0).all() and (t.end <= r.duration).all() and (t.end - t.start > 0.2).all()
        for col in ("start", "end"):  # exact sample times of the file's rate
            assert np.allclose(t[col] * r.sample_rate, np.round(t[col] * r.sample_rate), atol=1e-6)
        for _, c in t.groupby("channel"):
            c = c.sort_values("start")
            gaps = c.start.to_numpy()[1:] - c.end.to_numpy()[:-1]
            assert (gaps >= 0.1).all()
        if r.kind == "call":  # one speaker per channel, and the channels take turns
            assert t.groupby("channel").speaker.nunique().tolist() == [1, 1]
            assert t.speaker.str.contains("agent").groupby(t.channel).all().tolist() == [True, False]


def test_call_channels_are_separate_and_band_limited(archive):
    out, _, recs, truth, _ = archive
    r = recs[recs.kind == "call"].iloc[0]
    x, sr = load(out / r.path)
    t = truth[truth.recording == r.recording]
    for ch in (0, 1):
        other = mask(x.shape[1], sr, t[t.channel != ch][["start", "end"]].to_numpy(), pad=0.1)
        checked = 0
        for a, b in t[t.channel == ch][["start", "end"]].to_numpy():
            span = slice(int(a * sr), int(b * sr))
            if b - a > 0.5 and not other[span].any():
                assert db(x[1 - ch, span]) <= db(x[ch, span]) - 20.0
                checked += 1
        assert checked >= 1
    spec = np.abs(np.fft.rfft(x[0])) ** 2
    f = np.fft.rfftfreq(x.shape[1], 1 / sr)
    assert spec[(f < 200) | (f > 3700)].sum() < 0.01 * spec.sum()  # telephone band


def test_noise_floor_is_at_the_snr_against_speech_in_the_regions(archive):
    out, _, recs, truth, music = archive
    for r in recs[~recs.path.str.endswith(".m4a")].itertuples():
        x, sr = load(out / r.path)
        t = truth[truth.recording == r.recording]
        quiet = ~mask(x.shape[1], sr, t[["start", "end"]].to_numpy(), pad=0.05)
        quiet &= ~mask(x.shape[1], sr, music[music.recording == r.recording][["start", "end"]].to_numpy(), pad=0.05)
        for ch in range(r.channels):
            speech = mask(x.shape[1], sr, t[t.channel == ch][["start", "end"]].to_numpy())
            assert db(x[ch, speech]) - db(x[ch, quiet]) == pytest.approx(r.snr_db, abs=2.0)


def test_music_plays_alone_without_speech_and_under_speech(archive):
    out, _, recs, truth, music = archive
    r = recs[recs.music].iloc[0]
    m, t = music[music.recording == r.recording], truth[truth.recording == r.recording]
    assert set(m.kind) == {"alone", "under_speech"} and set(music.recording) == {r.recording}
    alone = m[m.kind == "alone"]
    assert alone.start.min() == 0.0 and alone.end.max() == pytest.approx(r.duration)  # intro and outro
    assert (alone.end - alone.start).max() >= 5.0
    for a, b in alone[["start", "end"]].to_numpy():
        assert not ((t.start < b) & (t.end > a)).any()
    under = m[m.kind == "under_speech"]
    assert all(((t.start < b) & (t.end > a)).any() for a, b in under[["start", "end"]].to_numpy())
    x, sr = load(out / r.path)
    quiet = ~mask(x.shape[1], sr, m[["start", "end"]].to_numpy(), pad=0.05) & ~mask(
        x.shape[1], sr, t[["start", "end"]].to_numpy(), pad=0.05)
    longest = alone.loc[(alone.end - alone.start).idxmax()]
    assert db(x[0, int(longest.start * sr) + sr: int(longest.end * sr) - sr]) > db(x[0, quiet]) + 12.0


def test_same_seed_gives_identical_files_whatever_the_workers(archive, tmp_path):
    out, _, recs, _, _ = archive
    generate_archive(tmp_path, **SMALL, class_prior=NEUTRAL_HEAVY, workers=2)
    for name in ("recordings.csv", "truth.csv", "music.csv"):
        assert (tmp_path / name).read_bytes() == (out / name).read_bytes()
    lossless = [p for p in recs.path if p.endswith((".wav", ".flac"))]
    assert len(lossless) == 2
    for p in lossless:
        assert (tmp_path / p).read_bytes() == (out / p).read_bytes()


def test_plan_honours_the_class_prior_and_the_pauses():
    specs = plan_archive(seed=7, n_episodes=6, n_calls=2, episode_minutes=(8.0, 8.0), music_share=0.0)
    labels, gaps = [], []
    for spec in specs:
        utts = plan_timeline(spec, 7, NEUTRAL_HEAVY).utterances
        labels += [u.emotion for u in utts]
        if spec.kind == "episode":
            gaps += [b.start - (a.start + a.voice) for a, b in zip(utts, utts[1:])]
    shares = pd.Series(labels).value_counts(normalize=True)
    assert len(labels) > 500 and all(abs(shares[e] - p) < 0.06 for e, p in zip(EMOTIONS, NEUTRAL_HEAVY))
    gaps = np.array(gaps)
    assert gaps.min() >= 0.12 and gaps.max() <= 3.0 and (gaps < 0.3).mean() > 0.1 and (gaps > 1.0).mean() > 0.05
    uniform = pd.Series([u.emotion for u in plan_timeline(specs[0], 7).utterances]).value_counts(normalize=True)
    assert set(uniform.index) == set(EMOTIONS) and uniform.max() < 0.45
    assert [s.speakers[0].speaker_id for s in specs[:4]] == ["show-0-host", "show-1-host"] * 2  # hosts recur


def test_noise_and_music_streams_do_not_depend_on_the_block_sizes():
    def stream():
        return NoiseStream(np.random.default_rng(0), 16000, 2, None)

    whole, pieces = stream().read(50000), stream()
    assert np.array_equal(whole, np.concatenate([pieces.read(n) for n in (1, 999, 20000, 29000)], axis=1))
    assert np.std(whole[:, 15000:17000]) == pytest.approx(1.0, abs=0.15)  # no dip at the chunk cross-fade
    bed = MusicBed(np.random.default_rng(0), 16000)
    once = bed.render(5000, 40000)
    assert np.allclose(once, np.concatenate([bed.render(5000, 12345), bed.render(17345, 27655)]), atol=1e-9)
    assert np.abs(once).max() > 0.3


def test_cli_writes_an_archive_and_prints_a_line_per_kind(tmp_path, capsys):
    from jobs.make_demo_archive import main

    out = main([str(tmp_path / "a"), "--episodes", "1", "--calls", "1", "--seed", "2", "--episode-minutes",
                "0.3", "0.3", "--call-minutes", "0.2", "0.2", "--class-prior", "0.7,0.12,0.1,0.08"])
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["episode", "call", "total", "recordings", "next"]
    assert "s of audio per s" in lines[2] and lines[-1].startswith("next: python -m jobs.segment")
    assert len(pd.read_csv(out["recordings"])) == 2 and len(pd.read_csv(out["truth"])) >= 4
    with pytest.raises(SystemExit):
        main([str(tmp_path / "b"), "--class-prior", "0.5,0.5"])
    assert "--class-prior" in capsys.readouterr().err


def test_splits_follow_whole_shows_and_campaigns():
    from ser_models.data.synth.recordings import group_splits

    groups = pd.Series([f"show-{i % 7}" for i in range(21)] + [f"campaign-{i % 4}" for i in range(8)])
    kinds = pd.Series(["episode"] * 21 + ["call"] * 8)
    splits = group_splits(groups, kinds, seed=0)
    assert set(splits) == set(groups)
    for kind in ("episode", "call"):
        got = [splits[g] for g in sorted(set(groups[kinds == kind]))]
        assert got.count("test") >= 1 and got.count("dev") >= 1 and got.count("train") >= 2
    assert set(group_splits(pd.Series(["a", "b"]), pd.Series(["call", "call"]), 0).values()) == {"train"}
