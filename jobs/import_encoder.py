"""Import a pretrained speech encoder shipped inside a registry package as a Hugging Face folder.

    python -m jobs.import_encoder smart-turn .cache/encoders/smart-turn-v3.2-whisper-tiny
    python -m jobs.import_encoder smart-turn OUT_DIR --source pipecat_ai-1.14.0-py3-none-any.whl   # offline
    python -m jobs.import_encoder smart-turn OUT_DIR --source smart-turn-v3.2-cpu.onnx

The job's config and code: :mod:`ser_models.runs.import_encoder`.
"""

from __future__ import annotations

from ser_models.runs.import_encoder import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
