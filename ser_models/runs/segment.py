"""Find the speech in long recordings and write a segments manifest (Silero VAD on Ray Data actors).

    python -m jobs.segment jobs/configs/segment_demo.yaml recordings=/data/calls/recordings.csv \
        output_dir=/data/calls/segments
    ray job submit --working-dir . --runtime-env platform/runtime_env.yaml -- \\
        python -m jobs.segment jobs/configs/segment_demo.yaml recordings=s3://bucket/calls/recordings.csv \\
        output_dir=s3://bucket/calls/segments

The config is :class:`ser_models.segment.SegmentConfig`. ``output_dir/segments.parquet`` is a manifest:
``python -m jobs.prepare_pool jobs/configs/prepare_pool_demo.yaml manifest=<output_dir>/segments.parquet``.
A rerun resumes: finished recordings are not decoded again, and new rules reuse the stored probabilities.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.formats.ingest import read_as_ours
from ser_models.runtime import connect_ray
from ser_models.segment.config import SegmentConfig
from ser_models.segment.recordings import read_recordings
from ser_models.segment.run import check_segment_output, claim_segment_output, segment_archive


def main(argv: list[str] | None = None):
    cfg = parse_job_args(SegmentConfig, sys.argv[1:] if argv is None else argv, "jobs.segment")

    check_segment_output(cfg)  # a folder that is not a segment output of ours: refused before anything is read
    # A Lhotse manifest: imported into the output folder, under its claim.
    with read_as_ours(cfg.recordings, cfg.output_dir, "recordings", lambda: claim_segment_output(cfg),
                      key="recordings") as source:
        read_recordings(source)  # a malformed manifest fails before Ray starts
        connect_ray()  # RAY_ADDRESS (set by `ray job submit`) or a local instance
        print(f"segment: {cfg.recordings} -> {cfg.output_dir}")
        summary = segment_archive(cfg, source=source)
    print(f"segments: {summary.output_dir}/segments.parquet  {summary.segments} segments from "
          f"{summary.segmented} / {summary.recordings} recordings")
    return summary
