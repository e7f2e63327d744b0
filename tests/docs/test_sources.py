"""Every number on the pages, decimal or integer, is read from a line of a results file the page cites, and the
committed map ``figure_sources.json`` (beside this file) says which line, so a number that drifts fails here.

The pages are README.md, BENCHMARKS.md and ``docs/**/*.md``, less ``docs/_build/``, the generated API pages
(``docs/reference/``) and ``docs/layers/`` (the reports ``jobs.layer_analysis`` wrote: results, not pages).
Fenced code blocks are skipped; tables, inline code and prose are read.

The rule, number by number:

- **A number** is a decimal one (``0.72``, ``-1.8``, ``+2.4``, ``−0.3``, ``1,044.5``, ``4.23x``) or an
  integer with thousands separators or of three digits or more (``1,226``, ``2880``, ``+648``, ``1015x``);
  not one glued to a name or a path (``v3.2``, ``wav2vec2``, ``demo-2880``, ``results_0.5.md``). A one- or
  two-digit integer is a number only with a unit of measure written right after it, or after the last number
  of the range or list it is in (``SHORT_UNITS``: ``78 s``, ``3-6 min``, ``97 %``, ``5/10/20 %``, ``16 GiB``,
  ``16x``, ``+12 points``, ``8 kHz``); a plain count (seeds, classes, rounds, steps, list positions, "20 seeds
  x 4 strategies") is not checked. A sign counts only where it stands as one (after a space or a bracket): the
  ``1.5`` of ``0.5-1.5`` is a range's end, unsigned.
- **The sources a page cites** are the results files it names, as a path ``bench/results/<name>`` (in prose or
  a link, ``../`` allowed) or as a bare file name in backticks (`` `segment.md` ``) that is a file of
  ``bench/results/``; and the layer-analysis reports, named ``docs/layers/<name>.md`` (or the folder,
  ``docs/layers/``, for both). Only reports count: ``.md``, ``.json`` and ``.txt``. The per-run tables
  (``*_runs.csv``, ``*_draws.csv``) hold thousands of numbers, so almost any figure would match one by chance.
- **A number is sourced** when its entry in the map names a cited file, a line of it and a number ``v`` on that
  line, and ``v`` read the entry's way (``READINGS``) rounds to it at the page's precision (``0.72`` stands
  for anything in [0.715, 0.725], ``144`` for [143.5, 144.5]). The readings are ``v`` itself, ``100v`` (a
  share as a percent, a difference in UA as points), and three changes of time unit: seconds to minutes
  (``v/60``) and to hours (``v/3600``), and seconds to milliseconds (``1000v``); an integer is read as ``v``
  only. A signed number must match ``v`` with its sign (``+2.4`` matches ``0.024`` or ``+0.024``, not
  ``-0.024``); an unsigned one matches either sign ("8.3 points lower" quotes ``-0.083``).
- **An integer is tied to a source line only by a word of its own** (``meaning_at``): a word next to it on the
  page (the word before it, the two after it, those of the range or list it is in: ``138-148 CPU-s``; in a
  short table cell with none, its column header and its row's label) must also sit next to the value in the
  source line (or head its column there): "1,226 labels" and ``labels: 1226`` or a ``| labels |`` column. A
  unit written right after it must be the same on both sides ("100 labels" is not "100 %"). Integers repeat
  across runs (a budget of 400 labels, a batch of 128, a pool of 2,016 training clips), so even then it is
  tied only where it is not in doubt: on a line its table row or paragraph's other numbers come from or that
  holds another of them; a round value (a multiple of 50, a power of two) nowhere else; any other in the files
  its row or paragraph cites, else in the one file of its innermost section that holds it.
- **A one- or two-digit integer** (``SHORT``) is tied the same way, more strictly, since so small a value with
  its unit stands on many lines (every run at 20 % of the labels, every 8 s window): the source must write the
  same unit right after the value, or, in a bare table cell, head its column with it (a header that holds no
  number; a header row is never the line), and the line must hold another figure of the integer's own
  sentence (in a table, of its cell; three digits or more, not part of a name like ``sweep_480_rf4``) or be a
  line its table row's other figures come from.
- **An integer that test_figures.py fills** from a results file (a ``{}`` of a figure the page quotes) is
  checked there and needs no entry.
- **Anything else is registered**, with why it is not read from a results file: a decimal in ``REGISTRY`` (the
  page, the number exactly as written and a snippet of the page around it, whitespace free), an integer in the
  map (an entry with a ``reason`` instead of a source: ``--register``). The reasons:

  - ``config default``: a default or setting of the platform, not a measurement;
  - ``target``: a goal a measurement is held to;
  - ``published``: a paper's, a vendor's or another project's figure, cited there;
  - ``example``: a worked example, an illustrative value, a sample of a file's format;
  - ``identifier``: a version, an arXiv id, a year of a citation, a user id, a name;
  - ``computed``: a size or a bound worked out from a format or a formula (``16 kHz x 2 bytes x 3600 s``,
    chance ``1 / C``), not measured;
  - ``arithmetic on cited figures``: computed from figures of the cited results (a mean of a table's rows,
    CPU-seconds from wall time x cores, seconds per pool hour from a rate, labels as a share of a pool); the
    headline ones are recomputed by ``test_figures.py``;
  - ``runs table``: a single run's figure from a per-run table the page cites (``*_runs.csv``), which the
    rule does not read;
  - ``unrecorded measurement``: measured once (an A/B run, a side measurement) but in no results file;
  - ``pending``: on a page being rewritten at present, to be sourced or classified when it settles;
  - ``run setting``: an input of a benchmark run as the page states it (a label budget, a pool's or a split's
    size, ``--n``, a batch, block, file or window size, a number of draws or orders), which several runs
    share or no cited line states beside a word;
  - ``constant``: a property of a model, a format or a standard (Whisper-tiny's width 384, 16-bit PCM's
    32768, 1024 priming samples);
  - ``not tied``: read from a cited results file, but no word next to it ties it to one line (a range's bare
    end): not checked; put its unit next to it, or ``--pin`` it.

  A ``REGISTRY`` entry whose snippet is gone from its page, or covers no such number there, fails as stale; a
  registered map entry like any other (below), and one whose number changed is reported until the updater
  refreshes it.

**The map** (``figure_sources.json``, one entry a line) holds, for every number that is neither in
``REGISTRY`` nor filled by test_figures.py:

- ``page``, ``number`` (as written) and ``context``: the words around the number on the page, whitespace
  normalised, the number itself marked ``⟦ ⟧``; as few words a side (3, 5, 8, ... 40) as tell the occurrence
  apart among the page's numbers of its kind, decimal or integer (``nth`` ranks identical contexts where even
  40 words do not). An entry finds its number by the context with the number's own place left open, so a
  number edited by hand is still found and compared, not taken for a new one; where a neighbouring number was
  edited too, by the context with every number open, if that is unique on the page.
- ``file``, ``anchor``, ``token`` and ``reading``: the results file, its line, the index of the value among
  the line's numbers (``SOURCE_NUMBER``) and the reading (``v``, ``100v``, ``v/60``, ``v/3600``, ``1000v``).
  The anchor is the line with every number written ``#`` and whitespace normalised (``mask``); where several
  lines of the file share that mask, also the nearest preceding heading (a Markdown ``#`` heading, or in JSON
  the key that opens the enclosing object or list; numbers written ``#`` too) and the line's ``occurrence``
  among the lines with that mask under that heading. A rerun with new values in the same layout keeps every
  anchor.
- or, for a registered integer, ``reason`` (one of the reasons above) instead of a source.

The test fails on: a number with no entry (run the updater); an entry whose number or context is no longer
on its page (stale); an entry whose file the page no longer cites, whose anchor finds no line, or whose token,
read the recorded way and rounded to the page's precision, differs from the page's number (drift: the page
edited, or the results rerun; the message names page:line, the number, the file and what it now reads); an
entry whose page number changed to what the source now reads, or a registered number that changed (the map is
out of date: run the updater).

**How the map is built** (the updater): the numbers of one page line (a table row, a line of prose) are
attributed together. Among the files cited in the line's innermost section (``###`` and deeper), then in its
``##`` section, then on the page, the source line that matches the most of the line's numbers (each token of
it used once) takes them; ties go to the line most numbers of the row or paragraph already come from, then to
the files cited in the row or paragraph, then to the file cited nearest above the line (then to files cited
below, the nearest first), then to the earlier source line; the rest of the line's numbers are attributed the
same way, line by line. A single number is the same search with one number.

**The updater**::

    .venv/bin/python tests/docs/test_sources.py --update [--force]
    .venv/bin/python tests/docs/test_sources.py --reattribute PAGE...
    .venv/bin/python tests/docs/test_sources.py --pin PAGE NUMBER FILE LINE_TEXT VALUE_TOKEN [READING]
    .venv/bin/python tests/docs/test_sources.py --register PAGE NUMBER REASON [NEAR]

``--pin`` points one number at the line it really comes from, where the attribution matched it by chance or
the rule cannot tie it (``--pin README.md +2.1 label_efficiency_neutral3k.md "| informative_diverse | 20% |
0.667" +0.021 100v``). ``--register`` registers an integer (its one occurrence on the page, or the one inside
the snippet ``NEAR``) with a reason. ``--update`` adds entries for the numbers that have none, drops the stale
ones and refreshes the ones whose page number changed and agrees with the source (or is registered); it never
rewrites an entry that fails (drift): it prints them, keeps them and exits non-zero, unless ``--force``, which
attributes those numbers afresh. It also exits non-zero while a number can be attributed nowhere (cite its
file, correct it, or register it). ``--reattribute`` drops the named pages' sourced entries (registrations
stay) and attributes their numbers afresh (after a page cites a better file; it prints every number whose
source changed, so check them: a drifted number attributed afresh may land on a chance match). ``--measure
[N]`` prints how many numbers are mapped and registered, then perturbs N sampled decimals, N sampled integers
of three digits or more and N sampled one- and two-digit ones (default 300, or as many as are mapped), on the
page and in the source separately, and prints the shares caught.

Pure text: no imports of the library.
"""

from __future__ import annotations

import bisect
import importlib.util
import itertools
import json
import random
import re
import string
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
LAYERS = REPO / "docs" / "layers"
MAP = Path(__file__).with_name("figure_sources.json")

#: A decimal number on a page: thousands separators allowed, a sign only where it stands as one, a ratio's
#: ``x`` allowed after it (``4.23x``).
NUMBER = re.compile(r"(?:(?<![\w.,/\-–−+])[-+−])?(?<![\w.,/])(?:\d{1,3}(?:,\d{3})+|\d+)\.\d+"
                    r"(?![^\Wx]|x\w|\.\w|,\d{3})")
