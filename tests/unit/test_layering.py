"""The library never imports its command-line package: jobs/ depends on ser_models, not the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[2] / "ser_models"


def test_ser_models_never_imports_jobs():
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            offenders += [f"{path.relative_to(LIBRARY.parent)}:{node.lineno} imports {n}" for n in names
                          if n == "jobs" or n.startswith("jobs.")]
    assert not offenders, "move what ser_models needs into ser_models (e.g. ser_models.runs):\n" + "\n".join(offenders)


def test_no_module_is_over_600_lines():
    """A module that big holds several jobs: split it by what it holds (the loop was 1,019 lines)."""
    root = LIBRARY.parent
    big = {str(p.relative_to(root)): n for p in [*LIBRARY.rglob("*.py"), *(root / "jobs").rglob("*.py")]
           if (n := len(p.read_text().splitlines())) > 600}
    assert not big, big


def test_only_the_runs_import_the_loop():
    """The data walks forward: jobs and ``ser_models.runs`` call the loop, and nothing below it imports it."""
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        rel = path.relative_to(LIBRARY.parent)
        if rel.parts[1] == "runs" or path.name == "loop.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module == "ser_models.active.loop":
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
