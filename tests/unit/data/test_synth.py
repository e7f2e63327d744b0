"""The synthetic corpus: voice model pieces, corpus plan, determinism, bad files, learnability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

from ser_models.data import synth
from ser_models.data.synth import (
    CORPUS_COLUMNS,
    EMOTIONS,
    LANGUAGES,
    SAMPLE_RATES,
    ClipSpec,
    Speaker,
    draw_prosody,
    generate_corpus,
    language,
    plan_corpus,
    synthesize_clip,
    voice,
    write_bad_clips,
)

SPEAKER = Speaker("spk_t", "m", 120.0, 1.0, 1.0, 1.0, "en", "train")


def autocorr_f0(x: np.ndarray, sr: int, fmin: float = 60.0, fmax: float = 500.0) -> float:
    ac = np.fft.irfft(np.abs(np.fft.rfft(x * np.hanning(len(x)), n=2 * len(x))) ** 2)[: len(x)]
    lo, hi = int(sr / fmax), int(sr / fmin)
    return sr / (lo + int(np.argmax(ac[lo:hi])))


# --- voice model -------------------------------------------------------------------------------------
def test_glottal_source_is_periodic_at_f0():
    rng = np.random.default_rng(0)
    src = synth.glottal_source(np.full(8000, 200.0), 0.6, 0.0, 0.0, 0.0, rng)
    assert autocorr_f0(src[1000:5000], synth.SYNTH_RATE) == pytest.approx(200.0, rel=0.02)


def test_jitter_makes_periods_irregular():
    def period_spread(jitter: float) -> float:
        src = synth.glottal_source(np.full(16000, 150.0), 0.6, jitter, 0.0, 0.0, np.random.default_rng(1))
        closures = np.flatnonzero((src[1:] < -0.5 * np.abs(src).max()) & (src[:-1] >= -0.5 * np.abs(src).max()))
        return float(np.std(np.diff(closures)))

    assert period_spread(0.0) < 1.0  # integer-sample rounding only
    assert period_spread(0.03) > 2.0


def test_resonator_response_peaks_at_its_centre_frequency():
    _, b, c = voice._resonator_coefficients(np.array([700.0]), np.array([80.0]))
    h = voice._inverse_polynomial_response(voice._denominator_polynomial([(b, c)]))  # [1, K]
    freqs = np.arange(h.shape[1]) * synth.SYNTH_RATE / voice._NFFT
    assert freqs[np.argmax(np.abs(h[0]))] == pytest.approx(700.0, abs=20.0)


def test_sustained_vowel_f0_and_formant():
    seg = language.Segments()
    seg.add(0.6, language._VOWEL, synth.LANGUAGE_SPECS["en"].vowels["aa"], voice=1.0)
    flat = synth.Prosody(0.0, 0.3, 4.0, 0.0, 0.3, 0.6, 0.0, 0.0, 0.0)
    wav = synth.render_utterance(seg, SPEAKER, flat, np.random.default_rng(0))
    mid = wav[3000:7000]
    # Base 120 Hz minus 1.5-3.5 semitones of declination by the end (~half of it mid-vowel), +-0.4 st drift.
    assert 100.0 < autocorr_f0(mid, synth.SYNTH_RATE) < 125.0
    spec = np.abs(np.fft.rfft(mid * np.hanning(len(mid))))
    freqs = np.fft.rfftfreq(len(mid), 1 / synth.SYNTH_RATE)
    band = (freqs > 300) & (freqs < 1000)  # F1 of /aa/ is 730 Hz: the strongest harmonic is near it
    assert freqs[band][np.argmax(spec[band])] == pytest.approx(730.0, abs=130.0)


def test_background_noise_colours():
    rng = np.random.default_rng(0)
    for kind in synth.NOISE_KINDS:
        x = synth.background_noise(kind, 16000, rng)
        assert x.dtype == np.float32 and x.shape == (16000,)
        assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-3)
    pink = np.abs(np.fft.rfft(synth.background_noise("pink", 32000, rng))) ** 2
    f = np.fft.rfftfreq(32000, 1 / 16000)
    assert pink[(f > 100) & (f < 500)].mean() > 10 * pink[(f > 4000) & (f < 7000)].mean()
    with pytest.raises(ValueError, match="noise kind"):
        synth.background_noise("brown", 100, rng)


def test_emotions_move_prosody_in_the_documented_directions():
    rng = np.random.default_rng(0)
    mean = {e: pd.DataFrame([vars(draw_prosody(e, rng)) for _ in range(300)]).mean() for e in EMOTIONS}
    assert mean["angry"].energy_db > mean["neutral"].energy_db > mean["sad"].energy_db
    assert mean["happy"].f0_shift_st > mean["neutral"].f0_shift_st > mean["sad"].f0_shift_st
    assert mean["happy"].f0_range_st > mean["neutral"].f0_range_st > mean["sad"].f0_range_st
    assert mean["angry"].tilt < mean["neutral"].tilt < mean["sad"].tilt
    assert mean["sad"].rate_sps < mean["neutral"].rate_sps < mean["angry"].rate_sps
    with pytest.raises(ValueError, match="emotion must be one of"):
        draw_prosody("bored", rng)


def test_affect_dimensions_follow_prosody_and_stay_in_range():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(400):
        e = EMOTIONS[i % 4]
        p = draw_prosody(e, rng)
        rows.append((p.energy_db, *synth.affect_dimensions(p, e, rng), e))
    df = pd.DataFrame(rows, columns=["energy", "arousal", "valence", "dominance", "emotion"])
    assert df[["arousal", "valence", "dominance"]].stack().between(1.0, 5.0).all()
    within = df[df.emotion == "neutral"]  # a cue inside one class, not just the label prior
    assert np.corrcoef(within.energy, within.arousal)[0, 1] > 0.4
    v = df.groupby("emotion").valence.mean()
    assert v["happy"] > v["neutral"] > v["angry"]


# --- clips and corpus --------------------------------------------------------------------------------
def test_synthesize_clip_is_deterministic_and_bounded():
    spec = ClipSpec(5, "u5", SPEAKER, "angry")
    a, info_a = synthesize_clip(spec, seed=3)
    b, info_b = synthesize_clip(spec, seed=3)
    c, _ = synthesize_clip(spec, seed=4)
    assert np.array_equal(a, b) and info_a == info_b
    assert not (len(a) == len(c) and np.array_equal(a, c))
    assert info_a["sample_rate"] in SAMPLE_RATES
    assert len(a) == pytest.approx(info_a["duration"] * info_a["sample_rate"], abs=1)
    assert 0.29 <= np.abs(a).max() <= 0.951 and np.isfinite(a).all()
    assert 1.5 <= info_a["duration"] <= 5.5


@pytest.mark.parametrize("n", [12, 24, 720])
def test_plan_has_speaker_disjoint_splits_with_every_emotion_and_language(n):
    specs = plan_corpus(n, seed=0)
    assert len(specs) == n and [s.index for s in specs] == list(range(n))
    df = pd.DataFrame([(s.speaker.speaker_id, s.speaker.split, s.emotion, s.speaker.language) for s in specs],
                      columns=["speaker", "split", "emotion", "language"])
    assert (df.groupby("speaker").split.nunique() == 1).all()  # speaker-disjoint
    for split, part in df.groupby("split"):
        assert set(part.emotion) == set(EMOTIONS), split
        if n >= 24:
            assert set(part.language) == set(LANGUAGES), split
    if n == 720:
        assert df.speaker.nunique() == 60
        share = df.split.value_counts(normalize=True)
        assert share["train"] == pytest.approx(0.70, abs=0.05)
        assert share["test"] == pytest.approx(0.15, abs=0.03)
        assert df.emotion.value_counts().min() >= 170  # balanced


def test_plan_rejects_too_few_clips():
    with pytest.raises(ValueError, match="n must be >= 12"):
        plan_corpus(8, seed=0)


def test_generate_corpus_writes_decodable_mixed_files(tmp_path):
    df = generate_corpus(tmp_path, n=12, seed=1)
    manifest = pd.read_csv(tmp_path / "manifest.csv")
    assert list(manifest.columns) == list(CORPUS_COLUMNS)
    assert manifest.utt_id.tolist() == df.utt_id.tolist()
    assert (tmp_path / "clip_info.csv").is_file()
    for row in df.itertuples():
        info = sf.info(tmp_path / row.path)
        assert info.samplerate == row.sample_rate and info.channels == 1
        assert info.format == row.file_format.upper() and info.subtype == "PCM_16"
        assert info.frames / info.samplerate == pytest.approx(row.duration, abs=1e-3)
    assert manifest.arousal.between(1, 5).all() and manifest.corpus.eq("synth").all()


# --- bad files ---------------------------------------------------------------------------------------
def test_write_bad_clips_writes_each_documented_failure(tmp_path):
    paths = write_bad_clips(tmp_path)
    assert set(paths) == {"corrupt", "empty", "not_audio", "nan", "stereo_48k", "long", "silent", "too_short",
                          "missing"}
    for name in ("corrupt", "empty", "not_audio"):
        with pytest.raises(sf.LibsndfileError):
            sf.read(paths[name])
    assert paths["empty"].stat().st_size == 0
    assert not paths["missing"].exists()
    nan, sr = sf.read(paths["nan"], dtype="float32")
    assert sr == 16000 and np.isnan(nan).any() and np.isfinite(nan[:100]).all()
    stereo, sr = sf.read(paths["stereo_48k"])
    assert sr == 48000 and stereo.shape == (96000, 2) and np.abs(stereo).max() > 0.1
    assert sf.info(paths["long"]).duration == pytest.approx(65.0)
    silent, _ = sf.read(paths["silent"])
    assert len(silent) == 32000 and not silent.any()
    short, sr = sf.read(paths["too_short"])
    assert len(short) == 1600 and sr == 16000 and np.abs(short).max() > 0.01


# --- learnable but not trivial -----------------------------------------------------------------------
def _hand_features(path) -> list[float]:
    x, sr = sf.read(path, dtype="float32")
    x = soxr.resample(x, sr, 16000) if sr != 16000 else x
    frames = np.lib.stride_tricks.sliding_window_view(x, 640)[::320]  # 40 ms / 20 ms at 16 kHz
    rms = np.sqrt((frames**2).mean(axis=1)) + 1e-8
    active = rms > np.median(rms)
    zcr = (np.abs(np.diff(np.sign(frames[active]), axis=1)) > 0).mean()
    ac = np.fft.irfft(np.abs(np.fft.rfft(frames[active] * np.hanning(640), n=1280)) ** 2)[:, :640]
    log_f0 = np.log(16000 / (32 + ac[:, 32:267].argmax(axis=1)))  # 60-500 Hz
    return [20 * np.log10(rms.mean()), 20 * np.log10(np.percentile(rms, 90)), zcr, np.median(log_f0),
            log_f0.std(), np.std(20 * np.log10(rms[active]))]


@pytest.mark.timeout(60)
def test_corpus_is_learnable_but_not_trivial(tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    df = generate_corpus(tmp_path, n=160, seed=0)
    feats = pd.DataFrame([_hand_features(tmp_path / p) for p in df.path])
    # Per-speaker z-scores (standard SER practice) remove pitch/loudness identity; held-out speakers = dev + test
    # (~50 clips; the test split alone is ~25 and too noisy for a threshold).
    X = feats.groupby(df.speaker.to_numpy()).transform(lambda c: (c - c.mean()) / (c.std() + 1e-6)).to_numpy()
    train = (df.split == "train").to_numpy()
    test = ~train
    assert not set(df.speaker[train]) & set(df.speaker[test])
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X[train], df.label[train])
    score = balanced_accuracy_score(df.label[test], clf.predict(X[test]))
    print(f"hand-feature logistic regression, test balanced accuracy: {score:.3f}")
    assert 0.4 < score < 0.98


def test_acted_style_separates_emotions_more_than_natural():
    from ser_models.data.synth import STYLES, draw_prosody

    def separation(style):
        look = STYLES[style]
        rng = np.random.default_rng(0)
        energy = {e: [draw_prosody(e, rng, look.expressiveness, look.spread).energy_db for _ in range(400)]
                  for e in ("angry", "sad")}
        gap = np.mean(energy["angry"]) - np.mean(energy["sad"])
        return gap / np.sqrt((np.var(energy["angry"]) + np.var(energy["sad"])) / 2)  # Cohen's d

    acted, mixed, natural = separation("acted"), separation("mixed"), separation("natural")
    assert acted > 1.5 * mixed and mixed > 1.5 * natural and natural > 0


def test_style_sets_the_noise_and_the_corpus_name_prefixes_ids(tmp_path):
    from ser_models.data.synth import STYLES, generate_corpus, plan_corpus, synthesize_clip

    spec = plan_corpus(12, 0)[0]
    for style, look in STYLES.items():
        _, info = synthesize_clip(spec, 0, sample_rate=16000, style=style)
        assert look.snr_db[0] <= info["snr_db"] <= look.snr_db[1]
    df = generate_corpus(tmp_path, n=12, seed=3, corpus="acted", style="acted")
    assert df["utt_id"].str.startswith("acted_").all() and set(df["corpus"]) == {"acted"}
    with pytest.raises(ValueError, match="style"):
        generate_corpus(tmp_path, n=12, style="operatic")


# ---- class priors: pools that are mostly neutral, like natural speech -------------------------------------------

NEUTRAL_HEAVY = "neutral=0.55,happy=0.2,angry=0.1,sad=0.15"


def test_parse_class_prior_normalises_and_names_what_is_wrong():
    prior = synth.parse_class_prior("sad=3, angry=2,happy=4,neutral=11")
    assert prior == pytest.approx(tuple(x / 20 for x in (11, 4, 2, 3)))  # EMOTIONS order
    assert list(synth.EMOTIONS) == ["neutral", "happy", "angry", "sad"]
    for text, match in [("neutral=1,happy=1,angry=1", r"no share for \['sad'\]"),
                        ("neutral=1,happy=1,angry=1,sad=0", "must be > 0"),
                        ("neutral=1,happy=1,angry=1,sad=x", "not a number"),
                        ("neutral=1,happy=1,angry=1,bored=1", "EMOTION=SHARE"),
                        ("neutral=1,neutral=1,happy=1,angry=1,sad=1", "each once")]:
        with pytest.raises(ValueError, match=match):
            synth.parse_class_prior(text)


@pytest.mark.parametrize("total", [4, 5, 37, 504])
def test_emotion_counts_add_up_and_follow_the_prior(total):
    prior = synth.parse_class_prior(NEUTRAL_HEAVY)
    counts = synth.emotion_counts(total, prior)
    assert counts.sum() == total and (counts >= 1).all()
    assert np.abs(counts - 1 - (total - 4) * np.asarray(prior)).max() < 1  # largest remainder: within one clip


def test_a_neutral_heavy_plan_keeps_the_prior_in_every_split_and_the_balanced_plan_unchanged():
    prior = synth.parse_class_prior(NEUTRAL_HEAVY)
    specs = synth.plan_corpus(720, seed=0, class_prior=prior)
    df = pd.DataFrame({"split": [s.speaker.split for s in specs], "label": [s.emotion for s in specs]})
    for split, g in df.groupby("split"):
        shares = g.label.value_counts(normalize=True)
        assert set(shares.index) == set(synth.EMOTIONS), split
        assert shares["neutral"] == pytest.approx(0.55, abs=0.03) and shares["angry"] == pytest.approx(0.1, abs=0.03)
    balanced = [(s.speaker.speaker_id, s.emotion) for s in synth.plan_corpus(720, seed=0)]
    assert [(s.speaker.speaker_id, s.emotion) for s in synth.plan_corpus(720, seed=0, class_prior=None)] == balanced
    assert pd.Series([e for _, e in balanced]).value_counts().max() - pd.Series(
        [e for _, e in balanced]).value_counts().min() <= 3


def test_make_demo_pool_takes_a_class_prior(tmp_path, capsys):
    from jobs.make_demo_pool import main

    df = main([str(tmp_path / "corpus"), "--n", "60", "--class-prior", NEUTRAL_HEAVY])
    assert (tmp_path / "corpus" / "manifest.csv").is_file()
    counts = df.label.value_counts()
    assert counts["neutral"] > counts["happy"] > counts["angry"] >= 1 and counts.sum() == 60
    with pytest.raises(SystemExit):
        main([str(tmp_path / "bad"), "--n", "60", "--class-prior", "neutral=1"])
    assert "--class-prior" in capsys.readouterr().err
