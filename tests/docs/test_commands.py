"""Every command the docs show can be pasted into bash and into zsh.

zsh, the default shell on macOS, globs an unquoted word that holds ``[``, ``]``, ``*`` or ``?`` and stops with
"no matches found" when nothing matches, where bash passes the word through. A dotted override with a list
(``evidence.strategies=[random,margin]``) therefore works in bash and fails in zsh unless it is quoted
(``'evidence.strategies=[random,margin]'``). This test reads the commands of the README, the docs pages,
BENCHMARKS.md, the Makefile's comments and the configs' comments and names every unquoted glob character by file and line.

Pure text: no shell runs.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", REPO / "BENCHMARKS.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "zsh", "console"}
COMMAND_START = re.compile(r"^(\$ )?(python3? -m |\.venv/bin/python -m |(\.venv/bin/)?ser-models(-serve)? |xargs |"
                           r"make |ray job submit |bash |platform/submit\.sh |pip install |pip wheel |sphinx-build )")
GLOB_CHARS = "[]*?"
# An inline usage line (`ser-models <job> CONFIG [key=value ...]`) is notation, not a command to paste.
SYNOPSIS = re.compile(r"<[\w|.-]+>|\.\.\.")


def unquoted_globs(command: str) -> list[str]:
    """The words of a shell command line that hold an unquoted ``[``, ``]``, ``*`` or ``?``.

    Args:
        command: one logical command line (continuations already joined).

    Returns:
        The offending words, as written.
    """
    words, bad = [], []
    word, globbed, quote, i = "", False, "", 0
    while i < len(command):
        ch = command[i]
        if quote:
            word += ch
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < len(command):
                word += command[i + 1]
                i += 1
        elif ch in "'\"":
            quote = ch
            word += ch
        elif ch == "\\" and i + 1 < len(command):
            word += ch + command[i + 1]
            i += 1
        elif ch == "$" and command[i + 1:i + 2] in ("(", "{"):  # $(...) / ${...}: its own words
            close = ")" if command[i + 1] == "(" else "}"
            end = command.find(close, i)
            end = len(command) - 1 if end < 0 else end
            word += command[i:end + 1]
            i = end
        elif ch.isspace() or ch in ";|&<>":
            words.append((word, globbed))
            word, globbed = "", False
        elif ch == "#" and not word:  # a comment runs to the end of the line
            break
        else:
            word += ch
            globbed = globbed or ch in GLOB_CHARS
        i += 1
    words.append((word, globbed))
    for word, globbed in words:
        if globbed:
            bad.append(word)
    return bad


def _logical_lines(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Joins backslash continuations; each result keeps the number of its first line."""
    out, start, parts = [], None, []
    for number, line in lines:
        start = number if start is None else start
        if line.rstrip().endswith("\\"):
            parts.append(line.rstrip()[:-1])
            continue
        parts.append(line)
        out.append((start, " ".join(parts)))
        start, parts = None, []
    if parts:
        out.append((start, " ".join(parts)))
    return out


def markdown_commands(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` of a Markdown page's shell code blocks and of its inline command spans.

    Blocks fenced as bash / sh / shell / zsh / console count whole (a console block's ``$ `` prompt is dropped,
    its output lines are skipped); an unlabelled block counts for its lines that start like a command
    (``python -m``, ``make``, ``ray job submit``, ...). Inline code spans count when they start like a command.
    """
    text = path.read_text()
    lines = text.splitlines()
    commands: list[tuple[int, str]] = []
    fence, lang, block = None, "", []
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if fence is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w{}-]*)", stripped)
            if match:
                fence, lang, block = match[1], match[2].lower(), []
            continue
        if stripped.startswith(fence):
            if lang in SHELL_LANGS or lang == "":
                for start, command in _logical_lines(block):
                    body = command.strip()
                    if lang == "console":
                        if not body.startswith("$ "):
                            continue
                    elif lang == "" and not COMMAND_START.match(body):
                        continue
                    commands.append((start, body.removeprefix("$ ")))
            fence = None
            continue
        block.append((number, line))
    # Inline spans outside code blocks: `ser-models x ... key=[a,b]` in running text.
    for match in re.finditer(r"(?<!`)`([^`]+)`(?!`)", text):
        span = " ".join(match[1].split())
        if COMMAND_START.match(span) and not SYNOPSIS.search(span):
            commands.append((text.count("\n", 0, match.start()) + 1, span))
    return commands


def makefile_commands(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` of the commands quoted in a Makefile's comments (after ``e.g.`` or in backticks)."""
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.lstrip().startswith("#"):
            continue
        for span in re.findall(r"`([^`]+)`", line):
            if COMMAND_START.match(span):
                out.append((number, span))
    return out


def config_comment_commands(path: Path) -> list[tuple[int, str]]:
    """``(line, command)`` of the commands shown in a YAML config's comments (``#   ser-models x ...``, with
    ``#       ...`` continuation lines after a trailing backslash)."""
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = re.match(r"^\s*#\s+(.*)$", line)
        if match:
            lines.append((number, match[1]))
    out = []
    for start, command in _logical_lines(lines):
        if COMMAND_START.match(command.strip()):
            out.append((start, command.strip()))
    return out


def test_the_scanner_knows_quoting():
    """The scanner itself: what zsh globs and what it does not."""
    assert unquoted_globs("python -m jobs.evidence c.yaml evidence.strategies=[random,margin]") == [
        "evidence.strategies=[random,margin]"]
    assert unquoted_globs("python -m jobs.evidence c.yaml 'evidence.strategies=[random,margin]'") == []
    assert unquoted_globs('python -m jobs.x c.yaml "model.labels=[]" a=\\[b\\]') == []
    assert unquoted_globs("python -m bench.x --seeds $(seq 0 19)  # rounds/round=*/") == []
    assert unquoted_globs("ls runs/*.csv | head") == ["runs/*.csv"]


def test_commands_in_the_docs_paste_into_bash_and_zsh():
    pages = [(p, markdown_commands(p)) for p in PAGES] + [(REPO / "Makefile", makefile_commands(REPO / "Makefile"))]
    pages += [(p, config_comment_commands(p)) for p in sorted((REPO / "jobs" / "configs").glob("*.yaml"))]
    assert sum(len(c) for _, c in pages) > 30, "found almost no commands: is the extraction broken?"
    problems = [f"{path.relative_to(REPO)}:{line}: {word}  (quote it: '{word}')"
                for path, commands in pages for line, command in commands for word in unquoted_globs(command)]
    assert not problems, ("unquoted [ ] * ? in a command: zsh globs these and stops with 'no matches found'\n"
                          + "\n".join(problems))
