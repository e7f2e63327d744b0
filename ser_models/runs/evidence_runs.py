"""The runs of ``jobs.evidence``: each (strategy, seed) run's settings and folder, its body in a worker
process, and the fan-out that spreads the runs over the cluster.

Fan-out (``evidence.fan_out``): the driver encodes every clip once into the feature cache, then runs each
(strategy, seed) as a Ray task that trains and scores in its own process (``scaling.backend=in_process``) and
reads the cache by path (held in the worker's memory when it fits ``evidence.cache_in_memory_mb``). A run's
task reserves no CPU in Ray's accounting: the run still starts short Ray Data tasks (projections and reads of
cached rows, one CPU each), and a task holding its CPUs would leave them none on a small cluster (on 2 CPUs,
two runs holding one each hang forever). The driver places the runs itself instead: each node hosts
``node CPUs // evidence.cpus_per_run`` runs at a time (or ``evidence.concurrency`` in all), each with
``evidence.cpus_per_run`` torch threads. The rows do not depend on the fan-out: every run sets its thread
counts from ``evidence.cpus_per_run`` in both modes.

Runs of one seed share work without changing a number: every strategy starts from the same labelled clips, and
``auto`` often queries what ``random`` queries, so several runs cross-validate ``train.l2_c`` on the same clips;
the first to do so leaves the choice in ``cv_choices/`` for the others. The fan-out starts a block of seeds'
first runs before their other strategies, so that those find the choices of their first rounds made.

``cfg`` is the job's :class:`~ser_models.runs.evidence.EvidenceJobConfig` throughout (not imported: that module,
the job's config beside its run function, imports this one).
"""

from __future__ import annotations

import dataclasses
import json
import time

from ser_models.data import Pool
from ser_models.exceptions import ConfigError
from ser_models.io import read_json, storage_path
from ser_models.runs.simulation import SimulationResult, run_simulation
from ser_models.runtime import connect_ray
from ser_models.scoring.evaluation import headline_metric
from ser_models.scoring.feature_cache import FeatureCache

#: The name of the all-labels reference runs in ``runs.csv`` and the run folders.
ALL_LABELS = "all-labels"
#: ``strategy+variant`` names: a strategy run with extra settings (class-balanced quotas for imbalanced pools).
VARIANTS = {"balanced": {"class_balanced": True}}


def run_config(cfg, strategy: str, seed: int, labelable: int | None = None) -> tuple:
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
    return active, dataclasses.replace(cfg.train, optim=dataclasses.replace(cfg.train.optim, seed=seed))


def run_dir(cfg, strategy: str, seed: int):
    """The run folder of ``strategy`` under ``seed``: ``<output_dir>/runs/<strategy>_s<seed>``."""

    return storage_path(cfg.output_dir) / "runs" / f"{strategy}_s{seed}"


