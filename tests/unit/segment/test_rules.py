"""Segmentation rules on hand-made frame probabilities (32 ms frames, 512 samples at 16 kHz)."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.exceptions import ConfigError
from ser_models.segment.rules import (
    PRESETS,
    SegmentRules,
    frames_of,
    hysteresis,
    merge_gaps,
    pad_regions,
    segment_probs,
    split_long,
)

F = 512  # samples per frame


def probs(*runs: tuple[float, int]) -> np.ndarray:
    """Concatenate (probability, frames) runs."""
    return np.concatenate([np.full(n, p) for p, n in runs])


def rules(preset: str = "turns", **kw) -> SegmentRules:
    return SegmentRules(**kw).resolve(preset)


def test_hysteresis_enters_at_threshold_and_leaves_below_the_lower_one_after_min_silence():
    p = probs((0.1, 5), (0.6, 10), (0.4, 3), (0.6, 5), (0.2, 2), (0.6, 5), (0.1, 10))
    # 0.4 is between leave (0.35) and enter (0.5): the region stays open; a 2-frame dip < 3 frames too.
    assert hysteresis(p, 0.5, 0.35, 3).tolist() == [[5, 30]]
    # with min_silence of 2 frames the 2-frame dip ends the region where the dip began
    assert hysteresis(p, 0.5, 0.35, 2).tolist() == [[5, 23], [25, 30]]


def test_hysteresis_between_thresholds_never_starts_speech_and_open_region_closes_at_the_end():
    assert hysteresis(probs((0.45, 20)), 0.5, 0.35, 3).tolist() == []
    assert hysteresis(probs((0.1, 3), (0.9, 7)), 0.5, 0.35, 3).tolist() == [[3, 10]]


def test_merge_gaps_bridges_short_gaps_within_max_length():
    regions = np.array([[0, 10], [12, 20], [30, 40]])
    assert merge_gaps(regions, 3, 100).tolist() == [[0, 20], [30, 40]]
    assert merge_gaps(regions, 3, 15).tolist() == [[0, 10], [12, 20], [30, 40]]  # would exceed max_len


def test_split_long_cuts_at_the_least_speech_like_frame_leaving_valid_halves():
    p = probs((0.9, 40), (0.55, 3), (0.9, 57))
    out = split_long(np.array([[0, 100]]), p, max_len=60, min_len=10)
    assert out.tolist() == [[0, 41], [42, 100]]  # the middle frame of the dip is dropped
    assert all(e - s <= 60 and e - s >= 10 for s, e in out)
    # a dip too close to the edge is not taken: both halves must be at least min_len
    p = probs((0.3, 2), (0.9, 98))
    out = split_long(np.array([[0, 100]]), p, max_len=60, min_len=10)
    assert out.tolist() == [[0, 50], [51, 100]]  # a flat stretch is cut in its middle


def test_pad_regions_never_overlaps_neighbours_nor_leaves_the_recording():
    spans = np.array([[100, 1000], [1100, 2000], [5000, 9990]])
    out = pad_regions(spans, 200, total=10_000)
    assert out.tolist() == [[0, 1050], [1050, 2200], [4800, 10_000]]
    assert (out[1:, 0] >= out[:-1, 1]).all()


def test_turns_preset_end_to_end_in_samples():
    p = probs((0.05, 50), (0.95, 100), (0.1, 8), (0.95, 100), (0.05, 100), (0.9, 10), (0.05, 60))
    total = len(p) * F
    spans = segment_probs(p, rules(), total)
    # the 8-frame (256 ms) gap is shorter than merge_gap (0.5 s): one segment of 208 frames = 6.66 s;
    # the 10-frame (0.32 s) burst is shorter than min_length (1.5 s) and is dropped
    assert len(spans) == 1
    pad = int(0.2 * 16000)
    assert spans[0].tolist() == [50 * F - pad, 258 * F + pad]


def test_over_long_speech_is_split_below_max_length():
    rng = np.random.default_rng(0)
    p = np.clip(0.9 + 0.05 * rng.standard_normal(1000), 0.6, 1.0)  # 32 s of speech, no pause
    spans = segment_probs(p, rules(pad=0.0), len(p) * F)
    lengths = (spans[:, 1] - spans[:, 0]) / 16000
    assert len(spans) >= 3 and lengths.max() <= 11.0 + 1e-9 and lengths.min() >= 1.5 - 1e-9
    assert (spans[1:, 0] > spans[:-1, 1]).all()


def test_vad_preset_keeps_short_speech_and_windows_preset_gives_fixed_windows():
    p = probs((0.05, 20), (0.95, 10), (0.05, 20))
    assert len(segment_probs(p, rules("vad"), len(p) * F)) == 1
    assert len(segment_probs(p, rules("turns"), len(p) * F)) == 0
    p = probs((0.95, frames_of(8.0)), (0.05, frames_of(8.0)))
    spans = segment_probs(p, rules("windows"), len(p) * F)
    assert len(spans) == 2 and all((e - s) == frames_of(4.0) * F for s, e in spans)


def test_overrides_replace_the_preset_and_bad_values_name_the_key():
    r = SegmentRules(pad=0.05, max_length=8.0).resolve("turns")
    assert r.pad == 0.05 and r.max_length == 8.0 and r.min_length == PRESETS["turns"]["min_length"]
    with pytest.raises(ConfigError, match="max_length"):
        SegmentRules(max_length=2.0).resolve("turns")
    with pytest.raises(ConfigError, match="threshold"):
        SegmentRules(threshold=1.5).resolve("turns")
    with pytest.raises(ConfigError, match="preset"):
        SegmentRules().resolve("nope")
