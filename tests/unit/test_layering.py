"""The library never imports its command-line package: jobs/ depends on ser_models, not the reverse; each job is a
shell over ``ser_models.runs.<job>``, and the benchmarks import the runs."""

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


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every absolute import in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            found += [(node.lineno, node.module or "")]
    return found


#: Jobs whose code sits above the runs layer, in their own package: the export reads a run's checkpoint, and a
#: sweep runs the runs as its trials.
ABOVE_THE_RUNS = {"export": "ser_models.export.job", "sweep": "ser_models.tune.job"}


def test_every_job_is_a_shell_over_its_run_module():
    """``jobs/<job>.py`` is at most 30 lines that hand ``main`` of ``ser_models.runs.<job>`` to the command line:
    a job's config and code live in the library, where the benchmarks and a notebook reach them too."""
    root = LIBRARY.parent
    problems = []
    for path in sorted((root / "jobs").glob("*.py")):
        if path.stem == "__init__":
            continue
        lines = len(path.read_text().splitlines())
        mods = {m for _, m in _imports(path)} - {"__future__", "ser_models.cli"}
        if lines > 30 or mods != {ABOVE_THE_RUNS.get(path.stem, f"ser_models.runs.{path.stem}")}:
            problems.append(f"jobs/{path.name}: {lines} lines, imports {sorted(mods)}")
    assert not problems, "\n".join(problems)


def test_benchmarks_import_the_runs_never_the_job_shells():
    offenders = [f"bench/{path.name}:{line} imports {m}" for path in sorted((LIBRARY.parent / "bench").glob("*.py"))
                 for line, m in _imports(path) if m == "jobs" or m.startswith("jobs.")]
    assert not offenders, offenders


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


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the library (a package by its ``__init__``)."""
    mods = {}
    for path in LIBRARY.rglob("*.py"):
        parts = list(path.relative_to(LIBRARY.parent).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def _import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported library module: line}, counting imports inside functions too (a lazy import is a
    circle that only waits for the first call)."""
    mods = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {m: {} for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [resolve(a.name) for a in node.names if a.name.split(".")[0] == "ser_models"]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                if base.split(".")[0] == "ser_models":
                    # ``from pkg import submodule`` imports the submodule; ``from mod import name`` the module.
                    targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else resolve(base) for a in node.names]
            for target in targets:
                if target and target != mod:
                    graph[mod].setdefault(target, node.lineno)
    return graph


def test_library_imports_form_no_circle():
    """Tarjan's strongly connected components of the import graph: every one must be a single module."""
    graph = _import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                members = set(component)
                circles.append([f"{a} -> {b} (line {graph[a][b]})" for a in sorted(members)
                                for b in sorted(graph[a]) if b in members])

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert not circles, "import circles:\n" + "\n\n".join("\n".join(c) for c in circles)


def test_the_encoders_layer_never_imports_the_active_learning_layer():
    offenders = [f"{mod} -> {target} (line {line})" for mod, targets in _import_graph().items()
                 if mod.startswith("ser_models.encoders") for target, line in targets.items()
                 if target.startswith("ser_models.active")]
    assert not offenders, offenders


#: The library's layers, lowest first: a module may import its own layer and those below it. Top-level modules
#: not named here (config, io, names, progress, ...) and the packages of BASE_PACKAGES are the base layer under
#: all of them.
BASE_PACKAGES = ["catalog", "locks", "ownership"]  # the job table, key index and recipes the config parser reads;
# one writer at a time and the one claim and delete path, which every writer below the runs uses
LAYERS = [
    ["data", "segment", "formats"],
    ["heads"],
    ["encoders"],
    ["adapters"],
    ["models"],
    ["training"],
    ["analysis"],
    ["scoring"],
    ["pretraining"],
    ["planning"],
    ["labelling"],
    ["active"],
    ["runs"],
    ["tune", "export", "api", "cli", "__main__"],
    ["testing"],
]
def _layer_of(module: str) -> int:
    part = module.split(".")[1] if "." in module else ""
    if part in BASE_PACKAGES:
        return 0
    for rank, members in enumerate(LAYERS, start=1):
        if part in members:
            return rank
    return 0


#: The package root holds only base modules (io, config, names, runtime, ...): anything a layer owns lives in its
#: package, so a reader finds a noun in the room its layer names.
MAX_ROOT_MODULES = 16


def test_the_root_holds_only_base_modules():
    root = sorted(p.stem for p in LIBRARY.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules at the package root, at most {MAX_ROOT_MODULES}: {root}"


def test_every_package_has_a_layer():
    """A new package must be placed in LAYERS, or named in BASE_PACKAGES."""
    packages = {p.parent.name for p in LIBRARY.glob("*/__init__.py")}
    unplaced = sorted(p for p in packages if p not in BASE_PACKAGES and not any(p in members for members in LAYERS))
    assert not unplaced, f"add {unplaced} to LAYERS in tests/unit/test_layering.py"


def test_no_import_climbs_a_layer():
    """No module imports one in a higher layer, at the top of a file or inside a function: a name a lower layer
    needs lives in that layer (the clip set is data, the anchoring loss a training loss)."""
    climbs = sorted((mod, target) for mod, targets in _import_graph().items() for target in targets
                    if mod != "ser_models" and _layer_of(target) > _layer_of(mod))
    assert not climbs, f"place the imported name lower: {climbs}"


def test_no_package_imports_another_packages_private_names():
    """A name with a leading underscore is its package's to change: another package reads through a public
    function (``segment/recordings.py`` reads a table with ``data.manifest.read_table``)."""
    offenders = []
    for path in sorted(LIBRARY.rglob("*.py")):
        own = path.relative_to(LIBRARY.parent).parts[1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("ser_models."):
                other = node.module.split(".")[1]
                offenders += [f"{path.relative_to(LIBRARY.parent)}:{node.lineno} imports {node.module}.{a.name}"
                              for a in node.names if a.name.startswith("_") and other != own]
    assert not offenders, offenders


def test_the_data_package_exports_what_it_lists():
    """``ser_models.data`` imports its names on first use (serving decodes audio without pandas or Ray): its
    ``__all__`` and its table of where each name lives must list the same names, and each must resolve."""
    import ser_models.data as data

    assert sorted(data.__all__) == sorted(data._EXPORTS)
    for name in data.__all__:
        assert getattr(data, name) is not None


def test_architecture_says_where_every_config_lives():
    """Every ``*Config`` class is a row of ARCHITECTURE.md's "Where configs live" table, in the module the table
    names; and nothing is named ``*Settings`` (one suffix for a config)."""
    import re

    found, settings = {}, []
    for path in sorted(LIBRARY.rglob("*.py")):
        for node in ast.parse(path.read_text(), str(path)).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                found[node.name] = str(path.relative_to(LIBRARY.parent))
            if isinstance(node, ast.ClassDef) and node.name.endswith("Settings") and any(
                    "dataclass" in ast.unparse(d) for d in node.decorator_list):
                settings.append(node.name)
    page = (LIBRARY.parent / "docs" / "ARCHITECTURE.md").read_text()
    section = page.split("## Where configs live", 1)[1].split("\n## ", 1)[0]
    listed = dict(re.findall(r"^\| `(\w+Config)` \| `([^`]+)` \|", section, flags=re.M))
    assert listed == found, {"not in the table": sorted(found.keys() - listed.keys()),
                             "not in the code": sorted(listed.keys() - found.keys()),
                             "moved": sorted(k for k in found.keys() & listed.keys() if found[k] != listed[k])}
    assert not settings, f"name these *Config: {settings}"
