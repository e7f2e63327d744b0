"""Build a prepared pool from a manifest: decode, mono, 16 kHz, validate, quarantine, shard (Ray Data).

    python -m jobs.prepare_pool jobs/configs/prepare_pool_demo.yaml [key=value ...]
    ray job submit --working-dir . --runtime-env platform/runtime_env.yaml -- \\
        python -m jobs.prepare_pool jobs/configs/prepare_pool_demo.yaml

The config is :class:`ser_models.data.PoolConfig` (top-level keys ``manifest``, ``output_dir``, ...).
Rerunning with unchanged inputs prints "pool up to date" and does nothing. A changed manifest updates the
pool in place (docs/jobs.md, "Pools that grow"): new clips are decoded, changed labels, splits and metadata
are rewritten without decoding, an existing clip whose audio changed is refused; changed audio settings (or
``grow=false``) rebuild it. Either way the new version is written beside the old one and committed by
``summary.json`` last, so the output folder never holds half a pool.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.data.config import PoolConfig
from ser_models.runtime import connect_ray


def main(argv: list[str] | None = None):
    cfg = parse_job_args(PoolConfig, sys.argv[1:] if argv is None else argv, "jobs.prepare_pool")
    from ser_models.data.prepare import check_pool_output, claim_pool, pool_fingerprint, prepare_pool
    from ser_models.formats.ingest import read_as_ours

    check_pool_output(cfg)  # a folder that is not a pool of ours: refused before anything is read
    # A Lhotse / Hugging Face / NeMo manifest or a corpus folder: imported into the pool folder, under its claim.
    with read_as_ours(cfg.manifest, cfg.output_dir, "segments", lambda: claim_pool(cfg)) as source:
        fingerprint = pool_fingerprint(cfg, source)  # the manifest and label map are readable: checked before Ray
        connect_ray()  # RAY_ADDRESS (set by `ray job submit`) or a local instance
        print(f"prepare-pool: {cfg.manifest} -> {cfg.output_dir} (labels {list(cfg.labels) or 'any'}, "
              f"{cfg.audio_format} audio, {cfg.num_workers} decode workers)")
        summary = prepare_pool(cfg, fingerprint, source)
    print(f"pool: {summary.output_dir}  kept {summary.kept} / {summary.clips_in} clips, "
          f"quarantined {summary.quarantined}")
    return summary
