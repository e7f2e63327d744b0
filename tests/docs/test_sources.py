"""Every decimal number on the pages comes from a results file the page itself cites.

The pages are README.md, BENCHMARKS.md and ``docs/**/*.md``, less ``docs/_build/``, the generated API pages
(``docs/reference/``) and ``docs/layers/`` (the reports ``jobs.layer_analysis`` wrote: results, not pages).
Fenced code blocks are skipped; tables, inline code and prose are read.

The rule, number by number:

- **A number** is a decimal one: ``0.72``, ``-1.8``, ``+2.4``, ``−0.3``, ``1,044.5``, ``4.23x``; integers
  are not checked, nor a number glued to a name or a path (``v3.2``, ``wav2vec2``, ``results_0.5.md``).
  A sign counts only where it stands as one (after a space or a bracket): the ``1.5`` of ``0.5-1.5`` is a
  range's end, unsigned.
- **The sources a page cites** are the results files it names, as a path ``bench/results/<name>`` (in prose or
  a link, ``../`` allowed) or as a bare file name in backticks (`` `segment.md` ``) that is a file of
  ``bench/results/``; and the layer-analysis reports, named ``docs/layers/<name>.md`` (or the folder,
  ``docs/layers/``, for both). Only reports count: ``.md``, ``.json`` and ``.txt``. The per-run tables
  (``*_runs.csv``, ``*_draws.csv``) hold thousands of numbers, so almost any figure would match one by chance.
- **A number is sourced** when some number ``v`` of a cited file, read one of the ways in ``READINGS``,
  rounds to it at the page's precision (``0.72`` stands for anything in [0.715, 0.725]). The readings are
  ``v`` itself, ``100 v`` (a share as a percent, a difference in UA as points), and three changes of time
  unit: seconds to minutes and to hours, and seconds to milliseconds. A signed number must match ``v`` with
  its sign (``+2.4`` matches ``0.024`` or ``+0.024``, not ``-0.024``); an unsigned one matches either sign
  ("8.3 points lower" quotes ``-0.083``).
- **Anything else is registered** in ``REGISTRY``: the page, the number exactly as written, a snippet of the
  page around it (containing it; whitespace may differ) and why it is not read from a results file:

  - ``config default``: a default or setting of the platform, not a measurement;
  - ``target``: a goal a measurement is held to;
  - ``published``: a paper's, a vendor's or another project's figure, cited there;
  - ``example``: a worked example, an illustrative value, a sample of a file's format;
  - ``identifier``: a version, an arXiv id, a name;
  - ``computed``: a size or a bound worked out from a format or a formula (``16 kHz x 2 bytes x 3600 s``,
    chance ``1 / C``), not measured;
  - ``arithmetic on cited figures``: computed from figures of the cited results (a mean of a table's rows,
    CPU-seconds from wall time x cores, seconds per pool hour from a rate); the headline ones are recomputed
    by ``test_figures.py``;
  - ``runs table``: a single run's figure from a per-run table the page cites (``*_runs.csv``), which the
    rule does not read;
  - ``unrecorded measurement``: measured once (an A/B run, a side measurement) but in no results file;
  - ``pending``: on a page being rewritten at present, to be sourced or classified when it settles.

  An entry whose snippet is gone from its page, or covers no such number there, fails as stale.

Pure text: no imports of the library.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results"
LAYERS = REPO / "docs" / "layers"

#: A decimal number on a page: thousands separators allowed, a sign only where it stands as one, a ratio's
#: ``x`` allowed after it (``4.23x``).
NUMBER = re.compile(r"(?:(?<![\w.,/\-–−+])[-+−])?(?<![\w.,/])(?:\d{1,3}(?:,\d{3})+|\d+)\.\d+"
                    r"(?![^\Wx]|x\w|\.\w|,\d{3})")
#: Any number in a results file (integers, exponents and thousands separators included).
SOURCE_NUMBER = re.compile(r"[-+−]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")
#: How a results file's number ``v`` may be quoted: itself, x 100 (a share as %, UA as points), seconds as
#: minutes, as hours, as milliseconds.
READINGS = (1.0, 100.0, 1 / 60, 1 / 3600, 1000.0)
REPORT_SUFFIXES = (".md", ".json", ".txt")


def pages() -> list[Path]:
    docs = [p for p in sorted((REPO / "docs").rglob("*.md"))
            if not {"_build", "reference", "layers"} & set(p.relative_to(REPO / "docs").parts)]
    return [REPO / "README.md", REPO / "BENCHMARKS.md", *docs]


def without_fences(text: str) -> str:
    """The text with fenced code blocks (indented ones too) blanked, line numbers and offsets kept."""
    return re.sub(r"^[ \t]*(`{3,}|~{3,}).*?^[ \t]*\1", lambda m: re.sub(r"[^\n]", " ", m[0]), text,
                  flags=re.S | re.M)


def cited(text: str) -> list[str]:
    """The results files a page cites, as paths relative to the repository."""
    names = {f"bench/results/{n}" for n in re.findall(r"bench/results/([\w.-]+\w)", text)}
    names |= {f"bench/results/{n}" for n in re.findall(r"`([\w.-]+\.\w+)`", text)}
    names |= {f"docs/layers/{n}" for n in re.findall(r"docs/layers/([\w.-]+\.md)", text)}
    if "docs/layers/`" in text or "docs/layers/)" in text:
        names |= {str(p.relative_to(REPO)) for p in LAYERS.glob("*.md")}
    return sorted(n for n in names if n.endswith(REPORT_SUFFIXES) and (REPO / n).is_file())


@cache
def _file_text(name: str) -> str:
    return (REPO / name).read_text()


def readings(text: str) -> list[float]:
    """Every reading of every number of a results file's text, sorted."""
    values = set()
    for token in SOURCE_NUMBER.findall(text):
        v = float(token.replace(",", "").replace("−", "-"))
        values.update(v * f for f in READINGS)
    return sorted(values)


