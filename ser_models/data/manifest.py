"""Read and validate a clip table (manifest) into one canonical pandas DataFrame.

Formats, by file extension: ``.csv``, ``.tsv``, ``.parquet`` (or ``.pq``), ``.jsonl`` and ``.json`` (JSON
lines, or one JSON array of objects). EmoBox JSONL (rows with ``key, wav, emo, length, sample_rate,
channel, dataset``) is detected by its keys and mapped: ``key -> utt_id``, ``wav -> path``, ``emo -> label``,
``dataset -> corpus``, ``channel -> channels`` (EmoBox's ``channel`` counts the file's channels; it is not a
channel number).

Output columns, in order (``MANIFEST_COLUMNS``), then any extra columns of the file in their original order:

==============================================  ======================  ================================
column                                          dtype                   notes
==============================================  ======================  ================================
utt_id                                          object (str)            unique, non-empty
path                                            object (str)            absolute path, or a URI
start, end                                      float64 (NaN)           seconds in the file; NaN = whole
label                                           object (str or None)    after ``label_map``; in ``labels``
arousal, valence, dominance                     float64 (NaN)
speaker, language, corpus, split, transcript    object (str or None)    split in ``SPLITS``
recording                                       object (str or None)    the long file a segment is cut from
group                                           object (str or None)    show, campaign or customer
channel                                         int64                   0-based; -1 = channels averaged
==============================================  ======================  ================================

**Ids.** Every value of :data:`ID_COLUMNS` (``utt_id``, ``recording``, ``speaker``, ``group``, ``label``,
``corpus``, ``language``) is 1 to 200 characters (``ser_models.names.MAX_ID_CHARS``) without control
characters, tabs or line breaks (:mod:`ser_models.names`); all offending rows of a column are named in one error. Anything else is a valid id:
``a/b``, ``../x``, ``=x``, ``%2e``, Unicode look-alikes, ``Abc`` beside ``abc``. A file is never named after an
id as it is, only after its :func:`~ser_models.names.safe_file_name`, so such ids neither escape their folder nor
share a file.

Missing optional columns are added (NaN / None; ``channel`` -1). A segments manifest (``jobs.segment``) names
each row's ``recording`` and, for a multi-channel file, the ``channel`` it was found on; ``channel`` missing
or -1 means the file's channels averaged. Splits never cross a ``recording`` or a ``group``
(``prepare_pool`` refuses a manifest where one does). Text cells that are empty (or, except in ``transcript``,
``nan`` / ``none`` / ``null``) are missing values. Relative paths are resolved against the manifest's folder;
absolute paths are kept; ``file://`` URIs become local paths (``file:///abs`` or ``file://localhost/abs``; another host is
refused); other URIs (``s3://...``) are kept verbatim.

**Where the label map comes from** (first match wins): the ``label_map`` argument (a mapping, or the path of
a JSON object file); else ``label_map.json`` in the manifest's folder; else, for EmoBox manifests only,
``label_map.json`` in the parent folder (EmoBox keeps one per dataset, above its ``fold_N/`` folders).
Raw labels missing from the map are kept as they are (and then checked against ``labels``).

Every error is a :class:`~ser_models.exceptions.ManifestError` naming the file, the 1-based data row (the
first row after a CSV/TSV header is row 1, i.e. line 2; in JSONL, row = line), the column and the value.
"""

from __future__ import annotations

import io as _bytes_io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ser_models import io
from ser_models.exceptions import ConfigError, ManifestError, PoolError
from ser_models.names import check_ids

