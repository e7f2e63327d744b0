"""NeMo JSONL manifests in and out: ``audio_filepath``, ``offset``, ``duration`` and a label field.

**In.** One JSON object per line. ``audio_filepath`` is the file (relative paths start from ``audio_root``,
default the manifest's folder); a line with ``offset`` is the segment ``[offset, offset + duration)`` seconds of
it, a line without is the whole file (NeMo's ``duration`` is then the file's length, which the pool measures
itself). The field named by ``label_field`` (default ``label``) is the label; ``text`` is the transcript;
``speaker``, ``lang`` / ``language``, ``recording``, ``channel`` and ``utt_id`` fill ours; any other field
becomes a column. A line without ``utt_id`` (``id_field``) gets an id from its file's path relative to
``audio_root`` without the extension, plus ``@<offset>`` when it has an offset (``calls/a@12.500``): the same
line always gets the same id, and a second line of the same span is refused as a duplicate.

**Out.** :func:`write_nemo` writes one line per row: ``audio_filepath``, ``offset`` (segments only),
``duration`` (seconds; a whole file's from its header), ``text``, the label under ``label_field`` and our
other columns under their names (``utt_id``, ``recording``, ``channel`` ...), which NeMo passes through.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ser_models import io
from ser_models.exceptions import ConfigError
from ser_models.formats.lhotse_manifest import read_items
from ser_models.formats.rows import (
    ImportReport,
    Row,
    audio_info,
    finish,
    json_objects,
    json_value,
    missing,
    number,
    read_text,
    resolve_path,
    text,
)

_TAKEN = ("audio_filepath", "offset", "duration", "text", "speaker", "lang", "language", "recording", "channel")


def _row(i: int, item: dict, base: str, label_field: str, id_field: str) -> Row:
    row = Row(index=i, transcript=text(item.get("text")), speaker=text(item.get("speaker")),
              language=text(item.get("language", item.get("lang"))), recording=text(item.get("recording")),
              label=text(item.get(label_field)))
    raw = text(item.get("audio_filepath"))
    row.path = resolve_path(raw, base)
    if "offset" in item:
        offset, duration = number(item.get("offset")), number(item.get("duration"))
        if offset is None or duration is None:
            row.refused = ("bad_offset", f"offset {item.get('offset')!r} and duration {item.get('duration')!r} "
                                         "must both be numbers (seconds)")
        else:
            row.start, row.end = offset, offset + duration
    channel = item.get("channel")
    if channel is not None:
        value = number(channel)
        if value is None or not value.is_integer() or value < -1:
            row.refused = row.refused or ("bad_channel", f"channel {channel!r} is not a channel number")
        else:
            row.channel = int(value)
    row.utt_id = text(item.get(id_field)) if id_field in item else _derived_id(raw, base, item)
    for key, value in item.items():
        if key not in _TAKEN and key not in (label_field, id_field):
            row.extra[key] = value
    return row


def _derived_id(raw: str | None, base: str, item: dict) -> str | None:
    if raw is None:
        return None
    rel = raw
    if os.path.isabs(raw) and io.is_local(base):
        rel = os.path.relpath(raw, base)
        rel = raw if rel.startswith("..") else rel
    stem = os.path.splitext(rel)[0]
    offset = number(item.get("offset"))
    return stem if "offset" not in item or offset is None else f"{stem}@{offset:.3f}"


def import_nemo(path: str, output: str, *, label_field: str = "label", id_field: str = "utt_id",
                labels: Sequence[str] = (), audio_root: str | None = None, check_files: bool = True,
                log: Callable[[str], None] = print) -> tuple[pd.DataFrame, ImportReport]:
    """Import a NeMo JSONL manifest (module docstring) into our segments manifest at ``output``.

    Args:
        path: the NeMo manifest (``.json`` / ``.jsonl``, one object per line; ``.gz`` too).
        output: our manifest to write (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``).
        label_field: the field holding the label.
        id_field: the field holding the clip's id, when there is one.
        labels: allowed labels (empty = any).
        audio_root: the folder relative ``audio_filepath`` values start from (default: the manifest's folder).
        check_files: refuse lines whose audio file does not exist.
        log: where the report goes.
    """
    items = read_items(path) if str(path).endswith((".jsonl", ".jsonl.gz")) else _json_lines(path)
    base = audio_root or str(io.storage_path(path).parent)
    rows = [_row(i, item, base, label_field, id_field) for i, item in enumerate(items)]
    notes = [] if any(r.label is not None for r in rows) else [
        f"no line has a {label_field!r} field: the manifest is unlabelled (name it with label_field=...)"]
    return finish(rows, source=str(path), fmt="nemo", output=output, kind="segments", labels=labels,
                  check_files=check_files, notes=notes, log=log)


def _json_lines(path: str) -> list[dict]:
    """NeMo writes JSON lines under a ``.json`` name: read them as lines."""
    return json_objects(read_text(path), path)


def write_nemo(rows: pd.DataFrame, output: str, *, label_field: str = "label",
               log: Callable[[str], None] = print) -> str:
    """Write ``rows`` (an export table) as a NeMo JSONL manifest at ``output`` (atomically).

    Raises:
        ConfigError: a row has no audio path.
    """
    if rows["path"].isna().any():
        bad = rows.loc[rows["path"].isna(), "utt_id"].head(3).tolist()
        raise ConfigError(f"rows {bad} have no audio path: NeMo's audio_filepath needs the file")
    lengths: dict[str, float] = {}
    lines = []
    for rec in rows.to_dict("records"):
        item: dict[str, Any] = {"audio_filepath": rec["path"]}
        if missing(rec.get("start")):
            if rec["path"] not in lengths:
                rate, frames, _ = audio_info(rec["path"])
                lengths[rec["path"]] = frames / rate
            item["duration"] = round(lengths[rec["path"]], 6)
        else:
            item["offset"] = float(rec["start"])
            item["duration"] = round(float(rec["end"]) - float(rec["start"]), 6)
        if not missing(rec.get("transcript")):
            item["text"] = rec["transcript"]
        if not missing(rec.get("label")):
            item[label_field] = rec["label"]
        for key, value in rec.items():
            if key in ("path", "start", "end", "transcript", "label", "duration") or missing(value):
                continue
            if key == "channel" and int(value) == -1:
                continue
            item[key] = json_value(value)
        lines.append(json.dumps(item, ensure_ascii=False, default=str))
    io.write_bytes_atomic(output, ("\n".join(lines) + "\n").encode())
    log(f"nemo: wrote {len(lines)} lines to {output}")
    return str(output)


def looks_like_nemo(items: Sequence[dict]) -> bool:
    """Whether a manifest's first objects are NeMo lines (they name ``audio_filepath``)."""
    return bool(items) and all("audio_filepath" in i for i in items[:5])


__all__ = ["import_nemo", "looks_like_nemo", "write_nemo"]
