"""Label propagation per shard: what one shard's label spreading costs, by shard size and labelled clips.

    python -m bench.shard_propagation

Over a sharded round, each shard spreads the ledger's labels over the kNN graph of its own n clips joined with
every one of the L labelled clips (``pseudo_labels.shard_pseudo_labels``); the exact neighbour search grows with
``(n + L)^2``. This times ``label_spreading`` (FAISS exact inner-product search, the sparse graph, 30 spreading
steps) on synthetic clustered 384-d embeddings (64 clusters; no audio, no real speech), in this process,
``--repeat`` times per size (the median is reported).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.common import LoadWindow, machine_info, machine_markdown, md_table, write_results

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "shard_propagation.md"


def _embeddings(n: int, dim: int, seed: int) -> np.ndarray:
    """[n, dim] float32: 64 clusters with unit noise around centres three units apart."""
    rng = np.random.default_rng(seed)
    return ((rng.normal(size=(64, dim)) * 3)[rng.integers(0, 64, n)] + rng.normal(size=(n, dim))).astype(np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, nargs="+", default=[16384, 65536], help="a shard's clips, n")
    parser.add_argument("--labelled", type=int, nargs="+", default=[1000], help="labelled clips joined, L")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)

    from ser_models.active.pseudo_labels import label_spreading

    load = LoadWindow()
    table = []
    for n in args.clips:
        for labelled in args.labelled:
            x = _embeddings(n + labelled, args.dim, seed=n)
            seeds = np.full(n + labelled, -1, np.int64)
            seeds[n:] = np.arange(labelled) % 4  # the joined labelled clips seed four classes
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                label_spreading(x, seeds, 4)
                times.append(time.perf_counter() - t0)
            per_clip = np.median(times) / n * 1e6
            table.append([f"{n:,}", f"{labelled:,}", args.dim, f"{np.median(times):.1f}",
                          f"{min(times):.1f}-{max(times):.1f}", f"{per_clip:.0f}"])
            print(table[-1], flush=True)
    load.close()
    text = "\n".join([
        "# Label propagation per shard: one shard's label spreading", "",
        f"`python -m bench.shard_propagation --clips {' '.join(map(str, args.clips))} --labelled "
        f"{' '.join(map(str, args.labelled))} --dim {args.dim} --repeat {args.repeat}`: `label_spreading` over the "
        "shard's n clips joined with L labelled ones (10 neighbours, 30 steps), synthetic clustered embeddings (no "
        "audio, no real speech), in this process; median of the repeats.", "",
        md_table(["shard clips n", "labelled L", "dim", "median s", "range s", "µs per shard clip"], table), "",
        machine_markdown(machine_info(), load), ""])
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
