"""The one way every job ends: a typed error is one clear line on stderr and exit code 2.

A traceback helps whoever debugs the library, not the user who set a wrong key; ``SER_TRACEBACK=1`` brings
it back. Errors that are not :class:`~ser_models.exceptions.SERError` are bugs and keep their traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from ser_models.exceptions import SERError

#: Exit code of a job stopped by a typed error (bad config, pool, manifest, ledger, ...).
USER_ERROR_EXIT = 2
TRACEBACK_ENV = "SER_TRACEBACK"


def run_job(main: Callable[[], Any]) -> None:
    """Call ``main()``; a :class:`SERError` prints ``error: <Type>: <message>`` and exits with code 2."""
    try:
        main()
    except SERError as exc:
        if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
            raise
        first = str(exc).strip() or type(exc).__name__
        print(f"error: {type(exc).__name__}: {first}", file=sys.stderr, flush=True)
        raise SystemExit(USER_ERROR_EXIT) from None


__all__ = ["TRACEBACK_ENV", "USER_ERROR_EXIT", "run_job"]
