"""What ``python -m jobs.sweep`` runs: parse the sweep's config, then :func:`ser_models.tune.sweep.run_sweep`
(imported only then: ``--help`` and a config error never load Ray Tune)."""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.encoders.pretrained import resolve_encoder_names
from ser_models.tune.config import SweepConfig
from ser_models.tune.sweep import run_sweep


def main(argv: list[str] | None = None):
    cfg = resolve_encoder_names(parse_job_args(SweepConfig, sys.argv[1:] if argv is None else argv, "jobs.sweep"))

    return run_sweep(cfg).frame