#: An integer on a page: with thousands separators or of three digits or more (``1,226``, ``2880``, ``+120``,
#: ``1015x``); not one glued to a name (``demo-2880``, ``demo-angry3-2880``, ``wav2vec2``, ``00001``) or a
#: path. One- and two-digit integers are ``SHORT``.
INTEGER = re.compile(r"(?:(?<![\w.,/\-–−+])[-+−])?(?<![\w.,/])(?<![A-Za-z]-)(?<![A-Za-z]\d-)"
                     r"(?:[1-9]\d{0,2}(?:,\d{3})+|[1-9]\d{2,})(?![^\Wx]|x\w|\.\w|[.,]\d)")
#: The units a one- or two-digit integer is checked with: written right after it, or after the last number of
#: the range or list it is in (``78 s``, ``3-6 min``, ``5/10/20 %``, ``16x``). Time: ``ms s min h`` and
#: ``seconds minutes hours days``; size: ``B`` (spaced), ``bytes``, ``kB MB GB TB KiB MiB GiB TiB``; a share
#: ``%``; a ratio ``x`` (glued: ``20 seeds x 4`` is a product); ``points``/``pts`` (``UA points`` too);
#: ``CPU-s``/``CPU-min``/``CPU-h``; rates ``clips/s``, ``crops/s``, ``calls/s``, ``audio s / s``; ``Hz``,
#: ``kHz`` and ``dB``.
SHORT_UNITS = (r"(?:\s?%|x(?!\w)"
               r"|\s?(?:ms|s|min|h|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)(?![\w-])"
               r"|\s(?:seconds?|minutes?|hours?|days?|bytes|B|Hz|kHz|dB|points?|pts|UA\s+points?|CPU-(?:s|min|h)"
               r"|(?:clips|crops|calls)\s?/\s?s|audio\s+s\s?/\s?s)(?![\w-]))")
#: What joins the numbers of a range or a list that shares one unit (``3-6 min``, ``10 or 20 %``).
_SHORT_JOIN = r"(?:\s*(?:[-–/,]|->|→|\bto\b|\band\b|\bor\b)\s*[-+−]?\d+(?:,\d{3})*(?:\.\d+)?)*"
#: A one- or two-digit integer with a unit of measure (``SHORT_UNITS``): ``78 s``, ``97 %``, ``16 GiB``,
#: ``+12 points``. One- and two-digit integers without a unit (counts of seeds, classes, rounds, steps, list
#: positions) are not checked.
SHORT = re.compile(r"(?:(?<![\w.,/\-–−+])[-+−])?(?<![\w.,/])(?<![A-Za-z]-)(?<![A-Za-z]\d-)"
                   rf"(?:[1-9]\d?|0)(?![\w.,]\d|\d)(?={_SHORT_JOIN}{SHORT_UNITS})")
#: Any kind of page number.
ANY_NUMBER = re.compile(f"{NUMBER.pattern}|{INTEGER.pattern}|{SHORT.pattern}")
#: Any number in a results file (integers, exponents and thousands separators included).
SOURCE_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
#: How a results file's number ``v`` may be quoted: itself, x 100 (a share as %, UA as points), seconds as
#: minutes, as hours, as milliseconds; ``READING_NAMES`` names them in the map.
READINGS = (1.0, 100.0, 1 / 60, 1 / 3600, 1000.0)
READING_NAMES = ("v", "100v", "v/60", "v/3600", "1000v")
REPORT_SUFFIXES = (".md", ".json", ".txt")
#: Words a side a page context may take, tried in turn until the context is unique on its page.
CONTEXT_WORDS = (3, 5, 8, 12, 20, 40)
#: Where a results line's heading starts: Markdown (and text) headings; in JSON a key opening an object or list.
HEADING = re.compile(r"^#{1,6}\s")
JSON_HEADING = re.compile(r'^\s*"[^"]*"\s*:\s*[\[{]\s*$')
#: A page number's place in its context: marked in the map, open (``HOLE``) in a context key.
MARKED = re.compile("⟦[^⟧]*⟧")
HOLE = "\x01"
#: An integer's place: apart from a decimal's, so that adding integers to a page's numbers leaves the decimals'
#: contexts unique.
INT_HOLE = "\x02"
#: A one- or two-digit integer's place: apart again, so that adding them left the others' contexts unique.
SHORT_HOLE = "\x03"


def pages() -> list[Path]:
    docs = [p for p in sorted((REPO / "docs").rglob("*.md"))
            if not {"_build", "reference", "layers"} & set(p.relative_to(REPO / "docs").parts)]
    return [REPO / "README.md", REPO / "BENCHMARKS.md", *docs]


def without_fences(text: str) -> str:
    """The text with fenced code blocks (indented ones too) blanked, line numbers and offsets kept."""
    return re.sub(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1", lambda m: re.sub(r"[^\n]", " ", m[0]), text,
                  flags=re.S | re.M)


def citations(text: str) -> dict[str, list[int]]:
    """The results files a page cites, as paths relative to the repository, each with the offsets it is
    cited at."""
    found: dict[str, set[int]] = defaultdict(set)
    for m in re.finditer(r"bench/results/([\w.-]+\w)", text):
        found[f"bench/results/{m[1]}"].add(m.start())
    for m in re.finditer(r"`([\w.-]+\.\w+)`", text):
        found[f"bench/results/{m[1]}"].add(m.start())
    for m in re.finditer(r"docs/layers/([\w.-]+\.md)", text):
        found[f"docs/layers/{m[1]}"].add(m.start())
    for m in re.finditer(r"docs/layers/[`)]", text):
        for p in LAYERS.glob("*.md"):
            found[str(p.relative_to(REPO))].add(m.start())
    return {n: sorted(found[n]) for n in sorted(found)
            if n.endswith(REPORT_SUFFIXES) and (REPO / n).is_file()}


def cited(text: str) -> list[str]:
    """The results files a page cites, as paths relative to the repository."""
    return list(citations(text))


@cache
def _file_text(name: str) -> str:
    return (REPO / name).read_text()


def number_value(token: str) -> float:
    """The value of a results file's token (``1,044``, ``−0.3``, ``1e-05``)."""
    return float(token.replace(",", "").replace("−", "-"))


def is_integer(token: str) -> bool:
    return "." not in token


@cache
def is_short(token: str) -> bool:
    """Whether a page's number is a one- or two-digit integer (``SHORT``)."""
    return is_integer(token) and sum(c.isdigit() for c in token) <= 2


def kind(token: str) -> str:
    """``decimal``, ``integer`` (three digits or more, or thousands separators) or ``short`` (``SHORT``)."""
    return "short" if is_short(token) else "integer" if is_integer(token) else "decimal"


def hole(token: str) -> str:
    return SHORT_HOLE if is_short(token) else INT_HOLE if is_integer(token) else HOLE


def value(token: str) -> tuple[float, int, bool]:
    """``(value, decimals shown, signed)`` of a page's number."""
    plain = token.replace(",", "").replace("−", "-")
    return float(plain), len(plain.partition(".")[2]), plain[0] in "+-"


def agrees(token: str, reading: float) -> bool:
    """Whether ``reading`` rounds to the page's ``token`` at its precision (with its sign if it shows one)."""
    v, decimals, signed = value(token)
    half = 0.5 * 10 ** -decimals * (1 + 1e-9)
    return abs((reading if signed else abs(reading)) - v) <= half


def masked_key(key: str) -> str:
    """A context key with every number open."""
    return ANY_NUMBER.sub("#", key)


def mask(line: str) -> str:
    """A results line with every number written ``#``, whitespace normalised."""
    return " ".join(SOURCE_NUMBER.sub("#", line).split())


# ------------------------------------------------------------------------------------------------ meaning words
# An integer is common (a budget of 200 labels, a batch of 128, 2,016 training clips), so its value alone ties
# it to a source line by chance about as often as not: it is tied only where a word next to it on the page also
# sits next to the value in the source line (or heads its table column), "1,226 labels" and "labels: 1226".

#: Words that say nothing of what a number counts.
STOPWORDS = frozenset("""
    a about above across after against all also an and any are as at be been before below being between both but
    by can could did do does each even every for from had has have here i in into is it its just less may might more
    most much must near nearly no nor not of on one only or our out over per roughly so some still than that the
    their them then there these they this those three to two under up via vs was we were what when where which
    while who will with within would you
""".split())
#: One spelling for each unit.
SPELLINGS = {"sec": "s", "second": "s", "minute": "min", "hour": "h", "hr": "h", "percent": "%"}
#: Units: a number written with one of these right after it is tied only to a value with the same one (or none)
#: after it: "100 labels" is not "100 %".
UNITS = frozenset("% s ms min h x b kb mb gb kib mib gib hz khz tflop".split())
#: A word next to a number: ``clips``, ``CPU-s``, ``rows_per_file``, ``audio s / s``'s ``s / s``, ``%``.
WORD = re.compile(r"[A-Za-z][\w']*(?:-[A-Za-z][\w']*)*(?:\s*/\s*[A-Za-z][\w']*(?:-[A-Za-z][\w']*)*)*|%")
WORD_AT_END = re.compile(rf"(?:{WORD.pattern})$")
#: What may stand between a number and its word: spaces, emphasis, quotes, ``:`` and ``=`` (``"clips": 2880``,
#: ``n = 720``); before a number an opening bracket too (``all labels (2,016)``).
BETWEEN_AFTER = frozenset(" \t\n*~\"'`:=≈")
BETWEEN_BEFORE = BETWEEN_AFTER | {"("}
#: What joins the numbers of a range or a list, whose words are the whole range's (``138-148 CPU-s``,
#: ``50, 100 and 200 labels``, ``2,016 / 432 / 432``).
_JOIN = r"\s*(?:[-–,/]|->|→|\bto\b|\band\b|\bor\b|\bvs\b\.?|\bagainst\b)\s*"
JOINED = re.compile(rf"{_JOIN}({SOURCE_NUMBER.pattern})")
JOINED_BEFORE = re.compile(rf"{SOURCE_NUMBER.pattern}{_JOIN}$")
TABLE_RULE = re.compile(r"^\s*\|[\s:|-]+\|\s*$")


@dataclass(frozen=True)
class Meaning:
    """What a number counts: the words next to it, and its unit: the unit written right after it, ``""`` where
    another word is, ``None`` where none is (a bare table cell, the end of a clause)."""

    words: frozenset[str]
    unit: str | None

    def agrees(self, other: Meaning) -> bool:
        """A word in common, and no two different units (or a unit against a word)."""
        return bool(self.words & other.words) and (
            self.unit is None or other.unit is None or self.unit == other.unit)


NO_MEANING = Meaning(frozenset(), None)


def _form(part: str) -> str:
    part = part.removesuffix("'s").strip("'")
    if len(part) > 3 and part.endswith("s") and not part.endswith(("ss", "us", "is")):
        part = part[:-1]
    return SPELLINGS.get(part, part)


def word_forms(word: str) -> list[str]:
    """A word's forms: lower case, singular, one spelling for a unit; a name's parts apart (``rows_per_file``),
    a compound whole (``CPU-s``, ``clips/s``: not ``s``)."""
    out = []
    for name in word.lower().split("_"):
        form = "/".join("-".join(_form(p) for p in piece.split("-")) for piece in re.split(r"\s*/\s*", name))
        if form and not form[0].isdigit():
            out.append(form)
    return out


