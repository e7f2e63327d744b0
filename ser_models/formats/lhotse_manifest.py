"""Lhotse manifests in and out: recordings + supervisions, or cuts, to our manifests; our rows to supervisions.

**In.** A Lhotse ``RecordingSet`` says what audio exists (``sources``: files and the channels each holds,
``sampling_rate``, ``num_samples``, ``duration``); a ``SupervisionSet`` says what happens when (``recording_id``,
``start``, ``duration`` in seconds, ``channel``, ``speaker``, ``language``, ``text``, ``gender`` and free
``custom`` fields such as an emotion); a ``CutSet`` holds views of recordings (``start``, ``duration``,
``channel``) with the supervisions inside them (their times relative to the cut). Files are read as Lhotse
writes them (``to_file``): JSON lines (``.jsonl``, ``.jsonl.gz``), one JSON list (``.json``, ``.json.gz``) or
YAML (``.yaml``, ``.yml``; read whole, so JSON lines suit large sets), local or at a URI, with no need for the
``lhotse`` package.

* ``kind=segments``: one row per supervision (or per cut), ``utt_id`` = its id, ``recording``, ``start`` / ``end``
  in seconds of the source file, ``channel`` within that file (a recording kept as one file per channel gives
  each channel's own file, channel 0; a supervision on all channels of a one-file recording gives -1, the
  channels averaged), ``speaker``, ``language``, ``transcript`` (``text``), ``label`` (the ``custom`` field
  named by ``label_field``); ``custom`` fields named like our columns (``split``, ``group``, ``corpus``,
  ``arousal``, ``valence``, ``dominance``) fill them, the other ones and ``gender`` become columns of their own.
  A supervision that spans its whole recording becomes a whole-file clip (``start`` / ``end`` empty). A cut
  takes its fields from the supervision covering most of it; mixed and padding cuts are refused.
* ``kind=recordings``: one row per recording (for ``jobs.segment``), its one speaker when all its supervisions
  name the same one; labelled supervisions are also written as ``<output stem>.annotations<ext>`` (recording,
  channel, start, end, label), which ``jobs.segment annotations=...`` lays onto the segments it finds.

Relative source paths are taken from ``audio_root`` (default: the manifest's folder). Sources Lhotse keeps in
memory, behind a shell command or at an ``http`` URL, and recordings with transforms other than resampling
(speed or volume perturbation), are refused (``unsupported_source``).

**Out.** :func:`write_lhotse` writes ``recordings.jsonl`` and ``supervisions.jsonl`` into a folder: each row a
supervision (``custom`` holds the label under ``label_field`` and the other columns), each distinct audio file
a recording (its rate, length and channel count read from the file's header).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import yaml

from ser_models import io
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.formats.rows import (
    ImportReport,
    Row,
    audio_info,
    finish,
    json_objects,
    json_value,
    missing,
    read_text,
    resolve_path,
    text,
    write_table,
)

CUT_TYPES = ("MonoCut", "MultiCut")
#: The files :func:`write_lhotse` writes into its folder.
LHOTSE_FILES = {"recordings": "recordings.jsonl", "supervisions": "supervisions.jsonl"}
_READABLE_URIS = ("s3://", "gs://", "gcs://", "file://", "hdfs://")


def read_items(path: str) -> list[dict]:
    """The objects of a Lhotse manifest file (JSON lines, one JSON list, or YAML; gunzipped when gzip).

    Raises:
        ManifestError: naming the file and the line that is not a JSON object (or the YAML error).
    """
    src = io.storage_path(path)
    if not io.exists(src):
        raise ManifestError(f"Lhotse manifest not found: {src}")
    body = read_text(src)
    if is_yaml(src.name):

        try:
            items = yaml.safe_load(body)
        except yaml.YAMLError as exc:
            raise ManifestError(f"{src}: invalid YAML: {exc}") from None
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ManifestError(f"{src}: a Lhotse .yaml manifest holds one list of objects")
        return items
    if ".jsonl" not in src.name:
        try:
            items = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{src}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        items = list(items.values()) if isinstance(items, dict) else items
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise ManifestError(f"{src}: a Lhotse .json manifest holds one list of objects")
        return items
    return json_objects(body, src)


def is_yaml(name: str) -> bool:
    """Whether a Lhotse manifest's file name says YAML (``.yaml`` / ``.yml``, gzipped or not)."""
    return name.removesuffix(".gz").endswith((".yaml", ".yml"))


