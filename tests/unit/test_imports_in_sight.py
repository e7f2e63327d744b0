"""Imports in plain sight: an import inside a function is an arrow a reader of the module's head cannot see, so the
library keeps one only where it pays for itself:

* it defers a heavy import (:data:`HEAVY`: torch, Ray, transformers, pandas, pyarrow's dataset layer, ...), itself
  or through the library module it names, whose own top-level imports reach one that the importing module's own
  top does not load already; ``jobs.<job> --help``, a Ray worker and the serving install stay light that way;
* it breaks a circle: the imported module already imports this one at its top;
* it names a third-party package that is light but optional or absent from the serving install (optuna,
  huggingface_hub, psutil, pyarrow and numpy in the ONNX runtime, ...) and that the module's top does not import
  already: that decision belongs to the install extras, not to this test.

Every other import of a library or standard-library module sits at the top of its file. ``from pkg import name``
of a package with lazy exports (``ser_models.data``, ``ser_models.scoring``, ...) is judged by the module the name
really lives in.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from test_layering import LIBRARY, _modules

#: Third-party modules whose import is worth deferring. Measured with ``python -c "import X"`` on the 2-core
#: development machine: torch 2.8 s, peft 7.3 s, matplotlib.pyplot 2.0 s, sklearn 1.6 s, pandas 1.1 s,
#: transformers 1.1 s, ray 0.8 s, pyarrow.dataset 0.8 s, where numpy alone takes 0.3 s and pyarrow 0.2 s; the
#: rest are large native libraries or services (FAISS, ONNX Runtime, PyAV, boto3, Label Studio's SDK).
HEAVY = ("torch", "ray", "transformers", "peft", "pandas", "pyarrow.dataset", "sklearn", "scipy", "matplotlib",
         "faiss", "onnx", "onnxruntime", "onnxscript", "av", "label_studio_sdk", "boto3", "datasets", "lhotse",
         "opensmile", "silero_vad", "pipecat", "safetensors", "yaml", "requests")

#: Standard-library modules that exist only on some systems: imported where they are used.
PLATFORM_ONLY = {"fcntl"}


MODULES = _modules()


def _lazy_exports(path: Path) -> dict[str, str]:
    """name -> module of a package's lazy exports (its ``_LAZY`` or ``_EXPORTS`` table), else empty."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id in ("_LAZY", "_EXPORTS")
                                                for t in node.targets):
            return eval(compile(ast.Expression(node.value), str(path), "eval"), {"dict": dict})  # a literal table
    return {}


LAZY = {m: _lazy_exports(p) for m, p in MODULES.items() if p.name == "__init__.py"}


def _resolve(name: str) -> str | None:
    """The library module ``name`` lives in (``ser_models.io.read_json`` -> ``ser_models.io``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _targets(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """Dotted names an import statement of ``module`` loads (relative imports resolved, lazy exports followed)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        parts = package.split(".")[: len(package.split(".")) - node.level + 1]
        base = ".".join([*parts, base] if base else parts)
    out = []
    for alias in node.names:
        full = f"{base}.{alias.name}"
        out.append(full if full in MODULES else LAZY.get(base, {}).get(alias.name, base))
    return out


def _imports(module: str) -> tuple[list[str], list[tuple[int, ast.AST]]]:
    """``(targets imported at the top, [(line, statement)] imported inside functions)``; imports under
    ``if TYPE_CHECKING:`` run nowhere and count as neither."""
    top: list[str] = []
    inner: list[tuple[int, ast.AST]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and ast.unparse(child.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if in_function:
                    inner.append((child.lineno, child))
                else:
                    top.extend(_targets(child, module))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(MODULES[module].read_text()), False)
    return top, inner


IMPORTS = {m: _imports(m) for m in MODULES}


def _loads(module: str) -> tuple[set[str], set[str]]:
    """``(library modules, third-party and standard modules)`` that importing ``module`` runs, following top-level
    imports only (and the packages above each module, whose ``__init__`` runs first)."""
    seen: set[str] = set()
    outside: set[str] = set()
    stack = [module]
    while stack:
        mod = stack.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        stack += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in MODULES]
        for target in IMPORTS[mod][0]:
            if target.split(".")[0] == "ser_models":
                if resolved := _resolve(target):
                    stack.append(resolved)
            else:
                outside.add(target)
    return seen, outside


def _heavy(names: set[str]) -> bool:
    return any(n == h or n.startswith(h + ".") for n in names for h in HEAVY)


def _why_deferred(module: str, target: str) -> str | None:
    """Why ``module`` may import ``target`` inside a function, or None when it should import it at its top."""
    root = target.split(".")[0]
    has, has_outside = _loads(module)  # what importing ``module`` runs already
    if root == "ser_models":
        resolved = _resolve(target)
        loaded, outside = _loads(resolved)
        if module in loaded:
            return "breaks a circle"
        if resolved in has:
            return None  # the module's own top already loads it: the import inside defers nothing
        return "defers a heavy import" if _heavy(outside - has_outside) else None
    if root in sys.stdlib_module_names:
        return "exists on some systems only" if root in PLATFORM_ONLY else None
    return None if target in has_outside else "a third-party package"


def hidden_imports() -> list[str]:
    """``file:line imports target`` of every function-level import that defers nothing."""
    found = []
    for module, path in sorted(MODULES.items()):
        for line, node in IMPORTS[module][1]:
            for target in dict.fromkeys(_targets(node, module)):
                if _why_deferred(module, target) is None:
                    shown = path.relative_to(LIBRARY.parent) if path.is_relative_to(LIBRARY.parent) else path
                    found.append(f"{shown}:{line} imports {target}")
    return found


def test_function_level_imports_defer_something():
    hidden = hidden_imports()
    assert not hidden, ("import these at the top of the file (inside a function an import must defer a heavy one "
                        "or break a circle):\n" + "\n".join(hidden))


def _listed_for_probe(tmp_path, monkeypatch, name: str, source: str) -> list[str]:
    """The imports :func:`hidden_imports` lists for a probe module ``ser_models.<name>`` holding ``source``."""
    module = f"ser_models.{name}"
    monkeypatch.setitem(MODULES, module, tmp_path / f"{name}.py")
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.setitem(IMPORTS, module, _imports(module))
    return [h.split(" imports ")[1] for h in hidden_imports() if f"{name}.py" in h]


def test_the_check_sees_a_cheap_import_inside_a_function(tmp_path, monkeypatch):
    """The rule itself: a cheap library or standard import inside a function is listed; a heavy one, a circle
    and a third-party one are not."""
    source = ("def f():\n    import json\n    from ser_models.io import read_json\n"
              "    from ser_models.models.model import EmotionModel\n    import torch\n    import optuna\n")
    assert _listed_for_probe(tmp_path, monkeypatch, "_probe_imports", source) == ["json", "ser_models.io"]
    assert _why_deferred("ser_models._probe_imports", "ser_models.models.model") == "defers a heavy import"
    assert _why_deferred("ser_models.io", "ser_models.locks") == "breaks a circle"  # the lock imports io at its top


def test_an_import_the_module_top_already_loads_defers_nothing(tmp_path, monkeypatch):
    """A heavy module imported again inside a function, when the module's own top loads it already, is listed:
    it hides an arrow and saves nothing."""
    source = ("import pyarrow as pa\nfrom ser_models.models import model\n\n"
              "def f():\n    from ser_models.models.model import EmotionModel\n    import pyarrow\n    import torch\n")
    listed = _listed_for_probe(tmp_path, monkeypatch, "_probe_twice", source)
    assert listed == ["ser_models.models.model", "pyarrow", "torch"]

