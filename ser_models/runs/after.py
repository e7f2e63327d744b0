"""What ``python -m jobs.after`` runs: the AFTER active-learning loop (optional TAPT, then rounds of train, evaluate, score, select, label).

``AfterJobConfig`` is the job's config and ``run_after`` runs it; the job's module docstring has the commands.

Rerunning with the same ``output_dir`` resumes (finished rounds are skipped, an unfinished one is redone and
selects the same clips). With ``active.oracle=file`` the job stops after writing ``to_label.csv``; fill it in
and rerun the same command. With ``active.oracle=label_studio`` (server and token from LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY) it creates the round's tasks in a Label Studio project, then stops or, with
``active.label_studio.wait=true``, polls until people have annotated them.

A pool without labelled dev / test splits (e.g. no labels at all) gets test and dev sets drawn from its
training split before round 0 (``active.evaluation.*``: sizes, whole groups / recordings / speakers); they are
labelled first, through the same oracle, and never train.
"""

from __future__ import annotations

import contextlib
import sys
import time
from dataclasses import dataclass

import pyarrow as pa

from ser_models.active.cross_lingual import check_cross_lingual
from ser_models.active.handover import simulated_oracle
from ser_models.active.loop import ActiveLearningLoop
from ser_models.active.loop_config import ActiveConfig, CrossLingualConfig
from ser_models.active.round_report import latest_verdict
from ser_models.adapters import AdapterConfig
from ser_models.config import LOCATION, PATH, RESULT, field, parse_job_args, to_yaml
from ser_models.data import Pool
from ser_models.encoders import build_encoder
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import ConfigError, LabellingPending
from ser_models.io import exists, storage_path
from ser_models.models.encoder_reuse import reusing_frozen_encoders
from ser_models.models.model import ModelConfig
from ser_models.models.model_config import resolve_labels
from ser_models.ownership import check_output, claim_output
from ser_models.planning.evaluation_sets import (
    check_evaluation_pool,
    draw_config,
    evaluation_sets,
    evaluation_source,
)
from ser_models.planning.pool_sizing import check_sizes
from ser_models.planning.run_evaluation import without_ids
from ser_models.pretraining.adapter_stage import pretrain_adapter_stage
from ser_models.pretraining.tapt_config import TaptConfig, TaptJobConfig
from ser_models.provenance import check_run
from ser_models.runs.ray_choice import RuntimeConfig, use_ray
from ser_models.runtime import cluster_cpu_nodes, cluster_cpus, connect_ray
from ser_models.scoring.scorer import check_reservation
from ser_models.training.config import ScalingConfig, TrainConfig


# The small-label recipe (docs/few-labels.md#the-small-label-recipe) is the job's default, so a config that
# sets only paths and budgets runs it: the encoder stays frozen and is run once per clip into the feature
# cache; one hidden state, standardised with the unlabelled pool's statistics, feeds a linear head solved to
# convergence with C chosen by cross-validation on the labelled clips. It matched a scikit-learn probe at every
# budget, and a learned layer sum + MLP head lost 10 UA points to it at 20 % of the labels (BENCHMARKS.md).
def recipe_model() -> ModelConfig:
    """``model`` of the recipe: frozen encoder, pool-standardised features, linear head."""
    return ModelConfig(adapter=AdapterConfig(kind="frozen"), feature_norm="pool", head_hidden=0,
                       head_input_norm=False, head_dropout=0.2)


def recipe_train() -> TrainConfig:
    """``train`` of the recipe: the whole labelled set in one L-BFGS solve, C by 5-fold CV."""
    return TrainConfig(solver="lbfgs", l2_c="auto")


def recipe_scaling() -> ScalingConfig:
    """``scaling`` of the recipe: a head over cached features fits in seconds in the driver, where Ray Train's
    start-up and per-epoch checkpoints would be most of each round (54 s against a few s on 2 cores). Ray Data
    still builds the cache and scores the pool."""
    return ScalingConfig(backend="in_process")


#: What the recipe's defaults need from a run that trains the encoder instead, key by key.
_TRAINABLE_ENCODER = {"train.solver": "adamw", "model.feature_norm": "none"}


