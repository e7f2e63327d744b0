"""Pretrained encoders by name: ``model.encoder.source=smart-turn`` finds the encoder in a user cache, imported
once and verified by hash.

The named encoder is the Whisper-tiny encoder of Smart Turn v3.2, whose weights ship inside the ``pipecat-ai``
wheel on the Python package index (no model hub). On first use it is imported (:mod:`ser_models.encoders.
smart_turn`: the wheel fetched with pip and checked by sha256, its ONNX graph converted to a Hugging Face folder)
into the encoder cache; later runs reuse it after checking that the folder's model files still hash to what the
import recorded. The cache is, in order:

- ``$SER_ENCODER_CACHE`` (:data:`CACHE_ENV`): point it at shared storage (NFS, a mounted volume) so that every
  node of a cluster finds the same import, and set it in the job's runtime environment;
- ``$XDG_CACHE_HOME/ser-models/encoders``, else ``~/.cache/ser-models/encoders``.

Offline, with no wheel reachable, the import fails with an error that names ``ser-models import-encoder
smart-turn FOLDER --source WHEEL`` (import from a local wheel) and :data:`WHEEL_ENV` (a wheel the resolution
imports from). The name is resolved in the driver before a job starts (:func:`resolve_encoder_names`), so Ray
workers receive the folder's path; an encoder built from the name in a plain process resolves it the same way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
from pathlib import Path

from ser_models.encoders.config import EncoderConfig
from ser_models.exceptions import EncoderError
from ser_models.io import write_json_atomic

#: The names a source may give, each with the folder its import lives in under the cache.
PRETRAINED = {"smart-turn": "smart-turn-v3.2-whisper-tiny", "smart-turn-v3.2": "smart-turn-v3.2-whisper-tiny"}
#: Environment variable naming the encoder cache (shared storage for a cluster).
CACHE_ENV = "SER_ENCODER_CACHE"
#: Environment variable naming a local ``pipecat-ai`` wheel to import from instead of fetching it.
WHEEL_ENV = "SER_SMART_TURN_WHEEL"
#: The key ``import.json`` records the folder's content hash under (:func:`~ser_models.encoders.content_hash.hash_files`).
HASH_KEY = "model_sha256"

_verified: dict[str, str] = {}


def encoder_cache() -> Path:
    """The folder named encoders are imported into (:data:`CACHE_ENV`, else the XDG cache)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "ser-models", "encoders").absolute()


def is_pretrained_name(source: object) -> bool:
    return isinstance(source, str) and source in PRETRAINED


def pretrained_folder(name: str, *, quiet: bool = False) -> Path:
    """The verified import of pretrained encoder ``name``, importing it first when the cache lacks it.

    Args:
        name: one of :data:`PRETRAINED`.
        quiet: no progress lines.

    Returns:
        The Hugging Face folder (absolute).

    Raises:
        EncoderError: an unknown name, or the import failed (offline: the error names the command and the
            variable that import from a local wheel).
    """
    if name not in PRETRAINED:
        raise EncoderError(f"no pretrained encoder named {name!r}; known: {', '.join(PRETRAINED)}")
    folder = encoder_cache() / PRETRAINED[name]
    key = str(folder)
    if key in _verified:
        return folder
    recorded = _recorded_hash(folder)
    if recorded is not None and _hash(folder) == recorded:  # the common case, also on a read-only cache
        _verified[key] = recorded
        return folder
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        lock_path = folder.parent / f".{folder.name}.lock"
        lock = open(lock_path, "a")
        with contextlib.suppress(OSError):  # a cache shared by several users: each must be able to take it
            os.chmod(lock_path, 0o666)
    except OSError as exc:
        raise EncoderError(f"model.encoder.source={name}: the encoder cache {folder.parent} cannot be written "
                           f"({exc.strerror}) and holds no valid import; point {CACHE_ENV} at a writable folder or "
                           f"at one that holds the import") from None
    # processes on one machine (or nodes on shared storage) share the cache: one imports, the others wait
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        recorded = _verified_or_imported(name, folder, quiet)
    _verified[key] = recorded
    return folder


def _hash(folder: Path) -> str | None:
    from ser_models.encoders.content_hash import hash_files

    try:
        return hash_files(folder)
    except OSError:
        return None


