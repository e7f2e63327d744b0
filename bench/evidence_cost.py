"""Evidence cost benchmark: what one simulated run from the feature cache spends its seconds on, and the wall
time of the target workload, ``jobs.evidence`` with 20 paired seeds x [random, margin, auto] x 4 rounds (50 /
100 / 200 / 400 labels) on the demo pool, fanned out over Ray on this machine (goal: <= 3 minutes on 2 cores).

    python -m bench.evidence_cost                                   # profile + workload, writes the results file
    python -m bench.evidence_cost --json before.json --no-results   # the same on another tree: its numbers only
    python -m bench.evidence_cost --baseline before.json            # adds that tree's numbers as "before" and
                                                                    # checks that runs.csv rows are identical
    python -m bench.evidence_cost --quick                           # 2 seeds, prints only

Every run is the demo's evidence config (``jobs/configs/demo_evidence.yaml``: the small-label recipe over the
bundled Whisper-tiny, a random initial set shared by every strategy of a seed, no stop set) reading one feature
cache built before any timing, with one thread per run (``evidence.cpus_per_run=1``, the fan-out's).

Profile: in one process, after a warm-up run of another seed, one run per strategy under cProfile (seed 1, in
the order random, margin, auto: what a Ray worker that hosts a seed's runs sees), each split into the parts that
a change targets: choosing C by cross-validation, building the encoder (the loop's cache key, every training
and scoring model), drawing plots, threadpoolctl's scans of the loaded libraries, ``auto``'s simulated active
learning, scoring the pool. Profiling slows the runs; the unprofiled seconds of the same three runs (seed 0)
are given beside them. Workload: one ``run_evidence`` call, fanned out, 2 runs at a time; its wall time holds
everything after the cache (Ray worker start-up, runs, report and plot).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time
from pathlib import Path

from bench.common import (
    REPO,
    RESULTS_DIR,
    LoadWindow,
    fresh_workdir,
    init_ray,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
)

RESULTS = RESULTS_DIR / "evidence_cost.md"
GOAL_S = 180.0
STRATEGIES = ["random", "margin", "auto"]
#: runs.csv columns that must not change (everything but timings).
ROW_COLUMNS = ["strategy", "seed", "round", "labelled", "fraction", "test_ua", "dev_ua"]
#: Profile parts: (label, [(file suffix, function name, caller's file suffix or None = any caller)]); a part is
#: the cumulative time of those functions (called from that file).
PARTS = [
    ("choose C by cross-validation", [("ser_models/training/lbfgs.py", "choose_l2_c", None)]),
    ("threadpoolctl scans in the L-BFGS solver", [("threadpoolctl.py", "__init__", "ser_models/training/lbfgs.py")]),
    ("threadpoolctl scans in the query strategies",
     [("threadpoolctl.py", "__init__", "ser_models/active/strategies/base.py")]),
    ("build the encoder", [("ser_models/encoders/factory.py", "build_encoder", None)]),
    ("read a checkpoint's model config", [("ser_models/config.py", "from_dict", "ser_models/models/model.py")]),
    ("plots", [("ser_models/metrics.py", "plot_confusion", None), ("ser_models/active/curves.py",
                                                                     "plot_learning_curves", None)]),
    ("auto's simulated active learning", [("ser_models/active/strategies/auto.py", "simulate_strategies", None)]),
    ("scoring the pool", [("ser_models/active/loop.py", "_score_pool", None)]),
]
#: What each change bought: (change, part labels it removes or shrinks, part labels to take off the first).
CHANGES = [
    ("no plots in simulations (`train_model(plots=False)`)", ["plots"], []),
    ("one frozen encoder per process (`encoder_reuse`)", ["build the encoder"], []),
    ("a checkpoint's model config validated once per process", ["read a checkpoint's model config"], []),
    ("one threadpoolctl controller in the solver", ["threadpoolctl scans in the L-BFGS solver"], []),
    ("cross-validated C shared by the runs of a seed (`cv_choices`)", ["choose C by cross-validation"],
     ["threadpoolctl scans in the L-BFGS solver"]),
]


def evidence_config(pool_dir, output_dir, cache_dir, extra: list[str] = ()):
    """The demo's ``EvidenceJobConfig`` over ``pool_dir``, writing ``output_dir``, reading ``cache_dir``."""
    from bench.evidence_fanout import evidence_config as fanout_config

    return fanout_config(pool_dir, output_dir, cache_dir, ["evidence.all_labels=false", "evidence.cpus_per_run=1",
                                                           f"evidence.baseline={STRATEGIES[0]}",
                                                           f"evidence.strategies=[{','.join(STRATEGIES[1:])}]",
                                                           *extra])


