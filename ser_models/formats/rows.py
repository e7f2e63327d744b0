"""What every importer shares: the rows it builds, the checks that refuse a row, the report and the writes.

An importer turns each item of a foreign manifest (a Lhotse supervision or cut, a Hugging Face row, a NeMo
line) into one :class:`Row` in our manifest's terms, or a row already refused with a reason it alone can
tell (a source type we cannot read, a class index outside the ``ClassLabel``). :func:`take_rows` then applies
the checks every format shares and refuses, never fails on, a bad row:

==================  ========================================================================================
reason              why
==================  ========================================================================================
``bad_id``          an id (``utt_id``, ``recording``, ``speaker``, ``label``, ...) that
                    :func:`ser_models.names.id_problem` refuses; for a recordings manifest also a recording id
                    that cannot name a file (letters, digits, ``.``, ``_``, ``-``)
``duplicate_id``    the ``utt_id`` (or, for recordings, the recording id ignoring case) of an earlier row
``missing_file``    no audio path, or no file there
``bad_offset``      a start or end that is not a finite number, a start below 0, an end not after the start,
                    or an end past the recording's length (when the manifest says its length)
``bad_channel``     a channel the recording does not have, or a subset of its channels (only one channel or
                    all of them averaged can be read)
``unknown_label``   a label outside ``labels`` (or outside the dataset's own class list)
==================  ========================================================================================

An importer may refuse a row for a reason of its format before these checks (Lhotse: ``unsupported_source``
for audio in memory, behind a command or at an ``http`` URL, ``unsupported_cut`` for mixed cuts). A
``file://`` URI of another host (``file://server/x.wav``) is refused as ``unsupported_source`` in every format;
``file:///abs/x.wav`` and ``file://localhost/abs/x.wav`` are the local file ``/abs/x.wav``.

The taken rows become one of our manifests (CSV / TSV, Parquet or JSONL by the output's extension, written
atomically through :mod:`ser_models.io`); the refused ones are listed in ``<output stem>.refused.csv`` (cells
neutralised against spreadsheet formulas) and the first ten are printed.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import io as _bytes_io
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa

from ser_models import io
from ser_models.data.audio_stream import open_audio
from ser_models.exceptions import ConfigError, ForeignFolderError, ManifestError
from ser_models.names import MAX_ID_CHARS, id_problem
from ser_models.ownership import remove_if

#: Columns a segments manifest is written with (those with any value), in this order, then the extras.
SEGMENT_COLUMNS = ("utt_id", "path", "start", "end", "channel", "recording", "speaker", "label", "arousal",
                   "valence", "dominance", "language", "corpus", "split", "group", "transcript")
#: Columns a recordings manifest (``jobs.segment``) is written with, then the extras.
RECORDING_COLUMNS = ("recording", "path", "speaker", "group", "split", "language", "corpus")
#: Our manifest columns a foreign field may fill by name (a Lhotse ``custom`` key, a Hugging Face column).
KNOWN_FIELDS = ("split", "group", "corpus", "language", "arousal", "valence", "dominance")
_ID_COLUMNS = ("utt_id", "recording", "speaker", "group", "label", "corpus", "language")
_REASON = re.compile(r"[a-z][a-z_]*")  # a refusal reason as a listing holds it: missing_file, bad_id, ...
_RECORDING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")  # as jobs.segment's recordings manifest requires
_END_TOLERANCE_S = 0.05  # a rounded end may overshoot the recording by this much (as prepare_pool allows)
_OUTPUT_EXTENSIONS = (".csv", ".tsv", ".parquet", ".jsonl")
SHOWN = 10
KINDS = ("segments", "recordings")


@dataclasses.dataclass
class Row:
    """One imported row in our manifest's terms (times in seconds of the file; NaN = the whole file).

    ``duration`` and ``channels`` are what the foreign manifest says of the recording (None = it does not say):
    the checks use them. ``refused`` holds ``(reason, detail)`` when the importer already refused the row.
    """

    index: int
    utt_id: str | None = None
    path: str | None = None
    start: float = math.nan
    end: float = math.nan
    channel: int = -1
    recording: str | None = None
    speaker: str | None = None
    label: str | None = None
    language: str | None = None
    transcript: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    duration: float | None = None
    channels: int | None = None
    refused: tuple[str, str] | None = None


@dataclasses.dataclass
class ImportReport:
    """How an import went: rows read, taken and refused (``(row, id, reason, detail)``, 1-based rows)."""

    source: str
    fmt: str
    rows: int
    taken: int
    refused: list[tuple[int, str | None, str, str]]
    output: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)

    def reasons(self) -> dict[str, int]:
        """Refused rows per reason."""
        return dict(sorted(Counter(r[2] for r in self.refused).items()))

    def format(self) -> str:
        """The lines an import prints: the counts, the reasons, the first refused rows and any notes."""
        head = f"{self.fmt} {self.source}: took {self.taken} of {self.rows} rows"
        if self.refused:
            head += f"; refused {len(self.refused)} (" + ", ".join(f"{k} {v}" for k, v in self.reasons().items()) + ")"
        lines = [head]
        lines += [f"  refused row {row}" + (f" {uid!r}" if uid is not None else "") + f": {reason}: {detail}"
                  for row, uid, reason, detail in self.refused[:SHOWN]]
        if len(self.refused) > SHOWN:
            lines.append(f"  ... and {len(self.refused) - SHOWN} more in {refused_path(self.output)}")
        lines += [f"  {n}" for n in self.notes]
        if self.output:
            lines.append(f"  wrote {self.output}")
        return "\n".join(lines)


def read_text(uri: str | os.PathLike) -> str:
    """A manifest file's text (UTF-8), gunzipped when its first bytes say gzip (a ".gz" name does not promise
    it)."""

    data = io.read_bytes(uri)
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data).decode("utf-8")


def json_objects(body: str, src: Any) -> list[dict]:
    """The JSON objects of a JSON-lines text (blank lines skipped).

    Raises:
        ManifestError: naming ``src`` and the line that is not JSON, or not an object.
    """
    items = []
    for lineno, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{src}: line {lineno}: invalid JSON ({exc.msg}): {line[:80]!r}") from None
        if not isinstance(item, dict):
            raise ManifestError(f"{src}: line {lineno} is not a JSON object")
        items.append(item)
    return items


def text(value: Any) -> str | None:
    """A foreign cell as our text value: None for missing or blank; integral floats without ``.0``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    s = str(value).strip()
    return s or None


