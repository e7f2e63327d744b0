"""PEFT benchmark: adapters and adapter combinations against full fine-tuning and the frozen encoder.

    python -m bench.peft                          # 7 methods x 3 seeds, 3 epochs, 240-clip demo pool
    python -m bench.peft --methods frozen,lora --seeds 0 --epochs 1 --no-write     # a quick look

Every method fine-tunes the pretrained Whisper-tiny encoder (Smart Turn v3.2) on the same demo pool with the
same head, data order and epochs (``jobs.finetune``'s code, in process, one CPU), once per seed. Reported per
method: trainable / total parameters, dev and test UA (mean +- standard deviation over the seeds; test UA at
the best dev epoch), test CCC of arousal, valence and dominance, and seconds per training epoch. The model is
multi-task (``model.dimensions=[arousal, valence, dominance]``, 1 - CCC loss at weight 1 next to the
cross-entropy) and keeps the epoch with the best dev UA + mean CCC (``train.select_metric=ua_plus_ccc``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

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
    mean_sd,
    scratch,
    write_results,
)

RESULTS = RESULTS_DIR / "peft.md"

#: name -> model.adapter settings. Learning rates: the adapters' own (train.optim.lr), as configured by
#: default; full fine-tuning uses a 10x smaller encoder rate, as is usual for a pretrained encoder.
METHODS: dict[str, dict] = {
    "frozen": {"kind": "frozen"},
    "full": {"kind": "full"},
    "lora": {"kind": "lora", "r": 8, "alpha": 16},
    "ia3": {"kind": "ia3"},
    "bottleneck": {"kind": "frozen", "add": ["bottleneck"], "bottleneck_dim": 32},
    "lora+bottleneck": {"kind": "lora", "r": 8, "alpha": 16, "add": ["bottleneck"], "bottleneck_dim": 32},
    "lora+bottleneck+gating": {"kind": "lora", "r": 8, "alpha": 16, "add": ["bottleneck", "gating"],
                               "bottleneck_dim": 32},
}
FULL_LR_SCALE = 0.1
DIMENSIONS = ("arousal", "valence", "dominance")


def run_config(pool_dir: Path, out: Path, method: str, seed: int, epochs: int, encoder: str) -> dict:
    """The finetune job config (as a dict) of one method and seed."""
    adapter = dict(METHODS[method])
    train = {"optim": {"epochs": epochs, "batch_size": 16, "max_crop_seconds": 3.0, "seed": seed},
             "early_stopping_patience": 0, "select_metric": "ua_plus_ccc"}
    if method == "full":
        from ser_models.training import TrainConfig

        train["optim"]["lr"] = TrainConfig().optim.lr * FULL_LR_SCALE
    source = encoder_overrides(encoder)[0].split("=", 1)[1]
    return {"pool_dir": str(pool_dir), "output_dir": str(out),
            "model": {"encoder": {"source": source, "normalize_waveform": "auto"}, "adapter": adapter,
                      "head_hidden": 64, "pooling": "mean", "dimensions": list(DIMENSIONS)},
            "train": train, "scaling": {"backend": "in_process", "cpus_per_worker": 1}}


def run_one(cfg_dict: dict) -> dict:
    """Fine-tune once; the figures the tables need."""
    from ser_models.config import from_dict
    from ser_models.runs.finetune import FinetuneJobConfig, run_finetune

    scratch(cfg_dict["output_dir"])
    t0 = time.perf_counter()
    result = run_finetune(from_dict(FinetuneJobConfig, cfg_dict), verbose=False)
    m = result.metrics
    epochs = m["history"]
    best = epochs[m["best_epoch"] - 1]
    return {"dev_ua": float(best["dev_ua"]), "test_ua": float(m["test"]["ua"]),
            **{f"test_ccc_{d}": float(m["test"][f"ccc_{d}"]) for d in DIMENSIONS},
            "trainable": int(m["trainable_params"]), "total": int(m["total_params"]),
            "epoch_s": statistics.mean(h["train_seconds"] for h in epochs), "wall_s": time.perf_counter() - t0}


def summarise(runs: dict[str, list[dict]]) -> list[list]:
    """One table row per method: parameters, dev / test UA mean +- sd over seeds, seconds per epoch."""
    rows = []
    for method, rs in runs.items():
        r0 = rs[0]
        rows.append([method, f"{r0['trainable']:,}", f"{100 * r0['trainable'] / r0['total']:.2f} %",
                     mean_sd([r["dev_ua"] for r in rs]), mean_sd([r["test_ua"] for r in rs]),
                     " / ".join(f"{r['test_ua']:.3f}" for r in rs),
                     *(mean_sd([r[f"test_ccc_{d}"] for r in rs]) for d in DIMENSIONS),
                     f"{statistics.mean(r['epoch_s'] for r in rs):.1f}"])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--clips", type=int, default=240, help="demo corpus size (720 = make demo's pool)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {list(METHODS)}")
    parser.add_argument("--encoder", default="smart-turn", help="smart-turn (pretrained) or a tiny preset")
    parser.add_argument("--no-write", action="store_true", help="print, do not write bench/results/peft.md")
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {list(METHODS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    work = claim_workdir(args.workdir)
    info, load = machine_info(), LoadWindow()
    pool = ensure_pool(work / f"peft_pool_{args.clips}" / "pool", n=args.clips)
    init_ray(2)
    runs: dict[str, list[dict]] = {m: [] for m in methods}
    t0 = time.perf_counter()
    for seed in seeds:  # seeds outermost: an interrupted run still has every method at the first seeds
        for method in methods:
            r = run_one(run_config(pool, work / "peft_runs" / f"{method}_s{seed}", method, seed, args.epochs,
                                   args.encoder))
            runs[method].append(r)
            print(f"{method:<24} seed {seed}: dev UA {r['dev_ua']:.3f} test UA {r['test_ua']:.3f} "
                  f"({r['trainable']:,} trainable, {r['epoch_s']:.1f} s/epoch)", flush=True)
    load.close()
    table = md_table(["method", "trainable", "of total", "dev UA", "test UA", "test UA per seed",
                      *(f"test CCC {d}" for d in DIMENSIONS), "s / epoch"], summarise(runs))
    total = next(iter(runs.values()))[0]["total"]
    text = (f"# PEFT benchmark\n\n`python -m bench.peft --clips {args.clips} --epochs {args.epochs} "
            f"--seeds {args.seeds} --encoder {args.encoder}`: {len(methods)} methods x {len(seeds)} seeds in one "
            f"run, {time.perf_counter() - t0:.0f} s. Pretrained encoder ({args.encoder}), demo pool of "
            f"{args.clips} clips, in-process fits on 1 CPU, {args.epochs} epochs, batch 16, 3 s crops, head 64 "
            f"wide, mean pooling over a learned layer sum, multi-task with A/V/D (1 - CCC); full fine-tuning at "
            f"{FULL_LR_SCALE}x the adapter learning rate. Test metrics are taken at the best dev epoch (dev UA + "
            f"mean CCC); +- is the standard deviation over "
            f"seeds. Total parameters of the base model: {total:,}.\n\n"
            f"{table}\n\n{machine_markdown(info, load)}\n\n```json\n"
            f"{json.dumps({m: rs for m, rs in runs.items()}, indent=1)}\n```\n")
    print(text)
    if not args.no_write:
        print(f"wrote {write_results(RESULTS, text)}")


if __name__ == "__main__":
    main()
