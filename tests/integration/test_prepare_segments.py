"""A segments manifest (``jobs.segment``'s output: segments of long stereo recordings, one channel each) through
``prepare_pool`` on a real local Ray: every pool row keeps its recording, channel, times and group, and holds
exactly its channel's span, resampled to 16 kHz."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import soxr

from ser_models.data import Pool, PoolConfig, decode_pool_audio, prepare_pool
from ser_models.data.pool import POOL_SCHEMA

pytestmark = pytest.mark.ray

SR = 22050
SECONDS = 3.0


def _stereo(seed: int) -> np.ndarray:
    """[T, 2] float32: a loud low tone on the left (the agent), a quieter higher one plus noise on the right."""
    t = np.arange(int(SR * SECONDS)) / SR
    rng = np.random.default_rng(seed)
    left = 0.5 * np.sin(2 * np.pi * (200 + 50 * seed) * t)
    right = 0.2 * np.sin(2 * np.pi * (700 + 50 * seed) * t) + 0.02 * rng.standard_normal(t.size)
    return np.stack([left, right], axis=1).astype(np.float32)


# utt_id, file, recording, channel, start, end, group, split, speaker, expected status
SEGMENTS = [
    ("a-0", "a.wav", "call-a", 0, 0.5, 1.5, "campaign-1", "train", None, "ok"),
    ("a-1", "a.wav", "call-a", 1, 1.0, 2.5, "campaign-1", "train", None, "ok"),
    ("a-2", "a.wav", "call-a", 0, 2.0, 2.9, "campaign-1", "train", "agent-7", "ok"),
    ("a-out", "a.wav", "call-a", 0, 2.5, 5.0, "campaign-1", "train", None, "bad_segment"),  # past the end
    ("b-1", "b.wav", "call-b", 1, 0.2, 1.2, "campaign-2", "dev", None, "ok"),
    ("b-mix", "b.wav", "call-b", -1, 1.0, 2.0, "campaign-2", "dev", None, "ok"),
    ("b-ch3", "b.wav", "call-b", 3, 0.0, 1.0, "campaign-2", "dev", None, "bad_segment"),  # no such channel
]


@pytest.fixture(scope="module")
def segment_pool(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("segments")
    audio = {"a.wav": _stereo(0), "b.wav": _stereo(1)}
    for name, data in audio.items():
        sf.write(root / name, data, SR, subtype="FLOAT")
    sf.write(root / "clip.wav", audio["a.wav"][: SR, 0], SR, subtype="FLOAT")  # a plain clip beside them
    rows = [{"utt_id": u, "path": f, "recording": r, "channel": c, "start": s, "end": e, "group": g, "split": sp,
             "speaker": spk, "speech_ratio": 0.9, "snr_db": 20.0}
            for u, f, r, c, s, e, g, sp, spk, _ in SEGMENTS]
    rows.append({"utt_id": "clip", "path": "clip.wav", "split": "test", "speaker": None})
    pd.DataFrame(rows).to_parquet(root / "segments.parquet")
    cfg = PoolConfig(manifest=str(root / "segments.parquet"), output_dir=str(root / "pool"), labels=[],
                     batch_size=4, num_workers=2, audio_format="pcm16")
    summary = prepare_pool(cfg)
    return Pool.open(cfg.output_dir), summary, audio


def test_segments_keep_recording_channel_times_and_group(segment_pool):
    pool, summary, _ = segment_pool
    assert summary.reasons == {"bad_segment": 2} and summary.kept == 6
    quarantine = pool.quarantine()
    assert dict(zip(quarantine["utt_id"], quarantine["reason"])) == {"a-out": "bad_segment", "b-ch3": "bad_segment"}
    meta = pool.metadata(columns=["utt_id", "recording", "channel", "start", "end", "group", "split"])
    meta = meta.set_index("utt_id")
    assert meta["channel"].dtype == np.int32 and meta["start"].dtype == np.float64
    for u, _, rec, ch, start, end, group, split, _, status in SEGMENTS:
        if status != "ok":
            continue
        row = meta.loc[u]
        assert (row.recording, row.channel, row.start, row.end, row.group, row.split) == \
            (rec, ch, start, end, group, split), u
    clip = meta.loc["clip"]  # a plain clip: no recording or group, channels averaged, the whole file
    assert pd.isna(clip.recording) and pd.isna(clip.group) and clip.channel == -1
    assert math.isnan(clip.start) and math.isnan(clip.end)
    shard = pq.read_table(pool.files("test")[0], columns=["recording", "group", "channel", "start"])
    assert shard.column("recording").null_count == shard.column("group").null_count == 1  # null, not ""
    assert shard.column("start").null_count == 0  # NaN, not null: the whole file


def test_each_segment_holds_its_channels_span_resampled(segment_pool):
    pool, _, audio = segment_pool
    meta = pool.metadata(columns=["utt_id", "path", "channel", "start", "end", "audio", "audio_format",
                                  "num_samples", "orig_channels"])
    assert len(meta) == 6
    for row in meta.itertuples():
        data = audio.get(row.path.rsplit("/", 1)[-1])
        if data is None:  # the plain clip: mono, whole file
            data = audio["a.wav"][:SR, :1]
        span = data if math.isnan(row.start) else data[int(round(row.start * SR)):int(round(row.end * SR))]
        source = span[:, row.channel] if row.channel >= 0 else span.mean(axis=1)
        expected = soxr.resample(source, SR, 16000, quality="HQ")
        got = decode_pool_audio(row.audio, row.audio_format)
        assert got.size == row.num_samples == expected.size, row.utt_id
        np.testing.assert_allclose(got, expected, atol=1e-3, err_msg=row.utt_id)
    # the two channels of one recording are different streams, not the same audio twice
    a0, a1 = (decode_pool_audio(meta.set_index("utt_id").loc[u, "audio"], "pcm16") for u in ("a-0", "a-1"))
    assert np.sqrt(np.mean(a0 ** 2)) > 2 * np.sqrt(np.mean(a1 ** 2))


def test_schema_on_disk_and_speakers_from_streams(segment_pool, capsys):
    pool, _, _ = segment_pool
    shard = sorted(f for f in pool.files("train"))[0]
    schema = pq.read_schema(shard)
    for name in ("recording", "channel", "start", "end", "group"):
        assert schema.field(name).type == POOL_SCHEMA.field(name).type, name
    # speaker statistics without a speaker column: one stream of a recording is one speaker
    speakers = {u: None if pd.isna(s) else s
                for u, s in pool.metadata(columns=["utt_id", "speaker"]).itertuples(index=False)}
    assert speakers == {"a-0": "call-a#ch0", "a-1": "call-a#ch1", "a-2": "agent-7", "b-1": "call-b#ch1",
                        "b-mix": "call-b#ch-1", "clip": None}
    train = pool.dataset("train", columns=["utt_id", "speaker"]).to_pandas()
    assert dict(zip(train["utt_id"], train["speaker"])) == {k: speakers[k] for k in ("a-0", "a-1", "a-2")}
    where = pool.dataset("dev", columns=["utt_id", "speaker"], where={"recording": "call-b"}).to_pandas()
    assert dict(zip(where["utt_id"], where["speaker"])) == {"b-1": "call-b#ch1", "b-mix": "call-b#ch-1"}
    assert pool.log_stream_speakers(print) == 4
    assert "speaker statistics: no speaker column; using recording and channel as the speaker for 4 clips" \
        in capsys.readouterr().out
    assert pool.stream_speakers("dev") == 2


def test_unlabelled_evaluation_clips_are_refused_before_training(segment_pool):
    from types import SimpleNamespace

    from ser_models.exceptions import PoolError

    pool = segment_pool[0]
    with pytest.raises(PoolError, match=r"2 of 2 dev, 1 of 1 test clips have no label \(e\.g\. "):
        pool.check_evaluation_labels(SimpleNamespace(labels=["neutral", "sad"]))
    pool.check_evaluation_labels(SimpleNamespace(labels=[]))  # a dimensional model: nothing to check
    with pytest.raises(PoolError, match="3 of 3 train"):  # any split asked for (the train clips are unlabelled)
        pool.check_evaluation_labels(SimpleNamespace(labels=["neutral"]), splits=("train",))
