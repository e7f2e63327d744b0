"""Run (or resume) a Ray Tune sweep of a base job and write what a person reads afterwards.

    output_dir/
      run.json, config.yaml   what the sweep was made from (a rerun with other result keys is refused)
      tune/<name>/            Ray Tune's experiment folder (trial states, TensorBoard event files)
      trials/<trial id>/      each trial's own job output (checkpoint, metrics.json, Ray Train run)
      mlflow.db               MLflow runs, one per trial (SQLite; local output_dir, no tracking_uri)
      results.parquet         one row per trial
      best.yaml               the best trial's complete base-job config
      report/*.png            metric vs each key, the ASHA curves, parameters vs metric

Tune API used (Ray 2.60): a function trainable wrapped by ``tune.with_parameters`` and
``tune.with_resources``; ``tune.Tuner(trainable, param_space, TuneConfig, tune.RunConfig)``; on a rerun,
``Tuner.can_restore`` + ``Tuner.restore(resume_errored=True)``; ASHA and Optuna from ``ray.tune``.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, replace

from ser_models.config import (
    from_dict,
    path_kind,
    resolve_path_value,
    resolve_paths,
    speed_only_keys,
    to_dict,
    to_yaml,
)
from ser_models.exceptions import ConfigError, TrainingError
from ser_models.io import filesystem, is_local, local_path, storage_path
from ser_models.ownership import deferred_claim
from ser_models.provenance import check_run
from ser_models.runtime import connect_ray
from ser_models.tune.config import PBT_MUTABLE, SweepConfig
from ser_models.tune.space import apply_values, check_against, grid_size, param_space, parse_search
from ser_models.tune.targets import DIMENSIONAL_DEFAULT_METRIC, TARGETS, TrialSpec


@dataclass
class SweepOutcome:
    """What :func:`run_sweep` returns: the results table, the winner's job config, Tune's ``ResultGrid`` and
    the wall time of ``Tuner.fit`` (s)."""

    frame: object
    best_config: object
    grid: object
    seconds: float


@dataclass
class SweepPlan:
    """A checked sweep: the base job's config, the parsed search, and what Tune is given."""

    cfg: SweepConfig
    base_cfg: object
    base_dict: dict
    params: list
    metric: str
    time_attr: str
    max_t: int
    trials: int
    mutate: tuple = ()
    @property
    def stop_metric(self) -> str:
        """What ASHA stops trials on: ``scheduler.metric``, else the ranking metric."""
        return self.cfg.scheduler.metric or self.metric

    @property
    def stop_mode(self) -> str:
        """The direction of :attr:`stop_metric`: ``scheduler.mode``, else the sweep's mode."""
        return self.cfg.scheduler.mode or self.cfg.mode

    @property
    def own_stop_metric(self) -> bool:
        """ASHA stops on something other than what trials are ranked by (Tune then gets the metric from the
        scheduler and the searcher, not from ``TuneConfig``, which would hand its own to both)."""
        return (self.stop_metric, self.stop_mode) != (self.metric, self.cfg.mode)