def item_kind(item: dict) -> str:
    """``cut``, ``supervision`` or ``recording``: what a Lhotse manifest line is, from its keys."""
    if "supervisions" in item or str(item.get("type", "")).endswith("Cut"):
        return "cut"
    if "recording_id" in item:
        return "supervision"
    if "sources" in item:
        return "recording"
    return "unknown"


def looks_like_lhotse(items: Sequence[dict]) -> bool:
    """Whether a manifest's first objects are Lhotse recordings, supervisions or cuts."""
    return bool(items) and all(item_kind(i) != "unknown" for i in items[:5])


def _source(rec: dict, channel: Any, base: str) -> tuple[str | None, int, tuple[str, str] | None]:
    """``(path, channel within that file, refusal)`` of a recording's channel (an int or a list of them)."""
    sources = rec.get("sources") or []
    transforms = [t.get("name") if isinstance(t, dict) else str(t) for t in rec.get("transforms") or []]
    odd = [t for t in transforms if t != "Resample"]
    if odd:
        return None, -1, ("unsupported_source", f"recording {rec.get('id')!r} has transforms {odd}: apply them to "
                                                "the audio first (resampling is done anyway)")
    if isinstance(channel, list) and len(channel) == 1:
        channel = channel[0]
    if isinstance(channel, list):
        if len(sources) == 1 and sorted(channel) == sorted(sources[0].get("channels") or []):
            src, in_file = sources[0], -1
        else:
            return None, -1, ("bad_channel", f"channels {channel}: only one channel or all channels of one file "
                                             "(averaged) can be read")
    else:
        src = next((s for s in sources if channel in (s.get("channels") or [])), None)
        if src is None:
            return None, -1, ("bad_channel", f"recording {rec.get('id')!r} has no channel {channel}")
        chans = src.get("channels") or []
        in_file = chans.index(channel) if len(chans) > 1 else 0
    kind, where = src.get("type"), src.get("source")
    if kind == "url" and isinstance(where, str) and where.startswith(_READABLE_URIS):
        return resolve_path(where, base), in_file, None
    if kind != "file" or not isinstance(where, str):
        return None, -1, ("unsupported_source", f"recording {rec.get('id')!r}: a {kind!r} source cannot be read "
                                                "here; write the audio to files (or s3:// / gs:// URIs)")
    return resolve_path(where, base), in_file, None


def _fields(row: Row, sup: dict | None, custom: dict, label_field: str) -> None:
    """Copy a supervision's speaker, language, text, gender and custom fields into ``row``."""
    if sup is not None:
        row.speaker = text(sup.get("speaker"))
        row.language = text(sup.get("language"))
        row.transcript = text(sup.get("text"))
        if sup.get("gender") is not None:
            row.extra["gender"] = sup["gender"]
    for key, value in custom.items():
        if key == label_field:
            row.label = text(value)
        elif key == "language":
            row.language = text(value)
        else:
            row.extra[key] = value


def _span(row: Row, rec: dict, start: float, duration: float) -> None:
    rate = float(rec.get("sampling_rate") or 16000)
    total = float(rec.get("duration") or math.nan)
    row.duration = total if math.isfinite(total) else None
    if row.duration is not None and abs(start) * rate < 0.5 and abs(start + duration - total) * rate < 0.5:
        return  # the whole recording: a whole-file clip
    row.start, row.end = float(start), float(start) + float(duration)


