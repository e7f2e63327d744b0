"""The ``Encoder`` contract over Hugging Face speech models (wav2vec2, HuBERT, WavLM; Whisper in ``whisper.py``).

An encoder maps padded 16 kHz waveforms to *all* hidden states (CNN projection + every transformer layer),
so that a featurizer can pick a layer or learn a weighted sum (SUPERB/s3prl style) and layer-wise analyses
can read any layer.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from ser_models.encoders.config import EncoderConfig
from ser_models.encoders.content_hash import (
    MODEL_FILE_PATTERNS,
    SIDECAR_NAME,
    file_digest,
    files_identity,
    hash_files,
)
from ser_models.encoders.preprocessing import resolve_normalize_waveform
from ser_models.encoders.presets import TINY_PRESETS
from ser_models.exceptions import CheckpointError, EncoderError
from ser_models.heads.pooling import frame_mask
from ser_models.io import filesystem, read_bytes, write_bytes_atomic

#: 16 kHz input / total conv stride 320.
FRAME_RATE = 50.0
SAMPLE_RATE = 16_000
#: Version of the code that turns audio into features: waveform preparation, the padding-aware front end, the
#: hidden states and their pooling (``masked_mean``). It enters every encoder :meth:`~Encoder.fingerprint`, and
#: so every feature-cache key: bump it with any change that alters a clip's features, and regenerate
#: ``tests/unit/encoders/golden_features.json`` (``SER_REGENERATE_GOLDEN=1``), which fails until you do.
FEATURE_CODE_VERSION = 1
#: Up to this many weights the fingerprint hashes every tensor (every tiny preset, Smart Turn's Whisper-tiny:
#: milliseconds); above it, the files the weights came from (see :meth:`Encoder.portable_fingerprint`).
_HASH_WEIGHTS_MAX_PARAMS = 20_000_000
# Keys of HF configs that say where a model came from, not what it computes.
_VOLATILE_CONFIG_KEYS = ("_name_or_path", "transformers_version", "_commit_hash", "_attn_implementation",
                         "_attn_implementation_autoset", "torch_dtype", "dtype", "architectures")


@dataclass
class EncoderOutput:
    """What an encoder returns.

    Attributes:
        hidden_states: L tensors ``[B, F, D]``; index 0 is the CNN projection (after the positional conv),
            index i the output of transformer layer i. Frames at or beyond ``frame_lengths[b]`` are padding.
        frame_lengths: ``[B]`` int64 valid frames per clip (conv length formula of the model).
    """

    hidden_states: tuple[torch.Tensor, ...]
    frame_lengths: torch.Tensor


class Encoder(nn.Module):
    """A pretrained speech encoder returning all hidden states, padding-aware.

    Args:
        cfg: the encoder config (kept as ``self.cfg``).
        family: ``"wav2vec2"`` | ``"hubert"`` | ``"wavlm"`` | ``"whisper"`` (built as ``WhisperSpeechEncoder``).
        hf_config: the HF config (``layerdrop`` forced to 0).
        hf_model: the HF base model (``Wav2Vec2Model``, ``HubertModel`` or ``WavLMModel``).

    Build one with :func:`build_encoder`. ``hf_config`` and ``hf_model`` are public so that TAPT can build
    ``Wav2Vec2ForPreTraining(encoder.hf_config)`` and copy the encoder weights into it.
    """

    def __init__(self, cfg: EncoderConfig, family: str, hf_config: PretrainedConfig, hf_model: PreTrainedModel, *,
                 weights: str | None = None, checkpoint_digest: str | None = None):
        super().__init__()
        # What the weights were loaded from, hashed as read (ser_models.encoders.loading): a large encoder's key
        # names exactly those bytes, whatever is on disk by now. None: found from the source (a direct build).
        self._weights, self._checkpoint_digest = weights, checkpoint_digest
        self.cfg = cfg
        self.family = family
        self.hf_config = hf_config
        self.hf_model = hf_model
        self.frame_rate = FRAME_RATE
        # Resolved once: `auto` reads the source's preprocessor_config.json (the tiny presets follow their family).
        self.normalize_waveform, self.normalize_reason = resolve_normalize_waveform(
            cfg.normalize_waveform, family, None if cfg.source in TINY_PRESETS else cfg.source, cfg.allow_download)
        # Hashed now, before adapters are injected or weights train: it names the *base* weights that a
        # trainable-only checkpoint or a feature cache was computed over.
        self._base_params = sum(p.numel() for p in hf_model.parameters())
        self._portable_fingerprint = self._compute_fingerprint()
        self._fingerprint = hashlib.sha256(
            f"{self._portable_fingerprint};feature_code={FEATURE_CODE_VERSION}".encode()).hexdigest()

    @property
    def num_layers(self) -> int:
        """L: number of hidden states returned (transformer layers + 1 for the CNN projection); fewer after
        :meth:`limit_depth`."""
        return getattr(self, "_states", None) or int(self.hf_config.num_hidden_layers) + 1

    def limit_depth(self, states: int) -> bool:
        """From now on compute only hidden states ``0 .. states - 1``, each exactly as the whole encoder computes
        it, and skip the layers above (a feature cache that needs one early layer). Encoding only.

        Returns:
            Whether this family can stop early; where it cannot (this base: the wav2vec2 family, whose last
            state may pass a closing layer norm), every state is still computed and the call changes nothing.
        """
        return False

    @property
    def hidden_size(self) -> int:
        """D: width of every hidden state."""
        return int(self.hf_config.hidden_size)

    @property
    def min_samples(self) -> int:
        """Shortest clip (16 kHz samples) that yields at least one frame."""
        n = 1
        for kernel, stride in reversed(list(zip(self.hf_config.conv_kernel, self.hf_config.conv_stride))):
            n = (n - 1) * stride + kernel
        return n

    def frame_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` valid frames for ``[B]`` valid samples (the model's own conv formula)."""
        return self.hf_model._get_feat_extract_output_lengths(lengths.long()).long()

    def prepare_inputs(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise and mask padded waveforms as the HF feature extractors do.

        Args:
            wavs: ``[B, T]`` float waveforms at 16 kHz, zero- or garbage-padded after ``lengths``.
            lengths: ``[B]`` valid samples per clip.

        Returns:
            ``(input_values [B, T] float32, attention_mask [B, T] int64)``: padding is set to 0 and, when
            :attr:`normalize_waveform` (``model.encoder.normalize_waveform`` resolved for this model), each clip
            is standardised over its valid samples only (so padding does not shift its statistics).

        Raises:
            EncoderError: on shape mismatches or clips shorter than :attr:`min_samples`.
        """
        if wavs.dim() != 2:
            raise EncoderError(f"wavs must be [B, T], got shape {tuple(wavs.shape)}")
        lengths = torch.as_tensor(lengths, device=wavs.device).long()
        if lengths.shape != (wavs.shape[0],):
            raise EncoderError(f"lengths must be [B]={wavs.shape[0]}, got shape {tuple(lengths.shape)}")
        shortest, longest = torch.stack([lengths.min(), lengths.max()]).tolist()  # one host sync, not two
        if longest > wavs.shape[1]:
            raise EncoderError(f"a length ({longest}) exceeds the padded width {wavs.shape[1]}")
        if shortest < self.min_samples:
            raise EncoderError(f"clip of {shortest} samples is shorter than the encoder's receptive "
                               f"field ({self.min_samples} samples at 16 kHz); drop or pad such clips")
        mask = torch.arange(wavs.shape[1], device=wavs.device)[None, :] < lengths[:, None]
        x = wavs.float() * mask
        if self.normalize_waveform:
            n = lengths[:, None].to(x.dtype)
            mean = x.sum(1, keepdim=True) / n
            var = ((x - mean) * mask).pow(2).sum(1, keepdim=True) / n
            x = (x - mean) / torch.sqrt(var + 1e-7) * mask
        return x, mask.long()

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor) -> EncoderOutput:
        """Encode a padded batch.

        Args:
            wavs: ``[B, T]`` float32 waveforms at 16 kHz.
            lengths: ``[B]`` valid samples per clip.

        Returns:
            :class:`EncoderOutput` with L = :attr:`num_layers` hidden states ``[B, F, D]``.
        """
        input_values, attention_mask = self.prepare_inputs(wavs, lengths)
        with warnings.catch_warnings(), self._padding_aware_front_end(input_values, attention_mask):
            # WavLM hands torch's MHA a float bias and a bool padding mask; torch warns, the result is right.
            warnings.filterwarnings("ignore", message=".*mismatched key_padding_mask.*")
            out = self.hf_model(input_values, attention_mask=attention_mask, output_hidden_states=True)
        hidden = tuple(out.hidden_states)
        if len(hidden) != self.num_layers:
            raise EncoderError(f"encoder returned {len(hidden)} hidden states, expected {self.num_layers}; "
                               "is layerdrop > 0 in the model's config?")
        return EncoderOutput(hidden_states=hidden, frame_lengths=self.frame_lengths(attention_mask.sum(1)))

    @property
    def group_norm_front_end(self) -> bool:
        """Whether the CNN front end starts with a group norm over time (``feat_extract_norm="group"``:
        wav2vec2-base, HuBERT-base, WavLM base / base+), which :meth:`forward` computes as each clip gets it alone."""
        return getattr(self.hf_config, "feat_extract_norm", None) == "group"

    @contextlib.contextmanager
    def _padding_aware_front_end(self, input_values: torch.Tensor, attention_mask: torch.Tensor):
        """While open, ``hf_model.feature_extractor`` returns :meth:`_front_end` of ``input_values`` (group-norm
        front ends only; a no-op otherwise).

        The rest of ``hf_model``'s forward runs as Hugging Face wrote it: the frame mask, SpecAugment in
        training, the positional convolution (HF zeroes padded frames before it, so they do not leak into
        valid ones) and the masked attention, with any adapter or prompt hooks. Only the feature extractor's
        output is replaced, for this one call (TAPT calls ``hf_model`` with HF's own front end).
        """
        if not self.group_norm_front_end:
            yield
            return
        extractor = self.hf_model.feature_extractor
        features = self._front_end(input_values, attention_mask.sum(1))
        extractor.forward = lambda _input_values: features  # an instance attribute shadows the class's forward
        try:
            yield
        finally:
            del extractor.forward

    #: Run the group-norm front end batched, with each clip's norm over its own frames (True), or clip by clip
    #: (False); None = batched on CUDA only. Both are exact; which is faster depends on the device.
    batched_front_end: bool | None = None

    def _front_end(self, input_values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The CNN feature extractor of a group-norm model, as each clip gets it alone, unpadded.

        HF's front end normalises every channel of the first conv layer over the whole padded time axis, so a
        clip's features change with the length of the longest clip in its batch (0.8 relative for a clip next
        to one three times longer). HF's advice for these models is to batch without padding. Two exact ways
        are kept, one per device (:attr:`batched_front_end`):

        * **clip by clip** (CPU): each clip goes through ``hf_model.feature_extractor`` (HF's own modules, with
          any hooks on them) alone, on its valid samples. The cheapest on a CPU (bench/results/bucketing.md):
          0.94x-1.04x the time of one clip at a time at 8 clips per forward, where the batched way took
          1.11x-1.15x (padded convolutions, and copies of the model's largest activation, ``[B, 512, T/5]``).
          Its peak memory is one clip's.
        * **batched** (CUDA, :meth:`_front_end_batched`): the convolutions run on the padded batch and the
          first layer's norm takes each clip's statistics over its own valid frames. Clip by clip, a GPU runs
          seven small convolutions per clip one after another, each of a shape it has not seen (clip lengths
          rarely repeat): more than half of a scoring pass on an H200 (bench/results/gpu_scorer_profile.txt).

        Equal-length buckets, HF's other advice, would be single clips: real clips almost never share a length.
        The frame sequences are then zero-padded and the transformer runs batched under the frame mask.

        Args:
            input_values: ``[B, T]`` from :meth:`prepare_inputs` (zero after each clip's length).
            lengths: ``[B]`` valid samples.

        Returns:
            ``[B, C, F]``, as ``hf_model.feature_extractor`` returns for the padded batch (``F`` frames of ``T``
            samples; frames past a clip's own are zero).
        """
        batched = self.batched_front_end
        if batched is None:
            batched = input_values.device.type == "cuda"
        if batched:
            return self._front_end_batched(input_values, lengths)
        extractor = self.hf_model.feature_extractor
        width = int(self.hf_model._get_feat_extract_output_lengths(torch.tensor(input_values.shape[1])))
        clips = [extractor(input_values[b:b + 1, :n]) for b, n in enumerate(lengths.tolist())]  # [1, C, F_b] each
        return torch.cat([nn.functional.pad(c, (0, width - c.shape[-1])) for c in clips])

    def _front_end_batched(self, input_values: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """:meth:`_front_end` with the convolutions batched: the first layer's group norm (one group per
        channel) takes each clip's mean and variance over its own valid frames, in float32 as ``GroupNorm``
        runs under autocast. The convolutions have no padding, so a clip's valid output frames read only its
        valid samples; frames past them are zeroed at the end.

        Calls the first layer's ``conv`` and ``activation`` and every later layer as modules (their hooks
        run); the first layer's ``layer_norm`` is applied from its weights.

        Args:
            input_values: ``[B, T]``; lengths: ``[B]`` valid samples.

        Returns:
            ``[B, C, F]`` (C = 512 for the base models; F frames of T samples).
        """
        extractor = self.hf_model.feature_extractor
        first, *rest = extractor.conv_layers
        hidden = first.conv(input_values[:, None])  # [B, C, F0]
        kernel, stride = first.conv.kernel_size[0], first.conv.stride[0]
        frames0 = torch.div(lengths.to(hidden.device) - kernel, stride, rounding_mode="floor") + 1
        valid = frame_mask(frames0, hidden.shape[-1])[:, None]  # [B, 1, F0]
        count = frames0.clamp_min(1)[:, None, None].to(torch.float32)
        h = hidden.float()
        mean = (h * valid).sum(-1, keepdim=True) / count
        var = (((h - mean) * valid) ** 2).sum(-1, keepdim=True) / count
        norm = first.layer_norm
        h = (h - mean) * torch.rsqrt(var + norm.eps) * norm.weight.float()[None, :, None] \
            + norm.bias.float()[None, :, None]
        hidden = first.activation(h)
        for layer in rest:
            hidden = layer(hidden)
        frames = self.hf_model._get_feat_extract_output_lengths(lengths).to(hidden.device)
        return hidden * frame_mask(frames, hidden.shape[-1])[:, None].to(hidden.dtype)

    def fingerprint(self) -> str:
        """sha256 (hex) naming the features this encoder computes: :meth:`portable_fingerprint` (its config and
        weights, by content) and :data:`FEATURE_CODE_VERSION` (the code that computes them). What names a
        feature cache and a checkpoint's ``encoder_fingerprint``.

        Stable across processes and folder moves. Computed when the encoder is built, before adapters are
        injected.
        """
        return self._fingerprint

    def portable_fingerprint(self) -> str:
        """sha256 (hex) naming the base encoder by content alone, wherever its files live: what a checkpoint's
        encoder reference records, so a bump of :data:`FEATURE_CODE_VERSION` still finds the weights.

        It hashes the HF config (without the keys that say where it came from), the family, the resolved
        waveform normalisation, and the weights:

        * up to 20M parameters (every tiny preset, Smart Turn's Whisper-tiny), every tensor as loaded
          (``cfg.checkpoint`` included);
        * above, the files they came from: a local folder's ``*.safetensors``, ``*.bin``, ``config.json`` and
          ``preprocessor_config.json`` by name and bytes (:func:`~ser_models.encoders.content_hash.hash_files`,
          each file's sha256 cached beside it in ``.ser-hashes.json`` by size, mtime and inode); a hub id's
          resolved revision (the config's ``_commit_hash`` where transformers sets it; transformers 5 does
          not, so the files of the cached snapshot folder it resolved to are hashed as a folder's are); plus the
          bytes of ``cfg.checkpoint``.

        Never a path: a moved folder keeps its fingerprint, and new weights saved into the same folder change it.
        """
        return self._portable_fingerprint

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        conf = {k: v for k, v in self.hf_config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(conf, sort_keys=True, default=str).encode())
        h.update(f"family={self.family};normalize={self.normalize_waveform}".encode())
        # _base_params: counted at build, before adapters add any.
        weights = None
        if self._base_params > _HASH_WEIGHTS_MAX_PARAMS:
            weights = self._weights or self._weight_files_identity()
        if weights is None:  # every tensor as loaded (cfg.checkpoint included)
            for name, tensor in sorted(self.hf_model.state_dict().items()):
                h.update(name.encode())
                h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
            return h.hexdigest()
        h.update(weights.encode())
        if self.cfg.checkpoint:
            h.update(f";checkpoint={self._checkpoint_digest or file_digest(self.cfg.checkpoint)}".encode())
        return h.hexdigest()

    def legacy_fingerprints(self) -> set[str]:
        """The fingerprints earlier versions gave these weights by content, which checkpoints they saved still
        record: up to 20M parameters, :meth:`portable_fingerprint`; above, version 0.1's portable fingerprint
        (its config and the bytes of its folder's top-level ``*.json``, ``*.safetensors`` and ``*.bin`` files
        and of ``cfg.checkpoint``), offered only while those files still hold the bytes this encoder was built
        from. Computed on demand (a checkpoint that records the current fingerprint never needs them).

        An even older key named a large encoder by its ``source`` string alone (a path or a hub id): it names
        no weights, so it is never accepted (:meth:`named_only_fingerprints` tells it apart for messages)."""
        if self._base_params <= _HASH_WEIGHTS_MAX_PARAMS:
            return {self._portable_fingerprint}
        folder = Path(self.cfg.source).expanduser()
        if not folder.is_dir():
            return set()
        h = self._legacy_hash()
        digests = {}
        # the folder as that version saw it: without the hash sidecar this version writes there
        for file in sorted(f for p in ("*.json", "*.safetensors", "*.bin") for f in folder.glob(p)
                           if f.name != SIDECAR_NAME):
            h.update(f"file={file.name}".encode())
            d = hashlib.sha256()
            with open(file, "rb") as fh:
                while chunk := fh.read(1 << 24):
                    h.update(chunk)
                    d.update(chunk)
            digests[file.name] = d.hexdigest()
        if self._weights is not None and self._weights != "files=" + files_identity(
                {n: d for n, d in digests.items() if any(fnmatch.fnmatchcase(n, p) for p in MODEL_FILE_PATTERNS)}):
            return set()  # the folder changed since this encoder was built from it: its old key is not these weights
        if self.cfg.checkpoint:
            data = read_bytes(self.cfg.checkpoint)
            if self._checkpoint_digest is not None and hashlib.sha256(data).hexdigest() != self._checkpoint_digest:
                return set()
            h.update(data)
        return {h.hexdigest()}

    def named_only_fingerprints(self) -> set[str]:
        """The keys the first versions gave an encoder above 20M parameters: its config, its ``source`` string
        (a path or a hub id) and the bytes of ``cfg.checkpoint``. They name a place, not weights (a hub id
        resolves to whatever revision is current), so no checkpoint is loaded on them; a refusal names them."""
        if self._base_params <= _HASH_WEIGHTS_MAX_PARAMS:
            return set()
        h = self._legacy_hash()
        h.update(f"source={self.cfg.source}".encode())
        if self.cfg.checkpoint:
            h.update(read_bytes(self.cfg.checkpoint))
        return {h.hexdigest()}

    def _legacy_hash(self):
        h = hashlib.sha256()
        conf = {k: v for k, v in self.hf_config.to_dict().items() if k not in _VOLATILE_CONFIG_KEYS}
        h.update(json.dumps(conf, sort_keys=True, default=str).encode())
        h.update(f"family={self.family};normalize={self.normalize_waveform}".encode())
        return h

    def _weight_files_identity(self) -> str | None:
        """What names a large encoder's weights by content: ``files=<hash_files of its folder>`` (a local folder,
        or a hub id's cached snapshot), ``revision=<commit>`` (a hub config carrying ``_commit_hash``), or None
        when neither is found (the tensors are hashed then)."""
        folder = Path(self.cfg.source).expanduser()
        if folder.is_dir():
            return f"files={hash_files(folder, cache=False)}"  # a person's folder: nothing written there
        commit = getattr(self.hf_config, "_commit_hash", None)
        if commit:
            return f"revision={commit}"
        snapshot = _hub_snapshot(self.cfg.source)
        if snapshot is not None:
            return f"files={hash_files(snapshot, cache=False)}"
        print(f"model.encoder.source={self.cfg.source!r}: no revision or cached snapshot folder found for the "
              "fingerprint; hashing the loaded weights instead")
        return None

    def extra_repr(self) -> str:
        return (f"family={self.family!r}, source={self.cfg.source!r}, layers={self.num_layers}, "
                f"hidden_size={self.hidden_size}, checkpoint={self.cfg.checkpoint!r}, "
                f"normalize_waveform={self.normalize_waveform} ({self.normalize_reason})")


def _hub_snapshot(source: str) -> Path | None:
    """The cached snapshot folder of the hub id ``source`` (the revision transformers loads offline), or None."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except Exception:  # not a hub id, or not in the cache
        return None


def load_encoder_weights(hf_model: nn.Module, path: str) -> str:
    """Load a safetensors state dict (keys of ``Encoder.hf_model``) over ``hf_model``, strictly.

    Returns:
        The sha256 (hex) of the bytes read and loaded: what names them in the encoder's key (read once, so a
        file replaced after the load cannot lend its hash to the loaded weights).

    Raises:
        CheckpointError: the file is missing, unreadable, or its keys or shapes do not match.
    """
    try:
        fs, p = filesystem(path)
        with fs.open_input_stream(p) as fh:
            data = fh.read()
        digest = hashlib.sha256(data).hexdigest()
        tensors = load_safetensors_bytes(data)
        del data
    except Exception as exc:
        raise CheckpointError(f"model.encoder.checkpoint: cannot read {path} ({type(exc).__name__}: {exc})"
                              ) from exc
    expected = set(hf_model.state_dict())
    missing, unexpected = sorted(expected - set(tensors)), sorted(set(tensors) - expected)
    if missing or unexpected:
        raise CheckpointError(f"encoder checkpoint {path} does not match the model: missing keys "
                              f"{missing[:5]}{' ...' if len(missing) > 5 else ''}, unexpected keys "
                              f"{unexpected[:5]}{' ...' if len(unexpected) > 5 else ''} "
                              f"({len(missing)} missing, {len(unexpected)} unexpected)")
    try:
        hf_model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointError(f"encoder checkpoint {path}: {str(exc).splitlines()[0]}") from exc
    return digest


def save_encoder_weights(encoder: Encoder | nn.Module, path: str) -> None:
    """Write the base-model weights (the format ``EncoderConfig.checkpoint`` reads), atomically.

    Args:
        encoder: an :class:`Encoder` or an HF base model (e.g. ``Wav2Vec2ForPreTraining(...).wav2vec2``).
        path: local path or ``pyarrow.fs`` URI of the ``.safetensors`` file.
    """
    model = encoder.hf_model if isinstance(encoder, Encoder) else encoder
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(path, save_safetensors_bytes(state))
