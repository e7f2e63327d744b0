"""The API reference (docs/reference/) lists every public name: each package's ``__all__``, read from the code.

Static: the ``__all__`` lists are parsed from the packages' ``__init__.py`` and the reference's entries from
its Markdown pages, so this runs without Sphinx (the built site is checked in test_site.py). A name added to an
``__all__`` without a reference entry fails here, as does an entry for a name no longer exported.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "reference"
#: Public names outside a package's ``__init__``: ``ser_models.load`` and what it returns live in
#: ``ser_models.api`` (the top-level package exports ``load`` lazily and has no ``__all__``).
PUBLIC_MODULES = {"ser_models.api": REPO / "ser_models" / "api.py"}
#: The reference's page for the top-level package documents ``ser_models.api``.
PAGE_OF = {"ser_models.api": "ser_models"}
#: Pages documented by ``automodule :members:`` (complete by construction), not by name.
WHOLE_MODULE_PAGES = {"ser_models.exceptions"}


def _all_of(path: Path) -> list[str] | None:
    """The literal ``__all__`` of a module's source, or None when it has none."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return None


def public_names() -> dict[str, list[str]]:
    """``{module: __all__}`` of every package under ser_models that has one, and of PUBLIC_MODULES."""
    found = {}
    for init in sorted((REPO / "ser_models").rglob("__init__.py")):
        names = _all_of(init)
        if names is not None:
            found[".".join(init.parent.relative_to(REPO).parts)] = names
    for module, path in PUBLIC_MODULES.items():
        found[module] = _all_of(path)
    return found


def reference_entries(page: Path) -> tuple[set[str], set[str]]:
    """``(documented, linked)``: full names given a stub page (``:toctree:``) and full names only linked.

    Entries are read from the page's ``autosummary`` directives, relative to the ``currentmodule`` before them.
    """
    documented, linked = set(), set()
    module = ""
    for block in re.findall(r"```\{eval-rst\}\n(.*?)```", page.read_text(), flags=re.S):
        for directive in re.split(r"\n(?=\.\. )", block):
            head = directive.splitlines()[0]
            if head.startswith(".. currentmodule::"):
                module = head.split("::")[1].strip()
            elif head.startswith(".. autosummary::"):
                lines = directive.splitlines()[1:]
                options = [ln.strip() for ln in lines if ln.strip().startswith(":")]
                entries = [ln.strip().lstrip("~") for ln in lines if ln.strip() and not ln.strip().startswith(":")]
                stubs = any(opt.startswith(":toctree:") for opt in options)
                for entry in entries:
                    full = entry if entry.startswith("ser_models.") else f"{module}.{entry}"
                    (documented if stubs else linked).add(full)
    return documented, linked


def coverage_problems(names: dict[str, list[str]], pages: dict[str, tuple[set[str], set[str]]]) -> list[str]:
    """Every way the reference pages miss or misstate the public names (empty when it lists them exactly).

    ``names``: ``{module: __all__}``; ``pages``: ``{page name: (documented, linked)}`` from reference_entries.
    A name is covered when the module's page documents ``module.name``, or links ``other.name`` that another
    page documents (a re-export, documented once where it is first exported).
    """
    problems = []
    everywhere = set().union(*(documented for documented, _ in pages.values()))
    for module, exported in sorted(names.items()):
        page = PAGE_OF.get(module, module)
        if page not in pages:
            problems.append(f"{module}: no page docs/reference/{page}.md for its __all__ {sorted(exported)}")
            continue
        documented, linked = pages[page]
        for name in exported:
            if f"{module}.{name}" in documented:
                continue
            targets = [full for full in linked if full.rsplit(".", 1)[1] == name]
            if not targets:
                problems.append(f"{module}.{name}: in __all__ but not in docs/reference/{page}.md")
            elif targets[0] not in everywhere:
                problems.append(f"{module}.{name}: docs/reference/{page}.md links {targets[0]}, which no page "
                                "documents")
        for full in sorted(documented | linked):
            if full.rsplit(".", 1)[1] not in exported:
                problems.append(f"{full}: listed in docs/reference/{page}.md but not in {module}.__all__")
    for page in sorted(set(pages) - {PAGE_OF.get(m, m) for m in names} - WHOLE_MODULE_PAGES):
        problems.append(f"docs/reference/{page}.md: documents no package with an __all__")
    return problems


def _pages() -> dict[str, tuple[set[str], set[str]]]:
    return {page.stem: reference_entries(page) for page in sorted(REFERENCE.glob("ser_models*.md"))}


def test_reference_lists_every_public_name_once():
    names = public_names()
    # the walk finds the packages (a broken walk would pass vacuously)
    assert {"ser_models.active", "ser_models.data", "ser_models.encoders", "ser_models.api"} <= set(names)
    assert sum(map(len, names.values())) > 150
    assert coverage_problems(names, _pages()) == []
    # each object has one stub page: no full name is documented on two pages
    seen: dict[str, str] = {}
    for page, (documented, _) in _pages().items():
        for full in documented:
            assert full not in seen, f"{full} documented on {seen[full]} and {page}"
            seen[full] = page


def test_a_new_public_name_without_an_entry_is_named():
    names = public_names()
    before = set(coverage_problems(names, _pages()))
    names["ser_models.heads"] = [*names["ser_models.heads"], "NewHead"]
    names["ser_models.segment"] = [n for n in names["ser_models.segment"] if n != "SileroVAD"]
    names["ser_models.newpkg"] = ["Thing"]
    assert sorted(set(coverage_problems(names, _pages())) - before) == [
        "ser_models.heads.NewHead: in __all__ but not in docs/reference/ser_models.heads.md",
        "ser_models.newpkg: no page docs/reference/ser_models.newpkg.md for its __all__ ['Thing']",
        "ser_models.segment.SileroVAD: listed in docs/reference/ser_models.segment.md but not in "
        "ser_models.segment.__all__",
    ]


def test_links_point_at_the_same_object():
    """A re-export linked to another package's entry is that very object (imports the two packages)."""
    for page, (_, linked) in _pages().items():
        module = importlib.import_module(PAGE_OF.get(page, page))
        for full in linked:
            owner, name = full.rsplit(".", 1)
            assert getattr(module, name) is getattr(importlib.import_module(owner), name), (page, full)


def test_every_page_is_in_the_reference_index():
    index = (REFERENCE / "index.md").read_text()
    toctree = re.search(r"```\{toctree\}\n(.*?)```", index, flags=re.S).group(1)
    listed = {line.strip() for line in toctree.splitlines() if line.strip() and not line.startswith(":")}
    assert listed == set(_pages()), sorted(listed ^ set(_pages()))
