"""Sweep benchmark: ASHA against a full-budget search of the same 16 configurations, side by side in one run,
and the fixed cost per trial of in-process and Ray Train trials.

    python -m bench.sweep                 # 16 configs x 8 epochs on a 240-clip demo pool: FIFO, ASHA, Ray Train
    python -m bench.sweep --clips 720 --no-write   # make demo's pool (hours on 2 cores)

Both searches run ``jobs.sweep`` (``ser_models.tune.sweep.run_sweep``) over the demo pool with the frozen
pretrained Whisper-tiny encoder (Smart Turn v3.2), a 16-point grid (pooling x featurizer x head learning
rate), the same seed, in-process trials with one CPU each, ``--concurrent`` at once (Ray gets one logical CPU
more, for the trials' Ray Data reads). CPU-seconds are what the trials reserve: the sum of every trial's wall time x its CPUs (what a cluster bills), plus the driver's own CPU time.
"Time to the final best" is the wall time from the start of ``Tuner.fit`` to the first report that reached the
search's final best dev UA.
"""

from __future__ import annotations

import argparse
import json
import resource
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

RESULTS = RESULTS_DIR / "sweep.md"
#: What ASHA may stop on (``--stop-metric``) and its direction; trials are always ranked by dev UA.
STOP_MODES = {"dev_ua": "max", "dev_nll": "min", "dev_macro_f1": "max"}
SPACE = {
    "model.pooling": {"grid": ["mean", "attentive_stats"]},
    "model.featurizer_layer": {"grid": [None, -1]},
    "train.lr_head": {"grid": [3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2]},
}


def base_config(pool_dir: Path, epochs: int, seed: int = 0) -> dict:
    source = encoder_overrides("smart-turn")[0].split("=", 1)[1]
    return {
        "pool_dir": str(pool_dir),
        "model": {"encoder": {"source": source, "normalize_waveform": "auto"}, "adapter": {"kind": "frozen"},
                  "head_hidden": 64, "head_dropout": 0.2},
        "train": {"optim": {"epochs": epochs, "batch_size": 16, "max_crop_seconds": 3.0, "seed": seed},
                  "early_stopping_patience": 0},
        "scaling": {"backend": "in_process", "cpus_per_worker": 1},
    }


def sweep_config(out: Path, pool_dir: Path, epochs: int, scheduler: str, backend: str = "in_process",
                 space: dict | None = None, reduction_factor: float = 3.0, concurrent: int = 1,
                 stop_metric: str = "", grace_period: int = 1, seed: int = 0):
    from ser_models.config import from_dict
    from ser_models.tune.config import SweepConfig

    base = base_config(pool_dir, epochs, seed)
    base["scaling"]["backend"] = backend
    return from_dict(SweepConfig, {
        "base": "finetune", "output_dir": str(out), "name": scheduler, "config": base,
        "search": space or SPACE, "num_samples": 1, "search_alg": "grid", "seed": seed,
        "max_concurrent_trials": concurrent,
        "scheduler": {"name": scheduler, "grace_period": grace_period, "reduction_factor": reduction_factor,
                      **({"metric": stop_metric, "mode": STOP_MODES[stop_metric]}
                         if scheduler == "asha" and stop_metric else {})},
        "tracking": {"tensorboard": False, "mlflow": False}})


def asha_rungs_for(epochs: int, reduction_factor: float, grace_period: int = 1) -> list[int]:
    """The epochs after which the benchmark's ASHA may stop a trial (the scheduler ``jobs.sweep`` builds)."""
    from ser_models.tune.sweep import asha_rungs, build_scheduler, plan_sweep

    cfg = sweep_config(Path("/unused"), Path("/unused"), epochs, "asha", reduction_factor=reduction_factor,
                       grace_period=grace_period)
    return asha_rungs(build_scheduler(plan_sweep(cfg, check_pool=False)))


def measure(cfg) -> dict:
    """Run one sweep; its wall time, reserved CPU-seconds, best and time to the best."""
    from ser_models.tune.sweep import run_sweep

    scratch(cfg.output_dir)
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.time()
    outcome = run_sweep(cfg, verbose=0)
    wall = time.time() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    driver_cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return summarise(outcome.frame, outcome.grid, t0, wall, driver_cpu, cfg.config["scaling"]["cpus_per_worker"])