MANIFEST_COLUMNS: tuple[str, ...] = (
    "utt_id", "path", "start", "end", "label", "arousal", "valence", "dominance",
    "speaker", "language", "corpus", "split", "transcript", "recording", "group", "channel",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("utt_id", "path")
FLOAT_COLUMNS: tuple[str, ...] = ("start", "end", "arousal", "valence", "dominance")
TEXT_COLUMNS: tuple[str, ...] = ("label", "speaker", "language", "corpus", "split", "transcript", "recording",
                                 "group")
#: Columns whose values are names of things (clips, recordings, speakers, groups, classes, corpora, languages):
#: each value must be a valid id (:func:`ser_models.names.id_problem`). Files are never named after them as they
#: are, only through :func:`ser_models.names.safe_file_name`.
ID_COLUMNS: tuple[str, ...] = ("utt_id", "recording", "speaker", "group", "label", "corpus", "language")
#: Integer columns and the value a missing cell takes (``channel``: -1 = the file's channels averaged).
INT_COLUMNS: dict[str, int] = {"channel": -1}
SPLITS: tuple[str, ...] = ("train", "dev", "test")
#: Keys that identify an EmoBox JSONL row, and how its fields map onto manifest columns.
EMOBOX_KEYS: frozenset[str] = frozenset({"key", "wav", "emo"})
EMOBOX_RENAME: dict[str, str] = {"key": "utt_id", "wav": "path", "emo": "label", "dataset": "corpus",
                                 "channel": "channels"}
LABEL_MAP_FILE = "label_map.json"
_MISSING_TEXT = frozenset({"", "nan", "none", "null"})
TABLE_EXTENSIONS = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".json")


def read_manifest(
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    label_map: Mapping[str, str] | str | os.PathLike | None = None,
) -> pd.DataFrame:
    """Read a manifest file into the canonical DataFrame (see the module docstring for columns and rules).

    Args:
        path: the manifest (``.csv``, ``.tsv``, ``.parquet``, ``.jsonl``, ``.json``); a ``file://`` URI works.
        labels: allowed categorical labels (after mapping); ``None`` or empty accepts any label.
        label_map: raw label -> label (e.g. ``{"hap": "happy", "exc": "happy"}``), or the path of a JSON
            file holding that object; ``None`` looks for ``label_map.json`` next to the manifest.

    Returns:
        One row per clip: ``MANIFEST_COLUMNS`` in order, then the file's extra columns. Index is 0..N-1.

    Raises:
        ManifestError: unreadable file or unknown extension, no rows, a required column missing, a
            duplicate ``utt_id``, an id longer than 200 characters or with control characters (one error
            per column, naming up to 10 rows), an empty ``path``, a label outside ``labels``, a ``split`` outside
            ``SPLITS``, non-numeric numbers, ``end <= start``, or a ``channel`` that is not an integer >= 0
            (or -1); each names file, row, column and value.
    """
    df, where = read_table(path)
    src = where.src
    emobox = EMOBOX_KEYS.issubset(df.columns) and "utt_id" not in df.columns
    if emobox:
        df = df.rename(columns={k: v for k, v in EMOBOX_RENAME.items() if v not in df.columns})
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ManifestError(
            f"{src}: required column(s) {missing} missing; columns found: {list(df.columns)}"
        )
    mapping = _resolve_label_map(src, label_map, emobox)

    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in MANIFEST_COLUMNS:
        raw = df[col] if col in df.columns else None
        if col in FLOAT_COLUMNS:
            out[col] = _floats(raw, col, len(df), where)
        elif col in INT_COLUMNS:
            out[col] = _channels(raw, col, len(df), where, INT_COLUMNS[col])
        else:
            out[col] = text_values(raw, col, len(df), keep_words=(col == "transcript"))
    _check_ids(out, where)
    for col in ID_COLUMNS:
        check_ids(out[col].tolist(), col, where.row, str(src))
    out["path"] = resolve_paths(out["path"], src.parent, where)
    _check_times(out, where)
    if mapping:
        out["label"] = pd.Series([mapping.get(v, v) if v is not None else None for v in out["label"]],
                                 dtype=object)
    if labels:
        check_allowed(out, "label", tuple(labels), where)
    check_allowed(out, "split", SPLITS, where, hint=" (use 'dev' for a validation split)")
    extras = [c for c in df.columns if c not in MANIFEST_COLUMNS]
    for c in extras:
        out[c] = df[c].to_numpy()
    return out


