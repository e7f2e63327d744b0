"""The predictions table: scorer output batches as one table in the layout ``jobs.predict`` writes and
``ser_models.load(...).predict`` reads. numpy and Arrow only, so the serving install (no torch) builds it too."""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def prediction_table(batches: list[dict], labels: list[str], dimensions: list[str], embedding: bool) -> pa.Table:
    """Scorer output batches -> one table sorted by ``utt_id``: ``predicted`` (argmax class), ``confidence``
    (its probability), ``probs [C]``, one column per dimension, optional ``embedding [E]`` (the predictions
    layout; ``ser_models.load(...).predict`` reads its rows too)."""
    ids = np.concatenate([np.asarray(b["utt_id"]) for b in batches]).astype(str)
    order = np.argsort(ids, kind="stable")
    columns = {"utt_id": pa.array(ids[order], pa.string())}
    if labels:
        probs = np.concatenate([b["probs"] for b in batches]).astype(np.float32)[order]
        columns["predicted"] = pa.array(np.asarray(labels, dtype=object)[probs.argmax(1)], pa.string())
        columns["confidence"] = pa.array(probs.max(1))
        columns["probs"] = pa.FixedSizeListArray.from_arrays(pa.array(probs.ravel()), probs.shape[1])
    if dimensions:
        dims = np.concatenate([b["dims"] for b in batches]).astype(np.float32)[order]
        for k, name in enumerate(dimensions):
            columns[name] = pa.array(dims[:, k])
    if embedding:
        emb = np.concatenate([b["embedding"] for b in batches]).astype(np.float32)[order]
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), max(emb.shape[1], 1))
    return pa.table(columns)
