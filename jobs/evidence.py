"""What active learning buys on a pool: the AFTER loop for several strategies and a baseline over many paired
seeds, from one shared feature cache, one Ray task per run, with 95 % intervals, AUBC and label savings; and
what selection finds: labels per class for every strategy, and the rarest training class's labels and share
against the baseline's, paired over seeds (``class_yield.png`` beside the UA bands in ``evidence.png``).

    python -m jobs.evidence jobs/configs/demo_evidence.yaml [key.sub=value ...]
    python -m jobs.evidence jobs/configs/demo_evidence.yaml evidence.seeds=20 \\
        evidence.strategies=[informative_diverse,margin,auto] output_dir=outputs/demo/evidence20

The config is a jobs.after config (every run's model, train and active settings) plus ``evidence``:
strategies, baseline and seeds; ``evidence.fan_out=false`` runs them one after another in this process (same
rows), ``evidence.concurrency`` / ``evidence.cpus_per_run`` size the fan-out. Rerunning with the same
``output_dir`` resumes.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.runs.evidence import EvidenceJobConfig, run_evidence

__all__ = ["EvidenceJobConfig", "main", "run_evidence"]


def main(argv: list[str] | None = None):
    cfg = parse_job_args(EvidenceJobConfig, sys.argv[1:] if argv is None else argv, "jobs.evidence")
    return run_evidence(cfg)


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
