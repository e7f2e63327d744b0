"""Config loading: OmegaConf structured dataclasses, one YAML per experiment, dotted overrides.

A schema is a dataclass whose fields carry defaults and a ``help`` string (see :func:`field`), and whose
``__post_init__`` validates values. :func:`load_config` merges ``schema defaults <- YAML <- overrides``,
lets OmegaConf reject unknown keys and wrong types, and returns a plain dataclass instance. A Ray Tune
trial applies its sampled values through the same overrides path.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ser_models.catalog import help as job_help
from ser_models.catalog.help import Key
from ser_models.catalog.jobs import JOBS, job_name
from ser_models.catalog.recipes import find_recipe, recipe_named
from ser_models.console import RAY_CONSOLE_ENV
from ser_models.exceptions import ConfigError
from ser_models.runtime import DATA_CONSOLE_LEVEL_ENV, PROGRESS_BARS_ENV

T = TypeVar("T")


#: ``field(path=...)`` values: a path or URI, or a name (preset, hub id) that may also be a local folder.
PATH, PATH_OR_NAME = "path", "path_or_name"

#: ``field(effect=...)`` values: what a key may change.
#:
#: - ``RESULT``: the numbers a job writes (scores, selections, checkpoints, features, metrics). Precision and
#:   TF32 (bf16 or TF32 matmuls round differently), the device (``use_gpu``, ``num_gpus``: other kernels), the
#:   data-parallel worker count (each replica's batch and the all-reduce) and every model, training and
#:   selection setting. A resumed run must keep them; the run record, the resume check and the feature cache
#:   key (for the keys that reach the encoder) hold them.
#: - ``SPEED``: when and where the same work runs (actor, worker and thread counts, batch sizes of ``map_batches``
#:   calls, retries, progress output), never what it computes. A resumed run may change them. A thread count
#:   may still reorder a floating-point reduction inside a BLAS call (last-bit differences), which no check of
#:   this platform treats as a different result.
#: - ``LOCATION``: where inputs and outputs live (``pool_dir``, ``output_dir``, cache folders). They name the
#:   artifact instead of shaping it: a pool is identified by its lineage, not its folder, so a moved pool or
#:   run folder resumes.
RESULT, SPEED, LOCATION = "result", "speed", "location"
EFFECTS = (RESULT, SPEED, LOCATION)


def field(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,  # noqa: A002
          effect: str | None = None, speed_only: bool = False, path: str | None = None):
    """A dataclass field with a ``help`` string kept in its metadata (shown by ``--help`` of every job).

    ``effect`` says what the key may change (:data:`RESULT`, :data:`SPEED` or :data:`LOCATION`, see
    :data:`EFFECTS`); every key of a job config carries one (``tests/unit/test_config_keys.py`` lists them all and
    names any that does not), and the jobs reference shows it. Speed and location keys may change when a run
    resumes (:func:`speed_only_keys`, ``ser_models.provenance``); result keys are recorded in ``run.json`` and a
    resume that changes one is refused. On a nested config the effect covers every key below it; a nested config
    without one leaves it to its own fields. ``speed_only=True`` is the older spelling of ``effect=SPEED``.

    ``path=PATH`` marks a local path or URI, ``path=PATH_OR_NAME`` a value that is a local path only when it
    exists (an encoder ``source`` may be a preset or hub id): :func:`resolve_paths` makes the relative ones
    absolute in the driver, so that Ray workers and Tune trials (which run in other folders) read the same files.
    """
    if path not in (None, PATH, PATH_OR_NAME):
        raise ValueError(f"field(path=...) must be None, {PATH!r} or {PATH_OR_NAME!r}, got {path!r}")
    if speed_only:
        if effect not in (None, SPEED):
            raise ValueError(f"field(speed_only=True) contradicts effect={effect!r}")
        effect = SPEED
    if effect not in (None, *EFFECTS):
        raise ValueError(f"field(effect=...) must be one of {EFFECTS}, got {effect!r}")
    metadata = {"help": help, "effect": effect, "speed_only": effect in (SPEED, LOCATION), "path": path}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _nested_schema(f: dataclasses.Field) -> type | None:
    """The dataclass type of a nested-config field (found through its default), or None for a plain key."""
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return type(value) if dataclasses.is_dataclass(value) else None
    ftype = f.type if not isinstance(f.type, str) else None
    return ftype if ftype is not None and dataclasses.is_dataclass(ftype) else None


def renamed_keys(schema: type, prefix: str = "") -> dict[str, str]:
    """``{old dotted key: new dotted key}`` of ``schema`` and the configs nested in it: a config class names the
    keys it renamed in a ``RENAMED`` class attribute (``{"target_half_width": "half_width"}``). One concept has one
    key name across the jobs, and an old name is refused with the new one, never read as an alias."""
    out = {f"{prefix}{old}": f"{prefix}{new}" for old, new in getattr(schema, "RENAMED", {}).items()}
    for f in dataclasses.fields(schema):
        if (nested := _nested_schema(f)) is not None:
            out.update(renamed_keys(nested, prefix=f"{prefix}{f.name}."))
    return out


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a YAML mapping layer (a nested mapping's own key too)."""
    if not isinstance(node, (dict, DictConfig)):
        return []
    keys = []
    for key, value in node.items():
        keys.append(f"{prefix}{key}")
        keys += _dotted_keys(value, prefix=f"{prefix}{key}.")
    return keys