def _glued(text: str, start: int, end: int) -> bool:
    """Whether a number is part of a name (``H100``, ``rf4``, ``sweep_480_rf4``, ``demo-2880``)."""
    before = text[max(0, start - 2):start]
    return bool(re.search(r"[A-Za-z_]$|[A-Za-z]-$", before)) or text.startswith("_", end)


def _word_before(text: str, at: int, lo: int) -> list[str]:
    while at > lo and text[at - 1] in BETWEEN_BEFORE:
        at -= 1
    m = WORD_AT_END.search(text, max(lo, at - 80), at)
    if not m or (m.start() > lo and (text[m.start() - 1].isalnum() or text[m.start() - 1] == ".")):
        return []  # no word, or the end of a longer token (``v3``, ``e.g``)
    if re.search(r"\d\s*$", text[max(lo, m.start() - 4):m.start()]):
        return []  # another number's unit (the % of ``40 % (848)``)
    return word_forms(m[0])


def _words_after(text: str, at: int, hi: int, n: int = 2) -> tuple[list[str], str | None]:
    """The ``n`` words after offset ``at`` (the same clause), and the unit (see ``Meaning``)."""
    out: list[str] = []
    unit = None
    if text.startswith("-", at):  # a compound: ``240-clip``
        at += 1
    for k in range(n):
        while at < hi and text[at] in BETWEEN_AFTER:
            at += 1
        m = WORD.match(text, at, hi)
        if not m:
            break
        forms = word_forms(m[0])
        if k == 0:
            unit = forms[0] if len(forms) == 1 and forms[0] in UNITS else ""
        out += forms
        at = m.end()
    return out, unit


def _line_bounds(text: str, start: int, end: int) -> tuple[int, int]:
    line_end = text.find("\n", end)
    return text.rfind("\n", 0, start) + 1, len(text) if line_end < 0 else line_end


def _headings(text: str, line_start: int, start: int) -> list[str]:
    """The words of the header cell above a Markdown table cell and of its row's first cell where that is a short
    label (none for a header row, a first cell or outside a table)."""
    rows = []
    at = line_start
    while at > 0:
        prev = text.rfind("\n", 0, at - 1) + 1
        line = text[prev:at - 1]
        if not line.lstrip().startswith("|"):
            break
        rows.append(line)
        at = prev
    column = text.count("|", line_start, start)
    if len(rows) < 2 or not TABLE_RULE.match(rows[-2]) or column < 2:
        return []
    line_end = text.find("\n", start)
    first = text[line_start:len(text) if line_end < 0 else line_end].split("|")[1]
    cells = rows[-1].split("|")[column:column + 1] + ([first] if len(WORD.findall(first)) <= 4 else [])
    return [w for cell in cells for word in WORD.findall(cell) for w in word_forms(word)]


def joined_span(text: str, start: int, end: int, lo: int = 0, hi: int | None = None) -> tuple[int, int]:
    """The span of the range or list (``JOINED``) the number at ``text[start:end]`` is in, within
    ``text[lo:hi]``."""
    hi = len(text) if hi is None else hi
    first, last = start, end
    while m := JOINED.match(text, last, hi):
        last = m.end()
    while (m := JOINED_BEFORE.search(text, max(lo, first - 40), first)) and not (
            m.start() > lo and (text[m.start() - 1].isalnum() or text[m.start() - 1] == ".")):
        first = m.start()
    return first, last


def meaning_at(text: str, start: int, end: int) -> Meaning:
    """What a number counts, page or results file alike.

    Args:
        text: a page's body or a results file's text.
        start: where the number starts in ``text``.
        end: where it ends.

    Returns:
        The word just before it and the two just after (within its table cell if it is in one), those of the
        whole range or list it is in too, stop words left out; in a short table cell that gives it none, its
        column header's and its row's first cell's. None for a number that is part of a name.
    """
    if _glued(text, start, end):
        return NO_MEANING
    lo, hi = _line_bounds(text, start, end)
    in_table = text[lo:hi].lstrip().startswith("|")
    if in_table:
        row_start, right = lo, text.find("|", end, hi)
        lo, hi = text.rfind("|", lo, start) + 1, hi if right < 0 else right
    else:
        lo, hi = 0, len(text)
    first, last = joined_span(text, start, end, lo, hi)
    after, unit = _words_after(text, end, hi)
    found = _word_before(text, start, lo) + after
    if (first, last) != (start, end):
        after, group_unit = _words_after(text, last, hi)
        found += _word_before(text, first, lo) + after
        unit = unit or group_unit
    words = frozenset(w for w in found if w not in STOPWORDS)
    if in_table and not words and len(WORD.findall(text, lo, hi)) <= 3:  # a short cell, not prose in a table
        words = frozenset(w for w in _headings(text, row_start, start) if w not in STOPWORDS)
    return Meaning(words, unit)


# --------------------------------------------------------------------------------------- figures of test_figures

@cache
def _test_figures():
    """The module ``test_figures.py`` beside this one (the tests are not a package)."""
    spec = importlib.util.spec_from_file_location("_docs_test_figures", Path(__file__).with_name("test_figures.py"))
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _loose(text: str) -> str:
    """A pattern for ``text`` with any whitespace where it has whitespace (pages wrap their lines anywhere)."""
    return "".join(r"\s+" if part.isspace() else re.escape(part) for part in re.split(r"(\s+)", text) if part)


@lru_cache(maxsize=256)  # every page, and the pages the tests change
def figure_spans(page: str, body: str) -> tuple[tuple[int, int], ...]:
    """Where test_figures.py checks a page: the integers there need no entry here.

    Args:
        page: the page, as ``pages()`` names it.
        body: its text, fenced code blanked (``without_fences``).

    Returns:
        The spans of ``body`` that a figure of ``test_figures.FIGURES`` fills from a results file (its ``{}``),
        where the page quotes the figure.
    """
    module = _test_figures()
    spans = []
    for figure in (f for f in module.FIGURES if f.doc == page):
        try:
            values, named = iter(figure.read()), module.tf32_speedups()
            pattern = ""
            for literal, name, spec, _ in string.Formatter().parse(figure.quoted):
                pattern += _loose(literal)
                if name is not None:
                    pattern += f"({_loose(format(named[name] if name else next(values), spec or ''))})"
        except (AssertionError, LookupError, StopIteration, TypeError, ValueError):
            continue  # test_figures.py reports the figure
        for m in re.finditer(pattern, body):
            spans += [m.span(g) for g in range(1, m.re.groups + 1)]
    return tuple(sorted(spans))


# ---------------------------------------------------------------------------------------------- results files

@dataclass
class Source:
    """A results file as lines: each line's numbers, mask and heading, and the lines by anchor."""

    name: str
    lines: list[str]
    tokens: list[list[str]]
    masks: list[str]
    headings: list[str]
    mask_count: Counter
    by_anchor: dict[tuple[str, str], list[int]]
    text: str = ""
    _index: tuple[list[float], list[tuple[int, int, int]]] | None = None
    _meaning: dict[tuple[int, int], Meaning] = field(default_factory=dict)

    def anchor(self, i: int) -> dict:
        if self.mask_count[self.masks[i]] == 1:
            return {"mask": self.masks[i]}
        key = (self.masks[i], self.headings[i])
        return {"mask": key[0], "heading": key[1], "occurrence": self.by_anchor[key].index(i)}

    def find(self, anchor: dict) -> tuple[int | None, str]:
        """The line an anchor names, or ``(None, why not)``."""
        if "heading" not in anchor:
            n = self.mask_count[anchor["mask"]]
            if n != 1:
                return None, f"{n} lines look like {anchor['mask']!r}"
            return self.masks.index(anchor["mask"]), ""
        hits = self.by_anchor.get((anchor["mask"], anchor["heading"]), [])
        if anchor["occurrence"] >= len(hits):
            return None, (f"{len(hits)} lines look like {anchor['mask']!r} under {anchor['heading']!r}, not "
                          f"{anchor['occurrence'] + 1}")
        return hits[anchor["occurrence"]], ""

    def index(self) -> tuple[list[float], list[tuple[int, int, int]]]:
        """Every reading of every token, sorted, with ``(line, token, reading)`` for each."""
        if self._index is None:
            rows = sorted((number_value(t) * f, i, j, r) for i, ts in enumerate(self.tokens)
                          for j, t in enumerate(ts) for r, f in enumerate(READINGS))
            self._index = [row[0] for row in rows], [row[1:] for row in rows]
        return self._index

    @cached_property
    def line_starts(self) -> list[int]:
        return [0, *itertools.accumulate(len(line) + 1 for line in self.lines)]

    def meaning(self, line: int, token: int) -> Meaning:
        """What a line's token counts (``meaning_at``)."""
        if (line, token) not in self._meaning:
            start = self.line_starts[line]
            m = list(SOURCE_NUMBER.finditer(self.lines[line]))[token]
            self._meaning[line, token] = meaning_at(self.text, start + m.start(), start + m.end())
        return self._meaning[line, token]

    def plain_tokens(self, line: int) -> list[str]:
        """A line's numbers less those that are part of a name (``sweep_bench_480_rf4``)."""
        text = self.lines[line]
        return [m[0] for m in SOURCE_NUMBER.finditer(text) if not _glued(text, m.start(), m.end())]

    def same_unit(self, line: int, token: int, unit: str | None) -> bool:
        """Whether a line's token is written with ``unit`` (a one- or two-digit integer's): right after it (or
        its range or list), or, in a bare table cell, as a word of its column header that holds no number. A
        header row is not a value's line."""
        if line + 1 < len(self.lines) and TABLE_RULE.match(self.lines[line + 1]):
            return False
        own = self.meaning(line, token).unit
        if own is not None or not self.lines[line].lstrip().startswith("|"):
            return own == unit
        m = list(SOURCE_NUMBER.finditer(self.lines[line]))[token]
        column = self.lines[line].count("|", 0, m.start())
        rows = [i for i in range(line - 1, -1, -1) if TABLE_RULE.match(self.lines[i])][:1]
        if not rows or rows[0] == 0:
            return False
        header = self.lines[rows[0] - 1].split("|")[column:column + 1]
        return bool(header) and not re.search(r"\d", header[0]) and unit in {
            f for w in WORD.findall(header[0]) for f in word_forms(w)}

    def matches(self, token: str, meaning: Meaning | None = None) -> list[tuple[int, int, int]]:
        """``(line, token, reading)`` of every reading that rounds to a page's ``token``; for an integer (with
        its ``meaning``), only the value itself, where it means the same (``Meaning.agrees``)."""
        v, decimals, signed = value(token)
        half = 0.5 * 10 ** -decimals * (1 + 1e-9)
        values, where = self.index()
        found = []
        for t in ((v,) if signed or v == 0 else (v, -v)):
            i = bisect.bisect_left(values, t - half)
            while i < len(values) and values[i] <= t + half:
                line, tok, reading = where[i]
                if meaning is None or (reading == 0 and meaning.agrees(self.meaning(line, tok)) and (
                        not is_short(token) or self.same_unit(line, tok, meaning.unit))):
                    found.append(where[i])
                i += 1
        return found


