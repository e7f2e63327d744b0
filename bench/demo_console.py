"""What ``make demo`` prints: its line count, the lines that are not the platform's, and what comes last.

    .venv/bin/python -m bench.demo_console [--demo-dir outputs/bench_demo_console] [--out FILE]

Runs ``make demo`` as a user does (a fresh ``DEMO_DIR``, so every step runs: the encoder import is reused
when present), with its stdout and stderr captured apart, and sorts each line: ``make``'s own echo of a
command, a line Ray prints on its own (:data:`ser_models.console.RAY_LINE`: its log and native lines, lines
forwarded from workers), or the platform's. The goal is no Ray line and nothing after the last job's final
line.
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from bench.common import (
    RESULTS_DIR,
    LoadWindow,
    claim_workdir,
    fresh_workdir,
    machine_info,
    machine_markdown,
    md_table,
    scratch,
    write_results,
)
from ser_models.console import RAY_LINE

REPO = Path(__file__).resolve().parents[1]
RESULTS = RESULTS_DIR / "demo_console.md"
#: The demo's own report (``<DEMO_DIR>/evidence/report.md``), committed: README and the tutorial quote its table.
REPORT = RESULTS_DIR / "demo_report.md"


def sort_lines(stdout: str, stderr: str) -> dict[str, list[str]]:
    """``{"make": [...], "ray": [...], "ours": [...]}`` over both streams (stderr's lines tagged ``[stderr]``)."""
    out: dict[str, list[str]] = {"make": [], "ray": [], "ours": []}
    for stream, text in (("", stdout), ("[stderr] ", stderr)):
        for line in text.splitlines():
            kind = ("ray" if RAY_LINE.search(line) else
                    "make" if line.startswith((".venv/bin/", "make", "python3 -m venv")) else "ours")
            out[kind].append(stream + line)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo-dir", default="outputs/bench_demo_console")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    demo = claim_workdir(args.demo_dir)
    fresh_workdir(demo)
    for output in ("corpus", "pool", "feature_cache", "evidence"):
        scratch(demo / output)  # what `make demo` writes is this benchmark's: emptied on the next run
    load = LoadWindow()
    start = time.perf_counter()
    proc = subprocess.run(["make", "demo", f"DEMO_DIR={demo}"], cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    load.close()
    if proc.returncode != 0:
        raise SystemExit(f"make demo failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    lines = sort_lines(proc.stdout, proc.stderr)
    last = proc.stdout.rstrip().splitlines()[-1] if proc.stdout.strip() else ""
    rows = [["all lines (stdout + stderr)", len(proc.stdout.splitlines()) + len(proc.stderr.splitlines())],
            ["stderr lines", len(proc.stderr.splitlines())],
            ["make's echo of its commands", len(lines["make"])],
            ["the platform's lines", len(lines["ours"])],
            ["Ray's own lines (goal 0)", len(lines["ray"])]]
    shown = "\n".join(lines["ray"][:20]) or "(none)"
    text = f"""# `make demo`'s console

Command: `.venv/bin/python -m bench.demo_console` (runs `make demo DEMO_DIR=<fresh folder>`; {seconds / 60:.1f} min).

{machine_markdown(machine_info(), load)}

{md_table(["lines", "count"], rows)}

The last line printed: `{last}`

Ray's own lines, if any:

```text
{shown}
```
"""
    path = write_results(args.out, text)
    print(text)
    print(f"wrote {path}")
    report = (demo / "evidence" / "report.md").read_text().replace(str(demo), "<DEMO_DIR>")
    header = (f"<!-- written by `python -m bench.demo_console` from <DEMO_DIR>/evidence/report.md of the run above "
              f"({seconds / 60:.1f} min on {machine_info()['cpu']}) -->\n\n")
    print(f"wrote {write_results(Path(args.out).with_name(REPORT.name), header + report)}")


if __name__ == "__main__":
    main()