def _refuse_renamed(renamed: dict[str, str], layer: Any, where: str = "") -> None:
    """Raise :class:`ConfigError` naming the new key when ``layer`` sets a key of ``renamed``
    (:func:`renamed_keys` of the schema, walked once per load)."""
    for key in _dotted_keys(layer):
        if key in renamed:
            raise ConfigError(f"config key '{key}' is now called '{renamed[key]}'{where}: rename it")


def key_effects(schema: type, prefix: str = "", inherited: str | None = None) -> dict[str, str | None]:
    """``{dotted name: effect}`` of every leaf key of ``schema`` (nested configs walked; a nested config's own
    effect covers the keys below it); None for a key that carries none (treated as :data:`RESULT`)."""
    out: dict[str, str | None] = {}
    for f in dataclasses.fields(schema):
        name, nested = f"{prefix}{f.name}", _nested_schema(f)
        effect = inherited or f.metadata.get("effect")
        if nested is not None:
            out.update(key_effects(nested, prefix=f"{name}.", inherited=effect))
        else:
            out[name] = effect
    return out


def keys_with_effect(schema: type, effect: str) -> tuple[str, ...]:
    """Dotted names of the leaf keys of ``schema`` with ``effect`` (an unmarked key counts as :data:`RESULT`)."""
    return tuple(k for k, e in key_effects(schema).items() if (e or RESULT) == effect)


def speed_only_keys(schema: type, prefix: str = "") -> tuple[str, ...]:
    """Dotted names (fnmatch patterns) of the keys a resumed run may change: those marked :data:`SPEED` or
    :data:`LOCATION`, nested configs included (a marked nested config gives ``name.*``)."""
    keys: list[str] = []
    for f in dataclasses.fields(schema):
        name, nested = f"{prefix}{f.name}", _nested_schema(f)
        if f.metadata.get("effect") in (SPEED, LOCATION):
            keys.append(f"{name}.*" if nested is not None else name)
        elif nested is not None:
            keys.extend(speed_only_keys(nested, prefix=f"{name}."))
    return tuple(keys)


def _leaf_field(schema: type, dotted: str) -> dataclasses.Field | None:
    """The field a dotted key names in ``schema`` (through nested configs), or None when it is not there
    (e.g. a key inside a plain-dict field)."""
    *parents, leaf = dotted.split(".")
    for part in parents:
        f = {f.name: f for f in dataclasses.fields(schema)}.get(part)
        schema = _nested_schema(f) if f is not None else None
        if schema is None:
            return None
    return {f.name: f for f in dataclasses.fields(schema)}.get(leaf)