@lru_cache(maxsize=256)
def parse_source(name: str, text: str) -> Source:
    lines = text.split("\n")
    blank = without_fences(text).split("\n") if not name.endswith(".json") else lines
    pattern = JSON_HEADING if name.endswith(".json") else HEADING
    tokens, masks, headings = [], [], []
    heading = ""
    for line, plain in zip(lines, blank):
        tokens.append(SOURCE_NUMBER.findall(line))
        masks.append(mask(line))
        headings.append(heading)
        if pattern.match(plain):
            heading = masks[-1]
    by_anchor: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (m, h) in enumerate(zip(masks, headings)):
        by_anchor[m, h].append(i)
    return Source(name, lines, tokens, masks, headings, Counter(masks), dict(by_anchor), text)


def source(name: str, read=_file_text) -> Source:
    return parse_source(name, read(name))


# ------------------------------------------------------------------------------------------------------ pages

@dataclass(frozen=True)
class Known:
    """Numbers of a page that are not read from a results file: the numbers as written (space-separated), a
    snippet of the page around them (containing them) and why."""

    numbers: str
    near: str
    reason: str


def _pattern(snippet: str) -> re.Pattern:
    return re.compile(r"\s+".join(re.escape(w) for w in snippet.split()))


@dataclass
class Occurrence:
    index: int  # among the page's numbers
    start: int
    token: str
    line: int  # 1-based


class Page:
    """A page's numbers, which of them are registered, and their contexts."""

    def __init__(self, name: str, text: str, registry: dict[str, list[Known]] | None = None):
        registry = REGISTRY if registry is None else registry
        self.name, self.text = name, text
        self.body = body = without_fences(text)
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", body)]
        found = sorted([*NUMBER.finditer(body), *INTEGER.finditer(body), *SHORT.finditer(body)],
                       key=lambda m: m.start())
        self.numbers = [Occurrence(i, m.start(), m[0], bisect.bisect_right(self.line_starts, m.start()))
                        for i, m in enumerate(found)]
        # contexts are made of the body's words; each number sits in one
        words = list(re.finditer(r"\S+", body))
        self.words = [m[0] for m in words]
        self.word_starts = [m.start() for m in words]
        starts = [o.start for o in self.numbers]
        self.word_of = [bisect.bisect_right(self.word_starts, o.start) - 1 for o in self.numbers]
        self._keys: dict[tuple[int, int], dict[str, list[int]]] = {}
        self._masked: dict[tuple[int, int], dict[str, list[int]]] = {}
        # the integers test_figures.py checks
        spans = figure_spans(name, body)
        self.figured = {o.index for o in self.numbers if is_integer(o.token) and any(
            a <= o.start and o.start + len(o.token) <= b for a, b in spans)}
        # the registry
        self.registered: set[int] = set()
        self.registry_stale: list[str] = []
        for known in registry.get(name, []):
            assert known.reason in REASONS, f"{name}: {known.numbers!r}: unknown reason {known.reason!r}"
            spans = [(m.start(), m.end()) for m in _pattern(known.near).finditer(body)]
            inside = [o for a, b in spans for o in self.numbers[bisect.bisect_left(starts, a):
                                                                 bisect.bisect_left(starts, b)]]
            for number in known.numbers.split():
                hits = {o.index for o in inside if o.token == number
                        and any(a <= o.start and o.start + len(number) <= b for a, b in spans)}
                if not hits:
                    self.registry_stale.append(f"{name}: registered {number!r} near {known.near!r} is not on "
                                               f"the page")
                self.registered |= hits

    def window(self, i: int, k: int) -> tuple[int, int]:
        w = self.word_of[i]
        return min(k, w), min(k, len(self.words) - 1 - w)

    def render(self, i: int, left: int, right: int, mark: bool = False) -> str:
        """The words around number ``i``, ``left`` and ``right`` a side, the number marked ``⟦ ⟧`` (``mark``)
        or left open (a key)."""
        o = self.numbers[i]
        w = self.word_of[i]
        cut = o.start - self.word_starts[w]
        word = self.words[w]
        place = f"⟦{o.token}⟧" if mark else hole(o.token)
        middle = word[:cut] + place + word[cut + len(o.token):]
        return " ".join(self.words[w - left:w] + [middle] + self.words[w + 1:w + right + 1])

    def keys(self, left: int, right: int, masked: bool = False) -> dict[str, list[int]]:
        """Every number's context key (its own place open) with ``left`` and ``right`` words a side, where the
        page has them; ``masked``: with the other numbers written ``#``."""
        if (left, right) not in self._keys:
            found = defaultdict(list)
            for o in self.numbers:
                w = self.word_of[o.index]
                if w >= left and w + right < len(self.words):
                    found[self.render(o.index, left, right)].append(o.index)
            self._keys[left, right] = dict(found)
        if not masked:
            return self._keys[left, right]
        if (left, right) not in self._masked:
            found = defaultdict(list)
            for key, where in self._keys[left, right].items():
                found[masked_key(key)] += where
            self._masked[left, right] = dict(found)
        return self._masked[left, right]

    def context(self, i: int) -> tuple[str, int | None]:
        """The shortest context that tells number ``i`` apart on the page, and where even the longest does
        not, its rank among the equal ones."""
        for k in CONTEXT_WORDS:
            left, right = self.window(i, k)
            same = self.keys(left, right)[self.render(i, left, right)]
            if len(same) == 1 or k == CONTEXT_WORDS[-1]:
                return self.render(i, left, right, mark=True), (None if len(same) == 1 else same.index(i))
        raise AssertionError

    def locate(self, context: str, nth: int | None = None) -> int | None:
        """The page number an entry's context finds: the only one (or the ``nth`` of equal ones) with these
        words around it; else the only one with these words around it once numbers are written ``#`` (a
        neighbour edited)."""
        marked = MARKED.search(context)
        if marked is None:
            return None
        place = hole(marked[0][1:-1])
        key = context[:marked.start()] + place + context[marked.end():]
        words = key.split(" ")
        left = next(n for n, w in enumerate(words) if place in w)
        right = len(words) - 1 - left
        same = self.keys(left, right).get(key, [])
        if nth is not None:
            return same[nth] if nth < len(same) else None
        if len(same) == 1:
            return same[0]
        if not same:
            same = self.keys(left, right, masked=True).get(masked_key(key), [])
            if len(same) == 1:
                return same[0]
        return None

    def where(self, i: int) -> str:
        return f"{self.name}:{self.numbers[i].line}"

    def block(self, line: int) -> tuple[int, int]:
        """The offsets of page line ``line``'s paragraph; a table row is a block of its own."""
        lines = self.body.split("\n")

        def prose(n: int) -> bool:
            return 0 <= n < len(lines) and bool(lines[n].strip()) and not lines[n].lstrip().startswith("|")

        def item(n: int) -> bool:  # a list item starts a block
            return bool(re.match(r"\s*(?:[-*+]|\d+\.)\s", lines[n]))

        first = last = line - 1
        while prose(first) and prose(first - 1) and not item(first):
            first -= 1
        while prose(last) and prose(last + 1) and not item(last + 1):
            last += 1
        return self.line_starts[first], self.line_starts[last] + len(lines[last])

    def meaning(self, i: int) -> Meaning:
        """What number ``i`` counts (``meaning_at``)."""
        o = self.numbers[i]
        return meaning_at(self.body, o.start, o.start + len(o.token))


@lru_cache(maxsize=256)  # every page, and the pages the tests change
def parse_page(name: str, text: str) -> Page:
    return Page(name, text)


# ------------------------------------------------------------------------------------------------------ check

@dataclass
class Report:
    """One page's map entries sorted by what the check found."""

    page: Page
    ok: list[tuple[dict, int]] = field(default_factory=list)
    outdated: list[tuple[dict, int]] = field(default_factory=list)  # agrees with its source; number changed
    drift: list[tuple[dict, int, str]] = field(default_factory=list)
    stale: list[tuple[dict, str]] = field(default_factory=list)
    unmapped: list[int] = field(default_factory=list)

    def messages(self) -> list[str]:
        p = self.page
        out = [msg for _, _, msg in self.drift]
        out += [msg for _, msg in self.stale]
        out += [f"{p.where(i)}: {p.numbers[i].token!r} ({p.context(i)[0]!r}) has no entry in the map: run "
                f"`.venv/bin/python tests/docs/test_sources.py --update`" for i in self.unmapped]
        out += [f"{p.where(i)}: {p.numbers[i].token!r} " + (f"is registered ({e['reason']}) as {e['number']!r}"
                if "reason" in e else f"agrees with {e['file']} but the map says {e['number']!r}")
                + ": run `.venv/bin/python tests/docs/test_sources.py --update`" for e, i in self.outdated]
        return out + p.registry_stale


def read_entry(entry: dict, read=_file_text) -> tuple[float | None, str]:
    """What an entry's token reads now, with the source line; or ``(None, why not)``."""
    src = source(entry["file"], read)
    line, why = src.find(entry["anchor"])
    if line is None:
        return None, why
    tokens = src.tokens[line]
    if entry["token"] >= len(tokens):
        return None, f"line {line + 1} has {len(tokens)} numbers: {src.lines[line].strip()!r}"
    factor = READINGS[READING_NAMES.index(entry["reading"])]
    return number_value(tokens[entry["token"]]) * factor, (f"{entry['reading']} of {tokens[entry['token']]!r}, "
                                                            f"line {line + 1}: {src.lines[line].strip()!r}")


def check(page: str, text: str, entries: list[dict], read=_file_text, registry=None) -> Report:
    """Match a page's numbers with its map entries and each entry with its source."""
    p = Page(page, text, registry) if registry is not None else parse_page(page, text)
    report = Report(p)
    files = citations(text)
    taken: set[int] = set()
    for e in entries:
        i = p.locate(e["context"], e.get("nth"))
        if i is None or i in taken or i in p.registered or i in p.figured:
            why = ("is no longer on the page" if i is None else "is registered" if i in p.registered
                   else "is checked by test_figures.py" if i in p.figured
                   else "finds a number another entry has")
            report.stale.append((e, f"{page}: stale map entry: {e['number']!r} near {e['context']!r} {why}"))
            continue
        taken.add(i)
        token = p.numbers[i].token
        if "reason" in e:
            if e["reason"] not in REASONS:
                report.stale.append((e, f"{page}: {e['number']!r} near {e['context']!r}: unknown reason "
                                        f"{e['reason']!r} (one of {', '.join(REASONS)})"))
            else:
                (report.ok if token == e["number"] else report.outdated).append((e, i))
            continue
        if e["file"] not in files:
            reads, why = None, "the page no longer cites it"
        else:
            reads, why = read_entry(e, read)
        if reads is not None and agrees(token, reads):
            (report.ok if token == e["number"] else report.outdated).append((e, i))
            continue
        now = "" if token == e["number"] else f" (the map says {e['number']!r})"
        said = f"now reads {reads:.6g} ({why})" if reads is not None else why
        report.drift.append((e, i, f"{p.where(i)}: {token!r}{now} near {e['context']!r}: {e['file']} {said}"))
    report.unmapped = [o.index for o in p.numbers
                       if o.index not in taken and o.index not in p.registered and o.index not in p.figured]
    return report


