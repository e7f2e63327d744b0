"""The loop's run-level state at N training clips: pandas objects against Arrow ids and NumPy seconds.

    python -m bench.run_state                              # N = 1M and 10M
    python -m bench.run_state --sizes 100000 --no-write    # a quick look (prints only)

An active-learning run keeps its training split for every round: which clips it may select, what each costs
to label (hour budgets), how many there are. The baseline is how the loop held it before
(:class:`~ser_models.active.training_clips.TrainingClips` replaced it): the pool's ``utt_id, path, duration``
frame, a sorted list of id strings, a Series of seconds indexed by id, the list without the held-out clips
and its Series (code below, as the loop ran it). The new state is ``TrainingClips`` without the held-out
clips. Both start from the same Arrow table, read from one Parquet file of N rows shaped as the pool's
(24-character ids, 60-character paths, float durations; 5 % held out), as ``Pool.table`` reads it.

Each in a fresh process: peak memory above the process's start (VmHWM minus the RSS before), what stays held
afterwards, seconds; then one hour-budget question per round (``clips_wanted``: how many unlabelled clips,
and their mean duration, with 1,000 labelled).
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
RESULTS = REPO / "bench" / "results" / "run_state.md"


def build(workdir: Path, n: int) -> Path:
    """A Parquet file of ``n`` pool rows (reused when already written)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = workdir / f"pool_rows_{n}.parquet"
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, n, 1_000_000):
        idx = range(start, min(n, start + 1_000_000))
        t = pa.table({"utt_id": [f"rec{i // 8:07d}_ch0_{i % 8:09d}" for i in idx],
                      "path": [f"/data/corpora/calls/2026/{i // 8:08d}/segments/clip_{i % 8:06d}.flac" for i in idx],
                      "duration": rng.uniform(1.0, 9.0, len(idx))})
        writer = writer or pq.ParquetWriter(str(path) + ".tmp", t.schema)
        writer.write_table(t)
    writer.close()
    Path(str(path) + ".tmp").rename(path)
    return path


def _pandas_state(table, held_out: set[str]):
    """The loop's state before: as it built it from ``pool.metadata``."""
    import pandas as pd

    meta = table.to_pandas()
    split_ids = sorted(meta["utt_id"].astype(str))
    seconds = pd.Series(meta["duration"].astype(float).to_numpy(), index=meta["utt_id"].astype(str))
    train_ids = [i for i in split_ids if i not in held_out]
    durations = seconds.drop(index=list(held_out), errors="ignore")
    return meta, split_ids, seconds, train_ids, durations


def _pandas_wanted(state, labelled: set[str]) -> tuple[int, float]:
    durations = state[-1]
    free = durations.drop(index=list(labelled), errors="ignore")
    return len(free), float(free.mean())


def run_case(path: str, n: int, method: str) -> dict:
    """Build the state by ``method`` in this (fresh) process, then answer one hour-budget question."""
    import time

    import numpy as np
    import pyarrow.parquet as pq

    from ser_models.active.training_clips import TrainingClips

    table = pq.read_table(path, columns=["utt_id", "path", "duration"])
    ids = table.column("utt_id")
    pick = np.random.default_rng(1).choice(n, size=n // 20 + 1000, replace=False)
    held_out = set(ids.take(pick[: n // 20]).to_pylist())
    labelled = set(ids.take(pick[n // 20:]).to_pylist())
    before = proc_status("VmRSS")
    t0 = time.perf_counter()
    if method == "pandas":
        state = _pandas_state(table, held_out)
    else:
        split = TrainingClips(ids, table.column("duration").to_numpy())
        state = (split, split.without(held_out))
    built = time.perf_counter() - t0
    del table, ids
    t0 = time.perf_counter()
    if method == "pandas":
        count, mean = _pandas_wanted(state, labelled)
    else:
        free = state[1].mask_without(labelled)
        count, mean = int(free.sum()), float(np.sum(state[1].seconds, where=free)) / int(free.sum())
    asked = time.perf_counter() - t0
    return {"n": n, "method": method, "build_s": round(built, 2), "wanted_s": round(asked, 3),
            "free": count, "mean": round(mean, 6), "peak_mib": round((proc_status("VmHWM") - before) / 2**20, 1),
            "held_mib": round((proc_status("VmRSS") - before) / 2**20, 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench_run_state"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(**json.loads(args.case))), flush=True)
        return
    workdir = claim_workdir(args.workdir)
    rows = []
    load = LoadWindow()
    for n in args.sizes:
        path = build(workdir, n)
        for method in ("pandas", "arrow"):
            rows.append(run_in_fresh_process("bench.run_state", {"path": str(path), "n": n, "method": method}, REPO))
            print(json.dumps(rows[-1]), flush=True)
        old, new = rows[-2], rows[-1]
        if (old["free"], old["mean"]) != (new["free"], new["mean"]):
            raise SystemExit(f"the two states answer differently at N={n}: {old} against {new}")
    load.close()
    text = report(rows, machine_info(), load)
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)


def report(rows: list[dict], info: dict, load: LoadWindow) -> str:
    by = {(r["n"], r["method"]): r for r in rows}
    table = []
    for n in sorted({r["n"] for r in rows}):
        old, new = by[(n, "pandas")], by[(n, "arrow")]
        table.append([f"{n:,}", f"{old['held_mib']:.0f}", f"{new['held_mib']:.0f}",
                      f"{old['held_mib'] * 2**20 / n:.0f}", f"{new['held_mib'] * 2**20 / n:.0f}",
                      f"{old['peak_mib']:.0f}", f"{new['peak_mib']:.0f}", f"{old['build_s']:.1f}", f"{new['build_s']:.1f}",
                      f"{old['wanted_s']:.2f}", f"{new['wanted_s']:.2f}"])
    head = ["training clips", "held MiB, pandas", "held MiB, Arrow", "B/clip, pandas", "B/clip, Arrow",
            "peak MiB, pandas", "peak MiB, Arrow", "build s, pandas", "build s, Arrow", "budget question s, pandas",
            "budget question s, Arrow"]
    return ("# The loop's run-level state at N training clips\n\n"
            "Synthetic pool rows (no audio, no real speech): `python -m bench.run_state`. Memory is the building "
            "process's peak above its start and what it still holds afterwards; both states answer the hour-budget "
            "question identically (checked).\n\n" + md_table(head, table) + "\n\n" + machine_markdown(info, load) + "\n")


if __name__ == "__main__":
    main()
