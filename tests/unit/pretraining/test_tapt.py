"""TAPT objectives in-process (no Ray): they learn, the negatives trap is pinned, targets align, weights load."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import Wav2Vec2ForPreTraining

from ser_models.config import load_config
from ser_models.data.clips import ClipSet
from ser_models.encoders import EncoderConfig, build_encoder, save_encoder_weights
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.pretraining.kmeans_targets import fit_clusters, fit_kmeans
from ser_models.pretraining.masking import sample_negatives, sample_time_mask
from ser_models.pretraining.mfcc import MFCC_DIM, mfcc
from ser_models.pretraining.pretraining import probe_loss, train_step
from ser_models.pretraining.tapt_config import TaptConfig, TaptJobConfig
from ser_models.pretraining.tapt_objectives import (
    ContrastiveObjective,
    MaskedPredictionObjective,
    build_objective,
)
from ser_models.testing import random_waveforms

CFG = dict(num_clusters=8, mask_time_prob=0.5, mask_time_length=5, num_negatives=20, kmeans_max_clips=8)


def _clips(wavs: torch.Tensor, lengths: torch.Tensor) -> ClipSet:
    audio = [(wavs[i, : lengths[i]].numpy() * 32767).astype(np.int16) for i in range(len(lengths))]
    return ClipSet(ids=[f"c{i}" for i in range(len(audio))], labels=np.full(len(audio), -1), audio=audio)


def _objective(source: str, lr: float = 2e-3, **overrides):
    torch.manual_seed(0)
    encoder = build_encoder(EncoderConfig(source=source))
    optim = dataclasses.replace(TaptConfig().optim, lr=lr, max_crop_seconds=1.0)
    cfg = TaptConfig(**{**CFG, **overrides}, optim=optim)
    clusters = None
    if cfg.resolve_objective(encoder.family) == "masked_prediction":
        clusters = fit_clusters(encoder, _clips(*random_waveforms(4, 0.6, seed=7)), cfg)
    return build_objective(encoder, cfg, clusters), cfg


@pytest.mark.parametrize("source,kind", [("tiny-wav2vec2", ContrastiveObjective),
                                         ("tiny-hubert", MaskedPredictionObjective)])
def test_loss_decreases_on_fixed_batch_and_held_out_probe(source, kind):
    torch.set_num_threads(1)
    objective, cfg = _objective(source, lr=1e-3)
    assert isinstance(objective, kind)
    train_wavs, train_lengths = random_waveforms(4, 0.5, seed=1)
    probe_wavs, probe_lengths = random_waveforms(4, 0.5, seed=2)
    before_train = probe_loss(objective, train_wavs, train_lengths, seed=3)
    before_probe = probe_loss(objective, probe_wavs, probe_lengths, seed=3)
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=cfg.optim.lr)
    rng = np.random.default_rng(0)
    for step in range(20):
        objective.set_step(step)
        stats = train_step(objective, optimizer, train_wavs, train_lengths, rng, grad_clip=1.0)
        assert np.isfinite(stats["loss"])
    after_train = probe_loss(objective, train_wavs, train_lengths, seed=3)
    after_probe = probe_loss(objective, probe_wavs, probe_lengths, seed=3)
    assert after_train < before_train - 0.05, (before_train, after_train)
    assert after_probe < before_probe, (before_probe, after_probe)


def test_feature_encoder_is_frozen_and_gets_no_update():
    objective, cfg = _objective("tiny-wav2vec2")
    cnn = objective.encoder.hf_model.feature_extractor
    assert not any(p.requires_grad for p in cnn.parameters())
    before = {k: v.clone() for k, v in cnn.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=cfg.optim.lr)
    train_step(objective, optimizer, *random_waveforms(2, 0.5, seed=1), np.random.default_rng(0))
    assert all(torch.equal(before[k], v) for k, v in cnn.state_dict().items())


def test_pretraining_without_negatives_returns_no_loss():
    """The transformers >= 4.12 trap that broke AFTER's TAPT: no sampled_negative_indices, no loss."""
    encoder = build_encoder(EncoderConfig(source="tiny-wav2vec2"))
    model = Wav2Vec2ForPreTraining(encoder.hf_config).train()
    wavs, lengths = random_waveforms(2, 0.5, seed=0)
    values, attn = encoder.prepare_inputs(wavs, lengths)
    frames = encoder.frame_lengths(lengths)
    num_frames = int(encoder.frame_lengths(torch.tensor([wavs.shape[1]])))
    mask = sample_time_mask(frames, num_frames, 0.5, 5, 2, np.random.default_rng(0))
    assert model(values, attention_mask=attn, mask_time_indices=mask).loss is None
    negatives = sample_negatives(mask, 10, np.random.default_rng(0))
    out = model(values, attention_mask=attn, mask_time_indices=mask, sampled_negative_indices=negatives)
    assert out.loss is not None and torch.isfinite(out.loss)
    # Our objective's loss is exactly transformers' combined loss per masked frame.
    obj = ContrastiveObjective(encoder, TaptConfig(**CFG)).eval()
    res = obj(values, attn, mask, negatives)
    expected = res["contrastive"] + obj.cfg.diversity_loss_weight * res["diversity"]
    assert torch.allclose(res["loss"], expected, rtol=1e-5)


