"""The commands of the README and of the docs site (``docs/*.md``) work as written.

Every ``python -m jobs.*`` / ``bench.*`` command, ``platform/submit.sh`` submission and ``make`` target in
the README's code blocks is checked against the real CLI: the job's own ``main`` parses the exact argv (its
config file, every dotted override, every flag) and is stopped right after parsing, so nothing runs. Sweep
configs are also planned (base config and search keys validated). Then the README's sweep command runs as
written, from a folder laid out as ``make demo`` leaves it (relative paths, the pretrained encoder, a tiny
budget), and its ``best.yaml`` is rerun as the README says (with a tiny random Whisper in the encoder's folder: paths are under test).
"""

from __future__ import annotations

import argparse
import importlib
import re
import runpy
import shlex
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# The README and every page of the docs site: their commands must work as written too.
DOCS = [README, *sorted((REPO / "docs").glob("*.md"))]


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


def _job_argv(command: str) -> tuple[str, list[str]] | None:
    """``(module, argv)`` of a python -m / submit.sh command, else None (``$(seq A B)`` expanded as bash does)."""
    command = re.sub(r"\$\(seq (\d+) (\d+)\)",
                     lambda m: " ".join(map(str, range(int(m[1]), int(m[2]) + 1))), command)
    tokens = shlex.split(command)
    if tokens[:2] == ["python", "-m"]:
        return tokens[2], tokens[3:]
    if tokens and tokens[0] == "platform/submit.sh":
        rest = tokens[1:]
        while rest and rest[0].startswith("--"):  # submit.sh's own options
            rest = rest[2:] if rest[0] in ("--address", "--submission-id") else rest[1:]
        job, args = rest[0], rest[1:]
        return f"jobs.{job}", args[1:] if args[:1] == ["--"] else args
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
        monkeypatch.setattr(module, "parse_job_args", lambda *a, **k: (_ for _ in ()).throw(
            _Parsed(real_job_args(*a, **k))))
    try:
        module.main(argv)
    except _Parsed as parsed:
        return parsed.value
    finally:
        monkeypatch.undo()
    raise AssertionError(f"{module_name}.main returned without parsing its arguments")


def _readme_job_commands() -> list[tuple[str, str, list[str]]]:
    out = []
    for doc in DOCS:
        for command in shell_commands(doc.read_text()):
            parsed = _job_argv(command)
            if parsed is not None:
                out.append((command, *parsed))
    return out


def test_readme_blocks_are_found():
    assert {"make demo", "make test"} <= set(shell_commands(README.read_text()))
    commands = [c for doc in DOCS for c in shell_commands(doc.read_text())]
    jobs = _readme_job_commands()
    assert len(jobs) > 30
    assert any(m == "jobs.sweep" for _, m, _ in jobs)
    # the shell loop's command is found, continuation lines joined
    assert any(c.startswith("python -m jobs.prepare_pool") and "manifest=outputs/$c/corpus" in c for c in commands)


@pytest.mark.parametrize("command, module, argv", _readme_job_commands(), ids=lambda v: v if isinstance(v, str)
                         and len(v) < 60 else None)
def test_readme_command_parses_with_the_real_cli(command, module, argv, monkeypatch):
    if argv and argv[0].endswith(".yaml") and not (REPO / argv[0]).is_file():
        assert not argv[0].startswith("jobs/configs/"), f"{command}: no such config {argv[0]}"
        pytest.skip(f"{argv[0]} is written by an earlier command (run in test_readme_sweep_runs_as_written)")
    monkeypatch.chdir(REPO)
    parsed = _parse_only(module, argv, monkeypatch)
    assert parsed is not None
    if module == "jobs.sweep":
        from ser_models.tune.sweep import plan_sweep

        plan = plan_sweep(parsed, check_pool=False)
        assert plan.trials >= 1


def test_readme_make_targets_exist():
    targets = set(re.findall(r"^([a-z][a-z-]*):", (REPO / "Makefile").read_text(), re.M))
    used = {c.split()[1] for c in shell_commands(README.read_text()) if c.startswith("make ")}
    assert used and used <= targets


# ---- the README's sweep command, as written, after `make demo` ------------------------------------------------

SWEEP = "python -m jobs.sweep jobs/configs/sweep_peft_demo.yaml"
BEST = "python -m jobs.finetune outputs/demo/sweep_peft/best.yaml"
TINY_BUDGET = ["num_samples=2", "config.train.epochs=1", "scheduler.name=fifo", "tracking.mlflow=false",
               "tracking.tensorboard=false"]


def _run(command: str, extra: list[str], monkeypatch) -> None:
    module, argv = _job_argv(command)
    monkeypatch.setattr(sys, "argv", [module, *argv, *extra])
    runpy.run_module(module, run_name="__main__")


def _whisper_folder(path: Path) -> None:
    """A Whisper encoder folder as ``jobs.import_encoder`` writes one (HF config + ``encoder.*`` safetensors),
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
    _whisper_folder(tmp_path / ".cache" / "encoders" / "smart-turn-v3.2-whisper-tiny")
    monkeypatch.chdir(tmp_path)

    _run(SWEEP, TINY_BUDGET, monkeypatch)
    out = tmp_path / "outputs" / "demo" / "sweep_peft"
    frame = pd.read_parquet(out / "results.parquet")
    assert len(frame) == 2
    assert (frame["status"] != "error").all(), frame.to_dict("records")
    assert frame["metric"].between(0, 1).all()

    _run(BEST, [], monkeypatch)  # the winner, rerun as is, from the same folder
    assert (out / "best" / "metrics.json").is_file()