class RowLocator:
    """Names a table's rows in errors: ``file: row N`` (CSV / TSV rows also give the file line).

    Attributes:
        src: the file (a local path or a URI).
        header: True for CSV / TSV, whose first line is the header (data row 1 is line 2).
    """

    def __init__(self, src: io.StoragePath, ext: str):
        self.src = src
        self.header = ext in (".csv", ".tsv")

    def __call__(self, i: int) -> str:
        return f"{self.src}: {self.row(i)}"

    def row(self, i: int) -> str:
        """``row N (line M)`` of 0-based data row ``i``, without the file."""
        return f"row {i + 1} (line {i + 2})" if self.header else f"row {i + 1}"


def read_table(path: str | os.PathLike, what: str = "manifest", allow_empty: bool = False,
               ) -> tuple[pd.DataFrame, RowLocator]:
    """Read a table file as it is, for a reader that checks its own columns (manifests, recordings manifests,
    annotation files).

    Args:
        path: a ``.csv``, ``.tsv``, ``.parquet`` / ``.pq``, ``.jsonl`` or ``.json`` file, local or a URI.
        what: what the file is, for the errors (``"recordings manifest"``).
        allow_empty: return a table without rows instead of refusing it.

    Returns:
        ``(rows, where)``: the file's rows with their column names stripped (CSV / TSV cells all text, so an
        id such as ``007`` survives; Parquet and JSON cells as typed in the file), and the
        :class:`RowLocator` that names its rows in errors.

    Raises:
        ManifestError: the file is missing, has an unknown extension, cannot be parsed, or has no rows.
    """
    src = io.storage_path(path)  # a local path or a pyarrow.fs URI (s3://bucket/corpus/manifest.csv)
    if not io.exists(src):
        raise ManifestError(f"{what} not found: {src}")
    ext = os.path.splitext(src.name)[1].lower()
    if ext not in TABLE_EXTENSIONS:
        raise ManifestError(f"{src}: unknown {what} extension {ext!r}; use one of {', '.join(TABLE_EXTENSIONS)}")
    df = _read_table(src, ext)
    if len(df) == 0 and not allow_empty:
        raise ManifestError(f"{src}: {what} has no rows (columns found: {list(df.columns)})")
    df.columns = [str(c).strip() for c in df.columns]
    return df, RowLocator(src, ext)


def _read_table(src: str, ext: str) -> pd.DataFrame:

    try:
        raw = _bytes_io.BytesIO(io.read_bytes(src))
        if ext in (".csv", ".tsv"):
            # Everything as text: ids such as "007" must survive, and numbers are checked per cell below.
            return pd.read_csv(raw, sep="," if ext == ".csv" else "\t", dtype=str, keep_default_na=False,
                               na_values=[], skipinitialspace=False)
        if ext in (".parquet", ".pq"):
            return pd.read_parquet(raw)
        return pd.DataFrame.from_records(_read_json_rows(src, raw.getvalue().decode("utf-8"), ext))
    except ManifestError:
        raise
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except Exception as exc:
        raise ManifestError(f"{src}: cannot read manifest: {exc}") from exc


def _read_json_rows(src: str, text: str, ext: str) -> list[dict]:
    if ext == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{src}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
        bad = [i + 1 for i, r in enumerate(rows) if not isinstance(r, dict)]
        if bad:
            raise ManifestError(f"{src}: row {bad[0]} is not a JSON object")
        return rows
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{src}: row {lineno}: invalid JSON ({exc.msg}): {line[:80]!r}") from exc
        if not isinstance(row, dict):
            raise ManifestError(f"{src}: row {lineno} is not a JSON object: {line[:80]!r}")
        rows.append(row)
    return rows


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA or v is pd.NaT


