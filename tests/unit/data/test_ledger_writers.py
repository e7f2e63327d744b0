"""Ledger appends from two processes never lose a committed row (each append re-reads the file under the
ledger's lock), and a writer whose run lock was taken over stops before it writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ser_models.data.ledger import LabelLedger
from ser_models.exceptions import LedgerError, LockLostError
from ser_models.locks import LOCK_NAME, FolderLock

ROOT = Path(__file__).resolve().parents[3]
# Opens the ledger, says so, waits for "go", then appends its rows one at a time.
APPENDER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from ser_models.data.ledger import LabelLedger
ledger = LabelLedger({path!r})
print("open", flush=True)
go = Path({go!r})
while not go.exists():
    time.sleep(0.01)
for k in range({n}):
    ledger.append(0, ["{name}%d" % k], ["happy"], oracle="{name}")
print("done", flush=True)
"""


def _appender(path: Path, name: str, n: int, go: Path) -> subprocess.Popen:
    code = APPENDER.format(root=str(ROOT), path=str(path), go=str(go), name=name, n=n)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "open", proc.stderr.read()
    return proc


def test_a_stale_copy_never_overwrites_rows_another_process_appended(tmp_path):
    """Deterministic order: A loads the ledger (empty), B then appends, then A appends from its old copy."""
    path = tmp_path / "labels" / "ledger.parquet"
    a = LabelLedger(path)
    go = tmp_path / "go"
    go.touch()
    b = _appender(path, "b", 1, go)
    assert b.wait(60) == 0, b.stderr.read()
    assert a.append(0, ["a0"], ["sad"], oracle="a") == 1
    assert sorted(LabelLedger(path).ids()) == ["a0", "b0"]
    # ...and A's view now holds B's row: a conflicting label for it is refused, not written over.
    with pytest.raises(LedgerError, match="'b0'"):
        a.append(0, ["b0"], ["angry"], oracle="a")


def test_two_processes_appending_at_once_keep_every_row(tmp_path):
    path = tmp_path / "labels" / "ledger.parquet"
    go = tmp_path / "go"
    procs = [_appender(path, name, 12, go) for name in ("x", "y")]
    go.touch()
    for proc in procs:
        assert proc.wait(120) == 0, proc.stderr.read()
    ids = LabelLedger(path).ids()
    assert ids == {f"{n}{k}" for n in "xy" for k in range(12)}
    assert not [p.name for p in path.parent.iterdir() if p.name.endswith(".lock")]  # released


def test_an_append_under_a_run_lock_that_was_taken_over_writes_nothing(tmp_path):
    path = tmp_path / "run" / "labels" / "ledger.parquet"
    ledger = LabelLedger(path)
    with FolderLock(tmp_path / "run", "run folder"):
        ledger.append(0, ["c0"], ["happy"], oracle="o")
        (tmp_path / "run" / LOCK_NAME).write_text(json.dumps({"host": "h2", "pid": 1, "token": "other"}))
        with pytest.raises(LockLostError):
            ledger.append(1, ["c1"], ["sad"], oracle="o")
    assert LabelLedger(path).ids() == {"c0"}