def load_map(path: Path = MAP) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


@cache
def _committed_map() -> dict[str, list[dict]]:
    by_page = defaultdict(list)
    for e in load_map():
        by_page[e["page"]].append(e)
    return dict(by_page)


def dump_map(entries: list[dict], path: Path = MAP) -> None:
    path.write_text("[\n" + ",\n".join(json.dumps(e, ensure_ascii=False) for e in entries) + "\n]\n")


# ------------------------------------------------------------------------------------------------ attribution

def scopes(p: Page, at: int, files: dict[str, list[int]]) -> list[list[str]]:
    """The files cited in each section around offset ``at``, innermost first, ending with the page's."""
    heads = [(m.start(), len(m[1])) for m in re.finditer(r"^(#{1,6})\s", p.body, re.M)]
    chain, level = [], 7
    for n in range(bisect.bisect_right([h[0] for h in heads], at) - 1, -1, -1):
        start, lvl = heads[n]
        if lvl >= level or lvl < 2:
            continue
        end = next((s for s, l2 in heads[n + 1:] if l2 <= lvl), len(p.body))
        chain.append([f for f, ps in files.items() if any(start <= x < end for x in ps)])
        level = lvl
    chain.append(list(files))
    out = []
    for c in chain:
        if c and (not out or set(c) != set(out[-1])):
            out.append(c)
    return out


def _assign(wanted: list[tuple[int, list[tuple[int, int]]]]) -> dict[int, tuple[int, int]]:
    """Page numbers (in page order) to distinct tokens of one source line: each takes its first matching
    token after the previous one's, else its first free one."""
    used, last, out = set(), -1, {}
    for i, options in wanted:
        free = [o for o in options if o[0] not in used]
        pick = next((o for o in free if o[0] > last), free[0] if free else None)
        if pick is not None:
            out[i] = pick
            used.add(pick[0])
            last = pick[0]
    return out


def distinctive(token: str) -> bool:
    """Whether a page's number is unlikely to stand on an unrelated line: three digits or more (``0.703``,
    ``2.59``, ``432``; not ``0.2``)."""
    return len(re.sub(r"\D", "", token).lstrip("0")) >= 3


def round_value(token: str) -> bool:
    """Whether an integer is a round value (a multiple of 50, or a power of two from 64): far more often a setting
    (a budget of 400 labels, a batch of 128) that several runs share than a measurement."""
    v = abs(int(value(token)[0]))
    return v % 50 == 0 or (v >= 64 and v & (v - 1) == 0)


def sentence(text: str, at: int, start: int, end: int) -> tuple[int, int]:
    """The offsets of the sentence around offset ``at`` within the block ``text[start:end]`` (in a table, within
    its cell): a one- or two-digit integer is tied only by the figures of its own sentence, since a paragraph's
    or a row's figures come from too many lines to tell one run's 20 % from another's."""
    if text[start:end].lstrip().startswith("|"):
        right = text.find("|", at, end)
        start, end = text.rfind("|", start, at) + 1, end if right < 0 else right
    stops = [m.end() for m in re.finditer(r"[.!?;](?=\s)", text[start:end])]
    before = [start + s for s in stops if start + s <= at]
    after = [start + s for s in stops if start + s > at]
    return (before[-1] if before else start), (after[0] if after else end)


def _narrowed(token: str, matches: dict[str, list], sources: dict[str, Source], near: Counter, others: list[str],
              block_files: set[str], chain: list[list[str]], in_row: bool = False) -> dict:
    """An integer's matches (file: ``(line, token, reading)``), narrowed to where it is read without doubt.

    Args:
        matches: the source lines where its value means the same (``Source.matches``), by file.
        sources: the cited files.
        near: the ``(file, line)`` its row's or paragraph's numbers in the map come from.
        others: the other numbers of its row or paragraph (of its sentence for a one- or two-digit integer:
            ``sentence``), as written.
        block_files: the files its row or paragraph cites.
        chain: the files cited in each section around it, innermost first (``scopes``).
        in_row: whether the number is in a table row.

    Returns:
        The matches on a line its row's or paragraph's other numbers come from or that holds another of them
        (the line that holds most of them wins: ``attribute``); for a one- or two-digit integer, on a line
        that holds another of them (not inside a name) or its table row's other numbers come from, and nowhere
        else; else none for a round value (``round_value``); else those in the files its row or paragraph
        cites; else those in the one file of the innermost section that holds it, and none where two do.
    """
    def keep(ok) -> dict:
        return {f: [m for m in ms if ok(f, m[0])] for f, ms in matches.items()}

    # a small value's line must hold another figure of its sentence, or be where its table row comes from: the
    # lines a paragraph's figures come from are too many to tell the 20 % of one run from another's
    beside = keep(lambda f, ln: ((f, ln) in near and (in_row or not is_short(token))) or any(
        agrees(o, number_value(t)) for t in (sources[f].plain_tokens(ln) if is_short(token) else
                                             sources[f].tokens[ln]) for o in others))
    if any(beside.values()) or round_value(token) or is_short(token):  # a small value stands on many lines
        return beside
    if block_files:
        return keep(lambda f, ln: f in block_files)
    for scope in chain:
        holding = [f for f in scope if matches[f]]
        if holding:
            return keep(lambda f, ln, holding=holding: holding == [f])
    return matches


def attribute(p: Page, numbers: list[int], read=_file_text, beside: dict[int, Counter] | None = None
              ) -> tuple[list[dict], list[int]]:
    """Map entries for the page's ``numbers`` (indices), and those attributed nowhere. ``beside``: for a page
    line, how many numbers of its table row or paragraph already in the map come from each ``(file, line)``;
    among source lines that match as many numbers, the one most of them come from wins, then others of their
    files (the integers of a row, from the results row its decimals come from)."""
    beside = beside or {}
    files = citations(p.text)
    sources = {f: source(f, read) for f in files}
    entries, nowhere = [], []
    by_line = defaultdict(list)
    for i in numbers:
        by_line[p.numbers[i].line].append(i)
    for line, group in sorted(by_line.items()):
        at = p.line_starts[line - 1]
        start, end = p.block(line)
        in_block = {f for f, offsets in files.items() if any(start <= x < end for x in offsets)}

        def rank(f, at=at, in_block=in_block):
            above = [x for x in files[f] if x <= at]
            return (0, 0) if f in in_block else (1, at - above[-1]) if above else (2, files[f][0] - at)

        chain = scopes(p, at, files)
        near = beside.get(line, Counter())
        matches = {}
        for i in group:
            token = p.numbers[i].token
            if is_integer(token):
                meaning = p.meaning(i)
                # the block's other figures: not of the number's own range or list, nor integers that may count
                # the same (the budgets 100 and 400 of one sentence do not tell one run's line from another's)
                first, last = joined_span(p.body, p.numbers[i].start, p.numbers[i].start + len(token))
                lo, hi = (start, end) if not is_short(token) else sentence(p.body, p.numbers[i].start, start, end)
                others = [o.token for o in p.numbers if lo <= o.start < hi and not first <= o.start < last
                          and distinctive(o.token)
                          and value(o.token)[0] != value(token)[0]
                          and not (is_integer(o.token) and (meaning.words & p.meaning(o.index).words
                                                            or not p.meaning(o.index).words))]
                matches[i] = _narrowed(token, {f: sources[f].matches(token, meaning) for f in files}, sources, near,
                                       others, in_block, chain, p.body[start:end].lstrip().startswith("|"))
            else:
                matches[i] = {f: sources[f].matches(token) for f in files}
        left = list(group)
        for scope in chain:
            order = sorted(scope, key=rank)
            while left:
                best = None
                for fr, f in enumerate(order):
                    lines = defaultdict(list)
                    for i in left:
                        for ln, tok, rd in matches[i][f]:
                            lines[ln].append((i, tok, rd))
                    for ln, found in lines.items():
                        wanted = [(i, sorted((t, r) for j, t, r in found if j == i)) for i in left]
                        got = _assign([w for w in wanted if w[1]])
                        score = (len(got), near[f, ln], any(f == g for g, _ in near), -fr, -ln)
                        if best is None or score > best[0]:
                            best = (score, f, ln, got)
                if best is None:
                    break
                _, f, ln, got = best
                src = sources[f]
                for i, (tok, rd) in got.items():
                    context, nth = p.context(i)
                    entry = {"page": p.name, "number": p.numbers[i].token, "context": context, "file": f,
                             "anchor": src.anchor(ln), "token": tok, "reading": READING_NAMES[rd]}
                    if nth is not None:
                        entry["nth"] = nth
                    entries.append(entry)
                left = [i for i in left if i not in got]
        nowhere += left
    return entries, nowhere


def updated(entries: list[dict], texts: dict[str, str], force: bool = False, read=_file_text
            ) -> tuple[list[dict], list[str], list[str]]:
    """The map brought up to date with the pages ``texts`` (name: text): ``(entries, drift, nowhere)``.
    Entries that fail (drift) are kept as they are, and reported, unless ``force``."""
    by_page = defaultdict(list)
    for e in entries:
        by_page[e["page"]].append(e)
    out, drift, nowhere = [], [], []
    for name, text in texts.items():
        report = check(name, text, by_page.get(name, []), read)
        p = report.page
        keep = [(i, e) for e, i in report.ok]
        for e, i in report.outdated:
            context, nth = p.context(i)
            e = {**e, "number": p.numbers[i].token, "context": context}
            e.pop("nth", None)
            keep.append((i, e if nth is None else {**e, "nth": nth}))
        todo = list(report.unmapped)
        for e, i, msg in report.drift:
            drift.append(msg)
            if force:
                todo.append(i)
            else:
                keep.append((i, e))
        by_block = defaultdict(Counter)
        for i, e in keep:
            if "file" in e:
                by_block[p.block(p.numbers[i].line)][e["file"], source(e["file"], read).find(e["anchor"])[0]] += 1
        beside = {p.numbers[i].line: by_block[p.block(p.numbers[i].line)] for i in todo}
        new, lost = attribute(p, sorted(todo), read, beside)
        keep += [(p.locate(e["context"], e.get("nth")), e) for e in new]
        nowhere += [f"{p.where(i)}: {p.numbers[i].token!r} ({p.context(i)[0]!r}): no cited results file holds it"
                    + (" with a word of its own beside it" if is_integer(p.numbers[i].token) else "") for i in lost]
        out += [e for _, e in sorted(keep, key=lambda x: x[0])]
    return out, drift, nowhere


REASONS = ("config default", "target", "published", "example", "identifier", "computed",
           "arithmetic on cited figures", "runs table", "unrecorded measurement", "pending",
           "run setting", "constant", "not tied")

