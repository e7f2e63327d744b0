"""The AFTER active-learning loop: train, evaluate, score, select, label, persist; resumable round by round.

Run layout under ``output_dir``::

    labels/ledger.parquet          the truth: which clip got which label in which round, and for what
    rounds/evaluation/selection.parquet  drawn test / dev clips (utt_id, purpose, unit) when the pool has no
                                   labelled dev / test split (active.evaluation); labelled before round 0
    rounds/plan.json               budget targets and stop set, fixed at the first start; rounds/initial/selection.parquet
    rounds/round=003/train/        Ray Train run (checkpoint/, metrics.json, confusion.png)
    rounds/round=003/scores.parquet  (or scores/: the same as Parquet shards, on pools above
                                   active.selection.shard_above_clips; scores/manifest.json commits them)
    rounds/round=003/stop_set.parquet    the round's predictions on the fixed stop set (stopping criteria)
    rounds/round=003/pseudo_labels.parquet  pseudo-labels this round trained on (never in the ledger)
    rounds/round=003/selection.parquet   clips picked after training round 3 (labelled as round 4)
    rounds/round=003/to_label.csv  (file oracle only)
    rounds/round=003/metrics.json  written last: the round is finished
    metrics.jsonl                  one line per finished round
    report/labels.json             labels paid for by purpose (train / test / dev), next to the budget
    report/learning_curve.png, report/confusion_round=003.png, report/forecast.json (labels still needed)
    report/selection.json          auto's latest verdict, written as a round decides (before it asks for labels)

Evaluation: the pool's dev / test splits, or sets drawn from the training split and labelled first
(:mod:`~ser_models.planning.evaluation_sets`), which the rounds never train on, score or select.

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
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from ser_models.active.budget import LabelBudget, fixed_at_start, picked_so_far
from ser_models.active.config import StrategyConfig
from ser_models.active.cross_lingual import CrossLingualFeeds, check_cross_lingual
from ser_models.active.curves import plot_learning_curves
from ser_models.active.handover import LabelHandover
from ser_models.active.local_rounds import check_cache_whole, open_run_cache
from ser_models.active.loop_config import ActiveConfig
from ser_models.active.pool_groups import PoolRecordings
from ser_models.active.pseudo_labels import TrainingTargets, round_pseudo_labels
from ser_models.active.round_inputs import class_counts, known_labels, known_targets, trains_on_soft_labels
from ser_models.active.round_report import (
    RoundReport,
    announce_choice,
    announce_round,
    round_report,
    write_run_metrics,
    write_selection,
)
from ser_models.active.round_scores import drop_dead_attempts, rounds_are_sharded, stored_scores
from ser_models.active.sharded_capped import capped_candidates
from ser_models.active.sharded_cold_start import shard_cold_start
from ser_models.active.sharded_selection import shard_candidates
from ser_models.active.stopping import stop_set_ids, stop_set_verdict
from ser_models.active.strategies import build_strategy
from ser_models.active.strategies.capped import GroupCap
from ser_models.active.training_clips import TrainingClips
from ser_models.config import to_dict
from ser_models.data.ledger import LabelLedger
from ser_models.encoders.functionals import reads_functionals
from ser_models.exceptions import ConfigError, PoolExhaustedError
from ser_models.failpoints import failpoint
from ser_models.io import (
    StoragePath,
    exists,
    read_json,
    read_parquet,
    storage_path,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.metrics import plot_confusion
from ser_models.planning.run_evaluation import RunEvaluation, without_ids
from ser_models.scoring.feature_cache import FeatureCache, model_inputs
from ser_models.scoring.feature_stats import write_run_statistics
from ser_models.scoring.score_shards import ScoreShards, score_to_shards
from ser_models.scoring.scored_pool import ScoredPool
from ser_models.scoring.scorer import Scores, score_dataset
from ser_models.training.config import ScalingConfig, TrainConfig

__all__ = ["ActiveLearningLoop", "RoundReport", "check_cross_lingual"]


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
            dev/test when they come from the pool, :func:`check_cross_lingual`), as ``jobs.after`` does before
            Ray starts; skip them here.
        plots: draw every round's confusion matrices (training's too) and the learning curve.
        follow_pool: take the clips a pool grows by into the next round; simulations keep the pool they started
            on (paired runs compare the same pool, and only the driver extends the shared cache).
        use_ray: read through Ray Data; False: every read in this process, Ray never imported (only for a run
            that :func:`~ser_models.active.local_rounds.rounds_need_ray` finds no reason to start Ray for).
    """

    def __init__(self, pool, output_dir: str | Path, model_cfg, train_cfg: TrainConfig, scaling: ScalingConfig,
                 active: ActiveConfig, oracle=None, verbose: bool = True, cross_lingual=None,
                 pool_checked: bool = False, plots: bool = True, follow_pool: bool = True, use_ray: bool = True):
        self.pool = pool
        self.out: StoragePath = storage_path(output_dir)
        self.model_cfg, self.train_cfg, self.scaling, self.active = model_cfg, train_cfg, scaling, active
        self.verbose, self.plots, self.follow_pool, self.use_ray = verbose, plots, follow_pool, use_ray
        self.in_process = scaling.backend == "in_process"
        self.ledger = LabelLedger(self.out / "labels" / "ledger.parquet")
        self.strategy = build_strategy(active.strategy)
        self.labels = list(model_cfg.labels)
        self.dimensions = list(model_cfg.dimensions)
        self.cross = cross_lingual if cross_lingual is not None and cross_lingual.enabled else None
        # The group the loop labels and is evaluated on ({} = the whole pool).
        self.where = {self.cross.group_column: self.cross.target} if self.cross else {}
        # Every clip of the training split, evaluation sets included: what the oracle may be asked about.
        split = TrainingClips.read(pool, self.where)
        if not len(split):
            raise ConfigError(f"the training split of pool {pool.root} has no clips"
                              + (f" with {self.where}" if self.where else ""))
        self.handover = LabelHandover(pool, self.out, self.ledger, active, self.labels, self.dimensions,
                                      tuple(model_cfg.dimension_range), split, oracle=oracle, log=self.log,
                                      where=self.where)
        # dev / test: the pool's splits, or drawn sets the ledger labels; training labels only from the ledger.
        self.eval_sets = RunEvaluation(pool, self.out, active, model_cfg, self.handover, where=self.where,
                                       pool_checked=pool_checked, cross_lingual=self.cross is not None, log=self.log)
        self.evaluation = self.eval_sets.purposes
        # The clips the rounds may train on, score and select: the training split without the evaluation sets.
        self.held_out = self.eval_sets.held_out()
        # With what labelling each costs (hour budgets spend seconds of audio): Arrow ids, not N Python strings.
        self.clips = split.without(self.held_out)
        if active.max_per_recording:
            self.strategy = GroupCap(self.strategy, PoolRecordings(pool, self.where), active.max_per_recording)
        self.budget = LabelBudget(active, self.clips)
        if active.semi_supervised.enabled and not self.labels:
            raise ConfigError("active.semi_supervised makes class pseudo-labels, but model.labels is empty: set "
                              "active.semi_supervised.method=none for a dimensional-only model")
        # Targets and stop set (whose predictions tell if the model still changes its mind): fixed at the first start.
        plan = fixed_at_start(self.out / "rounds" / "plan.json", lambda: {"targets": self.budget.targets, "stop_ids": (
            stop_set_ids(self.clips.ids, active.stopping.stop_set_size, active.seed) if self.labels else [])})
        self.budget.targets, self.targets, self.stop_ids = plan["targets"], plan["targets"], plan["stop_ids"]
        if self.cross and not pool_checked:
            check_cross_lingual(pool, self.cross, model_cfg)
        self.cross_feeds = CrossLingualFeeds(pool, self.cross, model_cfg, self.clips.ids, active.seed,
                                             self.out / "anchors.json", log=self.log) if self.cross else None
        self.cache = self._open_cache()
        if model_cfg.feature_norm in ("pool", "speaker", "auto") and self.cache is None:
            raise ConfigError(f"model.feature_norm={model_cfg.feature_norm} takes its statistics from the "
                              "frozen-encoder feature cache: set active.feature_cache=on (model.adapter.kind=frozen), "
                              "or model.feature_norm=none")
        if reads_functionals(model_cfg) and self.cache is None:
            raise ConfigError(f"model.functionals={model_cfg.functionals} reads the functionals from the "
                              "frozen-encoder feature cache: set active.feature_cache=on, or model.functionals=none")
        self._dev_test = None
        self._model_inputs = None  # built on first use, after the cache is
        self.sharded = rounds_are_sharded(active, self.strategy, len(self.clips), self.log)
        self.speaker_summary: dict | None = None  # model.feature_norm=speaker: speakers and clips per speaker
        self._reports, self._shown = [], set()  # run()'s rounds so far; those whose line step() said already

    # ----------------------------------------------------------------------------------------- helpers
    def log(self, msg: str) -> None:
        if self.verbose:
            print(msg, flush=True)

    def round_dir(self, r: int) -> StoragePath:
        return self.out / "rounds" / f"round={r:03d}"

    def _open_cache(self) -> FeatureCache | None:
        cache, self._num_layers = open_run_cache(self.pool, self.model_cfg, self.active, self.out, bool(self.cross),
                                                 local=not self.use_ray)
        return cache

    def _take_new_clips(self) -> None:
        """A pool that grew (or was relabelled) since the run started: its new training clips are encoded into the
        cache, scored and selectable from this round on. The budget's targets, the evaluation sets and the stop
        set keep the values they had when the run started; clips the update dropped leave the candidates."""
        lineage = self.pool.lineage
        if not self.follow_pool or not self.pool.refresh():
            return
        if self.pool.lineage != lineage:  # the cache, the ledger and the statistics describe the old audio
            raise ConfigError(f"pool {self.pool.root} was rebuilt while this run was going (lineage {lineage[:12]} -> "
                              f"{self.pool.lineage[:12]}): start a new run (a new output_dir) on the rebuilt pool")
        split = TrainingClips.read(self.pool, self.where)
        before = len(self.clips)
        self.handover.grow(split)
        self.held_out = self.eval_sets.held_out()
        self.clips = self.budget.clips = split.without(self.held_out)
        self._dev_test = None  # a clip may have moved between splits
        if self.cache is not None and not self.use_ray:
            check_cache_whole(self.cache, self.pool)
        elif self.cache is not None:
            self.cache.ensure(self.pool, self.model_cfg, self._num_layers, self.active.scorer,
                              verbose=self.verbose, in_process=self.in_process)
        self.log(f"pool version {self.pool.version}: {len(self.clips)} training clips ({len(self.clips) - before:+d})")

    def _datasets(self, ledger):
        """Ray Datasets for a training round: labelled train (``ledger``'s labels: a ledger view or a
        :class:`~ser_models.active.pseudo_labels.TrainingTargets` of ledger + pseudo-labels), dev, test (the
        pool's splits, or the drawn evaluation sets with the ledger's ``dev`` / ``test`` labels)."""
        if self._dev_test is None:
            # Read once per run, not once per round: evaluation sets never change.
            self._dev_test = self.eval_sets.feeds(self.ledger, self.cache, self.dimensions)
        if self.cache is None:
            train = self.pool.labelled(ledger)
            feeds = self.cross_feeds.feeds(train, self.dimensions) if self.cross else {"train": train}
        else:
            feeds = {"train": self.cache.dataset(targets=ledger.targets())}
        return {**feeds, **self._dev_test}, self._inputs()

    def _inputs(self):
        """What the model reads: the cache's features (once built) or audio, with the side columns its config
        asks for. Built once: the cache's shape never changes during a run (its meta.json is read once)."""
        if self._model_inputs is None:
            self._model_inputs = model_inputs(self.cache, self.model_cfg)
        return self._model_inputs

    def _score_input(self):
        """Every training clip (labelled ones too: k-center uses them as centres), without labels."""

        if self.cache is None:
            ds = self.pool.dataset("train", where=self.where)
            held_out = pa.array(sorted(self.held_out), pa.string())  # never scored, so never selected
            ds = ds.map_batches(without_ids, fn_kwargs={"ids": held_out}, batch_format="pyarrow", zero_copy_batch=True) \
                if self.held_out else ds
            return ds, self._inputs()
        return self.cache.dataset(ids=self.clips.ids), self._inputs()

    def _source_rows(self) -> int:
        """Training rows the source group adds to every cross-lingual round (0 otherwise)."""
        return len(self.cross_feeds.source_labels()) if self.cross else 0

    def _anchoring(self) -> dict | None:
        return self.cross_feeds.anchoring(self.train_cfg.optim.batch_size) if self.cross else None

    # -------------------------------------------------------------------------------------------- stages
    def initial(self) -> None:
        """Label the initial set (round 0 of the ledger) unless the ledger already has it."""
        folder = self.out / "rounds" / "initial"
        sel_path = folder / "selection.parquet"
        if len(self.ledger) and (not exists(sel_path) or set(read_parquet(sel_path)["utt_id"].to_pylist())
                                 <= self.ledger.ids() | set(self.handover.dropped()["utt_id"])):
            return  # labelled (a Label Studio round may have handed over part of it: then it goes on below)
        n = self.budget.clips_wanted(self.targets[0], set(), self.handover.unlabelable())
        t0 = time.perf_counter()
        if exists(sel_path):
            ids = read_parquet(sel_path)["utt_id"].to_pylist()
        elif self.active.initial == "random":
            skip = self.handover.unlabelable()
            free = int(self.clips.mask_without(skip).sum())
            if free < n:
                raise PoolExhaustedError(f"the initial set needs {n} clips but only {free} training "
                                         "clips can be labelled")
            ids = self.clips.sample(n, np.random.default_rng([self.active.seed, 0]), skip)
            ids = sorted(self.budget.within(ids, self.targets[0], "the initial set"))
        else:
            ids = self.budget.within(self._cold_start(folder, n), self.targets[0], "the initial set")
        if not exists(sel_path):
            write_parquet_atomic(sel_path, pa.table({"utt_id": pa.array(list(ids), pa.string())}))
        failpoint("after_initial_selection")
        self.handover.label(ids, 0, -1, reason=f"initial set ({self.active.initial})")
        self.log(f"initial set: {len(ids)} clips ({self.active.initial}) in {time.perf_counter() - t0:.1f}s")

    def _cold_start(self, folder, n: int) -> list[str]:
        """AFTER's cold start: cluster the (TAPT) encoder's pooled features of the unlabelled pool (gathered, or
        shard by shard on a sharded run: the same picks). No MC-dropout passes or head embeddings: the
        clustering reads the pooled features alone."""
        ds, inputs = self._score_input()
        scorer = dataclasses.replace(self.active.scorer, mc_samples=0)
        s = self.active.strategy
        cold = build_strategy(StrategyConfig(name="cluster_cold_start", kmeans_iters=s.kmeans_iters,
                                             num_clusters=s.num_clusters, max_clusters=s.max_clusters,
                                             cold_start_dim=s.cold_start_dim, num_threads=s.num_threads))
        if self.sharded:
            shards = score_to_shards(ds, None, scorer, folder / "scores", model_cfg=to_dict(self.model_cfg),
                                     inputs=inputs, seed=self.active.seed, verbose=self.verbose,
                                     in_process=self.in_process, total=len(self.clips),
                                     rows_per_shard=self.active.selection.rows_per_shard, keep_pooled=True,
                                     keep_embedding=False)
            return shard_cold_start(shards, cold, n, self.handover.unlabelable(), self.active.seed)
        scores = score_dataset(ds, None, scorer, model_cfg=to_dict(self.model_cfg), inputs=inputs,
                               seed=self.active.seed, verbose=self.verbose, in_process=self.in_process,
                               keep_pooled=True, keep_embedding=False)
        scored = ScoredPool(ids=scores.ids.astype(str), probs=scores.probs, embeddings=scores.pooled)
        return cold.query(scored, self.handover.unlabelable(), n, self.active.seed)

    def _soft(self, training) -> bool:
        return trains_on_soft_labels(training, self.cross is not None, self.log)

    def step(self, r: int) -> RoundReport:
        """Run training round ``r`` (train, evaluate, then score/select/label the next batch)."""
        from ser_models.training import train_model

        folder = self.round_dir(r)
        if exists(folder / "metrics.json"):
            return RoundReport.from_json(read_json(folder / "metrics.json"))
        self._take_new_clips()
        seconds = {}
        # Rounds <= r only: a run killed after appending round r + 1's labels but before this round's
        # metrics.json redoes round r on the labels it had, then re-appends the stored selection (a no-op).
        ledger = self.ledger.as_of(r)
        # What the initial set and rounds 0..r-1 really picked: a batch the cap left short is no changed budget.
        picked = picked_so_far([self.out / "rounds" / "initial" / "selection.parquet",
                                *(self.round_dir(q) / "selection.parquet" for q in range(r))])
        self.budget.check(r, ledger, self.eval_sets.training_dropped(), self.handover.dropped_path, picked)
        t0 = time.perf_counter()
        pseudo, pseudo_report = self._pseudo_labels(r, ledger)
        training = ledger if pseudo is None else TrainingTargets.of(ledger, pseudo)
        feeds, inputs = self._datasets(training)
        counts = self._class_counts(training)
        init = (self.round_dir(r - 1) / "train" / "checkpoint") if (self.active.warm_start and r > 0) else None
        result = train_model(self.model_cfg, self.train_cfg, self.scaling, feeds, folder / "train",
                             class_counts=counts, inputs=inputs, init_checkpoint=init, plots=self.plots,
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

        def report(selected: int) -> RoundReport:
            return round_report(r, ledger, len(self.clips), self.labels, result.metrics, seconds, selected,
                                stopping, pseudo_report, choice)

        if not last and not (stopping and stopping["stop"]):
            t0 = time.perf_counter()
            sel_path, choice_path = folder / "selection.parquet", folder / "strategy.json"
            if exists(sel_path):
                ids = read_parquet(sel_path)["utt_id"].to_pylist()
                choice = read_json(choice_path) if exists(choice_path) else None
            else:
                # Dropped clips were sent to annotators: they spent the budget as labelled ones did.
                have = ledger.ids() | set(self.eval_sets.training_dropped().query("round <= @r")["utt_id"])
                n = self.budget.clips_wanted(self.targets[r + 1], have, self.handover.unlabelable())
                if self.active.query_batch and n > self.active.query_batch:
                    ids, choice = self._query_in_batches(r, scores, have, n, result.metrics)
                else:
                    ids, choice = self._query(scores, ledger, have, n, seed=self.active.seed * 1000 + r)
                    self._say_short(r, len(ids), n)
                    ids = self.budget.within(ids, self.targets[r + 1], f"round {r + 1}", have)
                if choice is not None:  # auto: kept before the selection, so a resumed round reports it too
                    write_json_atomic(choice_path, choice)
                write_parquet_atomic(sel_path, pa.table({"utt_id": pa.array(list(ids), pa.string())}))
            if choice is not None:  # said, and its verdict reported, before people are asked for labels
                announce_choice(self.out, r, choice, self.log)
            failpoint("after_select")
            seconds["select"] = time.perf_counter() - t0
            self._shown.add(r)  # the line now, before the request: a run waiting for labels shows this round
            announce_round(report(len(ids)), self._reports, self.active.forecast, self.log)
            t0 = time.perf_counter()
            self.handover.label_picks(ids, r, scores, choice)
            failpoint("after_label")
            seconds["label"] = time.perf_counter() - t0
            selected = len(ids)
        m, done = result.metrics, report(selected)
        split = "test" if m.get("test") else "dev"
        if self.plots and m.get(split) and "confusion" in m[split]:
            plot_confusion(m[split]["confusion"], self.labels, self.out / "report" / f"confusion_round={r:03d}.png",
                           title=f"round {r} ({100 * done.fraction:.0f}% labelled) {split} UA {m[split]['ua']:.3f}")
        write_json_atomic(folder / "metrics.json", done.to_json())  # last: marks the round finished
        failpoint("after_metrics")
        return done

    def _say_short(self, r: int, got: int, n: int) -> None:
        """Say once, as round ``r`` picks, that the strategy gave ``got`` of the ``n`` clips asked for, and why; the
        next round's :meth:`LabelBudget.clips_wanted` counts from the labels, so it asks for the rest again."""
        if got >= n:
            return
        why = (f"the recording cap (active.max_per_recording={self.active.max_per_recording}) leaves no other "
               "recording with an unlabelled clip" if isinstance(self.strategy, GroupCap)
               else "the pool leaves no more unlabelled clips")
        then = (f"round {r + 1} asks for the rest again" if r + 2 < len(self.targets)
                else "the run ends below its budget (this was its last query)")
        self.log(f"  round {r} picked {got} of the {n} clips it asked for: {why}; {then}")

    def _query(self, scores: Scores | ScoreShards, ledger, exclude: set[str], n: int,
               seed: int) -> tuple[list[str], dict | None]:
        """``n`` clips from the strategy, none of ``exclude``; returns ``(ids, auto's choice or None)``. Over
        shards, the strategy runs on the rows it could pick (:func:`~ser_models.active.sharded_selection.
        shard_candidates`, or :func:`~ser_models.active.sharded_capped.capped_candidates` under a recording cap):
        the same picks as over the whole pool."""
        exclude = exclude | self.handover.unlabelable() | self.held_out
        if isinstance(scores, ScoreShards):
            costs = None
            if self.active.strategy.cost_aware:
                costs = pa.table({"utt_id": self.clips.ids, "seconds": self.clips.seconds})
            find = capped_candidates if isinstance(self.strategy, GroupCap) else shard_candidates
            scores = find(scores, self.strategy, n, exclude, seed, costs, lambda known: (
                known_targets(known.ids, ledger, self.dimensions),
                known_labels(known.ids, ledger, self.labels, self.active.strategy)))
        costs = None
        if self.active.strategy.cost_aware:
            costs = self.clips.seconds_of(scores.ids)
        scored = scores.as_scored_pool(known_targets(scores.ids, ledger, self.dimensions), costs=costs,
                                       labels=known_labels(scores.ids, ledger, self.labels, self.active.strategy))
        ids = self.strategy.query(scored, exclude, n, seed=seed)
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
                if choice is None and batch_choice is not None:  # the round's choice: reported before labelling
                    choice = batch_choice
                    write_selection(self.out, r, choice)
                write_parquet_atomic(path, pa.table({"utt_id": pa.array(ids, pa.string())}))
            self.handover.label_picks(ids, r, scores)  # now: the next batch's model trains on these labels
            failpoint("after_query_batch")
            picked += ids
            b += 1
        self.log(f"  queried {len(picked)} clips in {b} batches of <= {q}, retraining between batches")
        return picked, choice

    def _retrain_and_score(self, r: int, folder, train_cfg: TrainConfig) -> Scores | ScoreShards:
        """Train on the ledger as of round ``r + 1`` (labels alone: no pseudo-labels, no dev or test) and score
        the pool with that model; kept in ``folder`` (its scores mark it done)."""
        from ser_models.training import train_model

        scores_path = folder / "scores.parquet"
        done = stored_scores(scores_path)
        if done is not None:
            return done
        labelled = self.ledger.as_of(r + 1)
        feeds, inputs = self._datasets(labelled)
        feeds = {name: ds for name, ds in feeds.items() if name not in ("dev", "test")}
        result = train_model(self.model_cfg, train_cfg, self.scaling, feeds, folder / "train",
                             class_counts=self._class_counts(labelled), inputs=inputs,
                             run_name=f"round{r:03d}_{folder.name.replace('=', '')}", plots=self.plots,
                             train_rows=len(labelled) + self._source_rows(), verbose=False,
                             anchoring=self._anchoring(), soft_labels=self._soft(labelled))
        return self._score_pool(result.checkpoint_dir, r, scores_path, verbose=False)

    def _score_pool(self, checkpoint_dir, r: int, scores_path, verbose: bool) -> Scores | ScoreShards:
        """Round ``r``'s scores of the unlabelled training pool under ``checkpoint_dir``, kept in ``scores_path``
        or, sharded, in the ``scores/`` folder beside it (read back when there: a resumed round does not score
        again)."""
        done = stored_scores(scores_path)
        if done is not None:
            if isinstance(done, ScoreShards):
                drop_dead_attempts(self.out, done, self.log)
            return done
        ds, inputs = self._score_input()
        if self.sharded:
            shards = score_to_shards(ds, checkpoint_dir, self.active.scorer, scores_path.parent / "scores",
                                     inputs=inputs, seed=self.active.seed + r, verbose=verbose,
                                     in_process=self.in_process, total=len(self.clips),
                                     rows_per_shard=self.active.selection.rows_per_shard)
            drop_dead_attempts(self.out, shards, self.log)
            return shards
        scores = score_dataset(ds, checkpoint_dir, self.active.scorer, inputs=inputs,
                               seed=self.active.seed + r, verbose=verbose, in_process=self.in_process,
                               total=len(self.clips))
        scores.save(scores_path)
        return scores

    def _pseudo_labels(self, r: int, ledger) -> tuple[pa.Table | None, dict | None]:
        """Round ``r``'s pseudo-labels and their report (:func:`~ser_models.active.pseudo_labels.round_pseudo_labels`);
        only the simulated oracle knows the truth, so only a simulation reports their accuracy."""
        if not self.active.semi_supervised.enabled or r == 0:
            return None, None
        accuracy = self.handover.oracle(-1).accuracy if self.handover.simulated else None
        return round_pseudo_labels(self.active.semi_supervised, r, ledger, self.round_dir, self.labels,
                                   self.handover.unlabelable(), accuracy=accuracy, log=self.log)

    def _stopping(self, r: int, ledger, scores: Scores | ScoreShards | None, checkpoint_dir,
                  last: bool) -> dict | None:
        """Round ``r``'s stopping signals (:func:`~ser_models.active.stopping.stop_set_verdict`) from its
        predictions on the stop set: taken from the round's pool scores, or scored alone in the last round."""

        def stop_set_scores() -> Scores:
            if isinstance(scores, ScoreShards):  # the stop set's rows only
                return scores.rows_of(self.stop_ids)
            if scores is not None:
                return scores
            ds = self.cache.dataset(ids=self.stop_ids) if self.cache is not None \
                else self.pool.dataset("train", where={**self.where, "utt_id": self.stop_ids})
            return score_dataset(ds, checkpoint_dir, dataclasses.replace(self.active.scorer, mc_samples=0),
                                 inputs=self._inputs(), seed=self.active.seed + r, verbose=False,
                                 in_process=self.in_process, keep_embedding=False)

        return stop_set_verdict(self.active.stopping, r, self.stop_ids, self.labels, self.round_dir,
                                stop_set_scores, last)

    def _class_counts(self, ledger) -> list[float] | None:
        return class_counts(ledger, self.labels, self.cross_feeds.source_labels() if self.cross else None)

    def run(self, on_round=None) -> list[RoundReport]:
        """All rounds; finished rounds are skipped, and the report is rewritten after each.

        Args:
            on_round: called as ``on_round(report, reports_so_far)`` after every round, finished ones
                included (a sweep trial reports them to Tune).
        """
        self.log(f"AFTER loop: {len(self.clips)} training clips, labelled per round {self.targets}, "
                 f"strategy {self.strategy}, feature cache {'on' if self.cache else 'off'}, evaluation: "
                 + self.budget.describe_evaluation(self.evaluation, self.handover.clips))
        if self.cache is not None:
            if self.use_ray:
                self.cache.build(self._all_splits(), self.model_cfg, self._num_layers, self.active.scorer,
                                 verbose=self.verbose, in_process=self.in_process)
            else:  # nothing to encode: the run decided so before it started
                check_cache_whole(self.cache, self.pool)
            self.model_cfg, self.speaker_summary = write_run_statistics(
                self.cache, self.pool, self.out, self.clips.ids, self._num_layers, self.model_cfg, self.log)
        self.eval_sets.label(self.ledger)
        self.initial()
        reports = []
        self._reports, self._shown = reports, set()
        for r in range(len(self.targets)):
            rep = self.step(r)
            reports.append(rep)
            self.write_report(reports)  # first: it adds the labels forecast that the round line shows
            if r not in self._shown:
                self.log(rep.line())
            if on_round is not None:
                on_round(rep, reports)
            if rep.stopping and rep.stopping.get("stop"):
                self.log(f"stopped after round {r}: {rep.stopping['message']}")
                break
        return reports

    def _all_splits(self):
        return self.pool.dataset(None)

    def write_report(self, reports: list[RoundReport]) -> None:
        write_run_metrics(self.out, reports, self.active.forecast, self.budget.spent(self.ledger))
        if self.plots:
            plot_learning_curves({"this run": [r.to_json() for r in reports]}, self.out / "report" / "learning_curve.png")
