"""The AFTER active-learning loop on a prepared pool: optional TAPT, initial set, rounds of
train -> evaluate -> score -> select -> label.

    python -m jobs.after jobs/configs/demo_after.yaml [key.sub=value ...]
    platform/submit.sh after jobs/configs/demo_after.yaml output_dir=/shared/runs/after1

Rerunning with the same ``output_dir`` resumes (finished rounds are skipped, an unfinished one is redone and
selects the same clips). With ``active.oracle=file`` the job stops after writing ``to_label.csv``; fill it in
and rerun the same command. With ``active.oracle=label_studio`` (server and token from LABEL_STUDIO_URL and
LABEL_STUDIO_API_KEY) it creates the round's tasks in a Label Studio project, then stops or, with
``active.label_studio.wait=true``, polls until people have annotated them.

A pool without labelled dev / test splits (e.g. no labels at all) gets test and dev sets drawn from its
training split before round 0 (``active.evaluation.*``: sizes, whole groups / recordings / speakers); they are
labelled first, through the same oracle, and never train.
"""

from __future__ import annotations

import sys

from ser_models.config import parse_job_args
from ser_models.runs.after import AfterJobConfig, run_after

__all__ = ["AfterJobConfig", "main", "run_after"]


def main(argv: list[str] | None = None):
    cfg = parse_job_args(AfterJobConfig, sys.argv[1:] if argv is None else argv, "jobs.after")
    return run_after(cfg)


if __name__ == "__main__":
    from ser_models.cli import run_job

    run_job(main)
