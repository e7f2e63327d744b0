"""Frozen-encoder feature cache: encode every pool clip once, train and score every round from the cache.

When the encoder is frozen (``model.adapter.kind=frozen``) and pooling is a masked mean, the model's
trainable part only ever sees the per-layer mean-pooled encoder output [L, D] of a clip: the learned layer
weighting is linear, so it commutes with the mean (``EmotionModel.forward_from_pooled``). Those [L, D] features
are computed once per (clip, encoder) and stored as Parquet keyed by clip id under a folder named by the
encoder's fingerprint (config + weights), so a changed encoder (e.g. a new TAPT checkpoint) never reuses
stale features.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from ser_models.exceptions import ConfigError
from ser_models.io import (
    exists,
    read_json,
    read_parquet,
    storage_path,
    write_json_atomic,
    write_parquet_atomic,
)


def cache_supported(model_cfg) -> str | None:
    """None when ``model_cfg`` can train from the cache, else the reason it cannot."""
    if model_cfg.adapter.kind != "frozen":
        return f"model.adapter.kind={model_cfg.adapter.kind!r} changes the encoder (the cache needs 'frozen')"
    if model_cfg.pooling != "mean":
        return f"model.pooling={model_cfg.pooling!r} needs frame features (the cache stores mean-pooled layers)"
    return None


class EncoderPooler:
    """Ray Data callable class: per-layer mean-pooled encoder features of each clip, as float32 bytes."""

    def __init__(self, model_cfg: dict, micro_batch_size: int = 0, max_seconds: float = 20.0, threads: int = 1):
        import torch

        from ser_models.active.scorer import auto_micro_batch
        from ser_models.config import from_dict
        from ser_models.model import EmotionModel, ModelConfig

        torch.set_num_threads(max(int(threads), 1))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = EmotionModel(from_dict(ModelConfig, model_cfg)).to(self.device).eval()
        self.micro = micro_batch_size or auto_micro_batch(self.device.type)
        self.max_samples = int(max_seconds * 16000)

    def __call__(self, batch: dict) -> dict:
        import torch

        from ser_models.training.batching import collect_clips, make_batch, plan_batches

        clips = collect_clips([batch], self.model.cfg.labels, require_labels=False)
        feats: list[bytes | None] = [None] * len(clips)
        with torch.no_grad():
            for index in plan_batches(clips.lengths(), self.micro, None):
                b = make_batch(clips, index, self.max_samples, None).to(self.device)
                pooled = self.model.encode_pooled(b.wavs, b.lengths).float().cpu().numpy()  # [B, L, D]
                for row, i in enumerate(index):
                    feats[i] = np.ascontiguousarray(pooled[row]).tobytes()
        return {"utt_id": np.asarray(clips.ids, dtype=object), "features": np.asarray(feats, dtype=object)}


def feature_cache_key(pool, encoder) -> str:
    """sha256 naming the cached features of ``pool`` (its build fingerprint) under ``encoder`` (its weights and
    config): a cache folder shared by several runs never serves one pool's features to another."""
    return hashlib.sha256(f"{pool.summary.get('fingerprint')}:{encoder.fingerprint()}".encode()).hexdigest()


class FeatureCache:
    """Cached [L, D] pooled features of every pool clip for one encoder.

    Layout: ``<root>/<encoder fingerprint>/features.parquet`` (utt_id, features: float32 bytes) and
    ``meta.json`` (num_layers L, hidden_size D, clip count).
    """

    def __init__(self, root: str | Path, fingerprint: str):
        self.dir = storage_path(root) / fingerprint[:16]
        self.fingerprint = fingerprint

    def __repr__(self) -> str:
        return f"FeatureCache(dir={str(self.dir)!r})"

    @property
    def ready(self) -> bool:
        return exists(self.dir / "meta.json") and exists(self.dir / "features.parquet")

    @property
    def shape(self) -> tuple[int, int]:
        meta = read_json(self.dir / "meta.json")
        return int(meta["num_layers"]), int(meta["hidden_size"])

    def build(self, ds, model_cfg, num_layers: int, scorer_cfg=None, *, verbose: bool = True,
              in_process: bool = False) -> None:
        """Encode every row of ``ds`` (pool rows with audio) once; a no-op when the cache is ready.

        Args:
            ds: Ray Dataset of pool rows (every split that will be trained, evaluated or scored).
            model_cfg: the ModelConfig (frozen adapter, mean pooling).
            num_layers: L, the encoder's hidden-state count.
            scorer_cfg: the loop's ``ScorerConfig``: the build runs on the same actor pool settings (actors,
                CPUs, threads, GPUs, batch and micro-batch sizes). None = its defaults.
        """
        if self.ready:
            return
        reason = cache_supported(model_cfg)
        if reason:
            raise ConfigError(f"the feature cache cannot be used: {reason}")
        from ser_models.active.scorer import ScorerConfig, run_on_actor_pool
        from ser_models.config import to_dict

        sc = scorer_cfg or ScorerConfig()
        t0 = time.perf_counter()
        source = ds.select_columns(["utt_id", "audio", "audio_format", "num_samples"])
        kwargs = {"model_cfg": to_dict(model_cfg), "threads": sc.torch_threads(),
                  "micro_batch_size": sc.micro_batch_size, "max_seconds": sc.max_seconds}
        batches = run_on_actor_pool(source, EncoderPooler, kwargs, sc, in_process)
        ids, feats = [], []
        for batch in batches:
            ids.extend(batch["utt_id"].tolist())
            feats.extend(batch["features"].tolist())
        order = np.argsort(np.asarray(ids, dtype=str), kind="stable")
        table = pa.table({"utt_id": pa.array([ids[i] for i in order], pa.string()),
                          "features": pa.array([feats[i] for i in order], pa.binary())})
        first = np.frombuffer(feats[0], np.float32)
        write_parquet_atomic(self.dir / "features.parquet", table)
        write_json_atomic(self.dir / "meta.json", {"num_layers": num_layers, "hidden_size": len(first) // num_layers,
                                                   "clips": len(ids), "fingerprint": self.fingerprint})
        if verbose:
            print(f"  feature cache: encoded {len(ids)} clips once in {time.perf_counter() - t0:.1f}s -> {self.dir}")

    def table(self, ids=None, labels: dict[str, str] | None = None) -> pa.Table:
        """Cached rows (optionally only ``ids``) with a ``label`` column from ``labels`` (None = no labels)."""
        import pyarrow.compute as pc

        table = read_parquet(self.dir / "features.parquet")
        if ids is not None:
            table = table.filter(pc.is_in(table["utt_id"], value_set=pa.array(sorted(ids), pa.string())))
        if labels is not None:
            table = table.append_column("label", pa.array([labels.get(u) for u in table["utt_id"].to_pylist()],
                                                          pa.string()))
        return table
