"""Mutation testing of the safety core: how many planted bugs the tests catch, per target.

``make mutation`` runs this. mutmut (3.x; ``[tool.mutmut]`` in pyproject.toml) copies the package into
``mutants/``, records which test reaches which function, then runs each mutant against only the tests that reach
it. This script picks the mutants of each target (its modules, or the functions of a module that hold the
target), runs them, and writes the report: per target the mutants, killed, survived, each survivor judged
(``bench/mutation_judgements.toml``: equivalent, with why) or open, and the score
``(killed + timed out) / (mutants run - equivalent)``.

Usage::

    python -m bench.mutation                      # every target, report to bench/results/mutation.md
    python -m bench.mutation --targets names,io   # some targets (the report keeps the others' last results)
    python -m bench.mutation --targets ledger --survivors  # only the last run's survivors, after adding tests
    python -m bench.mutation --report-only        # rewrite the report from the last run's results
    python -m bench.mutation --targets locks --sample 120 --seed 0  # a random sample of a slow target's mutants
    python -m bench.mutation --targets locks --full   # every mutant of a target sampled by default

A sampled target is scored on its sample alone (kept in ``mutants/bench-run.json``, reused by later runs), with a
95 % Wilson interval: the lock tests wait on purpose (watching a lock for ``stale_s``), so each of locks' 987
mutants costs 20-60 s and the whole target some hours on 2 cores.

A judgement names its mutant and the mutated line it expects (``line``): when the code changes and mutmut
numbers its mutants anew, a judgement whose line no longer matches is reported stale instead of applied.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import fnmatch
import json
import math
import os
import random
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
    "locks": ["ser_models.locks.folder_lock.*", "ser_models.locks.lock_file.*", "ser_models.locks.identity.*",
              "ser_models.locks.guard.*", "ser_models.locks.fence.*", "ser_models.locks.lease.*"],
    "ownership": ["ser_models.ownership.claims.*", "ser_models.ownership.recognise.*",
                  "ser_models.ownership.overlap.*", "ser_models.ownership.nested.*"],
    "io (atomic writes, deletes, swaps)": [
        f"ser_models.io.x_{name}__mutmut_*" for name in (
            "is_link", "delete_dir", "write_bytes_atomic", "write_file_atomic", "_temp_name", "_write_atomic",
            "copy_object", "_delete_quietly", "fsync_dir", "make_dirs", "fs_delete", "copy_dir", "_incoming",
            "complete_dir", "finish_dir_swap", "begin_dir_swap", "commit_dir_swap", "abort_dir_swap",
            "replace_dir", "set_delete_fence", "_retire", "_publish", "_publish_unfenced", "write_json_atomic",
            "write_parquet_atomic")],
    "ledger": ["ser_models.data.ledger.*"],
    "names": ["ser_models.names.*"],
    "pool build and update": ["ser_models.data.pool_update.*", "ser_models.data.pool_builds.*"],
    "feature-cache guard and keys": ["ser_models.scoring.cache_guard.*", "ser_models.encoders.content_hash.*"],
    "evidence statistics": [
        f"ser_models.planning.evidence.x_{name}__mutmut_*" for name in (
            "t_interval", "paired_t_test", "_check", "budget_table", "aubc", "aubc_table", "labels_to_reach",
            "_mean_reached", "label_savings")],
    "strategies: labelled clips excluded": ["ser_models.active.strategies.base.*"],
}

#: Targets scored on a random sample of this many mutants unless ``--full``: each lock mutant costs 20-60 s (the
#: lock tests wait on purpose), so all 987 would take some hours on 2 cores.
DEFAULT_SAMPLE = {"locks": 100}

#: mutmut's exit codes -> status (mutmut.stats.status_by_exit_code, grouped)
STATUS = {0: "survived", 1: "killed", 3: "killed", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not run",
          # The tests' process died of SIGKILL: a mutated failpoint (``failpoint(None)``) fires unarmed and kills
          # whatever reaches it, a crash every test run would show.
          -9: "killed"}


@dataclass
class Tally:
    """One target's counts and its survivors."""

    mutants: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    equivalent: list[tuple[str, str, str]] = field(default_factory=list)  # (name, line, why)
    open: list[tuple[str, str]] = field(default_factory=list)  # (name, line)
    stale: list[str] = field(default_factory=list)
    sampled_from: int | None = None  # the target's mutants in all, when ``mutants`` is a random sample of them

    @property
    def judged(self) -> int:
        """Mutants run and not judged equivalent: the score's denominator."""
        return self.mutants - self.counts.get("not run", 0) - len(self.equivalent)

    @property
    def score(self) -> float | None:
        """(killed + timed out) / (mutants run - equivalent); None when none ran. A timeout is a test that failed
        by hanging past pytest's limit: the mutant was caught."""
        return self.caught / self.judged if self.judged else None

    @property
    def caught(self) -> int:
        return self.counts.get("killed", 0) + self.counts.get("timeout", 0)

    @property
    def interval(self) -> tuple[float, float] | None:
        """The score's 95 % Wilson interval when the mutants are a sample (None for a whole target)."""
        return wilson(self.caught, self.judged) if self.sampled_from and self.judged else None


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95 % Wilson score interval of the proportion ``k / n`` (sound at 0 and n, unlike the normal one)."""
    centre, spread = (k + z * z / 2) / (n + z * z), z * math.sqrt(k * (n - k) / n + z * z / 4) / (n + z * z)
    return max(0.0, centre - spread), min(1.0, centre + spread)


def draw_sample(names: list[str], size: int, seed: int) -> list[str]:
    """A reproducible random sample of ``size`` mutant names (all of them when fewer)."""
    return sorted(random.Random(seed).sample(sorted(names), min(size, len(names))))


def plain_pytest() -> list[str]:
    """The pytest command mutmut runs a mutant's tests with (``[tool.mutmut]``'s arguments and marker), to which
    :func:`check_kill` adds the tests."""
    selection = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    marker = selection["pytest_add_cli_args_test_selection"]
    marker = marker[marker.index("-m") + 1] if "-m" in marker else ""
    return [sys.executable, "-m", "pytest", "-q", "-x", *selection.get("pytest_add_cli_args", []),
            *(["-m", marker] if marker else [])]


def check_kill(name: str, stats: dict, pytest_cmd: list[str], mutants: Path = MUTANTS, timeout_s: int = 600) -> bool:
    """Whether the mutant ``name`` is caught when the tests mutmut ran for it are run directly (``pytest_cmd``,
    :func:`plain_pytest`, in mutmut's copy, the mutant active through ``MUTANT_UNDER_TEST``): a kill confirmed
    outside mutmut's forkserver. A run past ``timeout_s`` counts as caught, as in the scores."""
    tests = stats["tests_by_mangled_function_name"].get(name.rsplit("__mutmut_", 1)[0], [])
    if not tests:
        return False
    cmd = [*pytest_cmd, *tests]
    try:
        done = subprocess.run(cmd, cwd=mutants, env={**os.environ, "MUTANT_UNDER_TEST": name},
                              capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return True
    return done.returncode != 0


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


def tally(codes: dict[str, int | None], judgements: dict[str, dict], mutants: Path = MUTANTS,
          samples: dict[str, list[str]] | None = None) -> dict[str, Tally]:
    """Counts per target; a survivor is equivalent when a judgement names it and its line still matches. A target
    in ``samples`` is counted on its sampled mutants alone."""
    cache: dict[str, dict[str, str]] = {}
    samples = samples or {}
    out = {t: Tally() for t in TARGETS}
    for target in samples:
        if target in out:
            out[target].sampled_from = sum(target_of(n) == target for n in codes)
    chosen = {t: set(v) for t, v in samples.items()}
    for name in sorted(codes):
        target = target_of(name)
        if target is None or (target in chosen and name not in chosen[target]):
            continue
        t = out[target]
        t.mutants += 1
        status = STATUS.get(codes[name], "suspicious")
        t.counts[status] = t.counts.get(status, 0) + 1
        if status not in ("survived", "suspicious", "no tests"):
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


def _score_text(t: Tally) -> str:
    if t.score is None:
        return "n/a"
    text = f"{100 * t.score:.1f} %"
    if t.interval:
        lo, hi = t.interval
        text += f" [{100 * lo:.0f}, {100 * hi:.0f}]"
    return text


def _run_line(run: dict) -> str:
    kind = {"full": "every mutant", "sample": "a random sample", "survivors": "the last survivors again",
            "full, locks sampled": "every mutant; locks a random sample"}.get(
        run.get("kind", "full"), run.get("kind", ""))
    return (f"- {', '.join(run['targets'])} ({kind}): {run['wall_s'] / 60:.1f} min. "
            + run.get("machine", "Machine: not recorded.").replace("\n", " "))


def write_report(tallies: dict[str, Tally], record: dict, path: Path = REPORT) -> None:
    """The markdown report: the table per target, the runs behind it, then each target's survivors (judged, then
    open)."""

    rows = []
    for target, t in tallies.items():
        if not t.mutants:
            continue
        mutants = f"{t.mutants} of {t.sampled_from}" if t.sampled_from else str(t.mutants)
        rows.append(f"| {target} | {mutants} | {t.counts.get('not run', 0)} | {t.counts.get('killed', 0)} | "
                    f"{t.counts.get('survived', 0)} | "
                    f"{t.counts.get('timeout', 0)} | {t.counts.get('no tests', 0)} | {len(t.equivalent)} | "
                    f"{len(t.open)} | {_score_text(t)} |")
    runs = [r for r in record.get("runs", []) if set(r["targets"]) & set(tallies)]
    lines = [
        "# Mutation testing of the safety core",
        "",
        "`make mutation` (`python -m bench.mutation`): mutmut 3.8.1 plants one small bug at a time (an operator, a "
        "constant, a string, a dropped argument) in the target's functions and runs the tests that reach that "
        "function. A mutant is killed when a test fails. Score = (killed + timed out) / (mutants run - "
        "equivalent): a timeout is a test that hung past pytest's limit under the mutant, so it was caught; a mutant "
        "no test reaches counts against the score. A target shown as \"N of M\" was scored on a random "
        "sample of N of its M mutants (seed in `mutants/bench-run.json`); its score carries the 95 % Wilson "
        "interval in brackets.",
        "",
        "| target | mutants | not run | killed | survived | timeout | no test reaches it | judged equivalent | open "
        "| score |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Globs of each target: `bench/mutation.py`; tests it runs: `[tool.mutmut]` in `pyproject.toml`.",
        "",
        "## Runs behind these results",
        "",
        *([_run_line(r) for r in runs] or ["- not recorded (report rewritten from earlier results)"]),
        "",
        *_kill_check_lines(record.get("kill_checks", [])),
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


def _kill_check_lines(checks: list[dict]) -> list[str]:
    """The report's section on kills checked outside mutmut (``--check-kills``), if any were."""
    if not checks:
        return []
    confirmed = sum(c["confirmed"] for c in checks)
    low, high = wilson(confirmed, len(checks))
    lines = ["## Kills checked outside mutmut", "",
             f"A random sample of {len(checks)} killed mutants, each rerun as a plain pytest process over the tests "
             f"mutmut ran for it, with the mutant active: {confirmed} of {len(checks)} failed again "
             f"({100 * confirmed / len(checks):.0f} % [{100 * low:.0f}, {100 * high:.0f}], 95 % Wilson). A kill "
             "that does not repeat was a failure of the run, not of the mutant, and inflates the score.", ""]
    lines += [f"- not repeated: `{c['name']}`" for c in checks if not c["confirmed"]]
    return lines + ([""] if confirmed < len(checks) else [])


def load_record(path: Path) -> dict:
    """The runs behind the results (``runs``) and the targets' samples (``samples``, ``seeds``); a record of the
    older one-run form is read as a list of one run."""
    record = json.loads(path.read_text()) if path.exists() else {}
    if "wall_s" in record:
        record = {"runs": [{**record, "kind": "full"}]}
    return {"runs": record.get("runs", []), "samples": record.get("samples", {}), "seeds": record.get("seeds", {}),
            "kill_checks": record.get("kill_checks", [])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="", help="comma-separated target names (or their first words); default all")
    ap.add_argument("--report-only", action="store_true", help="rewrite the report from the last run")
    ap.add_argument("--max-children", type=int, default=None, help="mutmut's parallel workers")
    ap.add_argument("--survivors", action="store_true",
                    help="run again only the chosen targets' survivors of the last run (after adding tests), and "
                         "their mutants not run yet")
    ap.add_argument("--sample", type=int, default=None,
                    help="score each chosen target on a random sample of this many of its mutants (kept, and used "
                         "by later runs and reports, until another --sample)")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed")
    ap.add_argument("--full", action="store_true",
                    help=f"run every mutant of the targets otherwise sampled ({', '.join(DEFAULT_SAMPLE)})")
    ap.add_argument("--check-kills", type=int, default=0, metavar="N",
                    help="rerun N random killed mutants of the chosen targets outside mutmut (plain pytest) and "
                         "report how many fail again")
    args = ap.parse_args(argv)
    chosen = [t for t in TARGETS if not args.targets or any(s.strip() and t.startswith(s.strip())
                                                            for s in args.targets.split(","))]
    if not chosen:
        ap.error(f"no target matches {args.targets!r}; targets: {', '.join(TARGETS)}")
    path = MUTANTS / "bench-run.json"  # the runs' machine, load and wall time, and the samples, for --report-only
    record = load_record(path)
    if not args.report_only:
        cmd = [str(Path(sys.executable).parent / "mutmut"), "run"]
        if args.max_children:
            cmd += ["--max-children", str(args.max_children)]
        codes = results(MUTANTS) if MUTANTS.is_dir() else {}
        sizes = {t: args.sample or (None if args.full else DEFAULT_SAMPLE.get(t)) for t in chosen}
        kind, names = "full", [g for t in chosen if not sizes[t] for g in TARGETS[t]]
        if any(sizes.values()) and not args.survivors:
            if not codes:
                ap.error("a sample needs mutmut's mutants: run a whole target first (e.g. --targets names)")
            kind = "sample" if all(sizes.values()) else "full, locks sampled"
            for t in (t for t in chosen if sizes[t]):
                sample = draw_sample([n for n in codes if target_of(n) == t], sizes[t], args.seed)
                record["samples"][t], record["seeds"][t] = sample, args.seed
                names += [n for n in sample if codes[n] is None]  # a sampled mutant already run keeps its result
        if args.survivors:
            kind = "survivors"
            # ... and the chosen mutants never run (a function changed since: mutmut made its mutants anew)
            names = [n for n, code in codes.items() if target_of(n) in chosen
                     and n in record["samples"].get(target_of(n), [n])
                     and STATUS.get(code, "suspicious") in ("survived", "suspicious", "no tests", "not run")]
        if not names:
            print("no mutants to run")
        else:
            info, load, start = machine_info(), LoadWindow(), time.monotonic()
            subprocess.run(cmd + names, cwd=ROOT, check=True)
            record["runs"].append({"targets": chosen, "kind": kind, "wall_s": time.monotonic() - start,
                                   "machine": machine_markdown(info, load.close())})
        for t in chosen if not args.survivors else ():
            if not sizes[t]:  # scored whole from now on
                record["samples"].pop(t, None)
                record["seeds"].pop(t, None)
        MUTANTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(record))
    if not MUTANTS.is_dir():
        print("no mutants/ folder: run without --report-only first", file=sys.stderr)
        return 2
    if args.check_kills:
        codes = results(MUTANTS)
        killed = [n for n, c in codes.items() if target_of(n) in chosen and STATUS.get(c) == "killed"
                  and n in record["samples"].get(target_of(n), [n])]
        stats = json.loads((MUTANTS / "mutmut-stats.json").read_text())
        record["kill_checks"], pytest_cmd = [], plain_pytest()
        for i, name in enumerate(draw_sample(killed, args.check_kills, args.seed), 1):
            record["kill_checks"].append({"name": name, "confirmed": check_kill(name, stats, pytest_cmd)})
            print(f"kill check {i}/{args.check_kills}: {name} "
                  f"{'failed again' if record['kill_checks'][-1]['confirmed'] else 'PASSED: not repeated'}",
                  flush=True)
        path.write_text(json.dumps(record))
    judgements = tomllib.loads(JUDGEMENTS.read_text()).get("mutant", {}) if JUDGEMENTS.exists() else {}
    tallies = tally(results(MUTANTS), judgements, MUTANTS, samples=record["samples"])
    # The report covers every target with results, whichever were run now: a run of some targets (or of their
    # survivors) updates their rows and keeps the others'.
    scored = [t for t in TARGETS if t in chosen or tallies[t].mutants]
    write_report({t: tallies[t] for t in scored}, record, REPORT)
    write_results(RESULTS, json.dumps({t: {"mutants": tallies[t].mutants, "sampled_from": tallies[t].sampled_from,
                                           **tallies[t].counts, "equivalent": len(tallies[t].equivalent),
                                           "open": len(tallies[t].open), "score": tallies[t].score,
                                           "interval": tallies[t].interval} for t in scored}, indent=1))
    for t in chosen:
        x = tallies[t]
        print(f"{t:40s} {x.mutants:5d} mutants  {x.counts.get('killed', 0):5d} killed  {len(x.open):4d} open  "
              f"score {_score_text(x)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
