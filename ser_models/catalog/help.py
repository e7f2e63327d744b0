"""A job's ``--help`` as a person reads it: the keys a user sets, grouped, one short line each.

Every job's keys come from its config dataclasses (``ser_models.config.field`` holds each key's help and
effect). ``--help`` shows the keys a user sets: the required ones, those the job's shipped recipes set, and the
top-level ones, grouped by section, one line of at most :data:`WIDTH` characters each. ``--help-all`` shows
every key with its default, what it may change and its whole help text; ``--help SECTION`` one section of it.

The console command renders help from ``job_keys.json`` (written by :func:`build_index`, checked current by
``tests/unit/test_command.py``; rows from a schema: :func:`ser_models.config.help_keys`), so that help starts without importing torch or Ray; ``python -m jobs.<job>
--help`` renders the same text from the live schema. Nothing here imports torch or Ray.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

from ser_models.catalog.recipes import recipe_job, recipes

#: Longest line of ``--help`` (and of ``--help-all``'s wrapped help text).
WIDTH = 100
#: The most lines ``--help`` prints for one job (lists of allowed values are wrapped, never cut).
MAX_LINES = 66
#: The committed key index the console command reads (:func:`build_index`).
INDEX_PATH = Path(__file__).resolve().parents[1] / "job_keys.json"

#: Sections in the order help prints them, each with the patterns of the dotted keys it holds (fnmatch-like:
#: ``*`` is any run of characters). A key goes to the first section with a matching pattern; keys no pattern
#: matches go to ``job`` (the job's own settings).
SECTIONS: dict[str, tuple[str, ...]] = {
    "data": ("pool_dir", "*_pool_dir", "manifest", "recordings", "annotations", "input", "audio_root", "audio_dir",
             "checkpoint", "init_checkpoint", "run_dir", "evidence.labels_from", "source", "target", "split",
             "*_split", "feature_cache_dir", "active.feature_cache_dir", "base", "config", "teacher.checkpoint",
             "channels", "format", "kind", "*_field", "labels", "label_map", "removed", "grow"),
    "labels": ("active.budget_*", "active.oracle*", "active.label_studio.*", "active.initial*",
                          "active.query_*", "active.rounds", "active.strategy.*", "active.seed", "active.stopping.*",
                          "active.warm_start*", "active.max_per_recording", "active.semi_supervised*", "active.clip_context*",
                          "budget", "rounds", "schedule", "shares"),
    "evaluation": ("active.evaluation.*", "active.forecast.*", "evidence.*", "evaluate_split", "dev_on", "dev_ratio",
                   "half_width", "target_ua", "expected_ua", "confidence", "max_share", "max_test_share",
                   "max_per_unit", "min_per_class", "recalls", "test_fraction", "dev_fraction", "test_session",
                   "dev_session"),
    "model": ("model.*", "encoder.*", "encoder_source", "teacher.*", "cross_lingual.*", "anchoring.*"),
    "training": ("train.*", "target_train.*", "tapt*", "pretrain.*", "pretrain_adapter", "adapter_pretrain.*",
                 "distill.*", "similarity.*", "weighted_sum", "tasks", "seeds"),
    "compute": ("scaling.*", "scorer.*", "active.scorer.*", "active.feature_cache*", "num_workers", "backend",
                "cpus_per_*", "max_concurrent_trials", "batch_size", "shard_rows", "block_seconds"),
    "output": ("output_dir", "output", "to", "timeline_plot", "embedding", "audio_format", "rows_per_file",
               "tracking.*", "top_k", "quantize"),
}
#: The section of keys no pattern of :data:`SECTIONS` matches.
OTHER = "job"

_EFFECT_WORDS = {"result": "changes results", "speed": "speed only", "location": "where things live"}


@dataclass(frozen=True)
class Key:
    """One config key as help shows it.

    Attributes:
        name: the dotted key, e.g. ``active.budget_labels``.
        default: the default as written in YAML (``???`` for a required key).
        effect: what the key may change: ``result``, ``speed`` or ``location``.
        help: the key's whole help text.
    """

    name: str
    default: str
    effect: str
    help: str


def _match(pattern: str, name: str) -> bool:
    return re.fullmatch(re.escape(pattern).replace(r"\*", ".*"), name) is not None


def section_of(name: str) -> str:
    """The help section of dotted key ``name`` (:data:`SECTIONS`, else :data:`OTHER`)."""
    for section, patterns in SECTIONS.items():
        if any(_match(p, name) for p in patterns):
            return section
    return OTHER


def section_names() -> list[str]:
    return [*SECTIONS, OTHER]


def _first_sentence(text: str) -> str:
    text = " ".join(text.split())
    m = re.search(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)\.(\s|$)|;\s", text)
    return text[: m.start()] if m else text


def clip(line: str, width: int = WIDTH) -> str:
    if len(line) <= width:
        return line
    cut = line[: width - 3].rsplit(" ", 1)[0]
    return cut.rstrip(",;:(") + "..."


def _default_text(default: str, room: int = 24) -> str:
    return default if len(default) <= room else default[: room - 3] + "..."


def short_help(prog: str, summary: str, keys: list[Key], common: set[str]) -> str:
    """``--help``: usage, the keys a user sets (required, set by a recipe, or top-level), grouped by section.

    Args:
        prog: the command as the user typed it, e.g. ``ser-models after``.
        summary: one line on what the job does.
        keys: every key of the job.
        common: the keys the job's shipped recipes set.
    """
    shown = [k for k in keys if k.default == "???" or k.name in common or "." not in k.name]
    lines = [clip(f"usage: {prog} [CONFIG.yaml | --config RECIPE] [key.sub=value ...] [--print-config]"),
             "", *([clip(summary), ""] if summary else [])]
    by_section = _grouped(shown)
    room = MAX_LINES - len(lines) - 4 - 2 * len(by_section)
    width = max((len(k.name) for k in shown), default=0)
    # Keep every required key; drop the deepest keys last listed first, until the lines fit.
    keep: set[str] = set()
    for k in sorted(shown, key=lambda k: (k.default != "???", k.name.count("."), keys.index(k))):
        cost = len(_key_lines(k, width))
        if cost > room and k.default != "???":
            continue
        keep.add(k.name)
        room -= cost
    by_section = _grouped([k for k in shown if k.name in keep])
    for section, members in by_section.items():
        lines.append(f"{section}:")
        width = max(len(k.name) for k in members)
        for k in members:
            lines += _key_lines(k, width)
        lines.append("")
    hidden = len(keys) - sum(len(m) for m in by_section.values())
    lines.append(f"{hidden} more keys: --help-all, or --help SECTION, one of:")
    lines.append(clip("  " + ", ".join(s for s in _grouped(keys))))
    lines.append("--verbose: Ray's own lines, Ray Data's progress bars and INFO lines too")
    return "\n".join(lines)


#: A list of allowed values in a help text (``one of ['random', 'file', ...]``): never cut, wrapped instead.
_VALUES = re.compile(r"\[\s*'[^']*'(?:\s*,\s*'[^']*')*\s*\]|\[[A-Za-z_][\w-]*(?:,\s*[A-Za-z_][\w-]*)+\]")


def _key_lines(k: Key, width: int) -> list[str]:
    """One key of ``--help``: name, default and the help's first sentence on one line of at most :data:`WIDTH`
    characters, clipped; a sentence that lists the allowed values is wrapped onto indented lines instead, so
    every value shows."""
    head = f"  {k.name.ljust(width)} = {_default_text(k.default)}"
    text = _first_sentence(k.help) if k.help else ""
    line = f"{head}  {text}" if text else head
    values = _VALUES.search(text)
    if len(line) <= WIDTH or not values:
        return [clip(line)]
    # The sentence up to the end of its list of values (the rest is on --help-all), wrapped.
    line = f"{head}  {text[:values.end()]}" + ("..." if text[values.end():].strip(" .,;:") else "")
    return textwrap.wrap(line, WIDTH, subsequent_indent=" " * 6, break_on_hyphens=False, break_long_words=False)


def full_help(prog: str, summary: str, keys: list[Key], section: str | None = None) -> str:
    """``--help-all`` (every key) or ``--help SECTION``: each key with its default, what it may change and its
    help text wrapped at :data:`WIDTH` characters."""
    lines = [clip(f"usage: {prog} [CONFIG.yaml | --config RECIPE] [key.sub=value ...] [--print-config]"),
             "", *([clip(summary), ""] if summary else [])]
    for name, members in _grouped(keys).items():
        if section is not None and name != section:
            continue
        lines.append(f"{name}:")
        for k in members:
            lines.append(clip(f"  {k.name} = {k.default}  [{_EFFECT_WORDS.get(k.effect, k.effect)}]", 10_000))
            lines += textwrap.wrap(" ".join(k.help.split()), WIDTH, initial_indent="      ",
                                   subsequent_indent="      ")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _grouped(keys: list[Key]) -> dict[str, list[Key]]:
    out: dict[str, list[Key]] = {s: [] for s in section_names()}
    for k in keys:
        out[section_of(k.name)].append(k)
    return {s: m for s, m in out.items() if m}


#: The flags that ask a job for help: ``--help [SECTION]`` the keys a user sets, ``--help-all`` every key.
HELP_FLAGS = ("-h", "--help", "--help-all")


def help_request(args: list[str]) -> tuple[str, str | None] | None:
    """``(flag, section)`` when ``args`` ask for help (``--help data`` -> ``("--help", "data")``), else None."""
    flag = next((a for a in args if a in HELP_FLAGS), None)
    if flag is None:
        return None
    after = args[args.index(flag) + 1:]
    wants_section = flag != "--help-all" and after and "=" not in after[0] and not after[0].startswith("-")
    return flag, after[0] if wants_section else None


def render(prog: str, summary: str, keys: list[Key], common: set[str], flag: str, section: str | None) -> str:
    """The help ``flag`` asks for (``--help``, ``--help-all``, or ``--help`` with a ``section``).

    Raises:
        ValueError: ``section`` is not a section this job has.
    """
    if flag == "--help-all":
        return full_help(prog, summary, keys)
    if section is not None:
        names = list(_grouped(keys))
        if section not in names:
            raise ValueError(f"no help section {section!r}; this job's sections are: {', '.join(names)}")
        return full_help(prog, summary, keys, section)
    return short_help(prog, summary, keys, common)


# ---- the recipes' keys and the committed index ---------------------------------------------------------------


def recipe_keys(job: str) -> set[str]:
    """The dotted keys the shipped recipes of ``job`` set (``extends`` chains included)."""
    import yaml


    out: set[str] = set()

    def walk(data, prefix=""):
        for key, value in (data or {}).items():
            if key == "extends":
                continue
            if isinstance(value, dict) and value:
                walk(value, f"{prefix}{key}.")
            else:
                out.add(f"{prefix}{key}")

    def load(path, seen=()):
        data = yaml.safe_load(path.read_text()) or {}
        parent = data.get("extends") if isinstance(data, dict) else None
        if isinstance(parent, str) and (path.parent / parent).is_file() and path not in seen:
            load(path.parent / parent, (*seen, path))
        walk(data)

    for path in recipes():
        if recipe_job(path) == job:
            load(path)
    return out


def load_index() -> dict:
    """The committed key index: ``{job: {"summary", "keys": [[name, default, effect, help], ...], "common",
    "text"}}`` (``text``: the argparse help of a job without a config schema)."""
    return json.loads(INDEX_PATH.read_text())


def entry_keys(entry: dict) -> list[Key]:
    return [Key(*row) for row in entry["keys"]]
