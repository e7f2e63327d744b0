"""Growing-pool benchmark: a full build (decode + feature-cache encode) against growing the pool by 1 %.

    python -m bench.grow                          # 10,000 short clips grown by 1 %; writes bench/results/grow.md
    python -m bench.grow --clips 500 --quick      # a small check: prints the table only

One process, one local Ray (2 CPUs), side by side:

* **start-up** (once, reported apart): Ray start, the first Ray Data job (workers spawned, imports) and the
  encoder's construction: what any job pays before its first clip, whatever the pool's size.
* **full build**: ``prepare_pool`` on the manifest of ``--clips`` clips (every clip decoded), then the frozen
  tiny-wav2vec2 feature cache of the pool (every clip encoded on the scorer's actor pool).
* **grow**: the same manifest with ``--grow`` (1 %) more clips: ``prepare_pool`` decodes only the new clips
  into new files, and the cache (named by the pool's lineage, so the same folder) encodes only the clips it
  lacks into one more shard.

The goal is growth <= 3 % of the full build. The clip counts decoded and encoded come from the pool's
summary (``decoded``) and the cache (``last_encoded``), so the table shows that only the difference was done.
Clips are generated once under ``--workdir`` (not timed) and reused by later runs.
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
    init_ray,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
)

RESULTS = RESULTS_DIR / "grow.md"
GOAL = 0.03


def ensure_corpus(workdir: Path, clips: int, extra: int, seconds: float) -> tuple[Path, Path]:
    """``clips + extra`` short 16 kHz WAV clips (tones with noise, 4 labels, train/dev/test) written once;
    returns the manifests of the first ``clips`` and of all of them."""
    import numpy as np
    import pandas as pd
    import soundfile as sf

    corpus = workdir / f"grow_corpus_{clips}_{extra}_{seconds:g}s"
    small, full = corpus / "manifest_base.csv", corpus / "manifest_grown.csv"
    if small.is_file() and full.is_file():
        return small, full
    (corpus / "clips").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    labels = ["neutral", "happy", "angry", "sad"]
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    rows = []
    for k in range(clips + extra):
        wav = 0.2 * np.sin(2 * np.pi * (120 + (k % 200)) * t) + 0.02 * rng.standard_normal(n)
        name = f"clips/c{k:06d}.wav"
        sf.write(corpus / name, wav.astype(np.float32), 16000, subtype="PCM_16")
        rows.append({"utt_id": f"c{k:06d}", "path": name, "label": labels[k % 4], "speaker": f"s{k % 50}",
                     "split": ("dev", "test", *["train"] * 8)[k % 10]})
    frame = pd.DataFrame(rows)
    frame.iloc[:clips].to_csv(small, index=False)
    frame.to_csv(full, index=False)
    return small, full


def run(clips: int, grow: float, seconds: float, workdir: Path) -> dict:
    """Start-up, full build and growth, timed in one process; returns the measurements."""
    import ray.data

    from ser_models.data import Pool, PoolConfig, prepare_pool
    from ser_models.encoders import build_encoder
    from ser_models.scoring.cache_keys import feature_cache_key
    from ser_models.scoring.feature_cache import FeatureCache
    from ser_models.scoring.scorer import ScorerConfig
    from ser_models.testing import tiny_model_config

    extra = max(1, round(clips * grow))
    base, grown = ensure_corpus(workdir, clips, extra, seconds)
    out = workdir / f"grow_run_{clips}"
    scratch(out)

    t0 = time.perf_counter()
    init_ray(2)
    ray.data.range(4, override_num_blocks=2).map_batches(lambda b: b).materialize()  # workers up
    model = tiny_model_config(adapter="frozen")
    encoder = build_encoder(model.encoder)
    startup = time.perf_counter() - t0

    scorer = ScorerConfig(num_actors=1, num_cpus=1, threads=2, batch_size=64)
    times: dict[str, dict[str, float]] = {"full": {}, "grow": {}}
    counts: dict[str, dict[str, int]] = {"full": {}, "grow": {}}
    for phase, manifest in (("full", base), ("grow", grown)):
        cfg = PoolConfig(manifest=str(manifest), output_dir=str(out / "pool"), num_workers=2)
        t1 = time.perf_counter()
        summary = prepare_pool(cfg)
        times[phase]["decode"] = time.perf_counter() - t1
        pool = Pool.open(cfg.output_dir)
        cache = FeatureCache(out / "cache", feature_cache_key(pool, encoder, scorer))
        t2 = time.perf_counter()
        cache.build(pool.dataset(None), model, encoder.num_layers, scorer, verbose=False)
        times[phase]["encode"] = time.perf_counter() - t2
        counts[phase] = {"decoded": summary.decoded, "encoded": cache.last_encoded, "kept": summary.kept}
    return {"clips": clips, "extra": extra, "seconds": seconds, "startup": startup, "times": times,
            "counts": counts}


def table(res: dict) -> str:
    full, grow = res["times"]["full"], res["times"]["grow"]
    rows = []
    for stage in ("decode", "encode"):
        rows.append([stage, f"{full[stage]:.1f}", f"{grow[stage]:.1f}", f"{grow[stage] / full[stage]:.1%}"])
    total_f, total_g = sum(full.values()), sum(grow.values())
    rows.append(["**decode + encode**", f"**{total_f:.1f}**", f"**{total_g:.1f}**", f"**{total_g / total_f:.1%}**"])
    rows.append(["clips decoded / encoded", f"{res['counts']['full']['decoded']} / {res['counts']['full']['encoded']}",
                 f"{res['counts']['grow']['decoded']} / {res['counts']['grow']['encoded']}", ""])
    head = (f"{res['clips']} clips of {res['seconds']:g} s, grown by {res['extra']} "
            f"({res['extra'] / res['clips']:.1%}); start-up (Ray, first Ray Data job, encoder), paid once by "
            f"either job: {res['startup']:.1f} s\n\n")
    verdict = total_g / total_f <= GOAL
    foot = (f"\n\nGrowth costs {total_g / total_f:.1%} of a full build (goal <= {GOAL:.0%}: "
            f"{'met' if verdict else 'missed'}).")
    return head + md_table(["stage", "full build (s)", "grow (s)", "grow / full"], rows) + foot


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=10_000, help="clips in the first build")
    ap.add_argument("--grow", type=float, default=0.01, help="share of clips added (0.01 = 1 %%)")
    ap.add_argument("--seconds", type=float, default=1.0, help="clip length (s)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--quick", action="store_true", help="print the table only (no results file)")
    args = ap.parse_args(argv)
    load = LoadWindow()
    res = run(args.clips, args.grow, args.seconds, claim_workdir(args.workdir))
    load.close()
    text = table(res)
    print(text)
    if not args.quick:
        info = machine_info()
        path = write_results(RESULTS, "# Growing a pool: full build vs +1 %\n\n"
                             f"`python -m bench.grow --clips {args.clips} --grow {args.grow:g} "
                             f"--seconds {args.seconds:g}`\n\n" + machine_markdown(info, load) + "\n\n" + text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