def number(value: Any) -> float | None:
    """A foreign cell as a float, or None when it is not a number (a string of digits counts)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def cell(value: Any) -> Any:
    """A value an extra column can hold: scalars as they are, lists and dicts as JSON text."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def resolve_path(path: str | None, base: str) -> str | None:
    """An audio path as our manifests hold it: a ``file://`` URI of this machine as its local path (a URI of
    another host is kept, and :func:`take_rows` refuses its row), other URIs kept, relative paths against
    ``base``."""
    if not path:
        return None
    if path.startswith("file://"):
        try:
            path = io.file_uri_path(path)
        except ConfigError:
            return path
    elif "://" in path:
        return path
    if not io.is_local(base) and not os.path.isabs(path):
        return io.join(base, os.path.normpath(path))
    path = os.path.expanduser(path)
    return os.path.normpath(path if os.path.isabs(path) else os.path.join(base, path))


def _check(row: Row, kind: str, labels: set[str] | None) -> tuple[str, str] | None:
    if row.refused:
        return row.refused
    required = "recording" if kind == "recordings" else "utt_id"  # the row's own id: never missing
    for col in _ID_COLUMNS:
        if col == "utt_id" and kind == "recordings":
            continue
        value = row.extra.get(col) if col in ("group", "corpus") else getattr(row, col)
        if value is None and col != required:
            continue
        why = id_problem(value)
        if why:
            return "bad_id", f"{col} {value!r} {why}"
    if kind == "recordings" and not _RECORDING_ID.match(row.recording or ""):
        return "bad_id", (f"recording {row.recording!r} cannot name a file: use 1 to {MAX_ID_CHARS} letters, digits, "
                          "'.', '_' or '-', starting with a letter or digit")
    if not row.path:
        return "missing_file", "no audio path"
    if row.path.startswith("file://"):  # left so by resolve_path: a file URI of another host
        return "unsupported_source", (f"{row.path}: a file:// URI of another host; only this machine's files are "
                                      "read (file:///abs/path or file://localhost/abs/path)")
    start, end = row.start, row.end
    if not (math.isnan(start) and math.isnan(end)):
        if not (math.isfinite(start) and math.isfinite(end)):
            return "bad_offset", f"start {start} and end {end} (seconds) must both be numbers"
        if start < 0 or end <= start:
            return "bad_offset", f"start {start:g} s, end {end:g} s: need 0 <= start < end"
        if row.duration is not None and end > row.duration + _END_TOLERANCE_S:
            return "bad_offset", f"end {end:g} s is past the recording's {row.duration:g} s"
    if row.channels is not None and row.channel >= row.channels:
        return "bad_channel", f"channel {row.channel} of a {row.channels}-channel recording"
    if labels is not None and row.label is not None and row.label not in labels:
        return "unknown_label", f"label {row.label!r} is not one of {sorted(labels)}"
    return None