def _supervision_row(i: int, sup: dict, recs: dict[str, dict], base: str, label_field: str) -> Row:
    row = Row(index=i, utt_id=text(sup.get("id")), recording=text(sup.get("recording_id")))
    rec = recs.get(row.recording or "")
    if rec is None:
        row.refused = ("missing_file", f"recording {row.recording!r} is not in the recordings manifest")
        return row
    row.path, row.channel, row.refused = _source(rec, sup.get("channel", 0), base)
    _fields(row, sup, dict(sup.get("custom") or {}), label_field)
    _span(row, rec, float(sup.get("start", math.nan)), float(sup.get("duration", math.nan)))
    return row


def _cut_row(i: int, cut: dict, base: str, label_field: str) -> Row:
    row = Row(index=i, utt_id=text(cut.get("id")))
    kind, rec = cut.get("type", "MonoCut"), cut.get("recording")
    if kind not in CUT_TYPES:
        row.refused = ("unsupported_cut", f"a {kind}: mix or pad the audio into files first")
        return row
    if not isinstance(rec, dict):
        row.refused = ("unsupported_source", "the cut has no recording (features only)")
        return row
    row.recording = text(rec.get("id"))
    row.path, row.channel, row.refused = _source(rec, cut.get("channel", 0), base)
    length = float(cut.get("duration", math.nan))
    sups = cut.get("supervisions") or []

    def covered(s: dict) -> float:  # seconds of the cut a supervision covers (its times are the cut's)
        return min(length, s["start"] + s["duration"]) - max(0.0, s["start"])

    best = max(sups, key=covered) if sups else None
    _fields(row, best, {**(best.get("custom") or {} if best else {}), **(cut.get("custom") or {})}, label_field)
    _span(row, rec, float(cut.get("start", math.nan)), length)
    return row


def _recording_row(i: int, rec: dict, base: str, speakers: dict[str, set]) -> Row:
    row = Row(index=i, recording=text(rec.get("id")))
    sources = rec.get("sources") or []
    if len(sources) != 1:
        row.refused = ("unsupported_source", f"{len(sources)} source files: jobs.segment reads one file per "
                                             "recording; import as kind=segments")
        return row
    chans = sources[0].get("channels") or [0]
    row.path, _, row.refused = _source(rec, chans if len(chans) > 1 else chans[0], base)
    found = speakers.get(row.recording or "", set())
    row.speaker = next(iter(found)) if len(found) == 1 else None
    return row


