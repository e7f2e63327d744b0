"""Adapter pre-training benchmark: does pre-training the WAP adapter on the unlabelled pool buy label efficiency?

    python -m bench.adapter_pretrain --pool-dir outputs/demo/pool --corpus "demo generator (720 clips)"
    python -m bench.adapter_pretrain --pool-dir /work/bench_data/espeak720/pool --corpus "espeak-ng (720 clips)" \
        --results bench/results/adapter_pretrain_espeak.md

Frozen pretrained Whisper-tiny (Smart Turn v3.2), every clip encoded once into the frame cache (and the pooled
cache for the shipped recipe). Per seed, a random labelled subset of the training split at each fraction (the
same clips for every variant), then:

- ``recipe``: the shipped small-label recipe (hidden state 1, pool-standardised means, linear head by L-BFGS,
  ``l2_c=auto``), the reference to beat;
- ``wap_scratch``: WAP-Transformer (random init; pool statistics set) + SAP + linear head, AdamW;
- ``wap_pretrained``: the same adapter pre-trained on the training split's unlabelled frames first;
- ``wap_frozen``: the pre-trained adapter kept fixed, SAP + head trained;
- ablations of the pre-training (at the ablation fractions): ``no_distill`` (frame and utterance
  self-distillation off), ``no_clusters`` (local attributes off), ``mean_pool`` (pre-trained adapter, mean
  pooling instead of SAP), ``no_wap`` (SAP over the learned layer sum of standardised frames: no adapter).

AdamW fits run a fixed schedule and keep the last epoch (no dev-based selection: a labelled dev set is what
a small budget does not have): ``max(10, ceil(300 / steps per epoch))`` epochs. Pre-training: 20 epochs on the
training split's frames (never dev or test), in process; its seconds give the cost per hour of pool audio.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.common import (
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    init_ray,
    machine_info,
    machine_markdown,
    md_table,
    write_results,
)

RESULTS = RESULTS_DIR / "adapter_pretrain.md"
MAIN = ["recipe", "wap_scratch", "wap_pretrained", "wap_frozen"]
ABLATIONS = ["no_distill", "no_clusters", "mean_pool", "no_wap"]
LABELS = ["neutral", "happy", "angry", "sad"]


def load_split(cache, pool, split: str):
    """A split's cached rows with labels as a ClipSet (the benchmark holds the 720-clip pool's frames)."""
    import pyarrow as pa

    from ser_models.data.clips import collect_clips
    from ser_models.scoring.feature_cache import model_inputs

    meta = pool.metadata(columns=["utt_id", "label"], split=split)
    ds = cache.dataset(targets=pa.Table.from_pandas(meta[["utt_id", "label"]], preserve_index=False))
    return collect_clips(ds.iter_batches(batch_size=256, batch_format="numpy"), LABELS,
                         inputs=model_inputs(cache)).sorted_by_id()


def subset(clips, fraction: float, seed: int):
    n = max(len(LABELS), int(round(fraction * len(clips))))
    if n >= len(clips):
        return clips
    rng = np.random.default_rng([seed, 7919])
    return clips.subset(np.sort(rng.choice(len(clips), n, replace=False)))


def pretrain(wap_cfg, stats, train, seed: int, out: Path, epochs: int, **weights):
    """Pre-train in process on ``train``'s frames; returns ``(checkpoint path, seconds, history)``."""
    import torch

    from ser_models.adapters.wap import save_wap
    from ser_models.pretraining.adapter_pretrain import AdapterPretrainObjective, pretrain_adapter
    from ser_models.pretraining.tapt_config import AdapterPretrainConfig

    optim = dataclasses.replace(AdapterPretrainConfig().optim, epochs=max(epochs, 1), seed=seed)
    cfg = AdapterPretrainConfig(optim=optim, **weights)  # scratch: built, never run
    torch.manual_seed(seed)
    obj = AdapterPretrainObjective(stats[0].shape[0], stats[0].shape[1], wap_cfg, cfg, *stats)
    t0 = time.perf_counter()
    state = pretrain_adapter(obj, train, log=lambda _: None) if epochs else None
    seconds = time.perf_counter() - t0
    path = save_wap(obj.student, str(out), {"epochs": epochs})
    return path, seconds, (state.history if state else [])


