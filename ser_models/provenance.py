"""What a run folder was made from, and the refusal to mix results of different configs in one folder.

Every job that resumes from its ``output_dir`` (``after``, ``finetune``, ``tapt``, ``sweep``, ...) records, on its
first start, the config that shapes its results in ``<output_dir>/run.json``: every key its schema marks
``effect=RESULT`` (``ser_models.config.field``; a key with no mark counts as one). A later start compares its own
config with it: keys marked ``SPEED`` (actor, worker and thread counts, batch sizes of Ray calls) or ``LOCATION``
(the pool's and the run's folders, cache folders) may differ; any other difference is refused with a
:class:`~ser_models.exceptions.ResumeMismatchError` naming each key with its recorded and new value, before Ray
starts, so a rerun never reuses ``scores.parquet``, ``selection.parquet`` or a checkpoint made under other
settings. ``tests/unit/test_config_keys.py`` keeps every key of every job classified.
A record written by an older version may lack a key that changes results now (one added since, or one that
version counted as speed-only, such as ``scaling.use_gpu``): the run is taken to have used the key's default.
A start at that default goes on with a log line; any other value is refused, naming the key, both values and
how to go on.
``config.yaml`` beside it keeps the first start's full config (later starts do not overwrite it).

A run's pool input is the pool's *lineage* (``Pool.lineage``), not its version: a pool that only grew (new
clips) or changed labels, splits or metadata since the run started keeps its lineage, so the run resumes (its
ledger and finished rounds stay valid; its next start sees the new clips). A pool whose existing clips' audio
or audio settings changed is rebuilt by ``prepare_pool`` under a new lineage, and the run is refused.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from typing import Any

from ser_models import io
from ser_models.config import key_default, speed_only_keys, strip_user_info, to_dict
from ser_models.exceptions import ConfigError, ResumeMismatchError
from ser_models.ownership import assert_claimed

RUN_FILE = "run.json"
RUN_FORMAT = 1

def flatten(cfg: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def result_keys(cfg: dict, speed_only: tuple[str, ...] = ()) -> dict[str, Any]:
    """The flattened config without the keys matching the ``speed_only`` fnmatch patterns."""
    return {k: v for k, v in flatten(cfg).items() if not any(fnmatch.fnmatchcase(k, p) for p in speed_only)}


def check_run(output_dir: str | os.PathLike, job: str, cfg: Any, *, inputs: dict[str, Any] | None = None,
              config_yaml: str | None = None, extra_speed_only: tuple[str, ...] = (), log=print) -> bool:
    """Record this run's provenance on its first start; refuse a later start that would change results.

    Args:
        output_dir: the job's run folder (local path or ``pyarrow.fs`` URI).
        job: the job's name (``jobs.after``); a folder is never shared between jobs.
        cfg: the job's config (a schema dataclass: its ``SPEED`` and ``LOCATION`` keys may change between
            starts), or a plain dict (only ``extra_speed_only`` may change).
        inputs: identities of what the run reads besides its config (``{"pool": pool.lineage}``: the same
            while the pool grows or is relabelled, new after a rebuild).
        config_yaml: the full config as YAML, written to ``config.yaml`` on the first start.
        extra_speed_only: more speed-only key patterns (fnmatch over dotted names) for this run.
        log: where the line goes that says a key the record lacks is assumed at its default.

    Returns:
        True when the folder was new (provenance written), False when an earlier start matched.

    Raises:
        ResumeMismatchError: (a ``ConfigError``) naming every result-changing key (old and new value) or input
            that differs, and what to do (a new ``output_dir``, or the old values); ``.changes`` lists them. A
            result key that the record, written by an older version, lacks is assumed at its schema default:
            a start at that value goes on (with a log line), any other value is refused, naming the key, this
            start's value, the default, and how to go on.
        ConfigError: the folder holds another job's run, or a record this version cannot read.
        ForeignFolderError: the job did not claim ``output_dir`` first (:func:`ser_models.ownership.claim_output`).
    """
    base = str(output_dir).rstrip("/")
    path = f"{base}/{RUN_FILE}"
    assert_claimed(base)  # the job claimed its folder first (ownership.claim_output): nothing lands in a foreign one
    # Through JSON once, so that tuples and lists (and numpy scalars) compare as the stored record does.
    speed_only = tuple(extra_speed_only)
    schema = type(cfg) if dataclasses.is_dataclass(cfg) else None
    if schema is not None:
        speed_only += speed_only_keys(schema)
        cfg = to_dict(cfg)
    # URLs without their user info (credentials come from the environment, never into a file)
    keys = strip_user_info(json.loads(json.dumps(result_keys(cfg, speed_only), default=str)))
    inputs = json.loads(json.dumps(dict(inputs or {}), default=str))
    if not io.exists(path):
        io.write_json_atomic(path, {"format": RUN_FORMAT, "job": job, "config": keys, "inputs": inputs})
        if config_yaml is not None:
            io.write_bytes_atomic(f"{base}/config.yaml", config_yaml.encode())
        return True
    try:
        stored = io.read_json(path)
        old_keys, old_inputs, old_job = strip_user_info(stored["config"]), stored.get("inputs", {}), stored["job"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path} is not a run record this version understands ({exc}); use a new output_dir") from exc
    if old_job != job:
        raise ConfigError(f"output_dir {base} holds a {old_job} run; {job} needs its own output_dir")
    # A key the record lacks was not recorded by the older version that wrote it: added since, or counted as
    # speed-only then (scaling.use_gpu, scaling.num_workers). Its value in that run is not known; the schema's
    # default stands in for it.
    unrecorded = sorted(set(keys) - set(old_keys))
    assumed = [k for k in unrecorded if schema is not None and _same(key_default(schema, k), keys[k])]
    unknown = [k for k in unrecorded if k not in assumed]
    changes = [(k, old_keys.get(k, "<unset>"), keys.get(k, "<unset>"))
               for k in sorted(set(old_keys) | set(keys) - set(unrecorded))
               if old_keys.get(k, _MISSING) != keys.get(k, _MISSING)]
    diffs = [f"{k}: {old!r} -> {new!r}" for k, old, new in changes]
    diffs += [f"input {k}: {old_inputs.get(k)!r} -> {inputs.get(k)!r}" + (
              " (the pool was rebuilt: its clips' audio or audio settings changed, or it is another pool; a pool "
              "that only grew or changed labels keeps its lineage)" if k == "pool" else "")
              for k in sorted(set(old_inputs) | set(inputs)) if old_inputs.get(k) != inputs.get(k)]
    changes += [(f"input {k}", old_inputs.get(k), inputs.get(k))
                for k in sorted(set(old_inputs) | set(inputs)) if old_inputs.get(k) != inputs.get(k)]
    changes += [(k, _NOT_RECORDED, keys[k]) for k in unknown]
    if diffs or unknown:
        parts = []
        if diffs:
            parts.append(
                f"output_dir {base} was started with other result-changing settings ({path}); resuming would mix "
                f"artifacts of two configs. Differences: " + "; ".join(diffs)
                + ". Use a new output_dir, or rerun with the recorded values (speed-only and location keys such as "
                "active.scorer.num_actors or pool_dir may change freely)")
        if unknown:
            parts.append(_unrecorded_message(base, path, schema, {k: keys[k] for k in unknown}))
        raise ResumeMismatchError(". ".join(parts), changes)
    if assumed:
        log(f"{path} was written by an older version of the platform that did not record "
            + ", ".join(f"{k} (assumed to be its default, {keys[k]!r}, which this start also uses)" for k in assumed)
            + "; if that run used other values, resume it with those or use a new output_dir")
    return False


_MISSING = object()
#: The "old value" of a key an older version did not record, in :attr:`ResumeMismatchError.changes`.
_NOT_RECORDED = "<not recorded>"


def _unrecorded_message(base: str, path: str, schema: type | None, values: dict[str, Any]) -> str:
    """Why a start is refused whose result keys ``values`` (name: this start's value) an older record lacks."""
    names = ", ".join(values)
    text = (f"output_dir {base} was written by an older version of the platform that did not record {names} in "
            f"{path} (keys that change results now). ")
    fixes = []
    for key, value in values.items():
        default = key_default(schema, key) if schema is not None else dataclasses.MISSING
        shown = json.dumps(value)
        if default is dataclasses.MISSING:
            text += f"This start sets {key}={shown}; what that run used is not known. "
        else:
            old = json.dumps(json.loads(json.dumps(default, default=str)))
            text += (f"That run is taken to have used the default, {key}={old}; this start sets {key}={shown}. ")
            fixes.append(f"{key}={old}")
    how = []
    if fixes:
        how.append("rerun with " + " ".join(fixes) + " to resume it")
    how.append("if you know the first start used this start's values, record them by adding "
               + ", ".join(f'"{k}": {json.dumps(v)}' for k, v in values.items())
               + f' under "config" in {path} and rerun')
    how.append("or use a new output_dir")
    return text + "To go on: " + "; ".join(how)


def _same(default: Any, value: Any) -> bool:
    """A schema default equals a recorded (JSON-normalised) value."""
    if default is dataclasses.MISSING:
        return False
    return json.loads(json.dumps(default, default=str)) == value

__all__ = ["RUN_FILE", "check_run", "flatten", "result_keys"]
