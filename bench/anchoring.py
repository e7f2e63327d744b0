"""Cross-lingual layer anchoring against no anchoring, on the demo pool's two languages (en -> xx).

    python -m bench.anchoring                    # 4 variants x 2 seeds, 3 epochs, pretrained Whisper-tiny + LoRA
    python -m bench.anchoring --variants none,single-1e4,group-1e4 --results bench/results/anchoring_1e4.md
    python -m bench.anchoring --seeds 0 --epochs 1 --variants none,single --no-write          # a quick look

Per seed, ``jobs.anchor`` in process on the pretrained Whisper-tiny encoder (Smart Turn v3.2) with a LoRA
adapter (r 8) and a 4-class head: labelled English clips train, unlabelled clips of the second language are
aligned at the anchor layers (CORAL, weight 1e5), the epoch is picked on the target language's dev clips, and
UA is reported on both languages' test clips. Variants: ``none`` (CORAL weight 0: source-only training, the
baseline), ``single`` (layer 2), ``group`` (layers 2-3 averaged, LAM-GL), ``auto`` (the most similar layer
by class-matched CKA, chosen before training); ``single-1e4`` and ``group-1e4`` the same at CORAL weight 1e4.
Mean +- standard deviation over seeds.
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

RESULTS = RESULTS_DIR / "anchoring.md"
VARIANTS = {
    "none": {"weight": 0.0},
    "single": {"layers": [2]},
    "group": {"layers": [2], "group_size": 2},
    "auto": {"auto": "most_similar", "top_k": 1},
    # a tenth of the CORAL weight
    "single-1e4": {"layers": [2], "weight": 1e4},
    "group-1e4": {"layers": [2], "group_size": 2, "weight": 1e4},
}


def job_config(pool: Path, out: Path, seed: int, epochs: int, encoder: str, variant: str) -> dict:
    """The ``jobs.anchor`` config (as a dict) of one variant and seed."""
    source_path = encoder_overrides(encoder)[0].split("=", 1)[1]
    return {"pool_dir": str(pool), "output_dir": str(out), "group_column": "language", "source": "en",
            "target": "xx", "dev_on": "target",
            "model": {"encoder": {"source": source_path, "normalize_waveform": True},
                      "adapter": {"kind": "lora", "r": 8, "alpha": 16, "dropout": 0.05}, "pooling": "mean",
                      "head_hidden": 64, "head_dropout": 0.2},
            "anchoring": {"layers": [2], "group_size": 1, "weight": 1e5, "max_target_clips": 512,
                          **VARIANTS[variant]},
            "train": {"optim": {"epochs": epochs, "batch_size": 16, "lr": 1e-3, "max_crop_seconds": 3.0, "seed": seed},
                      "lr_head": 3e-3, "early_stopping_patience": 0},
            "scaling": {"backend": "in_process", "cpus_per_worker": 2}}


def run_one(pool: Path, work: Path, seed: int, epochs: int, encoder: str, variant: str) -> dict:
    from ser_models.config import from_dict
    from ser_models.runs.anchor import AnchorJobConfig, run_anchor

    out = work / f"{variant}_seed{seed}"
    scratch(out)
    t0 = time.perf_counter()
    m = run_anchor(from_dict(AnchorJobConfig, job_config(pool, out, seed, epochs, encoder, variant)),
                   verbose=False).metrics
    last = m["history"][-1]
    return {"target_ua": m["test_target"]["ua"], "source_ua": m["test_source"]["ua"], "dev_ua": m["dev"]["ua"],
            "anchors": m["anchors"]["groups"], "coral_last_epoch": last.get("train_coral"),
            "epoch_s": statistics.mean(h["train_seconds"] for h in m["history"]),
            "wall_s": time.perf_counter() - t0}


def summarise(runs: dict[str, list[dict]]) -> list[list]:
    rows = []
    for variant, rs in runs.items():
        coral = [r["coral_last_epoch"] for r in rs if r["coral_last_epoch"] is not None]
        rows.append([variant, str(rs[0]["anchors"]) if variant != "none" else "-", mean_sd([r["target_ua"] for r in rs]),
                     " / ".join(f"{r['target_ua']:.3f}" for r in rs), mean_sd([r["source_ua"] for r in rs]),
                     mean_sd([r["dev_ua"] for r in rs]), f"{statistics.mean(coral):.2e}" if coral else "-"])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--clips", type=int, default=720, help="clips of the demo pool (both languages)")
    parser.add_argument("--pool", default="", help="an existing demo pool (e.g. outputs/demo/pool after make demo; "
                        "'' = build one of --clips clips under --workdir)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--variants", default="none,single,group,auto", help=f"any of {list(VARIANTS)}")
    parser.add_argument("--results", default=str(RESULTS), help="the markdown file written")
    parser.add_argument("--encoder", default="smart-turn", help="smart-turn (pretrained) or a tiny preset")
    parser.add_argument("--no-write", action="store_true", help="print, do not write bench/results/anchoring.md")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    work = claim_workdir(args.workdir)
    info, load = machine_info(), LoadWindow()
    pool = Path(args.pool) if args.pool else ensure_pool(work / f"demo_{args.clips}" / "pool", n=args.clips, seed=0)
    init_ray(2)
    t0 = time.perf_counter()
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    for seed in seeds:
        for variant in variants:
            r = run_one(pool, work / "anchoring_runs", seed, args.epochs, args.encoder, variant)
            runs[variant].append(r)
            print(f"seed {seed} {variant}: target UA {r['target_ua']:.3f}, source UA {r['source_ua']:.3f}, "
                  f"anchors {r['anchors']}, {r['wall_s']:.0f}s", flush=True)
    load.close()
    table = md_table(["variant", "anchor groups", "target (xx) test UA", "per seed", "source (en) test UA",
                      "target dev UA", "CORAL, last epoch"], summarise(runs))
    text = (f"# Layer-anchoring benchmark\n\n`python -m bench.anchoring --clips {args.clips} --epochs {args.epochs} "
            f"--seeds {args.seeds} --variants {args.variants} --encoder {args.encoder}"
            + (f" --pool {args.pool}" if args.pool else "") + "`: "
            + f"{time.perf_counter() - t0:.0f} s.\n\n" + __doc__.split("\n\n", 2)[2].strip()
            + f"\n\n{table}\n\n{machine_markdown(info, load)}\n\n```json\n{json.dumps(runs, indent=1)}\n```\n")
    print(text)
    if not args.no_write:
        write_results(args.results, text)


if __name__ == "__main__":
    main()
