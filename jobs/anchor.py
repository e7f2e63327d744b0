"""Cross-lingual layer anchoring: train on a labelled source language, align an unlabelled target language.

    python -m jobs.anchor jobs/configs/anchor_demo.yaml [key.sub=value ...]
    platform/submit.sh anchor jobs/configs/anchor_demo.yaml output_dir=/mnt/outputs/anchor

The pool's ``group_column`` (``language``, or ``corpus`` for cross-corpus work) tells the two apart. Training
clips are the source's labelled ``train_split``; every step also encodes unlabelled target ``train_split``
clips and adds ``anchoring.weight`` x a CORAL loss at the anchor layers (one layer, a group of layers, or the
top-k most / least similar layers by CKA with ``anchoring.auto``). The epoch is picked on ``dev_on``'s dev
clips; UA/CCC are reported on both languages' test clips (``cross_lingual.json``). ``anchoring.weight=0`` is
the no-anchoring baseline. Rerunning with the same ``output_dir`` resumes.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.runs.anchor import AnchorJobConfig, run_anchor

__all__ = ["AnchorJobConfig", "main", "run_anchor"]


def main(argv: list[str] | None = None) -> dict:
    cfg = parse_job_args(AnchorJobConfig, sys.argv[1:] if argv is None else argv, "jobs.anchor")
    return run_anchor(cfg).metrics


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
