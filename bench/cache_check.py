"""Feature-cache read check at N cached clips: every clip id held as an Arrow string against 8-byte id keys.

    python -m bench.cache_check                              # N = 1M and 10M
    python -m bench.cache_check --sizes 100000 --no-write    # a quick look (prints only)

Every read of the feature cache (a round's training feed of L labelled clips, the scoring pass over the
training split, the stop set) first checks that the cache holds the clips asked for, so that the read's
filter never drops one silently. The check needs the set of cached ids. It was every cached id as an Arrow
string plus a hash table over them per check (``ids``); it is now the sorted 64-bit keys of the ids, read
file by file (``keys``, :class:`~ser_models.data.id_keys.KeySet`).

Builds a cache of N synthetic clips (24-character ids, 8-byte features, Parquet files of 65,536 rows, the
platform's layout), then, each in a fresh process, builds the cached set and checks K clips against it:
K = 1,000 (a training feed) and K = N (the scoring pass). Reports the driver's peak memory above its
start (VmHWM minus the RSS before the check), what stays held afterwards, and the seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import (
    LoadWindow,
    claim_workdir,
    machine_info,
    machine_markdown,
    md_table,
    proc_status,
    run_in_fresh_process,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "cache_check.md"
ROWS_PER_FILE = 65_536


def build(workdir: Path, n: int) -> Path:
    """The root of a pooled feature cache of ``n`` clips under ``workdir`` (reused when already built)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ser_models.io import write_json_atomic
    from ser_models.ownership import open_output
    from ser_models.scoring.feature_cache import FeatureCache

    root = workdir / f"cache_{n}"
    cache = FeatureCache(root, "cd" * 32)
    if (Path(cache.dir) / "meta.json").exists():
        return root
    feature = np.zeros((1, 2), np.float32).tobytes()
    with open_output(cache.dir, "feature_cache"):
        folder = Path(cache.dir) / "features-1"
        folder.mkdir(parents=True, exist_ok=True)
        for k, start in enumerate(range(0, n, ROWS_PER_FILE)):
            ids = [f"rec{i // 8:07d}_ch0_{i % 8:09d}" for i in range(start, min(n, start + ROWS_PER_FILE))]
            pq.write_table(pa.table({"utt_id": ids, "features": pa.array([feature] * len(ids), pa.binary())}),
                           folder / f"part-{k:06d}.parquet")
        write_json_atomic(cache.dir / "meta.json", {"num_layers": 1, "hidden_size": 2, "clips": n, "kind": "pooled",
                                                    "fingerprint": cache.fingerprint, "shards": ["features-1"]})
    return root


def _settle() -> None:
    """Hand freed memory back to the system (Python, Arrow's pool, glibc) so that RSS counts what is held."""
    import ctypes
    import gc

    import pyarrow as pa

    gc.collect()
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:  # not glibc
        pass


def run_case(folder: str, n: int, method: str, k: int) -> dict:
    """One check in this (fresh) process: build the cached set by ``method`` and check ``k`` clips against it."""
    import time

    import numpy as np
    import pyarrow as pa

    from ser_models.scoring.cache_guard import check_holds, sorted_ids
    from ser_models.scoring.feature_cache import FeatureCache

    cache = FeatureCache(folder, "cd" * 32)
    picks = np.sort(np.random.default_rng(0).choice(n, size=k, replace=False)) if k < n else np.arange(n)
    # the clips asked for, made without a Python string per clip (freeing those would lower the RSS measured)
    every = sorted_ids(cache.clip_ids())
    keep = every.take(pa.array(picks))
    del every
    _settle()
    with open("/proc/self/clear_refs", "w") as f:  # VmHWM restarts from the current RSS
        f.write("5")
    before = proc_status("VmRSS")
    t0 = time.perf_counter()
    held = cache.clip_ids() if method == "ids" else cache._held_keys()
    check_holds(str(cache.dir), keep, held)
    seconds = time.perf_counter() - t0
    peak = proc_status("VmHWM")
    _settle()
    return {"n": n, "k": k, "method": method, "seconds": round(seconds, 2),
            "peak_mib": round((peak - before) / 2**20, 1), "held_mib": round((proc_status("VmRSS") - before) / 2**20, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench_cache_check"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(**json.loads(args.case))), flush=True)
        return
    workdir = claim_workdir(args.workdir)
    rows = []
    for n in args.sizes:
        folder = build(workdir, n)
        load = LoadWindow()
        for k in (1_000, n):
            for method in ("ids", "keys"):
                rows.append(run_in_fresh_process("bench.cache_check", {"folder": str(folder), "n": n,
                                                                       "method": method, "k": k}, REPO))
                print(json.dumps(rows[-1]), flush=True)
        load.close()
    text = report(rows, machine_info(), load)
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)


def report(rows: list[dict], info: dict, load: LoadWindow) -> str:
    by = {(r["n"], r["k"], r["method"]): r for r in rows}
    table = []
    for (n, k, method), r in by.items():
        if method != "keys":
            continue
        old = by.get((n, k, "ids"))
        table.append([f"{n:,}", f"{k:,}", f"{old['peak_mib']:.0f}", f"{r['peak_mib']:.0f}",
                      f"{old['held_mib']:.0f}", f"{r['held_mib']:.0f}", f"{old['seconds']:.2f}", f"{r['seconds']:.2f}",
                      f"{r['peak_mib'] / max(old['peak_mib'], 0.1):.2f}"])
    head = ["cached clips", "clips checked", "peak MiB, ids", "peak MiB, keys", "held MiB, ids", "held MiB, keys",
            "s, ids", "s, keys", "peak ratio keys/ids"]
    return ("# The feature cache's read check at N cached clips\n\n"
            "Synthetic cache (ids and 8-byte features, no audio, no real speech): `python -m bench.cache_check`. "
            "Memory is the checking process's peak above its start and what it still holds afterwards.\n\n"
            + md_table(head, table) + "\n\n" + machine_markdown(info, load) + "\n")


if __name__ == "__main__":
    main()