def run_slots(node_cpus: dict[str, float], cpus_per_run: int, concurrency: int = 0) -> list[str]:
    """Where the fan-out runs: one node id per run that may run at once.

    Args:
        node_cpus: CPUs of every live node, by node id (nodes without CPUs host no run).
        cpus_per_run: CPUs (threads) of one run.
        concurrency: runs at once; 0 = ``node CPUs // cpus_per_run`` on every node. More than the nodes hold
            is honoured (slots repeat, nodes round-robin).

    Returns:
        Node ids, nodes interleaved (the first runs spread over the nodes).

    Raises:
        ConfigError: no node has ``cpus_per_run`` CPUs (with ``concurrency=0``) or no node has a CPU at all.
    """
    per_node = {node: int(cpus // cpus_per_run) for node, cpus in sorted(node_cpus.items())}
    slots = [node for k in range(max(per_node.values(), default=0)) for node, n in per_node.items() if k < n]
    if not slots and concurrency:  # every node smaller than one run: still run, one per node with CPUs
        slots = [node for node, cpus in sorted(node_cpus.items()) if cpus > 0]
    if not slots:
        raise ConfigError(f"no node of the cluster has evidence.cpus_per_run={cpus_per_run} CPUs (node CPUs: "
                          f"{sorted(node_cpus.values())}): lower evidence.cpus_per_run or set evidence.concurrency")
    return [slots[i % len(slots)] for i in range(concurrency)] if concurrency else slots


#: Feature caches this process holds in memory for fanned-out runs, by folder, with the ``meta.json`` they were
#: read under (a Ray worker keeps its copy for every later run it hosts, and reads it again when the cache
#: grew); the driver's own copy is pinned and released by :func:`~ser_models.runs.evidence.run_evidence`.
_HELD: dict[str, str] = {}


def cv_choices_dir(cfg):
    """Where the job's runs share their cross-validated C choices: ``<output_dir>/cv_choices``."""

    return storage_path(cfg.output_dir) / "cv_choices"


def simulate_run(cfg, strategy: str, seed: int, labelable: int | None,
                 cache_args: dict) -> dict:
    """One (strategy, seed) run in this process (a fan-out task's body): :func:`run_simulation` in the run's
    folder, from the job's feature cache, which this worker process holds in memory from its first run on
    when it fits ``evidence.cache_in_memory_mb``.

    Args:
        cfg: the job config (its labels already resolved by the driver).
        strategy / seed: the run (:func:`run_config`).
        labelable: training clips the oracle can label (the all-labels run's budget).
        cache_args: the driver's ``FeatureCache`` arguments (root, fingerprint, kind, states, functionals).

    Returns:
        The run's ``SimulationResult.to_json()``.
    """

    connect_ray()  # already connected in a worker: only quiets Ray Data's console output
    cache = FeatureCache(**cache_args)
    meta = json.dumps(read_json(cache.dir / "meta.json"), sort_keys=True)
    if _HELD.get(str(cache.dir)) != meta:
        if cache.pin(cfg.evidence.cache_in_memory_mb * 2**20):
            _HELD[str(cache.dir)] = meta
        else:
            cache.unpin()  # a copy held under an older meta.json must not serve the rows
            _HELD.pop(str(cache.dir), None)
    active, train = run_config(cfg, strategy, seed, labelable)
    result = run_simulation(Pool.open(cfg.pool_dir), run_dir(cfg, strategy, seed), cfg.model, train, cfg.scaling,
                            active, threads=cfg.evidence.cpus_per_run, pool_checked=True,
                            cv_choices=cv_choices_dir(cfg))
    return result.to_json()


def fits_in_memory(cache, mb: int) -> bool:
    """Whether :meth:`FeatureCache.pin` holds ``cache`` under ``mb`` MB (a pooled cache of float32 features)."""

    if cache.kind != "pooled" or not cache.ready:
        return False
    meta = read_json(cache.dir / "meta.json")
    return int(meta["clips"]) * int(meta["num_layers"]) * int(meta["hidden_size"]) * 4 <= mb * 2**20


class Progress:
    """One line per finished run: the running count, seed, strategy, the test UA curve, seconds, time left."""

    def __init__(self, plan: list[tuple[str, int]], verbose: bool):
        self.plan, self.verbose = plan, verbose
        self.done, self.ran, self.t0 = 0, 0, time.perf_counter()

    def finished(self, i: int, result, earlier: bool = False) -> None:

        self.done += 1
        self.ran += not earlier
        if not self.verbose:
            return
        name, seed = self.plan[i]
        curve = "  ".join(f"{r.labelled}: {r.test[headline_metric(r.test)]:.3f}" if r.test else f"{r.labelled}: -"
                          for r in result.reports)
        left = len(self.plan) - self.done
        if earlier:
            when = "finished earlier"
        elif left:
            when = f"{(time.perf_counter() - self.t0) / self.ran * left / 60:.1f} min left"
        else:
            when = "done"
        print(f"[{self.done:>3}/{len(self.plan)}] seed {seed:<3} {name:<22} test UA  {curve}  "
              f"({result.seconds:.1f}s; {when})", flush=True)


def seeds_apart(plan: list[tuple[str, int]], todo: list[int], slots: int) -> list[int]:
    """``todo`` (positions in ``plan``) in the order the fan-out starts them: seeds in blocks of ``slots``, and in
    a block every seed's run of the first strategy, then of the next, and so on. The runs that start together
    are of different seeds, and a seed's later runs find its first run's early choices made (``cv_choices``).
    """
    seeds = list(dict.fromkeys(plan[i][1] for i in todo))
    names = list(dict.fromkeys(name for name, _ in plan))
    block = {seed: k // max(slots, 1) for k, seed in enumerate(seeds)}
    return sorted(todo, key=lambda i: (block[plan[i][1]], names.index(plan[i][0]), seeds.index(plan[i][1])))


def fan_out(cfg, plan: list[tuple[str, int]], todo: list[int], labelable: int | None,
             cache_args: dict, results: dict, progress: Progress) -> None:
    """Run ``plan[i]`` for every ``i`` of ``todo`` as Ray tasks, at most one per slot (:func:`run_slots`) at a
    time, into ``results[i]``; the first failed run cancels the others and raises its error."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy


    ev = cfg.evidence
    nodes = {n["NodeID"]: float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")}
    free = run_slots(nodes, ev.cpus_per_run, ev.concurrency)
    if progress.verbose:
        print(f"fan-out: {len(todo)} runs, {len(free)} at a time on {len(set(free))} node(s), "
              f"{ev.cpus_per_run} thread(s) each", flush=True)
    # num_cpus=0: the run's own Ray Data tasks need the CPUs (see the module docstring); slots bound the load.
    task = ray.remote(num_cpus=0)(simulate_run)
    queue, running = seeds_apart(plan, todo, len(free)), {}
    try:
        while queue or running:
            while queue and free:
                node, i = free.pop(0), queue.pop(0)
                # soft: when the node dies, the retry runs elsewhere and resumes from the run's folder
                ref = task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=True)).remote(
                    cfg, *plan[i], labelable, cache_args)
                running[ref] = (i, node)
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                i, node = running.pop(ref)
                results[i] = SimulationResult.from_json(ray.get(ref))
                free.append(node)
                progress.finished(i, results[i])
    finally:
        for ref in running:  # a failed run (or Ctrl-C): the others stop; their folders resume on a rerun
            ray.cancel(ref)

