"""Feature-cache benchmark: an AL round with the frozen-encoder feature cache vs recomputing the encoder.

    python -m bench.cache              # rounds 0 and 1 of the demo loop, cache on vs off; writes results
    python -m bench.cache --quick      # 2 epochs, prints the table only
    python -m bench.cache --ray-train  # also both variants with scaling.backend=ray_train
    python -m bench.cache --encoder smart-turn --epochs 2   # the imported pretrained Whisper-tiny

Both runs use the same job config (``jobs.after``'s schema, the demo's training settings) with
``model.adapter.kind=frozen model.pooling=mean``, ``scaling.backend=in_process``, a random initial set under
the same seed (so both train on the same clips) and differ only in ``active.feature_cache=on|off``. A round
is ``ActiveLearningLoop.step(r)``: train (with dev/test evaluation every epoch), score the whole training
split, select, label. Stage seconds come from ``rounds/round=XXX/metrics.json``. The one-time cache build
(encode every pool clip once) is timed separately. Round 0 also pays one-time reads of the dev/test splits;
round 1 is the steady state that every later round repeats.
"""

from __future__ import annotations

import argparse
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
    scratch,
    write_results,
)

RESULTS = RESULTS_DIR / "cache.md"
THREADS = 2

#: The demo's AFTER settings (jobs/configs/demo_after.yaml) with a frozen encoder and no TAPT.
# The benchmarks' base: the AdamW + MLP-head recipe the committed cache and scaling figures were measured with,
# pinned key by key (jobs.after's defaults are now the small-label recipe, which label_efficiency passes).
BASE_OVERRIDES = [
    "tapt_enabled=false",
    "train.solver=adamw", "train.l2_c=1.0", "model.feature_norm=none", "model.head_input_norm=true",
    "model.head_dropout=0.1", "scaling.backend=ray_train", "active.strategy.prefilter_factor=10",
    "model.encoder.source=tiny-wav2vec2", "model.encoder.normalize_waveform=false",
    "model.adapter.kind=frozen", "model.pooling=mean", "model.head_hidden=64",
    "train.optim.epochs=12", "train.optim.batch_size=8", "train.optim.lr=1e-3", "train.lr_head=3e-3",
    "train.optim.max_crop_seconds=3.0", "train.early_stopping_patience=4",
    f"scaling.cpus_per_worker={THREADS}",
    "active.initial=random", "active.budget_fractions=[0.05,0.10,0.15]",
    "active.strategy.name=informative_diverse",
    "active.scorer.batch_size=64", f"active.scorer.num_cpus={THREADS}",
]


NOTES = """## Findings

Summarised, with what the numbers mean, in BENCHMARKS.md at the repository root.
"""


def job_config(pool_dir: str | Path, output_dir: str | Path, extra: list[str] = ()):
    """An ``AfterJobConfig`` from :data:`BASE_OVERRIDES` plus ``extra`` (later keys win).

    Quote ``on``/``off`` values (``active.feature_cache='on'``): unquoted, the YAML parser behind the dotted
    overrides reads them as booleans and ``ActiveConfig`` rejects ``'True'``.
    """
    from ser_models.config import load_config
    from ser_models.runs.after import AfterJobConfig

    return load_config(AfterJobConfig, None, [f"pool_dir={pool_dir}", f"output_dir={output_dir}",
                                              *BASE_OVERRIDES, *extra])


