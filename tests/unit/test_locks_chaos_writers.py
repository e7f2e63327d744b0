"""Chaos: four writer processes append rows to one ``LabelLedger`` and commit a journal (``summary.json``,
read-modify-write, two commits per hold) under a ``FolderLock`` with ``fenced_for``, while the test pauses them
at random (SIGSTOP for longer than ``stale_s``, then SIGCONT) and SIGKILLs and restarts some.

Each writer logs what it committed (row ids; journal entries with its lock's token) and what it was refused.
Afterwards:

* every ledger row a writer logged is in the ledger exactly once, and no row appears twice;
* every journal commit a writer logged is in the journal exactly once; an entry nobody logged comes only from a
  writer that was killed right after committing it;
* nothing was committed by a writer after its lock was taken over: each hold's entries are contiguous in the
  journal, and a hold that met LockLostError has no entry from that commit on;
* on one machine and PID namespace a paused (live) writer is never taken over: every take-over names a killed
  writer. With each writer in a PID namespace of its own (to each other, other machines), paused writers are
  taken over once watched unchanged for ``stale_s``, and they commit nothing after that.

Variants: local folder (``make test``, about 15 s); local folder with PID namespaces (``unshare``; skipped with
the reason where the kernel refuses) and S3 (the moto server), about 15 s and 25 s, in ``make test-e2e``
(marker ``slow_e2e``). Each prints its numbers (``-s``).
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ser_models.data.ledger import LabelLedger
from ser_models.io import exists, read_json
from ser_models.locks import FolderLock
from ser_models.ownership import claim
from ser_models.testing import PID_NAMESPACE, pid_namespace_refused

ROOT = Path(__file__).resolve().parents[2]
STALE_S = 1.0
WRITER = """
import json, os, sys, time
sys.path.insert(0, {root!r})
import random
from ser_models.data.ledger import LabelLedger
from ser_models.data.pool_builds import remove_builds
from ser_models.exceptions import LockHeldError, LockLostError
from ser_models.io import exists, join, read_json, write_bytes_atomic, write_json_atomic
from ser_models.locks import FolderLock, fenced_for
from ser_models.ownership import record
base, name, first, n, log_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pause_p, freeze_beat = float(sys.argv[6]), sys.argv[7] == "1"
rnd = random.Random("%s-%d" % (name, first))
ledger = LabelLedger(join(base, "labels", "ledger.parquet"))
summary_dir = join(base, "summary")
summary = join(summary_dir, "summary.json")
pool = join(summary_dir, "pool.json")
window = os.path.join(os.path.dirname(log_path), name + ".window")
out = open(log_path, "a")
def note(**kw):
    out.write(json.dumps({{"writer": name, "incarnation": first, "t": time.time(), **kw}}) + "\\n")
    out.flush()
print("ready", os.readlink("/proc/self"), os.readlink("/proc/self/ns/pid"), flush=True)
stop = os.path.join(os.path.dirname(log_path), "stop")
for i in range(first, n):
    if os.path.exists(stop):
        break
    uid = "%s-%04d" % (name, i)
    try:
        ledger.append(0, [uid], ["happy"], oracle=name)
        note(kind="row", id=uid)
    except LockLostError:
        note(kind="row lost", id=uid)
    except LockHeldError:
        note(kind="row refused", id=uid)
    try:
        with FolderLock(summary_dir, "summary", wait_s=120) as lock:
            named = read_json(pool)["build"] if exists(pool) else None  # what the last holder committed
            note(kind="hold", token=lock.token, named=named, whole=named is None or exists(join(summary_dir, named, "x")))
            for k in range(2):
                try:
                    with fenced_for(summary):
                        journal = read_json(summary) if exists(summary) else {{"commits": []}}
                        journal["commits"].append([name, lock.token, i, k])
                        write_json_atomic(summary, journal)
                except LockLostError:
                    note(kind="commit lost", token=lock.token, i=i, k=k)
                    break
                note(kind="commit", token=lock.token, i=i, k=k)
            else:
                # A pool build: the build, then the summary naming it (the commit), then the clean-up of the
                # builds it replaced; a pause between the commit and the clean-up (SIGSTOP of this process: a
                # laptop lid) outlasts SER_LOCK_STALE_S, and the clean-up must then delete nothing.
                build = "build-%s-%04d-%s" % (name, i, lock.token[:8])
                committed = False
                try:
                    record(summary_dir, "pool", [build])
                    try:
                        write_bytes_atomic(join(summary_dir, build, "x"), build.encode())
                    except FileNotFoundError:  # paused, taken over: the new holder cleaned up this unnamed build
                        raise LockLostError("build folder removed by the next holder") from None
                    with fenced_for(pool):
                        write_json_atomic(pool, {{"build": build, "token": lock.token}})
                    committed = True
                    note(kind="build", token=lock.token, build=build)
                    if rnd.random() < pause_p and not os.path.exists(stop):
                        note(kind="window pause", token=lock.token, build=build)
                        if freeze_beat:  # S3: see _chaos
                            with lock._beat_guard:
                                lock._stop.set()
                            lock._thread.join()
                        # Ask the test to stop this process (pid 1 of a PID namespace cannot stop itself): it
                        # sends SIGSTOP, removes the request, and SIGCONT after 1.5-2.5 x stale_s.
                        open(window, "w").close()
                        while os.path.exists(window):
                            time.sleep(0.01)
                    remove_builds(summary_dir, keep={{build}})
                    note(kind="builds removed", token=lock.token, build=build)
                except LockLostError:
                    note(kind="delete lost" if committed else "build lost", token=lock.token, build=build)
    except LockHeldError as exc:
        note(kind="summary refused", error=str(exc)[:200])
    note(kind="iteration", i=i)
