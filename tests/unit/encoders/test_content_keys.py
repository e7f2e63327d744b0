"""An encoder is keyed by content: its weight files hashed (each file's sha256 cached beside it by size, mtime
and inode), a hub id by its resolved revision, never by its path; the feature code's version enters every key."""

from __future__ import annotations

import io
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from types import SimpleNamespace

import huggingface_hub.constants
import pytest
import torch
from transformers import Wav2Vec2Config, Wav2Vec2Model

from ser_models.encoders import EncoderConfig, build_encoder, content_hash
from ser_models.encoders import encoder as encoder_module
from ser_models.encoders.content_hash import SIDECAR_NAME, clear_memo, hash_files
from ser_models.encoders.encoder import _HASH_WEIGHTS_MAX_PARAMS, Encoder
from ser_models.encoders.presets import build_tiny
from ser_models.scoring.cache_keys import feature_cache_key


@pytest.fixture
def hashed():
    """The files read and hashed from now on (this process's memory of earlier hashes is forgotten first)."""
    clear_memo()
    content_hash.HASHED.clear()
    return content_hash.HASHED


@pytest.fixture
def files_always(monkeypatch):
    """Every encoder counts as large: its weight files are hashed (as above 20M parameters)."""
    monkeypatch.setattr(encoder_module, "_HASH_WEIGHTS_MAX_PARAMS", 0)


def _save(folder, preset: str = "tiny-wav2vec2", seed: int | None = None) -> None:
    """A preset's weights (or, with ``seed``, other random ones) saved as a Hugging Face folder."""
    _, _, model = build_tiny(preset)
    if seed is not None:
        torch.manual_seed(seed)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01 * torch.randn_like(p))
    model.save_pretrained(folder)


def test_a_large_encoders_key_follows_new_weights_saved_into_its_folder(tmp_path, hashed):
    """The issue's repro, at the real threshold: above 20M parameters the key hashed the folder's path, so new
    weights saved into the same folder kept it (and every run read the old model's cached features)."""
    config = Wav2Vec2Config(hidden_size=1024, num_hidden_layers=1, num_attention_heads=16, intermediate_size=4096,
                            conv_dim=(32, 32, 32, 32), conv_stride=(5, 4, 4, 4), conv_kernel=(10, 8, 4, 4))
    folder = tmp_path / "w2v-large"
    torch.manual_seed(0)
    Wav2Vec2Model(config).save_pretrained(folder)
    first = build_encoder(EncoderConfig(source=str(folder)))
    assert sum(p.numel() for p in first.hf_model.parameters()) > _HASH_WEIGHTS_MAX_PARAMS
    assert not (folder / SIDECAR_NAME).exists()  # the folder is the person's: keyed as read, nothing written there
    torch.manual_seed(1)
    Wav2Vec2Model(config).save_pretrained(folder)  # same names, same sizes, new weights
    second = build_encoder(EncoderConfig(source=str(folder)))
    assert second.fingerprint() != first.fingerprint()
    assert second.portable_fingerprint() != first.portable_fingerprint()
    assert second.fingerprint() == build_encoder(EncoderConfig(source=str(folder))).fingerprint()


def test_a_moved_or_copied_folder_keeps_its_key(tmp_path, files_always, hashed):
    _save(tmp_path / "a" / "enc")
    before = build_encoder(EncoderConfig(source=str(tmp_path / "a" / "enc")))
    shutil.move(tmp_path / "a" / "enc", tmp_path / "b")
    clear_memo()
    hashed.clear()
    moved = build_encoder(EncoderConfig(source=str(tmp_path / "b")))
    assert (moved.fingerprint(), moved.portable_fingerprint()) == (before.fingerprint(), before.portable_fingerprint())
    shutil.copytree(tmp_path / "b", tmp_path / "c")  # new inodes and times, same content
    assert build_encoder(EncoderConfig(source=str(tmp_path / "c"))).fingerprint() == before.fingerprint()
    assert not any((tmp_path / d / SIDECAR_NAME).exists() for d in ("b", "c"))


