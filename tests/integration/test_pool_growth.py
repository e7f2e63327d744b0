"""Pools that grow in place: only new clips are decoded, relabels and split moves rewrite metadata without
decoding, a changed audio file under an existing id is refused, a kill mid-update leaves the old pool, S3 pools
grow too, and the feature cache encodes only the clips it lacks."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest
import soundfile as sf

from ser_models.data import Pool, PoolConfig, prepare_pool
from ser_models.data.prepare import SourceChangedError

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[2]


def _write_clip(path: Path, k: int, seconds: float = 0.6) -> None:
    t = np.arange(int(16000 * seconds)) / 16000
    sf.write(path, (0.3 * np.sin(2 * np.pi * (180 + 15 * k) * t)).astype(np.float32), 16000, subtype="PCM_16")


def _corpus(root: Path, n: int, start: int = 0) -> pd.DataFrame:
    """Clips ``c<start>`` .. ``c<start+n-1>`` written under ``root``; their manifest rows."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(start, start + n):
        _write_clip(root / f"c{k}.wav", k)
        rows.append({"utt_id": f"c{k}", "path": f"c{k}.wav", "label": ["happy", "sad"][k % 2],
                     "speaker": f"s{k % 3}", "split": "test" if k % 4 == 3 else "train"})
    return pd.DataFrame(rows)


def _cfg(root: Path, **kw) -> PoolConfig:
    return PoolConfig(manifest=str(root / "corpus" / "manifest.csv"), output_dir=str(root / "pool"), labels=[],
                      batch_size=4, num_workers=1, rows_per_file=2, **kw)


def _files(out) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in Path(out).rglob("*.parquet")}


@pytest.fixture
def grown(ray_local, tmp_path):
    """A 6-clip pool (version 1), then the same manifest with 2 more clips."""
    manifest = _corpus(tmp_path / "corpus", 6)
    manifest.to_csv(tmp_path / "corpus" / "manifest.csv", index=False)
    cfg = _cfg(tmp_path)
    first = prepare_pool(cfg)
    return cfg, first, manifest


def test_append_decodes_only_the_new_clips_and_keeps_the_old_files(grown, tmp_path):
    cfg, first, manifest = grown
    assert (first.version, first.decoded, first.added) == (1, 6, 6)
    opened = Pool.open(cfg.output_dir)
    before = _files(cfg.output_dir)
    longer = pd.concat([manifest, _corpus(tmp_path / "corpus", 2, start=6)])
    longer.to_csv(cfg.manifest, index=False)

    second = prepare_pool(cfg)
    assert (second.version, second.decoded, second.added, second.kept) == (2, 2, 2, 8)
    assert (second.relabelled, second.moved, second.dropped) == (0, 0, 0)
    assert second.lineage == first.lineage and second.fingerprint != first.fingerprint
    assert [h["decoded"] for h in second.history] == [6, 2]
    after = _files(cfg.output_dir)
    assert all(after[p] == b for p, b in before.items())  # the first build's files untouched
    assert len(after) > len(before)

    # A pool opened before the update sees the new clips after refresh(), not before.
    assert len(opened.metadata(columns=["utt_id"])) == 6
    assert opened.refresh() and opened.version == 2 and not opened.refresh()
    meta = opened.metadata(columns=["utt_id", "split"])
    assert sorted(meta["utt_id"]) == sorted(longer["utt_id"])
    rows = opened.dataset("train", columns=["utt_id", "num_samples"]).take_all()
    assert sorted(r["utt_id"] for r in rows) == sorted(longer.loc[longer["split"] == "train", "utt_id"])
    again = prepare_pool(cfg)
    assert again.up_to_date and again.version == 2


