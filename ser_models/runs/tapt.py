"""Task-adaptive pre-training (TAPT) of the speech encoder on a prepared pool's training audio, with Ray Train.

    python -m jobs.tapt jobs/configs/tapt_demo.yaml [key.sub=value ...]
    platform/submit.sh tapt jobs/configs/tapt_demo.yaml output_dir=/shared/runs/tapt1

Writes ``output_dir/encoder/encoder.safetensors``: point ``model.encoder.checkpoint`` of a fine-tuning or
AFTER job at it. Rerunning with the same ``output_dir`` resumes an interrupted run or reuses a finished one.
"""

from __future__ import annotations

import sys
import time

from ser_models.config import parse_job_args, to_yaml
from ser_models.data import Pool
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.ownership import deferred_claim
from ser_models.pretraining.tapt_config import TaptJobConfig
from ser_models.provenance import check_run
from ser_models.runtime import connect_ray


def main(argv: list[str] | None = None) -> dict:
    cfg = resolve_encoder_names(parse_job_args(TaptJobConfig, sys.argv[1:] if argv is None else argv, "jobs.tapt"))

    t0 = time.perf_counter()
    with deferred_claim(cfg.output_dir, "run", job="jobs.tapt", layout=TAPT_LAYOUT,
                        inputs={"pool_dir": cfg.pool_dir, "encoder.source": cfg.encoder.source,
                                "encoder.checkpoint": cfg.encoder.checkpoint}) as claim:
        return _run(cfg, t0, claim)


#: What jobs.tapt writes into its output_dir besides run.json and config.yaml.
TAPT_LAYOUT = ("encoder", "metrics.json", "tapt_loss.png", "ray_train", "checkpoint")


def _run(cfg, t0: float, claim) -> dict:
    from ser_models.pretraining.tapt import TAPT_COLUMNS, run_tapt

    pool = Pool.open(cfg.pool_dir)  # checked before Ray starts: a wrong path fails in a second
    meta = pool.metadata(columns=["utt_id", "duration"], split=cfg.split)
    claim()  # the output folder: marked and locked before the first byte
    check_run(cfg.output_dir, "jobs.tapt", cfg, inputs={"pool": pool.lineage},
              config_yaml=to_yaml(cfg))
    connect_ray()  # RAY_ADDRESS (set by `ray job submit`) or a local instance
    print(f"pool {cfg.pool_dir}: {len(meta)} {cfg.split} clips, {meta['duration'].sum() / 60:.1f} min of audio")
    print(to_yaml(cfg))
    result = run_tapt(cfg, pool.dataset(cfg.split, columns=TAPT_COLUMNS), train_rows=len(meta))
    m = result.metrics
    losses = [h["loss"] for h in m["history"]]
    print(f"\nTAPT {m['objective']}: {len(losses)} epochs, loss {losses[0]:.4f} -> {losses[-1]:.4f}"
          + (" (reused)" if result.reused else f" in {result.seconds:.1f}s"))
    print(f"adapted encoder: {result.checkpoint}")
    print(f"use it with: model.encoder.source={cfg.encoder.source} model.encoder.checkpoint={result.checkpoint}")
    print(f"total {time.perf_counter() - t0:.1f}s")
    return m
