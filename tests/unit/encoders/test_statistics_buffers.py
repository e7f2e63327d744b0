"""Feature statistics are registered buffers: ``.to(device / dtype)`` moves them with the model."""

from __future__ import annotations

import torch

from ser_models.encoders.speaker_norm import SpeakerMoments, SpeakerStandardizer
from ser_models.encoders.standardizer import LayerStandardizer


def _stats():
    m = SpeakerMoments()
    m.add(torch.arange(12, dtype=torch.float32).reshape(4, 1, 3).numpy(), ["a", "a", "b", "b"])
    return m.result(shrink_clips=0)


def test_pool_statistics_move_with_the_module():
    norm = LayerStandardizer(2, 3)
    norm.set_statistics(torch.ones(2, 3), torch.full((2, 3), 2.0), clips=5)
    norm.to(torch.float64)
    assert norm.mean.dtype == norm.scale.dtype == torch.float64 and norm.clips.dtype == torch.int64
    norm.to("meta")
    assert {b.device.type for b in norm.buffers()} == {"meta"}


def test_speaker_statistics_move_with_the_module_and_stay_out_of_its_state_dict():
    norm = SpeakerStandardizer(1, 3)
    norm.set_statistics(_stats())
    assert set(dict(norm.named_buffers())) == {"_mean", "_scale"} and not norm.state_dict()
    norm.to(torch.float64)
    assert norm._mean.dtype == norm._scale.dtype == torch.float64
    h = torch.arange(6, dtype=torch.float64).reshape(2, 1, 3)
    (out,) = norm((h,), ["a", "b"])
    assert out.dtype == torch.float64
    norm.to("meta")
    assert norm._mean.device.type == norm._scale.device.type == "meta"


def test_statistics_set_after_the_move_land_on_the_modules_device():
    norm = SpeakerStandardizer(1, 3).to("meta")
    norm.set_statistics(_stats())  # a loop sets new statistics each round, after the model moved
    assert norm._mean.device.type == "meta" and norm._mean.shape == (3, 1, 3)  # 2 speakers + the pool
