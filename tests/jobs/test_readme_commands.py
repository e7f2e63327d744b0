"""The commands of the README, of the docs site (``docs/*.md``), of ``platform/README.md`` and of the shipped
recipes' header comments work as written.

Every job command is checked against the real CLI: ``ser-models JOB ...`` (also as ``.venv/bin/ser-models``
or ``python -m ser_models``), a clone's ``python -m jobs.<job> ...``, a ``platform/submit.sh`` submission and
``python -m bench.*``: the job's own ``main`` parses the exact argv (its config file or ``--config RECIPE``,
every dotted override, every flag, ``--print-config``) and is stopped right after parsing, so nothing runs.
Sweep configs are also planned (base config and search keys validated). ``ser-models`` on its own (``--help``,
``configs [JOB]``, ``JOB --help [SECTION]``) runs, since it only prints; ``ser-models-serve MODEL FILE...`` is
parsed by its own parser. A misspelt job, subcommand or key fails (``test_an_invented_command_fails``). The
README's ``make`` targets exist. Then the docs' sweep command runs as written, from a folder laid out as
``make demo`` leaves it (relative paths, the pretrained encoder, a tiny budget), and its ``best.yaml`` is rerun
as the docs say (with a tiny random Whisper in the encoder's folder: paths are under test).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest

from ser_models.catalog.jobs import JOBS
from ser_models.cli.command import HELP_FLAGS

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# The README, every page of the docs site and the cluster guide: their commands must work as written too.
DOCS = [README, *sorted((REPO / "docs").glob("*.md")), REPO / "platform" / "README.md"]
# The shipped recipes: each header comment holds the commands that run it.
RECIPES = sorted((REPO / "ser_models" / "configs").glob("*.yaml"))

#: ``ser-models`` as the pages write it: the console script, the venv's copy, and the module form.
COMMAND_FORMS = (["ser-models"], [".venv/bin/ser-models"], ["python", "-m", "ser_models"])
SERVE_FORMS = (["ser-models-serve"], [".venv/bin/ser-models-serve"])
#: The "module" of a command ``ser-models`` answers itself (overview, recipes, a job's help): it only prints.
COMMAND = "ser_models.cli.command"
SERVE = "ser_models.cli.serve"
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


class _Parsed(Exception):  # noqa: N818 - a signal, not an error
    """Raised by the patched parsers: the argv was accepted; ``value`` is what the job parsed."""

    def __init__(self, value):
        super().__init__("parsed")
        self.value = value


def shell_commands(text: str) -> list[str]:
    """The commands of a Markdown text's bash code blocks: continuation lines joined, comments dropped,
    ``[optional]`` notation removed, shell loops split into their commands."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        commands += _commands_of(block)
    return commands