@dataclass
class AfterJobConfig:
    """Settings of one jobs.after run. The defaults are the recommended recipe (a frozen encoder, a linear head
    over pool-standardised cached features, C by cross-validation, the ``auto`` strategy, in process): a
    config sets paths and budgets, and what differs."""

    pool_dir: str = field(effect=LOCATION, path=PATH, help="prepared pool folder (written by jobs.prepare_pool)")
    output_dir: str = field(effect=LOCATION, path=PATH, help="run folder: ledger, rounds, report (rerun to resume)")
    model: ModelConfig = field(default_factory=recipe_model, help="encoder, adapter, pooling, head")
    train: TrainConfig = field(default_factory=recipe_train, help="the fit in every round")
    scaling: ScalingConfig = field(default_factory=recipe_scaling, help="where each round's fit runs")
    active: ActiveConfig = field(default_factory=ActiveConfig, help="budget, strategy, scorer, oracle")
    tapt_enabled: bool = field(False, effect=RESULT, help="run task-adaptive pre-training on the training split first (AFTER): the "
                               "encoder's own objective, or for a frozen encoder (Whisper always) the WAP adapter's "
                               "pre-training on the pool's frames (tapt.objective)")
    tapt: TaptConfig = field(default_factory=TaptConfig, help="the TAPT stage (when tapt_enabled)")
    cross_lingual: CrossLingualConfig = field(default_factory=CrossLingualConfig,
                                              help="label a target language's pool with a labelled source "
                                                   "language as extra training data, optionally anchored")
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig, help="with Ray, or in this process alone")

    def __post_init__(self) -> None:
        trains_encoder = self.model.adapter.kind != "frozen" or bool(self.model.adapter.add)
        if trains_encoder:
            # The recipe's solver and normalisation need a frozen encoder's cached features: say every key to
            # change at once, instead of failing on one of them after the first round's encoding.
            have = {"train.solver": self.train.solver, "model.feature_norm": self.model.feature_norm}
            wrong = {k: v for k, v in have.items()
                     if (k == "train.solver" and v == "lbfgs") or (k == "model.feature_norm" and v != "none")}
            if wrong:
                now = ", ".join(f"{k}={v}" for k, v in wrong.items())
                fix = " ".join(f"{k}={_TRAINABLE_ENCODER[k]}" for k in wrong)
                raise ConfigError(
                    f"model.adapter.kind={self.model.adapter.kind}"
                    f"{' with model.adapter.add' if self.model.adapter.add else ''} trains the encoder, but {now} "
                    f"(the jobs.after defaults: the frozen-encoder recipe) need a frozen encoder's cached "
                    f"features: set {fix} (and scaling.backend=ray_train for workers and fault tolerance; "
                    f"docs/few-labels.md)")


#: What a jobs.after run folder holds (besides run.json and config.yaml): a folder of an earlier version with
#: exactly these is adopted as a run folder (docs/safety.md).
AFTER_RUN_LAYOUT = ("labels", "rounds", "metrics.jsonl", "report", "tapt", "feature_cache", "anchors.json")



