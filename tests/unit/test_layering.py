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