def _verified_or_imported(name: str, folder: Path, quiet: bool) -> str:
    from ser_models.encoders.content_hash import hash_files
    from ser_models.encoders.smart_turn import EncoderImportError, import_smart_turn

    recorded = _recorded_hash(folder)
    if recorded is not None and hash_files(folder) == recorded:
        return recorded
    if recorded is None and _complete_import(folder):
        # an import made before imports recorded their hash (`ser-models import-encoder` into the cache, the
        # offline route): its graph's sha256 matches, so its hash is recorded now and checked from then on
        return record_hash(folder)
    wheel = os.environ.get(WHEEL_ENV) or None
    if not quiet:
        why = "not imported yet" if not (folder / "import.json").exists() else "its files no longer match the import"
        print(f"model.encoder.source={name}: importing the Smart Turn v3.2 Whisper-tiny encoder into {folder} "
              f"({why}; once per cache)", flush=True)
    try:
        import_smart_turn(folder, wheel, cache_dir=folder.parent, force=(folder / "import.json").exists(),
                          quiet=quiet)
    except EncoderImportError as exc:
        raise EncoderImportError(
            f"model.encoder.source={name}: {exc}. Without network access, import it from a local copy of the "
            f"wheel (pip download --no-deps pipecat-ai==1.14.0 elsewhere): `ser-models import-encoder smart-turn "
            f"{folder} --source pipecat_ai-1.14.0-py3-none-any.whl`, or set {WHEEL_ENV}=<the wheel>; or point "
            f"{CACHE_ENV} at a folder that holds the import") from None
    return record_hash(folder)


def _complete_import(folder: Path) -> bool:
    from ser_models.encoders.smart_turn import ONNX_SHA256

    try:
        stamp = json.loads((folder / "import.json").read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("onnx_sha256") == ONNX_SHA256 and (folder / "model.safetensors").is_file()


def _recorded_hash(folder: Path) -> str | None:
    try:
        return json.loads((folder / "import.json").read_text()).get(HASH_KEY)
    except (OSError, ValueError):
        return None


def record_hash(folder: Path) -> str:
    """Write the folder's content hash into its ``import.json`` (atomically) and return it."""
    from ser_models.encoders.content_hash import hash_files

    stamp = json.loads((folder / "import.json").read_text())
    stamp[HASH_KEY] = hash_files(folder)
    write_json_atomic(str(folder / "import.json"), stamp)
    return stamp[HASH_KEY]


#: Dict keys whose values name an encoder source: a plain key, a dotted override (``model.encoder.source``), or
#: a sweep's search key over encoders (its ``choice`` / ``grid`` values).
_NAMED_KEYS = ("encoder_source", "encoder.source", "teacher.source")


def _resolved(value):
    """``value`` with every pretrained name in it (a string, or inside lists and dicts: a search spec)
    replaced by its folder."""
    if is_pretrained_name(value):
        return str(pretrained_folder(value))
    if isinstance(value, list):
        return [_resolved(v) for v in value]
    if isinstance(value, dict):
        return {k: _resolved(v) for k, v in value.items()}
    return value


def resolve_encoder_names(cfg):
    """``cfg`` with every encoder source that names a pretrained encoder replaced by its verified folder, in
    place: a job config dataclass (its :class:`EncoderConfig` fields and ``encoder_source`` keys, nested
    configs included) or a plain dict of one (a sweep's base config: ``source`` under ``encoder`` or
    ``teacher``). The driver calls it before a job starts so that workers and trials get a path. Other values
    are left as they are.

    Returns:
        ``cfg`` itself.
    """
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key in ("encoder", "teacher") and isinstance(value, dict) and is_pretrained_name(value.get("source")):
                value["source"] = str(pretrained_folder(value["source"]))
            elif isinstance(key, str) and key.endswith(_NAMED_KEYS):  # `encoder_source`, dotted keys, a search
                cfg[key] = _resolved(value)
            elif isinstance(value, dict) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
                resolve_encoder_names(value)
        return cfg
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return cfg
    for f in dataclasses.fields(cfg):  # in place: every reference to the config sees the folder
        value = getattr(cfg, f.name)
        named = (f.name == "source" and isinstance(cfg, EncoderConfig)) or f.name == "encoder_source"
        if named and is_pretrained_name(value):
            setattr(cfg, f.name, str(pretrained_folder(value)))
        elif isinstance(value, dict) or (dataclasses.is_dataclass(value) and not isinstance(value, type)):
            resolve_encoder_names(value)
    return cfg