def take_rows(rows: Sequence[Row], kind: str, labels: Sequence[str] | None = None,
              check_files: bool = True) -> tuple[list[Row], list[tuple[int, str | None, str, str]]]:
    """Apply the shared checks (module docstring) in order; a row passes all or is refused with the first.

    Args:
        rows: the importer's rows, in the foreign manifest's order.
        kind: ``segments`` (one row per clip or segment) or ``recordings`` (one row per long file).
        labels: allowed labels; None or empty allows any.
        check_files: look each distinct local path or URI up (one stat per file).

    Returns:
        ``(taken, refused)``: refused as ``(1-based row, id, reason, detail)``.
    """
    allowed = set(labels) if labels else None
    taken, refused = [], []
    seen: dict[str, int] = {}
    found: dict[str, bool] = {}
    for row in rows:
        why = _check(row, kind, allowed)
        if why is None and check_files:
            if row.path not in found:
                found[row.path] = os.path.exists(row.path) if io.is_local(row.path) else io.exists(row.path)
            if not found[row.path]:
                why = ("missing_file", f"no such file: {row.path}")
        key = row.recording.casefold() if kind == "recordings" and row.recording else row.utt_id
        if why is None:
            if key in seen:
                why = ("duplicate_id", f"{'recording' if kind == 'recordings' else 'utt_id'} repeats row {seen[key]}")
            else:
                seen[key] = row.index + 1
        if why is None:
            taken.append(row)
        else:
            refused.append((row.index + 1, row.recording if kind == "recordings" else row.utt_id, *why))
    return taken, refused


def to_frame(rows: Sequence[Row], kind: str) -> pd.DataFrame:
    """The taken rows as a manifest table: the kind's columns that hold any value, then the extra columns."""
    data: dict[str, list] = {}
    names = SEGMENT_COLUMNS if kind == "segments" else RECORDING_COLUMNS
    for col in names:
        if col in ("arousal", "valence", "dominance"):
            data[col] = [number(r.extra.get(col)) for r in rows]
        elif col in ("split", "group", "corpus"):
            data[col] = [text(r.extra.get(col)) for r in rows]
        else:
            data[col] = [getattr(r, col) for r in rows]
    extras: list[str] = []
    for r in rows:
        extras += [k for k in r.extra if k not in names and k not in extras]
    for col in extras:
        data[col] = [cell(r.extra.get(col)) for r in rows]
    frame = pd.DataFrame({k: pd.Series(v, dtype=_dtype(k)) for k, v in data.items()})
    keep = [c for c in frame.columns if c in ("utt_id", "path", "recording") and c in names
            or not _empty(frame[c], c)]
    return frame[keep]


def _dtype(col: str):
    if col in ("start", "end", "arousal", "valence", "dominance"):
        return "float64"
    return "int64" if col == "channel" else object


def _empty(series: pd.Series, col: str) -> bool:
    if col == "channel":
        return bool((series == -1).all())
    return bool(series.isna().all())


def refused_path(output: str) -> str:
    """``<output stem>.refused.csv`` beside the output manifest."""
    stem, _ = os.path.splitext(str(output))
    return f"{stem}.refused.csv"


def check_output(output: str) -> str:
    """The output manifest's extension, or a ConfigError naming the ones we write."""
    ext = os.path.splitext(str(output))[1].lower()
    if ext not in _OUTPUT_EXTENSIONS:
        raise ConfigError(f"output={output}: write a manifest ending in one of {', '.join(_OUTPUT_EXTENSIONS)}")
    return ext


def write_table(frame: pd.DataFrame, output: str) -> None:
    """One manifest file, written atomically, in the format its extension names (CSV / TSV / Parquet / JSONL)."""
    ext = check_output(output)
    if ext == ".parquet":
        table = pa.Table.from_pandas(frame, preserve_index=False)
        # An all-None text column would be typed null; keep it text so readers see strings.
        table = table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                                      for f in table.schema]))
        io.write_parquet_atomic(output, table)
        return
    if ext == ".jsonl":
        lines = (json.dumps({k: v for k, v in rec.items() if not _missing(v)}, default=str)
                 for rec in frame.to_dict("records"))
        io.write_bytes_atomic(output, ("\n".join(lines) + "\n").encode())
        return
    buffer = _bytes_io.StringIO()
    frame.to_csv(buffer, sep="," if ext == ".csv" else "\t", index=False)
    io.write_bytes_atomic(output, buffer.getvalue().encode())


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def missing(value: Any) -> bool:
    """A cell with no value (None, NaN, NA); lists and dicts are values."""
    if isinstance(value, (list, dict, tuple)) or hasattr(value, "__len__") and not isinstance(value, str):
        return False
    return value is None or bool(pd.isna(value))


