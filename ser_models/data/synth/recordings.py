"""Long recordings with ground truth: podcast-like episodes and two-channel calls for the segmenter.

An **episode** is mono at 16 or 44.1 kHz: 1-4 speakers (a show's host recurs across its episodes) take turns;
pauses between turns are 0.2-3 s (log-uniform), pauses inside a turn 0.12-0.6 s, and each utterance's emotion
is drawn from the class prior (kept through a turn with probability 1/2, so the marginal stays the prior).
In a ``music_share`` of episodes a synthetic music bed (sustained harmonic chords with slow cross-fades and a
kick/tick beat: steady pitches and a regular pulse, nothing speech-like) plays alone in an intro, an outro and
interludes of several seconds, and a few seconds under the speech on either side of them. A **call** is
8 kHz stereo: agent on channel 0, customer on channel 1, alternating turns that sometimes overlap, each voice
only on its own channel, band-limited to 300-3400 Hz like a telephone line.

Every recording has a noise floor at an SNR drawn from ``snr_db``: the noise RMS is the RMS of the speech
samples *inside the speech regions* (per channel for calls) times ``10 ** (-snr_db / 20)``. Files are WAV
(PCM16), FLAC, a few MP3 (where libsndfile writes it) and an ``m4a_share`` of AAC in MP4 (PyAV). Nothing is
ever held whole: utterances are rendered one by one and mixed into a short pending buffer that is written,
with its noise and music, in blocks of at most ``_BLOCK`` samples. Each recording's randomness comes from
``SeedSequence(seed, spawn_key=(101, index, ...))``: same arguments give byte-identical WAV/FLAC files and
CSVs, whatever ``workers`` is.
"""

from __future__ import annotations

import dataclasses
import math
import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from ser_models.data.synth.language import Segments, plan_utterance
from ser_models.data.synth.prosody import Prosody, Speaker, draw_prosody
from ser_models.data.synth.soundscape import BlockWriter, MusicBed, NoiseStream, phone_band
from ser_models.data.synth.spec import EMOTIONS
from ser_models.data.synth.voice import SYNTH_RATE, render_utterance

RECORDING_COLUMNS = ("path", "recording", "group", "language", "kind", "channels", "sample_rate", "duration",
                     "snr_db", "music", "speaker")
TRUTH_COLUMNS = ("recording", "channel", "start", "end", "label", "speaker")
MUSIC_COLUMNS = ("recording", "start", "end", "kind")
_EPISODE_RATES = (16000, 44100)
_CALL_RATE = 8000
_MP3_SHARE = 0.1  # "a few" MP3 files, only where this libsndfile can encode MP3
_CAN_MP3 = "MP3" in sf.available_formats()
_BLOCK = 1 << 16  # samples written (with noise and music) per block: ~1.5-8 s, bounded memory
_AAC_FRAME = 1024  # AAC frame: m4a lengths are rounded up to it so the decoded length is exact (no padding)
_ALONE_MIN_S = 1.0  # music with no speech for shorter than this counts as under speech (a pause in a turn)