REGISTRY: dict[str, list[Known]] = {
    "README.md": [
        Known("3.11", "with Python 3.11 and install", "identifier"),
        Known("0.25", "the mean of the four classes' recalls, so chance is 0.25", "computed"),
        Known("2.0", "Apache License 2.0", "identifier"),
    ],
    "BENCHMARKS.md": [
        Known("2.78", "(4 labels, 2.78 h)", "computed"),
        Known("0.59 0.60", "At N = 100 it was 0.59-0.60x", "unrecorded measurement"),
        Known("2.52 1.95", "summed peak RSS is ~2.52 GB against ~1.95 GB with one task per file",
              "unrecorded measurement"),
        Known("1.73", "and scales 1.73x from 1 to 2 worker nodes", "arithmetic on cited figures"),
        Known("1.46 2.18 2.03 2.37", "1.46x for Whisper-tiny's scoring (9,621 against 6,590 audio s / s), "
              "2.18x for the wav2vec2-base-sized scoring (4,072 against 1,865), 2.03x and 2.37x",
              "arithmetic on cited figures"),
        Known("0.586 0.615 0.675 0.768 0.517 0.554 0.584 0.659", "CV-picked C 0.586 / 0.615 / 0.675 / "
              "0.768 here and 0.517 / 0.554 / 0.584 / 0.659 on espeak-ng", "unrecorded measurement"),
        Known("0.579 0.612 0.658 0.724 0.500 0.537 0.558 0.627", "against 0.579 / 0.612 / 0.658 / 0.724 "
              "and 0.500 / 0.537 / 0.558 / 0.627 at C = 1", "unrecorded measurement"),
        Known("+0.077 0.014", "the same 20 % gain was +0.077 ± 0.014", "unrecorded measurement"),
        Known("1.42 1.30 1.40", "(1.42 against 1.30-1.40)", "unrecorded measurement"),
        Known("0.465", "140 s for 20 epochs over 0.465 h", "unrecorded measurement"),
        Known("2.93", "(0.22x of the 2.93 GB matrix)", "arithmetic on cited figures"),
        Known("1.58", "**20 %** (1.58 M)", "arithmetic on cited figures"),
        Known("1.035", "8 h needs 1.035x the memory of 1 h", "arithmetic on cited figures"),
        Known("1.035", "**1.035x** (483 -> 500 MB;", "arithmetic on cited figures"),
        Known("0.831 0.837", "24 two-channel 8 kHz calls, per channel | 0.831 (0.055-0.957) | 0.837",
              "arithmetic on cited figures"),
        Known("0.865 0.962 0.876 0.948", "`rules.threshold=0.3` gives calls 0.865 and episodes 0.962 (0.2: "
              "0.876 / 0.948)", "unrecorded measurement"),
        Known("3.06 2.65 3.23 2.63", "cache build 3.06 -> 2.65 GiB, scoring 3.23 -> 2.63 GiB",
              "unrecorded measurement"),
        Known("6.61 6.96 6.55 9.38", "scale-16h peaked at 6.61 / 6.96 / 6.55 / 9.38 GiB",
              "unrecorded measurement"),
        Known("21.8 20.5 23.6 24.4 20.9 23.6 26.3 28.6 32.4 0.92 0.76", "| 2000 | 21.8 / 20.5 / 23.6 | 459 "
              "| 1.00 | | 512 | 24.4 / 20.9 / 23.6 | 423 | 0.92 | | 128 | 26.3 / 28.6 / 32.4 | 350 | 0.76 "
              "|", "unrecorded measurement"),
        Known("220.5 363.6", "load 0.6: 220.5 s -> 363.6 s", "unrecorded measurement"),
        Known("0.831", "8 kHz calls 0.831 (0.055-0.957", "arithmetic on cited figures"),
        Known("12.96 21.8 0.60 0.59", "(b) took 12.96 s + 0.2 s checkpoint load for 100 clips and (a) 21.8 "
              "s end to end, **0.60x** (micro-batch 1: 0.59x)", "unrecorded measurement"),
        Known("6.6 7.7 8.0 0.85 0.82 6.6 4.6", "| Smart Turn Whisper-tiny + LoRA, 16 | 6.6 | 7.7 | 8.0 | "
              "**0.85** | 0.82 | 6.6 | 4.6 |", "unrecorded measurement"),
        Known("7.4 8.5 7.8 0.87 0.95 6.9 4.9", "| Smart Turn Whisper-tiny + LoRA, 1 (CPU default) | 7.4 | "
              "8.5 | 7.8 | **0.87** | 0.95 | 6.9 | 4.9 |", "unrecorded measurement"),
        Known("65.3 97.6 57.7 0.67 1.13 8.0 18.1", "| tiny preset + LoRA, 16 (same run) | 65.3 | 97.6 | "
              "57.7 | 0.67 | 1.13 | 8.0 | 18.1 |", "unrecorded measurement"),
    ],
    "docs/ARCHITECTURE.md": [
        Known("1.25", "asks the strategy for 1.25x the clips", "config default"),
        Known("0.38 0.56", "(full data 0.38 -> 0.56 test UA on the demo pool)", "unrecorded measurement"),
        Known("0.98", "probabilities (up to 0.98 apart)", "unrecorded measurement"),
        Known("0.84", "0.84 GiB at 4 h, and faster", "unrecorded measurement"),
        Known("0.19", "against 0.19 s through the V1 datasource", "unrecorded measurement"),
        Known("6.5 7.5", "went from 12-15 s to 6.5-7.5 s", "unrecorded measurement"),
    ],
    "docs/cluster.md": [
        Known("2.60", "Ray 2.60 turns token authentication on", "identifier"),
        Known("0.8 1.2", "scaled by 0.8 or 1.2 and clipped", "config default"),
    ],
    "docs/concepts.md": [
        Known("0.25", "Chance is 1 / C (0.25 for the four demo classes)", "computed"),
        Known("0.25", "on a neutral-heavy pool scores 0.25", "computed"),
        Known("2405.00307", "arXiv 2405.00307", "identifier"),
        Known("4.12", "since transformers 4.12", "identifier"),
        Known("2.0", "as wav2vec 2.0 does", "identifier"),
    ],
    "docs/corpora.md": [
        Known("6.2901 8.2357 2.5000", "`[6.2901 - 8.2357] Ses01F_impro01_F000 neu [2.5000, 2.5000, 2.5000]`",
              "example"),
        Known("0.1 0.2", "`dev_fraction=0.1` and `test_fraction=0.2`", "config default"),
    ],
    "docs/cost.md": [
        Known("7.4", "(7.4 clips/s on one thread)", "unrecorded measurement"),
        Known("1.15 1.39", "(1,200 crops at 861-1,044 crops / s) 1.15-1.39 s", "arithmetic on cited figures"),
        Known("1.81", "over 2,016 training clips, 1.81 h)", "arithmetic on cited figures"),
        Known("7.7", "**~7.7 CPU-min** (81 runs", "arithmetic on cited figures"),
    ],
    "docs/deploy.md": [
        Known("0.4", "int8 gained 0.4 UA points here", "arithmetic on cited figures"),
        Known("9.4", "The probes run up to 9.4 s", "config default"),
    ],
    "docs/encoders.md": [
        Known("0.9997 0.82", "**cosine 0.9997** (the int8 graph as shipped is 0.82 away",
              "unrecorded measurement"),
    ],
    "docs/failure-model.md": [
        Known("1.5 2.5", "paused for 1.5 to 2.5 times `SER_LOCK_STALE_S`", "config default"),
        Known("15.2", "| 15.2 s | 5 | 2 | 1 |", "unrecorded measurement"),
        Known("11.8", "| 11.8 s | 4 | 5 | 0 |", "unrecorded measurement"),
        Known("29.3", "| 29.3 s | 14 | 2 | 2 |", "unrecorded measurement"),
        Known("13.4", "| 13.4 s | 0 | 3 | 0 |", "unrecorded measurement"),
        Known("0.5", "Two scoring actors of 0.5 CPU each landed on the two 1-CPU nodes and left 0.5",
              "example"),
    ],
    "docs/features.md": [
        Known("0.571 0.603", "(pool 0.571, speaker 0.603 ua; best CV score)", "example"),
        Known("0.571 0.603 0.580 0.622", "(pool 0.571, speaker 0.603, pool+egemaps 0.580, speaker+egemaps "
              "0.622 ua; best CV score)", "example"),
        Known("1.3", "and 1.1-1.3 behind at 5 %", "arithmetic on cited figures"),
    ],
    "docs/few-labels.md": [
        Known("0.86 0.91 0.89 0.91 0.92", "| 0.659 (0.86x) | **0.694 (0.91x)** | 0.683 (0.89x) | 0.592 "
              "(0.91x) | 0.586 | **0.599 (0.92x)** |", "arithmetic on cited figures"),
        Known("0.95", "not yet the 0.95x we aim for", "target"),
        Known("0.69 0.73 0.61 0.56", "probe per layer gives 0.69 / 0.73 / 0.69 / 0.61 / 0.56 UA",
              "unrecorded measurement"),
        Known("0.454 0.478", "simulated UA random 0.454 margin 0.478", "example"),
        Known("0.99", "at or above `kappa_threshold` (0.99)", "config default"),
        Known("0.995 0.99", "kappa 0.995 >= 0.99 for 2 rounds", "example"),
    ],
    "docs/gpu.md": [
        Known("0.37", "takes 0.37 s of an H100 for Whisper-tiny", "arithmetic on cited figures"),
        Known("0.25", "e.g. 0.25 for four actors", "example"),
        Known("2.18 2.03 2.37 1.46", "it scores 2.18x faster here (4,072 against 1,865 audio s / s) and "
              "trains 2.03x faster at 16 crops a batch and 2.37x at 64 (Whisper-tiny's scoring: 1.46x)",
              "arithmetic on cited figures"),
        Known("2.60", "(Ray 2.60 no longer hides GPUs", "identifier"),
        Known("442.5 78.0", "`scorer: micro-batch 104 clips (auto: 442.5 MiB per clip at 20 s, 78.0 GiB "
              "free)`", "example"),
        Known("19.5", "A100: 312 / 156 / 19.5", "published"),
        Known("1.15 1.39", "takes about 1.15-1.39 s of the card", "arithmetic on cited figures"),
    ],
    "docs/interoperability.md": [
        Known("12.500", "e.g. `calls/a@12.500`", "example"),
    ],
    "docs/labelling.md": [
        Known("0.0312", "`margin: top-2 gap 0.0312`", "example"),
    ],
    "docs/methods.md": [
        Known("1.58", "| 1.58 M (20 %) |", "arithmetic on cited figures"),
        Known("7.79", "teacher (Whisper-tiny) | 7.79 M", "arithmetic on cited figures"),
        Known("1.61", "student + text | 1.61 M", "arithmetic on cited figures"),
    ],
    "docs/planning.md": [
        Known("0.24", "`1.96^2 * 0.24 / 0.05^2 = 369`", "computed"),
        Known("8.5", "60 episodes and 20 calls, 8.5 h", "unrecorded measurement"),
        Known("0.477 0.509 0.553", "dev UA 0.477, 0.509, 0.553 at 50, 100, 200 labels", "runs table"),
        Known("0.616", "flattens at 811 labels (50-1,106), UA 0.616`", "example"),
        Known("0.644", "round 3 reached 0.644 at 400 labels", "runs table"),
    ],
    "docs/recordings.md": [
        Known("0.15", "(threshold - 0.15 unless set)", "config default"),
        Known("2.75", "keeps segments of 2.75-11 s", "published"),
        Known("0.831", "F1 0.831 on average", "arithmetic on cited figures"),
        Known("0.865", "(0.865 with `rules.threshold=0.3`)", "unrecorded measurement"),
    ],
    "docs/selection-pays.md": [
        Known("0.79", "the width shrank by a factor of 0.79", "pending"),
        Known("+2.8", "`auto random, margin +0.8 [-1.2, +2.8]` (UA points over random)", "pending"),
    ],
    "docs/tutorial.md": [
        Known("+0.8 -1.2 +2.8", "for example `auto random, margin +0.8 [-1.2, +2.8]`", "example"),
    ],
    "docs/what-to-expect.md": [
        Known("8.9", "**8.9 CPU-s** (406 audio hours per core-hour)", "arithmetic on cited figures"),
        Known("115.2", "**115.2 MB** (16 kHz pcm16", "computed"),
    ],
}