def json_value(value: Any) -> Any:
    """A cell as JSON can hold it (numpy arrays and scalars as lists and numbers, times as ISO text)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def audio_info(path: str) -> tuple[int, int, int]:
    """``(sample rate in Hz, samples per channel, channels)`` from an audio file's header (local or URI)."""

    with open_audio(path) as stream:
        return stream.sample_rate, stream.frames, stream.channels


def finish(rows: Sequence[Row], *, source: str, fmt: str, output: str, kind: str, labels: Sequence[str] | None,
           check_files: bool, notes: Sequence[str] = (), log: Callable[[str], None] = print,
           extra_files: Callable[[list[Row]], list[str]] | None = None) -> tuple[pd.DataFrame, ImportReport]:
    """Check the rows, write the taken ones to ``output`` and the refused ones beside it, print the report.

    Args:
        rows: the importer's rows.
        source, fmt: the foreign manifest and its format, for the report.
        output: our manifest to write (its extension picks the format).
        kind: ``segments`` or ``recordings``.
        labels: allowed labels (empty = any).
        check_files: stat each distinct audio file.
        notes: lines the importer adds to the report.
        log: where the report goes.
        extra_files: called with the taken rows; writes further files (an annotations table) and returns notes.

    Returns:
        ``(manifest, report)``.

    Raises:
        ManifestError: every row was refused (the reasons and the first rows are in the message).
    """
    if kind not in KINDS:
        raise ConfigError(f"kind={kind!r}: use one of {list(KINDS)}")
    check_output(output)
    taken, refused = take_rows(rows, kind, labels, check_files)
    report = ImportReport(source=source, fmt=fmt, rows=len(rows), taken=len(taken), refused=refused,
                          notes=list(notes))
    if not taken:
        raise ManifestError(f"{source}: no row could be imported as {fmt}. " + report.format())
    refused_file = refused_path(output)
    if refused and io.exists(refused_file) and not _is_refusal_listing(refused_file):
        # Checked before the first byte: the listing is an output whose name the person did not choose.
        raise ForeignFolderError(f"refusing to write {refused_file}: a file of that name is there and does not read "
                                 "as a list of refused rows an import wrote (a header row,id,reason,detail, then a "
                                 f"row number and a reason per line), and this import refuses {len(refused)} rows "
                                 "it would list there. Move that file elsewhere, or name another output (the "
                                 "refused rows go beside it, to <output stem>.refused.csv); nothing was written")
    frame = to_frame(taken, kind)
    write_table(frame, output)
    report.output = str(output)
    if refused:
        from ser_models.formats.spreadsheet import neutralise_frame

        listing = pd.DataFrame(refused, columns=["row", "id", "reason", "detail"]).astype({"id": object})
        buffer = _bytes_io.StringIO()
        neutralise_frame(listing).to_csv(buffer, index=False)
        io.write_bytes_atomic(refused_file, buffer.getvalue().encode())
        report.notes.append(f"refused rows listed in {refused_file}")
    elif io.exists(refused_file):  # a list from an earlier import of this output would describe other rows
        remove_if(refused_file, _is_refusal_listing, "a list of refused rows")
    if extra_files is not None:
        report.notes += extra_files(taken)
    log(report.format())
    return frame, report


def _is_refusal_listing(path: str) -> bool:
    """The whole file reads as a refused-rows listing an import writes: exactly our header, then per line a row
    number (>= 1), an id, a reason (a lowercase word such as ``missing_file``) and a detail. A person's file of
    that name (a note, a spreadsheet of their own) is never overwritten nor deleted."""
    if io.is_link(path):
        return False
    try:
        lines = list(csv.reader(_bytes_io.StringIO(read_text(path), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    if not lines or lines[0] != ["row", "id", "reason", "detail"]:
        return False
    return all(len(r) == 4 and r[0].isdigit() and int(r[0]) >= 1 and _REASON.fullmatch(r[2]) for r in lines[1:])


__all__ = ["KINDS", "KNOWN_FIELDS", "RECORDING_COLUMNS", "SEGMENT_COLUMNS", "ImportReport", "Row", "audio_info", "finish",
           "json_value", "missing", "number", "resolve_path", "take_rows", "text", "to_frame", "write_table"]