def test_relabel_and_resplit_rewrite_metadata_without_decoding(grown):
    cfg, first, manifest = grown
    pool = Pool.open(cfg.output_dir)
    audio = dict(pool.metadata(columns=["utt_id", "audio"]).itertuples(index=False))
    changed = manifest.copy()
    changed.loc[changed["utt_id"] == "c0", "label"] = "angry"
    changed.loc[changed["utt_id"] == "c1", "split"] = "test"  # train -> test
    changed.to_csv(cfg.manifest, index=False)

    second = prepare_pool(cfg)
    assert (second.decoded, second.relabelled, second.moved, second.added, second.version) == (0, 1, 1, 0, 2)
    pool.refresh()
    meta = pool.metadata(columns=["utt_id", "label", "split", "audio"]).set_index("utt_id")
    assert meta.at["c0", "label"] == "angry" and meta.at["c1", "split"] == "test"
    assert {u: meta.at[u, "audio"] for u in audio} == audio  # bytes copied, not re-decoded
    test_ids = [r["utt_id"] for r in pool.dataset("test", columns=["utt_id"]).take_all()]
    assert "c1" in test_ids and "c1" not in set(pool.metadata(columns=["utt_id"], split="train")["utt_id"])
    assert second.splits["test"]["clips"] == first.splits["test"]["clips"] + 1


def test_a_changed_audio_file_is_refused_naming_the_id_and_a_touched_one_is_not(grown, tmp_path):
    cfg, first, manifest = grown
    clip = tmp_path / "corpus" / "c2.wav"
    data = clip.read_bytes()
    os.utime(clip, ns=(1_000_000_000, 1_000_000_000))  # same bytes, another mtime
    manifest.assign(transcript="x").to_csv(cfg.manifest, index=False)
    touched = prepare_pool(cfg)
    assert touched.decoded == 0 and touched.version == 2

    _write_clip(clip, 40)  # other audio under the same id
    assert clip.read_bytes() != data
    manifest.to_csv(cfg.manifest, index=False)
    with pytest.raises(SourceChangedError, match=r"clip 'c2' \(.*c2\.wav\): its source file's bytes changed") as err:
        prepare_pool(cfg)
    assert err.value.utt_id == "c2" and err.value.changed == ["c2"]
    assert Pool.open(cfg.output_dir).version == 2  # refused: nothing written

    clip.write_bytes(data)
    spans = manifest.assign(start=np.where(manifest["utt_id"] == "c3", 0.1, np.nan))
    spans.to_csv(cfg.manifest, index=False)
    with pytest.raises(SourceChangedError, match=r"clip 'c3'.*span in the file changed \(start nan -> 0.1\)"):
        prepare_pool(cfg)


def test_a_quarantined_clip_whose_file_is_replaced_is_decoded_again_and_kept(ray_local, tmp_path):
    """The update's retry rule end to end: a bad file quarantined at build time, repaired in place (same id,
    same path), comes back into the pool on the next prepare_pool instead of staying quarantined."""
    corpus = tmp_path / "corpus"
    manifest = _corpus(corpus, 3)
    (corpus / "bad.wav").write_text("not a RIFF header\n" * 20)
    bad = {"utt_id": "bad", "path": "bad.wav", "label": "happy", "speaker": "s0", "split": "train"}
    pd.concat([manifest, pd.DataFrame([bad])]).to_csv(corpus / "manifest.csv", index=False)
    cfg = _cfg(tmp_path)
    first = prepare_pool(cfg)
    assert (first.version, first.kept, first.quarantined) == (1, 3, 1)
    assert Pool.open(cfg.output_dir).quarantine()["utt_id"].tolist() == ["bad"]

    again = prepare_pool(cfg)  # nothing changed: up to date, nothing decoded
    assert again.up_to_date and again.version == 1

    _write_clip(corpus / "bad.wav", 7)  # the file repaired in place: real audio now, the manifest unchanged
    second = prepare_pool(cfg)
    assert not second.up_to_date
    assert (second.version, second.decoded, second.added, second.kept, second.quarantined) == (2, 1, 1, 4, 0)
    assert prepare_pool(cfg).up_to_date  # and now it is up to date again
    # a later growth decodes only its new clip
    grown = pd.concat([manifest, pd.DataFrame([bad]), _corpus(corpus, 1, start=3)])
    grown.to_csv(corpus / "manifest.csv", index=False)
    third = prepare_pool(cfg)
    assert (third.version, third.decoded, third.added, third.kept, third.quarantined) == (3, 1, 1, 5, 0)
    pool = Pool.open(cfg.output_dir)
    assert pool.quarantine().empty
    meta = pool.metadata(columns=["utt_id", "status", "num_samples"]).set_index("utt_id")
    assert sorted(meta.index) == ["bad", "c0", "c1", "c2", "c3"]
    assert (meta.at["bad", "status"], meta.at["bad", "num_samples"]) == ("ok", sf.info(corpus / "bad.wav").frames)