note(kind="done")
"""




class _Writer:
    def __init__(self, base: str, name: str, first: int, n: int, logs: Path, namespace: bool, pause_p: float,
                 freeze_beat: bool = False):
        self.name, self.first = name, first
        self.out = logs / f"{name}-{first}.out"
        cmd = [sys.executable, "-c", WRITER.format(root=str(ROOT)), base, name, str(first), str(n),
               str(logs / "commits.jsonl"), str(pause_p), "1" if freeze_beat else "0"]
        env = {**os.environ, "SER_LOCK_STALE_S": str(STALE_S)}
        env.pop("SER_LOCK_TAKE_OVER", None)
        with open(self.out, "w") as fh:
            self.proc = subprocess.Popen([*(PID_NAMESPACE if namespace else []), *cmd], stdout=fh,
                                         stderr=subprocess.STDOUT, env=env)
        self.pid, self.pidns = 0, ""

    def ready(self) -> _Writer:
        deadline = time.monotonic() + 120
        while not self.out.read_text().startswith("ready"):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.out.read_text()
            time.sleep(0.05)
        first = self.out.read_text().split()
        self.pid, self.pidns = int(first[1]), first[2]  # the python process, as this machine sees it
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None


def _chaos(base: str, logs: Path, *, namespace: bool, seconds: float, kills: int, seed: int,
           take_overs: int = 0, window_p: float = 0.3, window_pauses: int = 2, pausers: int = 2,
           freeze_beat: bool = False, count: int = 4) -> dict:
    """Run ``count`` writers (four unless told) for ``seconds`` while ``pausers`` of them at a time, picked at random, are paused
    (SIGSTOP for 1.5-2.5 x stale_s, then SIGCONT, then the next after 0.1-0.5 s), a writer asks to be paused between a
    pool commit and its clean-up with probability ``window_p`` (SIGSTOP, SIGCONT after 1.5-2.5 x stale_s) and ``kills`` of
    them are SIGKILLed (each restarts at its first unfinished iteration), and on until at least ``take_overs`` locks
    were taken over, four random pauses (with pausers) and ``window_pauses`` pauses between a commit and its
    clean-up ended (at most 3 x ``seconds``; a killed writer that let go of its lock before the signal landed is
    followed by another kill of a holder); then let them finish their iteration and stop. Returns what happened.

    ``freeze_beat``: a writer asking for a pause first stops its lock's heartbeat between two beats, so the
    SIGSTOP never lands inside a beat. On S3 a beat reads the lease and then writes it, with no guard around the
    two: stopped in between and taken over, it would write its lease over the new holder's when it resumes (a
    hole of its own, not the fences'), and this test is about the fences."""
    rng = random.Random(seed)
    started = time.monotonic()
    n = 100_000  # more than they get through: the stop file ends them
    with FolderLock(f"{base}/summary", "summary"):
        claim(f"{base}/summary", "pool", log=lambda line: None)  # the folder the builds are recorded in
    writers = {name: _Writer(base, name, 0, n, logs, namespace, window_p, freeze_beat)
               for name in (f"w{j}" for j in range(count))}  # ``count`` writers
    for w in writers.values():
        w.ready()
    t0 = time.monotonic()
    every = list(writers.values())
    guards = {name: threading.Lock() for name in writers}
    stop = threading.Event()
    pauses, windows, killed_incarnations = [], [], []

    def pauser(seed: int) -> None:  # two of these: at most two writers are paused at once, two run on
        rnd = random.Random(seed)
        while not stop.wait(rnd.uniform(0.1, 0.5)):
            name = (rnd.random() < 0.7 and _a_holder(base, writers, tries=1)) or rnd.choice(sorted(writers))
            if not guards[name].acquire(blocking=False):
                continue  # paused by the other pauser, or being restarted
            try:
                w = writers[name]
                if not w.alive():
                    continue
                os.kill(w.pid, signal.SIGSTOP)
                try:
                    time.sleep(rnd.uniform(1.5, 2.5) * STALE_S)
                finally:
                    os.kill(w.pid, signal.SIGCONT)
                pauses.append(name)
            finally:
                guards[name].release()

    def windower(name: str, seed: int) -> None:  # one per writer: pauses it where it asks, between commit and clean-up
        rnd = random.Random(seed)
        request = logs / f"{name}.window"
        while not stop.wait(0.02):
            if not request.exists() or not guards[name].acquire(blocking=False):
                continue  # no request, or paused by a pauser, or being restarted: look again
            try:
                w = writers[name]
                if w.alive() and request.exists():
                    os.kill(w.pid, signal.SIGSTOP)
                    request.unlink()
                    try:
                        time.sleep(rnd.uniform(1.5, 2.5) * STALE_S)
                    finally:
                        os.kill(w.pid, signal.SIGCONT)
                    windows.append(name)
            finally:
                guards[name].release()

    threads = [threading.Thread(target=pauser, args=(rng.random(),)) for _ in range(pausers)]
    threads += [threading.Thread(target=windower, args=(name, rng.random())) for name in sorted(writers)]
    for t in threads:
        t.start()
    try:
        kill_at = sorted(rng.uniform(0.2, 0.8) * seconds for _ in range(kills))
        last_kill = 0.0
        while time.monotonic() - t0 < seconds or (
                (_take_overs(every) < take_overs or len(pauses) < 4 * (pausers > 0) or len(windows) < window_pauses)
                and time.monotonic() - t0 < 3 * seconds):
            time.sleep(0.1)
            now = time.monotonic() - t0
            if kills and not kill_at and now >= seconds and now - last_kill > 4 * STALE_S \
                    and _take_overs(every) < take_overs:
                kill_at.append(now)  # the last killed writer let go before the signal landed: kill another holder
            if kill_at and now >= kill_at[0]:
                # Only a writer that holds a lock leaves one to take over; on S3 the holder is not read back.
                name = _a_holder(base, writers, tries=1) if "://" not in base else rng.choice(sorted(writers))
                if name is None:
                    continue  # nobody holds one at this instant: look again next tick
                kill_at.pop(0)
                last_kill = now
                with guards[name]:
                    w = writers[name]
                    os.kill(w.pid, signal.SIGKILL)
                    w.proc.wait()
                    (logs / f"{name}.window").unlink(missing_ok=True)  # a request of the killed incarnation
                    killed_incarnations.append((w.name, w.first))
                    done = [e["i"] for e in _log(logs) if e["writer"] == name and e["kind"] == "iteration"]
                    writers[name] = _Writer(base, name, max(done, default=-1) + 1, n, logs, namespace,
                                            window_p, freeze_beat).ready()
                    every.append(writers[name])
        (logs / "stop").touch()  # a writer asks for a pause only before it sees this file
        stop.set()
        for t in threads:
            t.join()
        deadline = time.monotonic() + 300
        for w in writers.values():
            while w.alive() and time.monotonic() < deadline:
                (logs / f"{w.name}.window").unlink(missing_ok=True)  # asked before the stop file was there
                time.sleep(0.05)
            w.proc.wait(timeout=1)
    finally:
        stop.set()
        for w in every:
            if w.alive():
                os.kill(w.pid, signal.SIGCONT)
                w.proc.kill()
                w.proc.wait()
    outputs = "\n".join(w.out.read_text() for w in every)
    return {"seconds": round(time.monotonic() - started, 1), "pauses": len(pauses), "windows": len(windows),
            "kills": len(killed_incarnations),
            "killed": killed_incarnations, "outputs": outputs,
            "exit_codes": [w.proc.returncode for w in writers.values()], "names": sorted(writers)}


