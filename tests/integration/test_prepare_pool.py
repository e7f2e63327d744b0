"""Ray Data pool build on a real local Ray: good clips at mixed rates plus one file per failure mode."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from ser_models.data import Pool, PoolConfig, decode_pool_audio, prepare_pool
from ser_models.data.pool import POOL_SCHEMA

pytestmark = pytest.mark.ray

RATES = [(16000, "wav"), (22050, "flac"), (44100, "wav"), (16000, "flac"), (22050, "wav")]
MAX_DURATION = 4.0
ROWS_PER_FILE = 3  # below the decode block size (4 rows here), so the cap splits blocks


def _tone(sr, seconds, freq, channels=1):
    t = np.arange(int(round(sr * seconds))) / sr
    x = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def write_corpus(root):
    """~10 good clips + one file per failure mode; returns (manifest rows, expected {utt_id: status})."""
    root.mkdir(parents=True, exist_ok=True)
    rows, expected, samples = [], {}, {}
    for i in range(10):
        sr, ext = RATES[i % len(RATES)]
        seconds = 0.6 + 0.1 * i
        sf.write(root / f"good{i}.{ext}", _tone(sr, seconds, 200 + 20 * i), sr, subtype="PCM_16")
        uid = f"good{i}"
        rows.append({"utt_id": uid, "path": f"good{i}.{ext}", "label": ["happy", "sad"][i % 2],
                     "speaker": f"spk{i % 3}", "split": ["train", "train", "dev", "test", None][i % 5]})
        expected[uid], samples[uid] = "ok", int(round(seconds * 16000))

    def bad(uid, path, status, **extra):
        rows.append({"utt_id": uid, "path": path, "label": "neutral", "split": "train", **extra})
        expected[uid] = status

    sf.write(root / "stereo48k.wav", _tone(48000, 1.0, 440, channels=2), 48000, subtype="PCM_16")
    bad("stereo48k", "stereo48k.wav", "ok")
    samples["stereo48k"] = 16000
    sf.write(root / "long.flac", _tone(22050, MAX_DURATION + 2.0, 330), 22050, subtype="PCM_16")
    bad("long", "long.flac", "ok")
    samples["long"] = int(MAX_DURATION * 16000)
    sf.write(root / "seg.wav", _tone(16000, 3.0, 250), 16000)
    bad("segment", "seg.wav", "ok", start=1.0, end=2.5)
    samples["segment"] = 24000
    raw = bytearray((root / "good1.flac").read_bytes())
    raw[:200] = bytes(range(200))
    (root / "corrupt.flac").write_bytes(bytes(raw))
    bad("corrupt", "corrupt.flac", "unreadable")
    (root / "empty.wav").write_bytes(b"")
    bad("empty", "empty.wav", "empty")
    (root / "readme.wav").write_text("definitely not a RIFF header\n" * 20)
    bad("text", "readme.wav", "unreadable")
    bad("missing", "nowhere.wav", "missing_file")
    sf.write(root / "nan.wav", np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    bad("nanfloat", "nan.wav", "non_finite")
    sf.write(root / "silent.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    bad("silent", "silent.wav", "silent")
    sf.write(root / "short.wav", _tone(16000, 0.2, 300), 16000)
    bad("short", "short.wav", "too_short")
    bad("badseg", "seg.wav", "bad_segment", start=2.0, end=9.0)
    pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    return expected, samples


@pytest.fixture(scope="module")
def built(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("prep")
    expected, samples = write_corpus(root / "corpus")
    cfg = PoolConfig(manifest=str(root / "corpus" / "manifest.csv"), output_dir=str(root / "pool"),
                     max_duration=MAX_DURATION, batch_size=4, num_workers=2, labels=[],
                     rows_per_file=ROWS_PER_FILE)
    plans = _PlanRecorder()
    logging.getLogger("ray.data").addHandler(plans)
    try:
        summary = prepare_pool(cfg)
    finally:
        logging.getLogger("ray.data").removeHandler(plans)
    return cfg, summary, expected, samples, plans.lines


class _PlanRecorder(logging.Handler):
    """Keeps Ray Data's "Execution plan of Dataset ..." log lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record):
        if "Execution plan" in record.getMessage():
            self.lines.append(record.getMessage())


def test_decode_and_write_run_as_one_fused_task(built):
    # Unfused, every decoded block (the audio itself) crosses the object store to a separate Write task.
    plans = built[-1]
    assert plans, "Ray Data logged no execution plan"
    assert any("MapBatches(decode_to_arrow)->Write" in line for line in plans), plans


def test_good_clips_kept_at_16k_and_bad_ones_quarantined(built):
    cfg, summary, expected, samples, _ = built
    pool = Pool.open(cfg.output_dir)
    meta = pool.metadata(columns=["utt_id", "num_samples", "orig_sample_rate", "orig_channels", "split",
                                  "status", "audio", "audio_format"])
    kept = {u for u, s in expected.items() if s == "ok"}
    assert set(meta["utt_id"]) == kept and len(meta) == len(kept)
    assert (meta["status"] == "ok").all() and (meta["audio_format"] == "pcm16").all()
    for row in meta.itertuples():
        assert row.num_samples == pytest.approx(samples[row.utt_id], abs=2), row.utt_id
        assert decode_pool_audio(row.audio, "pcm16").size == row.num_samples
    stereo = meta.set_index("utt_id").loc["stereo48k"]
    assert (stereo.orig_sample_rate, stereo.orig_channels) == (48000, 2)
    # a clip without a split lands in train
    assert meta.set_index("utt_id").loc["good4", "split"] == "train"

    quarantine = pool.quarantine()
    assert list(quarantine.columns) == ["utt_id", "path", "reason", "detail"]
    assert dict(zip(quarantine["utt_id"], quarantine["reason"])) == {
        u: s for u, s in expected.items() if s != "ok"
    }
    assert quarantine["detail"].str.len().min() > 0