@dataclasses.dataclass(frozen=True)
class RecordingSpec:
    """What the archive plan fixes about one recording (the timeline is drawn from its own seed).

    Attributes:
        index: position in the archive (seeds the recording). recording: id, e.g. ``episode-0003``.
        kind: ``episode`` or ``call``. group: show or campaign, e.g. ``show-1``.
        sample_rate: Hz. file_format: ``wav``/``flac``/``mp3``/``m4a``. minutes: target length, minutes.
        snr_db: noise floor, dB below the speech RMS. music: has a music bed.
        speakers: episodes: host first, then guests; calls: (agent, customer).
    """

    index: int
    recording: str
    kind: str
    group: str
    sample_rate: int
    file_format: str
    minutes: float
    snr_db: float
    music: bool
    speakers: tuple[Speaker, ...]


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One speech region: ``start``/``voice`` in seconds; ``lead`` is the silence the rendered utterance has
    before its first sounding segment, so its audio starts at ``start - lead``; ``level`` is its RMS over the
    region, full scale."""

    channel: int
    speaker: int
    emotion: str
    start: float
    voice: float
    lead: float
    level: float
    prosody: Prosody
    seg: Segments


@dataclasses.dataclass(frozen=True)
class Timeline:
    """A recording's plan: utterances in time order, length (s), music cues ([K, 2] knots of (s, gain);
    gain 1 = music alone, bed gain under speech) and the music-alone level in dB below the speech RMS."""

    utterances: list[Utterance]
    duration: float
    cues: list[np.ndarray]
    music_db: float


def _draw_speaker(rng: np.random.Generator, speaker_id: str) -> Speaker:
    """A speaker drawn like :func:`~ser_models.data.synth.corpus.plan_corpus`'s (male- or female-like voice)."""
    gender = "mf"[int(rng.integers(2))]
    male = gender == "m"
    return Speaker(speaker_id, gender, round(float(rng.normal(115.0, 15.0) if male else rng.normal(205.0, 22.0)), 2),
                   round(float(rng.normal(1.0 if male else 1.15, 0.05)), 4), round(float(rng.uniform(0.6, 1.3)), 3),
                   round(float(rng.uniform(0.8, 1.25)), 3), "en", "")


def plan_archive(seed: int = 0, n_episodes: int = 4, n_calls: int = 4, episode_minutes=(3.0, 6.0),
                 call_minutes=(1.0, 3.0), snr_db=(30.0, 10.0), music_share: float = 0.5,
                 m4a_share: float = 0.25) -> list[RecordingSpec]:
    """Recordings, episodes first: shows (about 3 episodes each) and campaigns (about 4 calls, 2 agents each),
    speakers, rates, formats and SNRs. Music and M4A are exact quotas (rounded half up), not coin flips.

    Args:
        episode_minutes, call_minutes: (low, high) of the lengths, minutes. snr_db: range of the SNR, dB (either
            order). music_share: fraction of episodes with music. m4a_share: fraction of all files in M4A.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(100,)))
    n = n_episodes + n_calls
    formats = [("wav", "flac")[k % 2] for k in range(n)]
    order = rng.permutation(n)
    n_m4a = int(m4a_share * n + 0.5)
    n_mp3 = int(_MP3_SHARE * n + 0.5) if _CAN_MP3 else 0
    for k, i in enumerate(order[: n_m4a + n_mp3]):
        formats[i] = "m4a" if k < n_m4a else "mp3"
    music = set(rng.permutation(n_episodes)[: int(music_share * n_episodes + 0.5)].tolist())
    n_shows, n_campaigns = max(1, math.ceil(n_episodes / 3)), max(1, math.ceil(n_calls / 4))
    hosts = [_draw_speaker(rng, f"show-{s}-host") for s in range(n_shows)]
    agents = [[_draw_speaker(rng, f"campaign-{c}-agent{a}") for a in range(2)] for c in range(n_campaigns)]
    specs = []
    for i in range(n):
        episode = i < n_episodes
        j = i if episode else i - n_episodes
        rec = f"episode-{j:04d}" if episode else f"call-{j:04d}"
        if episode:
            n_spk = int(rng.choice([1, 2, 3, 4], p=[0.2, 0.4, 0.25, 0.15]))
            speakers = (hosts[j % n_shows], *(_draw_speaker(rng, f"{rec}-guest{k}") for k in range(1, n_spk)))
            group, sr, minutes = f"show-{j % n_shows}", int(rng.choice(_EPISODE_RATES)), rng.uniform(*episode_minutes)
        else:
            speakers = (agents[j % n_campaigns][int(rng.integers(2))], _draw_speaker(rng, f"{rec}-customer"))
            group, sr, minutes = f"campaign-{j % n_campaigns}", _CALL_RATE, rng.uniform(*call_minutes)
        snr = round(float(rng.uniform(min(snr_db), max(snr_db))), 2)
        specs.append(RecordingSpec(i, rec, "episode" if episode else "call", group, sr, formats[i],
                                   float(minutes), snr, i in music, speakers))
    return specs


def _voice_extent(seg: Segments) -> tuple[float, float]:
    """(lead, voice) in seconds: silence before the first sounding segment, and from it to the last one's end."""
    sounding = [k for k, (v, z) in enumerate(zip(seg.voice, seg.noise)) if v > 0 or z > 0]
    lead = float(sum(seg.dur[: sounding[0]]))
    return lead, float(sum(seg.dur[sounding[0]: sounding[-1] + 1]))


