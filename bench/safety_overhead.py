"""What the data-safety machinery costs in the demo: locks, ownership markers, ledger re-reads and the fsyncs
of atomic writes, as a share of the demo's wall time.

``make demo`` = build the demo pool (``jobs.prepare_pool``) + ``jobs.evidence`` on it. This benchmark runs both
jobs in this process (evidence with ``evidence.fan_out=false``, so every run's ledger appends and commits happen
here, where they can be timed) and adds up the wall time spent inside:

* ``FolderLock.acquire`` / ``release`` / ``assert_held`` (every lock: pool, run folders, feature cache, ledger);
* ``ownership`` claims and marker reads and writes (``claim_output``, ``check_output``, ``open_output``,
  ``claim``, ``check_claim``, ``record``, ``read_marker``, ``replace_files``);
* fencing: the token read before each commit and taking the folder's guard (``flock``) around it;
* the ledger's re-read of its file under the append lock;
* every ``os.fsync`` and ``os.replace`` (what an atomic write adds over a plain one: the temp file is an
  ordinary write).

Nested calls count once (the outermost). The sum is an upper bound on what a run without the machinery would
save: the alternative is not free (a plain write still writes the bytes). Ray worker processes (pool decode
tasks, cache actors) are not instrumented: they write Parquet shards, which the machinery does not touch.

Usage::

    python -m bench.safety_overhead                       # the demo's 2,880 clips and 10 seeds
    python -m bench.safety_overhead --n 720 --seeds 2     # a quick run
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

from bench.common import (
    DEFAULT_WORKDIR,
    REPO,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    machine_info,
    machine_markdown,
    scratch,
)

ENCODER_DIR = REPO / ".cache" / "encoders" / "smart-turn-v3.2-whisper-tiny"
#: The most the machinery may cost, as a share of the demo's wall time.
GOAL_SHARE = 0.02


class SafetyTimer:
    """Adds up the wall time spent in wrapped functions, counting nested wrapped calls once."""

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._local = threading.local()

    def wrap(self, owner, name: str, key: str, only_in: str | None = None) -> None:
        """Replace ``owner.name`` by a timed version (``only_in``: count only inside a call marked so)."""
        fn = getattr(owner, name)
        timer = self

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            local = timer._local
            if only_in and not getattr(local, only_in, False):
                return fn(*args, **kwargs)
            if getattr(local, "depth", 0):
                return fn(*args, **kwargs)
            local.depth = 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                local.depth = 0
                timer.seconds[key] = timer.seconds.get(key, 0.0) + time.perf_counter() - t0
                timer.calls[key] = timer.calls.get(key, 0) + 1

        setattr(owner, name, timed)
        if isinstance(owner, types.ModuleType):
            # A module that imported the function by name (``from ser_models.ownership import claim_output``, or
            # the package re-exporting it) holds its own binding: time the calls made through those too.
            for module in list(sys.modules.values()):
                if module is not owner and getattr(module, name, None) is fn:
                    setattr(module, name, timed)

    def mark(self, owner, name: str, flag: str) -> None:
        """Set the thread-local ``flag`` while ``owner.name`` runs (for ``wrap(..., only_in=flag)``)."""
        fn = getattr(owner, name)
        local = self._local

        @functools.wraps(fn)
        def marked(*args, **kwargs):
            setattr(local, flag, True)
            try:
                return fn(*args, **kwargs)
            finally:
                setattr(local, flag, False)

        setattr(owner, name, marked)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())


def instrument() -> SafetyTimer:
    """Wrap the machinery's entry points in this process."""
    from ser_models.data.ledger import LabelLedger
    from ser_models.locks import folder_lock as locks
    from ser_models.locks import guard as lock_guard
    from ser_models.ownership import claims as ownership

    timer = SafetyTimer()
    for name in ("acquire", "release", "assert_held"):
        timer.wrap(locks.FolderLock, name, f"lock {name}")
    timer.wrap(locks.FolderLock, "_check_token", "fencing: the token read before a commit")
    timer.wrap(lock_guard, "_share", "fencing: the folder guard (flock) taken")
    for name in ("claim_output", "check_output", "claim_file", "open_output", "claim", "check_claim", "record",
                 "read_marker", "replace_files"):
        timer.wrap(ownership, name, "ownership claims and markers")
    timer.mark(LabelLedger, "append", "in_append")
    timer.wrap(LabelLedger, "_load", "ledger re-read under its lock", only_in="in_append")
    timer.wrap(os, "fsync", "fsync (atomic writes)")
    timer.wrap(os, "replace", "rename (atomic writes)")
    return timer