def fit_variant(model_cfg, train_cfg, train, test, seed: int) -> float:
    import torch

    from ser_models.models.model import EmotionModel
    from ser_models.training.fitting import evaluate, fit

    torch.manual_seed(seed)
    model = EmotionModel(model_cfg)
    counts = [int((train.labels == c).sum()) for c in range(len(LABELS))]
    if train_cfg.solver == "adamw":
        steps = math.ceil(len(train) / train_cfg.optim.batch_size)
        train_cfg = dataclasses.replace(
            train_cfg, optim=dataclasses.replace(train_cfg.optim, epochs=max(10, math.ceil(300 / steps))))
    fit(model, train, None, train_cfg, class_counts=counts, log=lambda _: None)
    return float(evaluate(model, test, train_cfg, torch.device("cpu"))["ua"])


def main(argv=None) -> Path | None:
    ap = argparse.ArgumentParser(prog="python -m bench.adapter_pretrain", description=__doc__.splitlines()[0])
    ap.add_argument("--pool-dir", default="outputs/demo/pool")
    ap.add_argument("--corpus", default="demo generator (720 clips)")
    ap.add_argument("--workdir", default="/tmp/ser_bench/adapter_pretrain")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.05, 0.10, 0.20, 1.0])
    ap.add_argument("--ablation-fractions", nargs="+", type=float, default=[0.20, 1.0])
    ap.add_argument("--ablation-seeds", nargs="+", type=int, default=None, help="run the ablations (their "
                    "pre-trainings and fits) for these seeds only (default: every seed)")
    ap.add_argument("--pretrain-epochs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2, help="torch threads (1 when two benchmarks share 2 cores)")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--report-only", action="store_true", help="write the results from the fits already recorded "
                    "under --workdir (records.jsonl, costs.jsonl) without running anything")
    args = ap.parse_args(argv)
    if args.report_only:
        return write_report(args)

    import torch

    from ser_models.adapters import AdapterConfig
    from ser_models.adapters.config import WapConfig
    from ser_models.data import Pool
    from ser_models.encoders import EncoderConfig, build_encoder
    from ser_models.encoders.smart_turn import cached_encoder
    from ser_models.encoders.standardizer import save_statistics
    from ser_models.models.model import ModelConfig
    from ser_models.pretraining.adapter_stage import frame_cache
    from ser_models.scoring.cache_keys import feature_cache_key
    from ser_models.scoring.feature_cache import FeatureCache
    from ser_models.training.config import OptimConfig, TrainConfig

    torch.set_num_threads(args.threads)
    load = LoadWindow()
    init_ray(2)
    work = claim_workdir(args.workdir) / Path(args.pool_dir).resolve().parent.name
    work.mkdir(parents=True, exist_ok=True)
    pool = Pool.open(args.pool_dir)
    enc = EncoderConfig(source=str(cached_encoder()))
    wap = WapConfig(enabled=True, depth=2, dim=128, heads=4, ff_dim=256, dropout=0.1)
    base = ModelConfig(encoder=enc, adapter=AdapterConfig(kind="frozen"), labels=LABELS, head_hidden=0,
                       head_dropout=0.2)
    t0 = time.perf_counter()
    frames_cache = frame_cache(pool, dataclasses.replace(base, pooling="attentive_stats", wap=wap), str(work / "cache"))
    encoder = build_encoder(enc)
    pooled_cache = FeatureCache(work / "cache", feature_cache_key(pool, encoder))
    pooled_cache.build(pool.dataset(None), base, encoder.num_layers)
    print(f"caches ready in {time.perf_counter() - t0:.0f}s")
    splits = {s: load_split(frames_cache, pool, s) for s in ("train", "test")}
    psplits = {s: load_split(pooled_cache, pool, s) for s in ("train", "test")}
    train_ids = splits["train"].ids
    audio_hours = float(pool.metadata(columns=["duration"], split="train")["duration"].sum()) / 3600
    fmean, fstd, fn = frames_cache.statistics(train_ids)
    pmean, pstd, pn = pooled_cache.statistics(train_ids)
    save_statistics(work / "pooled_stats.safetensors", pmean, pstd, pn)
    unlabelled = dataclasses.replace(splits["train"], labels=np.full(len(train_ids), -1))  # pre-training: no labels

    adamw = TrainConfig(optim=OptimConfig(batch_size=16, epochs=10), solver="adamw", lr_head=5e-4, early_stopping_patience=0)
    recipe_cfg = dataclasses.replace(base, featurizer_layer=1, feature_norm="pool", head_input_norm=False,
                                     feature_stats=str(work / "pooled_stats.safetensors"))
    lbfgs = TrainConfig(solver="lbfgs", l2_c="auto")
    # Every finished fit and pre-training is appended to a JSONL file: a rerun (after a kill) skips them.
    records, costs = _load_jsonl(work / "records.jsonl"), _load_jsonl(work / "costs.jsonl")
    done = {(r["seed"], r["fraction"], r["variant"]) for r in records}
    for seed in args.seeds:
        ckpt = {}
        for name, weights in (("full", {}), ("no_distill", {"frame_weight": 0.0, "utterance_weight": 0.0}),
                              ("no_clusters", {"cluster_weight": 0.0}), ("scratch", None)):
            epochs = 0 if weights is None else args.pretrain_epochs
            if name in ABLATIONS and args.ablation_seeds is not None and seed not in args.ablation_seeds:
                continue
            folder = work / f"wap_{name}_{seed}"
            if (folder / "wap.json").exists() and (not epochs or any(
                    c["variant"] == name and c["seed"] == seed for c in costs)):
                ckpt[name] = str(folder / "wap.safetensors")
                continue
            path, secs, hist = pretrain(wap, (fmean, fstd, fn), unlabelled, seed, folder, epochs, **(weights or {}))
            ckpt[name] = path
            if epochs:
                cost = {"variant": name, "seed": seed, "seconds": secs, "epochs": epochs,
                        "s_per_epoch_per_hour": secs / epochs / audio_hours,
                        "loss_first": hist[0]["loss"], "loss_last": hist[-1]["loss"],
                        "spread_last": hist[-1].get("spread"), "perplexity_last": hist[-1].get("cluster_perplexity")}
                costs.append(cost)
                _append_jsonl(work / "costs.jsonl", cost)
                print(f"seed {seed} pre-train {name}: {secs:.0f}s, loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}")
        wapped = dataclasses.replace(base, pooling="attentive_stats")
        variants = {
            "recipe": (recipe_cfg, lbfgs, True),
            "wap_scratch": (dataclasses.replace(wapped, wap=dataclasses.replace(wap, checkpoint=ckpt["scratch"])), adamw, False),
            "wap_pretrained": (dataclasses.replace(wapped, wap=dataclasses.replace(wap, checkpoint=ckpt["full"])), adamw, False),
            "wap_frozen": (dataclasses.replace(wapped, wap=dataclasses.replace(wap, checkpoint=ckpt["full"], freeze=True)),
                           adamw, False),
            "no_distill": (dataclasses.replace(wapped, wap=dataclasses.replace(wap, checkpoint=ckpt.get("no_distill"))),
                           adamw, False),
            "no_clusters": (dataclasses.replace(wapped, wap=dataclasses.replace(wap, checkpoint=ckpt.get("no_clusters"))),
                            adamw, False),
            "mean_pool": (dataclasses.replace(base, pooling="mean", wap=dataclasses.replace(wap, checkpoint=ckpt["full"])),
                          adamw, False),
            "no_wap": (dataclasses.replace(wapped, feature_norm="pool", feature_stats=_frame_stats(work, fmean, fstd, fn)),
                       adamw, False),
        }
        for fraction in args.fractions:
            for name, (mcfg, tcfg, pooled) in variants.items():
                skip_ablation = name in ABLATIONS and (fraction not in args.ablation_fractions or (
                    args.ablation_seeds is not None and seed not in args.ablation_seeds))
                if skip_ablation or (seed, fraction, name) in done:
                    continue
                src = psplits if pooled else splits
                t1 = time.perf_counter()
                ua = fit_variant(mcfg, tcfg, subset(src["train"], fraction, seed), src["test"], seed)
                records.append({"seed": seed, "fraction": fraction, "variant": name, "ua": ua,
                                "seconds": time.perf_counter() - t1})
                _append_jsonl(work / "records.jsonl", records[-1])
                print(f"seed {seed} {fraction:.0%} {name}: UA {ua:.3f} ({time.perf_counter() - t1:.0f}s)")
    return write_report(args, load)