def _cue(a: float | None, b: float | None, duration: float, bed: float, rng: np.random.Generator) -> np.ndarray:
    """Music alone over (a, b) (None: the file's start or end), rising 1 s after ``a`` from a bed that starts a
    few seconds under the speech before it, and ducking back to the bed for a few seconds after ``b``."""
    knots = [(0.0, 0.0), (0.5, 1.0)] if a is None else [
        (a - (pre := rng.uniform(2, 6)) - 2.0, 0.0), (a - pre, bed), (a, bed), (a + 1.0, 1.0)]
    knots += [(duration - 2.0, 1.0), (duration, 0.0)] if b is None else [
        (b - 1.0, 1.0), (b, bed), (b + (post := rng.uniform(3, 8)), bed), (b + post + 2.0, 0.0)]
    return np.array(knots)


def plan_timeline(spec: RecordingSpec, seed: int, class_prior: tuple[float, ...] | None = None) -> Timeline:
    """Turns, utterances (emotion, prosody, segments, exact length), pauses and music cues; renders nothing.

    Args:
        spec: the recording. seed: archive seed. class_prior: shares of :data:`EMOTIONS`; None = uniform.
    """
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(101, spec.index, 0)))
    prior = np.full(len(EMOTIONS), 1.0) if class_prior is None else np.asarray(class_prior, dtype=float)
    prior = prior / prior.sum()
    call = spec.kind == "call"
    level_db = rng.uniform(-3.0, 3.0, len(spec.speakers)) + (-24.0 if call else -26.0)  # microphone distance
    bed = 10.0 ** (-rng.uniform(12.0, 20.0) / 20.0)
    intro, outro = (rng.uniform(6, 12), rng.uniform(6, 12)) if spec.music else (0.0, rng.uniform(0.5, 2.0))
    target = spec.minutes * 60.0
    t, who, last_end = intro + rng.uniform(0.5, 1.5), 0, [-1.0, -1.0]
    next_interlude = t + rng.uniform(40.0, 120.0)
    utts, gaps = [], []
    while True:
        emotion = None
        for _ in range(int(rng.integers(1, 4 if call else 5))):
            if emotion is None or rng.random() < 0.5:
                emotion = EMOTIONS[int(rng.choice(len(EMOTIONS), p=prior))]
            prosody = draw_prosody(emotion, rng, spec.speakers[who].expressiveness)
            seg, _ = plan_utterance("en", prosody.rate_sps, rng.uniform(1.2, 6.0), rng)
            lead, voice = _voice_extent(seg)
            ch = who if call else 0
            start = max(t, last_end[ch] + 0.2, lead)  # a channel never overlaps itself
            level = 10.0 ** ((level_db[who] + prosody.energy_db) / 20.0)
            utts.append(Utterance(ch, who, emotion, start, voice, lead, level, prosody, seg))
            last_end[ch] = start + voice
            t = last_end[ch] + rng.uniform(0.12, 0.6)  # pauses inside a turn, often under 0.3 s
        end = last_end[utts[-1].channel]
        if end >= target - outro:
            break
        if spec.music and end > next_interlude and end < target - 50.0:
            gap = rng.uniform(5.0, 10.0)
            gaps.append((end, end + gap))
            next_interlude = end + gap + rng.uniform(40.0, 120.0)
        elif call and rng.random() < 0.15:
            gap = -rng.uniform(0.2, 1.0)  # the next speaker talks over the end of this turn
        else:
            gap = math.exp(rng.uniform(math.log(0.2), math.log(3.0)))
        t = end + gap
        if call or len(spec.speakers) > 1:
            others = [k for k in range(len(spec.speakers)) if k != who]
            w = np.array([2.0 if k == 0 else 1.0 for k in others])  # the host speaks most
            who = others[int(rng.choice(len(others), p=w / w.sum()))]
    duration = end + outro
    cues = []
    if spec.music:
        first = utts[0].start
        cues = [_cue(None, first, duration, bed, rng)] + [_cue(a, b, duration, bed, rng) for a, b in gaps]
        cues.append(_cue(end, None, duration, bed, rng))
    return Timeline(utts, duration, cues, float(rng.uniform(3.0, 8.0)))


