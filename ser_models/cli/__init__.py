"""The one way every job ends: a typed error is one clear line on stderr and exit code 2.

A traceback helps whoever debugs the library, not the user who set a wrong key; ``SER_TRACEBACK=1`` brings
it back. Errors that are not :class:`~ser_models.exceptions.SERError` are bugs and keep their traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ser_models import runtime
from ser_models.exceptions import SERError
from ser_models.io import STORAGE_FULL
from ser_models.runtime import HEAD_LOST_EXIT, end_with_head_lost  # noqa: F401 (re-exported)

#: Exit code of a job stopped by a typed error (bad config, pool, manifest, ledger, ...).
USER_ERROR_EXIT = 2
TRACEBACK_ENV = "SER_TRACEBACK"


def _storage_full(exc: BaseException) -> OSError | None:
    """The full-storage :class:`OSError` behind ``exc`` (itself, its cause or context, or the cause of a Ray
    task's error), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in STORAGE_FULL:
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def run_job(main: Callable[[], Any]) -> None:
    """Call ``main()``; a :class:`SERError` prints ``error: <Type>: <message>`` and exits with code 2.

    Any error while the Ray cluster's head node is gone prints ``error: HeadNodeLost: ...`` (what happened,
    what to do, then the error that surfaced) and exits with code 3. A write that found the storage full
    (:data:`STORAGE_FULL`, also inside a Ray task's error) prints ``error: StorageFullError: ...`` and exits
    with code 2: freeing space and rerunning resumes the job.
    """
    try:
        main()
    except Exception as exc:
        lost = runtime.lost_head_message()
        verbose = os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0")
        if verbose or (lost is None and not isinstance(exc, SERError) and _storage_full(exc) is None):
            raise
        full = _storage_full(exc) if lost is None else None
        if full is not None:
            where = f" writing {full.filename}" if full.filename else ""
            print(f"error: StorageFullError: {full.strerror or 'no space left'}{where}. Free space (or raise the "
                  "quota) and run the same command again: what finished is kept, and nothing half-written is read "
                  "back (every file is written whole or not at all, and each step commits last)",
                  file=sys.stderr, flush=True)
            raise SystemExit(USER_ERROR_EXIT) from None
        message = str(exc).strip() or type(exc).__name__
        if lost is not None:
            runtime.end_with_head_lost(f"{lost}. The error that surfaced: {type(exc).__name__}: {message.splitlines()[0]}")
        print(f"error: {type(exc).__name__}: {message}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None


__all__ = ["HEAD_LOST_EXIT", "TRACEBACK_ENV", "USER_ERROR_EXIT", "end_with_head_lost", "run_job"]
