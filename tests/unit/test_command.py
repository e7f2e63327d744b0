"""The ``ser-models`` command: one subcommand per job, recipes by name, help a person reads, started cheaply."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ser_models.catalog import help as job_help
from ser_models.catalog.recipes import RECIPE_DIR, find_recipe, recipe_job, recipes
from ser_models.cli import command
from ser_models.cli.command import JOBS, help_text, list_configs
from ser_models.config import parse_job_args, set_invoked_as
from ser_models.exceptions import ConfigError

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ser_models", *args], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


def test_every_job_shell_has_a_subcommand_over_the_same_main():
    shells = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__")
    assert sorted(n.replace("-", "_") for n in JOBS) == shells
    import importlib

    for name, job in JOBS.items():
        shell = importlib.import_module(f"jobs.{name.replace('-', '_')}")
        assert shell.main.__module__ == job.module, name


def test_the_help_index_is_current():
    """``job_keys.json`` is what the live config classes give; after changing a key, run
    ``python -m ser_models.cli.command --write-index``."""
    assert command.build_index() == job_help.load_index(), \
        "ser_models/job_keys.json is stale: run `python -m ser_models.cli.command --write-index`"


@pytest.mark.parametrize("name", [n for n, j in JOBS.items() if j.schema is not None])
def test_help_is_short_grouped_and_the_full_help_has_every_key(name):
    index = job_help.load_index()
    short = help_text(name, ["--help"], index)
    lines = short.splitlines()
    assert len(lines) <= job_help.MAX_LINES and max(map(len, lines)) <= job_help.WIDTH, name
    assert lines[0].startswith(f"usage: ser-models {name} [CONFIG.yaml | --config RECIPE]")
    keys = [k[0] for k in index[name]["keys"]]
    required = [k[0] for k in index[name]["keys"] if k[1] == "???"]
    for key in required:  # every required key is on the short help
        assert any(line.split(" = ")[0].strip() == key for line in lines), (name, key)
    full = help_text(name, ["--help-all"], index)
    shown = {line.split(" = ")[0].strip() for line in full.splitlines() if " = " in line and line.startswith("  ")
             and not line.startswith("      ")}
    assert shown == set(keys), name
    assert "%%" not in full and all(len(line) <= job_help.WIDTH for line in full.splitlines()
                                    if line.startswith("      "))


def test_help_section_and_an_unknown_section():
    text = help_text("after", ["--help", "labels"])
    assert "active.budget_labels = []  [changes results]" in text and "model.encoder.source" not in text
    proc = _run("after", "--help", "nosuch")
    assert proc.returncode == 2 and "no help section 'nosuch'" in proc.stderr and "labels" in proc.stderr


def test_help_starts_without_torch_or_ray():
    code = ("import sys\nfrom ser_models.cli.command import main\n"
            "for argv in (['--help'], ['after', '--help'], ['export', '--help-all'], ['configs']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('torch', 'ray', 'transformers', 'peft', 'pandas') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "prepare-pool" in proc.stdout and "demo_after" in proc.stdout


def test_the_overview_lists_every_job_and_an_unknown_job_is_refused():
    proc = _run("--help")
    assert proc.returncode == 0
    for name in JOBS:
        assert f"  {name} " in proc.stdout
    proc = _run("aftr")
    assert proc.returncode == 2 and "unknown job 'aftr' (did you mean after?)" in proc.stderr


def test_configs_lists_every_recipe_under_its_job():
    text = list_configs()
    for path in recipes():
        assert recipe_job(path) is not None, f"{path.name}: no job prefix (ser_models.catalog.recipes.RECIPE_PREFIXES)"
        assert f"  {path.stem} " in text
    assert "demo_after" in list_configs("after") and "prepare_pool_demo" not in list_configs("after")
    assert (REPO / "jobs" / "configs").resolve() == RECIPE_DIR  # a clone's documented paths read the same files


def test_a_recipe_by_name_and_print_config(capsys, tmp_path):
    from ser_models.runs.plan import PlanConfig

    cfg_path = tmp_path / "plan.yaml"
    cfg_path.write_text("budget: 300\n")
    with pytest.raises(SystemExit) as exc:
        parse_job_args(PlanConfig, [str(cfg_path), "rounds=3", "--print-config"], "jobs.plan")
    assert exc.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["budget"] == 300 and printed["rounds"] == 3

    from ser_models.data.config import PoolConfig

    cfg = parse_job_args(PoolConfig, ["--config", "prepare_pool_demo", "manifest=m.csv", "output_dir=out"],
                         "jobs.prepare_pool")
    shipped = yaml.safe_load(find_recipe("prepare_pool_demo").read_text())
    assert cfg.target_sample_rate == shipped.get("target_sample_rate", cfg.target_sample_rate)
    assert Path(cfg.output_dir).is_absolute()
    with pytest.raises(ConfigError, match="recipe 'demo_after' is for `after`, not `prepare_pool`"):
        parse_job_args(PoolConfig, ["--config", "demo_after"], "jobs.prepare_pool")
    with pytest.raises(ConfigError, match="no recipe named 'nosuch'.*prepare_pool_demo"):
        parse_job_args(PoolConfig, ["--config", "nosuch"], "jobs.prepare_pool")
    with pytest.raises(ConfigError, match="config file not found: nosuch.yaml"):
        parse_job_args(PoolConfig, ["nosuch.yaml"], "jobs.prepare_pool")


def test_a_subcommand_runs_the_job_with_its_errors_and_exit_codes(tmp_path):
    ok = _run("plan", "budget=400", "labels=[a,b,c,d]", cwd=tmp_path)
    assert ok.returncode == 0 and "Overrides for jobs.after" in ok.stdout
    bad = _run("plan", "budget=x", cwd=tmp_path)
    same = subprocess.run([sys.executable, "-m", "jobs.plan", "budget=x"], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert bad.returncode == same.returncode == 2
    assert bad.stderr == same.stderr and "config key 'budget'" in bad.stderr


def test_argparse_jobs_name_the_command_they_were_started_by(capsys):
    from ser_models.runs import import_encoder

    set_invoked_as("ser-models import-encoder")
    try:
        with pytest.raises(SystemExit):
            import_encoder.main(["--help"])
    finally:
        set_invoked_as(None)
    assert capsys.readouterr().out.startswith("usage: ser-models import-encoder")
    assert help_text("import-encoder", ["--help"]).startswith("usage: ser-models import-encoder")


def test_flag_forms_and_mistakes_give_clear_answers(capsys):
    from ser_models.data.config import PoolConfig

    cfg = parse_job_args(PoolConfig, ["--config=prepare_pool_demo", "manifest=m.csv"], "jobs.prepare_pool")
    assert cfg.manifest.endswith("m.csv")
    with pytest.raises(ConfigError, match="--config given twice"):
        parse_job_args(PoolConfig, ["--config", "prepare_pool_demo", "--config", "prepare_pool_smoke"],
                       "jobs.prepare_pool")
    with pytest.raises(SystemExit) as exc:  # a flag after --help is no help section
        parse_job_args(PoolConfig, ["--help", "--config", "prepare_pool_demo"], "jobs.prepare_pool")
    assert exc.value.code == 0 and capsys.readouterr().out.startswith("usage: python -m jobs.prepare_pool")
    usage = _run("configs", "--help")
    assert usage.returncode == 0 and usage.stdout.startswith("usage: ser-models configs [JOB]")
    unknown = _run("configs", "nosuch")
    assert unknown.returncode == 2 and "unknown job 'nosuch'" in unknown.stderr
    piped = subprocess.run(f"{sys.executable} -m ser_models after --help-all | head -1", shell=True, cwd=REPO,
                           capture_output=True, text=True, timeout=120)
    assert piped.stdout.startswith("usage:") and "Traceback" not in piped.stderr


def test_a_file_that_is_no_onnx_graph_is_a_clear_error(tmp_path):
    (tmp_path / "bad.onnx").write_text("junk")
    proc = subprocess.run([sys.executable, "-m", "ser_models.cli.serve", str(tmp_path / "bad.onnx"), "x.wav"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "error: CheckpointError:" in proc.stderr and "not an ONNX graph" in proc.stderr


@pytest.mark.parametrize("name", [n for n, j in JOBS.items() if j.schema is not None])
def test_help_lists_every_allowed_value_of_a_key_it_shows(name):
    """A key's list of allowed values (``one of ['random', ..., 'auto']``) is wrapped onto indented lines, never
    cut: every value of every key ``--help`` shows is on it."""
    import re

    index = job_help.load_index()
    short = help_text(name, ["--help"], index)
    lines = short.splitlines()
    assert len(lines) <= job_help.MAX_LINES and max(map(len, lines)) <= job_help.WIDTH
    text = " ".join(line.strip() for line in lines)
    shown = {line.split(" = ")[0].strip() for line in lines if " = " in line and line.startswith("  ")}
    checked = 0
    for key, _, _, helptext in index[name]["keys"]:
        values = re.search(r"one of (\[[^\]]*\])", helptext)
        if key in shown and values and values.group(1) in " ".join(helptext.split()):
            for value in re.findall(r"'([^']*)'", values.group(1)):
                assert f"'{value}'" in text, (name, key, value)
            checked += 1
    if name == "after":
        assert checked >= 3 and "active.strategy.name" in shown
        assert "'informative_diverse', 'gsx', 'gsy', 'igs', 'auto']" in text


def test_serve_help_is_plain_text():
    """`ser-models-serve --help` as a terminal shows it: no reST markup (``x``, :func:`x`), its whole description."""
    proc = subprocess.run([sys.executable, "-m", "ser_models.cli.serve", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0
    assert "`" not in proc.stdout and ":func:" not in proc.stdout
    assert "predict emotions in audio files with a model exported to ONNX, without torch" in proc.stdout
    assert "One JSON line per file goes to stdout" in " ".join(proc.stdout.split())
