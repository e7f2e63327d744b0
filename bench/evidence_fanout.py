"""Evidence fan-out benchmark: the same ``jobs.evidence`` runs one after another in one process and fanned out as
Ray tasks, side by side on this machine (goal: >= 1.7x on 2 cores), and optionally on a ``ray.cluster_utils``
cluster with 1 and 2 worker nodes.

    python -m bench.evidence_fanout                    # demo recipe (smart-turn), 720-clip pool, 2 x 10 seeds
    python -m bench.evidence_fanout --cluster          # also the fan-out on 1 vs 2 one-CPU worker nodes
    python -m bench.evidence_fanout --quick --encoder tiny-wav2vec2   # tiny check, prints only

Every variant is ``run_evidence`` with the demo's evidence config (``jobs/configs/demo_evidence.yaml``: the
demo recipe, a random initial set, no stop set) and its own ``output_dir``, all reading one feature cache built
before any timing (``active.feature_cache_dir``). ``serial`` is ``evidence.fan_out=false`` (the loop in the
driver, the cache held in its memory); ``fan-out`` runs each (strategy, seed) as a Ray task, as many at once as
``node CPUs // evidence.cpus_per_run`` allow. Serial and fan-out with the same ``evidence.cpus_per_run`` must give
identical ``runs.csv`` rows (checked: the benchmark fails otherwise); the serial row with 2 threads per run is the
thread count the demo config gave every run before the fan-out (its rows may differ in the last bits). Wall
seconds are the whole ``run_evidence`` call (runs, report, plot); the cache build is not in them. The fan-out's
also hold starting its Ray worker processes (imports, and each worker reading the cache into memory once): a
fixed cost of seconds that more runs amortise.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from bench.common import (
    DEFAULT_WORKDIR,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    encoder_overrides,
    ensure_pool,
    init_ray,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
)

RESULTS = RESULTS_DIR / "evidence_fanout.md"
EVIDENCE_CONFIG = Path(__file__).resolve().parents[1] / "jobs" / "configs" / "demo_evidence.yaml"
#: runs.csv columns that a serial and a fanned-out job must agree on exactly (everything but timings).
ROW_COLUMNS = ["strategy", "seed", "round", "labelled", "fraction", "test_ua", "dev_ua"]

NOTES = """## Findings

Summarised, with what the numbers mean, in BENCHMARKS.md at the repository root.
"""


def evidence_config(pool_dir, output_dir, cache_dir, extra: list[str] = ()):
    """The demo's ``EvidenceJobConfig`` over ``pool_dir``, writing ``output_dir``, reading ``cache_dir``."""
    from ser_models.config import load_config
    from ser_models.runs.evidence import EvidenceJobConfig

    return load_config(EvidenceJobConfig, EVIDENCE_CONFIG, [f"pool_dir={pool_dir}", f"output_dir={output_dir}",
                                                            f"active.feature_cache_dir={cache_dir}", *extra])


def timed_evidence(cfg) -> tuple[pd.DataFrame, float]:
    """``run_evidence`` in a fresh ``output_dir``; returns (runs frame, wall seconds)."""
    from ser_models.runs.evidence import run_evidence

    scratch(cfg.output_dir)
    t0 = time.perf_counter()
    frame = run_evidence(cfg, verbose=False)
    return frame, time.perf_counter() - t0