def _field_default(f: dataclasses.Field, owner: Any = None) -> Any:
    """A field's default: read from ``owner`` (the default instance of the config holding it, so a job's own
    default for a shared config wins, e.g. jobs.after's ``train.solver``), else its own default or factory."""
    if owner is not None:
        return getattr(owner, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def key_default(schema: type, dotted: str) -> Any:
    """The schema's default for a dotted key (a nested config as a dict), or ``dataclasses.MISSING`` when the
    key has no default or is not in the schema (e.g. inside a plain-dict field). A nested config's default
    instance decides its keys' defaults (jobs.after's ``model`` is the recipe's, not ``ModelConfig()``)."""
    *parents, leaf = dotted.split(".")
    owner = None
    for part in parents:
        f = {f.name: f for f in dataclasses.fields(schema)}.get(part)
        schema = _nested_schema(f) if f is not None else None
        if schema is None:
            return dataclasses.MISSING
        owner = _field_default(f, owner)
        if not dataclasses.is_dataclass(owner):
            owner = None
    f = {f.name: f for f in dataclasses.fields(schema)}.get(leaf)
    if f is None:
        return dataclasses.MISSING
    value = _field_default(f, owner)
    return to_dict(value) if dataclasses.is_dataclass(value) else value


def load_config(schema: type[T], path: str | Path | None = None, overrides: Sequence[str] = ()) -> T:
    """Build a config from its schema, an optional YAML file and dotted ``key.sub=value`` overrides.

    Args:
        schema: the dataclass type of the config.
        path: YAML file with values; ``None`` uses the schema defaults.
        overrides: strings like ``train.optim.epochs=3`` or ``model.adapter.target_modules=[fc1,fc2]``.

    Returns:
        An instance of ``schema`` (its ``__post_init__`` validation has run).

    Raises:
        ConfigError: naming the file, the unknown key, or the key with a wrong type or invalid value.
    """
    base = OmegaConf.structured(schema)
    layers = [base]
    renamed = renamed_keys(schema)
    if path is not None:
        path = Path(path)
        files = _file_layers(path)
        for file, layer in files:  # each named in the refusal: an old key may sit in an `extends:` parent
            _refuse_renamed(renamed, layer, f" (file {file})")
        layers += [layer for _, layer in files]
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key.sub=value, got {bad}")
    if overrides:
        # `key=` is how a shell passes `key=''` (the quotes are gone by then): an empty string, not null
        overrides = [f"{o}''" if o.endswith("=") else o for o in overrides]
        try:
            layers.append(OmegaConf.from_dotlist(list(overrides)))
        except (OmegaConfBaseException, yaml.YAMLError) as exc:  # a value that is not YAML: `k={a:[1]}`
            raise ConfigError(f"cannot parse overrides {list(overrides)}: {exc}") from exc
    if overrides:
        _refuse_renamed(renamed, layers[-1])
    try:
        merged = OmegaConf.merge(*layers)
        obj = OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        where = f" (file {path})" if path is not None else ""
        raise ConfigError(f"config key '{key}': {_first_line(exc)}{where}") from exc
    except (ValueError, TypeError) as exc:  # raised by a __post_init__
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc)) from exc
    return obj  # type: ignore[return-value]


def _file_layers(path: Path, chain: tuple[Path, ...] = ()) -> list[tuple[Path, Any]]:
    """``(file, layer)`` of the YAML layers of ``path``: those of the file its top-level ``extends:`` names
    (relative to ``path``'s folder), then its own values, which win (one recipe, several jobs' configs)."""
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}" + (f" (extended by {chain[-1]})" if chain else ""))
    if path.resolve() in chain:
        raise ConfigError(f"config {chain[0]}: 'extends' loops back to {path}")
    try:
        conf = OmegaConf.load(path)
    except Exception as exc:  # yaml errors carry the line
        raise ConfigError(f"cannot parse {path}: {exc}") from exc
    parent = conf.pop("extends", None) if isinstance(conf, DictConfig) else None
    if parent is None:
        return [(path, conf)]
    if not isinstance(parent, str) or not parent:
        raise ConfigError(f"config {path}: 'extends' must name a YAML file, got {parent!r}")
    return [*_file_layers(path.parent / parent, (*chain, path.resolve())), (path, conf)]


#: A job's ``--verbose`` flag: Ray Data's progress bars and its INFO lines come back (they are off by default
#: because a round executes many datasets, each with a bar, which buried the job's own progress lines).
VERBOSE_FLAGS = ("-v", "--verbose")

#: How the running job was started, for its usage and help lines: ``ser-models after`` from the console
#: command (:mod:`ser_models.cli.command` sets it), else ``python -m jobs.<job>``.
_invoked_as: str | None = None


def set_invoked_as(prog: str | None) -> None:
    """Say how the job was started (the console command sets ``ser-models <job>``)."""
    global _invoked_as
    _invoked_as = prog


def invoked_as(module: str) -> str:
    """The command a user typed to run job module ``module`` (``jobs.after``)."""
    return _invoked_as or f"python -m {module}"


def _take_flag(args: list[str], flag: str) -> bool:
    if flag not in args:
        return False
    args.remove(flag)
    return True


