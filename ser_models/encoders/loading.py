"""Loading a pretrained encoder from its files, read once: the bytes the model is built from are the bytes its
key hashes.

Hugging Face's ``from_pretrained`` maps a folder's weight files (safetensors ``mmap``): a file copied over in
place (same inode) then changes the tensors of a model that is already running, and a key computed afterwards
from the folder may name other weights than the loaded ones (new weights renamed in between). Here every file
the model is built from (``config.json``, ``preprocessor_config.json``, the weight files) is read once into
memory and hashed there (:class:`ModelFiles`); the config and the model are built from those bytes
(``safetensors.torch.load`` and ``from_pretrained(None, config=..., state_dict=...)``), and the bytes are
dropped as soon as the model holds its tensors. A later change on disk reaches neither the running model nor
its key; the next build reads the new files and gets a new key.

Memory: one encoder's weights are held twice while the model is built (the bytes, then the tensors); a 1.2 GB
model needs about 2.4 GB for that moment.
"""

from __future__ import annotations

import hashlib
import io as _bytes_io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors_bytes
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.models.whisper.modeling_whisper import WhisperEncoder

from ser_models.encoders.config import EncoderConfig
from ser_models.encoders.content_hash import MODEL_FILE_PATTERNS, file_digest, files_identity, model_files
from ser_models.encoders.presets import family_classes
from ser_models.exceptions import EncoderError

#: Weight files as ``save_pretrained`` names them (one file, or shards): safetensors first, then PyTorch's.
_SAFETENSORS = re.compile(r"model(-\d+-of-\d+)?\.safetensors")
_PYTORCH_BIN = re.compile(r"pytorch_model(-\d+-of-\d+)?\.bin")
#: The configs read with the weights (what shapes the features).
_CONFIGS = ("config.json", "preprocessor_config.json")
#: Prefixes under which Whisper checkpoints store the encoder: whole seq2seq models (``model.encoder.``),
#: audio classifiers and our importer (``encoder.``), a bare encoder (none).
_WHISPER_ENCODER_PREFIXES = ("model.encoder.", "encoder.", "")


@dataclass
class ModelFiles:
    """A model folder's files as read once.

    Attributes:
        folder: where they were read (a local folder, or the hub snapshot a hub id resolved to).
        data: the bytes of the files the model is built from (configs and weights); emptied by :meth:`release`.
        weights: the names of the weight files among them, in load order.
        digests: sha256 of every top-level file the key covers (``MODEL_FILE_PATTERNS``): of ``data`` for the
            files read, streamed for the rest (a PyTorch ``.bin`` beside the safetensors that are loaded).
    """

    folder: Path
    data: dict[str, bytes]
    weights: list[str]
    digests: dict[str, str] = field(default_factory=dict)

    def identity(self) -> str:
        """The key of these files (:func:`~ser_models.encoders.content_hash.files_identity`: the same value
        :func:`~ser_models.encoders.content_hash.hash_files` gives the folder when nothing changed)."""
        return files_identity(self.digests)

    def config_dict(self) -> dict:
        if "config.json" not in self.data:
            raise FileNotFoundError(f"{self.folder} has no config.json")
        return json.loads(self.data["config.json"])

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every tensor of the weight files (tensors in this process's memory, never mapped to a file)."""
        tensors: dict[str, torch.Tensor] = {}
        for name in self.weights:
            if name.endswith(".safetensors"):
                tensors.update(load_safetensors_bytes(self.data[name]))
            else:
                tensors.update(torch.load(_bytes_io.BytesIO(self.data[name]), map_location="cpu", weights_only=True))
        return tensors

    def release(self) -> None:
        """Drop the bytes (the model holds its own tensors by now)."""
        self.data.clear()


def read_model_files(folder: str | Path) -> ModelFiles:
    """Read the files a model is built from once into memory, and hash what was read.

    Raises:
        EncoderError: ``folder`` holds no weight files (``model*.safetensors`` or ``pytorch_model*.bin``; for a
            Whisper checkpoint any ``*.safetensors``).
        OSError: a file cannot be read.
    """
    folder = Path(folder).expanduser()
    names = model_files(folder, MODEL_FILE_PATTERNS)
    weights = ([n for n in names if _SAFETENSORS.fullmatch(n)] or [n for n in names if _PYTORCH_BIN.fullmatch(n)]
               or [n for n in names if n.endswith(".safetensors")])
    if not weights:
        raise EncoderError(f"{folder}: no weight files (model.safetensors, pytorch_model.bin or their shards)")
    read = [n for n in names if n in weights or n in _CONFIGS]
    data, digests = {}, {}
    for name in read:
        with open(folder / name, "rb") as fh:  # follows links: a hub snapshot links to its blobs
            data[name] = fh.read()
        digests[name] = hashlib.sha256(data[name]).hexdigest()
    for name in sorted(set(names) - set(read)):  # in the key, not in the model (a .bin beside safetensors)
        digests[name] = file_digest(folder / name)
    return ModelFiles(folder, data, weights, digests)


def load_pretrained(cfg: EncoderConfig) -> tuple[str, PretrainedConfig, nn.Module, str]:
    """Build the encoder ``cfg.source`` names (a local folder or a hub id) from its files, read once.

    Returns:
        ``(family, hf_config, hf_model, weights)``: ``weights`` is ``files=<key of the files read>``, what
        :meth:`~ser_models.encoders.Encoder.portable_fingerprint` hashes for an encoder above 20M parameters.

    Raises:
        EncoderError: the folder or hub id cannot be loaded (the message says how to give a local folder or
            allow a download), or its model type is not a supported family.
    """
    local = Path(cfg.source).expanduser()
    how = ("pass a local folder holding config.json and the weights as model.encoder.source, or set "
           "model.encoder.allow_download=true to fetch it from the hub")
    if not local.is_dir() and cfg.source.startswith((".", "/", "~")):
        hint = (" (import it first: python -m jobs.import_encoder smart-turn " + cfg.source + ")"
                if "smart-turn" in cfg.source else "")
        raise EncoderError(f"model.encoder.source: folder {cfg.source} does not exist{hint}")
    try:
        files = read_model_files(local if local.is_dir() else _hub_snapshot(cfg))
        config = files.config_dict()
    except Exception as exc:
        raise EncoderError(f"model.encoder.source={cfg.source!r}: cannot load its config and weights "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); {how}"
                           ) from exc
    family = {"wav2vec2": "wav2vec2", "hubert": "hubert", "wavlm": "wavlm", "whisper": "whisper"
              }.get(config.get("model_type"))
    if family is None:
        raise EncoderError(f"model.encoder.source={cfg.source!r} is a {config.get('model_type')!r} model; "
                           "supported families: wav2vec2, hubert, wavlm, whisper")
    config_cls, model_cls = family_classes(family)
    hf_config = config_cls.from_dict(config)
    hf_config.layerdrop = 0.0
    weights = f"files={files.identity()}"
    try:
        tensors = files.state_dict()
    except Exception as exc:
        raise EncoderError(f"model.encoder.source={cfg.source!r}: cannot read its weights in {files.folder} "
                           f"({type(exc).__name__}); {how}") from exc
    files.release()  # the tensors are a copy: the bytes are not needed any more
    if family == "whisper":
        return family, hf_config, _whisper_encoder(cfg, files.folder, hf_config, tensors), weights
    try:
        hf_model = model_cls.from_pretrained(None, config=hf_config, state_dict=tensors)
    except Exception as exc:
        raise EncoderError(f"model.encoder.source={cfg.source!r}: cannot load its weights "
                           f"({type(exc).__name__}); {how}") from exc
    return family, hf_config, hf_model, weights