def _a_holder(base: str, writers: dict, tries: int = 40) -> str | None:
    """A writer that holds the ledger's or the journal's lock now (paused, it keeps others waiting; killed, it
    leaves a lock to take over)."""
    if "://" in base:
        return None
    for attempt in range(tries):
        for lock in _order(("labels/.ledger.parquet.lock", "summary/.ser-lock.json"), attempt):
            try:
                rec = json.loads(Path(base, lock).read_text())
            except (OSError, ValueError):
                continue
            names = [name for name, w in writers.items() if (w.pid, w.pidns) == (rec.get("pid"), rec.get("pidns"))
                     or (w.pidns == rec.get("pidns") and rec.get("pid") == 1)]
            if names:
                return names[0]
        time.sleep(0.05)
    return None


def _order(items: tuple, attempt: int) -> tuple:
    return items if attempt % 2 == 0 else items[::-1]


def _take_overs(writers) -> int:
    return sum(w.out.read_text().count("taking over the stale lock") for w in writers)


def _log(logs: Path) -> list[dict]:
    path = logs / "commits.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _check(base: str, logs: Path, run: dict, *, live_taken_over: bool) -> dict:
    log = _log(logs)
    killed = set(run["killed"])
    assert run["exit_codes"] == [0] * len(run["names"]), run["outputs"][-3000:]
    assert {e["writer"] for e in log if e["kind"] == "done"} == set(run["names"]), run["outputs"][-3000:]
    # The ledger: every logged row exactly once; nothing else but rows a killed writer may have committed.
    table = LabelLedger(f"{base}/labels/ledger.parquet").labelled()
    counts = collections.Counter(table["utt_id"])
    assert not [u for u, c in counts.items() if c > 1], "a row is in the ledger twice"
    rows = {e["id"] for e in log if e["kind"] == "row"}
    assert rows <= set(counts), f"committed rows missing from the ledger: {sorted(rows - set(counts))}"
    lost = {e["id"] for e in log if e["kind"] in ("row lost", "row refused")} - rows
    assert not lost & set(counts), f"rows whose append stopped are in the ledger: {sorted(lost & set(counts))}"
    # The journal: every logged commit exactly once, each hold's entries contiguous, none after a lost lock.
    journal = [tuple(c) for c in read_json(f"{base}/summary/summary.json")["commits"]] \
        if exists(f"{base}/summary/summary.json") else []
    entries = collections.Counter((tok, i, k) for _, tok, i, k in journal)
    assert not [e for e, c in entries.items() if c > 1], "a commit is in the journal twice"
    commits = {(e["token"], e["i"], e["k"]) for e in log if e["kind"] == "commit"}
    assert commits <= set(entries), f"committed entries lost from the journal: {sorted(commits - set(entries))}"
    holds = {e["token"]: (e["writer"], e["incarnation"]) for e in log if e["kind"] == "hold"}
    unlogged = set(entries) - commits
    assert all(holds.get(tok) in killed for tok, _, _ in unlogged), f"entries nobody committed: {unlogged}"
    order = [tok for _, tok, _, _ in journal]
    starts = [tok for j, tok in enumerate(order) if j == 0 or order[j - 1] != tok]
    assert len(starts) == len(set(starts)), "a writer committed again after another writer's commits"
    for e in log:
        if e["kind"] == "commit lost":
            late = [c for c in journal if c[1] == e["token"] and (c[2], c[3]) >= (e["i"], e["k"])]
            assert not late, f"a writer committed after its lock was taken over: {late}"
    # The pool: every holder found the build the summary names (nobody deleted a committed build), and so does
    # the end; a clean-up that met LockLostError deleted nothing (the build named then is the one found next).
    broken = [e for e in log if e["kind"] == "hold" and not e["whole"]]
    assert not broken, f"a holder found the committed build gone: {broken[:3]}"
    named = read_json(f"{base}/summary/pool.json")["build"] if exists(f"{base}/summary/pool.json") else None
    assert named is None or exists(f"{base}/summary/{named}/x"), f"the pool's summary names {named}, which is gone"
    builds = {e["build"] for e in log if e["kind"] == "build"}
    assert named is None or named in builds or holds.get(read_json(f"{base}/summary/pool.json")["token"]) in killed
    take_overs = [line for line in run["outputs"].splitlines() if "taking over the stale lock" in line]
    if not live_taken_over:  # one machine and namespace: only killed writers' locks are ever taken over
        assert all("is gone" in line for line in take_overs), [t for t in take_overs if "is gone" not in t]
    return {"seconds": run["seconds"], "writers": len(run["names"]), "pauses": run["pauses"], "kills": run["kills"],
            "take_overs": len(take_overs), "rows": len(counts), "rows_logged": len(rows),
            "rows_lost": len({e["id"] for e in log if e["kind"] == "row lost"} - rows),
            "journal": len(journal), "commits_lost": sum(e["kind"] == "commit lost" for e in log),
            "window_pauses": run["windows"], "builds": len(builds), "holds_checked": sum(e["kind"] == "hold" for e in log),
            "deletes_lost": sum(e["kind"] == "delete lost" for e in log)}