def test_masks_and_negatives_stay_inside_valid_frames():
    frames = torch.tensor([40, 12])
    mask = sample_time_mask(frames, 40, 0.5, 5, 2, np.random.default_rng(1))
    assert mask.shape == (2, 40) and mask[0].any() and mask[1].any()
    assert not mask[1, 12:].any()
    neg = sample_negatives(mask, 7, np.random.default_rng(1))
    assert neg.shape == (2, 40, 7)
    # Distractors of a masked frame are other masked frames of the same clip (flattened: clip b starts at 40b).
    for b in range(2):
        masked = set(torch.nonzero(mask[b]).flatten().tolist())
        for f in sorted(masked):
            drawn = set((neg[b, f] - 40 * b).tolist())
            assert drawn <= masked - {f}, (b, f, drawn - masked)
    again = sample_time_mask(frames, 40, 0.5, 5, 2, np.random.default_rng(1))
    assert torch.equal(mask, again)


@pytest.mark.parametrize("source", ["tiny-wav2vec2", "tiny-hubert", "tiny-wavlm"])
def test_mfcc_frames_match_encoder_frames(source):
    encoder = build_encoder(EncoderConfig(source=source))
    wavs, lengths = random_waveforms(3, 0.73, seed=4)
    out = encoder(wavs, lengths)
    feats = mfcc(wavs, lengths, out.frame_lengths)
    assert feats.shape == (3, out.hidden_states[0].shape[1], MFCC_DIM)
    for b, n in enumerate(out.frame_lengths.tolist()):
        assert feats[b, :n].abs().sum(-1).gt(0).all()
        assert feats[b, n:].abs().sum() == 0
    # Default framing is the 400-sample / 320-hop formula of the real models.
    assert mfcc(wavs[:1], torch.tensor([16000])).shape[1] == (16000 - 400) // 320 + 1


def test_mfcc_of_a_tone_peaks_in_the_right_mel_band():
    t = torch.arange(16000) / 16000
    low = mfcc(torch.sin(2 * torch.pi * 200 * t)[None], torch.tensor([16000]), with_deltas=False)
    high = mfcc(torch.sin(2 * torch.pi * 4000 * t)[None], torch.tensor([16000]), with_deltas=False)
    # c1 weighs low mel bands positively and high ones negatively.
    assert low[0, :, 1].mean() > high[0, :, 1].mean()


def test_kmeans_uses_every_frame_and_rejects_too_few():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (3000, 4)), rng.normal(5, 0.1, (3000, 4))]).astype(np.float64)
    centroids, stats = fit_kmeans(x, 2, 10, 0)
    assert centroids.dtype == np.float32 and centroids.shape == (2, 4)
    assert stats["frames"] == 6000
    assert sorted(np.round(centroids[:, 0]).tolist()) == [0.0, 5.0]
    with pytest.raises(TrainingError, match="tapt.num_clusters"):
        fit_kmeans(x[:3], 8, 5, 0)