def from_saved(out: Path, name: str, cpus_per_trial: int = 1) -> dict:
    """:func:`measure`'s figures from a finished sweep folder (``--from-saved``): the wall time runs from the
    first trial's start to the last report, as Tune recorded them; the driver's CPU time is not recorded."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    frame = pd.read_parquet(out / "results.parquet")
    grid = ResultGrid(ExperimentAnalysis(str(out / "tune" / name)))
    starts, ends = [], []
    for r in grid:
        df = r.metrics_dataframe
        if df is not None and not df.empty:
            starts.append(float(df["timestamp"].iloc[0] - df["time_total_s"].iloc[0]))
            ends.append(float(df["timestamp"].iloc[-1]))
    t0 = min(starts)
    return summarise(frame, grid, t0, max(ends) - t0, 0.0, cpus_per_trial)


def summarise(frame, grid, t0: float, wall: float, driver_cpu: float, cpus_per_trial: int) -> dict:
    trial_cpu = float(frame["seconds"].sum()) * cpus_per_trial
    best = frame.iloc[0]
    first_best = min(
        (float(row["timestamp"]) for r in grid if r.metrics_dataframe is not None
         for _, row in r.metrics_dataframe.iterrows()
         if pd.notna(row.get("dev_ua")) and row["dev_ua"] >= best["metric"] - 1e-12),
        default=float("nan"))
    overhead = []
    for r in grid:
        df = r.metrics_dataframe
        if df is None or df.empty:
            continue
        per_epoch = df.drop_duplicates("epoch", keep="first")
        work = float(per_epoch["train_seconds"].sum() + per_epoch.get("eval_seconds", pd.Series(0.0)).sum())
        overhead.append(float(r.metrics["time_total_s"]) - work)
    return {"frame": frame, "t0": t0, "wall": wall, "trial_cpu": trial_cpu, "driver_cpu": driver_cpu,
            "best_ua": float(best["metric"]), "best_config": json.loads(best["config_json"]),
            "to_best": first_best - t0, "epochs": int(frame["epoch"].sum()),
            "stopped": int(frame["stopped_early"].sum()), "overhead": overhead}


def trial_costs(result: dict) -> tuple[float, float]:
    """Mean fixed cost per trial (s) and mean training + evaluation time per trial (s)."""
    frame = result["frame"]
    over = sum(result["overhead"]) / max(len(result["overhead"]), 1)
    work = float(frame["seconds"].mean()) - over
    return over, work


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--reduction-factor", type=float, default=3.0,
                        help="ASHA keeps 1/this of the trials at each rung (rungs at 1, rf, rf^2, ... epochs)")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at once (one CPU each)")
    parser.add_argument("--grace", type=int, default=1, help="ASHA's grace period: epochs before the first rung")
    parser.add_argument("--stop-metric", default="dev_ua", choices=sorted(STOP_MODES),
                        help="what ASHA stops trials on (scheduler.metric); the ranking stays dev UA")
    parser.add_argument("--seed", type=int, default=0, help="every trial's train.optim.seed (and the search's seed)")
    parser.add_argument("--clips", type=int, default=240,
                        help="demo corpus size (720 = make demo's pool: one frozen-encoder epoch takes ~84 s on 2 "
                             "cores there, so the two searches would take ~3 h)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write the results file")
    parser.add_argument("--results", default=RESULTS.name, help="file name under bench/results/")
    parser.add_argument("--from-saved", action="store_true",
                        help="rebuild the tables from the sweep folders of an earlier run (no new sweeps)")
    args = parser.parse_args(argv)
    work = claim_workdir(args.workdir) / (f"sweep_bench_{args.clips}_rf{args.reduction_factor:g}"
                                 + ("" if args.epochs == 8 else f"_e{args.epochs}")
                                 + ("" if args.grace == 1 else f"_grace{args.grace}")
                                 + ("" if args.stop_metric == "dev_ua" else f"_{args.stop_metric}")
                                 + ("" if args.seed == 0 else f"_seed{args.seed}"))
    info, load = machine_info(), LoadWindow()
    results = {}
    if args.from_saved:
        for name in ("fifo", "asha", "ray_train"):
            results[name] = from_saved(work / name, "fifo" if name == "ray_train" else name)
    else:
        pool = ensure_pool(work.parent / f"sweep_pool_{args.clips}" / "pool", n=args.clips)
        # one logical CPU per trial plus one for the trials' Ray Data reads, which run outside their reservations
        init_ray(args.concurrent + 1)
        for scheduler in ("fifo", "asha"):
            results[scheduler] = measure(sweep_config(work / scheduler, pool, args.epochs, scheduler,
                                                      reduction_factor=args.reduction_factor,
                                                      concurrent=args.concurrent,
                                                      stop_metric=args.stop_metric, grace_period=args.grace,
                                                      seed=args.seed))
        # Ray Train trials: two configurations of the same space, 2 epochs, for the fixed cost per trial.
        small = {"model.pooling": {"grid": ["mean"]}, "train.lr_head": {"grid": [1.0e-3, 3.0e-3]}}
        results["ray_train"] = measure(sweep_config(work / "ray_train", pool, 2, "fifo",
                                                    "ray_train", small, concurrent=args.concurrent, seed=args.seed))
    for name, r in results.items():
        print(f"{name}: wall {r['wall']:.0f}s, trial CPU-s {r['trial_cpu']:.0f}, best {r['best_ua']:.4f} "
              f"{r['best_config']}, {r['epochs']} epochs, {r['stopped']} stopped")
    rt = results["ray_train"]
    load.close()

    fifo, asha = results["fifo"], results["asha"]
    # dev UA over a few dozen clips is coarse: several configurations can tie for the best. ASHA "finds the
    # best" when its pick is one of the full search's tied best configurations.
    full = fifo["frame"]
    tied = [json.loads(c) for c in full.loc[full["metric"] >= full["metric"].max() - 1e-12, "config_json"]]
    same = asha["best_config"] in tied
    ratio = (asha["trial_cpu"] + asha["driver_cpu"]) / (fifo["trial_cpu"] + fifo["driver_cpu"])
    rows = []
    for name, r in (("full search (FIFO)", fifo), ("ASHA", asha)):
        cfg = ", ".join(f"{k.split('.')[-1]}={v}" for k, v in r["best_config"].items())
        rows.append([name, f"{r['wall']:.0f}", f"{r['trial_cpu'] + r['driver_cpu']:.0f}", r["epochs"], r["stopped"],
                     f"{r['best_ua']:.4f}", cfg, f"{r['to_best']:.0f}"])
    table = md_table(["search", "wall s", "CPU-s", "epochs run", "stopped early", "best dev UA", "best config",
                      "s to final best"], rows)
    cost_rows = []
    for name, r in ((f"in-process (FIFO sweep, {args.concurrent} at once)", fifo),
                    (f"Ray Train, 1 worker ({args.concurrent} at once)", rt)):
        over, work_s = trial_costs(r)
        cost_rows.append([name, len(r["frame"]), f"{over:.1f}", f"{work_s:.1f}",
                          f"{over / max(over + work_s, 1e-9):.0%}"])
    costs = md_table(["trial kind", "trials", "fixed cost per trial s", "train + eval per trial s",
                      "fixed share"], cost_rows)
    verdict = (f"ASHA used **{ratio:.0%}** of the full search's CPU-seconds and "
               + (("picked **the full search's best configuration**" if len(tied) == 1 else
                  f"picked a configuration **tied for the full search's best** dev UA ({len(tied)} configurations "
                  "tie there)") if same else "picked a configuration **below** the full search's best")
               + f" (target: the same best in <= 40 %: **{'met' if same and ratio <= 0.40 else 'not met'}**).")
    saved = ""
    machine = machine_markdown(info, load)
    if args.from_saved:
        import datetime as dt

        def utc(t):
            return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")

        start = min(r["t0"] for r in results.values())
        end = max(r["t0"] + r["wall"] for r in results.values())
        saved = (f" The sweeps ran {utc(start)}-{utc(end)} UTC; these tables were rebuilt from their folders with "
                 "`--from-saved`: wall time runs from the first trial's start to the last report as Tune recorded "
                 "them, and the driver's own CPU time is not included.")
        machine = machine.splitlines()[0].rsplit(";", 1)[0] + "."  # the load lines would describe the rebuild
    usage_free = __doc__.split("\n\n")[2].strip()
    rungs = ", ".join(map(str, asha_rungs_for(args.epochs, args.reduction_factor, args.grace)))
    text = f"""# Sweep benchmark: ASHA vs a full-budget search

`python -m bench.sweep --clips {args.clips} --epochs {args.epochs} --reduction-factor {args.reduction_factor:g} --concurrent {args.concurrent} --grace {args.grace} --stop-metric {args.stop_metric} --seed {args.seed}`.{saved} {usage_free}

Space (16 grid points): {', '.join(f'`{k}` {v["grid"]}' for k, v in SPACE.items())}; frozen encoder,
{args.epochs} epochs, a {args.clips}-clip demo pool, {args.concurrent} trials at once, ASHA grace period {args.grace} epoch(s),
reduction factor {args.reduction_factor:g}: rungs (where ASHA may stop a trial) after epochs {rungs}; ASHA stops
on {args.stop_metric} ({STOP_MODES[args.stop_metric]}), every search ranks by dev UA.

{machine}

{table}

{verdict}

## Fixed cost per trial

Fixed cost = a trial's wall time minus the training and evaluation seconds its epochs report (Tune's trial
start, imports, pool opening and reads, model build, the final evaluation and checkpoint; for Ray Train also
the worker group's start and per-epoch checkpoints).

{costs}
"""
    print(text)
    if not args.no_write:
        print(f"wrote {write_results(RESULTS_DIR / args.results, text)}")


if __name__ == "__main__":
    main()