def plan_sweep(cfg: SweepConfig, *, check_pool: bool = True) -> SweepPlan:
    """Validate everything that can be checked before Ray starts.

    Args:
        cfg: the sweep config.
        check_pool: also open the base config's pool and check its labels (off to check a config alone).

    Raises:
        ConfigError: a base config that does not validate, an empty search, a key that does not exist in the
            base config (named), a value it rejects, a metric the base job does not report.
        PoolError: the base pool is missing or holds labels outside ``model.labels``.
    """
    target = TARGETS[cfg.base]
    schema = target.schema()
    base = dict(cfg.config)
    # The trial sets output_dir; the base needs none of its own.
    base.setdefault("output_dir", f"{cfg.output_dir}/trials/base")
    try:
        # Paths relative to where the sweep was started: a trial runs in its own folder (and maybe node).
        base_cfg = resolve_paths(from_dict(schema, base))
    except ConfigError as exc:
        raise ConfigError(f"config (the {cfg.base} job's config): {exc}") from None
    base_dict = to_dict(base_cfg)
    params = [replace(p, values=tuple(resolve_path_value(schema, p.key, v) for v in p.values))
              if p.kind in ("choice", "grid") and path_kind(schema, p.key) else p for p in parse_search(cfg.search)]
    check_against(params, schema, base_dict)
    metric = cfg.metric or (target.default_metric if base_cfg.model.labels else DIMENSIONAL_DEFAULT_METRIC[cfg.base])
    for key, name in (("metric", metric), ("scheduler.metric", cfg.scheduler.metric or metric)):
        if "test" in name.split("_"):
            raise ConfigError(f"{key} {name!r} reads the test split: a sweep chooses settings, so it ranks and "
                              f"stops trials on dev (e.g. {target.default_metric}); test numbers are reported "
                              "beside the ranking in results.parquet")
        if name not in target.metrics:
            raise ConfigError(f"{key} {name!r} is not reported by base {cfg.base}; choose one of {target.metrics}")
        if target.fits and name.startswith("dev_") and not base_cfg.dev_split:
            raise ConfigError(f"{key} {name!r} needs a dev split: config.dev_split is empty")
    max_t = cfg.scheduler.max_t or _max_time(target, schema, base_dict, params)
    if check_pool and "pool_dir" not in {p.key for p in params}:  # a wrong pool or label fails here, not per trial
        from ser_models.data import Pool

        splits = ((base_cfg.train_split, base_cfg.dev_split, base_cfg.test_split) if target.fits
                  else ("dev", "test"))
        from ser_models.models.model_config import (
            resolve_labels,  # each trial's job takes the pool's labels too
        )

        pool = Pool.open(base_cfg.pool_dir)
        pool.check_targets(resolve_labels(base_cfg.model, pool).targets, splits)
    trials = cfg.num_samples * grid_size(params, base_dict, cfg.search_alg)
    mutate = _pbt_mutations(cfg, base_cfg, params) if cfg.scheduler.name == "pbt" else ()
    return SweepPlan(cfg, base_cfg, base_dict, params, metric, target.time_attr, max_t, trials, mutate)


def _pbt_mutations(cfg: SweepConfig, base_cfg, params) -> tuple:
    """The swept keys PBT perturbs, after checking that the sweep can run under PBT at all.

    PBT restarts a trial from another trial's state, so it needs trials that keep their whole fit state in
    their own folder (``finetune`` with ``scaling.backend=in_process``) and keys the fit reads afresh after
    a restore (:data:`~ser_models.tune.config.PBT_MUTABLE`); the other swept keys stay as sampled and travel
    with the copied state.
    """
    where = "scheduler.name=pbt"
    if cfg.base != "finetune" or base_cfg.scaling.backend != "in_process" or any(
            p.key == "scaling.backend" for p in params):
        raise ConfigError(f"{where} needs base: finetune with config.scaling.backend=in_process (not swept): "
                          "a trial must hold its whole fit state to hand it to another trial")
    if cfg.search_alg == "optuna":
        raise ConfigError(f"{where} changes trial configs in flight, which Optuna's TPE cannot model; use "
                          "search_alg: random or grid")
    by_key = {p.key: p for p in params}
    keys = list(cfg.scheduler.mutate) or [k for k in PBT_MUTABLE if k in by_key]
    if not keys:
        raise ConfigError(f"{where}: nothing to mutate; sweep at least one of {list(PBT_MUTABLE)}")
    for key in keys:
        p = by_key.get(key)
        if p is None:
            raise ConfigError(f"scheduler.mutate: {key} is not a key of search (PBT perturbs within its range)")
        if p.kind not in ("choice", "uniform", "loguniform") or cfg.search_alg == "grid":
            raise ConfigError(f"search.{key}: PBT perturbs choice, uniform or loguniform keys, not {p.kind}"
                              f"{' (search_alg=grid)' if cfg.search_alg == 'grid' else ''}")
    return tuple(by_key[k] for k in keys)


def _max_time(target, schema, base: dict, params) -> int:
    """The most time units any trial can run (the space's largest epochs / rounds)."""

    best = target.max_time(from_dict(schema, base))
    for p in params:
        for value in p.sample_points():
            best = max(best, target.max_time(apply_values(schema, base, {p.key: value})))
    return best


