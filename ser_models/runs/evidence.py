"""What ``python -m jobs.evidence`` runs: the AFTER loop for several strategies over many paired seeds, from one
shared feature cache, in one process and one Ray session, and the statistics that say what active learning buys.

One seed is a draw of the initial set, the selections and the head's start. Under a seed every strategy starts
from the same initial set (``active.initial=random``) and differs only in what it queries, so the comparison
with the baseline is paired: per budget, the paired difference with a 95 % t-interval and a paired t-test;
per run, the normalised area under the budget curve (AUBC); the labels each strategy needs to reach the
baseline's value at the largest budget and 95 % of the all-labels value (``ser_models.active.evidence``).

Layout of ``output_dir``::

    runs/<strategy>_s<seed>/    a jobs.after run folder per (strategy, seed): ledger, rounds, metrics.jsonl
    runs/all-labels_s<seed>/    the all-labels reference, trained once (``evidence.all_labels``)
    runs.csv                    one row per (strategy, seed, round): labelled, fraction, test_ua, dev_ua, seconds
    report.md                   the tables (per budget, AUBC, label savings) as printed
    evidence.png                test UA against labelled clips, mean and 95 % band per strategy

A rerun with the same ``output_dir`` skips finished runs and rounds (each run folder resumes like jobs.after).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

import pandas as pd

from ser_models.config import field
from ser_models.exceptions import ConfigError
from ser_models.runs.after import AfterJobConfig

#: The name of the all-labels reference runs in ``runs.csv`` and the run folders.
ALL_LABELS = "all-labels"
#: ``strategy+variant`` names: a strategy run with extra settings (class-balanced quotas for imbalanced pools).
VARIANTS = {"balanced": {"class_balanced": True}}


@dataclass
class EvidenceConfig:
    """Which strategies, against which baseline, over how many paired seeds."""

    strategies: list[str] = field(default_factory=lambda: ["informative_diverse"],
                                  help="strategies compared with the baseline (active.strategy.name values; "
                                       "NAME+balanced adds class-balanced quotas)")
    baseline: str = field("random", help="the strategy every other one is compared with, seed by seed")
    seeds: int = field(10, help="paired seeds per strategy (first_seed .. first_seed + seeds - 1); 20 resolve "
                                "differences of about 2-3 UA points, 3 only about 7")
    first_seed: int = field(0, help="the first seed")
    all_labels: bool = field(True, help="also train once on every training label: the ceiling line and the "
                                        "target of the '95 % of all labels' savings")
    cache_in_memory_mb: int = field(1024, speed_only=True,
                                    help="hold the feature cache in this process when its features take at most "
                                         "this many MB (every round then reads rows from memory, not Parquet); "
                                         "0 = always stream")

    def __post_init__(self):
        if self.seeds < 2:
            raise ConfigError(f"evidence.seeds must be >= 2 (a 95 % interval needs two paired seeds), got {self.seeds}")
        names = [self.baseline, *self.strategies]
        if len(set(names)) != len(names):
            raise ConfigError(f"evidence.strategies and evidence.baseline must be distinct names, got {names}")
        for name in names:
            variant = name.partition("+")[2]
            if variant and variant not in VARIANTS:
                raise ConfigError(f"evidence.strategies: unknown variant {variant!r} in {name!r}; known: "
                                  f"{sorted(VARIANTS)}")


@dataclass
class EvidenceJobConfig(AfterJobConfig):
    """A jobs.after config (every run's settings) plus ``evidence``: strategies, baseline and seeds."""

    evidence: EvidenceConfig = field(default_factory=EvidenceConfig,
                                     help="strategies, baseline and paired seeds to compare")


def check_evidence_config(cfg: EvidenceJobConfig) -> None:
    """Refuse what cannot give paired, cached, simulated runs (each message names the key)."""
    from ser_models.active.feature_cache import cache_supported

    if cfg.tapt_enabled:
        raise ConfigError("jobs.evidence runs every loop from one frozen-encoder feature cache: set "
                          "tapt_enabled=false (adapt the encoder first, e.g. jobs.tapt, and point "
                          "model.encoder.source at it)")
    if cfg.active.oracle != "simulated":
        raise ConfigError(f"jobs.evidence labels with the pool's own labels: active.oracle must be 'simulated', "
                          f"got {cfg.active.oracle!r}")
    reason = cache_supported(cfg.model)
    if reason or cfg.active.feature_cache == "off":
        raise ConfigError("jobs.evidence needs the feature cache (many runs, one encoder pass): "
                          + (reason or "active.feature_cache is 'off'"))


def run_config(cfg: EvidenceJobConfig, strategy: str, seed: int, labelable: int | None = None) -> tuple:
    """The (active, train) settings of one run: ``strategy`` (``NAME+variant`` allowed, or :data:`ALL_LABELS`)
    under ``seed``, sharing the job's feature cache. ``labelable``: training clips the oracle can label, which
    the all-labels run labels (None: the whole training split)."""
    name, _, variant = strategy.partition("+")
    cache_dir = cfg.active.feature_cache_dir or f"{cfg.output_dir}/feature_cache"
    if strategy == ALL_LABELS:
        budget = {"budget_labels": [labelable], "budget_fractions": []} if labelable else {"budget_fractions": [1.0]}
        active = dataclasses.replace(cfg.active, **{"budget_labels": [], "budget_hours": [], **budget},
                                     strategy=dataclasses.replace(cfg.active.strategy, name="random"))
    else:
        active = dataclasses.replace(cfg.active, strategy=dataclasses.replace(
            cfg.active.strategy, name=name, **VARIANTS.get(variant, {})))
    active = dataclasses.replace(active, seed=seed, feature_cache="on", feature_cache_dir=cache_dir)
    return active, dataclasses.replace(cfg.train, seed=seed)


def labelable_training_clips(pool, model_cfg) -> int:
    """Training clips the simulated oracle can label (a label in ``model.labels``, every dimension present)."""
    from ser_models.active.oracles import SimulatedOracle

    truth = pool.metadata(columns=["utt_id", "label", *model_cfg.dimensions], split="train")
    oracle = SimulatedOracle(truth, labels=list(model_cfg.labels), dimensions=list(model_cfg.dimensions))
    return len(truth) - len(oracle.unlabelable(truth["utt_id"].tolist()))


def run_rows(strategy: str, seed: int, reports, seconds: float) -> list[dict]:
    """``runs.csv`` rows of one run: one per round (test UA, or the mean CCC for a model without classes)."""
    from ser_models.evaluation import headline_metric

    rows = []
    for r in reports:
        test, dev = r.test or {}, r.dev or {}
        rows.append({"strategy": strategy, "seed": seed, "round": r.round, "labelled": r.labelled,
                     "fraction": r.fraction, "test_ua": test[headline_metric(test)] if test else math.nan,
                     "dev_ua": dev[headline_metric(dev)] if dev else math.nan,
                     "round_s": round(sum(r.seconds.values()), 3), "run_s": round(seconds, 3)})
    return rows


def run_evidence(cfg: EvidenceJobConfig, *, verbose: bool = True) -> pd.DataFrame:
    """Every (strategy, seed) run, then the report; returns the ``runs.csv`` frame.

    Args:
        cfg: the job config.
        verbose: print one line per run, the cache build and the report.
    """
    from ser_models.active.evidence import evidence_report, plot_bands
    from ser_models.active.feature_cache import FeatureCache, cache_kind, cache_states, feature_cache_key
    from ser_models.active.loop import ActiveLearningLoop
    from ser_models.config import to_yaml
    from ser_models.data import Pool
    from ser_models.encoders import build_encoder
    from ser_models.io import storage_path, write_bytes_atomic
    from ser_models.provenance import check_run
    from ser_models.runtime import connect_ray

    t_all = time.perf_counter()
    check_evidence_config(cfg)
    pool = Pool.open(cfg.pool_dir)
    pool.check_targets(cfg.model, ("dev", "test"))
    pool.check_evaluation_labels(cfg.model)
    check_run(cfg.output_dir, "jobs.evidence", cfg, inputs={"pool": pool.summary.get("fingerprint")},
              config_yaml=to_yaml(cfg))
    connect_ray()
    out = storage_path(cfg.output_dir)
    ev = cfg.evidence
    seeds = list(range(ev.first_seed, ev.first_seed + ev.seeds))
    names = [ev.baseline, *ev.strategies]

    # The cache first, with its own progress line: every run after it reads features, never audio.
    encoder = build_encoder(cfg.model.encoder)
    active, _ = run_config(cfg, ev.baseline, seeds[0])
    cache = FeatureCache(active.feature_cache_dir, feature_cache_key(pool, encoder), kind=cache_kind(cfg.model),
                         states=cache_states(cfg.model, encoder, cfg.active.feature_cache_layers))
    if verbose and not cache.ready:
        print(f"feature cache: encoding every clip of the pool once -> {cache.dir}", flush=True)
    cache.build(pool.dataset(None), cfg.model, encoder.num_layers, cfg.active.scorer, verbose=verbose,
                in_process=cfg.scaling.backend == "in_process", total=len(pool.metadata(columns=["utt_id"])))
    if verbose:
        print(f"runs: {', '.join(names)} x {len(seeds)} seeds{', and all labels once' if ev.all_labels else ''}; "
              f"budgets {cfg.active.targets(len(pool.metadata(columns=['utt_id'], split='train')))} labels",
              flush=True)
    pinned = cache.pin(ev.cache_in_memory_mb * 2**20)
    if verbose and pinned:
        print(f"feature cache held in memory for the runs (under evidence.cache_in_memory_mb="
              f"{ev.cache_in_memory_mb})", flush=True)
    # Segments the truth gives no label (labels by overlap) stay in the pool; no run can label them.
    labelable = labelable_training_clips(pool, cfg.model)
    # The all-labels reference trains on the same clips under every seed (only the CV folds differ): once.
    plan = [(name, seed) for seed in seeds for name in names] + ([(ALL_LABELS, seeds[0])] if ev.all_labels else [])
    rows = []
    try:
        t_runs = time.perf_counter()
        for done, (name, seed) in enumerate(plan, 1):
            active, train = run_config(cfg, name, seed, labelable)
            t0 = time.perf_counter()
            loop = ActiveLearningLoop(pool, out / "runs" / f"{name}_s{seed}", cfg.model, train, cfg.scaling, active,
                                      verbose=False, pool_checked=True, plots=False)
            reports = loop.run()
            seconds = time.perf_counter() - t0
            run = run_rows(name, seed, reports, seconds)
            rows += run
            if verbose:
                curve = "  ".join(f"{r['labelled']}: {r['test_ua']:.3f}" for r in run)
                left = (time.perf_counter() - t_runs) / done * (len(plan) - done)
                print(f"[{done:>3}/{len(plan)}] seed {seed:<3} {name:<22} test UA  {curve}  ({seconds:.1f}s; "
                      f"{'done' if done == len(plan) else f'{left / 60:.1f} min left'})", flush=True)
    finally:
        cache.unpin()
    frame = pd.DataFrame(rows)
    write_bytes_atomic(out / "runs.csv", frame.to_csv(index=False).encode())
    curves = frame[frame.strategy != ALL_LABELS]
    full_rows = frame[frame.strategy == ALL_LABELS]
    full = float(full_rows.test_ua.iloc[0]) if len(full_rows) else None
    report = evidence_report(curves, ev.baseline, full=full)
    if full is not None:
        report += f"\n\nall labels ({int(full_rows.labelled.iloc[0])} clips): test UA {full:.3f}"
    write_bytes_atomic(out / "report.md", f"# What active learning buys on {cfg.pool_dir}\n\n```\n{report}\n```\n"
                       "\n![test UA against labelled clips](evidence.png)\n".encode())
    plot_bands(curves, out / "evidence.png", full=full)
    if verbose:
        print(f"\n{report}\n\ndone in {(time.perf_counter() - t_all) / 60:.1f} min: {out / 'report.md'}, "
              f"{out / 'evidence.png'}, {out / 'runs.csv'}")
    return frame