def cluster_rows(pool_dir, work: Path, cache_dir, extra: list[str], nodes: list[int]) -> list[dict]:
    """The fan-out on a ``ray.cluster_utils.Cluster`` (a head without CPUs and ``n`` one-CPU worker nodes on this
    machine) for each ``n`` of ``nodes``; the local Ray instance is shut down first."""
    import ray
    from ray.cluster_utils import Cluster

    rows = []
    for n in nodes:
        ray.shutdown()
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
        for _ in range(n):
            cluster.add_node(num_cpus=1)
        try:
            ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
            init_ray()  # the Ray Data settings of every job
            cfg = evidence_config(pool_dir, work / f"cluster{n}", cache_dir, [*extra, "evidence.fan_out=true"])
            frame, wall = timed_evidence(cfg)
            rows.append({"variant": f"fan-out, cluster of {n} one-CPU worker node(s)", "threads": 1, "wall": wall,
                         "frame": frame})
            print(f"  cluster, {n} worker node(s): {wall:.1f} s", flush=True)
        finally:
            ray.shutdown()
            cluster.shutdown()
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.evidence_fanout", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 seeds, 2 rounds of 8 and 16 labels; no results file")
    ap.add_argument("--pool-dir", default=str(DEFAULT_WORKDIR / "pool"), help="demo pool (built when missing)")
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR / "evidence_fanout"), help="run folders (replaced)")
    ap.add_argument("--encoder", default="smart-turn", help="smart-turn (the demo's imported Whisper-tiny) or any "
                    "model.encoder.source, e.g. tiny-wav2vec2")
    ap.add_argument("--strategies", nargs="+", default=["informative_diverse"], help="compared with random")
    ap.add_argument("--seeds", type=int, default=10, help="paired seeds (runs = 2 x seeds with one strategy)")
    ap.add_argument("--budget-labels", nargs="+", type=int, default=None,
                    help="active.budget_labels, one round each (default: the demo's, 50 100 200 400)")
    ap.add_argument("--serial-threads", nargs="+", type=int, default=[1, 2],
                    help="evidence.cpus_per_run of the serial rows (1 = the fan-out's, whose rows must match)")
    ap.add_argument("--cluster", action="store_true", help="also the fan-out on 1 and 2 one-CPU worker nodes")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.budget_labels = 2, [8, 16]
    extra = [*encoder_overrides(args.encoder), f"evidence.strategies=[{','.join(args.strategies)}]",
             f"evidence.seeds={args.seeds}", "evidence.all_labels=false"]
    if args.budget_labels:
        extra.append(f"active.budget_labels=[{','.join(map(str, args.budget_labels))}]")
    pool_dir = ensure_pool(args.pool_dir)
    work = claim_workdir(args.workdir)
    cache_dir = work / "feature_cache"
    init_ray(2)
    from ser_models.data import Pool
    from ser_models.runs.evidence import build_feature_cache

    t0 = time.perf_counter()
    build_feature_cache(evidence_config(pool_dir, work / "unused", cache_dir, extra), Pool.open(pool_dir),
                        verbose=False)
    build_s = time.perf_counter() - t0
    print(f"feature cache ready in {build_s:.1f} s", flush=True)
    load = LoadWindow()
    rows = []
    for threads in args.serial_threads:
        cfg = evidence_config(pool_dir, work / f"serial{threads}", cache_dir,
                              [*extra, "evidence.fan_out=false", f"evidence.cpus_per_run={threads}"])
        frame, wall = timed_evidence(cfg)
        rows.append({"variant": "serial (evidence.fan_out=false)", "threads": threads, "wall": wall, "frame": frame})
        print(f"  serial, {threads} thread(s) per run: {wall:.1f} s", flush=True)
    cfg = evidence_config(pool_dir, work / "fanout", cache_dir, [*extra, "evidence.fan_out=true"])
    frame, wall = timed_evidence(cfg)
    import ray

    slots = int(sum(n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")))
    rows.append({"variant": f"fan-out (evidence.fan_out=true), {slots} at a time", "threads": 1, "wall": wall,
                 "frame": frame})
    print(f"  fan-out: {wall:.1f} s", flush=True)
    if args.cluster:
        rows += cluster_rows(pool_dir, work, cache_dir, extra, [1, 2])
    load.close()

    reference = next((r for r in rows if r["variant"].startswith("serial") and r["threads"] == 1), None)
    for r in rows:
        same = r["threads"] == 1 and reference is not None
        if same and not r["frame"][ROW_COLUMNS].equals(reference["frame"][ROW_COLUMNS]):
            raise SystemExit(f"{r['variant']}: runs.csv rows differ from the serial run's with 1 thread per run")
        r["identical"] = "yes" if same else "-"
    runs = int(rows[0]["frame"].groupby(["strategy", "seed"]).ngroups)
    rounds = int(rows[0]["frame"]["round"].nunique())
    table = md_table(
        ["variant", "threads per run", "wall s", "s per run", "speed-up vs serial (1 thread)",
         "speed-up vs serial (2 threads)", "rows identical to serial (1 thread)"],
        [[r["variant"], r["threads"], f"{r['wall']:.1f}", f"{r['wall'] / runs:.2f}",
          *[f"**{s['wall'] / r['wall']:.2f}x**" if s else "-"
            for s in (next((x for x in rows if x["variant"].startswith("serial") and x["threads"] == t), None)
                      for t in (1, 2))],
          r["identical"]] for r in rows])
    info = machine_info()
    clips = len(Pool.open(pool_dir).metadata(columns=["utt_id"]))
    text = "\n".join([
        "# Evidence fan-out benchmark",
        "",
        f"`python -m bench.evidence_fanout --encoder {args.encoder} --seeds {args.seeds}"
        f"{' --budget-labels ' + ' '.join(map(str, args.budget_labels)) if args.budget_labels else ''}"
        f"{' --cluster' if args.cluster else ''}` on {pool_dir} ({clips} clips): random and "
        f"{', '.join(args.strategies)} x {args.seeds} seeds = {runs} runs of {rounds} rounds.",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        table,
        "",
        f"Feature cache build (once, before every timing): {build_s:.1f} s.",
        "",
        NOTES,
        "",
        machine_markdown(info, load),
    ])
    print("\n" + text)
    if not args.quick:
        write_results(args.results, text)
    return {"rows": rows, "text": text}


if __name__ == "__main__":
    main()
