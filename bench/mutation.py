"""Mutation testing of the safety core: how many planted bugs the tests catch, per target.

``make mutation`` runs this. mutmut (3.x; ``[tool.mutmut]`` in pyproject.toml) copies the package into
``mutants/``, records which test reaches which function, then runs each mutant against only the tests that reach
it. This script picks the mutants of each target (its modules, or the functions of a module that hold the
target), runs them, and writes the report: per target the mutants, killed, survived, each survivor judged
(``bench/mutation_judgements.toml``: equivalent, with why) or open, and the score
``killed / (mutants run - equivalent)``.

Usage::

    python -m bench.mutation                      # every target, report to bench/results/mutation.md
    python -m bench.mutation --targets names,io   # some targets (the report covers those)
    python -m bench.mutation --targets ledger --survivors  # only the last run's survivors, after adding tests
    python -m bench.mutation --report-only        # rewrite the report from the last run's results

A judgement names its mutant and the mutated line it expects (``line``): when the code changes and mutmut
numbers its mutants anew, a judgement whose line no longer matches is reported stale instead of applied.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

from bench.common import LoadWindow, machine_info, machine_markdown, write_results

ROOT = Path(__file__).resolve().parents[1]
MUTANTS = ROOT / "mutants"
JUDGEMENTS = ROOT / "bench" / "mutation_judgements.toml"
REPORT = ROOT / "bench" / "results" / "mutation.md"
RESULTS = ROOT / "bench" / "results" / "mutation.json"

#: target -> mutant-name globs (``<module>.x_<function>__mutmut_<n>``; methods ``xǁClassǁmethod``). A whole
#: module where all of it keeps the target; named functions where the module also holds other things (io's
#: reads and listings, evidence's tables and plots).
TARGETS: dict[str, list[str]] = {
    "locks": ["ser_models.locks.*", "ser_models.lock_identity.*", "ser_models.lock_guard.*"],
    "ownership": ["ser_models.ownership.*", "ser_models.overlap.*"],
    "io (atomic writes, deletes, swaps)": [
        f"ser_models.io.x_{name}__mutmut_*" for name in (
            "is_link", "delete_dir", "write_bytes_atomic", "write_file_atomic", "_temp_name", "_write_atomic",
            "copy_object", "_delete_quietly", "fsync_dir", "make_dirs", "fs_delete", "copy_dir", "_incoming",
            "complete_dir", "finish_dir_swap", "begin_dir_swap", "commit_dir_swap", "abort_dir_swap",
            "replace_dir", "_retire", "_publish", "write_json_atomic", "write_parquet_atomic")],
    "ledger": ["ser_models.data.ledger.*"],
    "names": ["ser_models.names.*"],
    "pool build and update": ["ser_models.data.pool_update.*", "ser_models.data.pool_builds.*"],
    "feature-cache guard and keys": ["ser_models.scoring.cache_guard.*", "ser_models.encoders.content_hash.*"],
    "evidence statistics": [
        f"ser_models.active.evidence.x_{name}__mutmut_*" for name in (
            "t_interval", "paired_t_test", "_check", "budget_table", "aubc", "aubc_table", "labels_to_reach",
            "_mean_reached", "label_savings")],
    "strategies: labelled clips excluded": ["ser_models.active.strategies.base.*"],
}

#: mutmut's exit codes -> status (mutmut.stats.status_by_exit_code, grouped)
STATUS = {0: "survived", 1: "killed", 3: "killed", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not run"}


@dataclass
class Tally:
    """One target's counts and its survivors."""

    mutants: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    equivalent: list[tuple[str, str, str]] = field(default_factory=list)  # (name, line, why)
    open: list[tuple[str, str]] = field(default_factory=list)  # (name, line)
    stale: list[str] = field(default_factory=list)

    @property
    def score(self) -> float | None:
        """killed / (mutants run - equivalent); None when none ran."""
        judged = self.mutants - self.counts.get("not run", 0) - len(self.equivalent)
        return self.counts.get("killed", 0) / judged if judged else None


def target_of(name: str) -> str | None:
    for target, globs in TARGETS.items():
        if any(fnmatch.fnmatchcase(name, g) for g in globs):
            return target
    return None


def results(mutants: Path = MUTANTS) -> dict[str, int | None]:
    """Every mutant mutmut made (name -> exit code, None when not run), from ``mutants/**/*.py.meta``."""
    out: dict[str, int | None] = {}
    for meta in mutants.rglob("*.py.meta"):
        out.update(json.loads(meta.read_text())["exit_code_by_key"])
    return out


def _functions(module: str, mutants: Path) -> dict[str, str]:
    path = mutants / (module.replace(".", "/") + ".py")
    source = path.read_text()
    lines = source.splitlines()  # once: ast.get_source_segment splits the whole file at every call
    return {node.name: "\n".join(lines[node.lineno - 1:node.end_lineno]) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)}


def mutated_line(name: str, cache: dict[str, dict[str, str]], mutants: Path = MUTANTS) -> str:
    """The mutant's changed line(s) as ``- old / + new`` (stripped), read from mutmut's copy of the module."""
    module, _, function = name.rpartition(".")
    if module not in cache:
        cache[module] = _functions(module, mutants)
    funcs = cache[module]
    base = function.rsplit("__mutmut_", 1)[0]
    orig = funcs.get(base + "__mutmut_orig", "").replace(base + "__mutmut_orig", base).splitlines()
    new = funcs.get(function, "").replace(function, base).splitlines()
    diff = [d for d in difflib.unified_diff(orig, new, lineterm="", n=0) if d[:1] in "+-" and d[:3] not in
            ("+++", "---")]
    return " / ".join(d[0] + " " + d[1:].strip() for d in diff)