def run_after(cfg: AfterJobConfig, *, verbose: bool = True, on_round=None):
    """The job's work on a parsed config (``main`` and every sweep trial of ``base: after`` call it).

    Args:
        cfg: the job config.
        verbose: print progress (TAPT, rounds).
        on_round: ``on_round(report, reports_so_far)`` after each round (see ``ActiveLearningLoop.run``).

    Returns:
        The rounds' ``RoundReport`` s, or None when the loop waits for labels (``active.oracle=file``).
    """


    t0 = time.perf_counter()
    # A folder that is not this job's, or that overlaps an input, is refused before anything is read.

    check_output(cfg.output_dir, "run", job="jobs.after", layout=AFTER_RUN_LAYOUT, inputs=_inputs(cfg))
    cfg.active.check_cache_apart(_inputs(cfg))
    # Everything that can be checked without Ray is checked first: a wrong path, label or key fails in a
    # second, and a rerun with result-changing settings is refused before it touches the folder.
    if cfg.model.text.enabled:

        raise ConfigError(f"model.text.source={cfg.model.text.source!r}: the active-learning loop does not take a "
                          "text branch yet (its scoring and feature cache are audio only); use it with "
                          "jobs.finetune, jobs.anchor or jobs.adapt")
    if cfg.cross_lingual.anchoring.weight > 0 and cfg.cross_lingual.enabled and cfg.model.adapter.kind == "frozen" \
            and not cfg.model.adapter.add:

        raise ConfigError("cross_lingual.anchoring.weight > 0 needs trainable encoder weights (model.adapter.kind "
                          "lora, ia3, full, or model.adapter.add)")
    pool = Pool.open(cfg.pool_dir)
    cfg.model = resolve_labels(cfg.model, pool)
    # dev / test: the pool's labelled splits, or sets drawn from the training split (a pool with no labels)
    source = evaluation_source(cfg.active.evaluation, pool, cfg.model)
    check_evaluation_pool(pool, cfg.model, source, cross_lingual=cfg.cross_lingual.enabled)
    if cfg.cross_lingual.enabled:

        check_cross_lingual(pool, cfg.cross_lingual, cfg.model)
    # The budget against the training pool, before the folder is claimed: a refused budget leaves no run.json
    # behind, so the fix its message names (a lower budget) is a new start, not a resume mismatch.
    drawn = check_budget_fits(cfg, pool, source)
    ray = use_ray(cfg, pool)  # runtime.ray=off refused here too, before the folder is claimed
    # The run folder is ours (marked, or an earlier version's run of this job) and this process its one writer,
    # before anything is written there: a second jobs.after on it stops here, naming the first.
    with claim_run_folder(cfg.output_dir, "jobs.after", AFTER_RUN_LAYOUT, inputs=_inputs(cfg)):
        check_run(cfg.output_dir, "jobs.after", cfg, inputs={"pool": pool.lineage},
                  config_yaml=to_yaml(cfg), extra_speed_only=() if cfg.tapt_enabled else ("tapt.*",))
        return _run_claimed(cfg, pool, source, t0, verbose, on_round, drawn, ray)


def check_budget_fits(cfg: AfterJobConfig, pool, source: str):
    """Refuse a budget that does not fit in the training pool, writing nothing (the loop checks it again): a
    job calls it before it claims its folder, so the refusal leaves no run behind.

    Returns:
        The evaluation sets' draw (``checked_draw``) for the run to write once it holds its folder, or None
        (the pool's splits, or a draw an earlier start wrote).

    Raises:
        ConfigError: the budget's last step exceeds the training pool, naming the keys to change.
    """
    if exists(storage_path(cfg.output_dir) / "rounds" / "evaluation" / "selection.parquet"):
        return None  # an earlier start drew the sets: the loop checks the budget against them
    cross = cfg.cross_lingual
    where = {cross.group_column: cross.target} if cross.enabled and source == "pool" else None
    # The sizing jobs.plan uses too: the plan's overrides pass here as they passed there.
    _, drawn = check_sizes(pool, cfg.active, cfg.model.labels, cfg.model.dimensions, where=where,
                           exclude=lambda: _oracle_cannot_label(pool, cfg), log=print)
    return drawn


def _inputs(cfg: AfterJobConfig) -> dict:
    """What the job reads, by config key (its output may be none of them, nor inside or around one)."""
    return {"pool_dir": cfg.pool_dir, "model.encoder.source": cfg.model.encoder.source,
            "model.encoder.checkpoint": cfg.model.encoder.checkpoint}


def claim_run_folder(output_dir: str, job: str, layout: tuple[str, ...], inputs: dict | None = None):
    """Refuse a folder that is not a run folder of ours or that overlaps an input, lock it and mark it
    (:func:`ser_models.ownership.claim_output`).

    Returns:
        The held lock (a context manager).

    Raises:
        ForeignFolderError: the folder holds things this platform did not make.
        LockHeldError: another process runs in it.
    """

    return claim_output(output_dir, "run", job=job, layout=layout, inputs=inputs, what="run folder")


