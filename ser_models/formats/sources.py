"""What an export writes: our labelled ledger, segments, timelines or any manifest as one table of rows.

Every exporter reads one *export table*: ``utt_id``, ``path``, ``recording``, ``channel`` (0-based; -1 = the
channels averaged), ``start`` / ``end`` (seconds of the file; NaN = the whole file), ``label``, ``speaker``,
``language``, ``transcript``, ``split``, then whatever else the source holds (a ledger's ``purpose``, ``round``,
``annotator``; a segment's quality columns; a timeline's ``confidence`` and ``probs``).

* **ledger** (``labels/ledger.parquet``, or the run folder holding it): each labelled clip, joined by ``utt_id``
  with the prepared pool (``pool_dir``) for its file, recording, channel and times. The ledger's label wins.
* **timeline** (``timeline.parquet`` of ``jobs.predict recordings=...``): each predicted segment, ``label`` =
  the predicted class, with ``confidence`` and ``probs``; the files come from ``segments`` (default: the
  ``segments/segments.parquet`` beside the timeline).
* **manifest**: any manifest ``jobs.prepare_pool`` reads (``segments.parquet`` of ``jobs.segment`` included).
"""

from __future__ import annotations

import pandas as pd
import pyarrow.parquet as pq

from ser_models import io
from ser_models.data.ledger import LabelLedger
from ser_models.data.manifest import read_manifest
from ser_models.exceptions import ConfigError, ManifestError

SOURCES = ("ledger", "timeline", "manifest")
LEDGER_FILE = "labels/ledger.parquet"
_LEDGER_KEYS = {"utt_id", "label", "round", "oracle", "purpose"}
_POOL_COLUMNS = ["utt_id", "path", "recording", "channel", "start", "end", "speaker", "language", "corpus",
                 "split", "transcript", "group"]


def source_kind(path: str) -> tuple[str, str]:
    """``(kind, file)`` of an export's input: a ledger, a timeline or a manifest (from its columns)."""
    src = str(io.storage_path(path))
    if not src.endswith((".parquet", ".csv", ".tsv", ".jsonl", ".json", ".pq")):
        ledger = io.join(src, LEDGER_FILE)
        if io.exists(ledger):
            return "ledger", ledger
        raise ConfigError(f"input={path}: give a ledger, timeline or manifest file, or a run folder with "
                          f"{LEDGER_FILE}")
    if src.endswith((".parquet", ".pq")):

        fs, p = io.filesystem(src)
        names = set(pq.read_schema(p, filesystem=fs).names)
        if _LEDGER_KEYS <= names and "path" not in names:
            return "ledger", src
        if {"recording", "start", "end", "predicted"} <= names:
            return "timeline", src
    return "manifest", src


def export_table(path: str, *, pool_dir: str | None = None, segments: str | None = None) -> tuple[str, pd.DataFrame]:
    """``(kind, rows)``: the export table of a ledger, timeline or manifest (module docstring).

    Raises:
        ConfigError: a ledger without ``pool_dir``, a timeline whose segments cannot be found.
        ManifestError: ledger or timeline rows with no match in the pool or segments (naming a few).
    """
    kind, src = source_kind(path)
    if kind == "ledger":
        return kind, _ledger_rows(src, pool_dir)
    if kind == "timeline":
        return kind, _timeline_rows(src, segments)

    return kind, read_manifest(src)


def _ledger_rows(src: str, pool_dir: str | None) -> pd.DataFrame:
    from ser_models.data.pool import Pool

    if not pool_dir:
        raise ConfigError(f"input={src} is a label ledger: give the pool it labels as pool_dir=... (the files, "
                          "recordings and times come from there)")
    ledger = LabelLedger(src).labelled()
    if "time" in ledger.columns:
        ledger["time"] = ledger["time"].map(lambda t: None if pd.isna(t) else t.isoformat())
    meta = Pool.open(pool_dir).metadata(columns=_POOL_COLUMNS)
    rows = ledger.merge(meta, on="utt_id", how="left", suffixes=("", "_pool"))
    lost = rows.loc[rows["path"].isna(), "utt_id"].tolist()
    if lost:
        raise ManifestError(f"{src}: {len(lost)} labelled clip(s) are not in the pool {pool_dir}: {lost[:5]}")
    rows["channel"] = rows["channel"].astype("int64")
    first = [c for c in _POOL_COLUMNS if c in rows.columns] + ["label"]
    return rows[first + [c for c in rows.columns if c not in first]].reset_index(drop=True)


def _timeline_rows(src: str, segments: str | None) -> pd.DataFrame:
    seg_file = segments or io.join(str(io.storage_path(src).parent), "segments", "segments.parquet")
    if not io.exists(seg_file):
        raise ConfigError(f"input={src} is a timeline: give the segments manifest it was predicted on as "
                          f"segments=... ({seg_file} does not exist)")
    timeline = io.read_parquet(src).to_pandas()
    seg = io.read_parquet(seg_file).to_pandas()
    keep = [c for c in ("utt_id", "path", "speaker", "language", "split", "transcript") if c in seg.columns]
    rows = timeline.merge(seg[keep], on="utt_id", how="left")
    lost = rows.loc[rows["path"].isna(), "utt_id"].tolist()
    if lost:
        raise ManifestError(f"{src}: {len(lost)} timeline segment(s) are not in {seg_file}: {lost[:5]}")
    rows = rows.rename(columns={"predicted": "label"})
    rows["channel"] = rows["channel"].astype("int64")
    first = ["utt_id", "path", "recording", "channel", "start", "end", "label"]
    return rows[first + [c for c in rows.columns if c not in first]].reset_index(drop=True)


__all__ = ["SOURCES", "export_table", "source_kind"]
