"""A labelling round trip: from a rerun's start to the next ``to_label.csv``, without Ray and with it.

    .venv/bin/python -m bench.label_rerun [--n 2880] [--repeats 3] [--workdir /tmp/ser_bench/label_rerun]

A team labelling through request files fills rows of ``rounds/round=NNN/to_label.csv`` and reruns
``ser-models after``. This builds the demo pool (``make-demo-pool`` + ``prepare-pool``, as ``make demo`` does),
runs the tutorial's template (``--config my_data_after``: the pretrained Whisper-tiny encoder, frozen, its
features cached; the CSV oracle) until round 0 asks for labels, and fills that request with the true labels.
From that state, copied afresh for every run, it times ``ser-models after`` in a new process, from the process
start to the moment round 1's ``to_label.csv`` is written (the file's own timestamp), and to the process's exit:
``runtime.ray=auto`` (on this pool: in this process, no Ray) and ``runtime.ray=on`` (today's Ray path)
alternate, ``--repeats`` times each; the table gives the medians. Both must write the same request file.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.common import (
    DEFAULT_WORKDIR,
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    encoder_overrides,
    ensure_pool,
    loadavg,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
)

REPO = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "label_rerun.md"
#: The request the timed rerun writes (round 0's labels imported, round 1 trained and picked).
REQUEST = Path("rounds") / "round=001" / "to_label.csv"
#: The two ways a rerun runs, by ``runtime.ray``.
MODES = {"auto": "runtime.ray=auto (no Ray)", "on": "runtime.ray=on (Ray)"}


def after(argv: list[str]) -> subprocess.CompletedProcess:
    """``ser-models after --config my_data_after ARGV`` in a new process (this checkout's code)."""
    done = subprocess.run([sys.executable, "-m", "ser_models", "after", "--config", "my_data_after", *argv],
                          cwd=REPO, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise SystemExit(f"ser-models after {' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def fill(csv: Path, truth: dict[str, str]) -> None:
    """Type the true label into every row of a request file, as the labellers would."""
    import pandas as pd

    request = pd.read_csv(csv, dtype=str, keep_default_na=False)
    request["label"] = request["utt_id"].map(truth)
    request.to_csv(csv, index=False)


def waiting_state(work: Path, pool: Path, encoder: list[str]) -> tuple[Path, list[str]]:
    """The run at round 0 with its request filled (built with Ray, which encodes the cache on the first start).

    Returns:
        ``(run folder, the overrides every rerun takes besides its output_dir)``.
    """
    import pandas as pd

    state = scratch(work / "state")
    common = [f"pool_dir={pool}", f"active.feature_cache_dir={work / 'feature_cache'}", *encoder]
    truth = dict(pd.read_csv(pool.parent / "corpus" / "manifest.csv", dtype=str)[["utt_id", "label"]].values)
    argv = [*common, f"output_dir={state}", "runtime.ray=on"]
    after(argv)  # the cache, then the request for the initial set
    fill(state / "rounds" / "initial" / "to_label.csv", truth)
    after(argv)  # round 0 trains and asks for its picks
    fill(state / "rounds" / "round=000" / "to_label.csv", truth)
    return state, common


def timed_rerun(state: Path, run: Path, argv: list[str]) -> dict:
    """A fresh copy of ``state`` at ``run``, rerun there; seconds from the process start to the request, and to
    the exit."""
    scratch(run)
    shutil.copytree(state, run)
    start_ns = time.time_ns()
    t0 = time.perf_counter()
    done = after([*argv, f"output_dir={run}"])
    total = time.perf_counter() - t0
    request = run / REQUEST
    if not request.exists():
        raise SystemExit(f"the rerun wrote no {REQUEST}:\n{done.stdout[-3000:]}")
    return {"to_request": (request.stat().st_mtime_ns - start_ns) / 1e9, "to_exit": total,
            "no_ray": "runtime: this process, no Ray" in done.stdout, "request": request.read_bytes()}


def wait_for_quiet(limit: float, wait_s: float) -> None:
    """Wait up to ``wait_s`` seconds for the 1-minute load average to drop below ``limit`` (a line every minute);
    the run then goes on whatever the load, which the results file records."""
    deadline, said = time.monotonic() + wait_s, 0.0
    while loadavg()[0] >= limit and time.monotonic() < deadline:
        if time.monotonic() - said > 60:
            said = time.monotonic()
            print(f"waiting for a quieter machine: load {loadavg()[0]:.1f} >= {limit:g}", flush=True)
        time.sleep(5)


def imports_alone() -> float:
    """Seconds a new process takes to start and import the job (``ser_models.runs.after``): the floor of a rerun."""
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import ser_models.cli.command, ser_models.runs.after"], cwd=REPO,
                   check=True, timeout=600)
    return time.perf_counter() - t0


def table(times: dict[str, list[dict]], imports: list[float]) -> str:
    rows = []
    for mode, runs in times.items():
        req = [r["to_request"] for r in runs]
        rows.append([MODES[mode], "no" if all(r["no_ray"] for r in runs) else "yes",
                     f"**{statistics.median(req):.1f}**", ", ".join(f"{x:.1f}" for x in req),
                     f"{statistics.median(r['to_exit'] for r in runs):.1f}"])
    rows.append(["the imports alone (`import ser_models.runs.after` in a new process)", "no",
                 f"{statistics.median(imports):.1f}", ", ".join(f"{x:.1f}" for x in imports), "-"])
    return md_table(["rerun", "Ray started", "start to next to_label.csv, median (s)", "each run (s)",
                     "start to exit, median (s)"], rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2880, help="clips in the demo corpus (make demo's 2,880)")
    ap.add_argument("--repeats", type=int, default=3, help="timed reruns of each kind")
    ap.add_argument("--encoder", default="smart-turn", help="model.encoder.source (default: the pretrained one)")
    ap.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR / "label_rerun")
    ap.add_argument("--quiet-load", type=float, default=1.5,
                    help="before timing, wait until the 1-min load average is below this (the machine is shared)")
    ap.add_argument("--wait", type=float, default=0.0, help="seconds to wait at most for --quiet-load (0: no wait)")
    ap.add_argument("--quick", action="store_true", help="print the table only (no results file)")
    args = ap.parse_args(argv)
    work = claim_workdir(args.workdir)
    pool = ensure_pool(work / "pool", n=args.n)
    state, common = waiting_state(work, pool, encoder_overrides(args.encoder))
    wait_for_quiet(args.quiet_load, args.wait)
    load = LoadWindow()
    times: dict[str, list[dict]] = {mode: [] for mode in MODES}
    imports = []
    for _ in range(args.repeats):
        for mode in MODES:  # alternating: a change in the machine's load touches both alike
            times[mode].append(timed_rerun(state, work / "rerun", [*common, f"runtime.ray={mode}"]))
        imports.append(imports_alone())
    load.close()
    requests = {r["request"] for runs in times.values() for r in runs}
    if len(requests) != 1:
        raise SystemExit("the reruns wrote different request files: the paths must give the same picks")
    text = table(times, imports)
    print(text)
    if not args.quick:
        info = machine_info()
        train = int(json.loads((pool / "summary.json").read_text())["splits"]["train"]["clips"])
        path = write_results(RESULTS, f"""# A labelling round trip: rerun start to the next request

`python -m bench.label_rerun --n {args.n} --repeats {args.repeats} --encoder {args.encoder}`

{machine_markdown(info, load)}

The demo pool ({args.n:,} clips, {train:,} of them training clips), the tutorial's template (`--config
my_data_after`: the pretrained Whisper-tiny encoder, frozen, its features cached beside the pool; the CSV oracle),
waiting at round 0 with its request filled. Each rerun imports round 0's labels, finishes round 0, trains round 1
and writes round 1's request; every rerun wrote the same request file, byte for byte.

{text}
""")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