def test_a_small_encoder_from_a_folder_is_keyed_by_its_tensors_as_before(tmp_path, hashed):
    """Up to 20M parameters the tensors are hashed (their fingerprint is the preset's, wherever they live)."""
    _save(tmp_path / "enc")
    from_folder = build_encoder(EncoderConfig(source=str(tmp_path / "enc")))
    assert from_folder.portable_fingerprint() == build_encoder(EncoderConfig(source="tiny-wav2vec2")).portable_fingerprint()
    assert hashed == [] and not (tmp_path / "enc" / SIDECAR_NAME).exists()
    _save(tmp_path / "enc", seed=3)
    assert build_encoder(EncoderConfig(source=str(tmp_path / "enc"))).fingerprint() != from_folder.fingerprint()


def test_the_sidecar_spares_the_second_read_and_is_never_hashed(tmp_path, hashed):
    (tmp_path / "model.safetensors").write_bytes(os.urandom(1 << 20))
    (tmp_path / "config.json").write_text('{"a": 1}')
    (tmp_path / "README.md").write_text("not a model file")
    first = hash_files(tmp_path)
    assert sorted(os.path.basename(h) for h in hashed) == ["config.json", "model.safetensors"]
    assert (tmp_path / SIDECAR_NAME).is_file()
    sidecar = (tmp_path / SIDECAR_NAME).read_bytes()
    clear_memo()
    hashed.clear()
    assert hash_files(tmp_path) == first
    assert hashed == []  # every sha256 came from the sidecar
    assert (tmp_path / SIDECAR_NAME).read_bytes() == sidecar  # unchanged entries: not rewritten
    # Its own name never counts: hashing the folder without the sidecar gives the same value.
    (tmp_path / SIDECAR_NAME).unlink()
    clear_memo()
    assert hash_files(tmp_path, cache=False) == first and not (tmp_path / SIDECAR_NAME).exists()


def test_a_file_rewritten_in_place_with_the_same_size_is_hashed_again(tmp_path, hashed):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 4096)
    first = hash_files(tmp_path)
    st = weights.stat()
    with open(weights, "r+b") as fh:  # same inode, same size, other bytes
        fh.write(b"b" * 4096)
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    clear_memo()
    hashed.clear()
    second = hash_files(tmp_path)
    assert second != first and [os.path.basename(h) for h in hashed] == ["model.safetensors"]
    # Replaced by a rename with its old size and mtime: a new inode, hashed again.
    tmp = tmp_path / ".incoming"
    tmp.write_bytes(b"c" * 4096)
    os.utime(tmp, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns))
    os.replace(tmp, weights)
    clear_memo()
    hashed.clear()
    assert hash_files(tmp_path) not in (first, second) and len(hashed) == 1


def test_a_folder_that_cannot_be_written_is_hashed_quietly_once_per_process(tmp_path, monkeypatch, hashed):
    (tmp_path / "model.bin").write_bytes(os.urandom(4096))
    expected = hash_files(tmp_path, cache=False)
    clear_memo()
    hashed.clear()

    def read_only(*_a, **_k):
        raise PermissionError(13, "Read-only file system")

    monkeypatch.setattr(content_hash, "write_json_atomic", read_only)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        assert hash_files(tmp_path) == expected
        assert hash_files(tmp_path) == expected
    assert out.getvalue() == err.getvalue() == ""
    assert len(hashed) == 1 and not (tmp_path / SIDECAR_NAME).exists()


def test_a_sidecar_that_does_not_parse_is_ignored_and_rewritten(tmp_path, hashed):
    (tmp_path / "model.safetensors").write_bytes(b"x" * 100)
    expected = hash_files(tmp_path, cache=False)
    (tmp_path / SIDECAR_NAME).write_text('{"format": 1, "files": {"model.safetensors": {"sha256": "0"}}}')
    clear_memo()
    assert hash_files(tmp_path) == expected
    assert '"inode"' in (tmp_path / SIDECAR_NAME).read_text()


def _fake_hub_snapshot(cache, repo: str, commit: str, seed: int | None = None):
    """A Hugging Face cache holding ``repo`` at ``commit`` (refs/main points to it), as a download leaves it."""
    root = cache / f"models--{repo.replace('/', '--')}"
    _save(root / "snapshots" / commit, seed=seed)
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    return root / "snapshots" / commit


