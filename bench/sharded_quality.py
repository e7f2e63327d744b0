"""Does selecting over sharded scores change what a run learns? The same evidence runs with the round's decision
gathered into one process and forced onto score shards, paired seed by seed.

    python -m bench.sharded_quality                       # demo-2880, 20 paired seeds, auto / kcenter / badge
    python -m bench.sharded_quality --pool-dir outputs/demo/pool --seeds 20

Both variants are ``run_evidence`` with the demo's evidence config (``demo_evidence.yaml``: random initial set,
budgets of 50, 100, 200 and 400 labels), reading one feature cache, and differ only in
``active.selection``: ``gathered`` keeps every round in process (the threshold above the pool), ``sharded``
forces the sharded round (``shard_above_clips=0``) with shards of ``--rows-per-shard`` clips, so a
2,016-clip training split is cut into several shards and the two-round strategies really pick per shard
first. For each strategy, budget and seed the test UA of the two runs is paired: the exact forms (``auto`` over
random, margin and informative_diverse) must give the same UA under every seed; k-center and BADGE go two
rounds over the shards (approximate), and the question is whether their paired difference's 95 % interval
lies within one UA point. All speech is generated (demo-2880): no figure here is a figure on real speech.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
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
from bench.evidence_fanout import evidence_config  # the demo's evidence config over a pool, a folder, a cache

RESULTS = RESULTS_DIR / "sharded_quality.md"
#: The benchmark's tolerance: the paired difference's 95 % interval within +-1 UA point.
TOLERANCE = 0.01


def paired(gathered: pd.DataFrame, sharded: pd.DataFrame) -> pd.DataFrame:
    """Per (strategy, labelled): mean paired difference of test UA (sharded - gathered) over seeds, its 95 %
    t-interval, the number of seeds whose UA differs at all, and the verdict against :data:`TOLERANCE`."""
    from scipy import stats

    keys = ["strategy", "seed", "labelled"]
    both = gathered[[*keys, "test_ua"]].merge(sharded[[*keys, "test_ua"]], on=keys, suffixes=("_g", "_s"),
                                               validate="one_to_one")
    rows = []
    for (strategy, labelled), part in both.groupby(["strategy", "labelled"], sort=True):
        d = (part["test_ua_s"] - part["test_ua_g"]).to_numpy()
        mean = float(d.mean())
        half = float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        lo, hi = mean - half, mean + half
        rows.append({"strategy": strategy, "labelled": int(labelled), "seeds": len(d),
                     "gathered": float(part["test_ua_g"].mean()), "sharded": float(part["test_ua_s"].mean()),
                     "diff": mean, "lo": lo, "hi": hi, "differ": int((np.abs(d) > 0).sum()),
                     "within": bool(-TOLERANCE <= lo and hi <= TOLERANCE)})
    return pd.DataFrame(rows)


def report(table: pd.DataFrame, walls: dict, args, info: dict, load: LoadWindow) -> str:
    rows = [[r.strategy, r.labelled, r.seeds, f"{r.gathered:.3f}", f"{r.sharded:.3f}",
             f"{r.diff * 100:+.2f} [{r.lo * 100:+.2f}, {r.hi * 100:+.2f}]", f"{r.differ}/{r.seeds}",
             "yes" if r.within else "**no**"] for r in table.itertuples()]
    met = bool(table["within"].all())
    return "\n".join([
        "# Selection over sharded scores against gathered scores: what a run learns", "",
        f"`python -m bench.sharded_quality --seeds {args.seeds} --rows-per-shard {args.rows_per_shard} --strategies "
        f"{' '.join(args.strategies)}` on demo-2880 (generated speech, no real speech): the demo's evidence runs "
        f"(random initial set of 50, budgets 50-400), once with every round gathered in process and once with the "
        f"sharded round forced (`active.selection.shard_above_clips=0`, shards of {args.rows_per_shard} clips: "
        f"the 2,016 training clips in {-(-2016 // args.rows_per_shard)} shards). Test UA per strategy and budget, "
        f"mean over seeds; the paired difference sharded - gathered in UA points with its 95 % interval; "
        f"`seeds differing`: seeds whose test UA is not identical.", "",
        md_table(["strategy", "labels", "seeds", "gathered UA", "sharded UA", "difference, points [95 % CI]",
                  "seeds differing", "within +-1 point"], rows), "",
        f"Target: the same test UA, or a paired difference whose 95 % interval lies within +-1 point, for every "
        f"strategy and budget: {'met' if met else 'not met'}.", "",
        f"Wall time: gathered {walls['gathered'] / 60:.1f} min, sharded {walls['sharded'] / 60:.1f} min, one "
        f"process each, one after another (not a speed comparison: the machine ran other jobs).", "",
        machine_markdown(info, load), ""])


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(prog="python -m bench.sharded_quality", description=__doc__.splitlines()[0])
    ap.add_argument("--pool-dir", default=str(DEFAULT_WORKDIR / "pool2880"), help="demo-2880 (built when missing)")
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR / "sharded_quality"), help="run folders (replaced)")
    ap.add_argument("--encoder", default="smart-turn")
    ap.add_argument("--strategies", nargs="+", default=["auto", "kcenter", "badge"])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--rows-per-shard", type=int, default=300)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    extra = [*encoder_overrides(args.encoder), f"evidence.strategies=[{','.join(args.strategies)}]",
             f"evidence.seeds={args.seeds}", "evidence.all_labels=false", "evidence.fan_out=false"]
    variants = {"gathered": ["active.selection.shard_above_clips=1000000000"],
                "sharded": ["active.selection.shard_above_clips=0",
                            f"active.selection.rows_per_shard={args.rows_per_shard}"]}
    pool_dir = ensure_pool(args.pool_dir, n=2880)
    work = claim_workdir(args.workdir)
    cache_dir = work / "feature_cache"
    init_ray(2)
    from ser_models.data import Pool
    from ser_models.runs.evidence import build_feature_cache, run_evidence

    build_feature_cache(evidence_config(pool_dir, work / "unused", cache_dir, extra), Pool.open(pool_dir),
                        verbose=False)
    load = LoadWindow()
    frames, walls = {}, {}
    for name, overrides in variants.items():
        cfg = evidence_config(pool_dir, work / name, cache_dir, [*extra, *overrides])
        scratch(cfg.output_dir)
        t0 = time.perf_counter()
        frames[name] = run_evidence(cfg, verbose=False)
        walls[name] = time.perf_counter() - t0
        print(f"{name}: {walls[name] / 60:.1f} min", flush=True)
    load.close()
    table = paired(frames["gathered"], frames["sharded"])
    text = report(table, walls, args, machine_info(), load)
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)
        for name, frame in frames.items():
            frame.to_csv(RESULTS.with_name(f"sharded_quality_{name}_runs.csv"), index=False)
    return table


if __name__ == "__main__":
    main()
