"""A device out-of-memory error halves the micro-batch and retries, down to one clip.

The error is injected on CPU through the code's seam (``$SER_INJECT_OOM_ABOVE_CLIPS``: a micro-batch of more
clips raises ``torch.OutOfMemoryError`` before its forward), into the real scorer and feature-cache actor
classes, run in this process. What is checked: the results equal an uninjected run's (a clip's features do
not depend on its batch, so halving changes speed only), one line per halving, the halved size kept for the
next batch, and a typed error naming the clip and its length when one clip alone does not fit.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_models.config import to_dict
from ser_models.exceptions import DeviceMemoryError
from ser_models.scoring.encoder_pooler import EncoderPooler
from ser_models.scoring.scorer import PoolScorer
from ser_models.testing import tiny_model_config
from ser_models.training.micro_batches import OOM_INJECT_ENV, MicroBatcher, size_or_halve

SECONDS = (0.6, 1.23, 0.4, 0.9, 0.75, 0.5, 1.1, 0.45)


def _audio_batch(seconds=SECONDS) -> dict:
    rng = np.random.default_rng(0)
    clips = [(0.2 * rng.standard_normal(int(s * 16000)) * 32767).astype(np.int16) for s in seconds]
    return {"utt_id": np.asarray([f"u{i}" for i in range(len(clips))], dtype=object),
            "audio": np.asarray([c.tobytes() for c in clips], dtype=object),
            "audio_format": np.asarray(["pcm16"] * len(clips), dtype=object),
            "num_samples": np.asarray([len(c) for c in clips], np.int64)}


def _halvings(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if "out of device memory" in line]


@pytest.fixture(scope="module")
def model_cfg():
    # the group-norm preset: its features would depend on the batch if it were padded, so equality here means more
    return to_dict(tiny_model_config("tiny-wav2vec2-group", labels=["a", "b", "c"]))


def test_the_scorer_halves_the_micro_batch_until_it_fits(model_cfg, monkeypatch, capsys):
    batch = _audio_batch()
    reference = PoolScorer(None, model_cfg=model_cfg, micro_batch_size=8, mc_samples=2, device="cpu")(batch)
    capsys.readouterr()
    monkeypatch.setenv(OOM_INJECT_ENV, "2")
    scorer = PoolScorer(None, model_cfg=model_cfg, micro_batch_size=8, mc_samples=2, device="cpu")
    got = scorer(batch)
    assert _halvings(capsys.readouterr().out) == [
        "scorer: out of device memory with 8 clips per forward; retrying with 4 (injected by "
        f"${OOM_INJECT_ENV}=2: 8 clips)",
        f"scorer: out of device memory with 4 clips per forward; retrying with 2 (injected by ${OOM_INJECT_ENV}=2: "
        "4 clips)"]
    assert scorer.batcher.size == 2
    for key in ("probs", "mc_probs", "embedding", "pooled"):
        np.testing.assert_allclose(got[key], reference[key], rtol=1e-5, atol=1e-6, err_msg=key)
    scorer(batch)  # the next batch starts at the size that fitted: no new halving
    assert _halvings(capsys.readouterr().out) == []


def test_a_clip_that_does_not_fit_alone_is_named_with_its_length(model_cfg, monkeypatch, capsys):
    monkeypatch.setenv(OOM_INJECT_ENV, "0")
    scorer = PoolScorer(None, model_cfg=model_cfg, micro_batch_size=4, device="cpu")
    with pytest.raises(DeviceMemoryError, match=r"scorer: clip 'u2' \(0\.40 s\) does not fit in device memory "
                                                r"even alone .*active\.scorer\.max_seconds"):
        scorer(_audio_batch())  # the shortest clip goes first (sorted by length)
    assert len(_halvings(capsys.readouterr().out)) == 2  # 4 -> 2 -> 1, then the error


def test_the_feature_cache_actor_halves_and_stores_the_same_features(model_cfg, monkeypatch, capsys):
    batch = _audio_batch()
    reference = EncoderPooler(model_cfg, micro_batch_size=8)(batch)
    monkeypatch.setenv(OOM_INJECT_ENV, "3")
    capsys.readouterr()
    pooler = EncoderPooler(model_cfg, micro_batch_size=8)
    got = pooler(batch)
    assert len(_halvings(capsys.readouterr().out)) == 2 and pooler.batcher.size == 2  # 8 -> 4 -> 2
    assert list(got["utt_id"]) == list(reference["utt_id"])
    for a, b in zip(got["features"], reference["features"]):
        a, b = np.frombuffer(a, np.float32), np.frombuffer(b, np.float32)
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()


def test_a_long_clip_that_does_not_fit_says_where_it_was_cut(monkeypatch):
    monkeypatch.setenv(OOM_INJECT_ENV, "0")
    batcher = MicroBatcher(2, "feature cache", max_seconds=20.0)
    lengths = np.asarray([16000 * 95])
    with pytest.raises(DeviceMemoryError, match=r"feature cache: clip 'rec-7' \(95\.00 s, encoded up to "
                                                r"active\.scorer\.max_seconds=20 s\)"):
        batcher.run(lengths, ["rec-7"], lambda index: None)


def test_other_errors_are_not_retried():
    batcher = MicroBatcher(8, "scorer")
    calls = []

    def step(index):
        calls.append(len(index))
        raise RuntimeError("a bug, not memory")

    with pytest.raises(RuntimeError, match="a bug"):
        batcher.run(np.arange(1, 9), [f"c{i}" for i in range(8)], step)
    assert calls == [8] and batcher.size == 8


def test_a_real_out_of_memory_error_from_the_step_is_caught(capsys):
    """What CUDA raises (``torch.OutOfMemoryError``) from inside the forward, not only the injected one."""
    batcher = MicroBatcher(8, "scorer")
    done = []

    def step(index):
        if len(index) > 3:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        done.extend(index.tolist())

    batcher.run(np.asarray([5, 3, 9, 1, 7, 2, 8, 4, 6]), [f"c{i}" for i in range(9)], step)
    assert sorted(done) == list(range(9)) and len(done) == 9  # every clip once, none twice
    assert batcher.size == 2 and len(_halvings(capsys.readouterr().out)) == 2


def test_sizing_probe_that_runs_out_of_memory_starts_at_half(monkeypatch, capsys):
    monkeypatch.setenv(OOM_INJECT_ENV, "4")
    assert size_or_halve("scorer", lambda: 96, probe_clips=8) == 4
    assert _halvings(capsys.readouterr().out) == [
        f"scorer: out of device memory sizing the micro-batch with 8 clips; retrying with 4 (injected by "
        f"${OOM_INJECT_ENV}=4: 8 clips)"]
    monkeypatch.delenv(OOM_INJECT_ENV)
    assert size_or_halve("scorer", lambda: 96, probe_clips=8) == 96