def run_variant(pool_dir: str | Path, output_dir: str | Path, cache: str, backend: str, rounds: int,
                extra: list[str] = ()) -> dict:
    """Fresh run folder; build the cache (when on, timed), label the initial set, run ``rounds`` rounds.

    Returns:
        ``{"build_s", "rounds": [{"round", "wall_s", "seconds": {stage: s}, "labelled", "test_ua"}]}``.
    """
    from ser_models.active.loop import ActiveLearningLoop
    from ser_models.data import Pool
    from ser_models.encoders import build_encoder

    output_dir = Path(output_dir)
    scratch(output_dir)
    cfg = job_config(pool_dir, output_dir, [f"active.feature_cache='{cache}'", f"scaling.backend={backend}", *extra])
    pool = Pool.open(cfg.pool_dir)
    loop = ActiveLearningLoop(pool, cfg.output_dir, cfg.model, cfg.train, cfg.scaling, cfg.active, verbose=False)
    assert (loop.cache is not None) == (cache == "on"), f"active.feature_cache={cache} not honoured"
    build_s = None
    if loop.cache is not None:
        t0 = time.perf_counter()
        loop.cache.build(pool.dataset(None), cfg.model, build_encoder(cfg.model.encoder).num_layers,
                         cfg.active.scorer, verbose=False, in_process=loop.in_process)
        build_s = time.perf_counter() - t0
    loop.initial()
    out = []
    for r in range(rounds):
        t0 = time.perf_counter()
        rep = loop.step(r)
        wall = time.perf_counter() - t0
        out.append({"round": r, "wall_s": wall, "seconds": rep.seconds, "labelled": rep.labelled,
                    "test_ua": (rep.test or {}).get("ua")})
        print(f"  cache={cache:<3} {backend:<10} round {r}: {wall:6.1f} s "
              + " ".join(f"{k} {v:.1f}s" for k, v in rep.seconds.items()), flush=True)
    return {"cache": cache, "backend": backend, "build_s": build_s, "rounds": out}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m bench.cache", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs, rounds 0-1, no results file")
    ap.add_argument("--pool-dir", default=str(DEFAULT_WORKDIR / "pool"), help="demo pool (built when missing)")
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR / "cache"), help="run folders (deleted first)")
    ap.add_argument("--ray-train", action="store_true", help="also compare both with scaling.backend=ray_train")
    ap.add_argument("--encoder", default="tiny-wav2vec2", help="model.encoder.source, or smart-turn for the "
                    "imported pretrained Whisper-tiny (fetched and cached on first use)")
    ap.add_argument("--epochs", type=int, default=None, help="train.optim.epochs (default: the demo's)")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    extra = ["train.optim.epochs=2"] if args.quick else []
    extra += encoder_overrides(args.encoder)
    extra += [f"train.optim.epochs={args.epochs}"] if args.epochs else []
    rounds = 2
    import torch

    torch.set_num_threads(THREADS)
    pool_dir = ensure_pool(args.pool_dir)
    init_ray(THREADS)
    backends = ["in_process"] + (["ray_train"] if args.ray_train else [])
    load = LoadWindow()
    runs = {}
    for backend in backends:
        for cache in ("on", "off"):
            runs[(backend, cache)] = run_variant(pool_dir, claim_workdir(args.workdir) / f"{backend}_{cache}", cache, backend,
                                                 rounds, extra)
    load.close()
    rows, ratios = [], {}
    for backend in backends:
        on, off = runs[(backend, "on")], runs[(backend, "off")]
        for r in range(rounds):
            a, b = on["rounds"][r], off["rounds"][r]
            ratio = b["wall_s"] / a["wall_s"]
            ratios[(backend, r)] = ratio
            for name, x in (("on", a), ("off", b)):
                s = x["seconds"]
                rows.append([backend, r, x["labelled"], name, f"{x['wall_s']:.2f}", f"{s.get('train', 0):.2f}",
                             f"{s.get('score', 0):.2f}", f"{s.get('select', 0):.2f}", f"{s.get('label', 0):.2f}",
                             f"{x['test_ua']:.3f}" if x["test_ua"] is not None else "-",
                             f"**{ratio:.1f}x**" if name == "on" else ""])
    info = machine_info()
    table = md_table(["backend", "round", "labelled", "cache", "round wall s", "train s", "score s", "select s",
                      "label s", "test UA", "speed-up (off / on)"], rows)
    builds = "; ".join(f"{b}: {runs[(b, 'on')]['build_s']:.1f} s" for b in backends)
    steady = ratios[("in_process", rounds - 1)]
    text = "\n".join([
        "# Feature-cache benchmark",
        "",
        f"`python -m bench.cache{' --ray-train' if args.ray_train else ''} --encoder {args.encoder}"
        f"{f' --epochs {args.epochs}' if args.epochs else ''}` on the demo pool (720 clips; "
        "training split scored every round).",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        table,
        "",
        f"One-time cache build (every pool clip through the frozen encoder, in process): {builds}.",
        "",
        f"**Steady-state round (round {rounds - 1}), in_process: {steady:.1f}x faster with the cache** "
        "(target >= 10x).",
        "",
        NOTES,
        "",
        machine_markdown(info, load),
    ])
    print("\n" + text)
    if not args.quick:
        write_results(args.results, text)
    return {"runs": runs, "ratios": ratios, "text": text}


if __name__ == "__main__":
    main()
