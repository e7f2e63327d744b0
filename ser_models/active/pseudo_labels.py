"""Semi-supervised rounds: train on pseudo-labels of unlabelled clips next to the ledger's labels.

Two ways to label a clip without a person, both from what the previous round already computed (its
``scores.parquet``: class probabilities and embeddings of every training clip), so they cost no extra encoder
pass:

* ``confident`` (CEAL, Wang et al. 2017): the previous round's model labels the unlabelled clips it is sure
  of, ``max_c p_c >= threshold``.
* ``propagation`` (label spreading, Zhou et al. 2004): the ledger's labels spread over the FAISS k-nearest-
  neighbour graph of the clips' embeddings (cosine similarity, symmetric, normalised), so a clip takes the
  label of the labelled clips it is connected to; kept where the spread class share is ``>= threshold``. Unlike
  ``confident`` it uses this round's new labels, not just the previous model.

Either way the pseudo-labels are capped at ``max_ratio`` times the labelled clips, split evenly across classes
(most confident first), so a class the model over-predicts cannot flood the training set. They live in the
round's ``pseudo_labels.parquet`` and train that round only: they are **never written to the label ledger**,
which stays the record of what people labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ser_models.config import RESULT, field
from ser_models.data.ledger import TARGETS_SCHEMA
from ser_models.exceptions import ConfigError
from ser_models.io import exists, read_parquet, write_parquet_atomic
from ser_models.scoring.score_shards import ScoreShards, read_shard, shard_rows
from ser_models.scoring.scorer import Scores

__all__ = ["PSEUDO_SCHEMA", "SemiSupervisedConfig", "TrainingTargets", "balanced_top", "confident_pseudo_labels",
           "label_spreading", "pseudo_labels", "shard_pseudo_labels"]

_KEY = "active.semi_supervised"
_METHODS = ("none", "confident", "propagation")
#: One row per pseudo-labelled clip: its label, how sure the method was, and which method.
PSEUDO_SCHEMA = pa.schema([("utt_id", pa.string()), ("label", pa.string()), ("confidence", pa.float64()),
                           ("method", pa.string())])


@dataclass
class SemiSupervisedConfig:
    """Pseudo-labels for the AFTER loop's training rounds (``active.semi_supervised.*``)."""

    method: str = field("none", effect=RESULT, help=f"one of {list(_METHODS)}: none; confident = the previous round's confident "
                        "predictions (CEAL); propagation = label spreading over the FAISS kNN graph of embeddings")
    threshold: float = field(0.9, effect=RESULT, help="keep a pseudo-label when its confidence (max class probability, or spread "
                             "class share) is at least this")
    max_ratio: float = field(1.0, effect=RESULT, help="at most max_ratio x the labelled clips get pseudo-labels per round, split "
                             "evenly across classes")
    neighbours: int = field(10, effect=RESULT, help="propagation: neighbours per clip in the kNN graph")
    alpha: float = field(0.9, effect=RESULT, help="propagation: share of a clip's label mass that comes from its neighbours "
                         "(label spreading's alpha, in (0, 1))")
    iterations: int = field(30, effect=RESULT, help="propagation: spreading iterations")

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise ConfigError(f"{_KEY}.method must be one of {list(_METHODS)}, got {self.method!r}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"{_KEY}.threshold must be within [0, 1], got {self.threshold}")
        if self.max_ratio <= 0:
            raise ConfigError(f"{_KEY}.max_ratio must be > 0, got {self.max_ratio}")
        if self.neighbours < 1:
            raise ConfigError(f"{_KEY}.neighbours must be >= 1, got {self.neighbours}")
        if not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"{_KEY}.alpha must be within (0, 1), got {self.alpha}")
        if self.iterations < 1:
            raise ConfigError(f"{_KEY}.iterations must be >= 1, got {self.iterations}")

    @property
    def enabled(self) -> bool:
        return self.method != "none"


def balanced_top(labels: np.ndarray, confidence: np.ndarray, eligible: np.ndarray, num_classes: int,
                 cap: int) -> np.ndarray:
    """Positions of at most ``cap`` eligible items, ``cap // num_classes`` per class (most confident first; a
    class with fewer eligible items leaves its share unused).

    Args:
        labels: [N] class index per item. confidence: [N]. eligible: [N] bool.
        num_classes: C. cap: total items allowed.

    Returns:
        [M] positions, sorted ascending.
    """
    per_class = cap // num_classes
    keep = []
    for c in range(num_classes):
        pos = np.flatnonzero(eligible & (labels == c))
        order = np.argsort(-confidence[pos], kind="stable")  # ties: pool order
        keep.append(pos[order[:per_class]])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)