def parse_job_args(schema: type[T], argv: Sequence[str], prog: str) -> T:
    """Parse ``[CONFIG.yaml | --config RECIPE] [key=value ...] [--print-config] [--verbose]`` as every job does.

    ``--help`` prints the keys a user sets, grouped; ``--help-all`` every key; ``--help SECTION`` one section
    (:mod:`ser_models.catalog.help`). ``--config NAME`` reads a shipped recipe (``ser-models configs`` lists them);
    a config path that is no file but a recipe's name does too. ``--print-config`` prints the resolved config as
    YAML and exits. ``--verbose`` (anywhere) sets ``SER_RAY_PROGRESS_BARS=1``,
    ``SER_RAY_DATA_CONSOLE_LEVEL=INFO`` and ``SER_RAY_CONSOLE=1`` (Ray's own console lines) for this process
    before Ray starts (:func:`ser_models.runtime.connect_ray` reads them).

    Raises:
        ConfigError: a bad key, value, file or recipe name.
        SystemExit: after help (0; 2 when no argument was given) or ``--print-config`` (0).
    """

    args = [a for a in argv if a not in VERBOSE_FLAGS]
    if len(args) != len(argv):

        os.environ[PROGRESS_BARS_ENV] = "1"
        os.environ[RAY_CONSOLE_ENV] = "1"
        os.environ.setdefault(DATA_CONSOLE_LEVEL_ENV, "INFO")
    job = prog.rsplit(".", 1)[-1]
    # `--config=NAME` is `--config NAME`
    args = [part for a in args for part in (a.split("=", 1) if a.startswith("--config=") else [a])]
    asked = job_help.help_request(args)
    if not args or asked is not None:
        flag, section = asked or (None, None)

        summary = JOBS[job_name(prog)].summary if job_name(prog) in JOBS else ""
        try:
            text = job_help.render(invoked_as(prog), summary, help_keys(schema), job_help.recipe_keys(job),
                                   flag or "--help", section)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        print(text)
        raise SystemExit(0 if args else 2)
    print_config = _take_flag(args, "--print-config")
    path: str | None = None
    if args.count("--config") > 1:
        raise ConfigError("--config given twice: one recipe or YAML file per run (its `extends:` can name another)")
    if "--config" in args:
        at = args.index("--config")
        if at + 1 >= len(args):
            raise ConfigError("--config needs a recipe name or a YAML path (`ser-models configs` lists the recipes)")
        name = args.pop(at + 1)
        args.pop(at)
        path = name if Path(name).is_file() else str(find_recipe(name, job))
    if args and "=" not in args[0]:
        if path is not None:
            raise ConfigError(f"two configs given: --config {path} and {args[0]}")
        path = args.pop(0)
        if not Path(path).is_file() and "/" not in path and "://" not in path and recipe_named(path):
            path = str(find_recipe(path, job))
        elif not Path(path).is_file() and "://" not in path and recipe_named(Path(path).name):
            # A clone's jobs/configs/NAME.yaml given outside a clone: the same recipe ships with the package.
            stem = recipe_named(Path(path).name).stem
            raise ConfigError(f"config file not found: {path}; the shipped recipe {stem} is installed with the "
                              f"package: run it with `--config {stem}`, or copy it to edit with "
                              f"`ser-models configs --copy {stem} {stem}.yaml`")
    cfg = resolve_paths(load_config(schema, path, args))
    if print_config:
        print(to_yaml(cfg), end="")
        raise SystemExit(0)
    return cfg


def _absolute(value: Any, kind: str, cwd: str) -> Any:
    """``value`` made absolute against ``cwd`` when it is a relative local path of a ``path=kind`` field."""
    if not isinstance(value, str) or not value or "://" in value:  # '' = unset; URIs stay as they are
        return value
    expanded = os.path.expanduser(value)
    if os.path.isabs(expanded):
        return expanded
    if kind == PATH_OR_NAME and not os.path.exists(os.path.join(cwd, expanded)):
        return value  # a preset or hub id, not a folder here
    return os.path.normpath(os.path.join(cwd, expanded))


def resolve_paths(cfg: T, cwd: str | os.PathLike | None = None) -> T:
    """A copy of ``cfg`` whose relative local paths (fields marked ``path=``) are absolute against ``cwd``.

    A relative path in a job's config means relative to the folder the user ran the command from. Ray Tune
    runs each trial in a folder of its own, and a worker on another node has another current folder, so the
    driver resolves every path once, before anything is shipped. URIs (``s3://...``) and empty values are
    kept; ``~`` is expanded.

    Args:
        cfg: a config dataclass (nested configs, and lists of them, are walked).
        cwd: the folder relative paths are taken from (default: the current one).
    """
    cwd = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    changes = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("path"):
            new = _absolute(value, f.metadata["path"], cwd)
        elif dataclasses.is_dataclass(value):
            new = resolve_paths(value, cwd)
        elif isinstance(value, list) and any(dataclasses.is_dataclass(v) for v in value):
            new = [resolve_paths(v, cwd) if dataclasses.is_dataclass(v) else v for v in value]
        else:
            continue
        if new is not value:
            changes[f.name] = new
    return dataclasses.replace(cfg, **changes) if changes else cfg


