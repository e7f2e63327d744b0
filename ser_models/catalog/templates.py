"""``ser-models configs --copy NAME [PATH]``: a shipped recipe as a file to edit, every key it sets explained.

The copy is the recipe's own text (its comments kept) with each key's help text from the job's config
dataclasses (the committed help index, :func:`ser_models.catalog.help.load_index`) written above it as YAML
comments, with its default and what it may change. A recipe that ``extends:`` another is written whole (the
parent's values merged in), so the copy runs wherever it is put. An existing file is never overwritten.
Nothing here imports torch or Ray.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

from ser_models.catalog.help import WIDTH, load_index
from ser_models.catalog.jobs import job_name
from ser_models.catalog.recipes import find_recipe, recipe_job
from ser_models.exceptions import ConfigError
from ser_models.io import create_local_file

#: A mapping key at the start of a YAML line: its indentation and name (list items and comments are not keys).
_KEY = re.compile(r"^(?P<indent> *)(?P<name>[A-Za-z_][\w.-]*):(?:\s|$)")
_EFFECT = {"result": "changes results", "speed": "speed only", "location": "where things live"}


def _help_rows(job: str, base: str | None = None) -> dict[str, tuple[str, str, str]]:
    """``{dotted key: (default, effect, help)}`` of ``job`` (a sweep's ``config.*`` keys: its ``base`` job's)."""
    index = load_index()
    rows = {k[0]: (str(k[1]), str(k[2]), str(k[3])) for k in index.get(job_name(job), {}).get("keys", [])}
    if base and job_name(base) in index:
        rows.update({f"config.{k[0]}": (str(k[1]), str(k[2]), str(k[3]))
                     for k in index[job_name(base)].get("keys", [])})
    return rows


def _comment(indent: str, row: tuple[str, str, str]) -> list[str]:
    """The comment lines above one key: its help, then its default and effect, wrapped at :data:`WIDTH`."""
    default, effect, text = row
    body = " ".join(text.split())
    tail = f"[default: {default}; {_EFFECT.get(effect, effect)}]"
    lead = f"{indent}# "
    return textwrap.wrap(f"{body} {tail}" if body else tail, WIDTH, initial_indent=lead, subsequent_indent=lead,
                         break_on_hyphens=False)


def _whole_text(path: Path) -> str:
    """The recipe's text; a recipe that ``extends:`` another: its header comment and the merged values."""
    text = path.read_text()
    if not re.search(r"^extends:", text, flags=re.M):
        return text
    from omegaconf import OmegaConf

    layers, at = [], path
    while at is not None and len(layers) < 8:  # the job's loader refuses loops; a copy stops after 8 parents
        layer = OmegaConf.load(at)
        parent = layer.pop("extends", None)
        layers.insert(0, layer)
        at = at.parent / parent if isinstance(parent, str) and parent else None
    merged = OmegaConf.merge(*layers)
    header = "".join(line + "\n" for line in text.splitlines() if line.startswith("#"))
    return header + OmegaConf.to_yaml(merged)


def commented_recipe(name: str) -> tuple[str, str]:
    """The shipped recipe ``name`` with each key's help as comments.

    Returns:
        ``(job, text)``: the recipe's job (``after``) and the YAML to write.

    Raises:
        ConfigError: no recipe of that name (naming the shipped ones).
    """
    path = find_recipe(name)
    job = recipe_job(path) or ""
    text = _whole_text(path)
    base = re.search(r"^base:\s*(\w+)", text, flags=re.M)
    rows = _help_rows(job, base.group(1) if base else None)
    out = [f"# Copied from the shipped recipe {path.stem} (`ser-models configs --copy {path.stem}`): edit it and run",
           f"#   ser-models {job_name(job)} THIS_FILE.yaml [key.sub=value ...]",
           f"# Each key's help is written above it; `ser-models {job_name(job)} --help-all` lists every key.", "#"]
    stack: list[tuple[int, str]] = []  # (indentation, key) of the mappings the current line is inside
    for line in text.splitlines():
        m = _KEY.match(line)
        if m:
            indent = len(m["indent"])
            while stack and stack[-1][0] >= indent:
                stack.pop()
            dotted = ".".join([k for _, k in stack] + [m["name"]])
            stack.append((indent, m["name"]))
            if dotted in rows:
                out += _comment(m["indent"], rows[dotted])
        out.append(line)
    return job, "\n".join(out) + "\n"


def copy_recipe(name: str, dest: str | None = None) -> Path:
    """Write :func:`commented_recipe` to ``dest`` (a file path, or a folder to write ``NAME.yaml`` into;
    default ``./NAME.yaml``), never over an existing file.

    Returns:
        The path written.

    Raises:
        ConfigError: no recipe of that name, a file already at the path (nothing written), or a missing folder.
    """
    job, text = commented_recipe(name)
    stem = find_recipe(name).stem
    target = Path(dest) if dest else Path(f"{stem}.yaml")
    if target.is_dir():
        target = target / f"{stem}.yaml"
    if "://" in str(dest or ""):
        raise ConfigError(f"ser-models configs --copy writes a local file to edit, got {dest}")
    if not target.parent.is_dir():
        raise ConfigError(f"cannot copy recipe {stem} to {target}: the folder {target.parent} does not exist")
    if target.exists() or target.is_symlink():
        other = f"{stem}_2.yaml" if stem.startswith("my_") else f"my_{stem}.yaml"
        raise ConfigError(f"refusing to overwrite {target}: it exists. Name another file "
                          f"(`ser-models configs --copy {stem} {other}`), or move that one first")
    try:  # written whole, never over a file that appeared meanwhile
        create_local_file(target, text.encode())
    except FileExistsError:
        raise ConfigError(f"refusing to overwrite {target}: it exists") from None
    return target


__all__ = ["commented_recipe", "copy_recipe"]
