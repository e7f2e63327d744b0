"""Write a trained checkpoint as one ONNX graph, for ONNX Runtime without torch or this package's model code.

    python -m jobs.export checkpoint=outputs/finetune/checkpoint output=model.onnx
    python -m jobs.export checkpoint=outputs/finetune/checkpoint output=model.int8.onnx quantize=int8

The graph takes 16 kHz float32 mono waveforms and their lengths and returns class probabilities; labels, sample
rate and preprocessing are in its metadata. The export is checked against torch and refused when it would
predict differently. No Ray. See docs/deploy.md.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.export.job import ExportConfig, run_export

__all__ = ["ExportConfig", "main"]


def main(argv: list[str] | None = None):
    cfg = parse_job_args(ExportConfig, sys.argv[1:] if argv is None else argv, "jobs.export")
    return run_export(cfg)


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