def _parts(stats: pstats.Stats) -> dict[str, float]:
    """Cumulative seconds of each :data:`PARTS` entry. Parts may hold each other's code: cross-validation holds
    the solver's threadpoolctl scans, scoring the encoder build and config reading of its model, ``auto``'s
    simulation the strategies' scans."""
    out = {}
    for label, functions in PARTS:
        total = 0.0
        for (file, _, name), entry in stats.stats.items():
            for f, n, caller in functions:
                if not (file.endswith(f) and name == n):
                    continue
                if caller is None:
                    total += entry[3]
                else:  # entry[4]: {caller: (calls, primitive calls, own time, cumulative time)}
                    total += sum(v[3] for (cf, _, _), v in entry[4].items() if cf.endswith(caller))
        out[label] = total
    return out


def profile_runs(cfg, pool, labelable: int) -> dict:
    """One warm-up run, the three strategies unprofiled (seed 0), then profiled (seed 1), in this process."""
    from ser_models.runs.evidence_runs import run_config, run_dir
    from ser_models.runs.simulation import run_simulation

    def one(name: str, seed: int):
        active, train = run_config(cfg, name, seed, labelable)
        return run_simulation(pool, run_dir(cfg, name, seed), cfg.model, train, cfg.scaling, active, threads=1,
                              pool_checked=True)

    warm = cfg.evidence.first_seed + cfg.evidence.seeds  # a seed outside the workload's
    t0 = time.perf_counter()
    one("random", warm)
    out = {"warm_up_s": time.perf_counter() - t0, "plain_s": {}, "profiled_s": {}, "parts": {}}
    for name in STRATEGIES:
        t0 = time.perf_counter()
        one(name, 0)
        out["plain_s"][name] = time.perf_counter() - t0
    for name in STRATEGIES:
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        one(name, 1)
        prof.disable()
        out["profiled_s"][name] = time.perf_counter() - t0
        out["parts"][name] = _parts(pstats.Stats(prof))
        print(f"  {name}: {out['plain_s'][name]:.2f} s, profiled {out['profiled_s'][name]:.2f} s: "
              + ", ".join(f"{k} {v:.2f}" for k, v in out["parts"][name].items()), flush=True)
    return out


def shared_cv_problems(runs_dir: Path) -> dict:
    """How many of the workload's cross-validations a run could take from another run of its seed: per round,
    the runs whose labelled training clips equal an earlier run's (read from each run's ledger)."""
    import pandas as pd

    sets: dict[tuple[int, int], list[frozenset]] = {}
    for run in sorted(runs_dir.iterdir()):
        seed = int(run.name.rsplit("_s", 1)[1])
        ledger = pd.read_parquet(run / "labels" / "ledger.parquet", columns=["utt_id", "round", "purpose"])
        ledger = ledger[ledger.purpose == "train"]
        for r in sorted(ledger["round"].unique()):
            sets.setdefault((seed, int(r)), []).append(frozenset(ledger[ledger["round"] <= r].utt_id))
    shared = {r: 0 for _, r in sets}
    for (_, r), found in sets.items():
        shared[r] += len(found) - len(set(found))
    return {"problems": sum(len(v) for v in sets.values()), "shared_by_round": shared}