def text_values(raw: pd.Series | None, col: str, n: int, keep_words: bool) -> pd.Series:
    """[n] text cells as ``str`` or None: missing, empty and (unless ``keep_words``) ``nan`` / ``none`` /
    ``null`` cells are None; whole numbers stored as floats (``7.0``, a Parquet speaker id) read as ``7``."""
    if raw is None:
        return pd.Series([None] * n, dtype=object)
    vals = []
    for v in raw.tolist():
        if _is_missing(v):
            vals.append(None)
            continue
        if isinstance(v, float) and v.is_integer():  # Parquet/JSON speaker ids stored as numbers
            v = int(v)
        s = str(v).strip()
        vals.append(None if (s == "" or (not keep_words and s.lower() in _MISSING_TEXT)) else s)
    return pd.Series(vals, dtype=object)


def _floats(raw: pd.Series | None, col: str, n: int, where: RowLocator) -> pd.Series:
    if raw is None:
        return pd.Series(np.full(n, np.nan), dtype="float64")
    out = np.full(n, np.nan)
    for i, v in enumerate(raw.tolist()):
        if _is_missing(v):
            continue
        if isinstance(v, bool):
            raise ManifestError(f"{where(i)}: column '{col}' must be a number, got {v!r}")
        if isinstance(v, str):
            if v.strip().lower() in _MISSING_TEXT:
                continue
            try:
                v = float(v)
            except ValueError:
                raise ManifestError(f"{where(i)}: column '{col}' must be a number, got {v!r}") from None
        try:
            out[i] = float(v)
        except (TypeError, ValueError):
            raise ManifestError(f"{where(i)}: column '{col}' must be a number, got {v!r}") from None
        if not math.isfinite(out[i]):
            raise ManifestError(f"{where(i)}: column '{col}' must be finite, got {v!r}")
    return pd.Series(out, dtype="float64")


def _channels(raw: pd.Series | None, col: str, n: int, where: RowLocator, missing: int) -> pd.Series:
    """0-based channel numbers; a missing cell (or -1) is ``missing``: the channels averaged."""
    out = np.full(n, missing, dtype=np.int64)
    if raw is None:
        return pd.Series(out, dtype="int64")
    for i, v in enumerate(raw.tolist()):
        if _is_missing(v) or (isinstance(v, str) and v.strip().lower() in _MISSING_TEXT):
            continue
        number = None
        if not isinstance(v, bool):
            try:
                number = float(v.strip()) if isinstance(v, str) else float(v)
            except (TypeError, ValueError):
                number = None
        if number is None or not math.isfinite(number) or not number.is_integer() or number < -1:
            raise ManifestError(f"{where(i)}: column '{col}' must be a channel number (0, 1, ...; -1 or empty = "
                                f"the channels averaged), got {v!r}")
        out[i] = int(number)
    return pd.Series(out, dtype="int64")


def _check_ids(out: pd.DataFrame, where: RowLocator) -> None:
    ids = out["utt_id"]
    empty = ids.isna()
    if empty.any():
        raise ManifestError(f"{where(int(np.argmax(empty.to_numpy())))}: column 'utt_id' is empty")
    first: dict[str, int] = {}
    for i, u in enumerate(ids.tolist()):
        if u in first:
            raise ManifestError(
                f"{where(i)}: column 'utt_id' value {u!r} duplicates row {first[u] + 1}; ids must be unique"
            )
        first[u] = i


def resolve_paths(paths: pd.Series, base: str, where: RowLocator) -> pd.Series:
    """Absolute clip paths: relative ones resolve against the manifest's folder (a local folder or a URI)."""
    remote_base = not io.is_local(base)
    out = []
    for i, p in enumerate(paths.tolist()):
        if p is None:
            raise ManifestError(f"{where(i)}: column 'path' is empty")
        if p.startswith("file://"):
            try:
                p = io.file_uri_path(p)
            except ConfigError as exc:
                raise ManifestError(f"{where(i)}: column 'path': {exc}") from None
        elif "://" in p:
            out.append(p)  # object-store URI: read through pyarrow.fs
            continue
        if remote_base and not os.path.isabs(p):
            out.append(io.join(base, os.path.normpath(p)))
            continue
        p = os.path.expanduser(p)
        out.append(os.path.normpath(p if os.path.isabs(p) else os.path.join(base, p)))
    return pd.Series(out, dtype=object)


