"""Pre-train the WAP-Transformer adapter on a pool's unlabelled training clips, encoder frozen (docs/methods.md,
"An adapter pre-trained on the unlabelled pool").

    python -m jobs.adapter_pretrain jobs/configs/adapter_pretrain_smoke.yaml pool_dir=outputs/demo/pool \
        model.encoder.source=.cache/encoders/smart-turn-v3.2-whisper-tiny output_dir=outputs/demo/adapter_pretrain
    platform/submit.sh adapter_pretrain jobs/configs/adapter_pretrain_smoke.yaml pool_dir=/shared/pool \
        output_dir=/shared/runs/adapter1

The job's config and code: :mod:`ser_models.runs.adapter_pretrain`.
"""

from __future__ import annotations

from ser_models.runs.adapter_pretrain import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
