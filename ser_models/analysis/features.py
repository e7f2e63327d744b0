"""Labelled splits of the frozen-encoder feature cache, gathered for analysis (probes, layer similarity)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ser_models.analysis.probes import SplitFeatures
from ser_models.exceptions import ConfigError

#: Pool columns kept next to the features (groups for layer similarity).
GROUP_COLUMNS = ("language", "corpus", "speaker")


def split_features(cache, pool, split: str, model_cfg, *, max_clips: int = 0,
                   seed: int = 0) -> tuple[SplitFeatures, pd.DataFrame]:
    """The cached ``[N, L, D]`` features of a split's clips that have a target, with their targets.

    Only what analysis needs is gathered: the clips with a label in ``model.labels`` or a value of a
    ``model.dimensions``, at most ``max_clips`` of them (a seeded random sample; 0 = all).

    Args:
        cache: a ready ``FeatureCache`` of the pool under the encoder.
        pool: the ``Pool``.
        split: the pool split.
        model_cfg: gives ``labels`` and ``dimensions``.
        max_clips: cap on the clips gathered (0 = no cap).
        seed: seed of the sample.

    Returns:
        ``(features, meta)``: :class:`SplitFeatures` sorted by clip id, and a DataFrame in the same row order
        with ``utt_id``, ``label`` and the :data:`GROUP_COLUMNS`.

    Raises:
        ConfigError: the split has no clip with a target.
    """
    dims = list(model_cfg.dimensions)
    meta = pool.metadata(columns=["utt_id", "label", *dims, *GROUP_COLUMNS], split=split)
    has_label = meta["label"].isin(list(model_cfg.labels)) if model_cfg.labels else pd.Series(False, meta.index)
    has_dim = meta[dims].notna().any(axis=1) if dims else pd.Series(False, meta.index)
    meta = meta[has_label | has_dim]
    if meta.empty:
        raise ConfigError(f"split {split!r} of pool {pool.root} has no clip labelled with model.labels "
                          f"{list(model_cfg.labels)} or model.dimensions {dims}")
    if max_clips and len(meta) > max_clips:
        meta = meta.sample(n=max_clips, random_state=seed)
    meta = meta.sort_values("utt_id").reset_index(drop=True)
    table = cache.table(ids=meta["utt_id"].tolist())
    num_layers, hidden = cache.shape
    found = dict(zip(table.column("utt_id").to_pylist(), table.column("features").to_pylist()))
    missing = [u for u in meta["utt_id"] if u not in found]
    if missing:
        raise ConfigError(f"{len(missing)} clips of split {split!r} are not in the feature cache {cache.dir} (e.g. "
                          f"{missing[:3]}): it was built for another pool")
    feats = np.stack([np.frombuffer(found[u], np.float32).reshape(num_layers, hidden) for u in meta["utt_id"]])
    index = {name: i for i, name in enumerate(model_cfg.labels)}
    labels = np.asarray([index.get(x, -1) if isinstance(x, str) else -1 for x in meta["label"]], np.int64)
    targets = (meta[dims].to_numpy(np.float32, na_value=np.nan) if dims
               else np.zeros((len(meta), 0), np.float32))
    return SplitFeatures(ids=meta["utt_id"].tolist(), features=feats, labels=labels, targets=targets), meta
