"""What ``python -m jobs.evidence`` runs: the AFTER loop for several strategies over many paired seeds, from one
shared feature cache, one Ray task per run across the cluster, and the statistics that say what active learning
buys.

One seed is a draw of the initial set, the selections and the head's start. Under a seed every strategy starts
from the same initial set (``active.initial=random``) and differs only in what it queries, so the comparison
with the baseline is paired: per budget, the paired difference with a 95 % t-interval and a paired t-test;
per run, the normalised area under the budget curve (AUBC); the labels each strategy needs to reach the
baseline's value at the largest budget and 95 % of the all-labels value (``ser_models.planning.evidence``).

Layout of ``output_dir``::

    runs/<strategy>_s<seed>/    a jobs.after run folder per (strategy, seed): ledger, rounds, metrics.jsonl
    runs/all-labels_s<seed>/    the all-labels reference, trained once (``evidence.all_labels``)
    cv_choices/                 the runs' cross-validated C choices, shared while the job runs (then removed)
    runs.csv                    one row per (strategy, seed, round): labelled, fraction, test_ua, dev_ua, seconds,
                                labels_<class> (the round's training labels of each class, from its ledger)
    report.md                   the tables (per budget, AUBC, label savings, labels per class) as printed
    evidence.png                test UA against labelled clips, mean and 95 % band per strategy
    class_yield.png             labels of the rarest training class against labelled clips, the same bands
    class_yield.json            that class, its training share, and per (strategy, budget) its labels, share and
                                paired difference to the baseline

A rerun with the same ``output_dir`` skips finished runs (``simulation.json``) and resumes the others by round.

The runs: :mod:`ser_models.runs.evidence_runs` (each run's settings and folder, and the fan-out that spreads
them over the cluster, one Ray task per run).

The config is a jobs.after config (every run's settings) plus ``evidence``: strategies, baseline, seeds, and
``labels_from`` (replay on a jobs.after run's own labels: :mod:`ser_models.runs.run_labels`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass

import pandas as pd

from ser_models.active.round_report import RoundReport
from ser_models.config import PATH, RESULT, SPEED, field, parse_job_args, resolve_paths, to_yaml
from ser_models.data import Pool
from ser_models.data.ledger import LabelLedger
from ser_models.encoders import build_encoder
from ser_models.encoders.functionals import reads_functionals
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.exceptions import ConfigError
from ser_models.io import storage_path, write_bytes_atomic, write_json_atomic
from ser_models.labelling.oracles import SimulatedOracle
from ser_models.models.model_config import resolve_labels
from ser_models.ownership import check_output, claim_output, recognise_run, remove
from ser_models.planning.evaluation_sets import evaluation_source
from ser_models.planning.evidence import (
    CLASS_PREFIX,
    class_yield_report,
    class_yield_table,
    evidence_report,
    plot_bands,
    plot_class_yield,
    rarest_class,
)
from ser_models.provenance import check_run
from ser_models.runs.after import AfterJobConfig, check_budget_fits
from ser_models.runs.evidence_runs import (
    ALL_LABELS,
    VARIANTS,
    Progress,
    cv_choices_dir,
    fan_out,
    fits_in_memory,
    run_config,
    run_dir,
)
from ser_models.runs.run_labels import check_replay_budgets, labelled_pool_from_run, read_run_labels
from ser_models.runs.simulation import SimulationResult, finished_simulation, run_simulation
from ser_models.runtime import connect_ray
from ser_models.scoring.cache_keys import cache_kind, cache_states, cache_supported, feature_cache_key
from ser_models.scoring.evaluation import headline_metric
from ser_models.scoring.feature_cache import FeatureCache


@dataclass
class EvidenceConfig:
    """Which strategies, against which baseline, over how many paired seeds."""

    strategies: list[str] = field(effect=RESULT, default_factory=lambda: ["auto"],
                                  help="strategies compared with the baseline (active.strategy.name values; "
                                       "NAME+balanced adds class-balanced quotas)")
    baseline: str = field("random", effect=RESULT, help="the strategy every other one is compared with, seed by seed")
    seeds: int = field(10, effect=RESULT, help="paired seeds per strategy (first_seed .. first_seed + seeds - 1); 20 resolve "
                                               "differences of about 2-3 UA points, 3 only about 7")
    first_seed: int = field(0, effect=RESULT, help="the first seed")
    all_labels: bool = field(True, effect=RESULT, help="also train once on every training label: the ceiling line and the "
                                                       "target of the '95 % of all labels' savings")
    cache_in_memory_mb: int = field(1024, effect=SPEED,
                                    help="hold the feature cache in memory when its features take at most this "
                                         "many MB (every round then reads rows from memory, not Parquet): in "
                                         "this process, or once per Ray worker process with fan_out; 0 = always "
                                         "stream")
    fan_out: bool = field(True, effect=SPEED,
                          help="run every (strategy, seed) as a Ray task across the cluster; false = one after "
                               "another in this process (same rows; for debugging)")
    concurrency: int = field(0, effect=SPEED,
                             help="runs at once with fan_out; 0 = as many as the cluster's CPUs allow "
                                  "(node CPUs // cpus_per_run on every node)")
    labels_from: str | None = field(None, effect=RESULT, path=PATH,
                                    help="a jobs.after run folder: replay on the labels it gathered (its training "
                                         "labels play the annotator, its evaluation sets evaluate) instead of "
                                         "the pool's own labels; budgets must stay within half its labels")
    cpus_per_run: int = field(1, effect=SPEED,
                              help="CPUs one run uses: its torch and FAISS threads (training, scoring, selection), "
                                   "in both modes, so a serial and a fanned-out job give the same rows")

    def __post_init__(self):
        if self.cpus_per_run < 1 or self.concurrency < 0:
            raise ConfigError(f"evidence.cpus_per_run must be >= 1 and evidence.concurrency >= 0 (0 = auto), got "
                              f"{self.cpus_per_run} and {self.concurrency}")
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
    if cfg.runtime.ray == "off":
        raise ConfigError("jobs.evidence runs its paired loops on Ray: runtime.ray=off is for jobs.after; set "
                          "runtime.ray=auto")
    if cfg.evidence.fan_out and cfg.scaling.backend != "in_process":
        # A Ray Train run inside a task would reserve a worker group of its own beside every other run's.
        raise ConfigError(f"evidence.fan_out runs every loop inside one Ray task: scaling.backend must be "
                          f"'in_process', got {cfg.scaling.backend!r} (or set evidence.fan_out=false)")


def auto_min_labelled(cfg: EvidenceJobConfig) -> int:
    """Labels ``auto`` needs before it queries other than at random (``active.strategy.auto_min_labelled``) when
    ``auto`` is compared (0 otherwise)."""
    names = [n.partition("+")[0] for n in (cfg.evidence.baseline, *cfg.evidence.strategies)]
    return cfg.active.strategy.auto_min_labelled if "auto" in names else 0


def check_auto_compares(cfg: EvidenceJobConfig, targets: list[int]) -> None:
    """Refuse a comparison of ``auto`` whose rounds all query below its minimum: there ``auto`` queries at
    random, so it would be random compared with random (``targets``: labelled training clips per round).

    Raises:
        ConfigError: naming ``active.strategy.auto_min_labelled``, the budgets, and what to set instead.
    """
    least = auto_min_labelled(cfg)
    queries = targets[:-1]  # the last round only trains: the rounds before it chose what it trains on
    if least and queries and max(queries) < least:
        raise ConfigError(f"evidence.strategies compares auto, which queries at random below "
                          f"active.strategy.auto_min_labelled={least} labels, but every round that queries here has "
                          f"fewer (budgets {list(targets)}): it would compare random with random. Set "
                          f"active.budget_labels with a round at {least} or more labels before the last (e.g. "
                          f"[{least},{2 * least}]), or compare auto's candidates (evidence.strategies="
                          f"[{','.join(c for c in cfg.active.strategy.auto_candidates if c != 'random')}]) at these budgets")


def build_feature_cache(cfg: EvidenceJobConfig, pool, verbose: bool = True) -> tuple:
    """Encode every clip of ``pool`` once into the job's feature cache (a no-op when it is ready), as every run's
    loop opens it.

    Returns:
        ``(cache, cache_args)``: the ``FeatureCache`` and the arguments that open it again (a run's task).
    """

    encoder = build_encoder(cfg.model.encoder)
    active, _ = run_config(cfg, cfg.evidence.baseline, cfg.evidence.first_seed)
    cache_args = {"root": active.feature_cache_dir, "fingerprint": feature_cache_key(pool, encoder, cfg.active.scorer),
                  "kind": cache_kind(cfg.model),
                  "states": cache_states(cfg.model, encoder, cfg.active.feature_cache_layers),
                  "functionals": "egemaps" if reads_functionals(cfg.model) else None}
    cache = FeatureCache(**cache_args)
    if verbose and not cache.ready:
        print(f"feature cache: encoding every clip of the pool once -> {cache.dir}", flush=True)
    cache.build(pool.dataset(None), cfg.model, encoder.num_layers, cfg.active.scorer, verbose=verbose,
                in_process=cfg.scaling.backend == "in_process", total=len(pool.metadata(columns=["utt_id"])))
    return cache, cache_args


def labelable_training_clips(pool, model_cfg) -> int:
    """Training clips the simulated oracle can label (a label in ``model.labels``, every dimension present)."""

    truth = pool.metadata(columns=["utt_id", "label", *model_cfg.dimensions], split="train")
    oracle = SimulatedOracle(truth, labels=list(model_cfg.labels), dimensions=list(model_cfg.dimensions))
    return len(truth) - len(oracle.unlabelable(truth["utt_id"].tolist()))


def run_rows(strategy: str, seed: int, reports, seconds: float, classes=(), folder=None) -> list[dict]:
    """``runs.csv`` rows of one run: one per round (test UA, or the mean CCC for a model without classes), and
    per class of ``classes`` the training labels the round's model had (``labels_<class>``).

    Args:
        strategy / seed: the run.
        reports: its round reports.
        seconds: its wall seconds.
        classes: the model's classes (none: no class columns).
        folder: the run folder, whose ledger gives the class counts of a report made without them (a run
            finished by an earlier version); None leaves those counts empty.
    """

    ledger = None
    rows = []
    for r in reports:
        test, dev = r.test or {}, r.dev or {}
        row = {"strategy": strategy, "seed": seed, "round": r.round, "labelled": r.labelled,
               "fraction": r.fraction, "test_ua": test[headline_metric(test)] if test else math.nan,
               "dev_ua": dev[headline_metric(dev)] if dev else math.nan,
               "round_s": round(sum(r.seconds.values()), 3), "run_s": round(seconds, 3)}
        counts = r.class_counts
        if counts is None and classes and folder is not None:
            if ledger is None:
                ledger = LabelLedger(storage_path(folder) / "labels" / "ledger.parquet")
            counts = RoundReport.labels_per_class(ledger.as_of(r.round).labels().values(), list(classes))
        rows.append({**row, **{CLASS_PREFIX + c: (counts or {}).get(c, math.nan) for c in classes}})
    return rows


def training_class_counts(pool, model_cfg) -> dict[str, int]:
    """Clips per class of ``model.labels`` in the pool's training split (what random labelling draws from)."""
    labels = pool.metadata(columns=["utt_id", "label"], split="train")["label"]
    return {c: int((labels == c).sum()) for c in model_cfg.labels}


def class_yield(curves: pd.DataFrame, training: dict[str, int], baseline: str, out) -> str:
    """What selection finds: the class-yield tables (:func:`~ser_models.planning.evidence.class_yield_report`)
    for the rarest training class, ``class_yield.json`` and ``class_yield.png`` written under ``out``.

    Args:
        curves: the runs table without the all-labels run, with ``labels_<class>`` columns.
        training: training clips per class (:func:`training_class_counts`).
        baseline: the strategy compared with.
        out: the evidence folder.

    Returns:
        The printed tables.
    """

    rare = rarest_class(training)
    share = training[rare] / max(sum(training.values()), 1)
    text = class_yield_report(curves, rare, share, baseline)
    table = class_yield_table(curves, rare, baseline if baseline in set(curves.strategy) else None)
    rows = json.loads(table.to_json(orient="records"))  # NaN (no pair, no baseline) as null
    write_json_atomic(out / "class_yield.json", {"rare_class": rare, "training_clips": training,
                                                 "training_share": share, "baseline": baseline, "rows": rows})
    plot_class_yield(curves, rare, out / "class_yield.png", share=share)
    return text


def run_evidence(cfg: EvidenceJobConfig, *, verbose: bool = True) -> pd.DataFrame:
    """Every (strategy, seed) run, then the report; returns the ``runs.csv`` frame.

    Args:
        cfg: the job config.
        verbose: print one line per run, the cache build and the report.
    """

    t_all = time.perf_counter()
    cfg = resolve_paths(cfg)  # fanned-out runs work in other folders: every path absolute
    inputs = {"pool_dir": cfg.pool_dir, "model.encoder.source": cfg.model.encoder.source,
              "model.encoder.checkpoint": cfg.model.encoder.checkpoint}
    if cfg.evidence.labels_from:
        inputs["evidence.labels_from"] = cfg.evidence.labels_from
    recognise = recognise_run("jobs.evidence", EVIDENCE_LAYOUT)
    check_output(cfg.output_dir, "evidence", inputs=inputs, recognise=recognise)  # before anything is read
    cfg.active.check_cache_apart(inputs)
    if cfg.evidence.labels_from:
        return _run_on_run_labels(cfg, inputs, recognise, t_all, verbose)
    check_evidence_config(cfg)
    pool = _checked_pool(cfg)
    # The budget against the pool before the folder is claimed: a refusal leaves no run.json behind.
    check_budget_fits(cfg, pool, evaluation_source(cfg.active.evaluation, pool, cfg.model))
    if not cfg.active.budget_hours:
        check_auto_compares(cfg, cfg.active.budget_labels
                            or cfg.active.targets(len(pool.metadata(columns=["utt_id"], split="train"))))
    # Ours (marked, or an earlier version's evidence folder) and this process its one writer, before anything
    # is written there; cv_choices/ below is deleted only inside a folder marked as evidence.
    with claim_output(cfg.output_dir, "evidence", what="evidence folder", recognise=recognise, inputs=inputs):
        return _run_claimed(cfg, _checked_run(cfg, pool), t_all, verbose)


def _checked_pool(cfg: EvidenceJobConfig):
    """The job's pool, its labels resolved into ``cfg.model`` and its evaluation splits checked."""

    pool = Pool.open(cfg.pool_dir)
    cfg.model = resolve_labels(cfg.model, pool)
    pool.check_targets(cfg.model.targets, ("dev", "test"))
    pool.check_evaluation_labels(cfg.model)
    return pool


def _checked_run(cfg: EvidenceJobConfig, pool):
    """``pool`` once the folder's run record agrees with this config (a resumed job), holding the lock."""

    check_run(cfg.output_dir, "jobs.evidence", cfg, inputs={"pool": pool.lineage}, config_yaml=to_yaml(cfg))
    return pool


def _run_on_run_labels(cfg: EvidenceJobConfig, inputs: dict, recognise, t_all: float, verbose: bool):
    """:func:`run_evidence` on a ``jobs.after`` run's labels (``evidence.labels_from``): the run's labelled clips
    become a pool (:mod:`ser_models.runs.run_labels`) whose training labels the simulated annotator reads and
    whose dev and test splits are the run's evaluation sets."""

    # The run's labels are known now: the annotator is simulated from them, the evaluation is the run's sets.
    cfg.active = dataclasses.replace(cfg.active, oracle="simulated", evaluation=dataclasses.replace(
        cfg.active.evaluation, source="pool"))
    check_evidence_config(cfg)
    labels = read_run_labels(cfg.evidence.labels_from, cfg.pool_dir, tuple(cfg.model.dimensions))
    check_replay_budgets(cfg.active, labels.counts()["train"], auto_min_labelled(cfg))
    check_auto_compares(cfg, cfg.active.budget_labels or cfg.active.targets(labels.counts()["train"]))
    with claim_output(cfg.output_dir, "evidence", what="evidence folder", recognise=recognise, inputs=inputs):
        connect_ray()
        cfg.pool_dir = labelled_pool_from_run(labels, cfg.output_dir, log=print if verbose else lambda _: None)
        return _run_claimed(cfg, _checked_run(cfg, _checked_pool(cfg)), t_all, verbose)


#: What an evidence folder holds besides run.json and config.yaml (an earlier version's folder with only these
#: is adopted).
EVIDENCE_LAYOUT = ("runs", "cv_choices", "runs.csv", "report.md", "evidence.png", "feature_cache", "labelled_pool")


def _run_claimed(cfg: EvidenceJobConfig, pool, t_all: float, verbose: bool) -> pd.DataFrame:
    """:func:`run_evidence` after its checks, holding the evidence folder's lock."""

    connect_ray()
    out = storage_path(cfg.output_dir)
    ev = cfg.evidence
    seeds = list(range(ev.first_seed, ev.first_seed + ev.seeds))
    names = [ev.baseline, *ev.strategies]

    # The cache first, with its own progress line: every run after it reads features, never audio.
    cache, cache_args = build_feature_cache(cfg, pool, verbose=verbose)
    if verbose:
        print(f"runs: {', '.join(names)} x {len(seeds)} seeds{', and all labels once' if ev.all_labels else ''}; "
              f"budgets {cfg.active.targets(len(pool.metadata(columns=['utt_id'], split='train')))} labels",
              flush=True)
    # Segments the truth gives no label (labels by overlap) stay in the pool; no run can label them.
    labelable = labelable_training_clips(pool, cfg.model)
    # The all-labels reference trains on the same clips under every seed (only the CV folds differ): once.
    plan = [(name, seed) for seed in seeds for name in names] + ([(ALL_LABELS, seeds[0])] if ev.all_labels else [])
    results: dict[int, SimulationResult] = {}
    progress = Progress(plan, verbose)
    for i, (name, seed) in enumerate(plan):  # finished before a kill or in an earlier job: read, not rerun
        done = finished_simulation(run_dir(cfg, name, seed))
        if done is not None:
            results[i] = done
            progress.finished(i, done, earlier=True)
    todo = [i for i in range(len(plan)) if i not in results]
    if todo and ev.fan_out:
        if verbose and fits_in_memory(cache, ev.cache_in_memory_mb):
            print(f"feature cache held in memory by every worker that runs (under evidence.cache_in_memory_mb="
                  f"{ev.cache_in_memory_mb})", flush=True)
        fan_out(cfg, plan, todo, labelable, cache_args, results, progress)
    elif todo:
        pinned = cache.pin(ev.cache_in_memory_mb * 2**20)
        if verbose and pinned:
            print(f"feature cache held in memory for the runs (under evidence.cache_in_memory_mb="
                  f"{ev.cache_in_memory_mb})", flush=True)
        try:
            for i in todo:
                name, seed = plan[i]
                active, train = run_config(cfg, name, seed, labelable)
                results[i] = run_simulation(pool, run_dir(cfg, name, seed), cfg.model, train, cfg.scaling, active,
                                            threads=ev.cpus_per_run, pool_checked=True,
                                            cv_choices=cv_choices_dir(cfg))
                progress.finished(i, results[i])
        finally:
            cache.unpin()
    # every run is finished: nothing will look there again (a fixed name of the evidence folder's layout)
    remove(out, "evidence", cv_choices_dir(cfg).name, recorded_only=False)
    classes = list(cfg.model.labels)
    rows = [row for i, (name, seed) in enumerate(plan)
            for row in run_rows(name, seed, results[i].reports, results[i].seconds, classes, run_dir(cfg, name, seed))]
    frame = pd.DataFrame(rows)
    write_bytes_atomic(out / "runs.csv", frame.to_csv(index=False).encode())
    curves = frame[frame.strategy != ALL_LABELS]
    full_rows = frame[frame.strategy == ALL_LABELS]
    full = float(full_rows.test_ua.iloc[0]) if len(full_rows) else None
    report = evidence_report(curves, ev.baseline, full=full)
    if full is not None:
        report += f"\n\nall labels ({int(full_rows.labelled.iloc[0])} clips): test UA {full:.3f}"
    # What selection finds, per class: the labels of the rarest training class beside the UA bands.
    found = class_yield(curves, training_class_counts(pool, cfg.model), ev.baseline, out) if classes else ""
    plot_bands(curves, out / "evidence.png", full=full)
    images = "![test UA against labelled clips](evidence.png)" + (
        " ![labels of the rarest class against labelled clips](class_yield.png)" if found else "")
    found_md = f"\n## What selection finds: labels per class\n\n```\n{found}\n```\n" if found else ""
    write_bytes_atomic(out / "report.md", f"# What active learning buys on {cfg.pool_dir}\n\n```\n{report}\n```\n"
                       f"{found_md}\n{images}\n".encode())
    if found:
        report += f"\n\n{found}"
    if verbose:
        print(f"\n{report}\n\ndone in {(time.perf_counter() - t_all) / 60:.1f} min: {out / 'report.md'}, "
              f"{out / 'evidence.png'}, " + (f"{out / 'class_yield.png'}, " if found else "") + f"{out / 'runs.csv'}")
    return frame


def main(argv: list[str] | None = None):
    cfg = resolve_encoder_names(parse_job_args(EvidenceJobConfig, sys.argv[1:] if argv is None else argv, "jobs.evidence"))
    return run_evidence(cfg)
