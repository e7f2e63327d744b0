"""Cross-lingual rounds (``cross_lingual`` in ``jobs.after``): the checks before a run, and what a round trains
on besides the ledger (the source group's labelled clips, and with anchoring the unlabelled target clips)."""

from __future__ import annotations

import pandas as pd

from ser_models.active.loop_config import CrossLingualConfig
from ser_models.analysis.anchoring import resolve_anchors, sample_target_ids
from ser_models.exceptions import ConfigError


def check_cross_lingual(pool, cross: CrossLingualConfig, model_cfg) -> None:
    """Both groups exist in the training split, and every source-group training clip carries the model's
    targets (they train every round as they are). Cheap (metadata only): jobs call it before Ray starts.

    Raises:
        ConfigError: a group without training clips, or a source clip without a label in ``model.labels`` or a
            ``model.dimensions`` value (counted, one named).
    """
    dims = list(model_cfg.dimensions)
    # The target group only needs to exist; the source group's labels are checked below (meta = its clips).
    for key, value, columns in (("target", cross.target, ["utt_id"]),
                                ("source", cross.source, ["utt_id", "label", *dims])):
        meta = pool.metadata(columns=columns, split="train", where={cross.group_column: value})
        if meta.empty:
            raise ConfigError(f"cross_lingual.{key}={value!r}: the training split of pool {pool.root} has no clip "
                              f"with {cross.group_column}={value!r}")
    bad = meta[~meta["label"].isin(list(model_cfg.labels))] if model_cfg.labels else meta.iloc[:0]
    if dims:
        bad = pd.concat([bad, meta[meta[dims].isna().any(axis=1)]])
    if len(bad):
        raise ConfigError(f"cross_lingual.source={cross.source!r}: {len(bad)} of its {len(meta)} training clips lack "
                          f"a label in model.labels or a model.dimensions value (e.g. {bad['utt_id'].iloc[0]!r}); "
                          "they would train every round as they are")


class CrossLingualFeeds:
    """What a cross-lingual round trains on besides the target group's ledger labels.

    Args:
        pool: the opened pool.
        cross: the enabled ``cross_lingual`` config.
        model_cfg: the run's ModelConfig.
        train_ids: the target group's training clips (the loop's pool; sorted Arrow ids or a list).
        seed: ``active.seed`` (which target clips anchor).
        anchors_path: where the resolved anchor layers are kept (``anchors.json``).
        log: progress output.
    """

    def __init__(self, pool, cross: CrossLingualConfig, model_cfg, train_ids: list[str], seed: int, anchors_path,
                 log=print):
        self.pool, self.cross, self.model_cfg = pool, cross, model_cfg
        self.train_ids, self.seed, self.anchors_path, self.log = train_ids, seed, anchors_path, log
        self.where = {cross.group_column: cross.target}
        self._anchors: dict | None = None
        self._source_labels: list | None = None

    def feeds(self, labelled, dimensions: list[str]) -> dict:
        """The round's training feed (the ledger's target clips + the source group's labelled clips) and, with
        anchoring, the unlabelled target clips (``anchor_target``)."""
        cols = self.model_cfg.inputs().feed_columns(dimensions)  # audio: the source group has no cached features
        source = self.pool.dataset("train", where={self.cross.group_column: self.cross.source})
        feeds = {"train": labelled.select_columns(cols).union(source.select_columns(cols))}
        if self.cross.anchoring.weight > 0:

            ids = sample_target_ids(self.train_ids, self.cross.anchoring.max_target_clips, self.seed)
            feeds["anchor_target"] = self.pool.dataset("train", where={**self.where, "utt_id": ids})
        return feeds

    def anchoring(self, batch_size: int) -> dict | None:
        """The ``anchoring`` argument of ``train_model`` (None without anchoring); anchors resolved once."""
        if self.cross.anchoring.weight <= 0:
            return None
        if self._anchors is None:
            from ser_models.encoders import build_encoder

            c = self.cross
            self._anchors = resolve_anchors(self.pool, c.anchoring, self.model_cfg, "train", c.group_column, c.source,
                                            c.target, self.anchors_path,
                                            build_encoder(self.model_cfg.encoder).num_layers, seed=self.seed,
                                            log=self.log)
        return {"groups": self._anchors["groups"], "weight": self.cross.anchoring.weight,
                "batch_size": self.cross.anchoring.target_batch_size or max(batch_size, 2)}

    def source_labels(self) -> list:
        """The source group's training labels (read once: the pool does not change during a run)."""
        if self._source_labels is None:
            self._source_labels = self.pool.metadata(columns=["label"], split="train", where={
                self.cross.group_column: self.cross.source})["label"].tolist()
        return self._source_labels