@dataclass(frozen=True)
class TrialFootprint:
    """What one trial holds on the cluster.

    Attributes:
        own: what Tune reserves for the trial's own process (``tune.with_resources``).
        cpus: CPUs the whole trial keeps busy: its process, Ray Train workers or scoring actors.
        gpus: GPUs the whole trial holds.
    """

    own: dict
    cpus: float
    gpus: float


def trial_footprint(base_cfg) -> TrialFootprint:
    """The footprint of a trial of ``base_cfg`` (a finetune or AL-loop job config).

    - In-process fit: the trial trains in its own process, which reserves its CPUs (and GPU).
    - Ray Train fit: the trial only drives the ``TorchTrainer``, whose workers reserve their own resources, so
      its process holds a sliver of a CPU.
    - AL loop: the trial orchestrates; its scoring actors and Ray Data reads reserve their own CPUs, which a
      trial holding them would starve (in-process rounds train on the trial's threads regardless).
    """
    scaling = base_cfg.scaling
    in_process = scaling.backend == "in_process"
    workers = 1 if in_process else scaling.num_workers
    cpus, gpus = float(scaling.cpus_per_worker * workers), float(workers if scaling.use_gpu else 0)
    sliver = {"CPU": 0.01}
    if hasattr(base_cfg, "active"):
        scorer = base_cfg.active.scorer
        cpus = max(1.0 if in_process else cpus, scorer.num_actors * scorer.num_cpus)
        own = {**sliver, **({"GPU": 1.0} if scaling.use_gpu and in_process else {})}
        # Scoring and cache actors reserve their own GPUs after training. An in-process trial keeps its GPU
        # meanwhile, so they add to it; Ray Train workers have released theirs, so the larger of the two counts.
        scoring = float(scorer.num_actors * scorer.num_gpus)
        gpus = gpus + scoring if in_process else max(gpus, scoring)
    elif in_process:
        own = {"CPU": float(scaling.cpus_per_worker), **({"GPU": 1.0} if scaling.use_gpu else {})}
    else:
        own = sliver
    return TrialFootprint(own, cpus, gpus)


def trial_resources(plan: SweepPlan, footprint: TrialFootprint):
    """What Tune reserves per trial: the footprint's own part, plus under PBT a one-CPU bundle in which the
    trial runs its own Ray Data reads (see ``targets.finetune_trial``).

    PBT keeps its whole population live (paused trials wait for a slot), so only resources bound how many
    run; a trial whose reads needed a CPU outside its reservation could then starve on a full cluster.
    """
    if plan.cfg.scheduler.name != "pbt":
        return footprint.own
    from ray.tune import PlacementGroupFactory

    return PlacementGroupFactory([footprint.own, {"CPU": 1.0}])


def default_concurrency(footprint: TrialFootprint, cluster: dict, pbt: bool = False) -> int:
    """Trials that fit at once, bound by the cluster's CPUs and GPUs.

    ASHA / FIFO keep one CPU free for Ray Data's reads, which run outside the trials' reservations. Under PBT
    every trial reserves a one-CPU bundle for its own reads (:func:`trial_resources`), so nothing is kept free
    and a trial counts that bundle.
    """
    cpus = float(cluster.get("CPU", 1))
    n = max(1, math.floor(cpus / (footprint.cpus + 1)) if pbt else math.floor(max(cpus - 1, 1) / footprint.cpus))
    if footprint.gpus:
        n = min(n, max(1, math.floor(float(cluster.get("GPU", 0)) / footprint.gpus)))
    return n


def check_gpus(footprint: TrialFootprint, cluster: dict) -> None:
    """Refuse a trial that needs more GPUs at once than the cluster has: it would wait forever.

    Raises:
        ConfigError: naming the keys that hold the GPUs (e.g. an in-process trial holding its GPU while its
            scoring actors ask for one more on a one-GPU node).
    """
    have = float(cluster.get("GPU", 0))
    if footprint.gpus > have + 1e-9:
        raise ConfigError(
            f"one trial needs {footprint.gpus:g} GPUs at once but the cluster has {have:g}: an in-process trial "
            "keeps its GPU (scaling.use_gpu) while its scoring actors reserve active.scorer.num_actors x "
            "active.scorer.num_gpus more. Set active.scorer.num_gpus=0 (score on CPU), or "
            "scaling.backend=ray_train (the workers release their GPUs before scoring), or add GPUs")