def confident_pseudo_labels(probs: np.ndarray, unlabelled: np.ndarray, threshold: float,
                            cap: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CEAL's high-confidence samples: unlabelled clips whose top class probability is at least ``threshold``.

    Args:
        probs: [N, C] class probabilities. unlabelled: [N] bool, True where the clip has no label.
        threshold: minimum ``max_c p_c``. cap: at most this many, balanced across classes.

    Returns:
        positions [M], class indices [M], confidences [M].
    """
    probs = np.asarray(probs, np.float64)
    labels, conf = probs.argmax(axis=1), probs.max(axis=1)
    pos = balanced_top(labels, conf, unlabelled & (conf >= threshold), probs.shape[1], cap)
    return pos, labels[pos], conf[pos]


def label_spreading(embeddings: np.ndarray, seeds: np.ndarray, num_classes: int, neighbours: int = 10,
                    alpha: float = 0.9, iterations: int = 30) -> np.ndarray:
    """Label spreading over the symmetric kNN graph of ``embeddings`` (Zhou et al., 2004).

    ``W`` keeps each clip's ``neighbours`` most cosine-similar clips (FAISS inner product on unit vectors,
    negative similarities set to 0), made symmetric with ``max(W, W^T)``; ``S = D^-1/2 W D^-1/2``; then
    ``F <- alpha S F + (1 - alpha) Y`` for ``iterations`` steps, with ``Y`` the one-hot seeds. Memory is
    O(N * neighbours); the exact kNN search is O(N^2 E) time, fine for the tens of thousands of clips of a
    labelling pool.

    Args:
        embeddings: [N, E] clip embeddings.
        seeds: [N] class index of labelled clips, -1 for unlabelled ones.
        num_classes: C.
        neighbours: k. alpha: in (0, 1). iterations: >= 1.

    Returns:
        [N, C] spread class shares (rows sum to 1; uniform for a clip no label reached).
    """
    from scipy import sparse

    x = np.ascontiguousarray(embeddings, dtype=np.float32).copy()
    n = len(x)
    if n < 2:
        raise ValueError(f"label spreading needs at least 2 clips, got {n}")
    faiss.normalize_L2(x)
    k = min(neighbours + 1, n)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sims, nbrs = index.search(x, k)
    rows = np.repeat(np.arange(n), k)
    w = np.maximum(sims.reshape(-1), 0.0)
    keep = (nbrs.reshape(-1) != rows) & (nbrs.reshape(-1) >= 0)  # no self loops
    graph = sparse.csr_matrix((w[keep], (rows[keep], nbrs.reshape(-1)[keep])), shape=(n, n))
    graph = graph.maximum(graph.T)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0)
    s = sparse.diags(inv_sqrt) @ graph @ sparse.diags(inv_sqrt)
    y = np.zeros((n, num_classes))
    labelled = seeds >= 0
    y[np.flatnonzero(labelled), seeds[labelled]] = 1.0
    f = y.copy()
    for _ in range(iterations):
        f = alpha * (s @ f) + (1.0 - alpha) * y
    total = f.sum(axis=1, keepdims=True)
    return np.where(total > 0, f / np.maximum(total, 1e-300), 1.0 / num_classes)


def pseudo_labels(cfg: SemiSupervisedConfig, ids: np.ndarray, probs: np.ndarray, embeddings: np.ndarray,
                  labelled: dict[str, str | None], class_names: list[str],
                  exclude: set[str] | None = None) -> pa.Table:
    """The round's pseudo-labels (:data:`PSEUDO_SCHEMA`), from the previous round's scores.

    Args:
        cfg: the method and its settings (``cfg.enabled`` must be true).
        ids: [N] scored clip ids. probs: [N, C] their class probabilities. embeddings: [N, E].
        labelled: the ledger's ``utt_id -> label`` as of this round (these clips never get a pseudo-label, and
            seed the propagation).
        class_names: ``model.labels`` (C names, in the probabilities' order).
        exclude: ids that must never be pseudo-labelled (e.g. clips the oracle cannot label).

    Returns:
        One row per pseudo-labelled clip, sorted by ``utt_id``; at most ``max_ratio * len(labelled)`` rows.
    """
    ids = np.asarray(ids).astype(str)
    index = {c: i for i, c in enumerate(class_names)}
    known = pd.Index(ids).isin(list(labelled))
    unlabelled = ~known
    if exclude:
        unlabelled &= ~pd.Index(ids).isin(list(exclude))
    cap = int(cfg.max_ratio * len(labelled))
    if cfg.method == "confident":
        pos, cls, conf = confident_pseudo_labels(probs, unlabelled, cfg.threshold, cap)
    elif cfg.method == "propagation":
        seeds = np.full(len(ids), -1, np.int64)
        for j in np.flatnonzero(known):
            seeds[j] = index.get(labelled[ids[j]], -1)  # a dimensional-only label seeds nothing
        spread = label_spreading(embeddings, seeds, len(class_names), cfg.neighbours, cfg.alpha, cfg.iterations)
        cls_all, conf_all = spread.argmax(axis=1), spread.max(axis=1)
        pos = balanced_top(cls_all, conf_all, unlabelled & (conf_all >= cfg.threshold), len(class_names), cap)
        cls, conf = cls_all[pos], conf_all[pos]
    else:
        raise ConfigError(f"{_KEY}.method={cfg.method!r} makes no pseudo-labels")
    return pa.table({"utt_id": pa.array(ids[pos].tolist(), pa.string()),
                     "label": pa.array([class_names[int(c)] for c in cls], pa.string()),
                     "confidence": pa.array(np.asarray(conf, np.float64)),
                     "method": pa.array([cfg.method] * len(pos), pa.string())}, schema=PSEUDO_SCHEMA)


def _offers_table(ids: np.ndarray, cls: np.ndarray, conf: np.ndarray) -> pa.Table:
    """One shard's pseudo-label offers: ``utt_id, cls, confidence``."""
    return pa.table({"utt_id": pa.array(np.asarray(ids, dtype=str), pa.string()),
                     "cls": pa.array(np.asarray(cls, np.int64)), "confidence": pa.array(np.asarray(conf, np.float64))})


def _confident_in_shard(path: str, threshold: float, per_class: int, skip: pa.Array) -> pa.Table:
    """One shard's candidates for confident pseudo-labels: per predicted class, its ``per_class`` most confident
    clips at or above ``threshold`` that are not in ``skip`` (ties: id order, the shard's row order)."""
    s = read_shard(path, ["probs"])
    ids = np.asarray(s.ids).astype(str)
    probs = np.asarray(s.probs, np.float64)  # as the gathered round computes it
    labels, conf = probs.argmax(axis=1), probs.max(axis=1)
    eligible = (conf >= threshold) & ~pc.is_in(pa.array(ids, pa.string()), value_set=skip).to_numpy(
        zero_copy_only=False)
    pos = balanced_top(labels, conf, eligible, probs.shape[1], per_class * probs.shape[1])
    return _offers_table(ids[pos], labels[pos], conf[pos])


def _spread_in_shard(path: str, cfg: SemiSupervisedConfig, num_classes: int, seeds: pa.Table, per_class: int,
                     skip: pa.Array) -> pa.Table:
    """One shard's candidates for propagated pseudo-labels: label spreading over the kNN graph of the shard's
    clips joined with every seeding clip (``seeds``: ``utt_id, cls, embedding``), then, per spread class, its
    ``per_class`` most confident clips at or above the threshold that are not in ``skip``."""
    s = read_shard(path, ["embedding"])
    ids = np.asarray(s.ids).astype(str)
    arrow_ids = pa.array(ids, pa.string())  # one shard's ids (at most rows_per_shard), once
    own = ~pc.is_in(arrow_ids, value_set=seeds.column("utt_id")).to_numpy(zero_copy_only=False)
    # the seeds are labelled, so always skipped: only the shard's own clips can be eligible
    open_ = own & ~pc.is_in(arrow_ids, value_set=skip).to_numpy(zero_copy_only=False)
    if not own.any():
        return _offers_table(np.zeros(0, str), np.zeros(0), np.zeros(0))
    # One graph over the shard's clips and the seeds, in id order: on one shard, the gathered round's graph.
    nodes = np.concatenate([ids[own], np.asarray(seeds.column("utt_id").to_pylist(), dtype=str)])
    dim = s.embedding.shape[1]
    seeded = seeds.column("embedding").combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim) \
        if seeds.num_rows else np.zeros((0, dim), np.float32)
    x = np.concatenate([np.asarray(s.embedding)[own], seeded]).astype(np.float32)
    y = np.concatenate([np.full(int(own.sum()), -1, np.int64), seeds.column("cls").to_numpy()])
    free = np.concatenate([open_[own], np.zeros(seeds.num_rows, bool)])
    order = np.argsort(nodes, kind="stable")
    nodes, x, y, free = nodes[order], x[order], y[order], free[order]
    # a lone clip has no neighbour: unreached, uniform (as label_spreading leaves a clip no label reaches)
    spread = label_spreading(x, y, num_classes, cfg.neighbours, cfg.alpha, cfg.iterations) if len(x) > 1 else \
        np.full((len(x), num_classes), 1.0 / num_classes)
    cls, conf = spread.argmax(axis=1), spread.max(axis=1)
    pos = balanced_top(cls, conf, free & (conf >= cfg.threshold), num_classes, per_class * num_classes)
    return _offers_table(nodes[pos], cls[pos], conf[pos])


