"""The recordings manifest: which long files to segment, and what each one is.

One row per file (CSV / TSV, Parquet or JSONL, as clip manifests). Columns:

==========  ========  ===================================================================================
column      required  meaning
==========  ========  ===================================================================================
path        yes       the file: a path relative to the manifest, an absolute path or a URI (``s3://``)
recording   no        the recording's id (default: the file name without extension; must be unique)
group       no        show, campaign or customer: splits never cross it
speaker     no        the speaker, when one person speaks throughout (else leave it empty)
split       no        ``train`` / ``dev`` / ``test`` for every segment of the recording
language    no        language code
corpus      no        corpus name
channel     no        ``split``, ``mix`` or a channel number: overrides the job's ``channels`` for this file
==========  ========  ===================================================================================

Other columns are copied to every segment of the recording.
"""

from __future__ import annotations

import os
import re

import pandas as pd

from ser_models import io
from ser_models.data.manifest import SPLITS, _check_allowed, _read_table, _resolve_paths, _texts, _Where
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.segment.streams import check_channels

RECORDING_COLUMNS = ("path", "recording", "group", "speaker", "split", "language", "corpus", "channel")
_ID_OK = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")


def read_recordings(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a recordings manifest (see the module docstring).

    Returns:
        One row per recording: :data:`RECORDING_COLUMNS` (text, ``None`` when missing; ``channel`` ``None``
        = the job's policy), then the file's other columns.

    Raises:
        ManifestError: unreadable file, no ``path`` column, an empty path, a duplicate or unusable recording
            id, a bad split or channel (each names the file, row, column and value).
    """
    src = io.storage_path(path)
    if not io.exists(src):
        raise ManifestError(f"recordings manifest not found: {src}")
    ext = os.path.splitext(src.name)[1].lower()
    df = _read_table(src, ext)
    if len(df) == 0:
        raise ManifestError(f"{src}: recordings manifest has no rows")
    df.columns = [str(c).strip() for c in df.columns]
    if "path" not in df.columns:
        raise ManifestError(f"{src}: required column 'path' missing; columns found: {list(df.columns)}")
    where = _Where(src, ext)
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in RECORDING_COLUMNS:
        out[col] = _texts(df[col] if col in df.columns else None, col, len(df), keep_words=False)
    out["path"] = _resolve_paths(out["path"], src.parent, where)
    missing = out["recording"].isna()
    out.loc[missing, "recording"] = [_stem(p) for p in out.loc[missing, "path"]]
    seen: dict[str, int] = {}
    for i, rec in enumerate(out["recording"].tolist()):
        if not _ID_OK.match(rec):
            raise ManifestError(f"{where(i)}: recording id {rec!r} must be letters, digits, '.', '_' or '-' "
                                "(it names files and segment ids); give a 'recording' column")
        if rec in seen:
            hint = "" if "recording" in df.columns else " (two files share a name: add a 'recording' column)"
            raise ManifestError(f"{where(i)}: recording {rec!r} duplicates row {seen[rec] + 1}{hint}")
        seen[rec] = i
    _check_allowed(out, "split", SPLITS, where)
    for i, ch in enumerate(out["channel"].tolist()):
        if ch is not None:
            try:
                check_channels(ch)
            except ConfigError as exc:
                raise ManifestError(f"{where(i)}: column 'channel': {exc}") from None
    for col in df.columns:
        if col not in RECORDING_COLUMNS:
            out[col] = df[col].to_numpy()
    return out


def _stem(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return re.sub(r"[^A-Za-z0-9._\-]", "_", stem) or "recording"


__all__ = ["RECORDING_COLUMNS", "read_recordings"]