def _music_rows(rec: str, cues: list[np.ndarray], regions: list[tuple[int, int]], n_total: int, sr: int) -> list:
    """music.csv rows: each music stretch cut into ``alone`` (no speech for >= ``_ALONE_MIN_S``) and
    ``under_speech`` (the rest) pieces, in samples of the file rate and written as seconds."""
    spans = sorted((max(0, round(c[0, 0] * sr)), min(n_total, round(c[-1, 0] * sr))) for c in cues)
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    rows = []
    for m0, m1 in merged:
        free, cur = [], m0
        for s, e in regions:
            if e > m0 and s < m1:
                if s > cur:
                    free.append((cur, s))
                cur = max(cur, e)
        free += [(cur, m1)] if cur < m1 else []
        cur = m0
        for a, b in (f for f in free if f[1] - f[0] >= _ALONE_MIN_S * sr):
            rows += [(cur, a, "under_speech")] if a > cur else []
            rows.append((a, b, "alone"))
            cur = b
        rows += [(cur, m1, "under_speech")] if cur < m1 else []
    return [{"recording": rec, "start": a / sr, "end": b / sr, "kind": k} for a, b, k in rows]


def render_recording(spec: RecordingSpec, seed: int, out_dir: str,
                     class_prior: tuple[float, ...] | None = None) -> tuple[dict, list[dict], list[dict]]:
    """Render and write one recording to ``out_dir/audio/<recording>.<format>``, block by block.

    Returns:
        (recordings.csv row, truth.csv rows, music.csv rows).
    """
    tl = plan_timeline(spec, seed, class_prior)
    sr, call = spec.sample_rate, spec.kind == "call"
    C = 2 if call else 1
    region = [(round(u.start * sr), round((u.start + u.voice) * sr)) for u in tl.utterances]
    # Speech RMS over the speech regions, per channel: what the SNR is defined against.
    energy, count = np.zeros(C), np.zeros(C)
    for u, (s, e) in zip(tl.utterances, region):
        energy[u.channel] += u.level**2 * (e - s)
        count[u.channel] += e - s
    speech_rms = np.sqrt(energy / np.maximum(count, 1))
    noise_rms = speech_rms[:, None] * 10.0 ** (-spec.snr_db / 20.0)
    noise = NoiseStream(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(101, spec.index, 1))), sr, C,
                        (300.0, 3400.0) if call else None)
    music = MusicBed(np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(101, spec.index, 2))), sr)
    music_gain = 0.0
    if tl.cues:
        music_gain = float(speech_rms[0]) * 10.0 ** (-tl.music_db / 20.0) / np.sqrt(np.mean(music.render(0, 8 * sr) ** 2))
    n_total = max(round(tl.duration * sr), max(e for _, e in region) + sr // 2)
    if spec.file_format == "m4a":
        n_total = -(-n_total // _AAC_FRAME) * _AAC_FRAME
    rel = f"audio/{spec.recording}.{spec.file_format}"
    writer = BlockWriter(os.path.join(out_dir, rel), spec.file_format, sr, C)
    pending, base = np.zeros((C, 0)), 0  # pending[:, 0] is sample `base`: voices mixed but not yet written

    def flush(upto: int) -> None:
        nonlocal pending, base
        while base < upto:
            n = min(upto - base, _BLOCK)
            block = noise.read(n) * noise_rms
            m = min(n, pending.shape[1])
            block[:, :m] += pending[:, :m]
            pending = pending[:, m:]
            t = (base + np.arange(n)) / sr
            live = [c for c in tl.cues if c[0, 0] < t[-1] and c[-1, 0] > t[0]]
            if live:
                gain = np.max([np.interp(t, c[:, 0], c[:, 1]) for c in live], axis=0)
                block += music.render(base, n) * gain * music_gain
            writer.write(np.clip(block, -1.0, 1.0))
            base += n

    truth = []
    order = sorted(range(len(tl.utterances)), key=lambda k: region[k][0] - round(tl.utterances[k].lead * sr))
    for k in order:  # by audio start: everything before it is final and can be written
        u, (s, e) = tl.utterances[k], region[k]
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(101, spec.index, 3, k)))
        wav = render_utterance(u.seg, spec.speakers[u.speaker], u.prosody, rng).astype(np.float64)
        wav = phone_band(wav) if call else wav
        wav = soxr.resample(wav, SYNTH_RATE, sr, quality="HQ") if sr != SYNTH_RATE else wav
        lead = round(u.lead * sr)
        wav *= u.level / (np.sqrt(np.mean(wav[lead: lead + e - s] ** 2)) + 1e-12)
        a = s - lead
        flush(a)
        if a + len(wav) - base > pending.shape[1]:
            pending = np.pad(pending, ((0, 0), (0, a + len(wav) - base - pending.shape[1])))
        pending[u.channel, a - base: a - base + len(wav)] += wav
        truth.append({"recording": spec.recording, "channel": u.channel, "start": s / sr, "end": e / sr,
                      "label": u.emotion, "speaker": spec.speakers[u.speaker].speaker_id})
    flush(n_total)
    writer.close()
    truth.sort(key=lambda r: (r["start"], r["channel"]))
    single = spec.kind == "episode" and len({u.speaker for u in tl.utterances}) == 1
    row = {"path": rel, "recording": spec.recording, "group": spec.group, "language": "en", "kind": spec.kind,
           "channels": C, "sample_rate": sr, "duration": n_total / sr, "snr_db": spec.snr_db, "music": spec.music,
           "speaker": spec.speakers[0].speaker_id if single else ""}
    return row, truth, _music_rows(spec.recording, tl.cues, sorted(region), n_total, sr)


