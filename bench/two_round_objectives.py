"""Selection over shards against the whole-pool strategy: what k-means gives up in two rounds, and BADGE's picks.

    python -m bench.two_round_objectives                       # after bench.round_scale has run at 100,000
    python -m bench.round_scale --sizes 100000 --dims 384      # makes the scores it reads

The sharded round runs k-means in two rounds (each shard picks among its own clips, then the strategy runs again
on the union of the shards' picks), which is not the whole-pool strategy; BADGE draws pick by pick over every
shard, which is. This benchmark measures both on one scoring pass of ``bench.round_scale`` (synthetic clustered
features, a head trained on 1,000 labelled clips: no audio, no real speech): the gathered round's
``scores.parquet`` is cut into shards of ``--rows-per-shard`` clips in id order (as the scoring pass writes
them), and both paths select B = 1,000 clips from the same scores, for each seed:

* **k-means**: the mean squared distance of a clip to its nearest pick (the picks as centres), in the head's
  embedding space;
* **BADGE**: the k-means++ potential of its gradient embeddings ``g_i = a_i h_i^T`` (the mean squared distance
  of a clip's gradient embedding to the nearest pick's), which BADGE's D^2 sampling seeds against.

Lower is better for both; the ratio is sharded / gathered, and "same picks" says whether the sharded path picked
the gathered clips in the gathered order. With ``--ray`` the shards are worked on by Ray (tasks for k-means,
actors holding the shards for BADGE) on a local cluster of this machine's CPUs, so the times include Ray's;
without it, in this process. k-center's objective is in ``round_scale.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
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
RESULTS = REPO / "bench" / "results" / "two_round_objectives.md"
SOURCE = REPO / "outputs" / "bench_round_scale"
BATCH = 1000
_CHUNK = 8192


def kmeans_cost(emb: np.ndarray, picks: np.ndarray) -> float:
    """Mean over clips of the squared distance to the nearest of ``picks`` (row positions) in ``emb`` [N, E]."""
    import faiss

    index = faiss.IndexFlatL2(emb.shape[1])
    index.add(np.ascontiguousarray(emb[picks], np.float32))
    return float(index.search(np.ascontiguousarray(emb, np.float32), 1)[0].mean())


def badge_potential(probs: np.ndarray, emb: np.ndarray, picks: np.ndarray) -> float:
    """Mean over clips of ``min_c ||g_i - g_c||^2`` for the gradient embeddings ``g = a h^T`` (``a = p -
    onehot(argmax p)``), from ``||g_i - g_c||^2 = |a_i|^2 |h_i|^2 + |a_c|^2 |h_c|^2 - 2 (a_i.a_c)(h_i.h_c)``."""
    a = probs.astype(np.float64).copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1.0
    h = emb.astype(np.float64)
    sq = np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", h, h)
    ac, hc, sqc = a[picks], h[picks], sq[picks]
    total = 0.0
    for start in range(0, len(a), _CHUNK):
        rows = slice(start, start + _CHUNK)
        d = sq[rows, None] + sqc[None, :] - 2.0 * (a[rows] @ ac.T) * (h[rows] @ hc.T)
        total += float(np.maximum(d.min(1), 0.0).sum())
    return total / len(a)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="the bench.round_scale pool size to read")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--rows-per-shard", type=int, default=65536)
    parser.add_argument("--source", default=str(SOURCE), help="bench.round_scale's --workdir")
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench_two_round"))
    parser.add_argument("--ray", action="store_true", help="work on the shards with Ray (a local cluster)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    if args.ray:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")

    from ser_models.active.config import StrategyConfig
    from ser_models.active.sharded_selection import shard_candidates
    from ser_models.active.strategies import build_strategy
    from ser_models.io import read_parquet
    from ser_models.scoring.scorer import Scores

    source = Path(args.source)
    scores_path = source / f"round_{args.n}_{args.dim}_gathered" / "scores.parquet"
    labelled_path = source / f"n{args.n}_d{args.dim}" / "labelled.parquet"
    if not scores_path.exists() or not labelled_path.exists():
        raise SystemExit(f"no gathered scores at {scores_path}: run `python -m bench.round_scale --sizes {args.n} "
                         f"--dims {args.dim}` first")
    workdir = claim_workdir(args.workdir, {"--source": str(source)})
    load = LoadWindow()
    scores = Scores.load(str(scores_path))
    ledger = set(read_parquet(str(labelled_path)).column("utt_id").to_pylist())
    folder = scratch(workdir / "scores")
    starts = range(0, len(scores.ids), args.rows_per_shard)
    shards = dataclasses.replace(write_score_pass(
        (scores.take(np.arange(a, min(a + args.rows_per_shard, len(scores.ids)))) for a in starts), folder),
        in_process=not args.ray)
    position = {u: i for i, u in enumerate(scores.ids.astype(str).tolist())}
    objective = {"kmeans": lambda p: kmeans_cost(scores.embedding, p),
                 "badge": lambda p: badge_potential(scores.probs, scores.embedding, p)}
    table, ratios = [], {name: [] for name in objective}
    for name in objective:
        for seed in range(args.seeds):
            got = {}
            for path in ("gathered", "sharded"):
                strategy = build_strategy(StrategyConfig(name))
                t0 = time.perf_counter()
                pool = scores if path == "gathered" else shard_candidates(shards, strategy, BATCH, ledger, seed)
                picks = strategy.query(pool.as_scored_pool(), ledger, BATCH, seed)
                secs = time.perf_counter() - t0
                got[path] = (objective[name](np.array([position[u] for u in picks])), secs, picks)
                print(f"{name} seed {seed} {path}: objective {got[path][0]:.4f} in {secs:.1f}s", flush=True)
            ratio = got["sharded"][0] / got["gathered"][0]
            ratios[name].append(ratio)
            same = "yes" if got["sharded"][2] == got["gathered"][2] else "no"
            table.append([name, seed, f"{got['gathered'][0]:.4f}", f"{got['sharded'][0]:.4f}", f"{ratio:.3f}", same,
                          f"{got['gathered'][1]:.1f}", f"{got['sharded'][1]:.1f}"])
    load.close()
    summary = [[name, f"{np.mean(r):.3f}", f"{min(r):.3f}-{max(r):.3f}"] for name, r in ratios.items()]
    text = "\n".join([
        "# Selection over shards against the whole-pool strategy: k-means (two rounds) and BADGE (pick by pick)", "",
        f"`python -m bench.two_round_objectives --n {args.n} --dim {args.dim} --seeds {args.seeds} --rows-per-shard "
        f"{args.rows_per_shard}{' --ray' if args.ray else ''}`: one scoring pass "
        f"of `bench.round_scale` ({args.n:,} synthetic clips, {args.dim}-d, 1,000 labelled; no audio, no real "
        f"speech) cut into {len(shards.files)} shards of up to {args.rows_per_shard:,} clips; B = {BATCH:,} picks; "
        f"{'shards worked on by Ray (tasks, and actors for BADGE) on a local cluster of this machine' if args.ray else 'shards worked on in this process'}. "
        "Objectives (lower is better): k-means, the mean squared distance of a clip to its nearest pick in the "
        "embedding space; BADGE, the mean k-means++ potential of the gradient embeddings against the picks. "
        "Same picks: the sharded path picked the gathered clips in the gathered order.", "",
        md_table(["strategy", "seed", "gathered", "sharded", "ratio", "same picks", "gathered s", "sharded s"],
                 table), "",
        md_table(["strategy", "mean ratio", "range"], summary), "",
        machine_markdown(machine_info(), load), ""])
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
