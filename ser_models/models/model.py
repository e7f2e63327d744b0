"""``EmotionModel``: encoder + adapter + layer featurizer + pooling + emotion head (classes and/or A/V/D).

A checkpoint holds the trainable weights only (adapter, featurizer, pooling, head; the whole encoder under
``full``) plus the config needed to rebuild the frozen rest, which comes from the encoder's source. The
checkpoint names that encoder by a provenance-checked reference (``model.json``'s ``encoder``): its content
fingerprint, the source as configured and, for an encoder folder on a local disk, its path relative to the
checkpoint folder, so a checkpoint copied together with its encoder (side by side, as they were) still loads.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes
from torch import nn

from ser_models.adapters import check_gradients, parameter_report
from ser_models.adapters.wap import WAPTransformer, load_wap_weights
from ser_models.config import from_dict, to_dict
from ser_models.encoders import LayerFeaturizer
from ser_models.encoders.functionals import (
    AUTO_FUNCTIONALS,
    EGEMAPS_DIM,
    FUNCTIONALS_SPEAKER_STATS_FILE,
    FunctionalsNorm,
)
from ser_models.encoders.presets import TINY_PRESETS
from ser_models.encoders.speaker_norm import SpeakerStandardizer, SpeakerStatistics
from ser_models.encoders.standardizer import LayerStandardizer, load_statistics
from ser_models.encoders.text import TextEncoder
from ser_models.exceptions import CheckpointError, ConfigError
from ser_models.heads import EmotionHead, build_pooling, masked_mean
from ser_models.heads.mc_dropout import row_seeded_dropout
from ser_models.io import (
    complete_dir,
    exists,
    filesystem,
    read_json,
    write_bytes_atomic,
    write_json_atomic,
)
from ser_models.models.encoder_reference import (  # noqa: F401 (TESTING_ENV re-exported)
    TESTING_ENV,
    build_over_encoder,
    encoder_reference,
    warn_test_encoder,
)
from ser_models.models.encoder_reuse import adapted_encoder
from ser_models.models.model_config import AUTO_NORMS, FEATURE_NORMS, ModelConfig, reads_speakers  # noqa: F401 (re-exported)

WEIGHTS_FILE = "model.safetensors"
#: The per-speaker statistics a checkpoint carries beside its weights (``model.feature_norm=speaker``).
SPEAKER_STATS_FILE = "speaker_stats.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 1


@dataclass
class EmotionOutput:
    """Model outputs.

    Attributes:
        logits: ``[B, C]`` (``[B, 0]`` without a categorical output).
        embedding: ``[B, E]`` penultimate head activation (diversity sampling works here).
        pooled: ``[B, D']`` utterance vector fed to the head (D' = D for mean, 2D for attentive_stats).
        dimensions: ``[B, K]`` arousal / valence / dominance values in ``model.dimension_range``, in
            ``model.dimensions`` order (``[B, 0]`` without dimensional outputs).
    """

    logits: torch.Tensor
    embedding: torch.Tensor
    pooled: torch.Tensor
    dimensions: torch.Tensor


class EmotionModel(nn.Module):
    """Speech emotion classifier over a (possibly adapted) pretrained encoder.

    Args:
        cfg: the model config.
        labels: class names; overrides ``cfg.labels`` when given (the stored config is updated to match).
    """

    def __init__(self, cfg: ModelConfig, labels: list[str] | None = None):
        super().__init__()
        if labels is not None:
            cfg = dataclasses.replace(cfg, labels=list(labels))
        self.cfg = cfg
        self.labels = list(cfg.labels)
        if cfg.encoder.source in TINY_PRESETS:
            warn_test_encoder(cfg.encoder.source)
        self.encoder = adapted_encoder(cfg)  # shared by the models of a simulated run (encoder_reuse)
        self.standardizer = None
        if cfg.feature_norm in ("pool", "auto"):
            self.standardizer = LayerStandardizer(self.encoder.num_layers, self.encoder.hidden_size)
            if cfg.feature_stats:
                mean, std, clips = load_statistics(cfg.feature_stats)
                self.standardizer.set_statistics(mean, std, clips)
        self.speaker_norm = None
        if cfg.feature_norm in ("speaker", "auto"):
            self.speaker_norm = SpeakerStandardizer(self.encoder.num_layers, self.encoder.hidden_size)
            if cfg.speaker_stats:
                self.speaker_norm.set_statistics(SpeakerStatistics.load(cfg.speaker_stats))
        self.functionals_norm = None
        if cfg.functionals != "none":  # each block standardised on its own
            self.functionals_norm = FunctionalsNorm()
            if cfg.functionals_stats:
                self.functionals_norm.pool.set_statistics(*load_statistics(cfg.functionals_stats))
            if cfg.functionals_speaker_stats:
                self.functionals_norm.speaker.set_statistics(SpeakerStatistics.load(cfg.functionals_speaker_stats))
        self.featurizer = LayerFeaturizer(self.encoder.num_layers, cfg.featurizer_layer)
        self.wap = None
        if cfg.wap.enabled:

            self.wap = WAPTransformer(self.encoder.num_layers, self.encoder.hidden_size, cfg.wap)
            if cfg.wap.checkpoint:
                load_wap_weights(self.wap, cfg.wap.checkpoint)
            self.featurizer.requires_grad_(False)  # the adapter weights the layers itself
            self.wap.mask_embedding.requires_grad_(False)  # only pre-training masks frames
            if cfg.wap.freeze:
                self.wap.requires_grad_(False)
        frame_dim = self.wap.output_dim if self.wap is not None else self.encoder.hidden_size
        self.pooling = build_pooling(cfg.pooling, frame_dim)
        self.dimensions = list(cfg.dimensions)
        # Text branch: its pooled vector is concatenated with the audio's in front of the head.
        self.text = TextEncoder(cfg.text) if cfg.text.enabled else None
        fused = (self.pooling.output_dim + (EGEMAPS_DIM if self.functionals_norm is not None else 0)
                 + (self.text.hidden_size if self.text is not None else 0))
        self.head = EmotionHead(fused, len(self.labels), cfg.head_hidden, cfg.head_dropout,
                                input_norm=cfg.head_input_norm, num_dimensions=len(self.dimensions),
                                value_range=tuple(cfg.dimension_range))

    @property
    def norm(self) -> str:
        """The standardisation in use: ``model.feature_norm``, or for ``auto`` what the fit chose (pool until
        then)."""
        if self.cfg.feature_norm != "auto":
            return self.cfg.feature_norm
        return self.cfg.feature_norm_choice or "pool"

    @property
    def uses_functionals(self) -> bool:
        """Whether the head reads the functionals: ``model.functionals=egemaps``, or ``auto`` having chosen them
        (or not chosen yet)."""
        return self.functionals_norm is not None and self.cfg.functionals_choice != "none"

    def use_features(self, norm: str | None = None, functionals: str | None = None) -> None:
        """``auto``: standardise with ``norm`` (``pool`` | ``speaker``) and read ``functionals`` (``none`` |
        ``egemaps``) from now on; the choices go into the config the checkpoint stores. None = unchanged."""
        if norm is not None:
            if self.cfg.feature_norm != "auto" or norm not in AUTO_NORMS:
                raise ConfigError(f"use_features(norm={norm!r}) needs model.feature_norm=auto and one of "
                                  f"{list(AUTO_NORMS)}")
            self.cfg = dataclasses.replace(self.cfg, feature_norm_choice=norm)
        if functionals is not None:
            if self.cfg.functionals != "auto" or functionals not in AUTO_FUNCTIONALS:
                raise ConfigError(f"use_features(functionals={functionals!r}) needs model.functionals=auto and one "
                                  f"of {list(AUTO_FUNCTIONALS)}")
            self.cfg = dataclasses.replace(self.cfg, functionals_choice=functionals)

    def _with_functionals(self, pooled: torch.Tensor, functionals, speakers) -> torch.Tensor:
        """``[B, D]`` -> ``[B, D + 88]`` with the standardised functionals ``[B, 88]`` (zeros when
        ``model.functionals=auto`` chose none: a linear head then ignores them exactly); unchanged without
        ``model.functionals``."""
        if self.functionals_norm is None:
            return pooled
        if not self.uses_functionals:
            return torch.cat([pooled, pooled.new_zeros(pooled.shape[0], self.functionals_norm.dim)], dim=-1)
        if functionals is None:
            raise ConfigError(f"model.functionals={self.cfg.functionals} needs each clip's eGeMAPS functionals (the "
                              "feature cache's functionals column; jobs.predict computes them from the audio)")
        block = self.functionals_norm(functionals.to(pooled.device, pooled.dtype), speakers, self.norm == "speaker")
        return torch.cat([pooled, block], dim=-1)

    def _standardise(self, hidden, speakers):
        if self.standardizer is not None and self.norm == "pool":
            hidden = self.standardizer(hidden)
        if self.speaker_norm is not None and self.norm == "speaker":
            hidden = self.speaker_norm(hidden, speakers)
        return hidden

    def _standardise_pooled(self, pooled, speakers):
        if self.standardizer is not None and self.norm == "pool":
            pooled = self.standardizer.forward_pooled(pooled)
        if self.speaker_norm is not None and self.norm == "speaker":
            pooled = self.speaker_norm.forward_pooled(pooled, speakers)
        return pooled

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def forward(self, wavs: torch.Tensor, lengths: torch.Tensor,
                transcripts: Sequence[str | None] | None = None, speakers: Sequence | None = None,
                functionals: torch.Tensor | None = None) -> EmotionOutput:
        """Classify padded waveforms.

        Args:
            wavs: ``[B, T]`` float32 at 16 kHz.
            lengths: ``[B]`` valid samples per clip.
            transcripts: B transcripts for the text branch (None, or a None entry, = empty text); ignored
                without ``model.text``.
            speakers: B speaker ids for ``model.feature_norm=speaker`` (None, or a None entry, = the pool's
                statistics); ignored otherwise.
            functionals: ``[B, 88]`` raw eGeMAPS functionals, with ``model.functionals``; ignored otherwise.

        Returns:
            :class:`EmotionOutput`.
        """
        return self._outputs(self.encoder(wavs, lengths), transcripts, speakers, functionals)

    def _outputs(self, enc, transcripts=None, speakers=None, functionals=None) -> EmotionOutput:
        if self.wap is not None:
            return self.forward_from_frames(torch.stack(enc.hidden_states, dim=2), enc.frame_lengths, transcripts)
        hidden = self._standardise(enc.hidden_states, speakers)
        pooled = self.pooling(self.featurizer(hidden), enc.frame_lengths)
        return self._head(self._with_functionals(pooled, functionals, speakers), transcripts)

    def forward_from_frames(self, frames: torch.Tensor, frame_lengths: torch.Tensor,
                            transcripts: Sequence[str | None] | None = None,
                            speakers: Sequence | None = None) -> EmotionOutput:
        """Classify from cached per-layer frames (equal to :meth:`forward` when the encoder is frozen).

        Args:
            frames: ``[B, F, L, D]`` from :meth:`encode_frames` (zero-padded).
            frame_lengths: ``[B]`` valid frames.
            transcripts, speakers: as in :meth:`forward`.
        """
        if self.wap is not None:
            x = self.wap(frames, frame_lengths)  # [B, F, dim]
        else:
            frames = self._standardise_pooled(frames, speakers)
            x = self.featurizer(tuple(frames.unbind(2)))
        return self._head(self.pooling(x, frame_lengths), transcripts)

    def forward_features(self, features: torch.Tensor, lengths: torch.Tensor | None = None,
                         transcripts: Sequence[str | None] | None = None,
                         speakers: Sequence | None = None, functionals: torch.Tensor | None = None) -> EmotionOutput:
        """Classify cached encoder outputs of either cache: ``[B, L, D]`` per-layer means
        (:meth:`forward_from_pooled`, with ``functionals`` ``[B, 88]`` under ``model.functionals``) or
        ``[B, F, L, D]`` frames with ``lengths`` ``[B]`` valid frames (:meth:`forward_from_frames`)."""
        if features.dim() == 4:
            return self.forward_from_frames(features, lengths, transcripts, speakers)
        return self.forward_from_pooled(features, transcripts, speakers, functionals)

    def forward_batch(self, batch) -> EmotionOutput:
        """The model on a :class:`~ser_models.training.batching.Batch` of either input (cached features or
        audio), with its transcripts, speakers and functionals."""
        if batch.features is not None:
            return self.forward_features(batch.features, batch.lengths, batch.transcripts, batch.speakers,
                                         batch.functionals)
        return self(batch.wavs, batch.lengths, batch.transcripts, batch.speakers, batch.functionals)

    @torch.no_grad()
    def encode_frames(self, wavs: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every hidden state's frames, the frame cache entry: ``([B, F, L, D], frame_lengths [B])``."""
        enc = self.encoder(wavs, lengths)
        return torch.stack(enc.hidden_states, dim=2), enc.frame_lengths

    def _head(self, pooled: torch.Tensor, transcripts) -> EmotionOutput:
        if self.text is not None:
            texts = list(transcripts) if transcripts is not None else [None] * pooled.shape[0]
            pooled = torch.cat([pooled, self.text(texts).to(pooled.dtype)], dim=-1)
        logits, dims, embedding = self.head(pooled)
        return EmotionOutput(logits=logits, embedding=embedding, pooled=pooled, dimensions=dims)

    def forward_with_layer_means(self, wavs: torch.Tensor, lengths: torch.Tensor, layers: Sequence[int],
                                 transcripts: Sequence[str | None] | None = None, speakers: Sequence | None = None
                                 ) -> tuple[EmotionOutput, torch.Tensor]:
        """:meth:`forward` plus the utterance means of some hidden states, from one encoder pass.

        Gradients flow through both (layer anchoring trains the encoder's adapters through the means).

        Args:
            wavs: ``[B, T]`` float32 at 16 kHz.
            lengths: ``[B]`` valid samples per clip.
            layers: U hidden-state indices.

        Returns:
            ``(EmotionOutput, [B, U, D])``.
        """
        enc = self.encoder(wavs, lengths)
        return self._outputs(enc, transcripts, speakers), _layer_means(enc, layers)

    def layer_means(self, wavs: torch.Tensor, lengths: torch.Tensor, layers: Sequence[int]) -> torch.Tensor:
        """Utterance means ``[B, U, D]`` of hidden states ``layers`` (encoder only, with gradients)."""
        return _layer_means(self.encoder(wavs, lengths), layers)

    @torch.no_grad()
    def encode_pooled(self, wavs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Per-layer masked means over frames, the frozen-encoder cache entry.

        Args:
            wavs: ``[B, T]`` float32 at 16 kHz.
            lengths: ``[B]`` valid samples.

        Returns:
            ``[B, L, D]``.
        """
        enc = self.encoder(wavs, lengths)
        return masked_mean(torch.stack(enc.hidden_states), enc.frame_lengths).transpose(0, 1)

    def forward_from_pooled(self, pooled_layers: torch.Tensor,
                            transcripts: Sequence[str | None] | None = None,
                            speakers: Sequence | None = None, functionals: torch.Tensor | None = None) -> EmotionOutput:
        """Classify from cached per-layer means (equal to :meth:`forward` when the encoder is frozen).

        Args:
            pooled_layers: ``[B, L, D]`` from :meth:`encode_pooled`.
            transcripts: as in :meth:`forward`.

        Raises:
            ConfigError: ``model.pooling`` is not ``mean`` (attentive pooling needs the frames).
        """
        if self.cfg.pooling != "mean" or self.wap is not None:
            raise ConfigError(f"forward_from_pooled needs model.pooling=mean and no model.wap (per-layer means commute with the "
                              f"layer weighting); model.pooling={self.cfg.pooling!r} needs frame-level features")
        return self._head(self.head_input_from_pooled(pooled_layers, speakers, functionals), transcripts)

    def head_input_from_pooled(self, pooled_layers: torch.Tensor, speakers: Sequence | None = None,
                               functionals: torch.Tensor | None = None) -> torch.Tensor:
        """What the head reads from cached per-layer means, ``[B, L, D]`` -> ``[B, D]`` (``[B, D + 88]`` with
        the functionals): standardised, then the featurizer's layer (or layer mix). With a fixed layer nothing
        here trains, so a full-batch solver computes it once (:meth:`head_from_input`) instead of at every
        objective evaluation."""
        pooled = self.featurizer.forward_pooled(self._standardise_pooled(pooled_layers, speakers))
        return self._with_functionals(pooled, functionals, speakers)

    def head_from_input(self, head_input: torch.Tensor,
                        transcripts: Sequence[str | None] | None = None) -> EmotionOutput:
        """The head (and text branch) on :meth:`head_input_from_pooled`'s output; with it equal to
        :meth:`forward_from_pooled`."""
        return self._head(head_input, transcripts)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters with ``requires_grad`` (what the optimizer gets)."""
        return (p for p in self.parameters() if p.requires_grad)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Detached CPU copies of the trainable parameters and of the pool statistics of ``model.feature_norm``,
        by name (what a checkpoint holds)."""
        state = {n: p.detach().cpu().contiguous().clone() for n, p in self.named_parameters() if p.requires_grad}
        return {**state, **self._statistics_buffers()}

    def _statistics_buffers(self) -> dict[str, torch.Tensor]:
        """Non-trained state a checkpoint must carry: the pool statistics and, with ``model.wap``, the whole
        adapter (frozen or not), so a checkpoint never depends on the pre-training folder it started from."""
        out = {}
        if self.standardizer is not None:
            out.update({f"standardizer.{n}": b for n, b in _saved_buffers(self.standardizer).items()})
        if self.functionals_norm is not None:
            out.update({f"functionals_norm.{n}": b for n, b in _saved_buffers(self.functionals_norm).items()})
        if self.wap is not None:
            out.update({f"wap.{n}": t for n, t in self.wap.state_dict().items()})
        return {n: t.detach().cpu().contiguous().clone() for n, t in out.items()}

    def parameter_report(self) -> dict:
        """See :func:`ser_models.adapters.parameter_report`."""
        return parameter_report(self)

    def check_gradients(self, seconds: float = 0.5, batch: int = 2) -> dict:
        """One forward/backward on random audio; every trainable parameter must get a gradient.

        Raises:
            GradientCheckError: naming the parameters left out (and the WavLM fix when relevant).
        """
        device = next(self.parameters()).device
        gen = torch.Generator().manual_seed(0)
        n = max(int(seconds * 16_000), self.encoder.min_samples)
        wavs = (0.1 * torch.randn(batch, n, generator=gen)).to(device)
        lengths = torch.full((batch,), n, dtype=torch.long, device=device)
        lengths[1:] = max(n * 3 // 4, self.encoder.min_samples)

        def loss() -> torch.Tensor:
            out = self(wavs, lengths)
            categorical = out.logits.logsumexp(-1).sum() if out.logits.shape[1] else 0.0
            return categorical + out.dimensions.sum()

        return check_gradients(self, loss, family=self.encoder.family)

    @contextlib.contextmanager
    def mc_dropout(self, enabled: bool = True, row_seeds: Sequence[int] | None = None) -> Iterator[EmotionModel]:
        """Eval mode with the head's (and LoRA's) dropout switched on, for MC-dropout scoring.

        The encoder's own dropout stays off: it would change the features, not sample the head's
        uncertainty, and it is absent under a frozen-encoder cache. The previous train/eval state is restored
        on exit.

        Args:
            enabled: False = plain eval mode.
            row_seeds: one seed per row of the batches run inside the block. Each row's dropout masks are
                then drawn from its own generator (seed, module), so a clip's MC sample does not depend on
                which other clips share its batch or how long they are (a mask over ``[T, D]`` is generated
                row-major, so its first ``T_valid`` frames are the same at any padded length). None = the
                global RNG, as ``nn.Dropout`` does.

        References:
            Gal and Ghahramani, 2016. Dropout as a Bayesian Approximation. ICML.
        """
        modes = {m: m.training for m in self.modules()}
        self.eval()
        hooks = []
        if enabled:
            mc = [m for name, m in self.named_modules()
                  if isinstance(m, nn.Dropout) and (name.startswith("head.") or ".lora_dropout." in name)]
            for salt, m in enumerate(mc):
                if row_seeds is None:
                    m.train()
                elif m.p > 0:  # stays in eval mode (identity); the hook applies the per-row mask
                    hooks.append(m.register_forward_hook(row_seeded_dropout(list(row_seeds), salt, m.p)))
        try:
            yield self
        finally:
            for h in hooks:
                h.remove()
            for m, mode in modes.items():
                m.training = mode

    def save_checkpoint(self, directory: str) -> None:
        """Write ``directory/model.safetensors`` (trainable weights) and ``directory/model.json`` (and, with
        ``model.feature_norm=speaker``, ``directory/speaker_stats.safetensors``).

        ``model.json`` holds the format version, the ModelConfig (``config``), ``labels``, the parameter
        report, the encoder fingerprint, the encoder reference (``encoder``: see :func:`encoder_reference`)
        and the weight names. Both files are written atomically, weights first, so a reader that finds
        ``model.json`` finds matching weights.
        """
        base = str(directory).rstrip("/")
        state = self.trainable_state_dict()
        write_bytes_atomic(f"{base}/{WEIGHTS_FILE}", save_safetensors_bytes(state, metadata={"format": "pt"}))
        if self.speaker_norm is not None and self.speaker_norm.fitted:  # beside the weights: S varies by pool
            self.speaker_norm.stats.save(f"{base}/{SPEAKER_STATS_FILE}")
        if self.functionals_norm is not None and self.functionals_norm.speaker.fitted:
            self.functionals_norm.speaker.stats.save(f"{base}/{FUNCTIONALS_SPEAKER_STATS_FILE}")
        write_json_atomic(f"{base}/{META_FILE}", {
            "format_version": FORMAT_VERSION,
            "config": to_dict(self.cfg),
            "labels": self.labels,
            "parameter_report": self.parameter_report(),
            "encoder_fingerprint": self.encoder.fingerprint(),
            "encoder": encoder_reference(self.encoder, base),
            "weights": sorted(state),
        })

    @classmethod
    def load_checkpoint(cls, directory: str, map_location: str | torch.device = "cpu",
                        encoder_source: str | None = None) -> EmotionModel:
        """Rebuild a model from ``model.json`` and load ``model.safetensors`` strictly (returned in eval mode).

        The encoder is looked for, in order, at ``encoder_source``, at the path relative to the checkpoint
        folder that ``model.json`` records (a checkpoint moved together with its encoder folder), and at the
        source as configured; the first whose content fingerprint is the recorded one is used, and the
        returned model's ``cfg.encoder.source`` names it. Checkpoints written before the reference existed
        are looked up at ``encoder_source`` and their configured source.

        Args:
            directory: the checkpoint folder (local path or ``pyarrow.fs`` URI).
            map_location: device the model is moved to (tensors are read on the CPU first).
            encoder_source: where the encoder lives now (a local folder, a tiny preset or a hub id); None =
                the recorded places only.

        Raises:
            EncoderMismatchError: no place holds the encoder the checkpoint was trained over; the message
                names every place tried, what it held, and the expected fingerprint.
            CheckpointError: a file is missing, or the weight names/shapes do not match the rebuilt model.
        """
        # A replacement a kill interrupted leaves the complete version beside the folder (io.replace_dir).
        base = str(complete_dir(directory, META_FILE) or directory).rstrip("/")
        meta_path, weights_path = f"{base}/{META_FILE}", f"{base}/{WEIGHTS_FILE}"
        for p in (meta_path, weights_path):
            if not exists(p):
                raise CheckpointError(f"checkpoint file {p} not found (expected {META_FILE} and {WEIGHTS_FILE})")
        meta = read_json(meta_path)
        if meta.get("format_version") != FORMAT_VERSION:
            raise CheckpointError(f"{meta_path}: format_version {meta.get('format_version')!r} is not "
                                  f"{FORMAT_VERSION}")
        try:
            cfg = _stored_config(meta["config"])
        except (ConfigError, KeyError) as exc:
            raise CheckpointError(f"{meta_path}: stored model config is invalid: {exc}") from exc
        # The pool statistics travel in the weights file: the stats file the config names may be gone.
        # ... and so does the WAP adapter: its pre-training folder may be gone too.
        # ... and the speaker statistics in a file beside the weights.
        bare = dataclasses.replace(cfg, feature_stats=None, speaker_stats=None, functionals_stats=None,
                                   functionals_speaker_stats=None, wap=dataclasses.replace(cfg.wap, checkpoint=None))
        model, encoder_cfg = build_over_encoder(cls, bare, meta, base, meta_path, encoder_source)
        cfg = dataclasses.replace(cfg, encoder=encoder_cfg)  # where the encoder was found
        model.cfg = cfg
        if model.speaker_norm is not None and exists(f"{base}/{SPEAKER_STATS_FILE}"):
            model.speaker_norm.set_statistics(SpeakerStatistics.load(f"{base}/{SPEAKER_STATS_FILE}"))
            model.cfg = dataclasses.replace(model.cfg, speaker_stats=f"{base}/{SPEAKER_STATS_FILE}")
        if model.functionals_norm is not None and exists(f"{base}/{FUNCTIONALS_SPEAKER_STATS_FILE}"):
            path = f"{base}/{FUNCTIONALS_SPEAKER_STATS_FILE}"
            model.functionals_norm.speaker.set_statistics(SpeakerStatistics.load(path))
            model.cfg = dataclasses.replace(model.cfg, functionals_speaker_stats=path)
        fs, p = filesystem(weights_path)
        try:
            with fs.open_input_stream(p) as fh:
                tensors = load_safetensors_bytes(fh.read())
        except Exception as exc:
            raise CheckpointError(f"cannot read {weights_path}: {type(exc).__name__}: {exc}") from exc
        model.load_trainable_state_dict(tensors, source=weights_path)
        return model.to(map_location).eval()

    def load_trainable_state_dict(self, tensors: dict[str, torch.Tensor], source: str = "state dict") -> None:
        """Load exactly the trainable weights (names and shapes must match).

        Raises:
            CheckpointError: naming ``source`` and the missing / unexpected / mis-shaped keys.
        """
        params = {n: p for n, p in self.named_parameters() if p.requires_grad}
        if self.standardizer is not None:
            params.update({f"standardizer.{n}": b for n, b in _saved_buffers(self.standardizer).items()})
        if self.functionals_norm is not None:
            params.update({f"functionals_norm.{n}": b for n, b in _saved_buffers(self.functionals_norm).items()})
        if self.wap is not None:
            params.update({f"wap.{n}": t for n, t in self.wap.state_dict().items()})
        missing, unexpected = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        shapes = [n for n in set(params) & set(tensors) if tuple(params[n].shape) != tuple(tensors[n].shape)]
        if missing or unexpected or shapes:
            raise CheckpointError(f"{source} does not match the model: missing {missing[:5]}, unexpected "
                                  f"{unexpected[:5]}, wrong shape {sorted(shapes)[:5]} ({len(missing)} missing, "
                                  f"{len(unexpected)} unexpected, {len(shapes)} mis-shaped)")
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(tensors[n].to(p.device, p.dtype))

    def extra_repr(self) -> str:
        return (f"labels={self.labels}, dimensions={self.dimensions}, adapter={self.cfg.adapter.kind!r}, "
                f"add={list(self.cfg.adapter.add)}, pooling={self.cfg.pooling!r}, "
                f"feature_norm={self.cfg.feature_norm!r}, functionals={self.cfg.functionals!r}, featurizer_layer={self.cfg.featurizer_layer}, text={self.cfg.text.source or None!r}, "
                f"wap={self.cfg.wap.enabled}")


#: ModelConfigs read from ``model.json`` in this process, by their JSON text: validating one takes ~60 ms, and
#: a simulated run reads the same config back for every scoring pass.
_STORED_CONFIGS: dict[str, ModelConfig] = {}


def _stored_config(data: dict) -> ModelConfig:
    """``from_dict(ModelConfig, data)``, validated once per distinct ``data`` in this process (a copy each call)."""
    key = json.dumps(data, sort_keys=True, default=str)
    if key not in _STORED_CONFIGS:
        if len(_STORED_CONFIGS) >= 64:
            _STORED_CONFIGS.clear()
        _STORED_CONFIGS[key] = from_dict(ModelConfig, data)
    return copy.deepcopy(_STORED_CONFIGS[key])


def _saved_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s buffers that its state dict holds: not the non-persistent ones (speaker statistics, which a
    checkpoint keeps in a file of their own)."""
    kept = module.state_dict(keep_vars=True)
    return {n: b for n, b in module.named_buffers() if n in kept}


def _layer_means(enc, layers: Sequence[int]) -> torch.Tensor:
    """``[B, U, D]`` masked means over frames of ``enc.hidden_states[l]`` for each ``l`` in ``layers``."""
    return masked_mean(torch.stack([enc.hidden_states[i] for i in layers]), enc.frame_lengths).transpose(0, 1)