def test_runs_resume_on_a_grown_pool_and_refuse_a_rebuilt_one(grown, tmp_path, capsys):
    from ser_models.exceptions import ConfigError
    from ser_models.testing import claimed_check_run as check_run

    cfg, first, manifest = grown
    run = tmp_path / "run"
    assert check_run(run, "jobs.after", {"seed": 0}, inputs={"pool": Pool.open(cfg.output_dir).lineage})
    pd.concat([manifest, _corpus(tmp_path / "corpus", 1, start=6)]).to_csv(cfg.manifest, index=False)
    assert prepare_pool(cfg).version == 2
    assert not check_run(run, "jobs.after", {"seed": 0}, inputs={"pool": Pool.open(cfg.output_dir).lineage})

    rebuilt = prepare_pool(_cfg(tmp_path, audio_format="flac"))
    assert "rebuilding from scratch (audio settings changed: audio_format 'pcm16' -> 'flac')" in capsys.readouterr().out
    assert rebuilt.lineage != first.lineage and (rebuilt.version, rebuilt.decoded) == (1, 7)
    with pytest.raises(ConfigError, match="input pool: .*the pool was rebuilt"):
        check_run(run, "jobs.after", {"seed": 0}, inputs={"pool": Pool.open(cfg.output_dir).lineage})


