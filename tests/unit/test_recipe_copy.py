"""``ser-models configs --copy NAME [PATH]``: a shipped recipe to edit outside a clone, every key it sets
explained by its help text, never written over an existing file; a clone's ``jobs/configs/NAME.yaml`` given
where there is none names the shipped recipe."""

from __future__ import annotations

import dataclasses
import importlib
import re

import pytest

from ser_models.catalog.help import load_index
from ser_models.catalog.jobs import JOBS, job_name
from ser_models.catalog.recipes import recipe_job, recipes
from ser_models.cli.command import main
from ser_models.config import load_config, parse_job_args, to_dict
from ser_models.exceptions import ConfigError

_KEY = re.compile(r"^( *)([A-Za-z_][\w.-]*):(?:\s|$)")


def _copy(argv, capsys) -> tuple[int, str, str]:
    try:
        main(["configs", "--copy", *argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def _schema(job: str):
    module, cls = JOBS[job_name(job)].schema.split(":")
    return getattr(importlib.import_module(module), cls)


@pytest.mark.parametrize("name", [p.stem for p in recipes()])
def test_a_copied_recipe_loads_as_the_shipped_one_with_each_key_explained(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    code, out, err = _copy([name], capsys)
    assert code == 0, err
    copy = tmp_path / f"{name}.yaml"
    assert f"wrote {copy.name}" in out and copy.is_file()
    job = recipe_job(copy)
    schema = _schema(job)
    shipped = next(p for p in recipes() if p.stem == name)
    assert to_dict(load_config(schema, copy)) == to_dict(load_config(schema, shipped))
    # Each top-level key the job's help index knows carries its help text right above it.
    helps = {row[0]: " ".join(row[3].split()) for row in load_index()[job_name(job)]["keys"]}
    lines = copy.read_text().splitlines()
    explained = 0
    for i, line in enumerate(lines):
        m = _KEY.match(line)
        if m and not m[1] and m[2] in helps and helps[m[2]]:
            above = []
            for prev in reversed(lines[:i]):
                if not prev.startswith("#"):
                    break
                above.insert(0, prev[1:].strip())
            assert helps[m[2]][:40] in " ".join(above), f"{m[2]} has no help above it in {copy.name}"
            explained += 1
    assert explained >= 2


def test_the_copy_of_my_data_after_explains_nested_keys_and_runs_from_anywhere(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = _copy(["my_data_after", "after.yaml"], capsys)
    assert code == 0, err
    text = (tmp_path / "after.yaml").read_text()
    assert "  # ['auto', 'pool', 'loop']: 'pool' = the pool's own dev / test splits" in text
    assert "[default: auto; changes results]" in text
    cfg = parse_job_args(_schema("after"), ["after.yaml", "active.budget_labels=[10,20]"], "ser-models after")
    assert dataclasses.asdict(cfg)["active"]["oracle"] == "file"


def test_a_copy_never_overwrites_a_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "after.yaml"
    mine.write_text("pool_dir: mine\n")
    code, out, err = _copy(["my_data_after", "after.yaml"], capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: refusing to overwrite after.yaml") and len(err.strip().splitlines()) == 1
    assert mine.read_text() == "pool_dir: mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["after.yaml"]  # no temporary file left either
    code, _, err = _copy(["my_data_after", str(tmp_path)], capsys)  # a folder: NAME.yaml in it
    assert code == 0 and (tmp_path / "my_data_after.yaml").is_file()
    code, _, err = _copy(["no_such_recipe"], capsys)
    assert code == 2 and "no recipe named 'no_such_recipe'" in err


def test_a_missing_clone_recipe_path_names_the_shipped_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside a clone: no jobs/configs here
    with pytest.raises(ConfigError) as err:
        parse_job_args(_schema("after"), ["jobs/configs/my_data_after.yaml"], "ser-models after")
    message = str(err.value)
    assert "--config my_data_after" in message
    assert "ser-models configs --copy my_data_after my_data_after.yaml" in message


def test_a_recipe_path_given_to_config_names_the_recipe(tmp_path, monkeypatch):
    """`--config jobs/configs/NAME.yaml` (the clone path where a name goes) is answered with `--config NAME`."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        parse_job_args(_schema("after"), ["--config", "jobs/configs/my_data_after.yaml"], "ser-models after")
    assert "`--config my_data_after`" in str(err.value)
    with pytest.raises(ConfigError) as err:  # a path to no shipped recipe still lists the recipes
        parse_job_args(_schema("after"), ["--config", "mine/my_own.yaml"], "ser-models after")
    assert "the recipes of " in str(err.value) and "not a path" not in str(err.value)


def test_the_pages_run_recipes_in_their_installed_form():
    """A page's command works outside a clone: a shipped recipe is named `--config NAME` (a clone's
    `jobs/configs/NAME.yaml` only for a cluster submission from a clone), and a template is copied with
    `ser-models configs --copy`, never `cp jobs/configs/...`."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    clone_only = re.compile(r"(?:ser-models(?:-serve)?|python -m ser_models|\bcp)\s+(?:[a-z-]+\s+)?jobs/configs/")
    found = []
    for page in [repo / "README.md", *sorted((repo / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S):
            found += [f"{page.name}: {line.strip()}" for line in block.splitlines() if clone_only.search(line)]
    assert found == []
    tutorial = (repo / "docs" / "tutorial.md").read_text()
    assert "ser-models configs --copy my_data_after data/after.yaml" in tutorial