def header_commands(path: Path) -> list[str]:
    """The commands of a recipe's leading comment (``#   ser-models ...``, continuation lines joined)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        match = re.match(r"^#\s{2,}(.*)$", line)  # a command is indented under its prose
        lines.append(match[1] if match else "")
    return [c for c in _commands_of("\n".join(lines)) if _job_argv(c) is not None]


def _commands_of(block: str) -> list[str]:
    commands = []
    joined = re.sub(r"\\\n\s*", " ", block)
    for line in joined.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        line = re.sub(r"\s\[[^\]]*\]", "", line)  # [--metric ccc_valence]: an optional flag
        if not line or line.startswith("#"):
            continue
        for part in re.split(r";\s*(?:do|done)?\s*|\bdo\b", line):
            part = part.strip()
            if part and not part.startswith(("for ", "done")):
                commands.append(part)
    return commands


def _subcommand(args: list[str]) -> tuple[str, list[str]]:
    """``(module, argv)`` of ``ser-models ARGS``: a job's own module and its argv, or :data:`COMMAND` for what
    the command answers itself (and for a name that is no job, which it refuses)."""
    if args and args[0] in JOBS and not any(a in HELP_FLAGS for a in args[1:]):
        return JOBS[args[0]].module, args[1:]
    return COMMAND, args


def _job_argv(command: str) -> tuple[str, list[str]] | None:
    """``(module, argv)`` of a job command, else None (``$(seq A B)`` expanded as bash does; leading
    ``VAR=value`` assignments dropped)."""
    command = re.sub(r"\$\(seq (\d+) (\d+)\)",
                     lambda m: " ".join(map(str, range(int(m[1]), int(m[2]) + 1))), command)
    tokens = shlex.split(command)
    while tokens and ENV_ASSIGNMENT.match(tokens[0]):
        tokens = tokens[1:]
    for form in COMMAND_FORMS:
        if tokens[:len(form)] == form:
            return _subcommand(tokens[len(form):])
    for form in SERVE_FORMS:
        if tokens[:len(form)] == form:
            return SERVE, tokens[len(form):]
    if tokens[:2] == ["python", "-m"]:
        return tokens[2], tokens[3:]
    if tokens and tokens[0] == "platform/submit.sh":
        rest = tokens[1:]
        while rest and rest[0].startswith("--"):  # submit.sh's own options
            rest = rest[2:] if rest[0] in ("--address", "--submission-id") else rest[1:]
        job, args = rest[0], rest[1:]
        if job not in JOBS:  # submit.sh takes prepare_pool too; the pages write the subcommand, prepare-pool
            return COMMAND, [job, *args]
        return JOBS[job].module, args[1:] if args[:1] == ["--"] else args
    return None


def _parse_only(module_name: str, argv: list[str], monkeypatch):
    """Run the module's ``main(argv)`` until its arguments are parsed; return what it parsed."""
    # The job's main, in the module that defines it (a jobs/ shell hands on ser_models.runs.<job>.main).
    module = importlib.import_module(importlib.import_module(module_name).main.__module__)
    real_parse = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise _Parsed(real_parse(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)
    if hasattr(module, "parse_job_args"):
        real_job_args = module.parse_job_args

        def parse_job_args(*a, **k):
            try:
                value = real_job_args(*a, **k)
            except SystemExit as done:  # --print-config printed the resolved config: it parsed
                if done.code not in (0, None):
                    raise
                raise _Parsed("printed") from None
            raise _Parsed(value)

        monkeypatch.setattr(module, "parse_job_args", parse_job_args)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            module.main(argv)
    except _Parsed as parsed:
        return parsed.value
    finally:
        monkeypatch.undo()
    raise AssertionError(f"{module_name}.main returned without parsing its arguments")


def _command_only(argv: list[str]) -> str:
    """``ser-models ARGV`` for what the command answers itself; its output. Fails on a name that is no job
    (the pages write the dashed subcommand) and on any exit but 0."""
    from ser_models.cli.command import main

    head = argv[0] if argv else None
    if argv[:2] == ["configs", "--copy"]:  # writes a file: run in a fresh folder, where the page's path is new
        return _copy_only(argv, main)
    if head == "configs":
        assert len(argv) <= 2 and (len(argv) == 1 or argv[1] in JOBS), f"ser-models {shlex.join(argv)}: no such job"
    elif head not in (None, "-h", "--help", "--version"):
        assert head in JOBS, f"ser-models {head}: no such job (`ser-models --help` lists them, dashed)"
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as done:
            code = done.code
    assert code in (0, None), f"ser-models {shlex.join(argv)}: exit {code}: {err.getvalue().strip()}"
    return out.getvalue()


def _copy_only(argv: list[str], main) -> str:
    """``ser-models configs --copy NAME [PATH]`` run in an empty temporary folder (PATH's folders made first, as
    the page's earlier steps do); the copy must be written."""
    import os
    import tempfile

    assert 3 <= len(argv) <= 4, f"ser-models {shlex.join(argv)}: configs --copy takes NAME [PATH]"
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        dest = Path(argv[3] if len(argv) == 4 else f"{argv[2]}.yaml")
        os.makedirs(dest.parent, exist_ok=True)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            main(argv)
        assert dest.is_file(), f"ser-models {shlex.join(argv)} wrote nothing at {dest}"
    return out.getvalue()


def _check(module: str, argv: list[str], monkeypatch):
    """What the real CLI makes of ``argv``; raises where it refuses it."""
    if module == COMMAND:
        return _command_only(argv)
    parsed = _parse_only(module, argv, monkeypatch)
    if module == SERVE:
        assert parsed.model and parsed.files, "ser-models-serve needs a model and at least one file"
    return parsed


def _readme_job_commands() -> list[tuple[str, str, list[str]]]:
    out = []
    for doc in DOCS:
        for command in shell_commands(doc.read_text()):
            parsed = _job_argv(command)
            if parsed is not None:
                out.append((command, *parsed))
    for recipe in RECIPES:
        out += [(command, *_job_argv(command)) for command in header_commands(recipe)]
    return out


def test_readme_blocks_are_found():
    assert {"make demo", "make test"} <= set(shell_commands(README.read_text()))
    commands = [c for doc in DOCS for c in shell_commands(doc.read_text())]
    jobs = _readme_job_commands()
    assert len(jobs) > 30
    modules = {m for _, m, _ in jobs}
    assert {JOBS["sweep"].module, COMMAND, SERVE} <= modules
    # the shell loop's command is found, continuation lines joined
    assert any(c.startswith("ser-models prepare-pool") and "manifest=outputs/$c/corpus" in c for c in commands)
    # every recipe's header holds a command of its own job, found here
    assert {p.stem for p in RECIPES} <= {a[a.index("--config") + 1] for _, _, a in jobs if "--config" in a}
    # one name: the pages write the command, not a clone's module path
    assert not [c for c, m, _ in jobs if m.startswith("jobs.")], "write `ser-models JOB`, not `python -m jobs.JOB`"


@pytest.mark.parametrize("command, module, argv", _readme_job_commands(), ids=lambda v: v if isinstance(v, str)
                         and len(v) < 60 else None)
def test_readme_command_parses_with_the_real_cli(command, module, argv, monkeypatch):
    if argv and argv[0].endswith(".yaml") and not (REPO / argv[0]).is_file():
        assert not argv[0].startswith("jobs/configs/"), f"{command}: no such config {argv[0]}"
        pytest.skip(f"{argv[0]} is written by an earlier command (run in test_readme_sweep_runs_as_written)")
    monkeypatch.chdir(REPO)
    parsed = _check(module, argv, monkeypatch)
    assert parsed is not None
    if module == JOBS["sweep"].module and parsed != "printed":
        from ser_models.config import to_yaml
        from ser_models.tune.sweep import plan_sweep

        if not any("=" in a for a in argv):  # a shipped sweep as it ships: tests/unit/tune/test_shipped_sweeps.py plans it
            return
        key = to_yaml(parsed)  # the same sweep named two ways (a path, --config NAME) is planned once: seconds each
        if key not in _PLANNED:
            _PLANNED[key] = plan_sweep(parsed, check_pool=False).trials
        assert _PLANNED[key] >= 1


#: Sweeps planned so far in this process, by their resolved config: planning one takes seconds.
_PLANNED: dict[str, int] = {}


@pytest.mark.parametrize("command", [
    "ser-models aftr jobs/configs/demo_after.yaml",                               # a misspelt job
    "ser-models prepare_pool jobs/configs/prepare_pool_demo.yaml",                # the module name, not the job
    "python -m ser_models evidense --config demo_evidence",
    "ser-models after jobs/configs/demo_after.yaml active.budget_labelz=[100]",  # a misspelt key
    "ser-models after --config demo_aftr",                                        # no such recipe
    "ser-models plan --config demo_after budget=100",                             # another job's recipe
    "ser-models after --config demo_after --print-config model.nope=1",
    "ser-models finetune jobs/configs/finetune_demo.yaml train.optim.epochs=many",     # a wrong type
    "ser-models after --help trainig",                                            # no such help section
    "ser-models configs aftr",
    "ser-models make-demo-pool outputs/demo/corpus --clips 20",                   # an argparse job's unknown flag
    "ser-models-serve model.onnx",                                                 # no file
    "python -m jobs.aftr jobs/configs/demo_after.yaml",
    "python -m jobs.after jobs/configs/demo_after.yaml nope=1",
    "platform/submit.sh aftr jobs/configs/demo_after.yaml",
])
def test_an_invented_command_fails(command, monkeypatch):
    """The check above is no rubber stamp: a command the real CLI refuses fails it."""
    module, argv = _job_argv(command)
    monkeypatch.chdir(REPO)
    with pytest.raises((Exception, SystemExit)) as refused:  # noqa: B017 - whatever the CLI refuses with
        with contextlib.redirect_stderr(io.StringIO()):
            _check(module, argv, monkeypatch)
    assert not isinstance(refused.value, _Parsed)


def test_readme_make_targets_exist():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    used = {c.split()[1] for c in shell_commands(README.read_text()) if c.startswith("make ")}
    assert used and used <= targets


# ---- the docs' sweep command, as written, after `make demo` --------------------------------------------------

SWEEP = "ser-models sweep --config sweep_peft_demo"
BEST = "ser-models finetune outputs/demo/sweep_peft/best.yaml"
TINY_BUDGET = ["num_samples=2", "config.train.optim.epochs=1", "scheduler.name=fifo", "tracking.mlflow=false",
               "tracking.tensorboard=false"]


def _run(command: str, extra: list[str], monkeypatch) -> None:
    """``command`` as the shell runs it: ``ser-models ARGS`` is ``python -m ser_models ARGS``."""
    tokens = shlex.split(command)
    assert tokens[0] == "ser-models", command
    monkeypatch.setattr(sys, "argv", [*tokens, *extra])
    runpy.run_module("ser_models", run_name="__main__")


def _whisper_folder(path: Path) -> None:
    """A Whisper encoder folder as ``ser-models import-encoder`` writes one (HF config + ``encoder.*`` safetensors),
    with the tiny preset's random weights: the paths are under test here, not the encoder's quality."""
    from safetensors.torch import save_file

    from ser_models.encoders import EncoderConfig, build_encoder
    from ser_models.encoders.presets import tiny_config

    path.mkdir(parents=True)
    tiny_config("tiny-whisper").save_pretrained(path)
    state = build_encoder(EncoderConfig(source="tiny-whisper")).hf_model.state_dict()
    save_file({f"encoder.{k}": v.contiguous() for k, v in state.items()}, str(path / "model.safetensors"))


@pytest.mark.ray
@pytest.mark.slow
@pytest.mark.slow_e2e
def test_readme_sweep_runs_as_written(ray_local, demo_pool, tmp_path, monkeypatch):
    """Tune runs each trial in a folder of its own: the config's relative pool and encoder paths must still
    mean the folder the command was run from (they did not: every trial failed with 'no prepared pool')."""
    cluster = (REPO / "docs" / "cluster.md").read_text()  # the sweep section of the docs site
    assert SWEEP in cluster and BEST in cluster
    # The folder as `make demo` leaves it: configs and the demo pool (links, read-only), an encoder folder.
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "configs").symlink_to(REPO / "jobs" / "configs")
    (tmp_path / "outputs" / "demo").mkdir(parents=True)
    (tmp_path / "outputs" / "demo" / "pool").symlink_to(demo_pool.pool_dir)
    # The recipes name the encoder (model.encoder.source=smart-turn): its import in the encoder cache, here a
    # tiny random Whisper adopted as an import (the driver resolves the name before Tune starts any trial).
    encoders = tmp_path / "encoder_cache"
    _whisper_folder(encoders / "smart-turn-v3.2-whisper-tiny")
    from ser_models.encoders import pretrained
    from ser_models.encoders.smart_turn import ONNX_SHA256

    (encoders / "smart-turn-v3.2-whisper-tiny" / "import.json").write_text(json.dumps({"onnx_sha256": ONNX_SHA256}))
    monkeypatch.setenv(pretrained.CACHE_ENV, str(encoders))
    monkeypatch.setattr(pretrained, "_verified", {})
    monkeypatch.chdir(tmp_path)

    _run(SWEEP, TINY_BUDGET, monkeypatch)
    out = tmp_path / "outputs" / "demo" / "sweep_peft"
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2
    assert (frame["status"] != "error").all(), frame.to_dict("records")
    assert frame["metric"].between(0, 1).all()

    _run(BEST, [], monkeypatch)  # the winner, rerun as is, from the same folder
    assert (out / "best" / "metrics.json").is_file()
