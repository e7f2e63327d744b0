"""Named crash points, so tests can prove that a job survives a kill at every stage boundary.

Set ``SER_FAILPOINT=<name>`` and the process SIGKILLs itself the first time it reaches ``failpoint(<name>)``:
no ``finally`` block, no atexit handler, no flush runs, exactly like a node that dies. Unset (always, outside
tests), a failpoint is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

FAILPOINT_ENV = "SER_FAILPOINT"

#: Every failpoint of the AFTER loop, in the order a round reaches them.
LOOP_FAILPOINTS = ("after_initial_selection", "after_train", "after_score", "after_select", "after_label",
                   "after_metrics")


def failpoint(name: str) -> None:
    """SIGKILL this process when ``$SER_FAILPOINT`` equals ``name``."""
    if os.environ.get(FAILPOINT_ENV) == name:
        print(f"failpoint {name}: killing process {os.getpid()}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["FAILPOINT_ENV", "LOOP_FAILPOINTS", "failpoint"]
