"""Hugging Face ``datasets`` in and out: a dataset saved to disk, or its Parquet files, with an ``Audio`` column.

**In.** Read with pyarrow from the files ``datasets`` writes, without the ``datasets`` package: a
``save_to_disk`` folder (``state.json`` + ``data-*.arrow``; a ``DatasetDict`` folder with one sub-folder per
split), a folder of Parquet files (``data/train-00000-of-00001.parquet`` ...: the split is the file name's
first word) or one Parquet file. The column types come from the features ``datasets`` stores beside the data
(``dataset_info.json``, or the Parquet schema's ``huggingface`` metadata).

* Audio: the ``Audio`` column (or ``audio_field``) is a ``{bytes, path}`` struct. A row with a ``path`` and no
  bytes is followed (relative paths start from the dataset's folder). A row with bytes embedded (what
  ``save_to_disk`` and ``push_to_hub`` write) is written once, unchanged, to ``audio_dir/<sha256>.<ext>``:
  our pool builder decodes files, and a content-addressed name means a rerun or a second copy of the same
  audio writes nothing new. The batches are read one at a time, so the bytes of the whole dataset are never
  held at once. ``audio_dir`` is an output: it may not overlap the dataset, and it is claimed (marked as kind
  ``audio``, locked) before its first clip, unless a job's claim covers it already.
* Label: ``label_field`` (default ``label``). A ``ClassLabel`` maps its index to the class name (``-1`` means
  unlabelled; any other index outside the names is refused as ``unknown_label``); text is taken as it is.
* Splits: ``train`` / ``validation`` (or ``valid``, ``dev``) / ``test`` become ``train`` / ``dev`` / ``test``;
  other split names are kept in a ``hf_split`` column and leave ``split`` empty.
* Ids: ``id_field`` when given, else the first of ``utt_id``, ``id``, ``key``, ``file_id`` the dataset has,
  else ``<split>-<row number>`` (``train-0000042``: the same file order gives the same ids).
* Other columns: ``speaker`` / ``speaker_id``, ``text`` / ``sentence`` / ``transcription`` / ``transcript``,
  ``language`` / ``locale``, and our own ``start``, ``end``, ``channel``, ``recording``, ``group``, ``corpus``,
  ``arousal`` / ``valence`` / ``dominance`` fill ours; other scalar columns are copied; list and struct
  columns are left out (named in the report).

**Out.** :func:`write_hf` writes a folder that ``datasets.load_dataset(folder)`` reads:
``data/<split>-00000-of-00001.parquet`` per split (``train``, ``validation``, ``test``), with the audio by path,
the label as a ``ClassLabel`` and our other columns as values.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ser_models import io
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.formats.rows import ImportReport, Row, finish, json_value, missing, number, resolve_path, text
from ser_models.locks import held_lock_for
from ser_models.ownership import check_apart, deferred_claim

SPLIT_NAMES = {"train": "train", "validation": "dev", "valid": "dev", "dev": "dev", "test": "test"}
OUR_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
ID_FIELDS = ("utt_id", "id", "key", "file_id")
_ALIASES = {"speaker": ("speaker", "speaker_id"), "transcript": ("transcript", "text", "sentence", "transcription"),
            "language": ("language", "locale")}
_OURS = ("start", "end", "channel", "recording", "group", "corpus", "arousal", "valence", "dominance", "split")
_MAGIC = ((b"RIFF", ".wav"), (b"fLaC", ".flac"), (b"OggS", ".ogg"), (b"ID3", ".mp3"), (b"\xff\xfb", ".mp3"))
BATCH_ROWS = 4096


def _parts(path: str) -> tuple[list[tuple[str | None, str, str]], dict]:
    """``([(split, file, "arrow" | "parquet")], features)`` of a dataset folder or Parquet file."""
    src = str(io.storage_path(path))
    if src.endswith(".parquet"):
        return [(_split_of(os.path.basename(src)), src, "parquet")], _parquet_features(src)
    names = io.list_dir(src)
    if not names:
        raise ManifestError(f"{src}: no Hugging Face dataset here (an empty or missing folder)")
    if "dataset_dict.json" in names:
        splits = io.read_json(io.join(src, "dataset_dict.json")).get("splits", [])
        parts, features = [], {}
        for split in splits:
            sub, feats = _parts(io.join(src, split))
            parts += [(split, f, k) for _, f, k in sub]
            features = features or feats
        return parts, features
    if "state.json" in names:
        state = io.read_json(io.join(src, "state.json"))
        info = io.read_json(io.join(src, "dataset_info.json")) if "dataset_info.json" in names else {}
        files = [io.join(src, f["filename"]) for f in state.get("_data_files", [])]
        return [(state.get("_split"), f, "arrow") for f in files], info.get("features") or {}
    files = [f for f in io.list_files(src) if f.endswith(".parquet")]
    if not files:
        raise ManifestError(f"{src}: neither a save_to_disk folder (state.json, dataset_dict.json) nor Parquet files")
    full = [io.join(src, f) for f in files]
    return [(_split_of(os.path.basename(f)), f, "parquet") for f in full], _parquet_features(full[0])


def _split_of(name: str) -> str | None:
    word = name.split("-")[0].split(".")[0].lower()
    return word if word in SPLIT_NAMES or word in ("train", "test") else None


def _parquet_features(file: str) -> dict:
    fs, p = io.filesystem(file)
    meta = pq.read_schema(p, filesystem=fs).metadata or {}
    raw = meta.get(b"huggingface")
    return (json.loads(raw).get("info", {}).get("features") or {}) if raw else {}


def _batches(file: str, kind: str, columns: list[str]) -> Iterator[pa.RecordBatch]:
    fs, p = io.filesystem(file)
    with fs.open_input_file(p) as fh:
        if kind == "parquet":
            yield from pq.ParquetFile(fh).iter_batches(batch_size=BATCH_ROWS, columns=columns)
            return
        reader = pa.ipc.open_stream(fh)
        for batch in reader:
            yield batch.select(columns)


def _schema(file: str, kind: str) -> pa.Schema:
    fs, p = io.filesystem(file)
    if kind == "parquet":
        return pq.read_schema(p, filesystem=fs)
    with fs.open_input_file(p) as fh:
        return pa.ipc.open_stream(fh).schema


def _suffix(path: str | None, data: bytes) -> str:
    ext = os.path.splitext(path or "")[1].lower()
    if ext and ext[1:].isalnum() and len(ext) <= 6:
        return ext
    return next((e for magic, e in _MAGIC if data.startswith(magic)), ".audio")


def _store(data: bytes, path: str | None, audio_dir: str, written: dict) -> str:
    """Write embedded audio once under its content hash; return the file."""
    digest = hashlib.sha256(data).hexdigest()
    if digest not in written:
        target = io.join(audio_dir, f"{digest[:32]}{_suffix(path, data)}")
        if not io.exists(target):
            io.write_bytes_atomic(target, data)
        written[digest] = target
    return written[digest]


def import_hf(path: str, output: str, *, label_field: str = "label", id_field: str = "", audio_field: str = "",
              audio_dir: str = "", labels: Sequence[str] = (), check_files: bool = True,
              log: Callable[[str], None] = print) -> tuple[pd.DataFrame, ImportReport]:
    """Import a Hugging Face dataset (module docstring) into our segments manifest at ``output``.

    Args:
        path: a ``save_to_disk`` folder (a ``Dataset`` or a ``DatasetDict``), a folder of Parquet files or one.
        output: our manifest to write.
        label_field: the label column (a ``ClassLabel`` or text).
        id_field: the id column ('' = the first of :data:`ID_FIELDS` present, else row numbers).
        audio_field: the audio column ('' = the one ``Audio`` feature).
        audio_dir: where embedded audio bytes are written once (needed only when there are some).
        labels: allowed labels (empty = any).
        check_files: refuse rows whose audio file does not exist.
        log: where the report goes.

    Raises:
        ManifestError: no audio column, or the label column missing.
        ConfigError: bytes are embedded and ``audio_dir`` is not set.
    """
    parts, features = _parts(path)
    schema = _schema(parts[0][1], parts[0][2])
    audio = audio_field or next((k for k, v in features.items() if isinstance(v, dict) and v.get("_type") == "Audio"),
                                "")
    if not audio or audio not in schema.names:
        raise ManifestError(f"{path}: no Audio column (columns {schema.names}); name it with audio_field=...")
    names = _class_names(features.get(label_field))
    if label_field not in schema.names:
        raise ManifestError(f"{path}: no label column {label_field!r} (columns {schema.names}); name it with "
                            "label_field=...")
    id_col = id_field or next((c for c in ID_FIELDS if c in schema.names), "")
    if id_field and id_field not in schema.names:
        raise ManifestError(f"{path}: no id column {id_field!r} (columns {schema.names})")
    scalar = [f.name for f in schema if not (pa.types.is_nested(f.type) or pa.types.is_binary(f.type)
                                              or pa.types.is_large_binary(f.type))]
    skipped = [f.name for f in schema if f.name not in scalar and f.name != audio]
    base = str(io.storage_path(path)) if not str(path).endswith(".parquet") else str(io.storage_path(path).parent)
    with _audio_claim(audio_dir, path, log) as claim_audio:
        rows, written, embedded = _rows(parts, audio, scalar, label_field, names, id_col, base, audio_dir,
                                        claim_audio, path)
    notes = []
    if embedded:
        notes.append(f"{embedded} clips had their audio embedded: written once to {audio_dir} "
                     f"({len(written)} distinct files, named by content)")
    if skipped:
        notes.append(f"columns left out (lists, structs or bytes): {skipped}")
    return finish(rows, source=str(path), fmt="hf", output=output, kind="segments", labels=labels,
                  check_files=check_files, notes=notes, log=log)


@contextmanager
def _audio_claim(audio_dir: str, source: str, log: Callable[[str], None]):
    """``with _audio_claim(audio_dir, path, log) as claim:``: ``audio_dir`` is an output like any other, refused
    now if it overlaps the dataset or is not an audio folder of ours (nothing written), claimed by ``claim()``
    before the first clip is written and locked until the block ends. Inside a folder this process has claimed
    already (a job's ``imported/audio``), the job's claim covers it."""
    if not audio_dir:
        yield lambda: None
        return
    check_apart(audio_dir, {"input": source}, key="audio_dir")
    if held_lock_for(audio_dir) is not None:
        yield lambda: None
        return
    with deferred_claim(audio_dir, "audio", inputs={"input": source}, key="audio_dir", recognise=_earlier_audio,
                        what="audio_dir", log=log) as claim:
        yield claim


_CONTENT_NAME = re.compile(r"([0-9a-f]{32})(\.[a-z0-9]{1,6})")


def _earlier_audio(folder: str, names: list[str]) -> list[str] | None:
    """An audio folder an earlier version wrote (no marker), recognised by content: only files named by their
    content (``<first 32 hex digits of the SHA-256>.<ext>``) whose bytes hash to that name."""
    for name in names:
        match = _CONTENT_NAME.fullmatch(name)
        target = io.join(folder, name)
        if match is None or io.is_link(target):
            return None
        try:
            if hashlib.sha256(io.read_bytes(target)).hexdigest()[:32] != match.group(1):
                return None
        except OSError:  # a folder of that name, or unreadable
            return None
    return []


def _rows(parts, audio: str, scalar: list[str], label_field: str, names, id_col: str, base: str, audio_dir: str,
          claim_audio: Callable[[], object], path: str) -> tuple[list[Row], dict[str, str], int]:
    """The dataset's rows, the embedded clips written (``{sha256: file}``) and how many rows had one."""
    rows: list[Row] = []
    written: dict[str, str] = {}
    embedded = 0
    for split, file, kind in parts:
        ours = SPLIT_NAMES.get((split or "").lower())
        for batch in _batches(file, kind, [audio, *scalar]):
            cols = {c: batch.column(c).to_pylist() for c in scalar}
            cells = batch.column(audio)
            blobs = cells.field("bytes").to_pylist() if "bytes" in [f.name for f in cells.type] else [None] * len(batch)
            paths = cells.field("path").to_pylist()
            for j in range(len(batch)):
                row = Row(index=len(rows))
                values = {c: cols[c][j] for c in scalar}
                if blobs[j]:
                    if not audio_dir:
                        raise ConfigError(f"{path}: the audio is embedded in the dataset; set audio_dir=<folder> "
                                          "to write each clip there once (our pool builder reads files)")
                    claim_audio()  # marked and locked before its first clip
                    row.path = _store(blobs[j], paths[j], audio_dir, written)
                    embedded += 1
                else:
                    row.path = resolve_path(paths[j], base)
                _fill(row, values, label_field, names, id_col, split, ours)
                rows.append(row)
    return rows, written, embedded


def _class_names(feature: Any) -> list[str] | None:
    if isinstance(feature, dict) and feature.get("_type") == "ClassLabel":
        return [str(n) for n in feature.get("names") or []]
    return None


def _fill(row: Row, values: dict, label_field: str, names: list[str] | None, id_col: str, split: str | None,
          ours: str | None) -> None:
    raw = values.pop(label_field, None)
    if names is not None and raw is not None:
        index = int(raw)
        if 0 <= index < len(names):
            row.label = names[index]
        elif index != -1:
            row.refused = ("unknown_label", f"class index {index} is outside the ClassLabel's {len(names)} names")
    else:
        row.label = text(raw)
    row.utt_id = text(values.pop(id_col)) if id_col else f"{split or 'row'}-{row.index:07d}"
    for ours_name, aliases in _ALIASES.items():
        found = next((a for a in aliases if values.get(a) is not None), None)
        setattr(row, ours_name, text(values.pop(found)) if found else None)
        for a in aliases:
            values.pop(a, None)
    start, end = number(values.pop("start", None)), number(values.pop("end", None))
    if start is not None or end is not None:
        row.start = math.nan if start is None else start
        row.end = math.nan if end is None else end
    channel = number(values.pop("channel", None))
    row.channel = -1 if channel is None else int(channel)
    row.recording = text(values.pop("recording", None))
    if ours is not None and values.get("split") is None:
        row.extra["split"] = ours
    elif split is not None and ours is None:
        row.extra["hf_split"] = split
    row.extra.update(values)


def write_hf(rows: pd.DataFrame, folder: str, *, label_field: str = "label", labels: Sequence[str] = (),
             log: Callable[[str], None] = print) -> list[str]:
    """Write ``rows`` (an export table) as a Hugging Face Parquet dataset folder (module docstring).

    Args:
        rows: ``utt_id``, ``path`` (required), ``label`` and any other columns.
        folder: the dataset folder (local or URI); each split's file is written atomically.
        label_field: the label column's name in the dataset.
        labels: the ``ClassLabel`` names in order (empty = the labels found, sorted).

    Returns:
        The files written.
    """
    if rows["path"].isna().any():
        bad = rows.loc[rows["path"].isna(), "utt_id"].head(3).tolist()
        raise ConfigError(f"rows {bad} have no audio path: the Audio column needs the file")
    found = sorted({str(v) for v in rows["label"] if not missing(v)}) if "label" in rows.columns else []
    names = list(labels) or found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise ConfigError(f"labels={list(labels)}: the rows also hold {unknown}; list every class")
    index = {n: i for i, n in enumerate(names)}
    out = []
    for rel, part in _split_parts(rows):
        table, feats = _table(part, label_field, index, names)
        meta = {b"huggingface": json.dumps({"info": {"features": feats}}).encode()}
        target = io.join(folder, rel)
        io.write_parquet_atomic(target, table.replace_schema_metadata(meta))
        out.append(target)
    log(f"hf: wrote {len(rows)} rows to {folder} ({', '.join(os.path.basename(f).split('-')[0] for f in out)})")
    return out


def hf_files(rows: pd.DataFrame) -> list[str]:
    """The files :func:`write_hf` writes for ``rows``, relative to the folder (one per split that has rows)."""
    return [rel for rel, _ in _split_parts(rows)]


def _split_parts(rows: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(data/<split>-00000-of-00001.parquet, rows of that split)`` per split with rows (no split = train)."""
    split_of = rows["split"] if "split" in rows.columns else pd.Series([None] * len(rows))
    for ours, theirs in (("train", "train"), ("dev", "validation"), ("test", "test")):
        part = rows[split_of.map(lambda s, o=ours: (s if not missing(s) else "train") == o).to_numpy()]
        if len(part):
            yield f"data/{theirs}-00000-of-00001.parquet", part


def _table(part: pd.DataFrame, label_field: str, index: dict[str, int], names: list[str]) -> tuple[pa.Table, dict]:
    audio = pa.array([{"bytes": None, "path": p} for p in part["path"]],
                     pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    columns: dict[str, pa.Array] = {"audio": audio}
    feats: dict[str, Any] = {"audio": {"_type": "Audio"}}
    if "label" in part.columns:
        columns[label_field] = pa.array([-1 if missing(v) else index[str(v)] for v in part["label"]], pa.int64())
        feats[label_field] = {"names": names, "_type": "ClassLabel"}
    for col in part.columns:
        if col in ("path", "label", "audio", label_field):
            continue
        values = [None if missing(v) else json_value(v) for v in part[col]]
        try:
            arr = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string())
        if pa.types.is_null(arr.type):
            arr = arr.cast(pa.string())
        if pa.types.is_nested(arr.type):
            continue  # e.g. a timeline's probability vectors: not a Value feature
        columns[col] = arr
        feats[col] = {"dtype": _dtype_name(arr.type), "_type": "Value"}
    return pa.table(columns), feats


def _dtype_name(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}" + (f", tz={t.tz}]" if t.tz else "]")
    return str(t)


__all__ = ["SPLIT_NAMES", "hf_files", "import_hf", "write_hf"]