def tally(codes: dict[str, int | None], judgements: dict[str, dict], mutants: Path = MUTANTS) -> dict[str, Tally]:
    """Counts per target; a survivor is equivalent when a judgement names it and its line still matches."""
    cache: dict[str, dict[str, str]] = {}
    out = {t: Tally() for t in TARGETS}
    for name in sorted(codes):
        target = target_of(name)
        if target is None:
            continue
        t = out[target]
        t.mutants += 1
        status = STATUS.get(codes[name], "suspicious")
        t.counts[status] = t.counts.get(status, 0) + 1
        if status not in ("survived", "timeout", "suspicious", "no tests"):
            continue
        line = mutated_line(name, cache, mutants)
        judged = judgements.get(name)
        if judged and judged.get("line") == line:
            t.equivalent.append((name, line, judged["why"]))
        else:
            if judged:
                t.stale.append(name)
            t.open.append((name, line))
    return out


def write_report(tallies: dict[str, Tally], run: dict, path: Path = REPORT) -> None:
    """The markdown report: the table per target, then each target's survivors (judged, then open)."""

    rows = []
    for target, t in tallies.items():
        if not t.mutants:
            continue
        score = "n/a" if t.score is None else f"{100 * t.score:.1f} %"
        rows.append(f"| {target} | {t.mutants} | {t.counts.get('not run', 0)} | {t.counts.get('killed', 0)} | "
                    f"{t.counts.get('survived', 0)} | "
                    f"{t.counts.get('timeout', 0)} | {t.counts.get('no tests', 0)} | {len(t.equivalent)} | "
                    f"{len(t.open)} | {score} |")
    lines = [
        "# Mutation testing of the safety core",
        "",
        "`make mutation` (`python -m bench.mutation`): mutmut 3.8.1 plants one small bug at a time (an operator, a "
        "constant, a string, a dropped argument) in the target's functions and runs the tests that reach that "
        "function. A mutant is killed when a test fails. Score = killed / (mutants run - equivalent); a timeout "
        "and a mutant no test reaches count against it.",
        "",
        run.get("machine", "Machine: not recorded."),
        "",
        f"Wall time of the run: {run['wall_s'] / 60:.1f} min (targets run: {', '.join(run['targets'])})."
        if run.get("wall_s") else "Wall time: not recorded (report rewritten from earlier results).",
        "",
        "| target | mutants | not run | killed | survived | timeout | no test reaches it | judged equivalent | open "
        "| score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Globs of each target: `bench/mutation.py`; tests it runs: `[tool.mutmut]` in `pyproject.toml`.",
        "",
    ]
    for target, t in tallies.items():
        if t.equivalent:
            lines += [f"## {target}: survivors judged equivalent", ""]
            lines += [f"- `{n}` `{line}`: {why}" for n, line, why in t.equivalent]
            lines.append("")
        if t.open:
            lines += [f"## {target}: survivors not yet killed or judged", ""]
            lines += [f"- `{n}` `{line}`" + (" (judgement stale)" if n in t.stale else "") for n, line in t.open]
            lines.append("")
    write_results(path, "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="", help="comma-separated target names (or their first words); default all")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the last run")
    ap.add_argument("--max-children", type=int, default=None, help="mutmut's parallel workers")
    ap.add_argument("--survivors", action="store_true",
                    help="run again only the chosen targets' survivors of the last run (after adding tests); the "
                         "report keeps the last full run's wall time")
    args = ap.parse_args(argv)
    chosen = [t for t in TARGETS if not args.targets or any(s.strip() and t.startswith(s.strip())
                                                            for s in args.targets.split(","))]
    if not chosen:
        ap.error(f"no target matches {args.targets!r}; targets: {', '.join(TARGETS)}")
    record = MUTANTS / "bench-run.json"  # the last run's machine, load and wall time, for --report-only
    if not args.report_only:
        cmd = [str(Path(sys.executable).parent / "mutmut"), "run"]
        if args.max_children:
            cmd += ["--max-children", str(args.max_children)]
        if args.survivors:
            again = [n for n, code in results().items() if target_of(n) in chosen
                     and STATUS.get(code, "suspicious") in ("survived", "timeout", "suspicious", "no tests")]
            if not again:
                print("no survivors to run again")
            else:
                subprocess.run(cmd + again, cwd=ROOT, check=True)
        else:
            cmd += [g for t in chosen for g in TARGETS[t]]
            info, load, start = machine_info(), LoadWindow(), time.monotonic()
            subprocess.run(cmd, cwd=ROOT, check=True)
            run = {"wall_s": time.monotonic() - start, "targets": chosen,
                   "machine": machine_markdown(info, load.close())}
            record.write_text(json.dumps(run))
    if not MUTANTS.is_dir():
        print("no mutants/ folder: run without --report-only first", file=sys.stderr)
        return 2
    run = json.loads(record.read_text()) if record.exists() else {}
    judgements = tomllib.loads(JUDGEMENTS.read_text()).get("mutant", {}) if JUDGEMENTS.exists() else {}
    tallies = tally(results(), judgements)
    write_report({t: tallies[t] for t in chosen}, run)
    write_results(RESULTS, json.dumps({t: {"mutants": tallies[t].mutants, **tallies[t].counts,
                                       "equivalent": len(tallies[t].equivalent), "open": len(tallies[t].open),
                                       "score": tallies[t].score} for t in chosen}, indent=1))
    for t in chosen:
        x = tallies[t]
        print(f"{t:40s} {x.mutants:5d} mutants  {x.counts.get('killed', 0):5d} killed  {len(x.open):4d} open  "
              f"score {'n/a' if x.score is None else f'{100 * x.score:.1f} %'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
