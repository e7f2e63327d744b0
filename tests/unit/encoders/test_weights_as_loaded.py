"""An encoder is built from the bytes its key hashes: weight files read once, so a later change on disk reaches
neither a running encoder nor its key (ser_models.encoders.loading)."""

from __future__ import annotations

import os
import shutil
import threading
import time

import pytest
import torch

from ser_models.encoders import EncoderConfig, build_encoder
from ser_models.encoders import encoder as encoder_module
from ser_models.encoders.presets import build_tiny
from ser_models.failpoints import PAUSEPOINT_DIR_ENV
from ser_models.testing import random_waveforms


def _save(folder, preset: str, seed: int | None = None) -> None:
    """A preset's weights (or, with ``seed``, other random ones of the same shapes) as a Hugging Face folder."""
    _, _, model = build_tiny(preset)
    if seed is not None:
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder)


def _last_state(encoder) -> torch.Tensor:
    wavs, lengths = random_waveforms(2, 1.0, seed=3)
    with torch.no_grad():
        return encoder(wavs, lengths).hidden_states[-1].clone()


@pytest.fixture(params=["tensors", "files"])
def keyed_by(request, monkeypatch):
    """Both ways a key names weights: the tensors (up to 20M parameters) and the files read (above)."""
    if request.param == "files":
        monkeypatch.setattr(encoder_module, "_HASH_WEIGHTS_MAX_PARAMS", 0)
    return request.param


@pytest.mark.parametrize("preset", ["tiny-wav2vec2", "tiny-whisper"])
def test_weights_copied_over_the_file_in_place_do_not_reach_a_running_encoder(tmp_path, keyed_by, preset):
    """A cp over model.safetensors (same inode) changed the features of a running job, its key unchanged: the
    loaded tensors stayed mapped to the file, and one cache mixed two models."""
    folder, other = tmp_path / "enc", tmp_path / "other"
    _save(folder, preset)
    _save(other, preset, seed=7)
    encoder = build_encoder(EncoderConfig(source=str(folder)))
    key, before = encoder.fingerprint(), _last_state(encoder)

    inode = (folder / "model.safetensors").stat().st_ino
    shutil.copyfile(other / "model.safetensors", folder / "model.safetensors")  # cp: rewritten in place
    assert (folder / "model.safetensors").stat().st_ino == inode

    torch.testing.assert_close(_last_state(encoder), before, atol=0, rtol=0)
    assert encoder.fingerprint() == key
    fresh = build_encoder(EncoderConfig(source=str(folder)))  # the next job reads the new weights, under a new key
    assert fresh.fingerprint() != key and not torch.equal(_last_state(fresh), before)


def test_weights_renamed_in_between_load_and_key_cannot_take_the_old_weights_key(tmp_path, monkeypatch):
    """New weights renamed into the folder after the load and before the key was computed gave the old weights
    the new weights' key. The test pauses the build at that moment (pause point ``encoder_loaded``), renames
    new weights in, and lets it go on."""
    monkeypatch.setattr(encoder_module, "_HASH_WEIGHTS_MAX_PARAMS", 0)  # keyed by its files, as a large encoder
    folder, new, old_copy = tmp_path / "enc", tmp_path / "new", tmp_path / "old"
    _save(folder, "tiny-wav2vec2")
    shutil.copytree(folder, old_copy)
    _save(new, "tiny-wav2vec2", seed=11)
    pauses = tmp_path / "pauses"
    pauses.mkdir()
    (pauses / "encoder_loaded.armed").touch()
    monkeypatch.setenv(PAUSEPOINT_DIR_ENV, str(pauses))

    def swap_when_paused():
        deadline = time.monotonic() + 120
        while not list(pauses.glob("encoder_loaded.*.paused")) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.replace(new / "model.safetensors", folder / "model.safetensors")
        (pauses / "encoder_loaded.released").touch()

    swapper = threading.Thread(target=swap_when_paused)
    swapper.start()
    try:
        encoder = build_encoder(EncoderConfig(source=str(folder)))
    finally:
        (pauses / "encoder_loaded.released").touch()
        swapper.join()
    monkeypatch.delenv(PAUSEPOINT_DIR_ENV)
    old = build_encoder(EncoderConfig(source=str(old_copy)))
    now = build_encoder(EncoderConfig(source=str(folder)))  # the folder holds the new weights by now
    assert encoder.portable_fingerprint() == old.portable_fingerprint() != now.portable_fingerprint()
    torch.testing.assert_close(_last_state(encoder), _last_state(old), atol=0, rtol=0)


def test_an_encoder_checkpoint_replaced_after_its_load_keeps_the_loaded_bytes_key(tmp_path, monkeypatch):
    """``model.encoder.checkpoint`` is keyed by the bytes loaded, not by the file as it is when the key is made."""
    from ser_models.encoders import save_encoder_weights

    monkeypatch.setattr(encoder_module, "_HASH_WEIGHTS_MAX_PARAMS", 0)
    _save(tmp_path / "enc", "tiny-wav2vec2")
    base = build_encoder(EncoderConfig(source=str(tmp_path / "enc")))
    save_encoder_weights(base, str(tmp_path / "a.safetensors"))
    with torch.no_grad():
        for p in base.hf_model.parameters():
            p.add_(0.01)
    save_encoder_weights(base, str(tmp_path / "b.safetensors"))
    shutil.copyfile(tmp_path / "a.safetensors", tmp_path / "ckpt.safetensors")
    cfg = EncoderConfig(source=str(tmp_path / "enc"), checkpoint=str(tmp_path / "ckpt.safetensors"))
    first = build_encoder(cfg)
    key = first.portable_fingerprint()
    shutil.copyfile(tmp_path / "b.safetensors", tmp_path / "ckpt.safetensors")
    assert first._compute_fingerprint() == key  # the key names the bytes loaded, whatever the file holds now
    assert build_encoder(cfg).portable_fingerprint() != key


def test_building_an_encoder_writes_nothing_into_its_folder(tmp_path, keyed_by):
    """The key's hash cache (.ser-hashes.json) was written into the model's folder, one the platform does not own:
    a kill during that write left its temporary file there. The folder is now only read."""
    folder = tmp_path / "enc"
    _save(folder, "tiny-wav2vec2")
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()}
    build_encoder(EncoderConfig(source=str(folder)))
    build_encoder(EncoderConfig(source=str(folder)))
    assert {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir()} == before
