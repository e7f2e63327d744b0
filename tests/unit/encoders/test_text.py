"""The text branch: tiny text encoder, fusion in EmotionModel, transcripts through batching, a fit that needs
the text to succeed."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from ser_models.data.clips import collect_clips
from ser_models.data.inputs import ModelInputs
from ser_models.encoders.text import TINY_TEXT, ByteTokenizer, TextConfig, TextEncoder
from ser_models.exceptions import ConfigError, EncoderError
from ser_models.models.model import EmotionModel
from ser_models.testing import random_waveforms, tiny_model_config
from ser_models.training.batching import make_batch
from ser_models.training.config import OptimConfig, TrainConfig
from ser_models.training.fitting import evaluate, fit


def test_tokenizer_and_tiny_encoder():
    ids, mask = ByteTokenizer()(["ab", ""], max_tokens=8)
    assert ids.tolist() == [[1, 97 + 3, 98 + 3, 2], [1, 2, 0, 0]] and mask.sum().item() == 6
    a, b = TextEncoder(TextConfig(source=TINY_TEXT)), TextEncoder(TextConfig(source=TINY_TEXT))
    out = a(["ka-mi lo", None, "sen"])
    assert out.shape == (3, a.hidden_size) and torch.equal(out, b(["ka-mi lo", None, "sen"]))  # same weights
    assert not any(p.requires_grad for p in a.parameters())  # frozen by default
    assert not torch.allclose(out[0], out[2])
    with pytest.raises(ConfigError, match="max_tokens"):
        TextConfig(source=TINY_TEXT, max_tokens=2)
    with pytest.raises(EncoderError, match="model.text.source"):
        TextEncoder(TextConfig(source="no-such/text-model"))


def test_model_fuses_text_and_round_trips_its_checkpoint(tmp_path):
    cfg = dataclasses.replace(tiny_model_config("tiny-wav2vec2", "frozen", labels=["a", "b"]),
                              text=TextConfig(source=TINY_TEXT, freeze=False))
    torch.manual_seed(0)
    model = EmotionModel(cfg).eval()
    wavs, lengths = random_waveforms(2, seconds=0.5)
    with torch.no_grad():
        one = model(wavs, lengths, ["happy words", "sad words"]).logits
        two = model(wavs, lengths, ["other", "text"]).logits
    assert not torch.allclose(one, two)  # the transcript changes the prediction
    assert any(n.startswith("text.") for n in model.trainable_state_dict())  # unfrozen: trained and saved
    model.save_checkpoint(str(tmp_path / "ckpt"))
    loaded = EmotionModel.load_checkpoint(str(tmp_path / "ckpt"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(wavs, lengths, ["happy words", "sad words"]).logits, one)
    frozen = EmotionModel(dataclasses.replace(cfg, text=TextConfig(source=TINY_TEXT)))
    assert not any(n.startswith("text.") for n in frozen.trainable_state_dict())


def test_transcripts_flow_through_collect_and_batch():
    assert ModelInputs(transcripts=True).feed_columns([])[-1] == "transcript"
    batch = {"utt_id": np.array(["x", "y"], dtype=object), "audio": np.array([b"\0\0" * 800] * 2, dtype=object),
             "audio_format": np.array(["pcm16"] * 2, dtype=object), "label": np.array(["a", "b"], dtype=object),
             "transcript": np.array(["hello", None], dtype=object)}
    clips = collect_clips([batch], ["a", "b"])
    assert clips.transcripts == ["hello", None]
    assert clips.subset([1, 0]).transcripts == [None, "hello"]
    assert make_batch(clips, np.array([1]), None, None).transcripts == [None]
    del batch["transcript"]
    assert collect_clips([batch], ["a", "b"]).transcripts is None


def test_a_label_carried_only_by_the_text_is_learnt_with_the_text_branch():
    """Features: the same noise for both classes; the transcript names the class. Audio alone stays at chance.
    (Cached-feature mode: the fusion is the same as on audio, and the test stays fast.)"""
    from ser_models.data.clips import ClipSet

    def clips(n, seed):
        r = np.random.default_rng(seed)
        labels = np.arange(n) % 2
        words = [("ka-mi lo-sen" if y == 0 else "tu-ru pe") + " " + "-".join(r.choice(["ba", "do", "ne"], 2))
                 for y in labels]
        return ClipSet(ids=[f"c{seed}_{i}" for i in range(n)], labels=labels,
                       features=r.standard_normal((n, 5, 64)).astype(np.float32), transcripts=words)

    train, dev = clips(64, 1), clips(24, 2)
    cfg = TrainConfig(optim=OptimConfig(epochs=30, batch_size=8), lr_head=1e-2, early_stopping_patience=0)
    results = {}
    for source in ("", TINY_TEXT):
        torch.manual_seed(0)
        model_cfg = dataclasses.replace(tiny_model_config("tiny-wav2vec2", "frozen", labels=["lo", "hi"]),
                                        text=TextConfig(source=source))
        model = EmotionModel(model_cfg)
        fit(model, train, dev, cfg, log=lambda _: None)
        results[source or "audio"] = evaluate(model, dev, cfg, torch.device("cpu"))["ua"]
    assert results[TINY_TEXT] >= 0.9 and results["audio"] <= 0.75, results


def test_the_al_loop_refuses_a_text_branch_before_reading_anything(tmp_path):
    from jobs.after import main

    with pytest.raises(ConfigError, match="does not take a text branch"):
        main(["jobs/configs/after_smoke.yaml", f"pool_dir={tmp_path / 'none'}", f"output_dir={tmp_path / 'o'}",
              "model.text.source=tiny-text"])
    assert not (tmp_path / "o").exists()
