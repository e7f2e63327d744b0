"""Every YAML under ``jobs/configs/`` (recursively) loads into its job's schema and names its command.

A config's job comes from its file-name prefix (``ser_models.catalog.recipes.RECIPE_PREFIXES``); a YAML with no known
prefix fails, so a new job's prefix is added there along with its configs.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from ser_models.catalog.jobs import JOBS as COMMAND_JOBS
from ser_models.catalog.recipes import RECIPE_PREFIXES
from ser_models.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "jobs" / "configs"

#: file-name prefix -> (job module under jobs/, name of its config schema), from the library's recipe table
JOBS = {prefix: (job, COMMAND_JOBS[job.replace("_", "-")].schema.split(":")[1])
        for prefix, job in RECIPE_PREFIXES.items()}

CONFIGS = sorted(p for ext in ("*.yaml", "*.yml") for p in CONFIG_DIR.rglob(ext))


def job_of(path: Path) -> tuple[str, str]:
    for prefix, job in JOBS.items():
        if path.name.startswith(prefix):
            return job
    pytest.fail(f"{path.relative_to(REPO)}: no job is mapped to this file name; name it after its job "
                f"({', '.join(JOBS)}...) or add its prefix to ser_models.catalog.recipes.RECIPE_PREFIXES")


def header(path: Path) -> list[str]:
    """The leading comment lines, '#' stripped."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return lines


def test_there_are_configs_to_check():
    assert len(CONFIGS) >= 4, CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_config_loads_into_its_job_schema(path):
    module, schema_name = job_of(path)
    schema = getattr(importlib.import_module(importlib.import_module(f"jobs.{module}").main.__module__), schema_name)
    cfg = load_config(schema, path)  # raises ConfigError naming an unknown key, a wrong type or a bad value
    assert type(cfg) is schema
    if module == "sweep":  # the base job's config and every swept key and value check out too
        from ser_models.tune.sweep import plan_sweep

        assert plan_sweep(cfg, check_pool=False).trials >= cfg.num_samples


#: A command of a header that names a config: ``ser-models JOB --config NAME`` or ``ser-models JOB PATH`` (also as
#: ``python -m ser_models``), or ``platform/submit.sh [--no-wait] JOB PATH``.
HEADER_RUN = re.compile(r"(?:ser-models|python -m ser_models|platform/submit\.sh(?: --no-wait)?) ([a-z][\w-]*) "
                        r"(--config )?(\S+)")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_header_comment_holds_the_command_that_runs_it(path):
    module, _ = job_of(path)
    job = module.replace("_", "-")  # the subcommand
    rel = path.relative_to(REPO).as_posix()
    lines = header(path)
    assert lines, f"{rel} has no header comment"
    # One name: the header runs the recipe with the command, by its name or (in a clone) by its path.
    assert not [line for line in lines if "python -m jobs." in line], (
        f"{rel}: write `ser-models {job} ...`, not `python -m jobs.{module} ...`")
    own = (f"ser-models {job} --config {path.stem}", f"ser-models {job} {rel}")
    assert any(re.search(rf"(^|\s){re.escape(command)}(\s|$)", line) for line in lines for command in own), (
        f"{rel}: no header line runs `{own[0]}` (or `{own[1]}`)")
    # Preparation steps may run other jobs, but nothing may run THIS file with another job.
    for line in lines:
        for named, flag, target in HEADER_RUN.findall(line):
            if target == rel or (flag and target == path.stem):
                assert named == job, f"{rel}: header runs it with `{named}`, not `{job}`"


#: The recipe's configs: what each may differ from jobs.after's defaults in (paths, the encoder and its layer,
#: budgets, the oracle, machine sizes, the evaluation sets and the evidence settings), no model, fit or strategy.
RECIPE_CONFIGS = ("demo_after.yaml", "my_data_after.yaml", "demo_evidence.yaml")
RECIPE_KEYS = ("model.adapter.", "model.feature_norm", "model.head_", "model.pooling", "train.", "scaling.backend",
               "active.strategy.", "tapt_enabled")


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(CONFIG_DIR)))
def test_each_config_prints_what_it_changes_from_the_defaults(path, capsys):
    from ser_models.config import diff_from_defaults

    module, schema_name = job_of(path)
    schema = getattr(importlib.import_module(importlib.import_module(f"jobs.{module}").main.__module__), schema_name)
    diff = diff_from_defaults(schema, load_config(schema, path))
    with capsys.disabled():
        print(f"\n{path.relative_to(REPO)}: {len(diff)} keys differ from ser-models {module.replace('_', '-')}'s defaults")
        for key, (default, value) in diff.items():
            print(f"  {key}: {default!r} -> {value!r}")
    if path.name in RECIPE_CONFIGS:
        recipe = [k for k in diff if k.startswith(RECIPE_KEYS)]
        assert not recipe, f"{path.name} changes the recipe's keys {recipe}: the defaults are the recipe"
        assert len(diff) <= 12, f"{path.name} differs from the defaults in {len(diff)} keys: {sorted(diff)}"


def test_a_config_of_paths_and_budgets_alone_is_the_recipe(tmp_path):
    from ser_models.runs.after import AfterJobConfig

    cfg_file = tmp_path / "after.yaml"
    cfg_file.write_text("pool_dir: data/pool\noutput_dir: data/runs/1\nactive:\n  budget_labels: [100, 200]\n")
    cfg = load_config(AfterJobConfig, cfg_file)
    assert (cfg.model.adapter.kind, cfg.model.feature_norm, cfg.model.pooling, cfg.model.head_hidden) == \
        ("frozen", "pool", "mean", 0)
    assert not cfg.model.head_input_norm and not cfg.tapt_enabled
    assert (cfg.train.solver, cfg.train.l2_c, cfg.scaling.backend) == ("lbfgs", "auto", "in_process")
    assert (cfg.active.strategy.name, cfg.active.feature_cache) == ("auto", "auto")


def test_a_trainable_encoder_on_the_recipe_names_every_key_to_change():
    from ser_models.exceptions import ConfigError
    from ser_models.runs.after import AfterJobConfig

    with pytest.raises(ConfigError) as err:
        load_config(AfterJobConfig, None, ["pool_dir=p", "output_dir=o", "model.adapter.kind=lora"])
    assert "train.solver=adamw" in str(err.value) and "model.feature_norm=none" in str(err.value)
    cfg = load_config(AfterJobConfig, None, ["pool_dir=p", "output_dir=o", "model.adapter.kind=lora",
                                             "train.solver=adamw", "model.feature_norm=none"])
    assert cfg.model.adapter.kind == "lora"
