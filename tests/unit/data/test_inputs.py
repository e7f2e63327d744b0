"""ModelInputs: what a model reads (audio, cached pooled means, cached frames), and its worker-config form."""

from __future__ import annotations

import numpy as np
import pytest

from ser_models.data.inputs import AUDIO, ModelInputs


def test_kinds_follow_the_cached_shape_and_round_trip_through_the_worker_config():
    pooled, frames = ModelInputs.cached([3, 4]), ModelInputs.cached((-1, 3, 4))
    assert (pooled.kind, pooled.shape, frames.kind, frames.shape) == ("pooled", (3, 4), "frames", (-1, 3, 4))
    assert AUDIO == ModelInputs.audio() and AUDIO.is_audio and not AUDIO.is_cached and AUDIO.shape is None
    assert pooled.is_cached and not pooled.is_frames and frames.is_frames
    for inputs in (AUDIO, pooled, frames):
        assert ModelInputs.from_dict(inputs.to_dict()) == inputs
    assert ModelInputs.from_dict(None) == AUDIO
    with pytest.raises(ValueError, match="kind"):
        ModelInputs("waveform")
    with pytest.raises(ValueError, match="shape"):
        ModelInputs("pooled")


def test_decode_reads_float32_means_and_float16_frames():
    means = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(ModelInputs.cached((3, 4)).decode(means.tobytes()), means)
    frames = np.arange(24, dtype=np.float16).reshape(2, 3, 4)
    out = ModelInputs.cached((-1, 3, 4)).decode(frames.tobytes())
    assert out.dtype == np.float16 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, frames)


def test_the_side_inputs_name_the_columns_a_feed_and_a_scorer_read():
    audio = ModelInputs(transcripts=True, speakers=True)
    assert audio.columns() == ["utt_id", "audio", "audio_format", "num_samples", "transcript", "speaker"]
    assert audio.feed_columns(["arousal"], soft=True) == [
        "utt_id", "audio", "audio_format", "num_samples", "label", "arousal", "transcript", "soft_label", "speaker"]
    cached = ModelInputs("pooled", (3, 4), speakers=True, functionals=True)
    assert cached.columns() == ["utt_id", "features", "speaker", "functionals"]
    assert cached.feed_columns() == ["utt_id", "features", "label", "speaker", "functionals"]
    assert AUDIO.columns() == ["utt_id", "audio", "audio_format", "num_samples"]
    for inputs in (audio, cached):
        assert ModelInputs.from_dict(inputs.to_dict()) == inputs
    with pytest.raises(ValueError, match="transcripts are read with audio only"):
        ModelInputs("pooled", (3, 4), transcripts=True)
    with pytest.raises(ValueError, match="functionals are read from the feature cache"):
        ModelInputs(functionals=True)