def import_lhotse(path: str, output: str, *, kind: str = "segments", label_field: str = "emotion",
                  recordings: str | None = None, labels: Sequence[str] = (), audio_root: str | None = None,
                  check_files: bool = True, log: Callable[[str], None] = print) -> tuple[pd.DataFrame, ImportReport]:
    """Import a Lhotse manifest (module docstring) into our segments or recordings manifest at ``output``.

    Args:
        path: a ``CutSet``, ``SupervisionSet`` or ``RecordingSet`` file.
        output: our manifest to write (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``).
        kind: ``segments`` (for ``jobs.prepare_pool``) or ``recordings`` (for ``jobs.segment``).
        label_field: the supervision ``custom`` field that holds the label.
        recordings: the ``RecordingSet`` file that goes with a ``SupervisionSet`` (default: the supervisions
            file's name with ``supervisions`` replaced by ``recordings``, when it exists).
        labels: allowed labels (empty = any); rows with another are refused (``unknown_label``).
        audio_root: the folder relative audio paths start from (default: the manifest's folder).
        check_files: refuse rows whose audio file does not exist (one stat per distinct file).
        log: where the report goes.

    Returns:
        ``(manifest, report)``.
    """
    items = read_items(path)
    kinds = {item_kind(i) for i in items}
    if not items or "unknown" in kinds or len(kinds) > 1:
        raise ManifestError(f"{path}: not a Lhotse manifest of one kind (found {sorted(kinds) or 'no items'}); "
                            "give a CutSet, SupervisionSet or RecordingSet file")
    what = kinds.pop()
    base = audio_root or str(io.storage_path(path).parent)
    sups: list[dict] = []
    if what == "supervision":
        sups = items
        recs_file = recordings or _sibling(path)
        if not recs_file:
            raise ConfigError(f"{path} holds supervisions: give their RecordingSet file as recordings=...")
        rec_items = read_items(recs_file)
        if not looks_like_lhotse(rec_items) or item_kind(rec_items[0]) != "recording":
            raise ManifestError(f"recordings={recs_file}: not a Lhotse RecordingSet file")
    elif what == "recording":
        rec_items = items
    else:
        rec_items = list({c["recording"]["id"]: c["recording"] for c in items
                          if isinstance(c.get("recording"), dict) and "id" in c["recording"]}.values())
    recs = {r.get("id"): r for r in rec_items}
    notes = []
    if kind == "recordings":
        speakers: dict[str, set] = {}
        for s in sups:
            if s.get("speaker") is not None:
                speakers.setdefault(s.get("recording_id"), set()).add(s["speaker"])
        rows = [_recording_row(i, r, base, speakers) for i, r in enumerate(rec_items)]
        annotated = [_supervision_row(i, s, recs, base, label_field) for i, s in enumerate(sups)]
        annotated = [r for r in annotated if r.label is not None and r.refused is None and not math.isnan(r.start)]

        def annotations(taken: list[Row]) -> list[str]:
            return _write_annotations(annotated, {r.recording for r in taken}, output)

        source = f"{path} ({len(rec_items)} recordings)"
        return finish(rows, source=source, fmt="lhotse", output=output, kind=kind, labels=labels,
                      check_files=check_files, notes=notes, log=log, extra_files=annotations)
    if what == "supervision":
        rows = [_supervision_row(i, s, recs, base, label_field) for i, s in enumerate(sups)]
    elif what == "cut":
        rows = [_cut_row(i, c, base, label_field) for i, c in enumerate(items)]
    else:
        rows = [Row(index=i, utt_id=text(r.get("id")), recording=text(r.get("id"))) for i, r in enumerate(items)]
        for row, rec in zip(rows, items):
            row.path, row.channel, row.refused = _source(rec, [*{c for s in rec.get("sources") or []
                                                                    for c in s.get("channels") or []}] or 0, base)
    if what != "recording" and all(r.label is None for r in rows):
        notes.append(f"no row has a custom field {label_field!r}: the manifest is unlabelled "
                     "(name the label's field with label_field=...)")
    return finish(rows, source=str(path), fmt="lhotse", output=output, kind=kind, labels=labels,
                  check_files=check_files, notes=notes, log=log)


def _sibling(path: str) -> str | None:
    name = os.path.basename(str(path))
    if "supervisions" not in name:
        return None
    candidate = io.join(str(io.storage_path(path).parent), name.replace("supervisions", "recordings"))
    return candidate if io.exists(candidate) else None


def _write_annotations(rows: list[Row], recordings: set, output: str) -> list[str]:
    """``<output stem>.annotations<ext>``: the labelled supervisions of the taken recordings, for jobs.segment."""
    keep = [r for r in rows if r.recording in recordings]
    if not keep:
        return []
    stem, ext = os.path.splitext(str(output))
    target = f"{stem}.annotations{ext}"
    frame = pd.DataFrame({"recording": [r.recording for r in keep],
                          "channel": pd.Series([r.channel for r in keep], dtype="int64"),
                          "start": [r.start for r in keep], "end": [r.end for r in keep],
                          "label": pd.Series([r.label for r in keep], dtype=object)})
    write_table(frame, target)
    return [f"wrote {len(keep)} labelled supervisions to {target}: pass annotations={target} to jobs.segment"]


