"""The AFTER active-learning loop: train, evaluate, score, select, label, persist; resumable round by round.

Run layout under ``output_dir``::

    labels/ledger.parquet          the truth: which clip got which label in which round
    rounds/initial/selection.parquet
    rounds/round=003/train/        Ray Train run (checkpoint/, metrics.json, confusion.png)
    rounds/round=003/scores.parquet
    rounds/round=003/stop_set.parquet    the round's predictions on the fixed stop set (stopping criteria)
    rounds/round=003/pseudo_labels.parquet  pseudo-labels this round trained on (never in the ledger)
    rounds/round=003/selection.parquet   clips picked after training round 3 (labelled as round 4)
    rounds/round=003/to_label.csv  (file oracle only)
    rounds/round=003/metrics.json  written last: the round is finished
    metrics.jsonl                  one line per finished round
    report/learning_curve.png, report/confusion_round=003.png

Resume: a finished round (its ``metrics.json`` exists) is skipped; an unfinished one is redone from its
inputs. Training resumes from Ray Train's last epoch checkpoint, and a stored ``selection.parquet`` is
reused, so a redone round labels exactly the clips it would have labelled; re-appending them to the ledger
is a no-op.

References:
    Li et al., "Active Learning with Task Adaptation Pre-training for Speech Emotion Recognition",
    arXiv 2405.00307 (AFTER).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models.active.feature_cache import (
    FeatureCache,
    cache_kind,
    cache_states,
    cache_supported,
    feature_cache_key,
)
from ser_models.active.loop_config import ActiveConfig
from ser_models.active.oracles import FileOracle, SimulatedOracle, as_annotations, check_annotations
from ser_models.active.pseudo_labels import pseudo_labels
from ser_models.active.scorer import Scores, score_dataset
from ser_models.active.stopping import decide, stop_set_ids
from ser_models.active.strategies import build_strategy
from ser_models.config import to_dict
from ser_models.data.ledger import TARGETS_SCHEMA, LabelLedger
from ser_models.evaluation import headline_metric
from ser_models.exceptions import ConfigError, LabellingPending, OracleError, PoolExhaustedError
from ser_models.failpoints import failpoint
from ser_models.io import (
    StoragePath,
    exists,
    read_bytes,
    read_json,
    read_parquet,
    save_figure,
    storage_path,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.metrics import plot_confusion
from ser_models.model import reads_speakers
from ser_models.training.config import ScalingSettings, TrainConfig


@dataclass
class RoundReport:
    """What one round did. ``seconds`` holds per-stage wall times (train, score, select, label);
    ``labelled_seconds`` the audio labelled so far; ``stopping`` the stopping signals
    (:class:`~ser_models.active.stopping.StopDecision`); ``pseudo_labels`` what the round trained on besides
    the ledger; ``features`` what ``model.feature_norm=auto`` chose for the round's model (and the CV scores
    it chose by)."""

    round: int
    labelled: int
    fraction: float
    dev: dict | None
    test: dict | None
    selected: int
    seconds: dict = field(default_factory=dict)
    labelled_seconds: float | None = None
    stopping: dict | None = None
    pseudo_labels: dict | None = None
    strategy: dict | None = None
    features: dict | None = None

    def line(self) -> str:
        def m(split, d):
            if not d:
                return f"{split} -"
            parts = [f"UA {d['ua']:.3f} WA {d['wa']:.3f} F1 {d['macro_f1']:.3f}"] if "ua" in d else []
            parts += [f"CCC {d['ccc']:.3f}"] if "ccc" in d else []
            return f"{split} " + " ".join(parts)

        stages = " ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        extra = ""
        if self.pseudo_labels:
            extra += f" | pseudo {self.pseudo_labels['clips']}"
        if self.stopping and self.stopping.get("kappa") is not None:
            extra += f" | kappa {self.stopping['kappa']:.3f}"
        if self.strategy:
            extra += f" | auto -> {self.strategy['chosen']}"
        if self.features:
            extra += f" | norm {self.features['feature_norm']}"
        hours = f" {self.labelled_seconds / 3600:.2f} h" if self.labelled_seconds else ""
        return (f"round {self.round:>2} | labelled {self.labelled:>5} ({100 * self.fraction:5.1f}%{hours}) | "
                f"{m('dev', self.dev)} | {m('test', self.test)} | +{self.selected:<4}{extra} | {stages}")

    def to_json(self) -> dict:
        return {"round": self.round, "labelled": self.labelled, "fraction": self.fraction, "dev": self.dev,
                "test": self.test, "selected": self.selected, "seconds": self.seconds,
                "labelled_seconds": self.labelled_seconds, "stopping": self.stopping,
                "pseudo_labels": self.pseudo_labels, "strategy": self.strategy, "features": self.features}


class ActiveLearningLoop:
    """Runs AFTER over a prepared pool.

    Args:
        pool: an opened ``ser_models.data.Pool``.
        output_dir: the run folder (local path or ``pyarrow.fs`` URI such as ``s3://bucket/run``).
        model_cfg: ModelConfig (its ``encoder.checkpoint`` is the TAPT encoder when TAPT ran).
        train_cfg / scaling: fine-tuning settings for every round.
        active: the loop's budget, strategy, scorer and oracle.
        oracle: an ``Oracle`` to use instead of the one ``active.oracle`` names (e.g. labels held outside
            the pool).
        cross_lingual: a ``CrossLingualConfig`` (``loop_config``): the loop labels the target group's clips,
            trains on them plus the source group's labelled clips, optionally anchoring the two; None = off.
        pool_checked: the caller already ran the pool's checks for this config (``Pool.check_targets`` on
            dev/test, :func:`check_cross_lingual`), as ``jobs.after`` does before Ray starts; skip them here.
        plots: draw the confusion matrix and learning curve PNGs of every round (many-seed runs skip them).
    """

    def __init__(self, pool, output_dir: str | Path, model_cfg, train_cfg: TrainConfig, scaling: ScalingSettings,
                 active: ActiveConfig, oracle=None, verbose: bool = True, cross_lingual=None,
                 pool_checked: bool = False, plots: bool = True):
        self.pool = pool
        self.out: StoragePath = storage_path(output_dir)
        self.model_cfg, self.train_cfg, self.scaling, self.active = model_cfg, train_cfg, scaling, active
        self.verbose, self.plots = verbose, plots
        self._oracle_override = oracle
        self._unlabelable_ids: set[str] | None = None
        self._dropped_table: pd.DataFrame | None = None
        self._simulated: SimulatedOracle | None = None
        self.in_process = scaling.backend == "in_process"
        self.ledger = LabelLedger(self.out / "labels" / "ledger.parquet")
        self.strategy = build_strategy(active.strategy)
        self.labels = list(model_cfg.labels)
        self.dimensions = list(model_cfg.dimensions)
        self.cross = cross_lingual if cross_lingual is not None and cross_lingual.enabled else None
        # The group the loop labels and is evaluated on ({} = the whole pool).
        self.where = {self.cross.group_column: self.cross.target} if self.cross else {}
        # Evaluation labels come from the pool; training labels only ever from the ledger (and, cross-lingual,
        # the source group's own labels).
        if not pool_checked:
            pool.check_targets(model_cfg, ("dev", "test"))
        meta = pool.metadata(columns=["utt_id", "path", "duration"], split="train", where=self.where)
        if meta.empty:
            raise ConfigError(f"the training split of pool {pool.root} has no clips"
                              + (f" with {self.where}" if self.where else ""))
        self.train_ids = sorted(meta["utt_id"].astype(str))
        self.clip_info = meta
        # Seconds per clip: what labelling it costs (the ledger records them; hour budgets spend them).
        self.durations = pd.Series(meta["duration"].astype(float).to_numpy(), index=meta["utt_id"].astype(str))
        self.unit = "seconds" if active.budget_hours else "clips"
        self.targets = (active.seconds_targets(float(self.durations.sum())) if self.unit == "seconds"
                        else active.targets(len(self.train_ids)))
        cap = active.stopping.max_rounds
        if cap is not None and cap < len(self.targets):
            self.targets = self.targets[:cap]  # the round cap: later rounds are never run or labelled for
        if active.semi_supervised.enabled and not self.labels:
            raise ConfigError("active.semi_supervised makes class pseudo-labels, but model.labels is empty: set "
                              "active.semi_supervised.method=none for a dimensional-only model")
        # The fixed clips whose predictions, round after round, tell whether the model still changes its mind.
        self.stop_ids = stop_set_ids(self.train_ids, active.stopping.stop_set_size, active.seed) if self.labels \
            else []
        if self.cross and not pool_checked:
            check_cross_lingual(pool, self.cross, model_cfg)
        self.cache = self._open_cache()
        if model_cfg.feature_norm in ("pool", "speaker", "auto") and self.cache is None:
            raise ConfigError(f"model.feature_norm={model_cfg.feature_norm} takes its statistics from the "
                              "frozen-encoder feature cache: set active.feature_cache=on (model.adapter.kind=frozen), "
                              "or model.feature_norm=none")
        self._dev_test = None
        self.speaker_summary: dict | None = None  # model.feature_norm=speaker: speakers and clips per speaker
        self._anchors: dict | None = None
        self._source_label_list: list | None = None

    # ----------------------------------------------------------------------------------------- helpers
    def log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    def round_dir(self, r: int) -> StoragePath:
        return self.out / "rounds" / f"round={r:03d}"

    def _open_cache(self) -> FeatureCache | None:
        mode = self.active.feature_cache
        reason = cache_supported(self.model_cfg) or (
            "cross_lingual trains on the source group's audio next to the ledger's" if self.cross else None)
        if mode == "off" or (mode == "auto" and reason):
            return None
        if reason:
            raise ConfigError(f"active.feature_cache=on but {reason}")
        from ser_models.encoders import build_encoder

        encoder = build_encoder(self.model_cfg.encoder)
        cache = FeatureCache(self.active.feature_cache_dir or self.out / "feature_cache",
                             feature_cache_key(self.pool, encoder), kind=cache_kind(self.model_cfg),
                             states=cache_states(self.model_cfg, encoder, self.active.feature_cache_layers))
        self._num_layers = encoder.num_layers
        return cache

    def _oracle(self, r: int):
        if self._oracle_override is not None:
            return self._oracle_override
        if self.active.oracle == "label_studio":
            from ser_models.active.label_studio_oracle import LabelStudioOracle

            return LabelStudioOracle(self.active.label_studio, self.labels, self.dimensions,
                                     tuple(self.model_cfg.dimension_range), self.clip_info,
                                     self.round_dir(r) if r >= 0 else self.out / "rounds" / "initial",
                                     run_name=self._run_label(), log=self.log)
        if self.active.oracle == "file":
            return FileOracle(self.round_dir(r) if r >= 0 else self.out / "rounds" / "initial", self.labels,
                              self.clip_info, dimensions=self.dimensions,
                              value_range=tuple(self.model_cfg.dimension_range))
        if self._simulated is None:
            # The only place that reads the pool's own training labels: it plays the human annotator.
            truth = self.pool.metadata(columns=["utt_id", "label", *self.dimensions], split="train")
            self._simulated = SimulatedOracle(truth, labels=self.labels, dimensions=self.dimensions)
        return self._simulated

    def _unlabelable(self) -> set[str]:
        """Training clips the oracle cannot label (simulated: no true label, or one outside model.labels):
        never selected, so the run neither crashes at labelling time nor writes a foreign label."""
        if self._unlabelable_ids is None:
            check = getattr(self._oracle(-1), "unlabelable", None)
            self._unlabelable_ids = set(check(self.train_ids)) if check is not None else set()
            self._unlabelable_ids |= set(self._dropped()["utt_id"])
            if self._unlabelable_ids:
                self.log(f"  {len(self._unlabelable_ids)} training clips cannot be labelled by the oracle (no true "
                         f"label, one outside model.labels, or no value of a model.dimensions) and are never "
                         "selected")
        return self._unlabelable_ids

    def _datasets(self, ledger):
        """Ray Datasets for a training round: labelled train (``ledger``'s labels: a ledger view or a
        :class:`_Targets` of ledger + pseudo-labels), dev, test."""
        if self.cache is None:
            if self._dev_test is None:
                # Read once per run, not once per round: evaluation splits never change.
                self._dev_test = {s: self.pool.dataset(s, where=self.where).materialize() for s in ("dev", "test")}
            train = self.pool.labelled(ledger)
            if self.cross:
                return {**self._cross_lingual_feeds(train), **self._dev_test}, None
            return {"train": train, **self._dev_test}, None
        if self._dev_test is None:
            cols = ["utt_id", "label", *self.dimensions]
            meta = {s: self.pool.metadata(columns=cols, split=s) for s in ("dev", "test")}
            # Read from the cache once per run (evaluation splits never change), filtered on the workers.
            self._dev_test = {s: self.cache.dataset(targets=pa.Table.from_pandas(m[cols], preserve_index=False))
                              .materialize() for s, m in meta.items()}
        feeds = {"train": self.cache.dataset(targets=ledger.targets()), **self._dev_test}
        return feeds, self.cache.shape

    def _cross_lingual_feeds(self, labelled) -> dict:
        """The round's training feed (the ledger's target clips + the source group's labelled clips) and, with
        anchoring, the unlabelled target clips (``anchor_target``)."""
        from ser_models.training.batching import training_columns

        cols = training_columns(False, self.dimensions, self.model_cfg.text.enabled)
        source = self.pool.dataset("train", where={self.cross.group_column: self.cross.source})
        feeds = {"train": labelled.select_columns(cols).union(source.select_columns(cols))}
        if self.cross.anchoring.weight > 0:
            from ser_models.analysis.anchoring import sample_target_ids

            ids = sample_target_ids(self.train_ids, self.cross.anchoring.max_target_clips, self.active.seed)
            feeds["anchor_target"] = self.pool.dataset("train", where={**self.where, "utt_id": ids})
        return feeds

    def _anchoring(self) -> dict | None:
        """The ``anchoring`` argument of ``train_model`` (None without anchoring); anchors resolved once."""
        if not self.cross or self.cross.anchoring.weight <= 0:
            return None
        if self._anchors is None:
            from ser_models.analysis.anchoring import resolve_anchors
            from ser_models.encoders import build_encoder

            c = self.cross
            self._anchors = resolve_anchors(self.pool, c.anchoring, self.model_cfg, "train", c.group_column, c.source,
                                            c.target, self.out / "anchors.json",
                                            build_encoder(self.model_cfg.encoder).num_layers, seed=self.active.seed,
                                            log=self.log)
        return {"groups": self._anchors["groups"], "weight": self.cross.anchoring.weight,
                "batch_size": self.cross.anchoring.target_batch_size or max(self.train_cfg.batch_size, 2)}

    def _score_input(self):
        """Every training clip (labelled ones too: k-center uses them as centres), without labels."""

        if self.cache is None:
            return self.pool.dataset("train", where=self.where), None
        return self.cache.dataset(ids=self.train_ids), self.cache.shape

    # -------------------------------------------------------------------------------------------- stages
    def initial(self) -> None:
        """Label the initial set (round 0 of the ledger) unless the ledger already has it."""
        folder = self.out / "rounds" / "initial"
        sel_path = folder / "selection.parquet"
        if len(self.ledger) and (not exists(sel_path) or set(read_parquet(sel_path)["utt_id"].to_pylist())
                                 <= self.ledger.ids() | set(self._dropped()["utt_id"])):
            return  # labelled (a Label Studio round may have handed over part of it: then it goes on below)
        n = self._clips_wanted(self.targets[0], set())
        t0 = time.perf_counter()
        if exists(sel_path):
            ids = read_parquet(sel_path)["utt_id"].to_pylist()
        elif self.active.initial == "random":
            rng = np.random.default_rng([self.active.seed, 0])
            skip = self._unlabelable()
            candidates = [i for i in self.train_ids if i not in skip]
            if len(candidates) < n:
                raise PoolExhaustedError(f"the initial set needs {n} clips but only {len(candidates)} training "
                                         "clips can be labelled")
            ids = rng.choice(candidates, size=n, replace=False).tolist()
            ids = sorted(self._within_budget(ids, self.targets[0], "the initial set"))
        else:
            # AFTER's cold start: cluster the (TAPT) encoder's pooled features of the unlabelled pool.
            ds, shape = self._score_input()
            scores = score_dataset(ds, None, self.active.scorer, model_cfg=to_dict(self.model_cfg),
                                   feature_shape=shape, seed=self.active.seed, verbose=self.verbose,
                                   in_process=self.in_process, keep_pooled=True,
                                   transcripts=shape is None and self.model_cfg.text.enabled,
                                   speakers=reads_speakers(self.model_cfg))
            from ser_models.active.config import StrategyConfig
            from ser_models.active.strategies.base import ScoredPool

            s = self.active.strategy
            cold = build_strategy(StrategyConfig(name="cluster_cold_start", kmeans_iters=s.kmeans_iters,
                                                 num_clusters=s.num_clusters, max_clusters=s.max_clusters,
                                                 cold_start_dim=s.cold_start_dim, num_threads=s.num_threads))
            scored = ScoredPool(ids=scores.ids.astype(str), probs=scores.probs, embeddings=scores.pooled)
            ids = self._within_budget(cold.query(scored, self._unlabelable(), n, self.active.seed), self.targets[0],
                                      "the initial set")
        if not exists(sel_path):
            write_parquet_atomic(sel_path, pa.table({"utt_id": pa.array(list(ids), pa.string())}))
        failpoint("after_initial_selection")
        self._label(ids, 0, -1)
        self.log(f"initial set: {len(ids)} clips ({self.active.initial}) in {time.perf_counter() - t0:.1f}s")

    def _label(self, ids: list[str], ledger_round: int, oracle_round: int) -> None:
        oracle = self._oracle(oracle_round)
        if hasattr(oracle, "collect"):  # people annotating on a server: finished clips go in as they finish
            self._collect(oracle, [str(i) for i in ids], ledger_round)
            return
        frame = as_annotations(oracle.label(list(ids), ledger_round), ids, self.dimensions)
        self._append(frame, ledger_round, oracle.name)

    def _append(self, frame: pd.DataFrame, ledger_round: int, oracle: str) -> None:
        """Check an annotation frame (index utt_id) and append it to the ledger, with its ``annotator``,
        ``time`` and ``soft_label`` columns when it has them."""
        check_annotations(frame, self.labels, self.dimensions, tuple(self.model_cfg.dimension_range),
                          f"{oracle} oracle, round {ledger_round}")
        ids = [str(i) for i in frame.index]
        extra = {key: frame[col].tolist() for key, col in (("annotators", "annotator"), ("times", "time"),
                                                            ("soft_labels", "soft_label")) if col in frame.columns}
        self.ledger.append(ledger_round, ids, frame["label"].tolist(), oracle=oracle,
                           dimensions={d: frame[d].tolist() for d in self.dimensions},
                           seconds=self.durations.reindex(pd.Index(ids)).tolist(), **extra)

    def _run_label(self) -> str:
        """Names the run's default Label Studio project: the folder's name and a hash of its full path, so two
        runs whose folders share a name never share a project."""
        import hashlib

        return f"{self.out.name} {hashlib.sha1(str(self.out).encode()).hexdigest()[:8]}"

    def _collect(self, oracle, ids: list[str], ledger_round: int) -> None:
        """Hand the oracle's finished clips to the ledger and its dropped ones to ``labels/dropped.parquet``;
        stop the job (LabellingPending) while any clip is still being annotated. A decision is final: clips
        already in the ledger or dropped are not read again (append-only; later edits in the tool are ignored)."""
        decided = (self.ledger.ids() | set(self._dropped()["utt_id"])) & set(ids)
        got = oracle.collect(ids, ledger_round, decided=decided)
        a = oracle.save(got)  # the round's agreement so far (every annotation read in this round)
        fresh = got.frame[~got.frame.index.isin(decided)]
        if len(fresh):
            self._append(fresh, ledger_round, oracle.name)
        if got.dropped:
            self._record_dropped(got.dropped, ledger_round)
        agreement = (f"; {a['multi_annotated']} clips with several annotators: majority share "
                     f"{a['majority_share']:.2f}, pairwise agreement {a['pairwise']:.2f}, Krippendorff alpha "
                     + ("n/a" if a["alpha"] is None else f"{a['alpha']:.2f}")) if a["multi_annotated"] else ""
        for dim, d in (a.get("dimensions") or {}).items():
            if d["alpha"] is not None:
                agreement += f"; {dim}: alpha {d['alpha']:.2f}, mean sd {d['mean_sd']:.2f}"
        self.log(f"  labels for round {ledger_round}: {len(fresh)} new in the ledger, {len(decided)} decided before, "
                 f"{len(got.dropped)} dropped, {len(got.pending)} pending{agreement}")
        if got.pending:
            raise LabellingPending(oracle.pending_message(got, ledger_round))

    def _soft(self, training) -> bool:
        """Train on soft labels: the round's targets hold some (several annotators, ``aggregate=soft`` or
        ``on_disagreement=soft``). Cross-lingual rounds train on the plurality label (the source group has none)."""
        import pyarrow.compute as pc

        targets = training.targets()
        if "soft_label" not in targets.column_names or not targets.num_rows:
            return False
        has = bool(pc.any(pc.is_valid(targets["soft_label"])).as_py())
        if has and self.cross:
            self.log("  cross_lingual: training on the plurality label of soft-labelled clips")
            return False
        if has:
            n = int(pc.sum(pc.is_valid(targets["soft_label"])).as_py())
            self.log(f"  training on soft labels: {n} of {targets.num_rows} clips carry their annotators' vote shares")
        return has

    def _dropped(self) -> pd.DataFrame:
        """Clips an oracle dropped (``utt_id, round, reason``): never labelled, never selected again. Read from
        ``labels/dropped.parquet`` once per run; :meth:`_record_dropped` keeps the copy current."""
        if self._dropped_table is None:
            path = self.out / "labels" / "dropped.parquet"
            self._dropped_table = read_parquet(path).to_pandas() if exists(path) else pd.DataFrame(
                {"utt_id": pd.Series(dtype=str), "round": pd.Series(dtype="int64"), "reason": pd.Series(dtype=str)})
        return self._dropped_table

    def _record_dropped(self, dropped: dict[str, str], ledger_round: int) -> None:
        old = self._dropped()
        new = pd.DataFrame({"utt_id": list(dropped), "round": ledger_round, "reason": list(dropped.values())})
        new = new[~new["utt_id"].isin(set(old["utt_id"]) | self.ledger.ids())]
        if new.empty:
            return
        table = pd.concat([old, new], ignore_index=True)
        table = table.astype({"round": "int64"})
        write_parquet_atomic(self.out / "labels" / "dropped.parquet", pa.Table.from_pandas(table, preserve_index=False))
        self._dropped_table = table
        if self._unlabelable_ids is not None:
            self._unlabelable_ids |= set(new["utt_id"])
        self.log(f"  {len(new)} clips dropped in round {ledger_round} (never selected again): "
                 + ", ".join(f"{u!r} ({why})" for u, why in list(dropped.items())[:5]))

    def _clips_wanted(self, target, labelled: set[str]) -> int:
        """How many clips to ask the strategy for to reach ``target`` (clips, or seconds of audio).

        With an hour budget it asks for a quarter more than the mean unlabelled duration suggests (at least one),
        and :meth:`_within_budget` then keeps the picks, in pick order, that fit.
        """
        if self.unit == "clips":
            return int(target) - len(labelled)
        remaining = float(target) - float(self.durations.reindex(pd.Index(list(labelled))).sum())
        free = self.durations.drop(index=list(labelled | self._unlabelable()), errors="ignore")
        if free.empty:
            raise PoolExhaustedError("no unlabelled training clip is left to label")
        return int(min(len(free), max(1, np.ceil(1.25 * remaining / free.mean()) + 1)))

    def _within_budget(self, ids: list[str], target, what: str, labelled: set[str] | None = None) -> list[str]:
        """The picks that fit an hour budget, in pick order (a clip too long for what is left is skipped, later
        shorter ones may still fit); ``ids`` unchanged with a clip budget."""
        if self.unit == "clips":
            return list(ids)
        left = float(target) - float(self.durations.reindex(pd.Index(list(labelled or ()))).sum())
        keep = []
        for i in ids:
            d = float(self.durations[str(i)])
            if d <= left + 1e-9:
                keep.append(i)
                left -= d
        if not keep:
            raise ConfigError(f"active.budget_hours leaves {max(left, 0.0):.1f} s for {what}, shorter than every "
                              "clip the strategy picked: widen the steps between active.budget_hours")
        return keep

    def step(self, r: int) -> RoundReport:
        """Run training round ``r`` (train, evaluate, then score/select/label the next batch)."""
        from ser_models.training import train_model

        folder = self.round_dir(r)
        if exists(folder / "metrics.json"):
            return _report_from_json(read_json(folder / "metrics.json"))
        seconds = {}
        # Rounds <= r only: a run killed after appending round r + 1's labels but before this round's
        # metrics.json redoes round r on the labels it had, then re-appends the stored selection (a no-op).
        ledger = self.ledger.as_of(r)
        self._check_budget(r, ledger)
        t0 = time.perf_counter()
        pseudo, pseudo_report = self._pseudo_labels(r, ledger)
        training = ledger if pseudo is None else _Targets(pa.concat_tables([
            ledger.targets(), _as_targets(pseudo)]))
        feeds, shape = self._datasets(training)
        counts = self._class_counts(training)
        init = (self.round_dir(r - 1) / "train" / "checkpoint") if (self.active.warm_start and r > 0) else None
        result = train_model(self.model_cfg, self.train_cfg, self.scaling, feeds, folder / "train",
                             class_counts=counts, feature_shape=shape, init_checkpoint=init,
                             run_name=f"round{r:03d}", train_rows=len(training) + self._source_rows(),
                             verbose=self.verbose, anchoring=self._anchoring(), soft_labels=self._soft(training))
        seconds["train"] = time.perf_counter() - t0
        failpoint("after_train")
        selected = 0
        last = r == len(self.targets) - 1
        scores = None
        if not last:
            t0 = time.perf_counter()
            scores = self._score_pool(result.checkpoint_dir, r, folder / "scores.parquet", self.verbose)
            failpoint("after_score")
            seconds["score"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        stopping = self._stopping(r, ledger, scores, result.checkpoint_dir, last)
        seconds["stop"] = time.perf_counter() - t0
        if stopping and stopping["message"]:
            self.log(f"  stopping: {stopping['message']}" + (" -> the loop ends here" if stopping["stop"] else ""))
        choice = None
        if not last and not (stopping and stopping["stop"]):
            t0 = time.perf_counter()
            sel_path, choice_path = folder / "selection.parquet", folder / "strategy.json"
            if exists(sel_path):
                ids = read_parquet(sel_path)["utt_id"].to_pylist()
                choice = read_json(choice_path) if exists(choice_path) else None
            else:
                # Dropped clips were sent to annotators: they spent the budget as labelled ones did.
                have = ledger.ids() | set(self._dropped().query("round <= @r")["utt_id"])
                n = self._clips_wanted(self.targets[r + 1], have)
                if self.active.query_batch and n > self.active.query_batch:
                    ids, choice = self._query_in_batches(r, scores, have, n, result.metrics)
                else:
                    ids, choice = self._query(scores, ledger, have, n, seed=self.active.seed * 1000 + r)
                    ids = self._within_budget(ids, self.targets[r + 1], f"round {r + 1}", have)
                if choice is not None:  # auto: kept before the selection, so a resumed round reports it too
                    write_json_atomic(choice_path, choice)
                write_parquet_atomic(sel_path, pa.table({"utt_id": pa.array(list(ids), pa.string())}))
            if choice is not None:
                sims = " ".join(f"{k} {v:.3f}" for k, v in choice["simulated_ua"].items())
                self.log(f"  auto: round {r + 1} queries with {choice['chosen']} ({choice['reason']}"
                         + (f"; simulated UA {sims}" if sims else "") + ")")
            failpoint("after_select")
            seconds["select"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            self._label(ids, r + 1, r)
            failpoint("after_label")
            seconds["label"] = time.perf_counter() - t0
            selected = len(ids)
        m = result.metrics
        report = RoundReport(round=r, labelled=len(ledger), fraction=len(ledger) / len(self.train_ids),
                             dev=_slim(m.get("dev")), test=_slim(m.get("test")), selected=selected,
                             seconds=seconds, labelled_seconds=round(ledger.seconds(), 3), stopping=stopping,
                             pseudo_labels=pseudo_report, strategy=choice, features=_feature_choice(m))
        split = "test" if m.get("test") else "dev"
        if self.plots and m.get(split) and "confusion" in m[split]:
            plot_confusion(m[split]["confusion"], self.labels, self.out / "report" / f"confusion_round={r:03d}.png",
                           title=f"round {r} ({100 * report.fraction:.0f}% labelled) {split} UA {m[split]['ua']:.3f}")
        write_json_atomic(folder / "metrics.json", report.to_json())  # last: marks the round finished
        failpoint("after_metrics")
        return report

    def _query(self, scores: Scores, ledger, exclude: set[str], n: int, seed: int) -> tuple[list[str], dict | None]:
        """``n`` clips from the strategy, none of ``exclude``; returns ``(ids, auto's choice or None)``."""
        costs = None
        if self.active.strategy.cost_aware:
            costs = self.durations.reindex(pd.Index(scores.ids.astype(str))).to_numpy()
        scored = scores.as_scored_pool(self._known_targets(scores.ids, ledger), costs=costs,
                                       labels=self._known_labels(scores.ids, ledger))
        ids = self.strategy.query(scored, exclude | self._unlabelable(), n, seed=seed)
        return list(ids), getattr(self.strategy, "last_choice", None)

    def _query_in_batches(self, r: int, scores: Scores, have: set[str], n: int,
                          round_metrics: dict) -> tuple[list[str], dict | None]:
        """Round ``r + 1``'s ``n`` clips in batches of ``active.query_batch``: each batch is labelled at once
        (stamped round ``r + 1``), and the next one is chosen by a model retrained on every label so far.

        A model that sees each small batch's labels asks better next questions than one that picks the whole
        step blind (on held-out features, margin sampling gained about twice as much over random). Each batch's
        selection, model and scores are kept in ``rounds/round=r/batch=b/``, so a killed run resumes at the
        batch it was in. A strategy that ignores the model (random) skips the retraining. With
        ``train.l2_c=auto`` the batch models reuse the C that the round's cross-validation chose (on the
        round's labelled clips), which makes each retrain a single solve. Returns ``(ids in pick order, the
        first batch's auto choice or None)``.
        """
        q, picked, choice, b = self.active.query_batch, [], None, 0
        train_cfg = self.train_cfg
        round_c = ((round_metrics.get("history") or [{}])[-1]).get("l2_c")
        if str(train_cfg.l2_c) == "auto" and round_c is not None:
            train_cfg = dataclasses.replace(train_cfg, l2_c=float(round_c))
        while len(picked) < n:
            folder = self.round_dir(r) / f"batch={b:03d}"
            path = folder / "selection.parquet"
            if exists(path):
                ids = read_parquet(path)["utt_id"].to_pylist()
            else:
                if b and self.strategy.uses_model:
                    scores = self._retrain_and_score(r, folder, train_cfg)
                labelled = self.ledger.as_of(r + 1)  # the round's labels plus this round's earlier batches
                ids, batch_choice = self._query(scores, labelled, have | set(picked), min(q, n - len(picked)),
                                                seed=(self.active.seed * 1000 + r) * 1000 + b)
                choice = choice or batch_choice
                write_parquet_atomic(path, pa.table({"utt_id": pa.array(ids, pa.string())}))
            self._label(ids, r + 1, r)  # now: the next batch's model trains on these labels
            failpoint("after_query_batch")
            picked += ids
            b += 1
        self.log(f"  queried {len(picked)} clips in {b} batches of <= {q}, retraining between batches")
        return picked, choice

    def _retrain_and_score(self, r: int, folder, train_cfg: TrainConfig) -> Scores:
        """Train on the ledger as of round ``r + 1`` (labels alone: no pseudo-labels, no dev or test) and score
        the pool with that model; kept in ``folder`` (``scores.parquet`` marks it done)."""
        from ser_models.training import train_model

        scores_path = folder / "scores.parquet"
        if exists(scores_path):
            return Scores.load(scores_path)
        labelled = self.ledger.as_of(r + 1)
        feeds, shape = self._datasets(labelled)
        feeds = {name: ds for name, ds in feeds.items() if name not in ("dev", "test")}
        result = train_model(self.model_cfg, train_cfg, self.scaling, feeds, folder / "train",
                             class_counts=self._class_counts(labelled), feature_shape=shape,
                             run_name=f"round{r:03d}_{folder.name.replace('=', '')}",
                             train_rows=len(labelled) + self._source_rows(), verbose=False,
                             anchoring=self._anchoring(), soft_labels=self._soft(labelled))
        return self._score_pool(result.checkpoint_dir, r, scores_path, verbose=False)

    def _score_pool(self, checkpoint_dir, r: int, scores_path, verbose: bool) -> Scores:
        """Round ``r``'s scores of the unlabelled training pool under ``checkpoint_dir``, kept in ``scores_path``
        (read back when it exists: a resumed round does not score again)."""
        if exists(scores_path):
            return Scores.load(scores_path)
        ds, shape = self._score_input()
        scores = score_dataset(ds, checkpoint_dir, self.active.scorer, feature_shape=shape,
                               seed=self.active.seed + r, verbose=verbose, in_process=self.in_process,
                               transcripts=shape is None and self.model_cfg.text.enabled,
                               speakers=reads_speakers(self.model_cfg))
        scores.save(scores_path)
        return scores

    def _check_budget(self, r: int, ledger) -> None:
        """Round ``r`` sees exactly the labels its budget bought (a changed budget would mix two runs)."""
        if not len(ledger):
            raise OracleError(f"round {r} has no labelled clip: the oracle dropped every clip of the initial set "
                              f"(see {self.out / 'labels' / 'dropped.parquet'})")
        dropped = self._dropped()
        # Picked for rounds 0..r but dropped by the annotators (a clip is never both: see _record_dropped).
        lost = len(set(dropped.loc[dropped["round"] <= r, "utt_id"]) - ledger.ids())
        if self.unit == "clips" and len(ledger) + lost != self.targets[r]:
            raise ConfigError(f"round {r} expects {self.targets[r]} labelled clips, the ledger has {len(ledger)} in "
                              f"rounds 0..{r}" + (f" (+ {lost} dropped)" if lost else "")
                              + ": was the budget changed between runs of this output_dir?")
        if self.unit == "seconds" and ledger.seconds() > self.targets[r] + 1e-6:
            raise ConfigError(f"round {r} may use {self.targets[r]:.1f} s of labelled audio, the ledger has "
                              f"{ledger.seconds():.1f} s in rounds 0..{r}: was active.budget_hours changed between "
                              "runs of this output_dir?")

    def _pseudo_labels(self, r: int, ledger) -> tuple[pa.Table | None, dict | None]:
        """Round ``r``'s pseudo-labels (:mod:`~ser_models.active.pseudo_labels`) from round ``r - 1``'s scores,
        stored in the round's folder (a resumed round reuses them) and never appended to the ledger."""
        cfg = self.active.semi_supervised
        if not cfg.enabled or r == 0:
            return None, None
        path = self.round_dir(r) / "pseudo_labels.parquet"
        if exists(path):
            table = read_parquet(path)
        else:
            prev = self.round_dir(r - 1) / "scores.parquet"
            if not exists(prev):
                self.log(f"  pseudo-labels: round {r - 1} left no scores.parquet; round {r} trains on the ledger alone")
                return None, None
            scores = Scores.load(prev)
            table = pseudo_labels(cfg, scores.ids, scores.probs, scores.embedding, ledger.labels(), self.labels,
                                  exclude=self._unlabelable())
            write_parquet_atomic(path, table)
        labels = table.column("label").to_pylist()
        report = {"method": cfg.method, "clips": table.num_rows,
                  "per_class": {c: labels.count(c) for c in self.labels},
                  "mean_confidence": round(float(np.mean(table.column("confidence").to_numpy())), 4)
                  if table.num_rows else None}
        if self._oracle_override is None and self.active.oracle == "simulated":
            # Only the simulated oracle knows the truth; the share is reported, never trained on.
            acc = self._oracle(-1).accuracy(table.column("utt_id").to_pylist(), labels)
            report["accuracy"] = None if acc is None else round(acc, 4)
        return table, report

    def _stopping(self, r: int, ledger, scores: Scores | None, checkpoint_dir, last: bool) -> dict | None:
        """Round ``r``'s stopping signals (:func:`~ser_models.active.stopping.decide`) from its predictions on
        the stop set (taken from the round's pool scores, or scored alone in the last round) and round
        ``r - 1``'s."""
        if not self.stop_ids:
            return decide(self.active.stopping, r, None, None, None, None, last).to_json()
        path = self.round_dir(r) / "stop_set.parquet"
        if exists(path):
            table = read_parquet(path)
            probs = np.asarray(table.column("probs").to_pylist(), np.float32)
        else:
            if scores is None:
                ds, shape = (self.cache.dataset(ids=self.stop_ids), self.cache.shape) if self.cache is not None \
                    else (self.pool.dataset("train", where={**self.where, "utt_id": self.stop_ids}), None)
                scores = score_dataset(ds, checkpoint_dir, dataclasses.replace(self.active.scorer, mc_samples=0),
                                       feature_shape=shape, seed=self.active.seed + r, verbose=False,
                                       in_process=self.in_process, keep_embedding=False,
                                       transcripts=shape is None and self.model_cfg.text.enabled,
                                       speakers=reads_speakers(self.model_cfg))
            pos = pd.Index(scores.ids.astype(str)).get_indexer(self.stop_ids)
            if (pos < 0).any():
                raise ConfigError(f"round {r}: {int((pos < 0).sum())} stop-set clips were not scored")
            probs = scores.probs[pos]
            preds = [self.labels[int(k)] for k in probs.argmax(axis=1)]
            table = pa.table({"utt_id": pa.array(self.stop_ids, pa.string()), "prediction": pa.array(preds),
                              "probs": pa.array(probs.tolist(), pa.list_(pa.float32()))})
            write_parquet_atomic(path, table)
        previous, prev_stop = None, None
        prev_path = self.round_dir(r - 1) / "stop_set.parquet"
        if r > 0 and exists(prev_path):
            prev_table = read_parquet(prev_path)
            if prev_table.column("utt_id").to_pylist() == list(self.stop_ids):
                previous = np.asarray(prev_table.column("prediction").to_pylist(), dtype=object)
                prev_stop = (read_json(self.round_dir(r - 1) / "metrics.json").get("stopping")
                             if exists(self.round_dir(r - 1) / "metrics.json") else None)
        predictions = np.asarray(table.column("prediction").to_pylist(), dtype=object)
        return decide(self.active.stopping, r, predictions, probs, previous, prev_stop, last).to_json()

    def _known_targets(self, ids: np.ndarray, ledger) -> np.ndarray | None:
        """[N, K] the ledger's dimensional values of ``ids`` (NaN for unlabelled clips); None without dimensions."""
        if not self.dimensions:
            return None
        known = ledger.targets().to_pandas().set_index("utt_id")[self.dimensions]
        return known.reindex(pd.Index(ids.astype(str))).to_numpy(np.float32)

    def _known_labels(self, ids: np.ndarray, ledger) -> np.ndarray | None:
        """[N] the ledger's class index of ``ids`` (-1 for unlabelled or unlabelable clips); None without classes
        or when the strategy reads no labels (only ``auto`` and ``class_balanced`` do: a pass over every id)."""
        s = self.active.strategy
        if not self.labels or not (s.name == "auto" or s.class_balanced):
            return None
        index = {name: i for i, name in enumerate(self.labels)}
        known = ledger.labels()
        return np.asarray([index.get(known.get(u), -1) for u in ids.astype(str)], dtype=np.int64)

    def _class_counts(self, ledger) -> list[float] | None:
        """Training clips per class for the class-weighted loss; a soft-labelled clip counts by its vote shares
        (so a class that only ever gets minority votes still has a weight)."""
        import json

        targets = ledger.targets()
        labels = targets.column("label").to_pylist()
        soft = (targets.column("soft_label").to_pylist() if "soft_label" in targets.column_names
                else [None] * len(labels))
        if self.cross:  # the source group's labelled clips train too (hard labels)
            labels += self._source_labels()
            soft += [None] * (len(labels) - len(soft))
        counts = dict.fromkeys(self.labels, 0.0)
        for label, shares in zip(labels, soft):
            for name, share in (json.loads(shares).items() if shares and not self.cross else [(label, 1.0)]):
                if name in counts:
                    counts[name] += share
        return [counts[name] for name in self.labels] or None

    def _source_labels(self) -> list:
        """The source group's training labels (read once: the pool does not change during a run)."""
        if self._source_label_list is None:
            self._source_label_list = self.pool.metadata(columns=["label"], split="train", where={
                self.cross.group_column: self.cross.source})["label"].tolist()
        return self._source_label_list

    def _source_rows(self) -> int:
        return len(self._source_labels()) if self.cross else 0

    def run(self, on_round=None) -> list[RoundReport]:
        """All rounds; finished rounds are skipped, and the report is rewritten after each.

        Args:
            on_round: called as ``on_round(report, reports_so_far)`` after every round, finished ones
                included (a sweep trial reports them to Tune).
        """
        self.log(f"AFTER loop: {len(self.train_ids)} training clips, labelled per round {self.targets}, "
                 f"strategy {self.strategy!r}, feature cache {'on' if self.cache else 'off'}")
        if self.cache is not None:
            self.cache.build(self._all_splits(), self.model_cfg, self._num_layers, self.active.scorer,
                             verbose=self.verbose, in_process=self.in_process)
            if self.model_cfg.feature_norm in ("pool", "auto"):
                self._use_pool_statistics()
            if reads_speakers(self.model_cfg):
                self._use_speaker_statistics()
        self.initial()
        reports = []
        for r in range(len(self.targets)):
            rep = self.step(r)
            reports.append(rep)
            self.log(rep.line())
            self.write_report(reports)
            if on_round is not None:
                on_round(rep, reports)
            if rep.stopping and rep.stopping.get("stop"):
                self.log(f"stopped after round {r}: {rep.stopping['message']}")
                break
        return reports

    def _use_pool_statistics(self) -> None:
        """Mean and std of every cached feature over the training split's clips (labelled or not; no labels are
        read), written once per run to ``feature_stats.safetensors``; every model the run builds loads them."""
        from ser_models.encoders.standardizer import save_statistics

        path = self.out / "feature_stats.safetensors"
        if not exists(path):
            t0 = time.perf_counter()
            mean, std, clips = self.cache.statistics(self.train_ids)
            if len(mean) < self._num_layers:  # a cache of the first states: the model's layer is among them
                pad = self._num_layers - len(mean)
                mean = np.concatenate([mean, np.zeros((pad, mean.shape[1]))])
                std = np.concatenate([std, np.ones((pad, std.shape[1]))])
            save_statistics(path, mean, std, clips)
            self.log(f"  pool statistics: mean and std of {clips} training clips' features in "
                     f"{time.perf_counter() - t0:.1f}s -> {path}")
        self.model_cfg = dataclasses.replace(self.model_cfg, feature_stats=str(path))

    def _use_speaker_statistics(self) -> None:
        """Every clip's features standardised by its speaker (``model.feature_norm=speaker``): the pool's
        ``speaker`` column is joined into every cached row the run reads, and each speaker's statistics over
        all their clips in the pool (every split, labelled or not; no labels are read), shrunk toward the
        pool's by ``model.speaker_shrinkage``, are written once per run to ``speaker_stats.safetensors``;
        every model the run builds loads them."""
        from ser_models.encoders.speaker_norm import SpeakerStatistics

        speakers = self.pool.metadata(columns=["utt_id", "speaker"])
        self.cache.attach(pa.Table.from_pandas(speakers, preserve_index=False))
        path = self.out / "speaker_stats.safetensors"
        if not exists(path):
            t0 = time.perf_counter()
            stats, without = self.cache.speaker_statistics(self.model_cfg.speaker_shrinkage)
            stats.save(path)
            info = stats.summary()
            self.log(f"  speaker statistics: {info['speakers']} speakers ({info['clips_min']}-{info['clips_max']} "
                     f"clips each, shrunk toward the pool with k={info['shrink_clips']:g}); {without} clips without "
                     f"a speaker use the pool's, in {time.perf_counter() - t0:.1f}s -> {path}")
        else:
            stats = SpeakerStatistics.load(path)
        self.speaker_summary = stats.summary()
        self.model_cfg = dataclasses.replace(self.model_cfg, speaker_stats=str(path))

    def _all_splits(self):
        return self.pool.dataset(None)

    def write_report(self, reports: list[RoundReport]) -> None:
        lines = "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in reports)
        write_bytes_atomic(self.out / "metrics.jsonl", lines.encode())
        if self.plots:
            plot_learning_curves({"this run": [r.to_json() for r in reports]},
                                 self.out / "report" / "learning_curve.png")


def check_cross_lingual(pool, cross, model_cfg) -> None:
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


class _Targets:
    """A round's training targets (ledger rows plus pseudo-labels) where training reads a ledger view."""

    def __init__(self, table: pa.Table):
        self._table = table

    def targets(self) -> pa.Table:
        return self._table

    def labels(self) -> dict[str, str | None]:
        return dict(zip(self._table.column("utt_id").to_pylist(), self._table.column("label").to_pylist()))

    def __len__(self) -> int:
        return self._table.num_rows


def _as_targets(pseudo: pa.Table) -> pa.Table:
    """Pseudo-label rows in :data:`TARGETS_SCHEMA` (no dimensional values)."""
    n = pseudo.num_rows
    cols = {"utt_id": pseudo.column("utt_id"), "label": pseudo.column("label")}
    cols.update({f.name: pa.nulls(n, f.type) for f in TARGETS_SCHEMA if f.name not in cols})
    return pa.table(cols).select(TARGETS_SCHEMA.names).cast(TARGETS_SCHEMA)


def _slim(m: dict | None) -> dict | None:
    """What a round keeps of an evaluation: the class metrics and the dimensional ones (not the Pearson/RMSE
    detail, which stays in the round's train/metrics.json)."""
    keep = ("wa", "ua", "macro_f1", "n", "confusion", "ccc")
    return None if not m else {k: v for k, v in m.items() if k in keep or k.startswith("ccc_")}


def headline(m: dict) -> tuple[str, float]:
    """``("UA", ua)`` of an evaluation with classes, else ``("CCC", mean ccc)`` (:func:`headline_metric`)."""
    key = headline_metric(m)
    return key.upper(), m[key]


def _feature_choice(metrics: dict) -> dict | None:
    """What ``model.feature_norm=auto`` chose in a fit (its last history row), for the round report."""
    row = (metrics.get("history") or [{}])[-1]
    if "feature_norm" not in row:
        return None
    return {"feature_norm": row["feature_norm"], "cv_scores": row["feature_norm_cv"]["scores"],
            "reason": row["feature_norm_cv"]["reason"], "l2_c": row.get("l2_c")}


def _report_from_json(d: dict) -> RoundReport:
    return RoundReport(**d)


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The finished rounds of a run (``metrics.jsonl``), or a single full-data fine-tuning run
    (``metrics.json`` of jobs.finetune) as one point at fraction 1.0."""
    run_dir = storage_path(run_dir)
    if exists(run_dir / "metrics.jsonl"):
        return [json.loads(x) for x in read_bytes(run_dir / "metrics.jsonl").decode().splitlines() if x.strip()]
    if exists(run_dir / "metrics.json"):
        m = read_json(run_dir / "metrics.json")
        return [{"round": 0, "labelled": (m.get("train_clips") or 0), "fraction": 1.0, "dev": m.get("dev"),
                 "test": m.get("test"), "selected": 0, "seconds": {"train": m.get("train_wall_seconds", 0.0)}}]
    raise FileNotFoundError(f"{run_dir} has neither metrics.jsonl (jobs.after) nor metrics.json (jobs.finetune)")


def plot_learning_curves(runs: dict[str, list[dict]], path: str | Path, split: str = "test") -> None:
    """UA vs labelled fraction, one line per run (a single-point run, e.g. full-data fine-tuning, is drawn as
    a dashed horizontal reference)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for name, rows in runs.items():
        pts = [(r["fraction"], headline(r[split])[1]) for r in rows if r.get(split)]
        if not pts:
            continue
        if len(pts) == 1 and pts[0][0] >= 1.0:
            ax.axhline(pts[0][1], linestyle="--", color="gray", label=f"{name} (100%)")
            continue
        xs, ys = zip(*pts)
        line, = ax.plot([100 * x for x in xs], ys, marker="o", label=name)
        fired = [r for r in rows if (r.get("stopping") or {}).get("fired")]
        if fired:  # the first round a stopping criterion fired: where labelling could have ended
            first = fired[0]
            ax.axvline(100 * first["fraction"], color=line.get_color(), linestyle=":", alpha=0.7)
            ax.annotate("stop: " + "+".join(first["stopping"]["fired"]), (100 * first["fraction"], min(ys)),
                        fontsize=7, rotation=90, va="bottom", ha="right", color=line.get_color())
        if len(runs) == 1:
            dev = [(r["fraction"], headline(r["dev"])[1]) for r in rows if r.get("dev")]
            if dev:
                dx, dy = zip(*dev)
                ax.plot([100 * x for x in dx], dy, marker="s", linestyle=":", label=f"{name} (dev)")
    ax2 = _plot_kappa(ax, runs)
    ax.set_xlabel("labelled share of the training pool (%)")
    names = {headline(r[s])[0] for rows in runs.values() for r in rows for s in (split, "dev") if r.get(s)}
    ax.set_ylabel("UA (balanced accuracy)" if names == {"UA"} else "CCC (mean over dimensions)"
                  if names == {"CCC"} else " / ".join(sorted(names)))
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if ax2 is not None:  # one legend, drawn on the top axis so the kappa line cannot hide it
        more = ax2.get_legend_handles_labels()
        ax2.legend(handles + more[0], labels + more[1], fontsize=7, loc="lower right")
    else:
        ax.legend(handles, labels, fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def _plot_kappa(ax, runs: dict[str, list[dict]]):
    """The stabilizing-predictions signal of the first run that has one, on its own right-hand axis (returned;
    None when no run has a kappa)."""
    for name, rows in runs.items():
        kappa = [(r["fraction"], r["stopping"]["kappa"]) for r in rows
                 if (r.get("stopping") or {}).get("kappa") is not None]
        if not kappa:
            continue
        kx, ky = zip(*kappa)
        ax2 = ax.twinx()
        ax2.plot([100 * x for x in kx], ky, marker="^", linestyle="--", color="gray", alpha=0.8,
                 label=f"{name}: kappa vs previous round (stop set)")
        ax2.set_ylabel("Cohen's kappa between rounds", fontsize=8)
        ax2.set_ylim(min(0.0, min(ky)), 1.02)
        return ax2
    return None


def table(runs: dict[str, list[dict]], split: str = "test") -> pd.DataFrame:
    """One row per (run, round): labelled share, dev/test UA and WA and/or mean CCC, seconds (a metric no run
    has, e.g. CCC of class-only runs, is left out)."""
    rows = []
    for name, rs in runs.items():
        for r in rs:
            rows.append({"run": name, "round": r["round"], "labelled": r["labelled"],
                         "fraction": round(r["fraction"], 4),
                         "dev_ua": (r.get("dev") or {}).get("ua"), "test_ua": (r.get("test") or {}).get("ua"),
                         "test_wa": (r.get("test") or {}).get("wa"),
                         "dev_ccc": (r.get("dev") or {}).get("ccc"), "test_ccc": (r.get("test") or {}).get("ccc"),
                         "kappa": (r.get("stopping") or {}).get("kappa"),
                         "pseudo_labels": (r.get("pseudo_labels") or {}).get("clips"),
                         "seconds": round(sum((r.get("seconds") or {}).values()), 1)})
    return pd.DataFrame(rows).dropna(axis=1, how="all")
