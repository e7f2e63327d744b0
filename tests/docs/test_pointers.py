"""Every pointer the docs and the code give a reader leads somewhere.

(a) Markdown links of the README, BENCHMARKS.md and the docs pages reach a file, and their ``#anchor`` a
heading of it (GitHub / MyST slugs; the docs site gives anchors to headings of levels 1-3 only).
(b) Prose pointers in configs, docstrings, comments and pages (``see README, "Section"``,
``docs/x.md#anchor``, ``docs/x.md, "Section"``) name a file of the repository and a heading it has.
(c) Every ``jobs/configs/*.yaml`` that a job, a benchmark, the Makefile or a page names exists.
(d) docs/ARCHITECTURE.md's backticked file paths exist, and the names it says a module defines
(``ser_models.x.y.name``, ``module.name``, ``_private_name``) are defined there.

Pure text, no imports of the library: the whole file runs in well under a second.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
CODE_DIRS = ("ser_models", "jobs", "bench")
#: Heading levels the docs site anchors (docs/conf.py: ``myst_heading_anchors = 3``).
ANCHOR_LEVELS = 3


def _without_fences(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept)."""
    return re.sub(r"^(`{3,}|~{3,}).*?^\1", lambda m: "\n" * m[0].count("\n"), text, flags=re.S | re.M)


def _without_code(text: str) -> str:
    """The text with fenced code blocks blanked (line numbers kept) and inline code spans removed."""
    return re.sub(r"`[^`\n]*`", "``", _without_fences(text))


def _plain(title: str) -> str:
    """A heading as rendered: code ticks, emphasis markers and link targets gone."""
    title = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", title)
    return title.replace("`", "").replace("**", "").strip()


def slug(title: str) -> str:
    """The anchor GitHub and MyST give a heading: lower case, punctuation but ``-`` and ``_`` dropped, spaces
    to ``-``."""
    return re.sub(r"[^\w\- ]", "", _plain(title).lower()).replace(" ", "-")


@cache
def headings(path: Path) -> tuple[tuple[int, str], ...]:
    """``(level, plain title)`` of a Markdown file's headings, outside code blocks; an ``{include}`` directive
    brings in the included file's headings (docs/benchmarks.md includes BENCHMARKS.md)."""
    raw = path.read_text()
    found = []
    for inc in re.findall(r"^```\{include\}\s+(\S+)", raw, re.M):
        found += headings((path.parent / inc).resolve())
    for line in _without_fences(raw).splitlines():  # a heading's code spans are part of its anchor
        match = re.match(r"^(#{1,6})\s+(.+?)\s*#*\s*$", line)
        if match:
            found.append((len(match[1]), _plain(match[2])))
    return tuple(found)


@cache
def anchors(path: Path) -> dict[str, int]:
    """``{anchor: level}`` of a Markdown file; repeated titles get ``-1``, ``-2``, ... as on GitHub."""
    out: dict[str, int] = {}
    for level, title in headings(path):
        base = slug(title)
        name, k = base, 0
        while name in out:
            k += 1
            name = f"{base}-{k}"
        out[name] = level
    return out


def _check_anchor(where: str, target: Path, anchor: str) -> list[str]:
    if target.suffix != ".md":
        return []
    found = anchors(target)
    if anchor not in found:
        return [f"{where}: #{anchor} is not a heading of {target.relative_to(REPO)}"]
    if found[anchor] > ANCHOR_LEVELS:
        return [f"{where}: #{anchor} is a level-{found[anchor]} heading: the docs site anchors levels "
                f"1-{ANCHOR_LEVELS} only"]
    return []


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def test_slugs_follow_github_and_myst():
    assert slug("The demo pool at label budgets, 20 paired seeds (`bench/results/x.md`)") == (
        "the-demo-pool-at-label-budgets-20-paired-seeds-benchresultsxmd")
    assert slug("Seed method 1: an adapter") == "seed-method-1-an-adapter"
    assert slug("**Bold** and `code_name`") == "bold-and-code_name"


def test_markdown_links_and_anchors_resolve():
    problems = []
    for page in PAGES:
        text = _without_code(page.read_text())
        for match in re.finditer(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text):
            target = match[1]
            if re.match(r"^[a-z][\w+.-]*:", target):  # http:, https:, mailto:
                continue
            where = f"{page.relative_to(REPO)}:{_line(text, match.start())}"
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                problems.append(f"{where}: links {target}, which does not exist")
            elif anchor:
                problems += _check_anchor(where, file, anchor)
    assert not problems, "\n".join(problems)