def _render_job(job: tuple) -> tuple[dict, list[dict], list[dict]]:
    return render_recording(*job)


def group_splits(groups: pd.Series, kinds: pd.Series, seed: int, dev: float = 0.15,
                 test: float = 0.15) -> dict[str, str]:
    """Whole groups (shows, campaigns) to ``train`` / ``dev`` / ``test``, per kind of recording, so that no
    show or campaign straddles splits and both kinds reach every split. A kind with fewer than 3 groups is all
    ``train``. About ``dev`` and ``test`` of each kind's groups (at least one each) go to those splits."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(7,)))
    out: dict[str, str] = {}
    for kind in sorted(set(kinds)):
        names = sorted(set(groups[kinds == kind]))
        order = [names[i] for i in rng.permutation(len(names))]
        n_test = max(1, round(test * len(names))) if len(names) >= 3 else 0
        n_dev = max(1, round(dev * len(names))) if len(names) >= 3 else 0
        for k, g in enumerate(order):
            out[g] = "test" if k < n_test else "dev" if k < n_test + n_dev else "train"
    return out


def generate_archive(out_dir: str | os.PathLike, *, seed: int = 0, n_episodes: int = 4, n_calls: int = 4,
                     episode_minutes: tuple[float, float] = (3.0, 6.0), call_minutes: tuple[float, float] = (1.0, 3.0),
                     snr_db: tuple[float, float] = (30.0, 10.0), music_share: float = 0.5,
                     class_prior: tuple[float, ...] | None = None, m4a_share: float = 0.25, workers: int = 1) -> dict:
    """Write an archive of long recordings with ground truth under ``out_dir``.

    Writes ``audio/<recording>.<wav|flac|mp3|m4a>``, ``recordings.csv`` (:data:`RECORDING_COLUMNS`; ``speaker``
    is set only for single-speaker episodes; then ``split`` by whole show or campaign, see :func:`group_splits`), ``truth.csv`` (:data:`TRUTH_COLUMNS`: one row per speech region,
    start/end in seconds at exact sample times of the file's rate) and ``music.csv`` (:data:`MUSIC_COLUMNS`).

    Args:
        out_dir: folder (created; same-named files are overwritten).
        seed: archive seed. n_episodes, n_calls: how many of each.
        episode_minutes, call_minutes: (low, high) lengths, minutes.
        snr_db: range of the noise floor's SNR in dB against the speech RMS over the speech regions.
        music_share: fraction of episodes with a music bed. class_prior: shares of :data:`EMOTIONS` per
            utterance; None = uniform. m4a_share: fraction of files in M4A (AAC). workers: processes (output is
            identical whatever it is).

    Returns:
        ``recordings``, ``truth``, ``music``, ``audio_dir`` (paths), ``hours`` (total audio, h), ``hours_by_kind``,
        ``regions`` ({label: speech regions}).
    """
    if workers < 1 or n_episodes < 0 or n_calls < 0 or n_episodes + n_calls == 0:
        raise ValueError(f"need workers >= 1 and at least one recording, got workers={workers}, "
                         f"n_episodes={n_episodes}, n_calls={n_calls}")
    if not (0 <= music_share <= 1 and 0 <= m4a_share <= 1):
        raise ValueError(f"music_share and m4a_share must be in [0, 1], got {music_share}, {m4a_share}")
    if min(*episode_minutes, *call_minutes) <= 0:
        raise ValueError(f"episode_minutes and call_minutes must be > 0, got {episode_minutes}, {call_minutes}")
    if class_prior is not None and (len(class_prior) != len(EMOTIONS) or min(class_prior) < 0
                                    or sum(class_prior) <= 0):
        raise ValueError(f"class_prior must be {len(EMOTIONS)} shares >= 0 over {EMOTIONS} with a positive sum, "
                         f"got {class_prior}")
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    specs = plan_archive(seed, n_episodes, n_calls, episode_minutes, call_minutes, snr_db, music_share, m4a_share)
    jobs = [(s, seed, str(out), None if class_prior is None else tuple(class_prior)) for s in specs]
    if workers == 1:
        results = list(map(_render_job, jobs))
    else:
        # spawn: safe whatever threads the parent runs; one recording per task, results in plan order.
        with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn")) as ex:
            results = list(ex.map(_render_job, jobs))
    recs = pd.DataFrame([r[0] for r in results], columns=list(RECORDING_COLUMNS))
    recs["split"] = recs["group"].map(group_splits(recs["group"], recs["kind"], seed))
    truth = pd.DataFrame([t for r in results for t in r[1]], columns=list(TRUTH_COLUMNS))
    music = pd.DataFrame([m for r in results for m in r[2]], columns=list(MUSIC_COLUMNS))
    paths = {"recordings": out / "recordings.csv", "truth": out / "truth.csv", "music": out / "music.csv"}
    for name, df in (("recordings", recs), ("truth", truth), ("music", music)):
        df.to_csv(paths[name], index=False)
    return {**{k: str(v) for k, v in paths.items()}, "audio_dir": str(out / "audio"),
            "hours": float(recs.duration.sum() / 3600),
            "hours_by_kind": {k: float(v / 3600) for k, v in recs.groupby("kind").duration.sum().items()},
            "regions": {e: int((truth.label == e).sum()) for e in EMOTIONS}}
