"""Shard reads: the sharded selection over score shards whose embeddings are a Parquet column, against shards whose
embeddings sit in a file of fixed-size rows beside them (the layout ``score_to_shards`` writes).

    python -m bench.shard_reads --scores outputs/bench_round_scale/round_10000000_384_sharded/scores

``--scores`` is a committed scoring pass written with the embeddings as a Parquet column (``bench.round_scale``
before the embedding files); this benchmark copies it into the current layout under ``--workdir``, then times
``shard_candidates`` for ``informative_diverse`` (B = 1,000, the 1,000 labelled clips of ``--labelled``) on each
layout, in this process (one shard at a time: no Ray), ``--repeat`` times with the order alternating. Both
layouts hold the same scores, so both give the same candidates (checked). Synthetic scores; no audio, no real
speech.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import (
    LoadWindow,
    claim_workdir,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
    write_score_pass,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "shard_reads.md"
BATCH = 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", required=True, help="a committed pass with the embeddings as a Parquet column")
    parser.add_argument("--labelled", help="the labelled clips (default: bench.round_scale's, found beside)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench_shard_reads"))
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    import dataclasses

    import pyarrow.parquet as pq

    from ser_models.active.config import StrategyConfig
    from ser_models.active.sharded_selection import shard_candidates
    from ser_models.active.strategies import build_strategy
    from ser_models.io import read_parquet
    from ser_models.scoring.score_shards import ScoreShards

    old = ScoreShards.open(args.scores)
    if old is None:
        raise SystemExit(f"no committed scoring pass in {args.scores}")
    if "embedding" not in pq.read_schema(old.paths[0]).names:
        raise SystemExit(f"{args.scores} already keeps its embeddings in files beside its shards")
    round_dir = Path(args.scores).resolve().parent
    n, dim = round_dir.name.split("_")[1:3]
    labelled = args.labelled or str(round_dir.parent / f"n{n}_d{dim}" / "labelled.parquet")
    ledger = set(read_parquet(labelled).column("utt_id").to_pylist())
    workdir = claim_workdir(args.workdir, {"--scores": args.scores})
    load = LoadWindow()
    from ser_models.scoring.score_shards import read_shard

    new = write_score_pass((read_shard(p) for p in old.paths), scratch(workdir / "scores"), say=True)
    layouts = {"embedding column": dataclasses.replace(old, in_process=True),
               "embedding file": dataclasses.replace(new, in_process=True)}
    seconds = {name: [] for name in layouts}
    picked = {}
    for rep in range(args.repeat):
        for name in (list(layouts) if rep % 2 == 0 else list(layouts)[::-1]):
            strategy = build_strategy(StrategyConfig("informative_diverse"))
            t0 = time.perf_counter()
            rows = shard_candidates(layouts[name], strategy, BATCH, ledger, 7)
            picks = strategy.query(rows.as_scored_pool(), ledger, BATCH, 7)
            seconds[name].append(time.perf_counter() - t0)
            picked.setdefault(name, picks)
            print(f"{name}: {seconds[name][-1]:.1f}s", flush=True)
    load.close()
    same = picked["embedding column"] == picked["embedding file"]
    base = float(np.median(seconds["embedding column"]))
    table = [[name, ", ".join(f"{s:.1f}" for s in secs), f"{np.median(secs):.1f}", f"{np.median(secs) / base:.2f}"]
             for name, secs in seconds.items()]
    text = "\n".join([
        "# Sharded selection: embeddings as a Parquet column against a file of fixed-size rows", "",
        f"`python -m bench.shard_reads --scores {args.scores} --repeat {args.repeat}`: `informative_diverse` "
        f"(B = {BATCH:,}, entropy prefilter x4, then k-center with the {len(ledger):,} labelled clips as centres) over "
        f"{len(old):,} synthetic clips ({dim}-d) in {len(old.paths)} shards, in one process, one shard at a time. "
        "Seconds for the whole selection (both passes over the shards and the query on the candidates).", "",
        md_table(["layout", "seconds per run", "median s", "ratio"], table), "",
        f"The same {BATCH:,} picks on both layouts: {'yes' if same else 'NO'}.", "",
        machine_markdown(machine_info(), load), ""])
    print(text)
    if not same:
        raise SystemExit("the two layouts gave different picks")
    if not args.no_write:
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