def _check_times(out: pd.DataFrame, where: RowLocator) -> None:
    start, end = out["start"].to_numpy(), out["end"].to_numpy()
    neg = np.flatnonzero(start < 0)
    if len(neg):
        i = int(neg[0])
        raise ManifestError(f"{where(i)}: column 'start' must be >= 0 seconds, got {start[i]}")
    bad = np.flatnonzero(~np.isnan(start) & ~np.isnan(end) & (end <= start))
    if len(bad):
        i = int(bad[0])
        raise ManifestError(
            f"{where(i)}: column 'end' ({end[i]}) must be greater than 'start' ({start[i]}) (seconds)"
        )
    bad = np.flatnonzero(end <= 0)
    if len(bad):
        i = int(bad[0])
        raise ManifestError(f"{where(i)}: column 'end' must be > 0 seconds, got {end[i]}")


def check_allowed(out: pd.DataFrame, col: str, allowed: tuple[str, ...], where: RowLocator, hint: str = "") -> None:
    """Refuse the first value of ``out[col]`` outside ``allowed`` (None passes), naming its row.

    Raises:
        ManifestError: naming the file, the row, the column, the value and the allowed values.
    """
    ok = set(allowed)
    for i, v in enumerate(out[col].tolist()):
        if v is not None and v not in ok:
            raise ManifestError(
                f"{where(i)}: column '{col}' value {v!r} is not allowed; allowed: {', '.join(allowed)}{hint}"
            )


def _resolve_label_map(
    src: io.StoragePath, label_map: Mapping[str, str] | str | os.PathLike | None, emobox: bool
) -> dict[str, str]:
    if isinstance(label_map, Mapping):
        return {str(k): str(v) for k, v in label_map.items()}
    if label_map is not None:
        file = io.storage_path(label_map)
        if not io.exists(file):
            raise ManifestError(f"label_map file not found: {file} (given for manifest {src})")
    else:
        candidates = [src.parent / LABEL_MAP_FILE] + ([src.parent.parent / LABEL_MAP_FILE] if emobox else [])
        file = next((c for c in candidates if io.exists(c)), None)
        if file is None:
            return {}
    try:
        data = json.loads(io.read_bytes(file).decode("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ManifestError(f"label_map {file}: cannot read JSON: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ManifestError(f"label_map {file}: must be a JSON object of raw label -> label strings")
    return {str(k): v for k, v in data.items()}


#: Columns whose every value must lie in one split: segments of one recording (or one show, campaign or
#: customer) in both train and test would let a model score on voices and rooms it trained on.
SPLIT_KEYS = ("recording", "group")


def check_split_leaks(manifest, source: str = "manifest", keys: Sequence[str] = SPLIT_KEYS) -> None:
    """Refuse a manifest where one ``recording`` or one ``group`` (each of ``keys``) has rows in more than one split.

    Args:
        manifest: the manifest DataFrame (``split`` already filled; rows without a value of a key are free).
        source: the manifest's name, for the message.
        keys: the columns whose every value must lie in one split (:data:`SPLIT_KEYS`); a pool of a run's labels
            checks the unit the run kept its evaluation sets apart by, and nothing for a run that let them share
            recordings (:mod:`ser_models.runs.run_labels`).

    Raises:
        PoolError: naming the column, up to three offending values with the splits found for each, and how many
            values straddle splits.
    """
    for col in keys:
        if col not in manifest.columns:
            continue
        rows = manifest.loc[manifest[col].notna(), [col, "split"]]
        splits = rows.groupby(col, sort=True)["split"].agg(lambda v: sorted(set(v)))
        leaks = splits[splits.map(len) > 1]
        if len(leaks):
            shown = "; ".join(f"{col} {name!r} in {', '.join(found)}" for name, found in leaks.head(3).items())
            raise PoolError(f"{source}: {len(leaks)} {col} value(s) have rows in more than one split ({shown}); "
                            f"one {col} must stay in one split (train, dev or test): fix the manifest's "
                            f"'split' column")
