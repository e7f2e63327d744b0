"""The distilled student: built from the teacher's own layers, trained to predict teacher layers (no Ray)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ser_models.data.clips import ClipSet
from ser_models.encoders import EncoderConfig, build_encoder, save_encoder_weights
from ser_models.exceptions import ConfigError
from ser_models.pretraining.distill import (
    DistillConfig,
    build_distill_objective,
    resolve_teacher_layers,
    student_config,
)
from ser_models.pretraining.pretraining import pretrain, probe_loss
from ser_models.testing import random_waveforms


@pytest.mark.parametrize("source", ["tiny-wav2vec2", "tiny-whisper", "tiny-wavlm"])
def test_student_starts_as_the_teachers_first_layers(source):
    teacher = build_encoder(EncoderConfig(source=source, normalize_waveform=False))
    same_width = build_encoder(EncoderConfig(source=source, normalize_waveform=False, student_layers=2))
    wavs, lengths = random_waveforms(2, seconds=0.6)
    with torch.no_grad():
        t, s = teacher(wavs, lengths), same_width(wavs, lengths)
    assert same_width.num_layers == 3 and teacher.num_layers == 5
    # the kept layers are the teacher's, unchanged (Whisper's last hidden state passes its closing layer norm,
    # so there the student's last one differs from the teacher's layer 2 by that norm)
    for i in range(2 if source == "tiny-whisper" else 3):
        torch.testing.assert_close(s.hidden_states[i], t.hidden_states[i])
    narrow = build_encoder(EncoderConfig(source=source, student_layers=1, student_ffn_ratio=0.25))
    n = lambda m: sum(p.numel() for p in m.hf_model.parameters())  # noqa: E731
    assert n(narrow) < n(same_width) < n(teacher)
    assert narrow.fingerprint() != teacher.fingerprint()


def test_student_config_validation():
    with pytest.raises(ConfigError, match="student_layers=9"):
        build_encoder(EncoderConfig(source="tiny-wav2vec2", student_layers=9))
    with pytest.raises(ConfigError, match="needs model.encoder.student_layers"):
        EncoderConfig(source="tiny-wav2vec2", student_ffn_ratio=0.5)
    with pytest.raises(ConfigError, match="student_ffn_ratio"):
        EncoderConfig(source="tiny-wav2vec2", student_layers=1, student_ffn_ratio=1.5)
    assert resolve_teacher_layers([], 13) == [4, 8, 12]  # DistilHuBERT's choice on a 12-layer teacher
    assert resolve_teacher_layers([], 5) == [1, 3, 4]
    with pytest.raises(ConfigError, match="outside 1..4"):
        resolve_teacher_layers([0, 2], 5)


def _clips(n: int, seed: int) -> ClipSet:
    rng = np.random.default_rng(seed)
    audio = [(rng.standard_normal(int(16000 * rng.uniform(0.5, 0.9))) * 3000).astype(np.int16) for _ in range(n)]
    return ClipSet(ids=[f"c{i}" for i in range(n)], labels=np.full(n, -1), audio=audio)


def test_distillation_lowers_the_loss_and_the_student_round_trips_through_its_checkpoint(tmp_path):
    teacher = EncoderConfig(source="tiny-wav2vec2", normalize_waveform=False)
    optim = dataclasses.replace(DistillConfig().optim, epochs=4, batch_size=4, lr=2e-3, max_crop_seconds=0.6,
                                warmup_ratio=0.0, hold_ratio=1.0)
    cfg = DistillConfig(student_layers=1, student_ffn_ratio=0.5, optim=optim)
    objective = build_distill_objective(teacher, cfg)
    assert objective.teacher_layers == [1, 3, 4] and len(objective.heads) == 3
    assert not any(p.requires_grad for p in objective.teacher.parameters())
    assert all(not k.startswith("teacher") for k in objective.state_dict())  # the teacher is never saved
    wavs, lengths = random_waveforms(4, seconds=0.6, seed=5)
    before = probe_loss(objective, wavs, lengths)
    teacher_before = {k: v.clone() for k, v in objective.teacher.hf_model.state_dict().items()}
    state = pretrain(objective, _clips(16, 0), cfg.optim, log=lambda _: None)
    assert [h["epoch"] for h in state.history] == [1, 2, 3, 4]
    assert probe_loss(objective, wavs, lengths) < 0.8 * before
    assert all(torch.equal(v, objective.teacher.hf_model.state_dict()[k]) for k, v in teacher_before.items())
    path = tmp_path / "student.safetensors"
    save_encoder_weights(objective.encoder, str(path))
    loaded = build_encoder(student_config(teacher, cfg, checkpoint=str(path)))
    objective.encoder.eval()
    with torch.no_grad():
        a, b = objective.encoder(wavs, lengths), loaded(wavs, lengths)
    torch.testing.assert_close(a.hidden_states[-1], b.hidden_states[-1])
    assert loaded.cfg == dataclasses.replace(teacher, student_layers=1, student_ffn_ratio=0.5, checkpoint=str(path))