def write_lhotse(rows: pd.DataFrame, folder: str, *, label_field: str = "emotion",
                 log: Callable[[str], None] = print) -> dict[str, str]:
    """Write ``recordings.jsonl`` and ``supervisions.jsonl`` (Lhotse's ``to_file`` layout) into ``folder``.

    Args:
        rows: an export table (:func:`ser_models.formats.sources.export_table`): ``utt_id``, ``path``,
            ``recording``, ``channel``, ``start`` / ``end`` (NaN = the whole file), ``label`` and other columns.
        folder: where to write (local or URI); both files are replaced atomically.
        label_field: the ``custom`` key the label goes under.

    Returns:
        ``{"recordings": path, "supervisions": path}``.

    Raises:
        ConfigError: a row has no audio path (a recording needs its file).
    """
    if rows["path"].isna().any():
        bad = rows.loc[rows["path"].isna(), "utt_id"].head(3).tolist()
        raise ConfigError(f"rows {bad} have no audio path: Lhotse recordings need their files")
    rec_ids = recording_ids(rows)
    recs, infos = [], {}
    for path, rec_id in dict(zip(rows["path"], rec_ids)).items():
        rate, frames, chans = infos[path] = audio_info(path)
        recs.append({"id": rec_id, "sources": [{"type": "file", "channels": list(range(chans)), "source": path}],
                     "sampling_rate": rate, "num_samples": frames, "duration": frames / rate,
                     "channel_ids": list(range(chans))})
    core = {"utt_id", "path", "recording", "channel", "start", "end", "label", "speaker", "language", "transcript"}
    sups = []
    for rec_id, rec in zip(rec_ids, rows.to_dict("records")):
        rate, frames, chans = infos[rec["path"]]
        start = 0.0 if pd.isna(rec["start"]) else float(rec["start"])
        end = frames / rate if pd.isna(rec["end"]) else float(rec["end"])
        channel = int(rec.get("channel", -1))
        sup = {"id": rec["utt_id"], "recording_id": rec_id, "start": start, "duration": round(end - start, 6),
               "channel": list(range(chans)) if channel == -1 and chans > 1 else max(channel, 0)}
        for ours, theirs in (("transcript", "text"), ("language", "language"), ("speaker", "speaker")):
            if not missing(rec.get(ours)):
                sup[theirs] = str(rec[ours])
        custom = {k: json_value(v) for k, v in rec.items() if k not in core and not missing(v)}
        if not missing(rec.get("label")):
            custom[label_field] = rec["label"]
        if custom:
            sup["custom"] = custom
        sups.append(sup)
    out = {kind: io.join(folder, name) for kind, name in LHOTSE_FILES.items()}
    io.write_bytes_atomic(out["recordings"], _jsonl(recs))
    io.write_bytes_atomic(out["supervisions"], _jsonl(sups))
    log(f"lhotse: wrote {len(sups)} supervisions of {len(recs)} recordings to {out['supervisions']} and "
        f"{out['recordings']}")
    return out


def recording_ids(rows: pd.DataFrame) -> list[str]:
    """Each row's recording id: its ``recording``; else, for a file only this row uses, its ``utt_id``; else the
    file's path (rows of one file share a recording)."""
    per_path = rows["path"].value_counts()
    rec = rows["recording"] if "recording" in rows.columns else pd.Series([None] * len(rows))
    return [r if not missing(r) else (u if per_path[p] == 1 else p)
            for r, u, p in zip(rec, rows["utt_id"], rows["path"])]


def _jsonl(items: list[dict]) -> bytes:
    return ("".join(json.dumps(i, ensure_ascii=False, default=str) + "\n" for i in items)).encode()


__all__ = ["LHOTSE_FILES", "import_lhotse", "item_kind", "looks_like_lhotse", "read_items", "recording_ids", "write_lhotse"]
