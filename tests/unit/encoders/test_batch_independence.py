"""A clip's features do not depend on its batch.

Every random-weight preset of every family the docs recommend (group-norm wav2vec2 / HuBERT / WavLM as their
*-base checkpoints, layer-norm ones with post- and pre-LN transformers as *-large, Whisper with full and trimmed
windows): a clip encoded alone and encoded next to shorter and much longer clips, zero-padded, gives the same
hidden states at its valid frames, within 1e-5 relative in float32 on CPU. The same holds one level up, for the
feature cache's per-layer means at any micro-batch size.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ser_models.encoders import TINY_PRESETS, EncoderConfig, build_encoder
from ser_models.testing import tiny_model_config

#: Largest accepted ``max |batched - alone| / max |alone|`` per hidden state (fp32, CPU).
REL_TOL = 1e-5
#: The clip under test and its neighbours (s): shorter, three times longer, much longer.
TARGET_S = 1.0
NEIGHBOURS_S = {"short": 0.45, "3x": 3.0, "long": 4.7}
#: Batches the target is encoded in, by neighbour names (the target's place in each is marked by None).
BATCHES = {
    "next to a shorter clip": ["short", None],
    "next to one three times longer": [None, "3x"],
    "among shorter and much longer clips": ["long", "short", None, "3x"],
}


def _clip(seconds: float, seed: int) -> torch.Tensor:
    """``[T]`` float32 at 16 kHz: a few partials, a slow loudness contour and noise, so that channel statistics
    differ along the clip (which is what a padded group norm gets wrong)."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * 16_000), dtype=torch.float32) / 16_000
    freqs = 80 + 500 * torch.rand(3, generator=gen)
    wav = torch.sin(2 * torch.pi * freqs[:, None] * t).sum(0) * (0.2 + 0.15 * torch.sin(2 * torch.pi * 1.3 * t))
    return (wav + 0.03 * torch.randn(len(t), generator=gen)).float()


def _pad(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(c) for c in clips])
    wavs = torch.zeros(len(clips), int(lengths.max()))
    for row, c in enumerate(clips):
        wavs[row, :len(c)] = c
    return wavs, lengths


def _relative_errors(encoder, target: torch.Tensor, batch: list[torch.Tensor], row: int) -> list[float]:
    """Per hidden state, ``max |batched - alone| / max |alone|`` over the target's valid frames."""
    with torch.no_grad():
        alone = encoder(*_pad([target]))
        batched = encoder(*_pad(batch))
    n = int(alone.frame_lengths[0])
    assert int(batched.frame_lengths[row]) == n
    errors = []
    for ha, hb in zip(alone.hidden_states, batched.hidden_states):
        a, b = ha[0, :n].double(), hb[row, :n].double()
        errors.append(float((a - b).abs().max() / a.abs().max()))
    return errors


ENCODERS = [*sorted(TINY_PRESETS), "tiny-whisper/trim"]


@pytest.fixture(scope="module", params=ENCODERS)
def encoder(request):
    source, _, windows = request.param.partition("/")
    cfg = EncoderConfig(source=source, whisper_windows=windows or "full", whisper_trim_seconds=0.5)
    return build_encoder(cfg).eval()


@pytest.mark.parametrize("batch", sorted(BATCHES))
def test_a_clip_scored_alone_or_in_any_batch_gives_the_same_features(encoder, batch):
    target = _clip(TARGET_S, seed=1)
    names = BATCHES[batch]
    clips = [target if name is None else _clip(NEIGHBOURS_S[name], seed=10 + i) for i, name in enumerate(names)]
    errors = _relative_errors(encoder, target, clips, names.index(None))
    worst = int(np.argmax(errors))
    assert max(errors) <= REL_TOL, (f"{encoder.cfg.source}: hidden state {worst} of a {TARGET_S:g} s clip "
                                    f"{batch} differs from the clip alone by {errors[worst]:.2e} (relative)")


@pytest.mark.parametrize("source", ["tiny-wav2vec2-group", "tiny-wavlm-group"])
def test_group_norm_fix_is_what_makes_them_independent(source):
    """The group-norm presets really are batch-dependent under HF's own padded forward (so the test above
    can fail): the reference is ``hf_model`` called with the sample mask, as before the fix."""
    enc = build_encoder(EncoderConfig(source=source)).eval()
    target, long = _clip(TARGET_S, seed=1), _clip(NEIGHBOURS_S["3x"], seed=2)
    outputs = []
    for clips in ([target], [target, long]):
        x, mask = enc.prepare_inputs(*_pad(clips))
        with torch.no_grad():
            outputs.append(enc.hf_model(x, attention_mask=mask).last_hidden_state[0])
    n = outputs[0].shape[0]
    assert float((outputs[0] - outputs[1][:n]).abs().max() / outputs[0].abs().max()) > 1e-2


@pytest.mark.parametrize("source", ["tiny-wav2vec2-group", "tiny-hubert-group", "tiny-wavlm-group",
                                    "tiny-wavlm-stable", "tiny-whisper"])
