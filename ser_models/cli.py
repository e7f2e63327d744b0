"""The one way every job ends: a typed error is one clear line on stderr and exit code 2.

A traceback helps whoever debugs the library, not the user who set a wrong key; ``SER_TRACEBACK=1`` brings
it back. Errors that are not :class:`~ser_models.exceptions.SERError` are bugs and keep their traceback.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from ser_models.exceptions import SERError

#: Exit code of a job stopped by a typed error (bad config, pool, manifest, ledger, ...).
USER_ERROR_EXIT = 2
#: Exit code of a job whose Ray cluster lost its head node (rerun it on a live cluster: it resumes).
HEAD_LOST_EXIT = 3
TRACEBACK_ENV = "SER_TRACEBACK"


def run_job(main: Callable[[], Any]) -> None:
    """Call ``main()``; a :class:`SERError` prints ``error: <Type>: <message>`` and exits with code 2.

    Any error while the Ray cluster's head node is gone prints ``error: HeadNodeLost: ...`` (what happened,
    what to do, then the error that surfaced) and exits with code 3.
    """
    try:
        main()
    except Exception as exc:
        from ser_models.runtime import lost_head_message

        lost = lost_head_message()
        verbose = os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0")
        if verbose or (lost is None and not isinstance(exc, SERError)):
            raise
        message = str(exc).strip() or type(exc).__name__
        if lost is not None:
            end_with_head_lost(f"{lost}. The error that surfaced: {type(exc).__name__}: {message.splitlines()[0]}")
        print(f"error: {type(exc).__name__}: {message}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None


_head_lost_once = threading.Lock()


def end_with_head_lost(reason: str) -> None:
    """Print ``error: HeadNodeLost: <reason>`` once and end the process with :data:`HEAD_LOST_EXIT`.

    Called by the job's error handler and by the driver's head watch (``runtime.watch_head_node``), whichever
    comes first; the other waits here until the process ends.
    """
    with _head_lost_once:
        print(f"error: HeadNodeLost: {reason}", file=sys.stderr, flush=True)
        _exit_now(HEAD_LOST_EXIT)


def _exit_now(code: int) -> None:
    """End the process with ``code`` without running Ray's shutdown against a dead head node.

    A plain ``SystemExit`` runs ``ray.shutdown()`` at exit, which waits on the dead GCS; meanwhile the
    driver's core worker gives up on the GCS (``gcs_rpc_server_reconnect_timeout_s``) and ends the process
    itself with code 1, so the exit code would depend on which comes first (seen in CI). Everything the job
    wrote is already closed (the error unwound every ``with``); logs and the standard streams are flushed here.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


__all__ = ["HEAD_LOST_EXIT", "TRACEBACK_ENV", "USER_ERROR_EXIT", "end_with_head_lost", "run_job"]