def write_report(args, load: LoadWindow | None = None) -> Path:
    """The results file from the recorded fits and pre-trainings of ``--workdir``."""
    from ser_models.data import Pool

    work = claim_workdir(args.workdir) / Path(args.pool_dir).resolve().parent.name
    meta = Pool.open(args.pool_dir).metadata(columns=["duration"], split="train")
    records, costs = pd.DataFrame(_load_jsonl(work / "records.jsonl")), pd.DataFrame(_load_jsonl(work / "costs.jsonl"))
    text = report(records, costs, args, float(meta["duration"].sum()) / 3600, len(meta),
                  machine_markdown(machine_info(), load or LoadWindow().close()))
    return write_results(args.results, text)


def _load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(row) + "\n")


def _frame_stats(work: Path, mean, std, n) -> str:
    from ser_models.encoders.standardizer import save_statistics

    path = work / "frame_stats.safetensors"
    save_statistics(path, mean, std, n)
    return str(path)


def report(frame: pd.DataFrame, costs: pd.DataFrame, args, hours: float, clips: int, machine: str) -> str:
    """The results markdown: UA mean +- sd per variant and fraction, paired differences, ratios, costs."""
    rows = []
    full = frame[frame.fraction == 1.0].groupby("variant").ua.mean()
    for variant in [*MAIN, *ABLATIONS]:
        cells = [variant]
        for fraction in args.fractions:
            v = frame[(frame.variant == variant) & (frame.fraction == fraction)].ua
            cells.append("-" if not len(v) else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1
                         else f"{v.mean():.3f} (1 seed)")
        rows.append(cells)
    table = md_table(["variant", *[f"{f:.0%}" for f in args.fractions]], rows)
    diffs = []
    for a, b in (("wap_pretrained", "wap_scratch"), ("wap_pretrained", "recipe"), ("wap_frozen", "recipe"),
                 ("wap_pretrained", "no_distill"), ("wap_pretrained", "no_clusters"),
                 ("wap_pretrained", "mean_pool"), ("wap_pretrained", "no_wap")):
        cells = [f"{a} - {b}"]
        for fraction in args.fractions:
            x = frame[(frame.variant == a) & (frame.fraction == fraction)].set_index("seed").ua
            y = frame[(frame.variant == b) & (frame.fraction == fraction)].set_index("seed").ua
            d = (x - y).dropna() * 100
            cells.append("-" if not len(d) else f"{d.mean():+.1f} ± {d.std(ddof=1):.1f} (n={len(d)})" if len(d) > 1
                         else f"{d.mean():+.1f} (1 seed)")
        diffs.append(cells)
    ratio_rows = []
    for variant in MAIN:
        if variant in full and 0.2 in args.fractions:
            v = frame[(frame.variant == variant) & (frame.fraction == 0.2)].ua.mean()
            ratio_rows.append([variant, f"{v / full[variant]:.2f}x of its own all-label UA",
                               f"{v / full.get('recipe', np.nan):.2f}x of the recipe's all-label UA"])
    cost = costs.groupby("variant").agg(seconds=("seconds", "mean"), per=("s_per_epoch_per_hour", "mean"),
                                        first=("loss_first", "mean"), last=("loss_last", "mean"),
                                        spread=("spread_last", "mean"), ppl=("perplexity_last", "mean"))
    cost_rows = [[v, f"{r.seconds:.0f}", f"{r.per:.0f}", f"{r.first:.3f} -> {r.last:.3f}", f"{r.spread:.3f}",
                  f"{r.ppl:.1f}"] for v, r in cost.iterrows()]
    return "\n\n".join([
        f"# WAP adapter pre-trained on the unlabelled pool ({args.corpus})",
        f"`python -m bench.adapter_pretrain --pool-dir {args.pool_dir} --corpus \"{args.corpus}\"` "
        f"(seeds {sorted(frame.seed.unique().tolist())}; {clips} training clips, {hours:.2f} h; test UA, chance 0.25; "
        "ablations at the fractions shown, seeds as counted).",
        "## Test UA (mean ± sd over seeds)", table,
        "## Paired differences (UA points, mean ± sd over seeds)", md_table(["pair", *[f"{f:.0%}" for f in args.fractions]], diffs),
        "## 20 % of the labels against all of them", md_table(["variant", "own", "recipe"], ratio_rows),
        "## Pre-training loss and collapse statistics (last epoch; the seconds were taken while two benchmarks "
        "shared the 2 cores: the quiet cost per hour of audio is in BENCHMARKS.md, \"Adapter pre-trained on the unlabelled pool\")",
        md_table(["pre-training", "seconds", "s per epoch per hour of audio", "loss", "teacher spread",
                  "cluster perplexity"], cost_rows),
        machine])


if __name__ == "__main__":
    main()