#: ``README, "Section"`` / ``docs/x.md, "Section"`` / ``BENCHMARKS.md section "X"``: a named section of a file.
SECTION = re.compile(r"(README(?:\.md)?|BENCHMARKS(?:\.md)?|docs/[\w./-]+\.md)(?:'s)?,?\s+(?:section\s+)?"
                     r"[\"“]([^\"”\n]+)[\"”]")
FILE_ANCHOR = re.compile(r"(?<![\w/.])((?:docs/|\.\./)?[\w./-]+\.md)#([\w-]+)")
MD_FILE = re.compile(r"(?<![\w/.-])((?:docs|bench/results)/[\w./-]+\.md|README\.md|BENCHMARKS\.md|DESIGN\.md)\b")


def _pointer_sources() -> list[Path]:
    files = [p for d in CODE_DIRS for p in (REPO / d).rglob("*.py")]
    files += sorted((REPO / "jobs" / "configs").glob("*.y*ml")) + [REPO / "Makefile"] + PAGES
    return files


def _resolve_named_file(name: str, source: Path) -> Path | None:
    name = {"README": "README.md", "BENCHMARKS": "BENCHMARKS.md"}.get(name, name)
    for base in (REPO, source.parent):
        if (base / name).exists():
            return (base / name).resolve()
    return None


def _section_exists(path: Path, section: str) -> bool:
    """A heading that is, or starts with, ``section`` (case and markup ignored)."""
    want = _plain(section).lower().rstrip(".")
    return any(title.lower() == want or title.lower().startswith(want + " ") or title.lower().startswith(want + ":")
               or title.lower().startswith(want + ",") for _, title in headings(path))


def test_prose_pointers_in_code_configs_and_pages_resolve():
    problems = []
    for source in _pointer_sources():
        text = source.read_text()
        rel = source.relative_to(REPO)
        for match in SECTION.finditer(text):
            where = f"{rel}:{_line(text, match.start())}"
            file = _resolve_named_file(match[1], source)
            if file is None:
                problems.append(f"{where}: points to {match[1]}, which is not in the repository")
            elif not _section_exists(file, match[2]):
                problems.append(f"{where}: {match[1]} has no section \"{match[2]}\"")
        for match in FILE_ANCHOR.finditer(text):
            where = f"{rel}:{_line(text, match.start())}"
            file = _resolve_named_file(match[1], source)
            if file is None:
                problems.append(f"{where}: points to {match[1]}, which does not exist")
            else:
                problems += _check_anchor(where, file, match[2])
        for match in MD_FILE.finditer(text):
            if source.suffix == ".md" and match[1] != "DESIGN.md":
                continue  # pages' links are test (a)'s; their bare file names are checked here only for DESIGN.md
            if re.search(r"_[A-Z]+(?=[_.])", match[1]):
                continue  # `bench/results/features_X.md`: notation for a file the user names
            if _resolve_named_file(match[1], source) is None:
                problems.append(f"{rel}:{_line(text, match.start())}: names {match[1]}, which is not in the "
                                f"repository")
    assert not problems, "\n".join(problems)


def test_named_configs_exist():
    sources = [*(REPO / "jobs").glob("*.py"), *(REPO / "bench").glob("*.py"), REPO / "Makefile", *PAGES,
               *(REPO / "jobs" / "configs").glob("*.yaml")]
    problems = []
    for source in sources:
        text = source.read_text()
        for match in re.finditer(r"jobs/configs/[\w.-]+?\.ya?ml", text):
            if not (REPO / match[0]).is_file():
                problems.append(f"{source.relative_to(REPO)}:{_line(text, match.start())}: {match[0]} does not "
                                f"exist")
        # a shipped recipe by name (`ser-models after --config demo_after`); `--config NAME` is notation
        for match in re.finditer(r"--config ([a-z][a-z0-9_]*)\b", text):
            if not (REPO / "ser_models" / "configs" / f"{match[1]}.yaml").is_file():
                problems.append(f"{source.relative_to(REPO)}:{_line(text, match.start())}: --config {match[1]}: "
                                f"no such recipe (`ser-models configs` lists them)")
    assert not problems, "\n".join(problems)


# --- (d) docs/ARCHITECTURE.md: files and the names defined in them ---------------------------------------

#: Backticked names that are files a run writes (``wap.safetensors``), not Python names.
FILE_SUFFIXES = r"\.(py|md|ya?ml|json|jsonl|parquet|safetensors|csv|png|txt|sh|onnx|xml)$"
PY_FILES = sorted(p for d in (*CODE_DIRS, "tests") for p in (REPO / d).rglob("*.py"))


@cache
def _source(path: Path) -> str:
    return path.read_text()