def _run_claimed(cfg: AfterJobConfig, pool, source: str, t0: float, verbose: bool, on_round, drawn=None,
                 ray: bool = True):
    """:func:`run_after` after its checks, holding the run folder's lock (``drawn``: the checked draw of the
    evaluation sets, written now; ``ray``: connect to Ray, else every round runs in this process)."""


    held_out = set()
    if source != "pool":
        # Drawn (or read back) before TAPT, which must never see the clips the rounds are evaluated on.
        held_out = set(evaluation_sets(pool, storage_path(cfg.output_dir) / "rounds" / "evaluation",
                                       draw_config(cfg.active.evaluation, source), cfg.active.seed,
                                       exclude=lambda: _oracle_cannot_label(pool, cfg), log=print,
                                       labels=cfg.model.labels, budget=cfg.active, drawn=drawn)["utt_id"])
    if ray:
        connect_ray()  # RAY_ADDRESS (set by `ray job submit`) or a local instance
    if ray and cfg.scaling.backend != "in_process":  # fail before TAPT, not at the first scoring call

        check_reservation(cfg.active.scorer, cluster_cpus(), cluster_cpu_nodes())
    objective = None
    if cfg.tapt_enabled:

        objective = cfg.tapt.resolve_objective(build_encoder(cfg.model.encoder).family,
                                               frozen=cfg.model.wap.enabled and cfg.model.adapter.kind == "frozen"
                                               and not cfg.model.adapter.add)
    if objective == "adapter":

        # The adapter learns from the training split's cached frames, shared with the loop's frame cache.
        cfg.model, _ = pretrain_adapter_stage(pool, cfg.model, cfg.tapt.adapter, cfg.scaling, f"{cfg.output_dir}/tapt",
                                              cfg.active.feature_cache_dir or f"{cfg.output_dir}/feature_cache",
                                              cfg.active.scorer, verbose=verbose)
    elif cfg.tapt_enabled:
        from ser_models.pretraining.tapt import TAPT_COLUMNS, run_tapt

        tapt_job = TaptJobConfig(pool_dir=cfg.pool_dir, output_dir=f"{cfg.output_dir}/tapt",
                                 encoder=cfg.model.encoder, tapt=cfg.tapt, scaling=cfg.scaling)
        # Training split only, without drawn evaluation sets: TAPT must never see the clips it is evaluated on.
        train_n = pool.table(["utt_id"], split="train").num_rows - len(held_out)
        tapt_ds = pool.dataset("train", columns=TAPT_COLUMNS)
        if held_out:
            tapt_ds = tapt_ds.map_batches(without_ids, fn_kwargs={"ids": pa.array(sorted(held_out), pa.string())},
                                          batch_format="pyarrow", zero_copy_batch=True)
        tapt = run_tapt(tapt_job, tapt_ds, train_rows=train_n)
        print(f"TAPT: encoder adapted on the training split -> {tapt.checkpoint}")
        cfg.model.encoder = tapt.encoder_config(cfg.model.encoder)
    # Without Ray every model reads cached features alone: they share one frozen encoder, with the numbers of
    # fresh builds (ser_models.models.encoder_reuse), instead of loading its weights for every fit and pass.
    with contextlib.nullcontext() if ray else reusing_frozen_encoders():
        loop = ActiveLearningLoop(pool, cfg.output_dir, cfg.model, cfg.train, cfg.scaling, cfg.active,
                                  verbose=verbose, cross_lingual=cfg.cross_lingual, pool_checked=True, use_ray=ray)
        try:
            reports = loop.run(on_round=on_round)
        except LabellingPending as pending:
            print(f"\n*** waiting for labels ***\n{pending}")
            return None

    verdict = latest_verdict(reports)
    if verdict is not None:
        print(f"does selection pay here (round {verdict['round']}): {verdict['text']} "
              f"({cfg.output_dir}/report/selection.json)")
    print(f"\ndone in {time.perf_counter() - t0:.0f}s: {cfg.output_dir}/metrics.jsonl, "
          f"{cfg.output_dir}/report/learning_curve.png")
    return reports


def _oracle_cannot_label(pool, cfg: AfterJobConfig) -> set[str]:
    """Training clips the run's oracle can never label (the simulated one: no true label, one outside
    model.labels, a missing dimension value): never drawn into an evaluation set, as the loop never selects
    them."""
    if cfg.active.oracle != "simulated":
        return set()

    oracle = simulated_oracle(pool, list(cfg.model.labels), list(cfg.model.dimensions))
    return oracle.unlabelable(pool.metadata(columns=["utt_id"], split="train")["utt_id"].astype(str))


def main(argv: list[str] | None = None):
    cfg = resolve_encoder_names(parse_job_args(AfterJobConfig, sys.argv[1:] if argv is None else argv, "jobs.after"))
    return run_after(cfg)