def _seeding_rows(shards: ScoreShards, labelled: dict[str, str | None], class_names: list[str]) -> pa.Table:
    """``utt_id, cls, embedding`` of the scored clips the ledger gives a class (what propagation seeds from)."""
    index = {c: i for i, c in enumerate(class_names)}
    classed = {str(u): index[v] for u, v in labelled.items() if v in index}  # a dimensional-only label seeds none
    wanted = pa.array(sorted(classed), pa.string())
    parts = [t for t in shards.map(shard_rows, wanted, False) if t.num_rows] if len(wanted) else []
    if not parts:
        return pa.table({"utt_id": pa.array([], pa.string()), "cls": pa.array([], pa.int64()),
                         "embedding": pa.array([], pa.list_(pa.float32()))})
    rows = Scores.from_table(pa.concat_tables(parts)).sorted_by_id()
    ids = rows.ids.astype(str)
    return pa.table({"utt_id": pa.array(ids.tolist(), pa.string()),
                     "cls": pa.array([classed[u] for u in ids], pa.int64()),
                     "embedding": pa.FixedSizeListArray.from_arrays(
                         pa.array(np.asarray(rows.embedding, np.float32).reshape(-1)), rows.embedding.shape[1])})


def shard_pseudo_labels(shards: ScoreShards, cfg: SemiSupervisedConfig, labelled: dict[str, str | None],
                        class_names: list[str], exclude: set[str] | None = None) -> pa.Table:
    """:func:`pseudo_labels` over a round's score shards: each shard offers its top ``cap // C`` per class, and
    the merge keeps the top of the offers by (confidence, then id), the order the gathered round ranks in (its
    pool is sorted by id). No process holds the pool.

    * ``confident``: the same pseudo-labels as the gathered round.
    * ``propagation``: each shard spreads the labels over the kNN graph of its own clips joined with every
      labelled clip (their embeddings broadcast), not over the whole pool's graph: approximate. A clip's
      neighbours are then its nearest among its shard's clips and the labelled ones; on one shard it is the
      gathered graph. The exact search costs O((n + L)^2 E) per shard of n clips and L labelled ones, not
      O(N^2 E) for the pool.

    Raises:
        ConfigError: ``cfg.method`` makes no pseudo-labels.
    """
    per_class = int(cfg.max_ratio * len(labelled)) // len(class_names)
    skip = pa.array(sorted(set(map(str, labelled)) | set(map(str, exclude or ()))), pa.string())
    if cfg.method == "confident":
        offers = shards.map(_confident_in_shard, float(cfg.threshold), per_class, skip)
    elif cfg.method == "propagation":
        offers = shards.map(_spread_in_shard, cfg, len(class_names), _seeding_rows(shards, labelled, class_names),
                            per_class, skip)
    else:
        raise ConfigError(f"{_KEY}.method={cfg.method!r} makes no pseudo-labels")
    offers = [t for t in offers if t.num_rows]
    if not offers:
        return PSEUDO_SCHEMA.empty_table()
    merged = pa.concat_tables(offers)
    ids = np.asarray(merged.column("utt_id").to_pylist(), dtype=object)
    cls, conf = merged.column("cls").to_numpy(), merged.column("confidence").to_numpy()
    keep = []
    for c in range(len(class_names)):
        pos = np.flatnonzero(cls == c)
        keep.append(pos[np.lexsort((ids[pos], -conf[pos]))[:per_class]])
    keep = np.concatenate(keep)
    keep = keep[np.argsort(ids[keep], kind="stable")]  # sorted by id, as the gathered table is
    return pa.table({"utt_id": pa.array(ids[keep].tolist(), pa.string()),
                     "label": pa.array([class_names[int(c)] for c in cls[keep]], pa.string()),
                     "confidence": pa.array(conf[keep], pa.float64()),
                     "method": pa.array([cfg.method] * len(keep), pa.string())}, schema=PSEUDO_SCHEMA)


