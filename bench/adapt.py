"""Two-stage acted -> natural adaptation against training on either domain alone, on generated corpora.

    python -m bench.adapt                 # 3 seeds, 360-clip acted and natural corpora, frozen encoder + head
    python -m bench.adapt --seeds 0 --epochs 2 --no-write                              # a quick look

Per seed, on the pretrained Whisper-tiny encoder (Smart Turn v3.2, frozen: the head, the layer weights and
the A/V/D outputs train), multi-task (4 classes + arousal / valence / dominance, 1 - CCC), in process:

* ``acted only``: ``jobs.finetune`` on the acted pool (= ``jobs.adapt``'s stage 1);
* ``natural only``: ``jobs.finetune`` on the natural pool from scratch;
* ``acted -> natural``: ``jobs.adapt``'s stage 2, the natural pool from stage 1's weights, same epochs.

Every checkpoint is evaluated on both test splits (``jobs.evaluate``'s cross-corpus matrix); reported per
model: natural-test and acted-test UA and mean CCC, mean +- standard deviation over seeds.
"""

from __future__ import annotations

import argparse
import json
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

RESULTS = RESULTS_DIR / "adapt.md"
MODELS = ("acted only", "natural only", "acted -> natural")


def job_config(source: Path, target: Path, out: Path, seed: int, epochs: int, encoder: str) -> dict:
    """The ``jobs.adapt`` config (as a dict) of one seed."""
    train = {"optim": {"epochs": epochs, "batch_size": 16, "max_crop_seconds": 3.0, "seed": seed}, "lr_head": 3e-3,
             "early_stopping_patience": 0, "select_metric": "ua_plus_ccc"}
    source_path = encoder_overrides(encoder)[0].split("=", 1)[1]
    return {"source_pool_dir": str(source), "target_pool_dir": str(target), "output_dir": str(out),
            "names": ["acted", "natural"],
            "model": {"encoder": {"source": source_path, "normalize_waveform": "auto"}, "adapter": {"kind": "frozen"},
                      "pooling": "mean", "head_hidden": 64, "head_dropout": 0.2,
                      "dimensions": ["arousal", "valence", "dominance"]},
            "train": train, "target_train": {**train, "optim": dict(train["optim"])}, "evaluate_split": "",
            "scaling": {"backend": "in_process", "cpus_per_worker": 2}}


def run_seed(acted: Path, natural: Path, work: Path, seed: int, epochs: int, encoder: str) -> dict:
    """The three models of one seed, each evaluated on both test splits: ``{model: {pool: metrics}}``."""
    from ser_models.config import from_dict
    from ser_models.runs.adapt import AdaptJobConfig, run_adapt, stage_configs
    from ser_models.runs.evaluate import cross_corpus
    from ser_models.runs.finetune import run_finetune
    from ser_models.training.config import ScalingConfig

    out = work / f"seed{seed}"
    scratch(out)
    cfg = from_dict(AdaptJobConfig, job_config(acted, natural, out / "adapt", seed, epochs, encoder))
    run_adapt(cfg, verbose=False)
    _, stage2 = stage_configs(cfg)
    stage2.output_dir, stage2.init_checkpoint = str(out / "natural_only"), ""  # same run, no warm start
    run_finetune(stage2, verbose=False)
    checkpoints = {"acted only": str(out / "adapt" / "stage1_source" / "checkpoint"),
                   "natural only": str(out / "natural_only" / "checkpoint"),
                   "acted -> natural": str(out / "adapt" / "stage2_target" / "checkpoint")}
    cross_corpus(checkpoints, {"acted": str(acted), "natural": str(natural)}, "test",
                 output_dir=str(out / "matrix"), scaling=ScalingConfig(backend="in_process"), verbose=False)
    results = json.loads((out / "matrix" / "evaluations.json").read_text())["results"]
    return {m: {pool: {k: results[m][pool][k] for k in ("ua", "ccc")} for pool in ("acted", "natural")}
            for m in MODELS}


def summarise(runs: list[dict]) -> list[list]:
    """One row per model: natural-test UA / CCC and acted-test UA / CCC, mean +- sd over seeds."""
    return [[m, *(mean_sd([r[m][pool][k] for r in runs]) for pool in ("natural", "acted") for k in ("ua", "ccc"))]
            for m in MODELS]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(DEFAULT_WORKDIR))
    parser.add_argument("--clips", type=int, default=360, help="clips per corpus")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per stage (and for each single-domain run)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--encoder", default="smart-turn", help="smart-turn (pretrained) or a tiny preset")
    parser.add_argument("--no-write", action="store_true", help="print, do not write bench/results/adapt.md")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = claim_workdir(args.workdir)
    info, load = machine_info(), LoadWindow()
    acted = ensure_pool(work / f"adapt_acted_{args.clips}" / "pool", n=args.clips, seed=1, style="acted",
                        corpus_name="acted")
    natural = ensure_pool(work / f"adapt_natural_{args.clips}" / "pool", n=args.clips, seed=2, style="natural",
                          corpus_name="natural")
    init_ray(2)
    t0 = time.perf_counter()
    runs = []
    for seed in seeds:
        r = run_seed(acted, natural, work / "adapt_runs", seed, args.epochs, args.encoder)
        runs.append(r)
        print(f"seed {seed}: " + "; ".join(f"{m}: natural UA {r[m]['natural']['ua']:.3f} CCC "
                                           f"{r[m]['natural']['ccc']:.3f}" for m in MODELS), flush=True)
    load.close()
    table = md_table(["model", "natural test UA", "natural test CCC", "acted test UA", "acted test CCC"],
                     summarise(runs))
    text = (f"# Two-stage adaptation benchmark\n\n`python -m bench.adapt --clips {args.clips} --epochs "
            f"{args.epochs} --seeds {args.seeds} --encoder {args.encoder}`: {time.perf_counter() - t0:.0f} s.\n\n"
            + __doc__.split("\n\n", 2)[2].strip() + f"\n\n{table}\n\n{machine_markdown(info, load)}\n\n```json\n"
            f"{json.dumps(runs, indent=1)}\n```\n")
    print(text)
    if not args.no_write:
        write_results(RESULTS, text)


if __name__ == "__main__":
    main()
