"""The ``ser-models`` command: one subcommand per job, ``configs`` for the shipped recipes.

    ser-models --help                       # the jobs, grouped
    ser-models configs                      # the shipped recipes, by job
    ser-models configs --copy my_data_after my_after.yaml   # a recipe to edit, each key's help as a comment
    ser-models after --help                 # the keys a user sets, grouped (--help-all: every key)
    ser-models after --config demo_after pool_dir=outputs/demo/pool output_dir=runs/after1
    python -m ser_models after ...          # the same thing

Each subcommand runs the same ``main(argv)`` as ``python -m jobs.<job>`` in a clone (the job's code lives in
``ser_models.runs.<job>``), with the same keys, errors and exit codes. Help is read from ``job_keys.json`` so
that it starts without importing torch or Ray; ``python -m ser_models.cli.command --write-index`` rewrites that
file after a config changes (a test says when it is stale).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from unittest import mock

from ser_models import __version__
from ser_models.catalog.help import (
    HELP_FLAGS,
    INDEX_PATH,
    clip,
    entry_keys,
    help_request,
    load_index,
    recipe_keys,
    render,
    section_names,
)
from ser_models.catalog.jobs import JOBS, Job, job_name
from ser_models.catalog.recipes import recipe_job, recipe_summary, recipes
from ser_models.catalog.templates import copy_recipe
from ser_models.cli import run_job
from ser_models.exceptions import ConfigError

#: The console command's name (also the distribution's).
COMMAND = "ser-models"




def overview() -> str:
    """``ser-models --help``: the subcommands grouped, one line each."""
    lines = [f"usage: {COMMAND} JOB [CONFIG.yaml | --config RECIPE] [key.sub=value ...]",
             f"       {COMMAND} configs [JOB]      the shipped recipes",
             f"       {COMMAND} configs --copy NAME [PATH]   a recipe to edit, each key explained", ""]
    width = max(map(len, JOBS))
    for group in dict.fromkeys(j.group for j in JOBS.values()):
        lines.append(f"{group}:")
        lines += [f"  {name.ljust(width)}  {job.summary}" for name, job in JOBS.items() if job.group == group]
        lines.append("")
    lines.append(f"{COMMAND} JOB --help: the keys a user sets; --help-all: every key "
                 f"(docs: https://ser-models.readthedocs.io, or docs/jobs.md in a clone)")
    return "\n".join(lines)


def list_configs(job: str | None = None) -> str:
    """``ser-models configs [JOB]``: the shipped recipes by job, each with its first sentence."""

    module = None if job is None else job.replace("-", "_")
    rows = [(recipe_job(p) or "?", p.stem, recipe_summary(p)) for p in recipes()
            if module is None or recipe_job(p) == module]
    if not rows:
        return f"no recipes for {job!r}; jobs with recipes: " + ", ".join(
            sorted({job_name(recipe_job(p) or "?") for p in recipes()}))
    width = max(len(r[1]) for r in rows)
    lines = []
    for group in dict.fromkeys(r[0] for r in sorted(rows)):
        lines.append(f"{job_name(group)}:")
        lines += [clip(f"  {stem.ljust(width)}  {text}") for j, stem, text in sorted(rows) if j == group]
    lines.append(f"\nuse one: {COMMAND} JOB --config NAME [key=value ...]")
    return "\n".join(lines)


def help_text(name: str, argv: list[str], index: dict | None = None) -> str:
    """The help a job's ``argv`` asks for, from the committed index (no torch, no Ray)."""
    entry = (index or load_index())[name]
    prog = f"{COMMAND} {name}"
    if "text" in entry:
        return entry["text"].replace("{prog}", prog)
    flag, section = help_request(argv)
    return render(prog, JOBS[name].summary, entry_keys(entry), set(entry["common"]), flag, section)


