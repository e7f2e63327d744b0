"""Batch inference: apply a trained checkpoint to a prepared pool or a raw manifest, on Ray Data actors.

    python -m jobs.predict jobs/configs/predict_demo.yaml [key.sub=value ...]
    platform/submit.sh predict jobs/configs/predict_demo.yaml checkpoint=s3://bucket/runs/ft output_dir=s3://bucket/pred

Writes ``output_dir/predictions/part-*.parquet`` (utt_id, predicted class, confidence, probabilities, A/V/D
when the model has them, optional embedding) and ``summary.json`` (clips per class). Rerunning with the
same ``output_dir`` skips the shards already written.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.runs.predict import PredictJobConfig, run_predict


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_job_args(PredictJobConfig, sys.argv[1:] if argv is None else argv, "jobs.predict")
    return run_predict(cfg)


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
