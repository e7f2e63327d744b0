"""Smoke run of ``bench.whisper_trim``'s building blocks on the tiny Whisper preset, so the script does not rot."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # bench/ is not an installed package

from bench import whisper_trim as wt  # noqa: E402


def test_encode_pooled_keeps_each_clips_valid_frames_in_both_modes():
    from ser_models.encoders import EncoderConfig, build_encoder

    encoders = {m: build_encoder(EncoderConfig(source="tiny-whisper", whisper_windows=m)).eval() for m in wt.MODES}
    rng = np.random.default_rng(0)
    audio = [(0.1 * rng.standard_normal(n)).astype(np.float32) for n in (32_000, 9_000, 40_000, 20_000)]
    features, seconds = wt.encode_pooled(encoders, audio, batch_size=3, states=(1, 4))
    assert set(seconds) == set(wt.MODES) and all(s > 0 for s in seconds.values())
    assert features["full"].shape == features["trim"].shape == (4, 2, 64)
    # A clip of exactly one window (2 s) is the same in both modes; a 0.56 s one is not.
    np.testing.assert_allclose(features["trim"][0], features["full"][0], atol=1e-5)
    assert not np.allclose(features["trim"][1], features["full"][1], atol=1e-4)
    # Length-sorted batching does not change a clip's features: clip 1 alone gives the same means.
    alone, _ = wt.encode_pooled(encoders, audio[1:2], batch_size=1, states=(1, 4))
    np.testing.assert_allclose(alone["trim"][0], features["trim"][1], atol=1e-5)


def test_paired_interval_and_the_decision_rule():
    mean, low, high = wt.paired_interval(np.array([0.01, -0.01, 0.0]))
    half = 4.3027 * 0.01 / 3 ** 0.5  # t(0.975, 2) * sd / sqrt(3)
    assert mean == pytest.approx(0.0) and high - mean == pytest.approx(half, rel=1e-4)
    assert wt.holds(-0.004, 0.006) and wt.holds(-0.01, 0.0)
    assert not wt.holds(-0.012, 0.003)  # may lose more than a point
    assert not wt.holds(-0.008, -0.001)  # significantly worse
    assert wt.holds(0.002, 0.015)  # better: holds too


def test_probe_runs_pair_the_modes_on_the_same_labels():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.array(["a", "b"]), 60)
    signal = (labels == "a")[:, None] * 1.5 + rng.standard_normal((120, 8))
    feats = np.stack([signal, signal, signal], axis=1)  # [N, 3 states, D]
    split = np.where(np.arange(120) % 3 == 0, "test", "train")
    runs = wt.probe_runs({"full": feats, "trim": feats.copy()}, labels, split == "train", split == "test",
                         seeds=[0, 1], n_labels=30)
    assert len(runs) == 2 * 2 * 3
    by = {(r["seed"], r["mode"], r["state"]): r["test_ua"] for r in runs}
    assert all(by[(s, "full", k)] == by[(s, "trim", k)] for s in (0, 1) for k in wt.STATES)  # same clips
    assert min(by.values()) > 0.7
