"""Pre-train the WAP-Transformer adapter on a pool's unlabelled training clips, encoder frozen (docs/methods.md,
"An adapter pre-trained on the unlabelled pool").

    python -m jobs.adapter_pretrain jobs/configs/adapter_pretrain_smoke.yaml pool_dir=outputs/demo/pool \
        model.encoder.source=.cache/encoders/smart-turn-v3.2-whisper-tiny output_dir=outputs/demo/adapter_pretrain
    platform/submit.sh adapter_pretrain jobs/configs/adapter_pretrain_smoke.yaml pool_dir=/shared/pool \
        output_dir=/shared/runs/adapter1

Encodes every clip once into the frame cache, then trains the teacher-student adapter on Ray Train with
per-epoch checkpoints. Writes ``output_dir/adapter/wap.safetensors``: point ``model.wap.checkpoint`` of a
fine-tuning or AFTER job at it (``jobs.after`` and ``jobs.finetune`` can also run this stage themselves).
Rerunning with the same ``output_dir`` resumes an interrupted run or reuses a finished one.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.runs.adapter_pretrain import AdapterPretrainJobConfig, run_adapter_pretrain_job


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_job_args(AdapterPretrainJobConfig, sys.argv[1:] if argv is None else argv, "jobs.adapter_pretrain")
    result = run_adapter_pretrain_job(cfg)
    h = result.metrics["history"]
    print(f"\nadapter pre-training: {len(h)} epochs, loss {h[0]['loss']:.4f} -> {h[-1]['loss']:.4f}"
          + (" (reused)" if result.reused else f" in {result.seconds:.1f}s"))
    print(f"use it with: model.wap.enabled=true model.wap.checkpoint={result.checkpoint}")
    return result.metrics


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