def test_a_hub_id_is_keyed_by_the_files_of_the_snapshot_it_resolved_to(tmp_path, monkeypatch, files_always):
    """transformers 5 no longer sets the config's ``_commit_hash``: the cached snapshot's files are hashed."""
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    snapshot = _fake_hub_snapshot(cache, "org/tiny", "a" * 40)
    hub = build_encoder(EncoderConfig(source="org/tiny"))
    assert hub.portable_fingerprint() == build_encoder(EncoderConfig(source=str(snapshot))).portable_fingerprint()
    _fake_hub_snapshot(cache, "org/tiny", "b" * 40, seed=5)  # a new revision, now main
    assert build_encoder(EncoderConfig(source="org/tiny")).fingerprint() != hub.fingerprint()


def test_a_hub_config_carrying_its_commit_is_keyed_by_it(monkeypatch, files_always):
    family, hf_config, hf_model = build_tiny("tiny-wav2vec2")
    cfg = EncoderConfig(source="org/not-in-the-cache", normalize_waveform=True)

    def at(commit):
        hf_config._commit_hash = commit
        return Encoder(cfg, family, hf_config, hf_model)

    first = at("1" * 40)
    assert first.portable_fingerprint() == at("1" * 40).portable_fingerprint()
    assert at("2" * 40).portable_fingerprint() != first.portable_fingerprint()


def test_the_feature_code_version_enters_the_fingerprint_and_every_feature_cache_key(monkeypatch):
    pool = SimpleNamespace(lineage="pool-lineage")
    before = build_encoder(EncoderConfig(source="tiny-wav2vec2"))
    key = feature_cache_key(pool, before)
    monkeypatch.setattr(encoder_module, "FEATURE_CODE_VERSION", encoder_module.FEATURE_CODE_VERSION + 1)
    after = build_encoder(EncoderConfig(source="tiny-wav2vec2"))
    assert after.portable_fingerprint() == before.portable_fingerprint()  # the same weights: checkpoints find them
    assert after.fingerprint() != before.fingerprint()
    assert feature_cache_key(pool, after) != key
    # The key holds the version itself, too (a fingerprint that did not would still change the key).
    monkeypatch.setattr(after, "fingerprint", before.fingerprint)
    assert feature_cache_key(pool, after) != key


def _fingerprint_of_version_0_1(enc: Encoder, folder) -> str:
    """The portable fingerprint version 0.1 gave a large encoder loaded from ``folder`` (its top-level
    ``*.json``, ``*.safetensors`` and ``*.bin`` by name and bytes; the folder held no hash sidecar then), as
    checkpoints saved then record it."""
    import hashlib
    import json
    from pathlib import Path

    h = hashlib.sha256()
    conf = {k: v for k, v in enc.hf_config.to_dict().items() if k not in encoder_module._VOLATILE_CONFIG_KEYS}
    h.update(json.dumps(conf, sort_keys=True, default=str).encode())
    h.update(f"family={enc.family};normalize={enc.normalize_waveform}".encode())
    for file in sorted(f for p in ("*.json", "*.safetensors", "*.bin") for f in Path(folder).glob(p)
                       if f.name != SIDECAR_NAME):
        h.update(f"file={file.name}".encode())
        h.update(file.read_bytes())
    return h.hexdigest()


def test_a_checkpoint_saved_by_version_0_1_still_finds_its_large_encoder(tmp_path, files_always, hashed):
    """Checkpoints record the encoder's fingerprint; the new content key must not orphan those saved before it."""
    _save(tmp_path / "enc")
    enc = build_encoder(EncoderConfig(source=str(tmp_path / "enc")))
    (tmp_path / "enc" / SIDECAR_NAME).write_text("{}")  # an earlier version's sidecar: version 0.1 never saw it
    old = _fingerprint_of_version_0_1(enc, tmp_path / "enc")
    assert old != enc.portable_fingerprint() and old in enc.legacy_fingerprints()
    _save(tmp_path / "other", seed=3)
    assert old not in build_encoder(EncoderConfig(source=str(tmp_path / "other"))).legacy_fingerprints()
    # New weights saved over the folder after the encoder was built from it: the old key names the new files,
    # not the weights this encoder holds, so it is not offered.
    _save(tmp_path / "enc", seed=4)
    assert _fingerprint_of_version_0_1(enc, tmp_path / "enc") not in enc.legacy_fingerprints()


def test_file_digest_of_a_local_file_is_its_sha256_read_once(tmp_path, hashed):
    import hashlib

    path = tmp_path / "model.safetensors"
    path.write_bytes(b"weights")
    want = hashlib.sha256(b"weights").hexdigest()
    assert content_hash.file_digest(path) == want
    assert hashed == [str(path)]
    assert content_hash.file_digest(f"file://{path}") == want and hashed == [str(path)]  # remembered


