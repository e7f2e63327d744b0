"""Annotators hear segments: to_label.csv points at a clip of exactly the segment (or the segment with context
from its recording), with the segment's place in the recording beside it."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import soxr

from ser_models.active.handover import LabelHandover
from ser_models.active.loop_config import ActiveConfig
from ser_models.active.training_clips import TrainingClips
from ser_models.data import Pool, decode_pool_audio
from ser_models.data.audio_stream import read_span
from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import LabellingPending
from ser_models.io import storage_path
from ser_models.names import safe_file_name
from ser_models.testing import build_segment_pool

pytestmark = [pytest.mark.ray]
LABELS = ["neutral", "happy", "angry", "sad"]


@pytest.fixture(scope="module")
def pool(tmp_path_factory, ray_local):
    """Seven short episodes (their three shows make train, dev and test) and a two-channel call, segmented."""
    return Pool.open(build_segment_pool(tmp_path_factory.mktemp("segpool"), seed=5, n_episodes=7))


def _handover(pool, out, **active):
    return LabelHandover(pool, storage_path(out), LabelLedger(out / "labels" / "ledger.parquet"),
                         ActiveConfig(oracle="file", **active), LABELS, [], (1.0, 5.0), TrainingClips.read(pool),
                         log=lambda m: None)


def _ids(pool):
    meta = pool.metadata(columns=["utt_id", "recording", "channel"], split="train")
    # one segment of each channel of the call, and one of an episode
    call = meta[meta["recording"].str.startswith("call")]
    ep = meta[meta["recording"].str.startswith("episode")]
    return [call[call["channel"] == 0]["utt_id"].iloc[0], call[call["channel"] == 1]["utt_id"].iloc[0],
            ep["utt_id"].iloc[0]]


def test_to_label_csv_has_each_segments_own_audio_and_its_place(pool, tmp_path):
    ids = _ids(pool)
    with pytest.raises(LabellingPending, match="to_label.csv"):
        _handover(pool, tmp_path).label(ids, 0, 0)
    sheet = pd.read_csv(tmp_path / "rounds" / "round=000" / "to_label.csv")
    assert list(sheet.columns) == ["utt_id", "path", "duration", "source_path", "recording", "channel", "start",
                                   "end", "clip_start", "clip_end", "label"]
    rows = pool.metadata(columns=["utt_id", "path", "audio", "audio_format", "start", "end", "channel"],
                         where={"utt_id": ids}).set_index("utt_id")
    for r in sheet.itertuples():
        clip, sr = sf.read(r.path, dtype="float32")
        assert sr == 16000 and r.path.endswith(f"clips/{safe_file_name(r.utt_id, '.wav')}")
        np.testing.assert_allclose(clip, decode_pool_audio(rows.at[r.utt_id, "audio"], rows.at[r.utt_id, "audio_format"]),
                                   atol=1 / 32768)
        assert r.source_path == rows.at[r.utt_id, "path"] and r.channel == rows.at[r.utt_id, "channel"]
        assert (r.clip_start, r.clip_end) == pytest.approx((r.start, r.end), abs=1e-3)
        assert r.duration == pytest.approx(r.end - r.start, abs=1e-3)
    # the two channels of the call are two different clips of the same stretch of file
    a, b = sheet.iloc[0], sheet.iloc[1]
    assert a.source_path == b.source_path and a.channel != b.channel


def test_context_comes_from_the_recording_around_the_segment(pool, tmp_path):
    ids = _ids(pool)[:1]
    with pytest.raises(LabellingPending):
        _handover(pool, tmp_path, clip_context=1.0).label(ids, 0, 0)
    r = next(pd.read_csv(tmp_path / "rounds" / "round=000" / "to_label.csv").itertuples())
    assert r.clip_start == pytest.approx(max(0.0, r.start - 1.0))
    clip, _ = sf.read(r.path, dtype="float32")
    assert len(clip) / 16000 == pytest.approx(r.clip_end - r.clip_start, abs=1e-3)
    src, sr, _ = read_span(r.source_path, r.clip_start, r.clip_end, int(r.channel))
    np.testing.assert_allclose(clip, soxr.resample(src, sr, 16000, quality="HQ")[: len(clip)], atol=2 / 32768)
    assert sf.info(io.BytesIO(open(r.path, "rb").read())).channels == 1


def test_the_after_job_on_a_segment_pool_with_people_labelling_segments(pool, tmp_path, monkeypatch):
    """The documented path: recordings -> segments -> pool -> jobs.after with the file oracle, at most two
    segments of a recording per query; each round's sheet lists segment clips, filled from the truth."""
    import runpy
    import sys

    pool_dir = pool.root
    meta = pool.metadata(columns=["utt_id", "label", "recording", "split"])
    assert set(meta["split"]) == {"train", "dev", "test"}
    truth = dict(zip(meta["utt_id"], meta["label"].fillna("neutral")))
    out = tmp_path / "run"
    argv = ["jobs.after", "jobs/configs/after_smoke.yaml", f"pool_dir={pool_dir}", f"output_dir={out}",
            "tapt_enabled=false", "scaling.backend=in_process", "active.oracle=file", "active.max_per_recording=2",
            "active.initial=random", "active.budget_fractions=[0.2,0.4]"]

    def run():
        monkeypatch.setattr(sys, "argv", argv)
        try:
            runpy.run_module("jobs.after", run_name="__main__")
        except SystemExit as exc:
            assert exc.code in (0, None)

    sheets = []
    for folder in ("initial", "round=000"):
        run()  # stops, waiting for this sheet
        sheet = out / "rounds" / folder / "to_label.csv"
        df = pd.read_csv(sheet)
        assert df["path"].str.endswith(".wav").all() and df["recording"].notna().all()
        assert np.allclose(df["clip_end"] - df["clip_start"], df["end"] - df["start"], atol=1e-3)
        df["label"] = df["utt_id"].map(truth)
        df.to_csv(sheet, index=False)
        sheets.append(df)
    run()
    assert (out / "rounds" / "round=001" / "metrics.json").exists()
    assert sheets[1].groupby("recording").size().max() <= 2  # the cap, on a query the model chose
    ledger = LabelLedger(out / "labels" / "ledger.parquet").labelled()
    assert set(ledger["utt_id"]) == set(sheets[0]["utt_id"]) | set(sheets[1]["utt_id"])


def test_the_all_labels_reference_labels_every_segment_the_oracle_can(pool, tmp_path):
    """Segments the truth leaves unlabelled stay in a simulated pool; the evidence job's all-labels run labels
    every other training segment instead of asking for more than exist."""
    from pathlib import Path

    from ser_models.config import load_config
    from ser_models.runs.evidence import EvidenceJobConfig, labelable_training_clips
    from ser_models.runs.evidence_runs import ALL_LABELS, run_config

    cfg = load_config(EvidenceJobConfig, Path(__file__).parents[2] / "jobs/configs/demo_evidence.yaml",
                      [f"pool_dir={pool.root}", f"output_dir={tmp_path}"])
    meta = pool.metadata(columns=["utt_id", "label"], split="train")
    n = labelable_training_clips(pool, cfg.model)
    assert n == int(meta["label"].isin(LABELS).sum())
    active, _ = run_config(cfg, ALL_LABELS, 0, n)
    assert active.budget_labels == [n] and active.budget_fractions == [] and active.strategy.name == "random"
    assert run_config(cfg, ALL_LABELS, 0)[0].budget_fractions == [1.0]