def worker_library() -> str:
    """Where a Ray worker of this session imports ``ser_models`` from (the tree under test)."""
    import ray

    @ray.remote(num_cpus=0)
    def where() -> str:
        import ser_models

        return str(Path(ser_models.__file__).parents[1])

    return ray.get(where.remote())


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.evidence_cost", description=__doc__.splitlines()[0])
    ap.add_argument("--pool-dir", default=str(REPO / "outputs" / "demo" / "pool"),
                    help="a prepared demo pool (make demo builds outputs/demo/pool)")
    ap.add_argument("--cache-dir", default=str(REPO / "outputs" / "demo" / "feature_cache"),
                    help="its feature cache (built here when missing)")
    ap.add_argument("--workdir", default="/tmp/ser_bench/evidence_cost", help="run folders (replaced)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="2 seeds, no profile; prints only")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--json", default=None, help="also write the numbers (and runs.csv rows) to this JSON file")
    ap.add_argument("--baseline", default=None, help="a --json file from the tree before a change: shown as "
                    "'before', and its runs.csv rows must equal these")
    ap.add_argument("--no-results", action="store_true", help="do not write the results file")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.no_profile, args.no_results = 2, True, True
    import pandas as pd

    import ser_models

    init_ray(2)
    from ser_models.config import resolve_paths
    from ser_models.data import Pool
    from ser_models.models.model_config import resolve_labels
    from ser_models.runs.evidence import build_feature_cache, labelable_training_clips, run_evidence

    work = fresh_workdir(args.workdir, {"--pool-dir": args.pool_dir, "--cache-dir": args.cache_dir})
    for output in ("profile", "workload"):
        scratch(work / output)  # the evidence outputs are this benchmark's: emptied on the next run
    tree = str(Path(ser_models.__file__).parents[1])
    workers = worker_library()
    if workers != tree:
        raise SystemExit(f"the driver imports ser_models from {tree} but Ray workers from {workers}")
    cfg = resolve_paths(evidence_config(args.pool_dir, work / "profile", args.cache_dir,
                                        [f"evidence.seeds={args.seeds}"]))
    pool = Pool.open(cfg.pool_dir)
    cfg.model = resolve_labels(cfg.model, pool)
    t0 = time.perf_counter()
    cache, _ = build_feature_cache(cfg, pool, verbose=False)
    print(f"feature cache ready in {time.perf_counter() - t0:.1f} s; ser_models from {tree}", flush=True)
    result = {"tree": tree, "machine": machine_info(), "clips": len(pool.metadata(columns=["utt_id"])),
              "train_clips": len(pool.metadata(columns=["utt_id"], split="train")), "seeds": args.seeds}
    if not args.no_profile:
        load = LoadWindow()
        cache.pin(cfg.evidence.cache_in_memory_mb * 2**20)
        try:
            result["profile"] = profile_runs(cfg, pool, labelable_training_clips(pool, cfg.model))
        finally:
            cache.unpin()
        result["profile_load"] = [load.before, load.close().after]
    load = LoadWindow()
    job = evidence_config(args.pool_dir, work / "workload", args.cache_dir,
                          [f"evidence.seeds={args.seeds}", "evidence.fan_out=true"])
    t0 = time.perf_counter()
    frame = run_evidence(job, verbose=False)
    result["workload_s"] = time.perf_counter() - t0
    result["workload_load"] = [load.before, load.close().after]
    result["runs"] = int(frame.groupby(["strategy", "seed"]).ngroups)
    per_run = frame.groupby(["strategy", "seed"]).run_s.first()
    result["run_s_mean"] = {k: float(v) for k, v in per_run.groupby(level="strategy").mean().items()}
    result["rows"] = frame[ROW_COLUMNS].to_dict(orient="list")
    result["cv"] = shared_cv_problems(work / "workload" / "runs")
    print(f"workload: {result['runs']} runs in {result['workload_s']:.1f} s (goal {GOAL_S:.0f} s)", flush=True)
    before = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    if before is not None:
        same = pd.DataFrame(before["rows"]).equals(pd.DataFrame(result["rows"]))
        result["rows_identical_to_baseline"] = same
        if not same:
            raise SystemExit("runs.csv rows differ from the baseline's")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=list))
    text = report(result, before, args)
    print("\n" + text)
    if not args.no_results:
        write_results(args.results, text)
    return result


def _load_text(window: list) -> str:
    fmt = "/".join
    return f"{fmt(f'{v:.1f}' for v in window[0])} before, {fmt(f'{v:.1f}' for v in window[1])} after"