def test_layout_schema_and_summary(built):
    cfg, summary, expected, _, _ = built
    out = summary.output_dir
    n_bad = sum(s != "ok" for s in expected.values())
    assert (summary.clips_in, summary.kept, summary.quarantined) == (len(expected), len(expected) - n_bad, n_bad)
    assert summary.reasons == {"unreadable": 2, "empty": 1, "missing_file": 1, "non_finite": 1, "silent": 1,
                               "too_short": 1, "bad_segment": 1}
    on_disk = json.load(open(f"{out}/summary.json"))
    assert on_disk["fingerprint"] == summary.fingerprint and on_disk["kept"] == summary.kept
    assert sorted(on_disk["splits"]) == ["dev", "test", "train"]
    assert sum(s["clips"] for s in on_disk["splits"].values()) == summary.kept
    build = f"{out}/{on_disk['build']}"
    assert sorted(os.listdir(out)) == [".ser-output.json", on_disk["build"], "summary.json"]  # + ownership marker
    assert sorted(os.listdir(f"{build}/data")) == ["split=dev", "split=test", "split=train"]
    assert os.path.exists(f"{build}/config.yaml")
    # Every pool reader holds about one file: no file may exceed rows_per_file rows.
    files = [os.path.join(d, f) for d, _, fs in os.walk(f"{build}/data") for f in fs if f.endswith(".parquet")]
    rows = [pq.ParquetFile(f).metadata.num_rows for f in files]
    assert max(rows) <= ROWS_PER_FILE and sum(rows) == summary.kept
    shard = next(p for p in os.scandir(f"{build}/data/split=train") if p.name.endswith(".parquet"))
    schema = pq.read_schema(shard.path)
    for field in POOL_SCHEMA:
        if field.name != "split":  # the partition folder carries it
            assert schema.field(field.name).type == field.type, field.name


def test_rerun_is_up_to_date_and_a_removed_clip_is_dropped_without_decoding(built, capsys):
    cfg, summary, expected, _, _ = built
    before = sorted(os.path.join(d, f) for d, _, fs in os.walk(cfg.output_dir) for f in fs)
    again = prepare_pool(cfg)
    assert again.up_to_date and "pool up to date" in capsys.readouterr().out
    after = sorted(os.path.join(d, f) for d, _, fs in os.walk(cfg.output_dir) for f in fs)
    assert after == before  # nothing rewritten, no duplicate shards

    manifest = pd.read_csv(cfg.manifest)
    manifest = manifest[manifest["utt_id"] != "good0"]
    manifest.to_csv(cfg.manifest, index=False)
    updated = prepare_pool(cfg)
    assert "no longer in the manifest and are dropped" in capsys.readouterr().out
    assert not updated.up_to_date and updated.fingerprint != summary.fingerprint
    assert (updated.kept, updated.dropped, updated.decoded, updated.version) == (summary.kept - 1, 1, 0, 2)
    assert updated.lineage == summary.lineage
    ids = Pool.open(cfg.output_dir).metadata(columns=["utt_id"])["utt_id"]
    assert ids.is_unique and "good0" not in set(ids) and len(ids) == updated.kept
    # Only folders the live version reads from remain: the first build (untouched files) and the update's.
    assert sorted(os.listdir(cfg.output_dir)) == live_folders(cfg.output_dir)


def live_folders(out):
    """summary.json and the build folders its version reads from (its own, and each live file's)."""
    on_disk = json.load(open(f"{out}/summary.json"))
    live = json.load(open(f"{out}/{on_disk['files']}"))["files"]
    return sorted({".ser-output.json", on_disk["build"], "summary.json"}  # the pool's ownership marker too
                  | {f.split("/", 1)[0] for names in live.values() for f in names})


def test_a_build_killed_before_its_summary_leaves_the_previous_pool(built, monkeypatch):
    """No renames: a crash anywhere before summary.json is rewritten leaves the old pool readable, and the
    next build removes the dead build's folder (a killed process cleans nothing up itself)."""
    import ser_models.data.prepare as prepare

    cfg = built[0]
    before = Pool.open(cfg.output_dir)
    ids = sorted(before.metadata(columns=["utt_id"])["utt_id"])
    dead = os.path.join(cfg.output_dir, "build-killed")  # what SIGKILL mid-build leaves behind
    from ser_models.locks import FolderLock
    from ser_models.ownership import record

    with FolderLock(cfg.output_dir, "pool"):  # as prepare_pool does: recorded in the marker before it is made
        record(cfg.output_dir, "pool", ["build-killed"])
    os.makedirs(f"{dead}/data/split=train")
    open(f"{dead}/data/split=train/half.parquet", "wb").write(b"PAR1 torn")
    assert sorted(Pool.open(cfg.output_dir).metadata(columns=["utt_id"])["utt_id"]) == ids

    manifest = pd.read_csv(cfg.manifest)
    manifest[manifest["utt_id"] != "good2"].to_csv(cfg.manifest, index=False)

    def killed(uri, obj):
        raise KeyboardInterrupt("killed at the commit point")

    monkeypatch.setattr(prepare, "write_json_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_pool(cfg)
    after = Pool.open(cfg.output_dir)
    assert after.build_dir == before.build_dir
    assert sorted(after.metadata(columns=["utt_id"])["utt_id"]) == ids
    assert sorted(os.listdir(cfg.output_dir)) == live_folders(cfg.output_dir) and not os.path.exists(dead)
