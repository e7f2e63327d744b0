"""Round scale: one active-learning round's decision over N synthetic clips, gathered against sharded.

    python -m bench.round_scale                       # N = 100k, 1M, 10M at 384-d; 100k, 1M at 768-d
    python -m bench.round_scale --sizes 100000 --dims 384 --no-write   # a quick look (prints only)

Builds, without audio, a frozen-encoder feature cache of N clips in the platform's own layout
(:class:`~ser_models.scoring.feature_cache.FeatureCache`: ``meta.json`` plus Parquet shards of per-clip
float32 features) over a random 1-layer wav2vec2 encoder of width E saved under the workdir. The features
are clustered (64 centres, so diversity matters) and the classes follow a skewed prior (neutral 50 %, happy
20 %, sad 15 %, angry 15 %); 1,000 clips are labelled. Then, in a fresh process with its own local Ray
(2 CPUs), one round, stage by stage:

* **train**: the head on the 1,000 labelled clips (``train_model``, in process, from the cache);
* **score**: every clip with 8 MC-dropout passes (one Ray Data actor), gathered into the driver and kept as
  the round's ``scores.parquet`` (``score_dataset``, ``Scores.save``: today's round) or written as shards where
  it is made (``score_to_shards``);
* **select**: B = 1,000 clips by ``informative_diverse`` (entropy prefilter x4, then k-center), in the driver
  or shard by shard (:func:`~ser_models.active.sharded_selection.shard_candidates`);
* **write**: ``to_label.csv`` of the picks with the model's guess.

Peak memory: the driver's own (VmHWM) and the whole Ray job's (the largest summed PSS of the benchmark
process and every process under it, sampled every 0.25 s: ``bench.scale.PeakPss``). ``--kcenter`` also
compares k-center over the whole pool at each N: the sharded two-round greedy's objective (largest distance
of a clip to its nearest centre) against the gathered greedy's.

The round here is the decision (train, score, select, write); the loop's run-level bookkeeping of the pool
(its clip ids, durations and evaluation draws) is not in it: ``docs/cost.md`` says what that costs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
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
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "round_scale.md"
LABELS = ["neutral", "happy", "sad", "angry"]
PRIOR = [0.5, 0.2, 0.15, 0.15]
CENTRES = 64
LABELLED = 1000
BATCH = 1000
MC = 8
ROWS_PER_FILE = 65536


def _encoder(workdir: Path, dim: int) -> Path:
    """A random 1-layer wav2vec2 of width ``dim`` saved under ``workdir`` (the model's encoder: it never runs
    here, the head reads the cache)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    path = workdir / f"encoder_{dim}"
    if (path / "config.json").exists():
        return path
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(hidden_size=dim, num_hidden_layers=1, num_attention_heads=4, intermediate_size=2 * dim,
                         conv_dim=(32, 32), conv_stride=(5, 4), conv_kernel=(10, 4), num_feat_extract_layers=2,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, layerdrop=0.0)
    Wav2Vec2Model(cfg).save_pretrained(path)
    return path


def model_config(encoder: Path):
    from ser_models.testing import tiny_model_config

    # head_hidden = E: the head's embedding (what k-center and the score shards carry) is E wide, as in the
    # issue's measure of 3.5 GiB per million clips at 384-d.
    cfg = tiny_model_config(str(encoder), adapter="frozen", labels=LABELS, head_hidden=int(encoder.name.split("_")[-1]),
                            head_dropout=0.2)
    cfg.featurizer_layer = 0
    return cfg