def test_layer_targets_come_from_a_frozen_teacher():
    objective, _ = _objective("tiny-wavlm", cluster_features="layer", cluster_layer=2)
    assert objective.teacher is not objective.encoder
    assert not any(n.startswith("teacher") for n in objective.state_dict())
    wavs, lengths = random_waveforms(2, 0.5, seed=5)
    ids, fl = objective.targets(wavs, lengths)
    assert ids.shape[0] == 2 and int(ids[0, : fl[0]].min()) >= 0
    with pytest.raises(ConfigError, match="tapt.cluster_layer"):
        _objective("tiny-hubert", cluster_features="layer", cluster_layer=9)


def test_checkpoint_loads_into_fresh_encoder_and_changes_outputs(tmp_path):
    objective, cfg = _objective("tiny-hubert")
    optimizer = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=5e-3)
    wavs, lengths = random_waveforms(2, 0.5, seed=1)
    for _ in range(3):
        train_step(objective, optimizer, wavs, lengths, np.random.default_rng(0))
    path = tmp_path / "encoder.safetensors"
    save_encoder_weights(objective.encoder.hf_model, str(path))
    assert set(objective.encoder.hf_model.state_dict()) == set(
        build_encoder(EncoderConfig(source="tiny-hubert")).hf_model.state_dict())
    adapted = build_encoder(EncoderConfig(source="tiny-hubert", checkpoint=str(path)))
    fresh = build_encoder(EncoderConfig(source="tiny-hubert"))
    objective.encoder.eval()
    with torch.no_grad():
        a, f, t = adapted(wavs, lengths), fresh(wavs, lengths), objective.encoder(wavs, lengths)
    assert torch.allclose(a.hidden_states[-1], t.hidden_states[-1], atol=1e-5)
    assert not torch.allclose(a.hidden_states[-1], f.hidden_states[-1], atol=1e-3)


def test_config_validation_names_keys():
    with pytest.raises(ConfigError, match="tapt.objective"):
        TaptConfig(objective="mlm")
    with pytest.raises(ConfigError, match="tapt.mask_time_prob"):
        TaptConfig(mask_time_prob=1.5)
    with pytest.raises(ConfigError, match="optim.warmup_ratio"):
        TaptConfig(optim=dataclasses.replace(TaptConfig().optim, warmup_ratio=0.8, hold_ratio=0.5))
    with pytest.raises(ConfigError, match="tapt.cluster_features"):
        TaptConfig(cluster_features="fbank")
    with pytest.raises(ConfigError, match="contrastive needs a wav2vec2"):
        TaptConfig(objective="contrastive").resolve_objective("hubert")
    assert TaptConfig().resolve_objective("wavlm") == "masked_prediction"
    assert TaptConfig().resolve_objective("wav2vec2") == "contrastive"
    with pytest.raises(ConfigError, match="never see dev or test"):
        load_config(TaptJobConfig, None, ["pool_dir=/p", "output_dir=/o", "split=test"])
    cfg = load_config(TaptJobConfig, None, ["pool_dir=/p", "output_dir=/o", "tapt.optim.epochs=2"])
    assert cfg.tapt.optim.epochs == 2 and "num_clusters=100" in repr(cfg.tapt)