def ensure_corpus(corpus: Path, n: int) -> Path:
    """The demo corpus (``jobs.make_demo_pool``), generated in a subprocess when missing."""
    if not (corpus / "manifest.csv").exists():
        subprocess.run([sys.executable, "-m", "jobs.make_demo_pool", str(corpus), "--n", str(n), "--seed", "0",
                        "--workers", "2"], check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return corpus


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2880, help="demo clips (make demo: 2880)")
    ap.add_argument("--seeds", type=int, default=10, help="evidence seeds (make demo: 10)")
    ap.add_argument("--workdir", default=str(DEFAULT_WORKDIR / "safety_overhead"))
    ap.add_argument("--encoder", default=str(ENCODER_DIR), help="model.encoder.source (the demo's bundled encoder)")
    ap.add_argument("--results", default=str(RESULTS_DIR / "safety_overhead.md"))
    args = ap.parse_args(argv)

    work = claim_workdir(args.workdir)
    corpus = ensure_corpus(work / f"corpus-{args.n}", args.n)
    for name in ("pool", "evidence", "feature_cache"):  # this benchmark's own outputs, rebuilt each run
        scratch(work / name)
    if not Path(args.encoder).exists():
        subprocess.run([sys.executable, "-m", "jobs.import_encoder", "smart-turn", args.encoder], check=True,
                       cwd=REPO)

    from ser_models.runs import evidence, prepare_pool

    timer = instrument()
    load = LoadWindow()
    walls: dict[str, float] = {}
    parts: dict[str, float] = {}
    t0 = time.perf_counter()
    prepare_pool.main(["jobs/configs/prepare_pool_demo.yaml", f"manifest={corpus / 'manifest.csv'}",
                       f"output_dir={work / 'pool'}"])
    walls["prepare_pool"] = time.perf_counter() - t0
    parts["prepare_pool"] = timer.total
    t0 = time.perf_counter()
    evidence.main(["jobs/configs/demo_evidence.yaml", f"pool_dir={work / 'pool'}",
                   f"model.encoder.source={args.encoder}", f"active.feature_cache_dir={work / 'feature_cache'}",
                   f"output_dir={work / 'evidence'}", f"evidence.seeds={args.seeds}", "evidence.fan_out=false"])
    walls["evidence"] = time.perf_counter() - t0
    parts["evidence"] = timer.total - parts["prepare_pool"]
    load.close()

    wall = sum(walls.values())
    result = {"n": args.n, "seeds": args.seeds, "walls": walls, "safety_by_job": parts,
              "seconds": timer.seconds, "calls": timer.calls, "total": timer.total, "share": timer.total / wall,
              "machine": machine_info(), "load": [load.before, load.after]}
    Path(args.results).write_text(report(result, load))
    print(json.dumps({k: result[k] for k in ("walls", "total", "share")}, indent=1))
    return result


def report(r: dict, load: LoadWindow) -> str:
    wall = sum(r["walls"].values())
    lines = ["# What data safety costs in the demo", "",
             f"`python -m bench.safety_overhead --n {r['n']} --seeds {r['seeds']}`: the demo's two jobs "
             "(`jobs.prepare_pool`, then `jobs.evidence` with `evidence.fan_out=false`) in one process, with the "
             "wall time inside locks, ownership markers, the ledger's re-read and the fsyncs and renames of "
             "atomic writes added up (an upper bound on what dropping them would save).", "",
             machine_markdown(r["machine"], load), "",
             "| job | wall s | inside the safety machinery, s | share |", "|---|---|---|---|"]
    for job, w in r["walls"].items():
        s = r["safety_by_job"][job]
        lines.append(f"| {job} | {w:.1f} | {s:.2f} | {100 * s / w:.2f} % |")
    lines += [f"| **both** | **{wall:.1f}** | **{r['total']:.2f}** | **{100 * r['share']:.2f} %** |", "",
              "| part | calls | s |", "|---|---|---|"]
    lines += [f"| {k} | {r['calls'][k]} | {v:.3f} |" for k, v in sorted(r["seconds"].items(), key=lambda kv: -kv[1])]
    verdict = "within" if r["share"] <= GOAL_SHARE else "above"
    lines += ["", f"The machinery takes {100 * r['share']:.2f} % of the demo's wall time, {verdict} the "
                  f"{100 * GOAL_SHARE:.0f} % it may cost. The lock files' heartbeat threads (one refresh every "
                  "few seconds) run beside the work and are not counted.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