@pytest.mark.failure_model
def test_a_kill_mid_update_leaves_the_old_pool_and_a_rerun_finishes(grown, tmp_path):
    import subprocess

    from ser_models.failpoints import FAILPOINT_ENV
    from ser_models.testing import kill_session

    cfg, first, manifest = grown
    ids = sorted(Pool.open(cfg.output_dir).metadata(columns=["utt_id"])["utt_id"])
    longer = pd.concat([manifest, _corpus(tmp_path / "corpus", 3, start=6)])
    longer.to_csv(cfg.manifest, index=False)
    config = tmp_path / "pool.yaml"
    config.write_text(f"manifest: {cfg.manifest}\noutput_dir: {cfg.output_dir}\nlabels: []\nbatch_size: 4\n"
                      f"num_workers: 1\nrows_per_file: 2\n")
    env = {**os.environ, FAILPOINT_ENV: "prepare_before_commit", "PYTHONPATH": str(REPO)}
    with open(tmp_path / "job.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "jobs.prepare_pool", str(config)], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(240)
        finally:
            kill_session(proc.pid)  # the local Ray the killed driver started
    out = (tmp_path / "job.log").read_text(errors="replace")
    assert proc.returncode == -9 and "failpoint prepare_before_commit" in out, out[-3000:]
    # Killed after the new files and the file list were written, before summary.json: the old pool stands.
    dead = [n for n in os.listdir(cfg.output_dir) if n.startswith("build-") and n != first_build(cfg)]
    assert dead and any(Path(cfg.output_dir, dead[0]).rglob("*.parquet"))
    pool = Pool.open(cfg.output_dir)
    assert pool.version == 1 and sorted(pool.metadata(columns=["utt_id"])["utt_id"]) == ids

    rerun = prepare_pool(cfg)
    assert (rerun.version, rerun.decoded, rerun.kept) == (2, 3, 9)
    assert not any(Path(cfg.output_dir, d).exists() for d in dead)  # the dead update's folder is gone


def first_build(cfg) -> str:
    return json.loads(Path(cfg.output_dir, "summary.json").read_text())["build"]


def test_an_s3_pool_grows_and_relabels_in_place(ray_local, s3_bucket, tmp_path):
    import pyarrow.fs as pafs

    local = tmp_path / "corpus"
    manifest = _corpus(local, 5)
    fs, bucket = pafs.FileSystem.from_uri(s3_bucket)

    def upload(frame):
        for name in frame["path"]:
            with fs.open_output_stream(f"{bucket}/corpus/{name}") as fh:
                fh.write((local / name).read_bytes())
        with fs.open_output_stream(f"{bucket}/corpus/manifest.csv") as fh:
            fh.write(frame.to_csv(index=False).encode())

    upload(manifest)
    cfg = PoolConfig(manifest=f"{s3_bucket}/corpus/manifest.csv", output_dir=f"{s3_bucket}/pool", labels=[],
                     batch_size=4, num_workers=1, rows_per_file=2)
    first = prepare_pool(cfg)
    longer = pd.concat([manifest, _corpus(local, 2, start=5)])
    longer.loc[longer["utt_id"] == "c0", "label"] = "angry"
    upload(longer)
    second = prepare_pool(cfg)
    assert (second.decoded, second.added, second.relabelled, second.kept) == (2, 2, 1, 7)
    assert second.lineage == first.lineage
    meta = Pool.open(cfg.output_dir).metadata(columns=["utt_id", "label"]).set_index("utt_id")
    assert len(meta) == 7 and meta.at["c0", "label"] == "angry"


def test_the_feature_cache_encodes_only_the_clips_it_lacks(grown, tmp_path):
    from ser_models.encoders import build_encoder
    from ser_models.scoring.cache_keys import feature_cache_key
    from ser_models.scoring.feature_cache import FeatureCache
    from ser_models.scoring.scorer import ScorerConfig
    from ser_models.testing import tiny_model_config

    cfg, first, manifest = grown
    model = tiny_model_config(adapter="frozen")
    encoder = build_encoder(model.encoder)
    scorer = ScorerConfig(num_actors=1, num_cpus=1, batch_size=4)
    pool = Pool.open(cfg.output_dir)
    cache = FeatureCache(tmp_path / "cache", feature_cache_key(pool, encoder))
    cache.build(pool.dataset(None), model, encoder.num_layers, scorer, verbose=False, in_process=True)
    assert cache.last_encoded == 6
    old = cache.table()

    longer = pd.concat([manifest, _corpus(tmp_path / "corpus", 2, start=6)])
    longer.loc[longer["utt_id"] == "c0", "label"] = "angry"  # a relabel changes no feature
    longer.to_csv(cfg.manifest, index=False)
    prepare_pool(cfg)
    assert pool.refresh()
    grown_cache = FeatureCache(tmp_path / "cache", feature_cache_key(pool, encoder))
    assert grown_cache.dir == cache.dir  # named by the lineage, not the version
    grown_cache.build(pool.dataset(None), model, encoder.num_layers, scorer, verbose=False, in_process=True)
    assert grown_cache.last_encoded == 2 and len(grown_cache.shard_dirs) == 2
    table = grown_cache.table()
    assert sorted(table.column("utt_id").to_pylist()) == sorted(longer["utt_id"])
    kept = table.filter(pc.is_in(table.column("utt_id"), value_set=old.column("utt_id")))
    assert kept.column("features").to_pylist() == old.column("features").to_pylist()
    assert json.loads((Path(cache.dir) / "meta.json").read_text())["clips"] == 8
    assert grown_cache.ensure(pool, model, encoder.num_layers, scorer, verbose=False, in_process=True) == 0