def test_masked_prediction_targets_default_to_the_encoders_own_layer_when_pretrained(tmp_path):
    """HuBERT's first-iteration MFCC targets would pull a pretrained model backwards: learnt weights cluster
    their own middle layer, a randomly initialised preset clusters MFCCs; explicit values always win."""
    from ser_models.encoders.encoder import save_encoder_weights
    from ser_models.pretraining.kmeans_targets import resolve_targets

    random_init = build_encoder(EncoderConfig(source="tiny-hubert"))
    auto = TaptConfig(objective="masked_prediction")
    assert (auto.cluster_features, auto.cluster_layer) == ("auto", None)
    resolved = resolve_targets(auto, random_init)
    assert (resolved.cluster_features, resolved.cluster_layer) == ("mfcc", random_init.num_layers // 2)
    save_encoder_weights(random_init, str(tmp_path / "w.safetensors"))  # now it carries learnt weights
    learnt = build_encoder(EncoderConfig(source="tiny-hubert", checkpoint=str(tmp_path / "w.safetensors")))
    resolved = resolve_targets(auto, learnt)
    assert (resolved.cluster_features, resolved.cluster_layer) == ("layer", learnt.num_layers // 2)
    explicit = resolve_targets(TaptConfig(cluster_features="mfcc", cluster_layer=1), learnt)
    assert (explicit.cluster_features, explicit.cluster_layer) == ("mfcc", 1)


@pytest.mark.parametrize("source", ["tiny-hubert-group", "tiny-wav2vec2-group"])
def test_a_group_norm_clips_tapt_loss_does_not_depend_on_its_batch(source):
    """wav2vec2-base / HuBERT-base layouts: a clip's masked-frame loss is the same alone and beside a clip three
    times longer (its front end runs on its own samples, as in scoring); HF's padded front end would change it."""
    torch.manual_seed(0)
    objective, _ = _objective(source, objective="masked_prediction") if "hubert" in source else (None, None)
    if objective is None:  # the contrastive loss samples negatives across the batch: compare the hidden states
        objective, _ = _objective(source)
    objective.eval()
    wavs, lengths = random_waveforms(2, 1.5, seed=5)
    lengths = torch.tensor([int(lengths[0]) // 3, int(lengths[1])])
    alone_inputs, alone_mask = objective.encoder.prepare_inputs(wavs[:1, : lengths[0]], lengths[:1])
    both_inputs, both_mask = objective.encoder.prepare_inputs(wavs, lengths)
    frames = int(objective.encoder.frame_lengths(lengths[:1]))
    mask_alone = torch.zeros(1, frames, dtype=torch.bool)
    mask_alone[0, 2:frames:3] = True
    mask_both = torch.zeros(2, int(objective.encoder.frame_lengths(torch.tensor([both_inputs.shape[1]]))),
                            dtype=torch.bool)
    mask_both[0, :frames] = mask_alone[0]

    def hidden(inputs, attention, mask, aware=True):
        import contextlib

        front = objective.encoder._padding_aware_front_end(inputs, attention) if aware else contextlib.nullcontext()
        with torch.no_grad(), front:
            return objective.encoder.hf_model(inputs, attention_mask=attention,
                                              mask_time_indices=mask).last_hidden_state[0, :frames]

    alone = hidden(alone_inputs, alone_mask, mask_alone)
    assert torch.allclose(hidden(both_inputs, both_mask, mask_both), alone, atol=1e-5)
    assert not torch.allclose(hidden(both_inputs, both_mask, mask_both, aware=False), alone, atol=1e-3)
    if isinstance(objective, MaskedPredictionObjective):  # the loss itself, through the objective's forward
        targets = torch.randint(0, 8, (1, frames))
        padded = torch.full(mask_both.shape, -100)
        padded[0, :frames] = targets[0]
        with torch.no_grad():
            a = objective(alone_inputs, alone_mask, mask_alone, targets)["loss"]
            b = objective(both_inputs, both_mask, mask_both, padded)["loss"]
        assert torch.allclose(a, b, atol=1e-5)


def test_pre_training_heads_come_from_the_source_read_once(tmp_path):
    """The quantizer and projections of a *ForPreTraining folder are loaded from its files read into memory: the
    saved heads, and a later copy over the weights file (same inode) does not reach them."""
    import shutil

    from ser_models.encoders.presets import tiny_config

    folder, other = tmp_path / "w2v-pt", tmp_path / "other"
    torch.manual_seed(0)
    Wav2Vec2ForPreTraining(tiny_config("tiny-wav2vec2")).save_pretrained(folder)
    saved = Wav2Vec2ForPreTraining.from_pretrained(folder).quantizer.codevectors.detach().clone()
    torch.manual_seed(1)
    Wav2Vec2ForPreTraining(tiny_config("tiny-wav2vec2")).save_pretrained(other)
    obj = ContrastiveObjective(build_encoder(EncoderConfig(source=str(folder))), TaptConfig(**CFG))
    assert torch.equal(obj.pretraining.quantizer.codevectors.detach(), saved)
    shutil.copyfile(other / "model.safetensors", folder / "model.safetensors")
    assert torch.equal(obj.pretraining.quantizer.codevectors.detach(), saved)