def read_tensors(cfg: EncoderConfig) -> dict[str, torch.Tensor]:
    """Every tensor of the weight files of ``cfg.source`` (a local folder or a hub id), read once into this
    process's memory (never mapped to the files): for a model built beside the encoder from the same checkpoint
    (TAPT's pre-training heads), which a later change on disk must not reach either."""
    local = Path(cfg.source).expanduser()
    files = read_model_files(local if local.is_dir() else _hub_snapshot(cfg))
    try:
        return files.state_dict()
    finally:
        files.release()


def _hub_snapshot(cfg: EncoderConfig) -> Path:
    """The snapshot folder of the hub id ``cfg.source`` (the cached one offline; fetched with
    ``allow_download``): its configs and safetensors weights, or its PyTorch weights when it has none."""
    from huggingface_hub import snapshot_download

    offline = not cfg.allow_download
    folder = Path(snapshot_download(cfg.source, local_files_only=offline, allow_patterns=["*.json", "*.safetensors"]))
    if not any(_SAFETENSORS.fullmatch(p.name) for p in folder.iterdir()):
        folder = Path(snapshot_download(cfg.source, local_files_only=offline, allow_patterns=["*.json", "*.bin"]))
    return folder


def _whisper_encoder(cfg: EncoderConfig, folder: Path, hf_config: PretrainedConfig,
                     tensors: dict[str, torch.Tensor]) -> PreTrainedModel:
    """A ``WhisperEncoder`` holding only the encoder's tensors of a Whisper checkpoint.

    ``WhisperEncoder.from_pretrained`` does not strip the ``model.encoder.`` prefix of full Whisper checkpoints
    (it loads nothing and keeps the random init), so the encoder's tensors are picked out here, and a
    checkpoint that lacks any of them is refused.
    """
    model = WhisperEncoder(hf_config)
    expected = set(model.state_dict())
    found: dict[str, torch.Tensor] = {}
    for key, tensor in tensors.items():
        for prefix in _WHISPER_ENCODER_PREFIXES:
            if key.startswith(prefix) and key[len(prefix):] in expected:
                found[key[len(prefix):]] = tensor
                break
    missing = sorted(expected - set(found))
    if missing:
        raise EncoderError(f"model.encoder.source={cfg.source!r}: the checkpoint in {folder} lacks "
                           f"{len(missing)} Whisper encoder tensors, e.g. {missing[:4]}")
    try:
        model.load_state_dict(found, strict=True)
    except RuntimeError as exc:
        raise EncoderError(f"model.encoder.source={cfg.source!r}: {str(exc).splitlines()[0]}") from exc
    return model


__all__ = ["ModelFiles", "load_pretrained", "read_model_files", "read_tensors"]
