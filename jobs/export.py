"""Write a trained checkpoint as one ONNX graph, for ONNX Runtime without torch or this package's model code.

    python -m jobs.export checkpoint=outputs/finetune/checkpoint output=model.onnx
    python -m jobs.export checkpoint=outputs/finetune/checkpoint output=model.int8.onnx quantize=int8

The job's config and code: :mod:`ser_models.export.job`.
"""

from __future__ import annotations

from ser_models.export.job import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