# ------------------------------------------------------------------------------------------------------ tests

def test_every_number_is_read_from_its_source_line():
    committed = _committed_map()
    names = {str(p.relative_to(REPO)) for p in pages()}
    problems = [f"{name}: {len(es)} map entries for a page that is not checked (run the updater)"
                for name, es in committed.items() if name not in names]
    for path in pages():
        name = str(path.relative_to(REPO))
        problems += check(name, path.read_text(), committed.get(name, [])).messages()
    assert not problems, (f"{len(problems)} numbers on the pages disagree with their map "
                          f"(tests/docs/figure_sources.json) or their results file; correct the page, the "
                          f"results, or register the number (--register), then run the updater:\n"
                          + "\n".join(problems))


def test_registry_names_pages_that_exist():
    names = {str(p.relative_to(REPO)) for p in pages()}
    assert set(REGISTRY) <= names, sorted(set(REGISTRY) - names)


def _sample(n: int, seed: int | None = None, of: str | None = None) -> list[dict]:
    """``n`` map entries read from a results file (of one ``kind``, ``of``, or of any where ``None``):
    drawn at random with ``seed``, or else one page after another (each page's entries evenly spread), so that
    small pages are tried too."""
    committed = {page: kept for page, es in _committed_map().items()
                 if (kept := [e for e in es if "file" in e and of in (None, kind(e["number"]))])}
    if seed is not None:
        entries = [e for es in committed.values() for e in es]
        return random.Random(seed).sample(entries, min(n, len(entries)))
    per = -(-n // len(committed))
    picks = [[es[j * len(es) // per] for j in range(min(per, len(es)))] for es in committed.values()]
    return [p[j] for j in range(per) for p in picks if j < len(p)][:n]


def _other_digit(token: str, rng: random.Random | None = None) -> str:
    """``token`` with its last digit changed (to the next one, or a random other one)."""
    d = int(token[-1])
    new = (d + 1) % 10 if rng is None else rng.choice([x for x in range(10) if x != d])
    return token[:-1] + str(new)


def _page_moved(e: dict, rng=None) -> tuple[str, str, int]:
    """The page of entry ``e`` with its number's last digit changed: ``(text, new number, line)``."""
    text = (REPO / e["page"]).read_text()
    p = parse_page(e["page"], text)
    o = p.numbers[p.locate(e["context"], e.get("nth"))]
    new = _other_digit(o.token, rng)
    return text[:o.start] + new + text[o.start + len(o.token):], new, o.line


def _source_moved(e: dict, rng=None):
    """A reader of the results with the last digit of entry ``e``'s token changed, and the token's new value
    as the entry reads it."""
    src = source(e["file"])
    line = src.find(e["anchor"])[0]
    m = list(SOURCE_NUMBER.finditer(src.lines[line]))[e["token"]]
    new = _other_digit(m[0], rng)
    lines = list(src.lines)
    lines[line] = lines[line][:m.start()] + new + lines[line][m.end():]
    moved = "\n".join(lines)
    factor = READINGS[READING_NAMES.index(e["reading"])]
    return (lambda n: moved if n == e["file"] else _file_text(n)), number_value(new) * factor


def _caught(e: dict, text: str, number: str, line: int, read=_file_text) -> bool:
    """Whether the check of entry ``e``'s page (``text``) fails on ``number`` at ``line``."""
    messages = check(e["page"], text, _committed_map()[e["page"]], read).messages()
    return any(msg.startswith(f"{e['page']}:{line}: {number!r}") for msg in messages)


@pytest.mark.parametrize("of", ["decimal", "integer", "short"])
def test_a_page_number_changed_in_its_last_digit_is_caught(of):
    for e in _sample(6 if of == "short" else 12, of=of):  # each case parses its page afresh
        text, new, line = _page_moved(e)
        assert _caught(e, text, new, line), (e, new)


@pytest.mark.parametrize("of", ["decimal", "integer", "short"])
def test_a_results_value_changed_in_its_last_digit_is_caught(of):
    """Where the change shows at the page's precision (a results value may carry more digits than the page
    quotes: then the page still agrees)."""
    tried = 0
    # entries spread over every page, until 12 show the change (how many do depends on the pages' precisions)
    for e in _sample(96, of=of):
        if tried == 12:
            break
        read, now = _source_moved(e)
        text = (REPO / e["page"]).read_text()
        p = parse_page(e["page"], text)
        o = p.numbers[p.locate(e["context"], e.get("nth"))]
        if not agrees(o.token, now):
            tried += 1
            assert _caught(e, text, o.token, o.line, read), (e, now)
    assert tried >= 12, tried


def test_a_rerun_with_new_values_keeps_every_anchor():
    """Every digit of every results file the map names changed (in memory): each anchor finds the same line."""
    moved = str.maketrans("0123456789", "3456789012")
    sourced = [e for es in _committed_map().values() for e in es if "file" in e]
    for name in sorted({e["file"] for e in sourced}):
        before, after = source(name), parse_source(name, _file_text(name).translate(moved))
        for e in (e for e in sourced if e["file"] == name):
            assert after.find(e["anchor"]) == before.find(e["anchor"]), (name, e["anchor"])


def test_a_figure_that_moved_in_its_results_file_is_caught():
    """A figure a page quotes, changed in its results text (in memory), is reported with the file and what it
    reads now."""
    # docs/features.md quotes the all-labels test UA of the platform's own loop with feature_norm and
    # functionals auto, 0.774, from bench/results/features_auto_platform_demo2880.md
    page, name = "docs/features.md", "bench/results/features_auto_platform_demo2880.md"
    figure, moved = "0.774", "0.781"
    text = (REPO / page).read_text()
    assert figure in text and name in cited(text)
    assert not check(page, text, _committed_map()[page]).messages()

    def read(n: str) -> str:
        return _file_text(n).replace(figure, moved) if n == name else _file_text(n)

    drift = [msg for _, _, msg in check(page, text, _committed_map()[page], read).drift]
    assert any(f"{figure!r}" in m and m.startswith(f"{page}:") and name in m and "now reads 0.781" in m
               for m in drift), drift


# a page citing a results file, and what that file reads (in memory), for the integer rule's tests
_CITED = "bench/results/adapt.md"


def _tied(page_line: str, source_text: str) -> bool:
    """Whether the updater ties the integer 1,226 of ``page_line`` (on a page citing ``_CITED``) to a line of
    ``source_text``."""
    text = f"# A page\n\nFrom `{_CITED}`: {page_line}\n"
    got, _, nowhere = updated([], {"docs/a-page.md": text},
                              read=lambda n: source_text if n == _CITED else _file_text(n))
    return any(e["number"] == "1,226" and "file" in e for e in got)


def test_an_integer_is_tied_by_a_word_of_its_own_beside_it_on_both_sides():
    assert _tied("reached with 1,226 labels.", "# Results\n\nlabels: 1226\n")
    assert _tied("reached with 1,226 labels.", "# Results\n\n| run | labels |\n|---|---|\n| a | 1226 |\n")
    assert _tied("reached with 1,226 labels.", '{\n  "labels": 1226\n}\n')


def test_an_integer_with_no_word_in_common_or_another_unit_is_not_tied():
    assert not _tied("reached with 1,226 labels.", "# Results\n\nclips: 1226\n")
    assert not _tied("took 1,226 s.", "# Results\n\n1226 labels\n")
    assert not _tied("took 1,226 s.", "# Results\n\n1226 MiB of labels in 9 s\n")
    assert not _tied("reached with 1,226 labels.", "# Results\n\nrun_1226_labels done\n")  # part of a name


def test_a_round_integer_needs_a_neighbour_from_its_own_line():
    """400 labels (a budget several runs share) is not tied to a line by its word alone; beside another figure
    of its sentence, it is."""
    source_text = "# Results\n\nrandom 400 labels 0.651\n"
    text = f"# A page\n\nFrom `{_CITED}`: at 400 labels random reached "

    def tied(figure: str) -> bool:
        got, _, _ = updated([], {"docs/a-page.md": text + f"{figure}.\n"},
                            read=lambda n: source_text if n == _CITED else _file_text(n))
        return any(e["number"] == "400" and "file" in e for e in got)

    assert not tied("a test UA we do not quote")
    assert tied("0.651")


def test_a_short_integer_is_a_number_only_with_its_unit():
    p = Page("docs/a-page.md", "20 seeds x 4 strategies at 20 % of the labels took 78 s and 2.5x less\n", {})
    assert [o.token for o in p.numbers] == ["20", "78", "2.5"]


def test_a_short_integer_is_tied_by_its_unit_and_a_figure_of_its_sentence():
    def tied(page_line: str, source_text: str) -> bool:
        text = f"# A page\n\nFrom `{_CITED}`: {page_line}\n"
        got, _, _ = updated([], {"docs/a-page.md": text},
                            read=lambda n: source_text if n == _CITED else _file_text(n))
        return any(e["number"] == "78" and "file" in e for e in got)

    assert tied("the build took 78 s for 1,044.5 clips.", "# Results\n\nbuild: 78 s, 1,044.5 clips\n")
    assert not tied("the build took 78 s.", "# Results\n\nbuild: 78 s, 1,044.5 clips\n")  # no neighbour
    assert not tied("the build took 78 s for 1,044.5 clips.", "# Results\n\nbuild: 78 clips, 1,044.5\n")


def test_an_integer_test_figures_checks_needs_no_entry():
    """What-to-expect's clips per pool hour is filled by test_figures.py from functionals_cost.md: it has no map
    entry, and changed on the page it is reported."""
    page = "docs/what-to-expect.md"
    text = (REPO / page).read_text()
    p = parse_page(page, text)
    i = next(o.index for o in p.numbers if o.token == "1,110")
    assert i in p.figured and not any(e["number"] == "1,110" for e in _committed_map()[page])
    messages = check(page, text.replace("~1,110 clips", "~1,120 clips"), _committed_map()[page]).messages()
    assert any("'1,120'" in m and "has no entry" in m for m in messages), messages


def test_a_registered_number_that_left_its_page_is_stale():
    page = "docs/labelling.md"
    text = (REPO / page).read_text().replace("top-2 gap 0.0312", "top-2 gap 0.0412")
    messages = check(page, text, _committed_map().get(page, [])).messages()
    assert any("'0.0412'" in m and "--update" in m for m in messages), messages
    assert any("registered '0.0312'" in m for m in messages), messages


def test_an_integer_registered_in_the_map_that_changed_is_reported():
    e = next(e for e in _committed_map()["docs/cluster.md"] if e.get("reason") == "identifier")
    text = (REPO / e["page"]).read_text()
    p = parse_page(e["page"], text)
    o = p.numbers[p.locate(e["context"], e.get("nth"))]
    moved = text[:o.start] + "2000" + text[o.start + len(o.token):]
    messages = check(e["page"], moved, _committed_map()[e["page"]]).messages()
    assert any(f"'2000' is registered (identifier) as {e['number']!r}" in m for m in messages), messages


def test_the_updater_adds_drops_and_keeps_drift():
    """In memory: a number with no entry gets one, a stale entry goes, a drifted entry stays as it was (and is
    reported) unless forced."""
    page = "docs/features.md"
    text = (REPO / page).read_text()
    entries = _committed_map()[page]
    drifted = next(e for e in entries if "file" in e and not agrees(e["number"], _source_moved(e)[1]))
    read, _ = _source_moved(drifted)
    missing = next(e for e in reversed(entries) if "file" in e)  # a registration is not attributed afresh
    bogus = {**missing, "context": missing["context"] + " no longer here"}
    assert any("stale map entry" in m for m in check(page, text, [*entries, bogus]).messages())
    got, drift, nowhere = updated([e for e in entries if e is not missing] + [bogus], {page: text}, read=read)
    assert got == entries and len(drift) == 1 and not nowhere, (drift, nowhere)
    assert drift[0].startswith(f"{page}:") and drifted["file"] in drift[0]
    forced, drift, nowhere = updated(entries, {page: text}, force=True, read=read)
    assert drifted not in forced and len(forced) + len(nowhere) == len(entries), (drift, nowhere)


# -------------------------------------------------------------------------------------------------------- cli

def stats() -> dict[str, int]:
    """How many numbers (decimal, integer, short: ``kind``) are mapped, checked by test_figures.py and registered
    (by reason), and how many mapped ones share their source line with another number of their page line
    (joint)."""
    lines, mapped, out = Counter(), [], Counter()
    for path in pages():
        name = str(path.relative_to(REPO))
        p = parse_page(name, path.read_text())
        out["decimal registered (REGISTRY)"] += len(p.registered)
        for i in p.figured:
            out[f"{kind(p.numbers[i].token)} checked by test_figures.py"] += 1
        for e in _committed_map().get(name, []):
            of = kind(e["number"])
            if "reason" in e:
                out[f"{of} registered: {e['reason']}"] += 1
                continue
            out[f"{of} mapped"] += 1
            i = p.locate(e["context"], e.get("nth"))
            key = (name, p.numbers[i].line, e["file"], source(e["file"]).find(e["anchor"])[0])
            lines[key] += 1
            mapped.append(key)
    out["mapped joint"] = sum(1 for k in mapped if lines[k] > 1)
    return dict(sorted(out.items()))


def measure(n: int = 300, seed: int = 0, of: str | None = None) -> None:
    """Perturb ``n`` sampled numbers, the page's and the source's separately, and print the shares caught."""
    rng = random.Random(seed)
    sample = _sample(n, seed, of)
    page_caught = page_boundary = source_caught = visible = visible_caught = 0
    for e in sample:
        text, new, line = _page_moved(e, rng)
        caught = _caught(e, text, new, line)
        page_caught += caught
        page_boundary += caught and agrees(new, read_entry(e)[0])
        read, now = _source_moved(e, rng)
        text = (REPO / e["page"]).read_text()
        p = parse_page(e["page"], text)
        o = p.numbers[p.locate(e["context"], e.get("nth"))]
        caught = _caught(e, text, o.token, o.line, read)
        source_caught += caught
        if not agrees(o.token, now):
            visible += 1
            visible_caught += caught
    what = {None: "numbers", "decimal": "decimal numbers", "integer": "integers of three digits or more",
            "short": "one- and two-digit integers with a unit"}[of]
    print(f"{len(sample)} {what} sampled (seed {seed})")
    print(f"page number's last digit changed: {page_caught}/{len(sample)} caught ({page_boundary} of them on a "
          f"rounding boundary, where the source agrees with both: caught as a map out of date)")
    print(f"source value's last digit changed: {source_caught}/{len(sample)} caught; of the {visible} changes "
          f"that show at the page's precision, {visible_caught} caught")


def registration(p: Page, i: int, reason: str) -> dict:
    """The map entry that registers number ``i`` of page ``p`` with ``reason``."""
    assert reason in REASONS, f"unknown reason {reason!r}: one of {', '.join(REASONS)}"
    context, nth = p.context(i)
    entry = {"page": p.name, "number": p.numbers[i].token, "context": context, "reason": reason}
    return entry if nth is None else {**entry, "nth": nth}


def _occurrence(page: str, number: str, near: str | None = None) -> tuple[Page, int]:
    """The page and the index of ``number``'s one occurrence on it (inside the snippet ``near`` if given)."""
    p = parse_page(page, (REPO / page).read_text())
    spans = [m.span() for m in _pattern(near).finditer(p.body)] if near else [(0, len(p.body))]
    hits = [o.index for o in p.numbers if o.token == number and any(a <= o.start < b for a, b in spans)]
    if len(hits) != 1:
        raise SystemExit(f"{page}: {len(hits)} occurrences of {number!r}" + (f" in {near!r}" if near else "")
                         + ": give a snippet around the one meant")
    return p, hits[0]


def _replaced(p: Page, i: int, entry: dict) -> list[dict]:
    """The map with ``entry`` in place of any entry number ``i`` of page ``p`` had."""
    return [e for e in load_map() if e["page"] != p.name or p.locate(e["context"], e.get("nth")) != i] + [entry]


def register(page: str, number: str, reason: str, near: str | None = None) -> dict:
    """Register an integer with a reason, in place of any entry it had.

    Args:
        page: the page, as ``pages()`` names it (``docs/cost.md``).
        number: the number as written.
        reason: one of ``REASONS``.
        near: a snippet of the page around the occurrence meant, where the number occurs more than once.

    Returns:
        The map entry written.
    """
    p, i = _occurrence(page, number, near)
    entry = registration(p, i, reason)
    dump_map(_replaced(p, i, entry))
    return entry


def pin(page: str, number: str, file: str, line_text: str, value_token: str, reading: str = "v") -> dict:
    """Point a number at the line it comes from, where the attribution matched it by chance or the rule cannot
    tie it; later updates keep the entry while it agrees.

    Args:
        page: the page, as ``pages()`` names it.
        number: the number as written: its one map entry, or else its one occurrence on the page.
        file: the results file (``bench/results/`` may be left out).
        line_text: a text that only the source line holds.
        value_token: the value on that line, as written there.
        reading: how the page reads it (``READING_NAMES``).

    Returns:
        The map entry written.
    """
    file = file if file.startswith(("bench/", "docs/")) else f"bench/results/{file}"
    src = source(file)
    hits = [i for i, line in enumerate(src.lines) if line_text in line]
    if len(hits) != 1:
        raise SystemExit(f"{file}: {len(hits)} lines hold {line_text!r}: give a longer text")
    i = hits[0]
    if value_token not in src.tokens[i] or reading not in READING_NAMES:
        raise SystemExit(f"{file}:{i + 1}: no token {value_token!r} in {src.tokens[i]}, or no reading {reading!r}")
    mine = [e for e in load_map() if e["page"] == page and e["number"] == number]
    p = parse_page(page, (REPO / page).read_text())
    at = p.locate(mine[0]["context"], mine[0].get("nth")) if len(mine) == 1 else _occurrence(page, number)[1]
    context, nth = p.context(at)
    entry = {"page": page, "number": number, "context": context, "file": file, "anchor": src.anchor(i),
             "token": src.tokens[i].index(value_token), "reading": reading}
    entry = entry if nth is None else {**entry, "nth": nth}
    found, why = read_entry(entry)
    if found is None or not agrees(number, found):
        raise SystemExit(f"{page}: {number!r} does not agree with {file}:{i + 1} ({why or found})")
    dump_map(_replaced(p, at, entry))
    return entry


def main(argv: list[str]) -> int:
    if argv[:1] == ["--pin"] and len(argv) in (6, 7):
        print(pin(*argv[1:]))
        return 0
    if argv[:1] == ["--register"] and len(argv) in (4, 5):
        print(register(*argv[1:]))
        return 0
    if "--update" in argv or "--reattribute" in argv:
        texts = {str(p.relative_to(REPO)): p.read_text() for p in pages()}
        before = load_map()
        fresh = set(argv[argv.index("--reattribute") + 1:]) if "--reattribute" in argv else set()
        assert fresh <= set(texts), f"not checked pages: {sorted(fresh - set(texts))}"
        kept = [e for e in before if e["page"] not in fresh or "reason" in e]  # registrations stay
        after, drift, nowhere = updated(kept, texts, force="--force" in argv)
        where = {(e["page"], e["context"]): (e["file"], e["anchor"], e["token"], e["reading"])
                 for e in before if "file" in e}
        for e in after:
            if e["page"] in fresh and "file" in e and where.get((e["page"], e["context"])) != (
                    e["file"], e["anchor"], e["token"], e["reading"]):
                print(f"{e['page']}: {e['number']!r} near {e['context']!r} now from {e['file']} "
                      f"({read_entry(e)[1]})")
        old = {json.dumps(e, sort_keys=True) for e in before}
        new = {json.dumps(e, sort_keys=True) for e in after}
        dump_map(after)
        print(f"{MAP.relative_to(REPO)}: {len(after)} entries ({len(new - old)} added or refreshed, "
              f"{len(old - new)} dropped or refreshed)")
        if drift:
            print(f"\n{len(drift)} entries fail (drift): " + ("attributed afresh (--force)" if "--force" in argv
                  else "kept as they are; correct the page or the results, or rerun with --force"))
            print("\n".join(drift))
        if nowhere:
            print(f"\n{len(nowhere)} numbers are in no cited results file (cite the file, correct the number, or "
                  f"register it: --register PAGE NUMBER REASON [NEAR]):")
            print("\n".join(nowhere))
        return 1 if nowhere or (drift and "--force" not in argv) else 0
    if "--measure" in argv:
        rest = argv[argv.index("--measure") + 1:]
        print("\n".join(f"{k}: {v}" for k, v in stats().items()))
        for of in ("decimal", "integer", "short"):
            measure(int(rest[0]) if rest else 300, of=of)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
