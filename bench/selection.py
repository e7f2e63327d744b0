"""Selection benchmark: wall time and peak memory of query strategies on synthetic pools.

    python -m bench.selection            # N = 100k and 1M, writes bench/results/selection.md
    python -m bench.selection --quick    # N = 20k smoke run, prints the table only

Each case runs in its own subprocess so that peak RSS (``VmHWM``, reset through ``/proc/self/clear_refs``
after the data is generated) measures the selection alone; numpy and FAISS allocate outside tracemalloc.
Data: 768-d float32 embeddings from a Gaussian mixture (256 components, unit-variance centres, within-
component std 0.3) and Dirichlet(1) probabilities over C = 4 classes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DIM, CLASSES, COMPONENTS, SPREAD = 768, 4, 256, 0.3
RESULTS = Path(__file__).parent / "results" / "selection.md"


def make_pool(n: int, dim: int = DIM, seed: int = 0):
    """Synthetic ScoredPool: clustered float32 embeddings [n, dim], Dirichlet probs [n, 4]."""
    from ser_models.scoring.scored_pool import ScoredPool

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((COMPONENTS, dim), dtype=np.float32)
    emb = np.empty((n, dim), np.float32)
    comp = rng.integers(0, COMPONENTS, n)
    for s in range(0, n, 65536):  # chunks keep the generation peak near the final matrix
        e = min(n, s + 65536)
        emb[s:e] = rng.standard_normal((e - s, dim), dtype=np.float32)
        emb[s:e] *= SPREAD
        emb[s:e] += centres[comp[s:e]]
    probs = rng.dirichlet(np.ones(CLASSES), n).astype(np.float32)
    return ScoredPool(ids=np.char.add("u", np.arange(n).astype(str)), probs=probs, embeddings=emb)


def plain_kcenter(x: np.ndarray, n: int, first: int = 0) -> np.ndarray:
    """The best plain greedy k-center: one BLAS matvec per pick over precomputed squared norms
    (``|x|^2 - 2 x.c + |c|^2``), no N x D temporaries, every one of the ``n`` picks computed (no extrapolation).

    Returns:
        [n] row indices, in pick order.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    sq = np.einsum("ij,ij->i", x, x)
    mind = np.full(len(x), np.inf, np.float32)
    picks = np.empty(n, np.int64)
    p = first
    for k in range(n):
        picks[k] = p
        d = sq - 2.0 * (x @ x[p]) + sq[p]
        np.minimum(mind, d, out=mind)
        mind[p] = -np.inf  # never picked twice (float rounding can leave a tiny positive distance)
        p = int(np.argmax(mind))
    return picks


def plain_informative_diverse(pool, n: int, prefilter_factor: int = 10) -> np.ndarray:
    """The same work as ``informative_diverse`` done plainly: the ``prefilter_factor * n`` highest-entropy
    clips, then :func:`plain_kcenter` over them."""
    p = pool.probs.astype(np.float64)
    ent = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(1)
    top = np.argsort(-ent, kind="stable")[: prefilter_factor * n]
    return top[plain_kcenter(pool.embeddings[top], n)]


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def run_case(strategy: str, n_pool: int, batch: int, kcenter_dim: int | None = None) -> dict:
    """One case in this process: build the pool, reset the RSS peak, run, report seconds and MiB."""
    from ser_models.active import StrategyConfig, build_strategy

    pool = make_pool(n_pool)
    base = _rss_kib("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    info: dict = {}
    if strategy == "plain_kcenter":
        assert len(set(plain_kcenter(pool.embeddings, batch).tolist())) == batch
        secs = time.perf_counter() - t0
    elif strategy == "plain_informative_diverse":
        assert len(set(plain_informative_diverse(pool, batch).tolist())) == batch
        secs = time.perf_counter() - t0
    else:
        strat = build_strategy(StrategyConfig(name=strategy, kcenter_dim=kcenter_dim))
        ids = strat.query(pool, set(), batch, seed=0)
        assert len(set(ids)) == batch
        secs = time.perf_counter() - t0
        st = getattr(strat, "last_stats", None)
        if st is not None:
            info = {"cells": st.num_cells, "scan_fraction": round(st.scan_fraction, 4)}
    peak = _rss_kib("VmHWM")
    return {"strategy": strategy, "N": n_pool, "B": batch, "kcenter_dim": kcenter_dim, "seconds": round(secs, 2),
            "peak_extra_mib": round((peak - base) / 1024, 1) if reset else None,
            "embeddings_mib": round(n_pool * DIM * 4 / 2**20, 1), **info}


def _subprocess(case: dict, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "bench.selection", "--case", json.dumps(case)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                             cwd=Path(__file__).resolve().parents[1], check=True)
    except subprocess.TimeoutExpired:
        return {**case, "N": case["n_pool"], "B": case["batch"], "seconds": f"> {timeout}", "peak_extra_mib": None}
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(exc.stderr[-3000:]) from exc
    return json.loads(out.stdout.strip().splitlines()[-1])


def machine_info() -> dict:
    import faiss

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = _meminfo_gib()
    return {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "cpu": cpu,
            "cores": os.cpu_count(), "ram_gib": mem, "python": platform.python_version(),
            "numpy": np.__version__, "faiss": faiss.__version__}


def _meminfo_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 2**20, 1)
    return -1.0


def table(rows: list[dict]) -> str:
    head = "| strategy | N | B | kcenter_dim | seconds | peak extra RSS (MiB) | embeddings (MiB) | notes |"
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        notes = {k: v for k, v in r.items() if k in ("cells", "scan_fraction", "load_before", "load_after")}
        lines.append(f"| {r['strategy']} | {r['N']:,} | {r['B']:,} | {r.get('kcenter_dim')} | {r['seconds']} | "
                     f"{r.get('peak_extra_mib')} | {r.get('embeddings_mib')} | {notes} |")
    return "\n".join(lines)


def cases(quick: bool) -> list[tuple[dict, int]]:
    if quick:
        n, b = 20_000, 200
        return [({"strategy": s, "n_pool": n, "batch": b}, 300)
                for s in ("informative_diverse", "plain_informative_diverse", "kcenter", "plain_kcenter")]
    return [
        ({"strategy": "informative_diverse", "n_pool": 100_000, "batch": 1_000}, 300),
        ({"strategy": "plain_informative_diverse", "n_pool": 100_000, "batch": 1_000}, 300),
        ({"strategy": "kcenter", "n_pool": 100_000, "batch": 1_000}, 300),
        ({"strategy": "plain_kcenter", "n_pool": 100_000, "batch": 1_000}, 600),
        ({"strategy": "informative_diverse", "n_pool": 1_000_000, "batch": 10_000}, 400),
        ({"strategy": "kcenter", "n_pool": 1_000_000, "batch": 10_000, "kcenter_dim": 64}, 400),
        ({"strategy": "kcenter", "n_pool": 1_000_000, "batch": 10_000}, 400),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.selection", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 20k smoke run; prints, writes nothing")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        print(json.dumps(run_case(**json.loads(args.case))))
        return
    info = machine_info()
    rows = []
    for case, timeout in cases(args.quick):
        before = os.getloadavg()[0]
        row = _subprocess(case, timeout)
        row["load_before"], row["load_after"] = round(before, 2), round(os.getloadavg()[0], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    text = table(rows)
    print(text)
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        header = "\n".join(f"- {k}: {v}" for k, v in info.items())
        RESULTS.write_text(f"# Selection benchmark\n\n`python -m bench.selection`\n\n{header}\n\n{text}\n")


if __name__ == "__main__":
    main()