def _report(name: str, numbers: dict) -> None:
    print(f"\nchaos {name}: {json.dumps(numbers)}")


def test_chaos_on_one_machine_never_takes_a_paused_writer_over_and_loses_no_commit(tmp_path, monkeypatch):
    monkeypatch.delenv("SER_LOCK_TAKE_OVER", raising=False)
    base, logs = str(tmp_path / "run"), tmp_path / "logs"
    logs.mkdir()
    run = _chaos(base, logs, namespace=False, seconds=5, kills=1, seed=1, take_overs=1)
    numbers = _check(base, logs, run, live_taken_over=False)
    _report("one machine", numbers)
    assert numbers["pauses"] >= 4 and numbers["take_overs"] >= 1 and numbers["window_pauses"] >= 2
    assert numbers["commits_lost"] == 0 and numbers["rows_lost"] == 0  # nobody alive ever lost a lock
    assert numbers["deletes_lost"] == 0


@pytest.mark.slow_e2e
def test_chaos_across_pid_namespaces_takes_paused_writers_over_and_they_commit_nothing_after(tmp_path,
                                                                                             monkeypatch):
    why = pid_namespace_refused()
    if why:
        pytest.skip(why)
    monkeypatch.delenv("SER_LOCK_TAKE_OVER", raising=False)
    base, logs = str(tmp_path / "run"), tmp_path / "logs"
    logs.mkdir()
    run = _chaos(base, logs, namespace=True, seconds=8, kills=0, seed=2, take_overs=2)
    numbers = _check(base, logs, run, live_taken_over=True)
    _report("PID namespaces", numbers)
    assert numbers["pauses"] >= 4 and numbers["take_overs"] >= 1
    assert numbers["deletes_lost"] >= 1  # a writer paused between commit and clean-up was taken over and stopped


