"""Every delete in the code goes through the ownership module: a new ``rmtree``, ``unlink`` or store delete
anywhere else fails here until it is routed through :mod:`ser_models.ownership` (or named below, with why)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: Calls that delete: the last attribute or name called.
DELETES = {"rmtree", "remove", "unlink", "rmdir", "removedirs", "delete_dir", "delete_file", "fs_delete",
           "delete_dir_contents", "_delete_quietly", "_retire", "clear"}
#: Not counted: the folder swaps of :mod:`ser_models.io` (``replace_dir``, ``commit_dir_swap``, ``abort_dir_swap``),
#: which delete only a version that carries its completion marker, a link as a link (docs/safety.md lists them).
#: Receivers of ``.remove`` / ``.clear`` that are containers, not files (``list.remove``, ``dict.clear``).
_NOT_FILES = ("remove", "clear")
#: The one module that deletes, and the primitives below it, each with why it may.
ALLOWED = {
    "ser_models/ownership/claims.py": "the ownership module: every delete of an output's contents",
    "ser_models/io.py": "the store primitives ownership calls (delete_dir, fs_delete, never following links), the "
                        "temporary file of an atomic write, and a folder swap's old version",
    "ser_models/locks/folder_lock.py": "a lock file, removed under its guard only while it names this writer",
    "ser_models/testing/__init__.py": "test helpers: files the test itself made",
    "ser_models/testing/cluster.py": "test helpers: the Ray cluster's own temporary folder and armed failpoints",
    "ser_models/data/synth/bad_clips.py": "the demo generator: the 'missing file' case it just made",
}


def _call_name(node: ast.Call) -> tuple[str, str]:
    """``(name, receiver source)`` of a call: ``shutil.rmtree(x)`` -> ``("rmtree", "shutil")``."""
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr, ast.unparse(func.value)
    if isinstance(func, ast.Name):
        return func.id, ""
    return "", ""


def delete_sites(root: Path = REPO) -> list[str]:
    """``file:line name`` of every call that may delete, outside :data:`ALLOWED`."""
    sites = []
    for folder in ("ser_models", "jobs", "bench"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in ALLOWED:
                continue
            tree = ast.parse(path.read_text(), rel)
            # Names taken from the ownership module are its deletes (the path every delete goes through).
            owned = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
                     and n.module == "ser_models.ownership" for a in n.names}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name, receiver = _call_name(node)
                if name not in DELETES or receiver == "ownership" or (not receiver and name in owned):
                    continue
                if name in _NOT_FILES and not (receiver in ("os", "ownership", "shutil") or
                                               (name == "clear" and not receiver)):
                    continue  # list.remove, set.clear, ...
                sites.append(f"{rel}:{node.lineno} {receiver + '.' if receiver else ''}{name}")
    return sites


def test_no_delete_outside_the_ownership_module():
    assert delete_sites() == []


def test_the_scan_finds_a_delete_planted_anywhere(tmp_path):
    """The scan is not blind: a planted ``shutil.rmtree``, ``Path.unlink`` and store delete are each found."""
    for folder in ("ser_models", "jobs", "bench"):
        (tmp_path / folder).mkdir()
    (tmp_path / "ser_models" / "planted.py").write_text(
        "import shutil\nfrom pathlib import Path\nimport os\n\ndef f(p, fs):\n    shutil.rmtree(p)\n"
        "    Path(p).unlink()\n    fs.delete_dir(p)\n    os.remove(p)\n    [1].remove(1)\n")
    (tmp_path / "bench" / "b.py").write_text("from ser_models.io import fs_delete\nfs_delete('x')\n")
    (tmp_path / "jobs" / "ok.py").write_text("from ser_models import ownership\nfrom ser_models.ownership import clear\n"
                                             "ownership.remove('f', 'run', 'x', recorded_only=True)\nclear('f', 'run')\n")
    assert sorted(delete_sites(tmp_path)) == sorted(
        ["ser_models/planted.py:6 shutil.rmtree", "ser_models/planted.py:7 Path(p).unlink",
         "ser_models/planted.py:8 fs.delete_dir", "ser_models/planted.py:9 os.remove", "bench/b.py:2 fs_delete"])


def test_every_allowed_file_exists():
    assert all((REPO / rel).is_file() for rel in ALLOWED)