def starved_reads_warning(concurrency: int, footprint: TrialFootprint, cluster: dict, pbt: bool) -> str | None:
    """Why ``max_concurrent_trials`` may hang the sweep, or None.

    Outside PBT, a trial's Ray Data reads need a CPU beyond the trial's own reservation. Trials that reserve
    every CPU of the cluster leave none, and the reads wait until the cluster grows (an autoscaler may add
    nodes, so this warns rather than refuses).
    """
    cpus = float(cluster.get("CPU", 0))
    if pbt or not cpus or concurrency * footprint.cpus < cpus:
        return None
    fits = default_concurrency(footprint, cluster)  # what leaves a CPU free (1 when even one trial cannot)
    fix = (f"Set max_concurrent_trials <= {fits} or add CPUs." if fits < concurrency
           else "Add CPUs or lower the base config's CPUs per trial.")
    return (f"max_concurrent_trials={concurrency} x {footprint.cpus:g} CPU(s) per trial reserves all {cpus:g} CPUs "
            f"of the cluster, leaving none for the trials' Ray Data reads: they wait until the cluster grows. {fix}")


def build_scheduler(plan: SweepPlan):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    s = plan.cfg.scheduler
    if s.name == "fifo":
        return FIFOScheduler()
    if s.name == "pbt":
        # Choices go in as lists: PBT moves a list value to a neighbouring entry, but multiplies whatever a
        # tune.choice domain holds by 0.8/1.2. Scaled values are clipped back into the search range.
        mutations = {p.key: list(p.values) if p.kind == "choice" else p.tune_domain() for p in plan.mutate}
        return PopulationBasedTraining(
            time_attr=plan.time_attr, perturbation_interval=s.perturbation_interval,
            quantile_fraction=s.quantile_fraction, resample_probability=s.resample_probability,
            hyperparam_mutations=mutations, synch=s.synch,
            custom_explore_fn=functools.partial(clip_to_ranges, plan.mutate))
    # max_t one past the last epoch: ASHA stops a trial that reaches max_t, which would cut the run before
    # its final report (test metrics) and its checkpoint.
    own = {"metric": plan.stop_metric, "mode": plan.stop_mode} if plan.own_stop_metric else {}
    asha = ASHAScheduler(time_attr=plan.time_attr, max_t=plan.max_t + 1, **own,
                         grace_period=min(s.grace_period, plan.max_t), reduction_factor=s.reduction_factor)
    # Ray places rungs at grace * rf**k below max_t, so one can land on the last epoch (4 epochs, rf 2): a stop
    # there saves no work and loses the trial's final report. Keep only the rungs before the last epoch.
    for bracket in getattr(asha, "_brackets", []):
        bracket._rungs = [rung for rung in bracket._rungs if rung[0] < plan.max_t]
    return asha


def asha_rungs(scheduler) -> list[float]:
    """The epochs (or rounds) at which an ASHA scheduler may stop a trial, ascending."""
    rungs = {float(rung[0]) for bracket in getattr(scheduler, "_brackets", []) for rung in bracket._rungs}
    return sorted(int(r) if r.is_integer() else r for r in rungs)


def clip_to_ranges(params, config: dict) -> dict:
    """PBT's explore hook: scaled ``uniform`` / ``loguniform`` values back inside ``[low, high]``."""
    for p in params:
        if p.kind in ("uniform", "loguniform") and p.key in config:
            config[p.key] = min(max(config[p.key], p.values[0]), p.values[1])
    return config


