"""ASHA replayed over the full searches of ``bench/sweep.py``: how often would it meet the target, over trial orders?

    python -m bench.asha_replay                       # every sweep_bench_* folder under the bench workdir
    python -m bench.asha_replay --runs sweep_bench_480_rf4_dev_nll --orders 2000

One side-by-side run of ``bench/sweep.py`` is one draw: ASHA's outcome depends on the order in which trials
start and meet at rungs. A seeded fit's curve does not depend on that order, so the full search's recorded
curves replay ASHA (``ser_models.tune.replay``: Ray's rule, the real reports' timing, the run's concurrency)
under the grid order the real run used and under ``--orders`` random orders, for several reduction factors,
grace periods and stopping metrics. Where the folder also holds the real ASHA run, the grid-order replay is
checked against it trial by trial. Cost is reserved trial-seconds relative to the full search's (the real
runs' ratios also count the driver's own CPU time, < 1 %).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from bench.common import DEFAULT_WORKDIR, RESULTS_DIR, claim_workdir, md_table, write_results
from bench.sweep import STOP_MODES, asha_rungs_for

RESULTS = RESULTS_DIR / "sweep_replay.md"
#: The stopping metrics replayed (when the full search reported them); directions from ``bench.sweep``.
REPLAYED = ("dev_ua", "dev_nll")
SETTINGS = [(rf, grace) for grace in (1, 2) for rf in (2.0, 3.0, 4.0)]


def finished_config(folder: Path, scheduler: str) -> dict | None:
    """The sweep config of ``folder/scheduler``, or None when that sweep is missing or unfinished."""
    if not (folder / scheduler / "results.parquet").exists():
        return None
    return yaml.safe_load((folder / scheduler / "config.yaml").read_text())


def load_run(folder: Path, scheduler: str):
    """``(curves by stopping metric, sweep config)`` of one finished sweep folder, or None."""
    from ray.tune import ExperimentAnalysis, ResultGrid

    from ser_models.tune.replay import curves_from_grid

    cfg = finished_config(folder, scheduler)
    if cfg is None:
        return None
    grid = ResultGrid(ExperimentAnalysis(str(folder / scheduler / "tune" / cfg.get("name", scheduler))))
    metrics = set.intersection(*(set(r.metrics_dataframe.columns) for r in grid))
    curves = {m: curves_from_grid(grid, m, "dev_ua") for m in REPLAYED if m in metrics}
    return curves, cfg


def replay_setting(curves, rungs, rf: float, stop_mode: str, concurrent: int, orders: int, seed: int,
                   target: float) -> dict:
    """Grid order and ``orders`` random orders of one ASHA setting: cost ratios, same-best and target rates."""
    from ser_models.tune.replay import full_search_best, replay_asha

    full_cost = sum(c.total_seconds for c in curves)
    _, winners = full_search_best(curves)
    grid_order = [c.trial_id for c in curves]

    def draw(order):
        out = replay_asha(curves, order, rungs, rf, stop_mode=stop_mode, concurrent=concurrent)
        return out.reserved_seconds / full_cost, bool(set(out.best_trials) & set(winners))

    rng = np.random.default_rng(seed)
    ratio, same = map(np.array, zip(*(draw(list(rng.permutation(grid_order))) for _ in range(orders))))
    g_ratio, g_same = draw(grid_order)
    return {"grid_ratio": g_ratio, "grid_same": g_same, "ratio": ratio, "same": same,
            "meet": same & (ratio <= target)}


def check_against_real(folder: Path, curves_by_metric, concurrent: int) -> list | None:
    """The grid-order replay of the folder's real ASHA run, trial by trial: a table row, or None."""
    from ser_models.tune.replay import replay_asha

    real_cfg = finished_config(folder, "asha")
    if real_cfg is None:
        return None
    s = real_cfg["scheduler"]
    metric = s.get("metric") or "dev_ua"
    curves = curves_by_metric[metric]
    epochs = max(c.epochs[-1] for c in curves)
    out = replay_asha(curves, [c.trial_id for c in curves], asha_rungs_for(epochs, s["reduction_factor"],
                      s["grace_period"]), s["reduction_factor"], stop_mode=STOP_MODES[metric],
                      concurrent=concurrent)
    frame = pd.read_parquet(folder / "asha" / "results.parquet")
    real_epochs = {tid.rsplit("_", 1)[-1]: int(e) for tid, e in zip(frame["trial_id"], frame["epoch"])}
    rep_epochs = {tid.rsplit("_", 1)[-1]: e for tid, e in out.epochs_run.items()}
    agree = sum(real_epochs.get(k) == v for k, v in rep_epochs.items())
    return [folder.name, f"rf {s['reduction_factor']:g}, grace {s['grace_period']}, {metric}",
            f"{agree} / {len(rep_epochs)}", f"{out.reserved_seconds:.0f}", f"{frame['seconds'].sum():.0f}"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--runs", nargs="*", default=None, help="folder names under --workdir (default: all "
                                                                   "sweep_bench_* with a finished full search)")
    parser.add_argument("--orders", type=int, default=1000, help="random trial orders per setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.40, help="the cost ratio ASHA must stay within")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    work = claim_workdir(args.workdir)
    names = args.runs if args.runs is not None else sorted(p.name for p in work.glob("sweep_bench_*"))
    rows, checks = [], []
    for name in names:
        run = load_run(work / name, "fifo")
        if run is None:
            print(f"skipped {name}: no finished full search")
            continue
        curves_by_metric, cfg = run
        concurrent = int(cfg.get("max_concurrent_trials") or 1)
        epochs = max(c.epochs[-1] for c in next(iter(curves_by_metric.values())))
        seed = cfg.get("config", {}).get("train", {}).get("optim", {}).get("seed", 0)
        check = check_against_real(work / name, curves_by_metric, concurrent)
        if check:
            checks.append(check)
        for metric, curves in curves_by_metric.items():
            for rf, grace in SETTINGS:
                rungs = asha_rungs_for(epochs, rf, grace)
                r = replay_setting(curves, rungs, rf, STOP_MODES[metric], concurrent, args.orders, args.seed,
                                   args.target)
                lo, mid, hi = np.percentile(r["ratio"], [10, 50, 90])
                rows.append([f"`{name}` ({epochs} epochs, seed {seed})", metric, f"{rf:g}", grace,
                             ", ".join(map(str, rungs)),
                             f"{r['grid_ratio']:.0%} {'same' if r['grid_same'] else 'lower'}",
                             f"{mid:.0%} ({lo:.0%}-{hi:.0%})", f"{r['same'].mean():.0%}",
                             f"**{r['meet'].mean():.0%}**"])
                print(rows[-1])
    table = md_table(["full search", "ASHA stops on", "rf", "grace", "rungs", "grid order: cost, best",
                      f"{args.orders} random orders: cost median (10-90 %)", "same best",
                      f"same best and cost <= {args.target:.0%}"], rows)
    check_table = md_table(["run", "real ASHA", "trials with the same epochs", "replay reserved s",
                            "real reserved s"], checks) if checks else "(no real ASHA run to check against)"
    text = f"""# ASHA replayed over the full searches' curves

`python -m bench.asha_replay --orders {args.orders} --seed {args.seed}` over {', '.join(f'`{n}`' for n in names)}.
{__doc__.split(chr(10) + chr(10))[2].strip()}

"Same best": ASHA's best trial (by dev UA over the epochs it ran) is one of the full search's tied best.
Cost: ASHA's reserved trial-seconds / the full search's.

## The replay against the real ASHA runs (grid order)

{check_table}

## ASHA settings over trial orders

{table}
"""
    print(text)
    if not args.no_write:
        print(f"wrote {write_results(RESULTS, text)}")


if __name__ == "__main__":
    main()