def report(after: dict, before: dict | None, args) -> str:
    """The results markdown: the profile (before / after), the workload's wall time against the goal."""
    lines = ["# Evidence cost benchmark", "",
             f"`python -m bench.evidence_cost --seeds {args.seeds}` on {args.pool_dir} ({after['clips']} clips, "
             f"{after['train_clips']} training): {' / '.join(STRATEGIES)} x {after['seeds']} paired seeds x 4 rounds "
             f"= {after['runs']} runs.", "", __doc__.split("\n\n", 2)[2].strip(), ""]
    sides = [("before", before), ("after", after)] if before else [("this tree", after)]
    if "profile" in after:
        lines += ["## One run, profiled (seconds)", ""]
        header = ["part"] + [f"{name}, {side}" for name in STRATEGIES for side, _ in sides]
        if before:
            header += ["saved per run (mean of the three)"]
        rows = []
        for label in [p[0] for p in PARTS]:
            cells = [f"{d['profile']['parts'][n][label]:.2f}" for n in STRATEGIES for _, d in sides]
            if before:
                saved = [before["profile"]["parts"][n][label] - after["profile"]["parts"][n][label] for n in STRATEGIES]
                cells.append(f"**{sum(saved) / len(saved):.2f}**")
            rows.append([label, *cells])
        for key, label in (("profiled_s", "whole run, profiled"), ("plain_s", "whole run, not profiled (seed 0)")):
            cells = [f"{d['profile'][key][n]:.2f}" for n in STRATEGIES for _, d in sides]
            if before:
                saved = [before["profile"][key][n] - after["profile"][key][n] for n in STRATEGIES]
                cells.append(f"**{sum(saved) / len(saved):.2f}**")
            rows.append([f"**{label}**", *cells])
        lines += [md_table(header, rows), ""]
        lines += [f"Load average (1/5/15 min) during the profile, {side}: {_load_text(d['profile_load'])}."
                  for side, d in sides] + [""]
        if before:
            def saved(n: str, labels: list[str], minus: list[str]) -> float:
                delta = {lab: before["profile"]["parts"][n][lab] - after["profile"]["parts"][n][lab]
                         for lab in [*labels, *minus]}
                return sum(delta[lab] for lab in labels) - sum(delta[lab] for lab in minus)

            lines += ["What each change bought, profiled seconds per run (a part's before minus after; the "
                      "cross-validation row without the solver's scans, which the controller row counts):", ""]
            rows = [[change, *[f"{saved(n, labels, minus):.2f}" for n in STRATEGIES],
                     f"**{sum(saved(n, labels, minus) for n in STRATEGIES) / len(STRATEGIES):.2f}**"]
                    for change, labels, minus in CHANGES]
            lines += [md_table(["change", *STRATEGIES, "mean"], rows), ""]
            yardstick = "auto's simulated active learning"
            drift = abs(before["profile"]["parts"]["auto"][yardstick] - after["profile"]["parts"]["auto"][yardstick])
            lines += [f"Each profile is one run on a shared machine: {yardstick}, which no change touched, moved by "
                      f"{drift:.2f} s between the two, a yardstick for the noise in every cell.", ""]
    lines += ["## The workload, fanned out (2 runs at a time)", ""]
    rows = [[side, f"{d['workload_s']:.1f}", f"{d['workload_s'] / d['runs']:.2f}",
             f"{d['workload_s'] / GOAL_S:.2f}x", "met" if d["workload_s"] <= GOAL_S else "not met",
             _load_text(d["workload_load"])] for side, d in sides]
    lines += [md_table(["code", "wall s", "wall s per run", "of the 3-min goal", "goal", "load (1/5/15 min)"], rows),
              ""]
    if "cv" in after:
        shared = after["cv"]["shared_by_round"]
        lines += [f"Of the workload's {after['cv']['problems']} cross-validations of C (one per run and round), "
                  f"**{sum(shared.values())}** are on labelled clips that another run of the same seed "
                  "cross-validates too (by round: " + ", ".join(f"{r}: {n}" for r, n in sorted(shared.items()))
                  + "): every strategy's first round, and `auto`'s rounds while it has queried as `random` does. "
                  "With `cv_choices` each of those is solved once.", ""]
    if before:
        lines += [f"runs.csv rows ({len(after['rows']['seed'])}, everything but timings) identical before and "
                  f"after: **{'yes' if after.get('rows_identical_to_baseline') else 'no'}**. Before: the same "
                  f"script on the tree at {before['tree']} ({before['machine']['date']}); after: {after['tree']}.",
                  ""]
    info = after["machine"]
    lines += [machine_markdown(info, LoadWindow(tuple(after["workload_load"][0]), tuple(after["workload_load"][1])))]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