def test_feature_cache_means_do_not_depend_on_the_micro_batch(source):
    """``pooled_layer_features`` (what the feature cache stores) at micro-batch 1, 3 and 8 agree within 1e-5:
    the micro-batch size a GPU picks from its free memory changes speed only."""
    from ser_models.data.clips import ClipSet
    from ser_models.models.model import EmotionModel
    from ser_models.training.batching import pooled_layer_features

    model = EmotionModel(tiny_model_config(source, adapter="frozen")).eval()
    rng = np.random.default_rng(0)
    seconds = rng.uniform(0.3, 2.5, size=8)
    audio = [(np.clip(_clip(s, seed=i).numpy(), -1, 1) * 32767).astype(np.int16) for i, s in enumerate(seconds)]
    clips = ClipSet(ids=[f"c{i}" for i in range(8)], labels=np.full(8, -1), audio=audio)
    reference = pooled_layer_features(model, clips, micro_batch=1)  # [N, L, D]
    for micro in (3, 8):
        got = pooled_layer_features(model, clips, micro_batch=micro)
        rel = np.abs(got - reference).max(axis=(1, 2)) / np.abs(reference).max(axis=(1, 2))
        assert rel.max() <= REL_TOL, f"{source}: micro-batch {micro} moves clip {clips.ids[int(rel.argmax())]} " \
                                     f"by {rel.max():.2e} (relative)"


@pytest.mark.parametrize("source", ["tiny-wav2vec2-group", "tiny-hubert-group", "tiny-wavlm-group"])
def test_group_norm_front_end_computes_the_models_own_function(source):
    """Alone and unpadded, the per-clip front end gives what HF's module gives (the fix changes padding only),
    and in training mode gradients reach the first conv layer and its norm (full fine-tuning trains them)."""
    enc = build_encoder(EncoderConfig(source=source)).eval()
    wavs, lengths = _pad([_clip(0.8, seed=4)])
    x, _ = enc.prepare_inputs(wavs, lengths)
    with torch.no_grad():
        ours = enc(wavs, lengths).hidden_states[-1][0]
        theirs = enc.hf_model(x).last_hidden_state[0]
    assert float((ours - theirs).abs().max() / theirs.abs().max()) <= REL_TOL
    enc.train()  # as in full fine-tuning (HF's front end then marks its input as requiring grad)
    out = enc(*_pad([_clip(0.8, seed=4), _clip(0.5, seed=5)]))
    out.hidden_states[-1][1, :int(out.frame_lengths[1])].sum().backward()
    first = enc.hf_model.feature_extractor.conv_layers[0]
    assert first.conv.weight.grad is not None and first.conv.weight.grad.abs().sum() > 0
    assert first.layer_norm.weight.grad is not None and first.layer_norm.weight.grad.abs().sum() > 0
    # the override lasts one call: HF's own front end is back (TAPT calls hf_model directly)
    assert "forward" not in vars(enc.hf_model.feature_extractor)


@pytest.mark.parametrize("source", ["tiny-wav2vec2-group", "tiny-hubert-group", "tiny-wavlm-group"])
def test_the_batched_front_end_gives_each_clip_its_clip_by_clip_features(source):
    """The batched group-norm front end (what CUDA runs) equals the clip-by-clip one (what the CPU runs) at every
    clip's valid frames, zero past them, for clips from 0.45 s to 4.7 s in one batch; and a clip alone or among
    longer clips keeps its hidden states with the batched front end too."""
    enc = build_encoder(EncoderConfig(source=source)).eval()
    clips = [_clip(s, seed=20 + i) for i, s in enumerate([TARGET_S, *NEIGHBOURS_S.values()])]
    x, mask = enc.prepare_inputs(*_pad(clips))
    lengths = mask.sum(1)
    with torch.no_grad():
        enc.batched_front_end = False
        per_clip = enc._front_end(x, lengths)
        enc.batched_front_end = True
        batched = enc._front_end(x, lengths)
    frames = enc.hf_model._get_feat_extract_output_lengths(lengths)
    assert batched.shape == per_clip.shape
    for row, n in enumerate(frames.tolist()):
        a, b = per_clip[row, :, :n], batched[row, :, :n]
        assert float((a - b).abs().max() / a.abs().max()) <= REL_TOL, f"{source}: clip {row}"
        assert not batched[row, :, n:].any() and not per_clip[row, :, n:].any()
    target = clips[0]
    errors = _relative_errors(enc, target, [clips[3], target, clips[2]], 1)
    assert max(errors) <= REL_TOL, errors


def test_the_batched_front_end_trains_the_first_layer_and_its_norm():
    """Full fine-tuning on CUDA runs the batched front end: gradients reach the first conv and its norm's
    weights, and equal the clip-by-clip front end's."""
    grads = {}
    for batched in (False, True):
        torch.manual_seed(0)
        enc = build_encoder(EncoderConfig(source="tiny-wav2vec2-group")).train()
        enc.batched_front_end = batched
        enc.hf_model.config.mask_time_prob = 0.0  # no SpecAugment draws: both runs see the same inputs
        out = enc(*_pad([_clip(0.8, seed=4), _clip(0.5, seed=5)]))
        h = out.hidden_states[-1][1, :int(out.frame_lengths[1])]
        # A fixed random projection, not a plain sum: the last state is layer-normed, so its sum over features
        # is constant and its gradient zero in exact arithmetic (float32 left rounding noise to compare).
        weights = torch.randn(h.shape, generator=torch.Generator().manual_seed(7))
        (h * weights).sum().backward()
        first = enc.hf_model.feature_extractor.conv_layers[0]
        grads[batched] = [first.conv.weight.grad.clone(), first.layer_norm.weight.grad.clone()]
    for per_clip, batched in zip(grads[False], grads[True]):
        assert per_clip.abs().max() > 1.0  # a gradient, not rounding noise
        # relative to the gradient's scale, as the hidden states are compared (measured: about 1e-6)
        assert float((batched - per_clip).abs().max() / per_clip.abs().max()) <= REL_TOL