def _uri_store(monkeypatch, root):
    """``store://<path>`` URIs served from ``root`` by a pyarrow file system (a bucket without a network)."""
    import pyarrow.fs as pafs

    def filesystem(uri):
        scheme, rest = str(uri).split("://", 1)
        assert scheme == "store"
        return pafs.SubTreeFileSystem(str(root), pafs.LocalFileSystem()), rest.rstrip("/")

    monkeypatch.setattr(content_hash, "filesystem", filesystem)


def test_a_folder_behind_a_uri_is_hashed_by_its_matching_files(tmp_path, monkeypatch, hashed):
    import hashlib

    folder = tmp_path / "models" / "encX"
    (folder / "sub.bin").mkdir(parents=True)  # a folder whose name matches: not a file, skipped
    (folder / "config.json").write_bytes(b"{}")
    (folder / "model.safetensors").write_bytes(b"w")
    (folder / ".hidden.bin").write_bytes(b"h")
    (folder / "notes.txt").write_bytes(b"n")
    _uri_store(monkeypatch, tmp_path)
    want = hashlib.sha256(b"ser-files-v1\n" + f"config.json\0{hashlib.sha256(b'{}').hexdigest()}\n".encode()
                          + f"model.safetensors\0{hashlib.sha256(b'w').hexdigest()}\n".encode()).hexdigest()
    assert hash_files("store://models/encX/") == want
    assert sorted(hashed) == ["store://models/encX/config.json", "store://models/encX/model.safetensors"]
    assert hash_files(folder, cache=False) == want  # the same folder, local: the same key
    hashed.clear()
    assert content_hash.file_digest("store://models/encX/config.json") == hashlib.sha256(b"{}").hexdigest()
    assert hashed == ["store://models/encX/config.json"]
    with pytest.raises(FileNotFoundError) as err:
        hash_files("store://models/nothing")
    assert str(err.value) == "store://models/nothing is not a folder"


def _key_by_source_alone(enc: Encoder) -> str:
    """The key the first versions gave an encoder above 20M parameters: its config and its ``source`` string."""
    import hashlib
    import json

    h = hashlib.sha256()
    conf = {k: v for k, v in enc.hf_config.to_dict().items() if k not in encoder_module._VOLATILE_CONFIG_KEYS}
    h.update(json.dumps(conf, sort_keys=True, default=str).encode())
    h.update(f"family={enc.family};normalize={enc.normalize_waveform}".encode())
    h.update(f"source={enc.cfg.source}".encode())
    return h.hexdigest()


def test_a_checkpoint_keyed_by_a_hub_id_alone_is_refused_until_its_weights_are_recorded(tmp_path, monkeypatch,
                                                                                       files_always):
    """A checkpoint saved before content keys, over a hub-id encoder above 20M parameters, loaded over whatever
    weights the hub id resolved to now: its key named the id, not the weights."""
    import json

    from ser_models.exceptions import EncoderMismatchError
    from ser_models.models.model import EmotionModel
    from ser_models.testing import tiny_model_config

    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    _fake_hub_snapshot(cache, "org/tiny", "a" * 40)
    model = EmotionModel(tiny_model_config(source="org/tiny"))
    ckpt = tmp_path / "ckpt"
    model.save_checkpoint(str(ckpt))
    _fake_hub_snapshot(cache, "org/tiny", "b" * 40, seed=5)  # the id now resolves to other weights
    meta = json.loads((ckpt / "model.json").read_text())
    del meta["encoder"]  # as the first versions wrote it: the encoder named by its source alone
    meta["encoder_fingerprint"] = _key_by_source_alone(model.encoder)
    (ckpt / "model.json").write_text(json.dumps(meta))
    with pytest.raises(EncoderMismatchError, match="names its encoder by this source alone") as err:
        EmotionModel.load_checkpoint(str(ckpt))
    now = build_encoder(EncoderConfig(source="org/tiny")).portable_fingerprint()
    assert now in str(err.value) and str(ckpt / "model.json") in str(err.value)
    meta["encoder"] = {"fingerprint": now}  # what the message says to do, for weights one knows are the same
    (ckpt / "model.json").write_text(json.dumps(meta))
    assert EmotionModel.load_checkpoint(str(ckpt)).encoder.portable_fingerprint() == now
