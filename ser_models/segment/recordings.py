"""The recordings manifest: which long files to segment, and what each one is.

One row per file (CSV / TSV, Parquet or JSONL, as clip manifests). Columns:

==========  ========  ===================================================================================
column      required  meaning
==========  ========  ===================================================================================
path        yes       the file: a path relative to the manifest, an absolute path or a URI (``s3://``)
recording   no        the recording's id (default: the file name without extension; unique ignoring case)
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

from ser_models.data.manifest import SPLITS, RowLocator, check_allowed, read_table, resolve_paths, text_values
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.names import MAX_ID_CHARS, check_ids
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
    df, where = read_table(path, "recordings manifest")
    src = where.src
    if "path" not in df.columns:
        raise ManifestError(f"{src}: required column 'path' missing; columns found: {list(df.columns)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(df)))
    for col in RECORDING_COLUMNS:
        out[col] = text_values(df[col] if col in df.columns else None, col, len(df), keep_words=False)
    out["path"] = resolve_paths(out["path"], src.parent, where)
    missing = out["recording"].isna()
    out.loc[missing, "recording"] = [_stem(p) for p in out.loc[missing, "path"]]
    _check_recording_ids(out["recording"].tolist(), where, given="recording" in df.columns)
    for col in ("group", "speaker", "language", "corpus"):
        check_ids(out[col].tolist(), col, where.row, str(src))
    check_allowed(out, "split", SPLITS, where)
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


def _check_recording_ids(recordings: list[str], where: RowLocator, given: bool) -> None:
    """Refuse unusable or clashing recording ids, naming every offending row (the first ten) in one error.

    A recording id names its frames file (``frames/<key>/<recording>.parquet``, listed back to know which
    recordings are done) and starts its segments' ids, so it is held to :data:`_ID_OK` (ASCII letters, digits,
    ``.``, ``_``, ``-``; never starting with ``.`` or ``-``, so never ``..``) and at most ``MAX_ID_CHARS``
    characters. Ids equal up to case (``Ep1`` and ``ep1``) are refused as duplicates: on a case-insensitive
    file system (macOS, Windows, some mounted volumes) they would share one frames file.

    Raises:
        ManifestError: naming each bad row (``row 3 (line 4) 'a b'``) or each clash (``row 4 'Ep1' duplicates
            row 2 'ep1'``), and what to do.
    """
    bad, clash = [], []
    seen: dict[str, int] = {}
    for i, rec in enumerate(recordings):
        if not _ID_OK.match(rec) or len(rec) > MAX_ID_CHARS:
            bad.append(f"{where.row(i)} {rec!r}")
            continue
        key = rec.casefold()
        if key in seen:
            j = seen[key]
            clash.append(f"{where.row(i)} {rec!r} duplicates row {j + 1} {recordings[j]!r}")
        else:
            seen[key] = i
    problems = []
    if bad:
        problems.append(f"{len(bad)} recording id(s) must be 1 to {MAX_ID_CHARS} letters, digits, '.', '_' or '-', "
                        "starting with a letter or digit (they name files and segment ids)"
                        + ("" if given else "; give a 'recording' column") + ": " + "; ".join(bad[:10])
                        + (f"; and {len(bad) - 10} more" if len(bad) > 10 else ""))
    if clash:
        problems.append(f"{len(clash)} recording id(s) repeat an earlier one (ignoring case: they would share a "
                        "file on case-insensitive file systems)"
                        + ("" if given else "; two files share a name: add a 'recording' column") + ": "
                        + "; ".join(clash[:10]) + (f"; and {len(clash) - 10} more" if len(clash) > 10 else ""))
    if problems:
        raise ManifestError(f"{where.src}: column 'recording': " + "; ".join(problems))


def _stem(path: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name else name
    return re.sub(r"[^A-Za-z0-9._\-]", "_", stem) or "recording"


__all__ = ["RECORDING_COLUMNS", "read_recordings"]