@cache
def _defines(path: Path, name: str) -> bool:
    """Whether a Python file defines (or re-exports, or sets as an attribute) ``name``."""
    text = _source(path)
    n = re.escape(name)
    return bool(re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{n}\b|^\s*{n}\s*(?::[^=\n]+)?=|"
                          rf"self\.{n}\s*(?::[^=\n]+)?[=,]|^\s*{n}\s*:|\bimport\b[^\n]*\b{n}\b|"
                          rf"^\s+{n},?\s*$|\"{n}\"", text, re.M))


@cache
def _module_files(tail: str) -> tuple[Path, ...]:
    hits = [p for p in PY_FILES if str(p.relative_to(REPO)).endswith(tail + ".py")
            or str(p.relative_to(REPO)).endswith(tail + "/__init__.py")]
    return tuple(p for p in hits if p.name != "__init__.py" or str(p.parent.relative_to(REPO)).endswith(tail))


@cache
def _classes() -> dict[str, list[Path]]:
    """Class name -> the library files that define it."""
    out: dict[str, list[Path]] = {}
    for path in PY_FILES:
        if path.parts[len(REPO.parts)] != "tests":
            for name in re.findall(r"^class (\w+)", _source(path), re.M):
                out.setdefault(name, []).append(path)
    return out


def _class_file(name: str) -> Path | None:
    """The one library file that defines class ``name`` (None when none or several do)."""
    hits = _classes().get(name, [])
    return hits[0] if len(hits) == 1 else None


def _modules_for(dotted: list[str]) -> tuple[Path | None, list[str]]:
    """The longest leading part of a dotted name that is a Python module of the repository (a file whose path
    ends with it: ``lbfgs`` -> ``ser_models/training/lbfgs.py``, ``ser_models.data`` -> its ``__init__``), and
    the rest of the name."""
    for k in range(len(dotted), 0, -1):
        hits = _module_files("/".join(dotted[:k]))
        if len(hits) == 1:
            return hits[0], dotted[k:]
    return None, dotted


def _architecture_problems() -> list[str]:
    page = REPO / "docs" / "ARCHITECTURE.md"
    raw = page.read_text()
    # Code blocks hold file-tree sketches, not references.
    text = re.sub(r"^```.*?^```", lambda m: "\n" * m[0].count("\n"), raw, flags=re.S | re.M)
    problems, checked = [], 0
    paragraphs = re.split(r"\n(?=\s*\n|- |## )", text)
    offset = 0
    for para in paragraphs:
        start = text.index(para, offset)
        offset = start + len(para)
        spans = [(m.start() + start, re.sub(r"\s+", "", m[1])) for m in re.finditer(r"`([^`]+)`", para)]
        files_here = []
        for pos, span in spans:
            match = re.fullmatch(r"((?:[\w.-]+/)*[\w.-]+\.(?:py|sh|yaml))(?:\.[\w.]+)?", span)
            if not match or "<" in span:
                continue
            name = match[1]
            found = [p for p in (REPO / name, REPO / "ser_models" / name) if p.is_file()]
            if not found:
                found = [p for p in PY_FILES if str(p.relative_to(REPO)).endswith("/" + name)]
            if not found:
                problems.append(f"docs/ARCHITECTURE.md:{_line(text, pos)}: `{name}` does not exist")
            else:
                checked += 1
                files_here += found
        for pos, span in spans:
            where = f"docs/ARCHITECTURE.md:{_line(text, pos)}"
            name = span.split("(")[0].rstrip(".")
            if re.fullmatch(r"_[A-Za-z]\w*", name):  # a private name: defined in a file this paragraph names
                checked += 1
                pool = files_here or PY_FILES
                if not any(_defines(p, name) for p in pool):
                    problems.append(f"{where}: `{name}` is not defined in "
                                    + (", ".join(str(p.relative_to(REPO)) for p in files_here) or "the repository"))
            elif re.fullmatch(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", name) and not re.search(FILE_SUFFIXES, name):
                module, rest = _modules_for(name.split("."))
                if module is None and name[0].isupper():  # `Class.method`: the one file that defines the class
                    module, rest = _class_file(name.split(".")[0]), name.split(".")[1:]
                if module is not None and module.name == "__init__.py" and not name.startswith("ser_models."):
                    continue  # `active.budget_hours`, `data.utt_id`: a config key or a record field, not a module
                if module is None:
                    if name.startswith("ser_models."):
                        problems.append(f"{where}: `{name}`: no such module in ser_models")
                    continue
                checked += 1
                if rest and not _defines(module, rest[0]):
                    problems.append(f"{where}: `{name}`: {rest[0]} is not defined in {module.relative_to(REPO)}")
    assert checked > 100, f"only {checked} references checked in docs/ARCHITECTURE.md: is the extraction broken?"
    return problems


def test_architecture_names_files_and_definitions_that_exist():
    problems = _architecture_problems()
    assert not problems, "\n".join(problems)