@pytest.mark.slow_e2e
def test_chaos_on_s3_loses_no_commit(s3_bucket, tmp_path, monkeypatch):
    monkeypatch.delenv("SER_LOCK_TAKE_OVER", raising=False)
    base, logs = f"{s3_bucket}/run", tmp_path / "logs"
    logs.mkdir()
    run = _chaos(base, logs, namespace=False, seconds=15, kills=2, seed=3)
    numbers = _check(base, logs, run, live_taken_over=False)
    _report("S3", numbers)
    assert numbers["pauses"] >= 4 and numbers["commits_lost"] == 0


@pytest.mark.slow_e2e
def test_chaos_on_s3_across_pid_namespaces_a_writer_paused_between_commit_and_clean_up_deletes_nothing(
        s3_bucket, tmp_path, monkeypatch):
    """On S3 each lease is read back right before a commit or delete (no guard exists there), so the writers are
    paused only where they ask, between a pool commit and its clean-up, never inside a fence; each in a PID
    namespace of its own (another machine), a paused writer is taken over and its clean-up deletes nothing.
    Two writers: one waiter takes a paused writer over (two waiters taking one S3 lease over at once is a race of
    the take-over's own, not the fences')."""
    why = pid_namespace_refused()
    if why:
        pytest.skip(why)
    monkeypatch.delenv("SER_LOCK_TAKE_OVER", raising=False)
    base, logs = f"{s3_bucket}/run", tmp_path / "logs"
    logs.mkdir()
    run = _chaos(base, logs, namespace=True, seconds=10, kills=0, seed=4, take_overs=1, window_p=0.5,
                 window_pauses=2, pausers=0, freeze_beat=True, count=2)
    numbers = _check(base, logs, run, live_taken_over=True)
    _report("S3, PID namespaces", numbers)
    assert numbers["window_pauses"] >= 2 and numbers["take_overs"] >= 1
    assert numbers["deletes_lost"] >= 1  # a writer paused between commit and clean-up was taken over and stopped