def build(workdir: Path, n: int, dim: int) -> dict:
    """The cache of ``n`` synthetic clips of width ``dim`` and the labelled set (made once per size)."""
    import pyarrow as pa

    from ser_models.io import write_json_atomic, write_parquet_atomic
    from ser_models.scoring.feature_cache import FeatureCache

    root = workdir / f"n{n}_d{dim}"
    cache = FeatureCache(root / "cache", f"roundscale{n:012d}{dim:04d}", states=1)
    labelled = root / "labelled.parquet"
    info = {"root": str(root), "cache_root": str(root / "cache"), "fingerprint": cache.fingerprint,
            "labelled": str(labelled), "n": n, "dim": dim}
    if cache.ready and labelled.exists():
        return info
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(CENTRES, dim)).astype(np.float32) * 3
    # Each cluster leans to one class: diversity finds classes, but never perfectly.
    lean = rng.choice(len(LABELS), size=CENTRES, p=PRIOR)
    shards = "features-0"
    picked = np.sort(rng.choice(n, LABELLED, replace=False))
    rows_l, labels_l = [], []
    t0 = time.perf_counter()
    for f, start in enumerate(range(0, n, ROWS_PER_FILE)):
        m = min(ROWS_PER_FILE, n - start)
        idx = np.arange(start, start + m)
        cluster = rng.integers(CENTRES, size=m)
        x = centres[cluster] + rng.normal(size=(m, dim)).astype(np.float32)
        ids = np.char.add("rec", np.char.zfill((idx // 16).astype(str), 7))
        ids = np.char.add(np.char.add(ids, "_seg"), np.char.zfill((idx % 16).astype(str), 2))
        table = pa.table({"utt_id": pa.array(ids.tolist(), pa.string()),
                          "features": pa.array([r.tobytes() for r in x], pa.binary())})
        write_parquet_atomic(str(cache.dir / shards / f"part-{f:05d}.parquet"), table)
        here = picked[(picked >= start) & (picked < start + m)] - start
        if len(here):
            own = rng.random(len(here)) < 0.7
            y = np.where(own, lean[cluster[here]], rng.choice(len(LABELS), size=len(here), p=PRIOR))
            rows_l += ids[here].tolist()
            labels_l += [LABELS[i] for i in y]
        if f % 16 == 0:
            print(f"  build n={n:,} d={dim}: {start + m:,} clips, {time.perf_counter() - t0:.0f}s", flush=True)
    write_json_atomic(str(cache.dir / "meta.json"), {"num_layers": 1, "hidden_size": dim, "clips": n,
                                                     "shards": [shards]})
    write_parquet_atomic(str(labelled), pa.table({"utt_id": rows_l, "label": labels_l}))
    return info


def _vmhwm() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def run_round(info: dict, path: str, workdir: str, kcenter: bool) -> dict:
    """One round on one size, in this process (called through ``--case``)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from bench.common import init_ray
    from bench.scale import PeakPss
    from ser_models.active.config import StrategyConfig
    from ser_models.active.sharded_selection import shard_candidates
    from ser_models.active.strategies import build_strategy
    from ser_models.io import read_parquet
    from ser_models.scoring.feature_cache import FeatureCache, model_inputs
    from ser_models.scoring.score_shards import score_to_shards
    from ser_models.scoring.scorer import ScorerConfig, score_dataset
    from ser_models.training import train_model
    from ser_models.training.config import ScalingConfig, TrainConfig

    init_ray(2)
    out = Path(workdir) / f"round_{info['n']}_{info['dim']}_{path}"
    cfg = model_config(Path(workdir) / f"encoder_{info['dim']}")
    cache = FeatureCache(info["cache_root"], info["fingerprint"], states=1)
    inputs = model_inputs(cache, cfg)
    labelled = read_parquet(info["labelled"])
    ledger_ids = set(labelled.column("utt_id").to_pylist())
    scorer = ScorerConfig(mc_samples=MC, batch_size=4096, num_actors=1, num_cpus=1.0, threads=1)
    train = TrainConfig()
    train.optim.epochs = 10
    seconds, mem = {}, {}
    with PeakPss() as job:
        t0 = time.perf_counter()
        counts = [int(pc.sum(pc.equal(labelled.column("label"), name)).as_py()) for name in LABELS]
        result = train_model(cfg, train, ScalingConfig(backend="in_process"),
                             {"train": cache.dataset(targets=labelled)}, str(out / "train"), class_counts=counts,
                             inputs=inputs, train_rows=labelled.num_rows, verbose=False, plots=False)
        seconds["train"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if path == "gathered":  # today's round in full: gather, then keep the round's scores.parquet
            scores = score_dataset(cache.dataset(), result.checkpoint_dir, scorer, inputs=inputs, seed=1,
                                   total=info["n"])
            scores.save(str(out / "scores.parquet"))
        else:
            scores = score_to_shards(cache.dataset(), result.checkpoint_dir, scorer, str(out / "scores"),
                                     inputs=inputs, seed=1, total=info["n"])
        seconds["score"] = time.perf_counter() - t0
        mem["after_score"] = _vmhwm()
        t0 = time.perf_counter()
        strategy = build_strategy(StrategyConfig("informative_diverse"))
        if path == "sharded":
            scores = shard_candidates(scores, strategy, BATCH, ledger_ids, 7)
        picks = strategy.query(scores.as_scored_pool(), ledger_ids, BATCH, 7)
        seconds["select"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        at = pc.index_in(pa.array(picks, pa.string()), value_set=pa.array(scores.ids.astype(str), pa.string()))
        guess = np.asarray(LABELS)[scores.probs[at.to_numpy()].argmax(1)]
        (out / "to_label.csv").parent.mkdir(parents=True, exist_ok=True)
        with open(out / "to_label.csv", "w") as f:
            f.write("utt_id,model_guess,label\n" + "".join(f"{u},{g},\n" for u, g in zip(picks, guess)))
        seconds["write"] = time.perf_counter() - t0
        mem["driver_peak"] = _vmhwm()  # the round's peak, before the k-center comparison below
        round_job_peak = job.peak
        objective = None
        if kcenter:
            objective = _kcenter_objective(scores if path == "gathered" else None, out, ledger_ids, path)
    stored = sum(f.stat().st_size for f in out.rglob("*") if f.is_file() and "scores" in f.relative_to(out).parts[0]
                 and f.suffix in (".parquet", ".embedding"))
    return {"n": info["n"], "dim": info["dim"], "path": path, "seconds": seconds, "scores_bytes": stored,
            "round_s": sum(seconds.values()), "driver_peak_gib": mem["driver_peak"] / 2**30,
            "driver_after_score_gib": mem["after_score"] / 2**30, "job_peak_gib": round_job_peak / 2**30,
            "with_kcenter_driver_peak_gib": _vmhwm() / 2**30, "with_kcenter_job_peak_gib": job.peak / 2**30,
            "job_breakdown_mib": job.breakdown(), "picks": len(picks), "kcenter": objective}


def _kcenter_objective(scores, out: Path, ledger_ids: set[str], path: str) -> dict:
    """k-center over the whole pool: picks and the objective (largest distance of a clip to its nearest
    centre), computed shard by shard for the sharded path."""
    import faiss

    from ser_models.active.config import StrategyConfig
    from ser_models.active.sharded_selection import shard_candidates
    from ser_models.active.strategies import build_strategy
    from ser_models.scoring.score_shards import ScoreShards, read_shard

    strategy = build_strategy(StrategyConfig("kcenter"))
    t0 = time.perf_counter()
    if path == "gathered":
        picks = strategy.query(scores.as_scored_pool(), ledger_ids, BATCH, 3)
        centres_of = scores
    else:
        shards = ScoreShards.open(str(out / "scores"))
        mini = shard_candidates(shards, strategy, BATCH, ledger_ids, 3)
        picks = strategy.query(mini.as_scored_pool(), ledger_ids, BATCH, 3)
        centres_of = mini
    secs = time.perf_counter() - t0
    chosen = set(picks) | ledger_ids
    keep = np.isin(centres_of.ids.astype(str), list(chosen))
    centres = np.ascontiguousarray(centres_of.embedding[keep], np.float32)
    index = faiss.IndexFlatL2(centres.shape[1])
    index.add(centres)
    if path == "gathered":
        worst = float(index.search(np.ascontiguousarray(scores.embedding, np.float32), 1)[0].max())
    else:
        worst = 0.0
        for p in shards.paths:
            emb = np.ascontiguousarray(read_shard(p, ["embedding"]).embedding, np.float32)
            worst = max(worst, float(index.search(emb, 1)[0].max()))
    return {"objective": float(np.sqrt(worst)), "seconds": secs}


def _case(args) -> None:
    info = json.loads(args.case)
    print("RESULT " + json.dumps(run_round(info, args.path, args.workdir, args.kcenter)), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 768])
    parser.add_argument("--max-768", type=int, default=1_000_000, help="largest N at 768-d (disk)")
    parser.add_argument("--gathered-up-to", type=int, default=1_000_000,
                        help="largest N the gathered path runs at (above: out of memory on 24 GiB, extrapolated)")
    parser.add_argument("--kcenter", action="store_true", help="also compare k-center over the whole pool")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each size's pair of rounds this many times, the order alternating (gathered "
                             "first, then sharded first); the report takes each path's median")
    parser.add_argument("--workdir", default=str(REPO / "outputs" / "bench_round_scale"))
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        return _case(args)
    workdir = claim_workdir(args.workdir)
    load = LoadWindow()
    rows = []
    for dim in args.dims:
        for n in args.sizes:
            if dim != 384 and n > args.max_768:
                continue
            _encoder(workdir, dim)
            info = build(workdir, n, dim)
            order = [(k, p) for k in range(args.repeat)
                     for p in (("gathered", "sharded") if k % 2 == 0 else ("sharded", "gathered"))]
            for rep, path in order:
                if path == "gathered" and n > args.gathered_up_to:
                    continue
                # A round folder left by an earlier run would be resumed (its checkpoint, its committed score
                # shards), and the round timed as nearly free: every case starts from none.
                scratch(workdir / f"round_{n}_{dim}_{path}")
                env = {**os.environ, "PYTHONPATH": str(REPO)}
                proc = subprocess.run([sys.executable, "-m", "bench.round_scale", "--case", json.dumps(info),
                                       "--path", path, "--workdir", str(workdir),
                                       *(["--kcenter"] if args.kcenter and n <= args.gathered_up_to and not rep
                                         else [])],
                                      cwd=REPO, env=env, capture_output=True, text=True)
                found = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode or not found:
                    print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
                    rows.append({"n": n, "dim": dim, "path": path, "rep": rep, "failed": proc.returncode})
                    continue
                row = {**json.loads(found[-1][7:]), "rep": rep}
                rows.append(row)
                print(json.dumps(row), flush=True)
    load.close()
    text = report(rows, machine_info(), load)
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)
        (RESULTS.with_suffix(".json")).write_text(json.dumps(rows, indent=1))


def medians(rows: list[dict]) -> dict:
    """``(n, dim, path) -> row``: one row per case, or for a repeated case each stage's and the round's median
    seconds and the largest peaks."""
    cases: dict = {}
    for r in rows:
        if "failed" not in r:
            cases.setdefault((r["n"], r["dim"], r["path"]), []).append(r)
    by = {}
    for key, rs in cases.items():
        by[key] = {**rs[0], "repeats": len(rs), "kcenter": next((r["kcenter"] for r in rs if r.get("kcenter")), None),
                   "seconds": {k: float(np.median([r["seconds"][k] for r in rs])) for k in rs[0]["seconds"]},
                   "round_s": float(np.median([r["round_s"] for r in rs])),
                   "driver_peak_gib": max(r["driver_peak_gib"] for r in rs),
                   "job_peak_gib": max(r["job_peak_gib"] for r in rs)}
    return by


def report(rows: list[dict], info: dict, load) -> str:
    table = []
    repeated = any(r.get("rep") for r in rows)
    for r in rows:
        first = [f"{r['n']:,}", r["dim"], r["path"], *([r.get("rep", 0) + 1] if repeated else [])]
        if "failed" in r:
            table.append([*first, f"failed (exit {r['failed']})", "", "", "", "", "", ""])
            continue
        s = r["seconds"]
        table.append([*first, f"{s['train']:.1f}", f"{s['score']:.1f}", f"{s['select']:.1f}", f"{s['write']:.2f}",
                      f"{r['round_s']:.1f}", f"{r['driver_peak_gib']:.2f}", f"{r['job_peak_gib']:.2f}"])
    out = ["# One round's decision at scale: gathered against sharded", "",
           "Synthetic features (no audio, no real speech): `python -m bench.round_scale`. "
           "Seconds per stage; peak memory in GiB.", "",
           md_table(["clips", "E", "path", *(["repeat"] if repeated else []), "train s", "score s", "select s",
                     "write s", "round s", "driver peak", "Ray job peak (PSS)"], table), ""]
    ratios = []
    by = medians(rows)
    paired = {(r["n"], r["dim"], r["path"], r.get("rep", 0)): r for r in rows if "failed" not in r}
    for (n, dim, path), r in sorted(by.items()):
        g = by.get((n, dim, "gathered"))
        if path == "sharded" and g:
            reps = sorted({k for (n2, d2, _, k) in paired if (n2, d2) == (n, dim)})
            each = [paired[(n, dim, "sharded", k)]["round_s"] / paired[(n, dim, "gathered", k)]["round_s"]
                    for k in reps if (n, dim, "gathered", k) in paired and (n, dim, "sharded", k) in paired]
            ratios.append([f"{n:,}", dim, f"{r['round_s'] / g['round_s']:.2f}",
                           f"{r['driver_peak_gib'] / g['driver_peak_gib']:.2f}",
                           *([", ".join(f"{x:.2f}" for x in each)] if repeated else [])])
    if ratios:
        out += ["Sharded against gathered, the same run" + (" (each path's median round; and each repeat's pair)"
                                                            if repeated else "") + ":", "",
                md_table(["clips", "E", "round time ratio", "driver peak ratio",
                          *(["ratio per repeat"] if repeated else [])], ratios), ""]
    kc = [[f"{n:,}", dim, f"{by[(n, dim, 'gathered')]['kcenter']['objective']:.3f}",
           f"{r['kcenter']['objective']:.3f}",
           f"{r['kcenter']['objective'] / by[(n, dim, 'gathered')]['kcenter']['objective']:.3f}"]
          for (n, dim, path), r in sorted(by.items())
          if path == "sharded" and r.get("kcenter") and by.get((n, dim, "gathered"), {}).get("kcenter")]
    if kc:
        out += ["k-center over the whole pool (B = 1,000 picks, 1,000 labelled centres): the largest distance of "
                "a clip to its nearest centre.", "",
                md_table(["clips", "E", "gathered greedy", "sharded two-round", "ratio"], kc), ""]
    out += targets(by)
    out += [machine_markdown(info, load), ""] if info is not None else []
    return "\n".join(out)


def targets(by: dict) -> list[str]:
    """The benchmark's four targets, each with what this run measured (a target the run has no rows for is
    left out)."""
    lines = []
    big, one, small = by.get((10_000_000, 384, "sharded")), by.get((1_000_000, 384, "sharded")), None
    if big:
        ok = big["driver_peak_gib"] <= 1.5 and big["job_peak_gib"] <= 12
        lines.append(f"- Driver peak at 10,000,000 clips, 384-d, at most 1.5 GiB, the whole Ray job within 12 GiB: "
                     f"driver {big['driver_peak_gib']:.2f} GiB, job {big['job_peak_gib']:.2f} GiB "
                     f"({'met' if ok else 'not met'}).")
    if big and one:
        ratio = big["round_s"] / one["round_s"]
        lines.append(f"- Round time at 10,000,000 at most 12x the round time at 1,000,000: {ratio:.2f}x "
                     f"({'met' if ratio <= 12 else 'not met'}).")
    for n in (100_000, 1_000_000):
        small, gathered = by.get((n, 384, "sharded")), by.get((n, 384, "gathered"))
        if small and gathered:
            ratio = small["round_s"] / gathered["round_s"]
            lines.append(f"- At {n:,} clips the sharded round no slower than the gathered one: ratio {ratio:.2f} "
                         f"({'met' if ratio <= 1.0 else 'not met'}).")
    kc = [(n, r) for (n, dim, path), r in by.items() if path == "sharded" and dim == 384 and n == 1_000_000
          and r.get("kcenter") and by.get((n, dim, "gathered"), {}).get("kcenter")]
    for n, r in kc:
        ratio = r["kcenter"]["objective"] / by[(n, 384, "gathered")]["kcenter"]["objective"]
        lines.append(f"- k-center over the whole pool at 1,000,000 clips: the sharded objective within 1.25x of the "
                     f"gathered greedy: {ratio:.3f}x ({'met' if ratio <= 1.25 else 'not met'}).")
    return ["Targets:", "", *lines, ""] if lines else []


if __name__ == "__main__":
    main()
