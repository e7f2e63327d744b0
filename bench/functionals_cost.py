"""What the eGeMAPS functionals cost a pool: the feature cache built with and without them, side by side.

    python -m bench.functionals_cost --pool-dir POOL --workdir WORK --results bench/results/functionals_cost.md

Three builds of the same pool, each on both paths a run can take, every fixed cost included (actor start-up,
reading the pool, writing Parquet):

* ``ray``: Ray Data actors with the demo's ``active.scorer`` (one actor reserving one CPU, two torch threads; the
  other CPU reads the pool): ``scaling.backend=ray``, what a cluster runs;
* ``in_process``: the same work in the driver, one batch at a time (``scaling.backend=in_process``, what
  ``make demo`` runs on one machine).

The builds:

* ``encoder``: the recipe's cache, Whisper-tiny (Smart Turn v3.2) hidden states 0-1, what ``make demo`` builds;
* ``encoder + egemaps``: the same cache with the 88 functionals of every clip computed by the same actors from
  the audio they already hold (``model.functionals=egemaps | auto``): what a user pays;
* ``egemaps``: the functionals alone (``build_functionals_cache``), the extractor's own cost.

Each build starts from an empty folder, so nothing is reused. The cost per pool hour is seconds / hours of
audio in the pool.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import (
    LoadWindow,
    claim_workdir,
    encoder_overrides,
    init_ray,
    machine_info,
    machine_markdown,
    scratch,
)


def build(pool_dir: str, root: Path, variant: str, actors: int, encoder_name: str = "smart-turn",
          in_process: bool = False) -> float:
    """Seconds to build ``variant``'s cache of the whole pool under an empty ``root`` (``encoder_name``: what
    ``bench.common.encoder_overrides`` takes; ``in_process``: in this process rather than on Ray Data actors)."""
    from bench.label_efficiency import job_config, run_overrides
    from ser_models.data import Pool
    from ser_models.encoders import build_encoder
    from ser_models.scoring.cache_keys import cache_states, feature_cache_key
    from ser_models.scoring.feature_cache import FeatureCache
    from ser_models.scoring.functionals_cache import build_functionals_cache
    from ser_models.scoring.scorer import ScorerConfig

    scratch(root)
    pool = Pool.open(pool_dir)
    scorer = ScorerConfig(num_actors=actors, num_cpus=1.0, threads=2)
    t0 = time.perf_counter()
    if variant == "egemaps":
        build_functionals_cache(root, pool, pool.dataset(None), scorer, verbose=False, in_process=in_process)
        return time.perf_counter() - t0
    cfg = job_config(pool_dir, root.parent / "unused", run_overrides("random", 0, [0.05], encoder_overrides(encoder_name)))
    encoder = build_encoder(cfg.model.encoder)
    cache = FeatureCache(root, feature_cache_key(pool, encoder, scorer), states=cache_states(cfg.model, encoder),
                         functionals="egemaps" if variant == "encoder + egemaps" else None)
    cache.build(pool.dataset(None), cfg.model, encoder.num_layers, scorer, verbose=False, in_process=in_process)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool-dir", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--actors", type=int, default=1, help="Ray Data actors, one CPU and two torch threads each "
                    "(default 1: the demo's scorer on 2 cores)")
    ap.add_argument("--encoder", default="smart-turn", help="smart-turn (the imported Whisper-tiny) or any "
                    "model.encoder.source")
    ap.add_argument("--results", default="")
    args = ap.parse_args(argv)
    from ser_models.data import Pool

    init_ray()
    hours = float(Pool.open(args.pool_dir).metadata(columns=["duration"])["duration"].sum()) / 3600
    clips = len(Pool.open(args.pool_dir).metadata(columns=["utt_id"]))
    load = LoadWindow()
    seconds = {}
    for backend in ("ray", "in_process"):
        for variant in ("encoder", "encoder + egemaps", "egemaps"):
            root = claim_workdir(args.workdir) / backend / variant.replace(" + ", "_")
            seconds[backend, variant] = build(args.pool_dir, root, variant, args.actors, args.encoder,
                                              in_process=backend == "in_process")
            print(f"{backend} {variant}: {seconds[backend, variant]:.1f}s", flush=True)
    load = load.close()
    rows = "\n".join(f"| {b} | {v} | {s:.1f} | {s / hours:.0f} |" for (b, v), s in seconds.items())
    added = "; ".join(
        f"{b}: **{seconds[b, 'encoder + egemaps'] - seconds[b, 'encoder']:.1f} s, "
        f"{(seconds[b, 'encoder + egemaps'] - seconds[b, 'encoder']) / hours:.0f} s per pool hour "
        f"(+{100 * (seconds[b, 'encoder + egemaps'] / seconds[b, 'encoder'] - 1):.0f} %)**" for b in ("ray", "in_process"))
    text = f"""# eGeMAPS functionals: what they add to the feature cache

`python -m bench.functionals_cost` on `{args.pool_dir}`: {clips:,} clips, {hours:.2f} h of audio. `ray`:
{args.actors} Ray Data actor(s) reserving one CPU each, 2 torch threads; `in_process`: the driver, 2 torch threads.
Every build from an empty folder, fixed costs included.

| path | cache | seconds | seconds per pool hour |
|---|---|---|---|
{rows}

What the functionals add to the recipe's cache build when the same pass computes both
(`model.functionals=egemaps | auto`): {added}.

{machine_markdown(machine_info(), load)}
"""
    print(text)
    if args.results:
        Path(args.results).write_text(text)
    return seconds


if __name__ == "__main__":
    main()