def round_pseudo_labels(cfg: SemiSupervisedConfig, r: int, ledger, round_dir, class_names: list[str],
                        exclude: set[str], accuracy=None, log=print) -> tuple[pa.Table | None, dict | None]:
    """Round ``r``'s pseudo-labels from round ``r - 1``'s scores (:func:`pseudo_labels`), kept in the round's
    folder as ``pseudo_labels.parquet`` (a resumed round reuses them) and never appended to the ledger.

    Args:
        cfg: ``active.semi_supervised``.
        r: the training round (round 0 has no earlier scores: none).
        ledger: the ledger view as of round ``r``.
        round_dir: ``r -> folder`` of a round.
        class_names: ``model.labels``.
        exclude: clips never pseudo-labelled (those the oracle cannot label).
        accuracy: ``(ids, labels) -> share correct | None`` where the truth is known (a simulation); it is
            reported, never trained on.
        log: where a round without earlier scores says so.

    Returns:
        ``(table, report)``: the pseudo-labels (:data:`PSEUDO_SCHEMA`) and ``{"method", "clips", "per_class",
        "mean_confidence"[, "accuracy"]}``; ``(None, None)`` when off, in round 0, or without earlier scores.
    """
    if not cfg.enabled or r == 0:
        return None, None
    path = round_dir(r) / "pseudo_labels.parquet"
    if exists(path):
        table = read_parquet(path)
    else:
        prev = round_dir(r - 1) / "scores.parquet"
        shards = ScoreShards.open(prev.parent / "scores")
        if shards is not None:  # a sharded round: pseudo-labels are picked shard by shard
            table = shard_pseudo_labels(shards, cfg, ledger.labels(), class_names, exclude)
        elif not exists(prev):
            log(f"  pseudo-labels: round {r - 1} left no scores.parquet; round {r} trains on the ledger alone")
            return None, None
        else:
            scores = Scores.load(prev)
            table = pseudo_labels(cfg, scores.ids, scores.probs, scores.embedding, ledger.labels(), class_names,
                                  exclude=exclude)
        write_parquet_atomic(path, table)
    labels = table.column("label").to_pylist()
    report = {"method": cfg.method, "clips": table.num_rows,
              "per_class": {c: labels.count(c) for c in class_names},
              "mean_confidence": round(float(np.mean(table.column("confidence").to_numpy())), 4)
              if table.num_rows else None}
    if accuracy is not None:
        acc = accuracy(table.column("utt_id").to_pylist(), labels)
        report["accuracy"] = None if acc is None else round(acc, 4)
    return table, report


class TrainingTargets:
    """A round's training targets (ledger rows plus pseudo-labels), read as a ledger view is read by training.

    Args:
        table: rows in :data:`~ser_models.data.ledger.TARGETS_SCHEMA`.
    """

    def __init__(self, table: pa.Table):
        self._table = table

    @classmethod
    def of(cls, ledger, pseudo: pa.Table) -> TrainingTargets:
        """The ledger view's targets followed by the pseudo-labelled rows (no dimensional values)."""

        n = pseudo.num_rows
        cols = {"utt_id": pseudo.column("utt_id"), "label": pseudo.column("label")}
        cols.update({f.name: pa.nulls(n, f.type) for f in TARGETS_SCHEMA if f.name not in cols})
        rows = pa.table(cols).select(TARGETS_SCHEMA.names).cast(TARGETS_SCHEMA)
        return cls(pa.concat_tables([ledger.targets(), rows]))

    def targets(self) -> pa.Table:
        return self._table

    def labels(self) -> dict[str, str | None]:
        return dict(zip(self._table.column("utt_id").to_pylist(), self._table.column("label").to_pylist()))

    def __len__(self) -> int:
        return self._table.num_rows
