"""The feature cache's Ray Data callable class: a frozen encoder's per-layer means (or frames) of each clip.

:class:`~ser_models.scoring.feature_cache.FeatureCache` maps it over the pool on the scorer's actor pool; it lives
in its own module so the cache's storage logic and the model code it runs stay apart.
"""

from __future__ import annotations

import numpy as np

from ser_models.data.clips import collect_clips
from ser_models.exceptions import ConfigError
from ser_models.failpoints import pausepoint
from ser_models.precision import (
    AUTO_MICRO_BATCH_FLOOR,
    autocast,
    check_precision,
    configure_device,
    gpu_share,
    size_micro_batch,
)


class EncoderPooler:
    """Ray Data callable class: per-layer mean-pooled encoder features of each clip, as float32 bytes, or with
    ``frames`` every hidden state's frames ``[F, L, D]`` as float16 bytes (plus ``num_frames``). With ``states``
    only hidden states ``0 .. states - 1`` are computed and kept (:func:`cache_states`). It runs on CUDA only
    when ``num_gpus`` (``active.scorer.num_gpus``) reserves a GPU (:func:`~ser_models.devices.actor_device`).
    The encoder runs in ``precision`` (``active.scorer.precision``: ``bf16`` autocast or ``fp32``, with TF32 per
    ``allow_tf32`` on CUDA); what is stored is float32 means (float16 frames) either way. On CUDA with
    ``micro_batch_size=0`` the micro-batch is sized from free memory on the first batch, as the scorer's."""

    def __init__(self, model_cfg: dict, micro_batch_size: int = 0, max_seconds: float = 20.0, threads: int = 1,
                 frames: bool = False, states: int | None = None, functionals: str | None = None,
                 num_gpus: float = 0.0, precision: str = "fp32", allow_tf32: bool = True):
        import torch

        from ser_models.config import from_dict
        from ser_models.devices import actor_device, log_device
        from ser_models.models.model import EmotionModel, ModelConfig
        from ser_models.scoring.scorer import auto_micro_batch
        from ser_models.training.micro_batches import MicroBatcher

        torch.set_num_threads(max(int(threads), 1))
        self.device = actor_device(num_gpus)
        log_device("feature cache", self.device, num_gpus)
        self.precision = check_precision(precision, "active.scorer.precision")
        configure_device(self.device, allow_tf32)
        self.model = EmotionModel(from_dict(ModelConfig, model_cfg)).to(self.device).eval()
        if states is not None and not self.model.encoder.limit_depth(states):
            raise ConfigError(f"the {self.model.encoder.family} encoder cannot stop after hidden state {states - 1}")
        self.num_gpus = num_gpus
        self.max_seconds = max_seconds
        # None = sized from free memory on the first batch (CUDA); else a fixed size. Either way it halves on an
        # out-of-memory error (MicroBatcher), which changes speed only: features do not depend on the batch.
        micro = micro_batch_size or (None if self.device.type == "cuda" else auto_micro_batch(self.device.type))
        self.batcher = None if micro is None else MicroBatcher(micro, "feature cache", max_seconds)
        self.frames = frames
        self.functionals = None
        if functionals:
            from ser_models.encoders.functionals import EgemapsExtractor

            self.functionals = EgemapsExtractor(threads)

    def __call__(self, batch: dict) -> dict:
        from ser_models.training.micro_batches import MicroBatcher

        clips = collect_clips([batch], self.model.cfg.labels, require_labels=False)
        pausepoint("cache_encode")  # node-loss tests remove this actor's node here
        if self.batcher is None and len(clips):
            self.batcher = MicroBatcher(self._size_micro_batch(clips), "feature cache", self.max_seconds)
        with autocast(self.device, self.precision):  # the helpers cast what they return to float32 / float16
            return self._encode(clips, batch)

    def _encode(self, clips, batch: dict) -> dict:
        from ser_models.training.batching import frame_features, pooled_layer_features

        if self.frames:
            frames = frame_features(self.model, clips, self.batcher or 1, self.max_seconds, self.device)
            return {"utt_id": np.asarray(clips.ids, dtype=object),
                    "features": np.asarray([np.ascontiguousarray(f).tobytes() for f in frames], dtype=object),
                    "num_frames": np.asarray([len(f) for f in frames], np.int64)}
        pooled = pooled_layer_features(self.model, clips, self.batcher or 1, self.max_seconds, self.device)  # [N, L, D]
        feats = [np.ascontiguousarray(row).tobytes() for row in pooled]
        out = {"utt_id": np.asarray(clips.ids, dtype=object), "features": np.asarray(feats, dtype=object)}
        if self.functionals is not None:  # from the whole clip, not the encoder's crop
            out["functionals"] = np.asarray([self.functionals.clip(a).tobytes() for a in clips.audio], dtype=object)
        elif "functionals" in batch:  # computed by a CPU stage ahead of this actor (FunctionalsColumn)
            by_id = dict(zip(map(str, batch["utt_id"]), batch["functionals"]))
            out["functionals"] = np.asarray([by_id[u] for u in clips.ids], dtype=object)
        return out

    def _size_micro_batch(self, clips) -> int:
        """Clips per forward on CUDA, from a probe encode of the longest clips (as the scorer's)."""
        from ser_models.training.batching import SAMPLE_RATE, probe_batch
        from ser_models.training.micro_batches import size_or_halve

        max_samples = int(self.max_seconds * SAMPLE_RATE)
        probe, length = probe_batch(clips, AUTO_MICRO_BATCH_FLOOR, max_samples, self.device)
        encode = self.model.encode_frames if self.frames else self.model.encode_pooled

        def measure() -> int:
            with autocast(self.device, self.precision):
                return size_micro_batch("feature cache", lambda: encode(probe.wavs, probe.lengths), self.device,
                                        len(probe.ids), length, max_samples, gpu_share(self.num_gpus))

        return size_or_halve("feature cache", measure, len(probe.ids))
