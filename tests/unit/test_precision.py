"""Precision keys (bf16 autocast, TF32), the windowed finiteness check of training, and GPU micro-batch sizing,
all on the CPU: bf16 autocast runs there too."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from torch import nn

from ser_models.config import from_dict, to_dict
from ser_models.data.clips import ClipSet
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.models.model import EmotionModel
from ser_models.precision import (
    AUTO_MICRO_BATCH_CAP,
    AUTO_MICRO_BATCH_FLOOR,
    autocast,
    configure_device,
    micro_batch_from_memory,
)
from ser_models.scoring.scorer import PoolScorer, ScorerConfig
from ser_models.testing import tiny_model_config, tone_clips
from ser_models.training.config import OptimConfig, TrainConfig
from ser_models.training.fitting import fit

MiB, GiB = 2**20, 2**30


@pytest.mark.parametrize("schema,prefix", [(ScorerConfig, "active.scorer"), (TrainConfig, "train")])
def test_keys_refuse_bad_values_and_name_the_key(schema, prefix):
    assert schema().precision == "fp32" and schema().allow_tf32 is True
    assert schema(precision="bf16").precision == "bf16"
    with pytest.raises(ConfigError, match=rf"{prefix}\.precision .*'fp16'"):
        schema(precision="fp16")
    with pytest.raises(ConfigError, match=rf"{prefix}\.allow_tf32"):
        schema(allow_tf32="yes")
    with pytest.raises(ConfigError, match="precision"):  # the way YAML and dotted overrides come in
        from_dict(schema, {"precision": "half"})


def test_autocast_is_bf16_for_bf16_and_nothing_for_fp32():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast(torch.device("cpu"), "bf16"):
        assert layer(x).dtype == torch.bfloat16
    with autocast("cpu", "fp32"):
        assert layer(x).dtype == torch.float32
    with pytest.raises(ConfigError, match="precision"):
        autocast("cpu", "fp8")
    before = torch.backends.cuda.matmul.allow_tf32
    assert configure_device("cpu", not before) is False  # a CPU run leaves the CUDA switch alone
    assert torch.backends.cuda.matmul.allow_tf32 == before


def test_micro_batch_from_memory():
    assert micro_batch_from_memory(80 * GiB, 50 * MiB) == AUTO_MICRO_BATCH_CAP  # an H100 holds the cap
    assert micro_batch_from_memory(2 * GiB, 50 * MiB) == 24  # 0.6 x 2048 / 50 = 24.6 -> a multiple of 8
    assert micro_batch_from_memory(200 * MiB, 50 * MiB) == AUTO_MICRO_BATCH_FLOOR  # never below the probe
    assert micro_batch_from_memory(1 * GiB, 0) == AUTO_MICRO_BATCH_CAP  # nothing measurable
    assert micro_batch_from_memory(4 * GiB, 10 * MiB, cap=64, floor=4, safety=0.5) == 64
    assert micro_batch_from_memory(0, 10 * MiB, floor=4) == 4
    sizes = [micro_batch_from_memory(f * GiB, 40 * MiB) for f in (1, 2, 3, 4, 6, 8, 16)]
    assert sizes == sorted(sizes) and all(s % 8 == 0 for s in sizes)
    with pytest.raises(ValueError):
        micro_batch_from_memory(GiB, MiB, safety=0)


def _audio_batch(n: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(n):
        t = np.arange(int(16000 * rng.uniform(0.4, 0.9))) / 16000
        wav = 0.3 * np.sin(2 * np.pi * (120 + 40 * i) * t) + 0.05 * rng.standard_normal(len(t))
        clips.append((wav * 32767).astype("<i2"))
    return {"utt_id": np.asarray([f"u{i}" for i in range(n)], dtype=object),
            "audio": np.asarray([c.tobytes() for c in clips], dtype=object),
            "audio_format": np.asarray(["pcm16"] * n, dtype=object),
            "num_samples": np.asarray([len(c) for c in clips], np.int64)}


def _linear_output_dtypes(model: nn.Module) -> set:
    seen: set = set()
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
    return seen


def test_bf16_scoring_on_cpu_runs_in_bf16_and_stays_close_to_fp32():
    cfg = to_dict(tiny_model_config(labels=["a", "b", "c"], dimensions=["arousal"]))
    batch = _audio_batch(6)
    out = {}
    for precision in ("fp32", "bf16"):
        scorer = PoolScorer(None, model_cfg=cfg, micro_batch_size=3, precision=precision)  # same seed: same model
        dtypes = _linear_output_dtypes(scorer.model)
        out[precision] = scorer(batch)
        assert dtypes == ({torch.bfloat16} if precision == "bf16" else {torch.float32})
    fp32, bf16 = out["fp32"], out["bf16"]
    for key in ("probs", "dims", "embedding", "pooled"):
        assert bf16[key].dtype == np.float32 and bf16[key].shape == fp32[key].shape
        assert np.isfinite(bf16[key]).all()
    assert np.abs(bf16["probs"] - fp32["probs"]).max() < 0.05
    np.testing.assert_allclose(bf16["probs"].sum(1), 1.0, atol=1e-5)  # softmax in float32
    scale = np.abs(fp32["pooled"]).max()
    assert 0 < np.abs(bf16["pooled"] - fp32["pooled"]).max() < 0.05 * scale  # bf16 really ran, and closely


def _toy_clips(n: int, seed: int) -> ClipSet:
    return tone_clips(n, seed, seconds=(0.4, 0.6), noise=0.0)


def test_bf16_training_on_cpu_keeps_float32_weights_and_a_finite_loss():
    torch.manual_seed(0)
    model = EmotionModel(tiny_model_config("tiny-wav2vec2", "lora", labels=["low", "high"],
                                           normalize_waveform=False))
    dtypes = _linear_output_dtypes(model)
    cfg = TrainConfig(optim=OptimConfig(epochs=2, batch_size=4, lr=3e-3, max_crop_seconds=0.5), lr_head=1e-2,
                      early_stopping_patience=0, eval_batch_size=8, precision="bf16")
    seen = {}
    state = fit(model, _toy_clips(12, 0), _toy_clips(6, 1), cfg, class_counts=[6, 6], log=lambda _: None,
                on_epoch_end=lambda st, mdl, opt, _s: seen.update(opt=opt))
    assert torch.bfloat16 in dtypes  # the forward ran under autocast
    assert state.finished and len(state.history) == 2
    assert all(np.isfinite(r["train_loss"]) and r["train_loss"] > 0 for r in state.history)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    moments = [v for s in seen["opt"].state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    assert moments and all(m.dtype == torch.float32 for m in moments)


def test_a_non_finite_loss_names_its_step_inside_the_checked_window(monkeypatch):
    import ser_models.training.fitting as fitting

    monkeypatch.setattr(fitting, "FINITE_CHECK_STEPS", 3)  # a window shorter than the epoch (8 steps)
    model = EmotionModel(tiny_model_config("tiny-wav2vec2", "frozen", labels=["a", "b"]))
    L, D = model.encoder.num_layers, model.encoder.hidden_size
    feats = np.ones((16, L, D), np.float32)
    feats[11, 0, 0] = np.inf
    clips = ClipSet(ids=[f"clip{i}" for i in range(16)], labels=np.arange(16) % 2, features=feats)
    with pytest.raises(TrainingError) as err:
        fit(model, clips, None, TrainConfig(optim=OptimConfig(epochs=1, batch_size=2), early_stopping_patience=0),
            log=lambda _: None)
    found = re.search(r"at epoch 1, step (\d+), batch of clips .*'clip11'.* \(checked over steps (\d+)-(\d+)\)",
                      str(err.value))
    assert found, str(err.value)
    step, first, last = map(int, found.groups())
    assert first <= step <= last and last - first < 3 and first % 3 == 1