def build_search_alg(plan: SweepPlan, concurrency: int):
    """Optuna's TPE (limited to ``concurrency`` by ``TuneConfig``) or the seeded random/grid generator,
    which takes the limit itself (Tune ignores ``max_concurrent_trials`` for a ``SearchGenerator``)."""
    cfg = plan.cfg
    if cfg.search_alg == "optuna":
        try:
            from optuna.samplers import TPESampler
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as exc:  # pragma: no cover - optuna is a dependency
            raise ConfigError("search_alg=optuna needs the optuna package: pip install optuna") from exc
        own = {"metric": plan.metric, "mode": cfg.mode} if plan.own_stop_metric else {}
        return OptunaSearch(sampler=TPESampler(seed=cfg.seed), **own)
    from ray.tune.search import BasicVariantGenerator

    # PBT needs its whole population created at once (a trial waits for, or copies, the others); trial
    # resources then bound how many run (see trial_resources).
    return BasicVariantGenerator(random_state=cfg.seed,
                                 max_concurrent=0 if cfg.scheduler.name == "pbt" else concurrency)


def _callbacks(plan: SweepPlan) -> list:
    cfg = plan.cfg
    callbacks = []
    if cfg.tracking.tensorboard:
        from ray.tune.logger import TBXLoggerCallback

        callbacks.append(TBXLoggerCallback())
    if cfg.tracking.mlflow:
        uri = cfg.tracking.tracking_uri
        if not uri:
            if not is_local(cfg.output_dir):
                print(f"MLflow: off ({cfg.output_dir} is not a local folder and tracking.tracking_uri is unset; "
                      "set it to your MLflow server)")
                return callbacks
            # MLflow 3 keeps its file store in maintenance mode (it refuses one by default): a SQLite
            # database in the sweep folder is the local store that needs no server.
            uri = f"sqlite:///{local_path(storage_path(cfg.output_dir) / 'mlflow.db')}"
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=cfg.tracking.experiment_name
                                              or cfg.name, save_artifact=False))
    return callbacks


def _tune_storage(cfg: SweepConfig) -> tuple[str, object | None]:
    """``(storage_path, storage_filesystem)`` of the Tune experiment (``output_dir/tune``)."""
    uri = storage_path(cfg.output_dir) / "tune"
    if is_local(uri):
        return str(local_path(uri)), None
    fs, path = filesystem(uri)
    return path, fs


#: What the job writes into its ``output_dir`` besides ``run.json`` and ``config.yaml`` (an earlier
#: version's folder holding a ``run.json`` of this job and only these names is adopted).
SWEEP_LAYOUT = ('tune', 'trials', 'mlflow.db', 'results.parquet', 'best.yaml', 'report')


def run_sweep(cfg: SweepConfig, *, verbose: int = 1):
    """Run the sweep, or resume it (see :func:`_run_sweep`)."""

    # Refused now, before anything is read, if the folder is not this job's or overlaps an input; claimed
    # (marked and locked) right before the job's first write, so a config error leaves no folder behind.
    with deferred_claim(cfg.output_dir, "run", job="jobs.sweep", layout=SWEEP_LAYOUT,
                      inputs={"pool_dir": cfg.config.get("pool_dir") if isinstance(cfg.config, dict) else None}) as claim:
        return _run_sweep(cfg, verbose=verbose, claim=claim)


