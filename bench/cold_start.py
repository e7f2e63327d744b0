"""Cold-start benchmark: AFTER's initial set (``cluster_cold_start``) at N = 1M x 768-d, budget 5 %.

    python -m bench.cold_start              # N = 1M, B = 50k; writes bench/results/cold_start.md
    python -m bench.cold_start --n 100000   # a smaller pool (prints only)

The whole query is timed (PCA, k-means on a sample, the assignment pass over every row, the round-robin fill),
in a fresh process per case so that peak RSS measures it alone. Data: bench.selection's Gaussian mixture.
For comparison the same strategy runs uncapped (k = B, every row, full dimension: AFTER's recipe) on a 50k
pool, where it still finishes, beside the capped default on the same pool.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "cold_start.md"


def run_case(n_pool: int, fraction: float, max_clusters: int, cold_start_dim: int | None) -> dict:
    from bench.selection import _rss_kib, make_pool
    from ser_models.active import StrategyConfig, build_strategy

    pool = make_pool(n_pool)
    batch = int(round(fraction * n_pool))
    base = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    strategy = build_strategy(StrategyConfig(name="cluster_cold_start", max_clusters=max_clusters,
                                             cold_start_dim=cold_start_dim))
    ids = strategy.query(pool, set(), batch, seed=0)
    secs = time.perf_counter() - t0
    assert len(set(ids)) == batch
    return {"N": n_pool, "B": batch, "max_clusters": max_clusters, "cold_start_dim": cold_start_dim,
            "seconds": round(secs, 2), "peak_extra_mib": round((_rss_kib("VmHWM") - base) / 1024, 1),
            "embeddings_mib": round(n_pool * 768 * 4 / 2**20, 1)}


def _subprocess(case: dict, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "bench.cold_start", "--case", json.dumps(case)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True,
                             cwd=Path(__file__).resolve().parents[1])
    except subprocess.TimeoutExpired:
        return {**case, "N": case["n_pool"], "seconds": f"> {timeout}"}
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(exc.stderr[-3000:]) from exc
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    from bench.selection import machine_info

    ap = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="pool size")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(**json.loads(args.case))))
        return
    cases = [
        ({"n_pool": args.n, "fraction": 0.05, "max_clusters": 1024, "cold_start_dim": 64}, 600),
        # AFTER's own recipe (k = B clusters over every row, full dimension) beside ours, where it still ends:
        ({"n_pool": 50_000, "fraction": 0.05, "max_clusters": 10**9, "cold_start_dim": None}, 900),
        ({"n_pool": 50_000, "fraction": 0.05, "max_clusters": 1024, "cold_start_dim": 64}, 600),
    ]
    rows = []
    for case, timeout in cases:
        load = round(os.getloadavg()[0], 2)
        row = {**_subprocess(case, timeout), "load_before": load, "load_after": round(os.getloadavg()[0], 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    head = "| N | B | max_clusters | cold_start_dim | seconds | peak extra RSS (MiB) | embeddings (MiB) | load |"
    lines = [head, "|" + "---|" * 8] + [
        f"| {r['N']:,} | {r.get('B', '-'):,} | {r['max_clusters']} | {r['cold_start_dim']} | {r['seconds']} | "
        f"{r.get('peak_extra_mib')} | {r.get('embeddings_mib')} | {r['load_before']} -> {r['load_after']} |"
        for r in rows]
    text = "\n".join(lines)
    print(text)
    if args.n == 1_000_000:
        info = "\n".join(f"- {k}: {v}" for k, v in machine_info().items())
        RESULTS.write_text(f"# Cold-start benchmark\n\n`python -m bench.cold_start`\n\n{info}\n\n{text}\n")


if __name__ == "__main__":
    main()