def path_kind(schema: type, dotted: str) -> str | None:
    """``PATH`` / ``PATH_OR_NAME`` when the dotted key of ``schema`` is a path field, else None."""
    f = _leaf_field(schema, dotted)
    return None if f is None else f.metadata.get("path")


def resolve_path_value(schema: type, dotted: str, value: Any, cwd: str | os.PathLike | None = None) -> Any:
    """One value of a dotted key (e.g. a swept ``pool_dir`` choice), resolved as :func:`resolve_paths` would."""
    kind = path_kind(schema, dotted)
    if kind is None:
        return value
    return _absolute(value, kind, os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd()))


def to_dict(cfg: Any) -> dict:
    """A config as a plain dict (for logs, Ray payloads and fingerprints)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def from_dict(schema: type[T], data: dict) -> T:
    """Inverse of :func:`to_dict`, with the same validation as :func:`load_config`."""
    _refuse_renamed(renamed_keys(schema), data)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), data))  # type: ignore
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config key '{getattr(exc, 'full_key', None)}': {_first_line(exc)}") from exc


#: ``scheme://user:password@host...``: the user info a URL may carry (group 1 kept, group 2 dropped).
_URL_USER_INFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)([^/@\s]*@)")


def strip_user_info(value: Any) -> Any:
    """``value`` with the user name and password removed from every URL in it (strings, lists, mappings):
    ``https://ann:secret@ls.internal`` -> ``https://ls.internal``. Credentials come from the environment; no
    file the platform writes, and no line it prints, holds them."""
    if isinstance(value, str):
        return _URL_USER_INFO.sub(r"\1", value)
    if isinstance(value, dict):
        return {k: strip_user_info(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(strip_user_info(v) for v in value)
    return value


def to_yaml(cfg: Any) -> str:
    """A config as YAML text (written next to every run's outputs, printed by jobs), URLs without their user
    info (:func:`strip_user_info`)."""
    container = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=False)
    return OmegaConf.to_yaml(OmegaConf.create(strip_user_info(container)))


def config_keys(schema: type, prefix: str = "", owner: Any = None) -> list[tuple[str, Any, str]]:
    """``(dotted name, default, help)`` of every leaf key of ``schema`` (nested configs walked, their defaults
    read from the default instance that holds them: ``owner``); a required key's default is ``"???"``."""
    rows = []
    for f in dataclasses.fields(schema):
        name = f"{prefix}{f.name}"
        nested = _nested_schema(f)
        default = _field_default(f, owner)
        if nested is not None:
            rows += config_keys(nested, prefix=f"{name}.", owner=default)
            continue
        rows.append((name, "???" if default is dataclasses.MISSING else default, f.metadata.get("help", "")))
    return rows


def diff_from_defaults(schema: type, cfg: Any) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (default, value)}`` of every leaf key of ``cfg`` (an instance of ``schema``) that differs
    from the schema's default (required keys, which have none, are left out): what a config file changes."""
    values = dict(_leaves(to_dict(cfg)))
    out = {}
    for name, default, _ in config_keys(schema):
        if isinstance(default, str) and default == "???":
            continue
        if name in values and values[name] != (to_dict(default) if dataclasses.is_dataclass(default) else default):
            out[name] = (default, values[name])
    return out


def _leaves(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            yield from _leaves(value, f"{prefix}{key}.")
        yield f"{prefix}{key}", value


def describe(schema: type, prefix: str = "") -> str:
    """One line per key: dotted name, default, effect (:data:`EFFECTS`; unmarked = result) and help text."""
    effects = key_effects(schema, prefix)
    return "\n".join(f"  {name} = {default!r}  # [{effects.get(name) or RESULT}] {text}"
                     for name, default, text in config_keys(schema, prefix))


def help_keys(schema: type) -> list:
    """Every leaf key of config dataclass ``schema`` as :class:`ser_models.catalog.help.Key` rows (for help)."""

    effects = key_effects(schema)
    rows = []
    for name, default, text in config_keys(schema):
        value = to_dict(default) if hasattr(default, "__dataclass_fields__") else default
        rows.append(Key(name, "???" if isinstance(value, str) and value == "???" else _yaml_value(value),
                        effects.get(name) or RESULT, text))
    return rows


def _yaml_value(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if value == "" or value.strip() != value or ":" in value else value
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