def _run_sweep(cfg: SweepConfig, *, verbose: int = 1, claim=lambda: None):
    """Run the sweep, or resume it when ``output_dir`` holds an unfinished one; write the outputs.

    Returns:
        A :class:`SweepOutcome`.

    Raises:
        ConfigError: see :func:`plan_sweep`; also a rerun whose result-changing keys differ.
        TrainingError: every trial failed.
    """
    from ray import tune

    from ser_models.tune.report import write_report
    from ser_models.tune.results import print_leaderboard, results_frame, write_best, write_results

    plan = plan_sweep(cfg)
    claim()  # the output folder: marked and locked before the first byte
    # the base job's speed-only keys may change too (the sweep holds its config as a plain dict)
    check_run(cfg.output_dir, "jobs.sweep", cfg, config_yaml=to_yaml(cfg),
              extra_speed_only=tuple(f"config.{k}" for k in speed_only_keys(TARGETS[cfg.base].schema())))
    connect_ray()
    import ray

    pbt = cfg.scheduler.name == "pbt"
    spec = TrialSpec(cfg.base, plan.base_dict, tuple(plan.params), str(storage_path(cfg.output_dir)), pbt=pbt)
    footprint = trial_footprint(plan.base_cfg)
    trainable = tune.with_resources(tune.with_parameters(TARGETS[cfg.base].trial_fn(), spec=spec),
                                    trial_resources(plan, footprint))
    space = param_space(plan.params, plan.base_dict, cfg.search_alg)
    cluster = ray.cluster_resources()
    check_gpus(footprint, cluster)
    concurrency = (0 if pbt else cfg.max_concurrent_trials) or default_concurrency(footprint, cluster, pbt=pbt)
    warning = starved_reads_warning(concurrency, footprint, cluster, pbt)
    if warning:
        print(f"WARNING: {warning}", flush=True)
    path, fs = _tune_storage(cfg)
    exp_path = f"{path}/{cfg.name}"
    t0 = time.perf_counter()
    if tune.Tuner.can_restore(exp_path, storage_filesystem=fs):
        print(f"resuming the sweep in {cfg.output_dir}: finished trials are kept, unfinished ones resume")
        tuner = tune.Tuner.restore(exp_path, trainable, resume_errored=True, param_space=space,
                                   storage_filesystem=fs)
    else:
        print(f"sweep {cfg.name!r}: base {cfg.base}, {len(plan.params)} keys, {plan.trials} trials "
              f"({cfg.search_alg}, {cfg.scheduler.name} on {plan.time_attr} up to {plan.max_t}), metric "
              f"{plan.metric} ({cfg.mode}), {concurrency} at a time"
              + (f"; ASHA stops on {plan.stop_metric} ({plan.stop_mode})" if plan.own_stop_metric else "")
              + (f"; PBT mutates {[p.key for p in plan.mutate]} every "
                 f"{cfg.scheduler.perturbation_interval} epoch(s)" if pbt else ""))
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            # with its own stopping metric, ASHA and Optuna are built with theirs (Tune refuses both places)
            tune_config=tune.TuneConfig(**({} if plan.own_stop_metric else {"metric": plan.metric, "mode": cfg.mode}),
                                        search_alg=build_search_alg(plan, concurrency),
                                        scheduler=build_scheduler(plan), num_samples=cfg.num_samples,
                                        max_concurrent_trials=concurrency if cfg.search_alg == "optuna" else None,
                                        # An in-process fit is the whole trial: its process can serve the
                                        # next one. A stopped Ray Train or AL-loop trial must die with its
                                        # process, which owns its Train controller or scoring actors.
                                        reuse_actors=(TARGETS[cfg.base].fits
                                                      and plan.base_cfg.scaling.backend == "in_process"
                                                      and all(p.key != "scaling.backend" for p in plan.params)),
                                        trial_dirname_creator=lambda trial: trial.trial_id),
            run_config=tune.RunConfig(name=cfg.name, storage_path=path, storage_filesystem=fs,
                                      # PBT copies a trial's latest checkpoint; Tune warns that keeping <= 2
                                      # can delete one while it is being copied
                                      checkpoint_config=tune.CheckpointConfig(num_to_keep=4 if pbt else None),
                                      failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
                                      callbacks=_callbacks(plan), verbose=verbose),
        )
    grid = tuner.fit()
    seconds = time.perf_counter() - t0
    frame = results_frame(grid, plan)
    if frame.empty or frame["metric"].isna().all():
        errors = [str(r.error).splitlines()[0] for r in grid if r.error is not None][:3]
        raise TrainingError(f"no trial of the sweep in {cfg.output_dir} reported {plan.metric}; first errors: "
                            f"{errors}")
    write_results(frame, cfg.output_dir)
    best_cfg = write_best(frame, plan, cfg.output_dir)
    write_report(frame, grid, plan, storage_path(cfg.output_dir) / "report")
    print_leaderboard(frame, plan, top_k=cfg.top_k)
    print(f"\n{len(frame)} trials in {seconds:.0f}s: {cfg.output_dir}/results.parquet, best.yaml, report/")
    return SweepOutcome(frame, best_cfg, grid, seconds)
