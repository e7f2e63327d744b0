"""Streamed training sets: a worker reads its shard anew every epoch, one decoded window at a time. A streamed
fit through Ray Train runs in tests/integration/test_s3_storage.py (fine-tuning from an S3 bucket)."""

from __future__ import annotations

import numpy as np
import pytest

import ser_models.training.batching as batching
from ser_models.training.batching import StreamingClips, epoch_batches

pytestmark = pytest.mark.usefixtures("ray_local")


def test_each_epoch_reads_every_clip_once_and_never_holds_more_than_a_window(demo_pool, monkeypatch):
    ds = demo_pool.open().dataset("train")
    rows = ds.count()
    decoded_at_once = []
    real = batching.collect_clips

    def spy(batches, *args, **kwargs):
        clips = real(batches, *args, **kwargs)
        decoded_at_once.append(len(clips))
        return clips

    monkeypatch.setattr(batching, "collect_clips", spy)
    stream = StreamingClips(ds.iterator(), list(demo_pool.labels), rows, window=8)
    epochs = []
    for epoch in range(2):
        planned, batches = epoch_batches(stream, 4, 1.0, np.random.default_rng(epoch))
        ids = [i for b in batches for i in b.ids]
        assert planned == -(-rows // 4)
        assert sorted(ids) == sorted(ds.to_pandas()["utt_id"])  # every clip once per epoch
        epochs.append(ids)
    assert max(decoded_at_once) <= 64  # a window: 8 rounded up to one bucketing window (4 x 16), not 32+ clips
    assert len(decoded_at_once) >= 2 * (rows // 64)
    assert epochs[0] != epochs[1]  # reshuffled every epoch



def test_in_process_training_streams_above_the_threshold(demo_pool, tmp_path, monkeypatch):
    """train_model(scaling.backend=in_process) streams its training set when it is above
    scaling.stream_above_clips, and trains on it epoch after epoch."""
    import ser_models.training.in_process as in_process
    from ser_models.testing import tiny_model_config
    from ser_models.training import train_model
    from ser_models.training.config import OptimConfig, ScalingConfig, TrainConfig

    made = []

    class Spy(StreamingClips):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(in_process, "StreamingClips", Spy)

    pool = demo_pool.open()
    feeds = {s: pool.dataset(s) for s in ("train", "dev", "test")}
    result = train_model(tiny_model_config(normalize_waveform=False),
                         TrainConfig(optim=OptimConfig(epochs=2, batch_size=8, max_crop_seconds=1.0), early_stopping_patience=0),
                         ScalingConfig(backend="in_process", stream_above_clips=0, stream_window=8), feeds,
                         tmp_path / "ft", train_rows=feeds["train"].count(), verbose=False)
    history = result.metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["train_loss"]) for h in history)
    assert result.metrics["test"]["n"] == len(pool.metadata(columns=["utt_id"], split="test"))
    assert len(made) == 1 and made[0].epochs_read == 2 and made[0].window == 8
