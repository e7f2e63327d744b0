"""Follow a submitted Ray job to its end by polling its status and logs over plain HTTP.

``ray job submit`` without ``--no-wait`` tails the logs over a WebSocket; when the dashboard closes that
socket (``WebSocket connection closed unexpectedly with close code 1006``, seen on a busy 2-core machine),
the submit command dies although the job runs on. ``platform/submit.sh`` therefore submits with ``--no-wait``
and hands the submission id to this module, which asks for the status and the logs every few seconds (each
request stands alone, so a dropped connection costs one poll, not the run) and exits with the job's outcome.

    python -m ser_models.cli.follow --address http://127.0.0.1:8265 SUBMISSION_ID
"""

from __future__ import annotations

import argparse
import sys
import time

#: Exit codes: the job succeeded, failed or was stopped, or could not be followed.
EXIT_SUCCEEDED, EXIT_FAILED, EXIT_UNREACHABLE = 0, 1, 3


def follow(address: str, submission_id: str, *, poll_seconds: float = 2.0, max_errors: int = 30,
           out=None) -> int:
    """Print a job's logs as they grow until the job ends; return :data:`EXIT_SUCCEEDED` or another code.

    Args:
        address: the cluster's job API (``http://host:8265``); token auth as the ``ray`` CLI does it.
        submission_id: the job's id.
        poll_seconds: seconds between two polls.
        max_errors: consecutive failed polls (connection refused, timeouts) before giving up.
        out: where logs go (default ``sys.stdout``).
    """
    from ray.job_submission import JobStatus, JobSubmissionClient

    out = out or sys.stdout
    client = JobSubmissionClient(address)
    printed, errors = 0, 0
    while True:
        try:
            status = client.get_job_status(submission_id)
            logs = client.get_job_logs(submission_id)
            errors = 0
        except Exception as exc:  # a dropped connection or a busy dashboard: the job itself runs on
            errors += 1
            if errors >= max_errors:
                print(f"job_follow: cannot reach {address} for job {submission_id!r} after {errors} tries: "
                      f"{exc}", file=sys.stderr, flush=True)
                return EXIT_UNREACHABLE
            time.sleep(poll_seconds)
            continue
        if len(logs) > printed:
            out.write(logs[printed:])
            out.flush()
            printed = len(logs)
        if status.is_terminal():
            # The same closing words as `ray job submit` (scripts grep for them).
            word = {JobStatus.SUCCEEDED: "succeeded", JobStatus.STOPPED: "was stopped"}.get(status, "failed")
            print(f"------------------------------------------\nJob '{submission_id}' {word}\n"
                  "------------------------------------------", file=out, flush=True)
            return EXIT_SUCCEEDED if status == JobStatus.SUCCEEDED else EXIT_FAILED
        time.sleep(poll_seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ser_models.cli.follow", description=__doc__.split("\n")[0])
    parser.add_argument("submission_id")
    parser.add_argument("--address", required=True, help="the cluster's job API, e.g. http://127.0.0.1:8265")
    parser.add_argument("--poll-seconds", type=float, default=2.0, help="seconds between two polls")
    args = parser.parse_args(argv)
    return follow(args.address, args.submission_id, poll_seconds=args.poll_seconds)


if __name__ == "__main__":
    raise SystemExit(main())