def build_index() -> dict:
    """Every job's help entry from the live config classes (imports every job: seconds, torch included)."""
    from ser_models.config import set_invoked_as

    out = {}
    for name, job in JOBS.items():
        if job.schema is None:
            module = importlib.import_module(job.module)
            buf = io.StringIO()
            # argparse wraps at the terminal's width: the index must not depend on who wrote it
            with contextlib.redirect_stdout(buf), contextlib.suppress(SystemExit), \
                    mock.patch.dict(os.environ, {"COLUMNS": "80"}):
                set_invoked_as("{prog}")
                try:
                    module.main(["--help"])
                finally:
                    set_invoked_as(None)
            out[name] = index_entry(name.replace("-", "_"), job.summary, None, buf.getvalue())
        else:
            mod, cls = job.schema.split(":")
            out[name] = index_entry(name.replace("-", "_"), job.summary, getattr(importlib.import_module(mod), cls))
    return out


def index_entry(job: str, summary: str, schema: type | None, text: str | None = None) -> dict:
    """One job's entry of the index, from its live schema (or its argparse help ``text``)."""
    from ser_models.config import help_keys

    if schema is None:
        return {"summary": summary, "text": text}
    return {"summary": summary, "keys": [[k.name, k.default, k.effect, k.help] for k in help_keys(schema)],
            "common": sorted(recipe_keys(job))}


def write_index() -> None:
    INDEX_PATH.write_text(json.dumps(build_index(), indent=0, sort_keys=True) + "\n")


def _print(text: str) -> None:
    """Print, and end quietly when the reader went away (``ser-models after --help-all | head``)."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        raise SystemExit(0) from None


def _copy(rest: list[str]) -> None:
    """``ser-models configs --copy NAME [PATH]`` (exit 2 with one ``error:`` line when it cannot)."""
    if not rest or len(rest) > 2 or rest[0].startswith("-"):
        print(f"error: usage: {COMMAND} configs --copy NAME [PATH] (`{COMMAND} configs` lists the names)",
              file=sys.stderr)
        raise SystemExit(2)
    try:
        path = copy_recipe(rest[0], rest[1] if len(rest) > 1 else None)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    job = job_name(recipe_job(path.name) or recipe_job(rest[0]) or "JOB")
    print(f"wrote {path}: edit it, then run `{COMMAND} {job} {path}`")


def main(argv: list[str] | None = None) -> None:
    """The console script ``ser-models``."""
    from ser_models.config import set_invoked_as

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        _print(overview())
        raise SystemExit(0 if args else 2)
    if args[0] == "--version":
        print(f"{COMMAND} {__version__}")
        return
    if args[0] == "--write-index":
        write_index()
        print(f"wrote {INDEX_PATH}")
        return
    if args[0] == "configs":
        if len(args) > 1 and args[1] in ("-h", "--help"):
            print(f"usage: {COMMAND} configs [JOB]\n       {COMMAND} configs --copy NAME [PATH]\n\nThe shipped "
                  f"recipes (example configs), by job, each with its first sentence; use one with "
                  f"`{COMMAND} JOB --config NAME`.\n--copy NAME [PATH]: write recipe NAME to PATH (default "
                  f"./NAME.yaml; a folder: NAME.yaml in it) to edit, each key's help written above it as a comment; "
                  f"an existing file is never overwritten.")
            return
        if len(args) > 1 and args[1] == "--copy":
            _copy(args[2:])
            return
        job = args[1] if len(args) > 1 else None
        if job is not None and job.replace("_", "-") not in JOBS:
            print(f"error: unknown job {job!r}; `{COMMAND} --help` lists them", file=sys.stderr)
            raise SystemExit(2)
        _print(list_configs(job))
        return
    name, rest = args[0].replace("_", "-"), args[1:]
    if name not in JOBS:
        close = [n for n in JOBS if n.startswith(name[:3])]
        print(f"error: unknown job {args[0]!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")
              + f"; `{COMMAND} --help` lists them", file=sys.stderr)
        raise SystemExit(2)
    if any(a in HELP_FLAGS for a in rest):
        try:
            _print(help_text(name, rest))
        except ValueError as exc:  # an unknown help section
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        return
    set_invoked_as(f"{COMMAND} {name}")
    module = importlib.import_module(JOBS[name].module)
    run_job(lambda: module.main(rest))


__all__ = ["COMMAND", "JOBS", "Job", "build_index", "help_text", "list_configs", "main", "overview",
           "section_names", "write_index"]

if __name__ == "__main__":
    main()