@cache
def _file_readings(name: str) -> list[float]:
    return readings(_file_text(name))


def value(token: str) -> tuple[float, int, bool]:
    """``(value, decimals shown, signed)`` of a page's number."""
    plain = token.replace(",", "").replace("−", "-")
    return float(plain), len(plain.split(".")[1]), plain[0] in "+-"


def sourced(token: str, sources: list[list[float]]) -> bool:
    """Whether some reading of the sources rounds to ``token`` at its precision."""
    v, decimals, signed = value(token)
    half = 0.5 * 10 ** -decimals * (1 + 1e-9)
    targets = (v,) if signed else (v, -v)
    for found in sources:
        for t in targets:
            i = bisect.bisect_left(found, t - half)
            if i < len(found) and found[i] <= t + half:
                return True
    return False


@dataclass(frozen=True)
class Known:
    """Numbers of a page that are not read from a results file: the numbers as written (space-separated), a
    snippet of the page around them (containing them) and why."""

    numbers: str
    near: str
    reason: str


def _pattern(snippet: str) -> re.Pattern:
    return re.compile(r"\s+".join(re.escape(w) for w in snippet.split()))


def unsourced(page: str, text: str, registry: dict[str, list[Known]] | None = None,
              read=_file_readings) -> tuple[list[str], list[str]]:
    """``(numbers neither sourced nor registered, stale registry entries)`` of one page, as messages."""
    registry = REGISTRY if registry is None else registry
    body = without_fences(text)
    sources = [read(name) for name in cited(text)]
    covered: set[int] = set()
    stale = []
    numbers = [(m.start(), m.end(), m[0]) for m in NUMBER.finditer(body)]
    for known in registry.get(page, []):
        assert known.reason in REASONS, f"{page}: {known.numbers!r}: unknown reason {known.reason!r}"
        spans = [(m.start(), m.end()) for m in _pattern(known.near).finditer(body)]
        for number in known.numbers.split():
            hits = {start for start, end, token in numbers
                    if token == number and any(a <= start and end <= b for a, b in spans)}
            if not hits:
                stale.append(f"{page}: registered {number!r} near {known.near!r} is not on the page")
            covered |= hits
    missing = []
    for start, _, token in numbers:
        if start not in covered and not sourced(token, sources):
            line = body.count("\n", 0, start) + 1
            context = " ".join(body[max(0, start - 60):start + 40].split())
            missing.append(f"{page}:{line}: {token!r} in {context!r}")
    return missing, stale


REASONS = ("config default", "target", "published", "example", "identifier", "computed",
           "arithmetic on cited figures", "runs table", "unrecorded measurement", "pending")

REGISTRY: dict[str, list[Known]] = {
    "README.md": [
        Known("5.9", "by 4.4 to 5.9 UA points at 10-40 %", "pending"),
    ],
    "BENCHMARKS.md": [
        Known("2.78", "(4 labels, 2.78 h)", "computed"),
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
        Known("8.5", "| 8.5 s | 4 | 1 |", "unrecorded measurement"),
        Known("11.6", "| 11.6 s | 7 | 0 |", "unrecorded measurement"),
        Known("21.3", "| 21.3 s | 12 | 2 |", "unrecorded measurement"),
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
        Known("+2.8", "`auto -> random (margin +0.8 [-1.2, +2.8] UA points over random)`", "pending"),
    ],
    "docs/what-to-expect.md": [
        Known("8.9", "**8.9 CPU-s** (406 audio hours per core-hour)", "arithmetic on cited figures"),
        Known("115.2", "**115.2 MB** (16 kHz pcm16", "computed"),
    ],
}


def test_every_number_comes_from_a_cited_results_file():
    missing, stale = [], []
    for path in pages():
        m, s = unsourced(str(path.relative_to(REPO)), path.read_text())
        missing += m
        stale += s
    assert not missing, (f"{len(missing)} numbers on the pages are in no results file the page cites (cite "
                         f"the file, correct the number, or register it in REGISTRY):\n" + "\n".join(missing))
    assert not stale, "stale REGISTRY entries:\n" + "\n".join(stale)


def test_registry_names_pages_that_exist():
    names = {str(p.relative_to(REPO)) for p in pages()}
    assert set(REGISTRY) <= names, sorted(set(REGISTRY) - names)


def test_a_figure_that_moved_in_its_results_file_is_caught():
    """The check is not vacuous: change one figure a page quotes in its cited results text (in memory) and the
    page's number is reported."""
    # docs/features.md quotes the all-labels test UA of the platform's own loop with feature_norm and
    # functionals auto, 0.774, from bench/results/features_auto_platform_demo2880.md
    page, name = "docs/features.md", "bench/results/features_auto_platform_demo2880.md"
    figure, moved = "0.774", "0.781"
    text = (REPO / page).read_text()
    assert figure in text and name in cited(text)
    assert not any(figure in m for m in unsourced(page, text)[0])

    def read(n: str) -> list[float]:
        t = _file_text(n)
        return readings(t.replace(figure, moved) if n == name else t)

    missing, _ = unsourced(page, text, read=read)
    assert any(f"{figure!r}" in m and m.startswith(f"{page}:") for m in missing), missing


def test_a_registered_number_that_left_its_page_is_stale():
    page = "docs/labelling.md"
    text = (REPO / page).read_text().replace("top-2 gap 0.0312", "top-2 gap 0.0412")
    missing, stale = unsourced(page, text)
    assert any("'0.0412'" in m for m in missing), missing
    assert any("'0.0312'" in m for m in stale), stale
