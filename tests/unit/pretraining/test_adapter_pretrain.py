"""Seed method 1: the WAP-Transformer, its teacher-student pre-training, the frame batches and SAP (no Ray)."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from ser_models.adapters.config import WapConfig
from ser_models.adapters.wap import WAPTransformer, load_wap_weights, save_wap
from ser_models.data.clips import ClipSet, collect_clips
from ser_models.data.inputs import ModelInputs
from ser_models.exceptions import CheckpointError, ConfigError, TrainingError
from ser_models.heads import AttentiveStatisticsPooling
from ser_models.pretraining.adapter_pretrain import (
    AdapterPretrainObjective,
    ema_decay,
    ema_update,
    instance_norm,
    pretrain_adapter,
)
from ser_models.pretraining.tapt_config import AdapterPretrainConfig, TaptConfig
from ser_models.training.batching import make_batch

L, D = 3, 8
WAP = WapConfig(enabled=True, depth=2, dim=16, heads=2, ff_dim=32, dropout=0.0)


def frame_clips(n: int = 12, seed: int = 0) -> ClipSet:
    rng = np.random.default_rng(seed)
    frames = [rng.normal(size=(int(rng.integers(20, 40)), L, D)).astype(np.float16) for _ in range(n)]
    return ClipSet(ids=[f"c{i:02d}" for i in range(n)], labels=np.full(n, -1), frames=frames)


def objective(seed: int = 0, epochs: int = 2, **cfg) -> AdapterPretrainObjective:
    torch.manual_seed(seed)
    optim = dataclasses.replace(AdapterPretrainConfig().optim, epochs=epochs, batch_size=4, lr=1e-3, warmup_ratio=0.0)
    settings = AdapterPretrainConfig(**{"num_clusters": 4, "refresh_every": 1, "kmeans_max_clips": 8, **cfg},
                                     optim=optim)
    return AdapterPretrainObjective(L, D, WAP, settings, np.zeros((L, D), np.float32), np.ones((L, D), np.float32), 12)


# ------------------------------------------------------------------------------------------ frame batches


def test_frame_batches_pad_crop_and_round_trip_through_cache_bytes():
    clips = frame_clips(3)
    raw = {"utt_id": np.asarray(clips.ids, object),
           "features": np.asarray([f.tobytes() for f in clips.frames], object)}
    back = collect_clips([raw], [], inputs=ModelInputs.cached((-1, L, D)), require_labels=False)
    assert all(np.array_equal(a, b) for a, b in zip(back.frames, clips.frames))
    assert list(back.lengths()) == [len(f) for f in clips.frames]
    batch = make_batch(back, np.arange(3), None, None)
    longest = max(len(f) for f in clips.frames)
    assert tuple(batch.features.shape) == (3, longest, L, D) and batch.features.dtype == torch.float32
    assert batch.lengths.tolist() == [len(f) for f in clips.frames]
    assert float(batch.features[0, len(clips.frames[0]):].abs().sum()) == 0.0  # padding is zero
    cropped = make_batch(back, np.arange(3), 10 * 320, np.random.default_rng(0))  # 10 frames of 20 ms
    assert cropped.features.shape[1] == 10 and cropped.lengths.max() == 10


# ------------------------------------------------------------------------------------------------- WAP


def test_wap_ignores_padding_and_saves_round_trip(tmp_path):
    torch.manual_seed(0)
    wap = WAPTransformer(L, D, WAP).eval()
    x = torch.randn(2, 30, L, D)
    lengths = torch.tensor([30, 18])
    garbage = x.clone()
    garbage[1, 18:] = 1e3  # what lies past a clip's end must not change its output
    out = wap(garbage, lengths)
    torch.testing.assert_close(out[1, :18], wap(x[1:, :18], lengths[1:])[0], atol=1e-5, rtol=1e-5)
    assert float(out[1, 18:].abs().sum()) == 0.0
    path = save_wap(wap, str(tmp_path))
    other = WAPTransformer(L, D, WAP).eval()
    load_wap_weights(other, path)
    torch.testing.assert_close(other(x, lengths), wap(x, lengths))
    with pytest.raises(CheckpointError, match="pre-trained as"):
        load_wap_weights(WAPTransformer(L, D, WapConfig(enabled=True, depth=1, dim=16, heads=2)), path)


def test_sap_matches_a_hand_computation():
    torch.manual_seed(3)
    pool = AttentiveStatisticsPooling(4, attention_hidden=5)
    x = torch.randn(2, 6, 4)
    lengths = torch.tensor([6, 4])
    out = pool(x, lengths).detach().numpy()
    w1, b1 = pool.attention[0].weight.detach().numpy(), pool.attention[0].bias.detach().numpy()
    w2, b2 = pool.attention[2].weight.detach().numpy(), pool.attention[2].bias.detach().numpy()
    for i, n in enumerate(lengths.tolist()):
        h = x[i, :n].numpy()
        scores = (np.tanh(h @ w1.T + b1) @ w2.T + b2)[:, 0]
        a = np.exp(scores - scores.max())
        a /= a.sum()
        mean = (a[:, None] * h).sum(0)
        std = np.sqrt((a[:, None] * (h - mean) ** 2).sum(0))
        np.testing.assert_allclose(out[i], np.concatenate([mean, std]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(out[1, :4], x[1, :4].mean(0).numpy())  # the weights are not uniform here


# ------------------------------------------------------------------------------------------- EMA teacher


def test_ema_update_matches_the_formula_and_the_schedule():
    student, teacher = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    t0 = [p.detach().clone() for p in teacher.parameters()]
    ema_update(teacher, student, 0.9)
    for t, before, s in zip(teacher.parameters(), t0, student.parameters()):
        torch.testing.assert_close(t, 0.9 * before + 0.1 * s.detach())
    cfg = AdapterPretrainConfig(ema_decay=0.99, ema_decay_end=0.999)
    assert ema_decay(cfg, 0, 100) == 0.99 and ema_decay(cfg, 100, 100) == pytest.approx(0.999)
    assert ema_decay(cfg, 50, 100) == pytest.approx(0.9945)


def test_teacher_gets_no_gradient_and_follows_the_student_by_ema():
    obj = objective(ema_decay=0.5, ema_decay_end=0.5, epochs=1, refresh_every=1)
    teacher = obj.__dict__["teacher"]
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not any(n.startswith("teacher") for n, _ in obj.named_parameters())  # not a submodule
    before = {n: p.detach().clone() for n, p in teacher.named_parameters()}
    seen = []

    def record(state, o, opt, sched):
        seen.append(state.step)

    clips = frame_clips(4)
    student_before = {n: p.detach().clone() for n, p in obj.student.named_parameters()}
    pretrain_adapter(obj, clips, on_epoch_end=record, log=lambda _: None)
    assert seen == [1]  # 4 clips, batch 4: one step
    for n, p in teacher.named_parameters():
        assert p.grad is None
        # one step: teacher = 0.5 * teacher_0 + 0.5 * student_1
        torch.testing.assert_close(p, 0.5 * before[n] + 0.5 * dict(obj.student.named_parameters())[n].detach())
    assert any(not torch.equal(student_before[n], p) for n, p in obj.student.named_parameters())


# --------------------------------------------------------------------------------- masks, targets, clusters


def test_masks_cover_only_real_frames_and_repeat_under_a_seed():
    obj = objective(mask_prob=0.5, mask_length=3)
    batch = make_batch(frame_clips(4), np.arange(4), None, None)
    a = obj.prepare(batch.features, batch.lengths, np.random.default_rng(7))
    b = obj.prepare(batch.features, batch.lengths, np.random.default_rng(7))
    assert torch.equal(a["mask"], b["mask"])
    valid = torch.arange(batch.features.shape[1])[None] < batch.lengths[:, None]
    assert not (a["mask"] & ~valid).any() and (a["mask"].sum(1) > 0).all()
    share = float(a["mask"].sum() / valid.sum())
    assert 0.2 < share < 0.95
    # Targets are instance-normalised over each clip's real frames (zero mean, unit variance per channel).
    t = a["target"][0, :int(batch.lengths[0])]
    torch.testing.assert_close(t.mean(0), torch.zeros(t.shape[1]), atol=1e-4, rtol=0)
    # The student sees the mask embedding where the teacher sees the frames.
    s = obj.student.eval()
    masked = s(batch.features, batch.lengths, mask=a["mask"])
    plain = s(batch.features, batch.lengths)
    assert not torch.allclose(masked, plain)


def test_instance_norm_ignores_padding():
    x = torch.randn(1, 5, 2)
    valid = torch.tensor([[True, True, True, False, False]])
    out = instance_norm(x, valid)
    ref = (x[0, :3] - x[0, :3].mean(0)) / (x[0, :3].var(0, unbiased=False) + 1e-5).sqrt()
    torch.testing.assert_close(out[0, :3], ref)
    assert float(out[0, 3:].abs().sum()) == 0.0


def test_clusters_are_fitted_on_the_teacher_and_refreshed_every_n_epochs():
    obj = objective(epochs=3, refresh_every=2)
    assert not bool(obj.clusters_fitted)
    refits = []
    original = obj.refresh_clusters

    def spy(*args, **kwargs):
        refits.append(float(obj.centroids.abs().sum()))
        return original(*args, **kwargs)

    obj.refresh_clusters = spy
    state = pretrain_adapter(obj, frame_clips(8), log=lambda _: None)
    assert len(refits) == 2  # epochs 1 and 3 (refresh_every=2)
    assert ["kmeans" in h for h in state.history] == [True, False, True]
    assert bool(obj.clusters_fitted) and float(obj.centroids.abs().sum()) > 0
    assert state.history[0]["kmeans"]["clips"] == 8
    assert all(1.0 <= h["cluster_perplexity"] <= 4.0 for h in state.history)
    ids = obj.assign(obj.centroids[None])  # every centroid is its own nearest
    assert ids.tolist() == [list(range(4))]


def test_resumed_pretraining_equals_an_uninterrupted_run():
    clips = frame_clips(8)
    full = objective(epochs=2)
    pretrain_adapter(full, clips, log=lambda _: None)
    saved = {}

    def keep(state, o, opt, sched):
        if state.epoch == 1:  # what a checkpoint holds, as the Ray Train worker saves it
            model = copy.deepcopy(o.state_dict())
            assert any(k.startswith("teacher.") for k in model)  # the teacher travels with the objective
            saved.update(state=copy.deepcopy(state), model=model, optimizer=copy.deepcopy(opt.state_dict()),
                         scheduler=copy.deepcopy(sched.state_dict()))

    first = objective(epochs=2)
    pretrain_adapter(first, clips, on_epoch_end=keep, log=lambda _: None)
    resumed = objective(seed=99, epochs=2)  # another init: everything must come from the checkpoint
    state = pretrain_adapter(resumed, clips, resume=saved, log=lambda _: None)
    assert [h["epoch"] for h in state.history] == [1, 2]
    for (n, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=n)
    for a, b in zip(full.__dict__["teacher"].parameters(), resumed.__dict__["teacher"].parameters()):
        torch.testing.assert_close(a, b)


def test_collapse_guard_stops_a_constant_teacher():
    obj = objective(ema_decay=1.0, ema_decay_end=1.0, epochs=2, cluster_weight=0.0)
    with torch.no_grad():
        for p in obj.__dict__["teacher"].parameters():
            p.zero_()  # a teacher that maps every frame to the same vector, and (decay 1) stays so
    with pytest.raises(TrainingError, match="collapsed at epoch 1.*ema_decay"):
        pretrain_adapter(obj, frame_clips(4), log=lambda _: None)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="tapt.adapter.ema_decay"):
        AdapterPretrainConfig(ema_decay=0.999, ema_decay_end=0.99)
    with pytest.raises(ConfigError, match="model.wap.heads"):
        WapConfig(enabled=True, dim=10, heads=3)
    with pytest.raises(ConfigError, match="target_layers"):
        objective(target_layers=3)
    assert TaptConfig().resolve_objective("whisper") == "adapter"
    assert TaptConfig().resolve_objective("wav2vec2", frozen=True) == "adapter"
    assert TaptConfig().resolve_objective("wav2vec2") == "contrastive"
