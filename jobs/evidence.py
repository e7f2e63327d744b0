"""What active learning buys on a pool: the AFTER loop for several strategies and a baseline over many paired
seeds, from one shared feature cache, one Ray task per run, with 95 % intervals, AUBC and label savings; and
what selection finds: labels per class for every strategy, and the rarest training class's labels and share
against the baseline's, paired over seeds (``class_yield.png`` beside the UA bands in ``evidence.png``).

    python -m jobs.evidence jobs/configs/demo_evidence.yaml [key.sub=value ...]
    python -m jobs.evidence jobs/configs/demo_evidence.yaml evidence.seeds=20 \\
        evidence.strategies=[informative_diverse,margin,auto] output_dir=outputs/demo/evidence20

The job's config and code: :mod:`ser_models.runs.evidence`.
"""

from __future__ import annotations

from ser_models.runs.evidence import main

__all__ = ["main"]

if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
