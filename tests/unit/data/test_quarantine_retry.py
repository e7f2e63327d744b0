"""A quarantined clip is decoded again when its file is replaced (and only then): the rule prepare_pool's
update applies to the quarantine (``ser_models.data.pool_update.changed_quarantine``), and how the pool's
quarantine file is read back (``read_quarantine``, ``replaced_quarantine``)."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_models.data import pool_update
from ser_models.data.pool import QUARANTINE_FILE_SCHEMA, QUARANTINE_SCHEMA, Pool
from ser_models.data.pool_update import changed_quarantine, read_quarantine, replaced_quarantine


def _quarantine(tmp_path, names):
    """Quarantine rows as the pool stores them: each clip's path and its file's size and mtime then."""
    rows = []
    for name in names:
        path = tmp_path / f"{name}.wav"
        path.write_bytes(b"not audio")
        st = os.stat(path)
        rows.append({"utt_id": name, "path": str(path), "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns})
    q = pd.DataFrame(rows)
    return q, q.set_index("utt_id")[["path"]]


def test_a_quarantined_clip_whose_file_was_replaced_is_decoded_again(tmp_path):
    q, manifest = _quarantine(tmp_path, ["bad", "still_bad", "moved"])
    assert changed_quarantine(q, manifest) == []  # nothing changed: nothing is decoded again
    good = tmp_path / "bad.wav"
    good.write_bytes(b"RIFF now a longer, repaired file")  # replaced by a good file
    os.utime(good, ns=(q.loc[0, "source_mtime_ns"] + 10**9,) * 2)
    (tmp_path / "elsewhere.wav").write_bytes(b"not audio")
    manifest.loc["moved", "path"] = str(tmp_path / "elsewhere.wav")  # the manifest points it at another file
    assert changed_quarantine(q, manifest) == ["bad", "moved"]


def test_a_file_rewritten_with_the_same_size_counts_by_its_mtime(tmp_path):
    q, manifest = _quarantine(tmp_path, ["bad"])
    os.utime(tmp_path / "bad.wav", ns=(q.loc[0, "source_mtime_ns"] + 5,) * 2)
    assert changed_quarantine(q, manifest) == ["bad"]


# --- the pool's quarantine file: read_quarantine and replaced_quarantine -------------------------------------




def _write_quarantine(root, build, q, schema=QUARANTINE_FILE_SCHEMA):
    (root / build).mkdir(parents=True, exist_ok=True)
    rows = q.assign(reason="decode_error", detail="not a RIFF file").to_dict("records")
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / build / "quarantine.parquet")


def test_a_quarantined_clip_whose_file_was_replaced_is_found_from_the_quarantine_alone(tmp_path):
    q, _ = _quarantine(tmp_path, ["bad", "still_bad"])
    _write_quarantine(tmp_path / "pool", "build-a", q)
    pool = Pool(str(tmp_path / "pool"), {"build": "build-a", "quarantine": "build-a/quarantine.parquet"})
    assert replaced_quarantine(pool) == []
    (tmp_path / "bad.wav").write_bytes(b"RIFF now a longer, repaired file")
    assert replaced_quarantine(pool) == ["bad"]


def test_the_quarantine_reads_with_its_source_signature_exact(tmp_path):
    q, _ = _quarantine(tmp_path, ["bad"])
    q.loc[0, "source_mtime_ns"] = 1_700_000_000_123_456_789  # not a float64 value
    _write_quarantine(tmp_path / "pool", "build-a", q)
    read = read_quarantine(Pool(str(tmp_path / "pool"), {"build": "build-a"}))  # the build's quarantine.parquet
    assert list(read.columns) == QUARANTINE_FILE_SCHEMA.names
    assert read.to_dict("records") == [{"utt_id": "bad", "path": q.loc[0, "path"], "reason": "decode_error",
                                        "detail": "not a RIFF file", "source_size": 9,
                                        "source_mtime_ns": 1_700_000_000_123_456_789}]
    assert str(read["source_mtime_ns"].dtype) == "Int64"


def test_a_quarantine_written_before_source_signatures_reads_with_them_missing(tmp_path):
    q, _ = _quarantine(tmp_path, ["bad", "worse"])
    _write_quarantine(tmp_path / "pool", "build-a", q[["utt_id", "path"]], schema=QUARANTINE_SCHEMA)
    pool = Pool(str(tmp_path / "pool"), {"build": "build-b", "quarantine": "build-a/quarantine.parquet"})
    read = read_quarantine(pool)
    assert list(read.columns) == QUARANTINE_FILE_SCHEMA.names
    assert read["utt_id"].tolist() == ["bad", "worse"] and read["reason"].tolist() == ["decode_error"] * 2
    assert read["source_size"].isna().all() and read["source_mtime_ns"].isna().all()
    assert str(read["source_size"].dtype) == "Int64" and str(read["source_mtime_ns"].dtype) == "Int64"
    assert replaced_quarantine(pool) == ["bad", "worse"]  # no signature to compare: decoded again


def test_the_quarantine_is_read_through_the_pools_filesystem(tmp_path, monkeypatch):
    """A pool on an object store: its paths are the store's keys, never local paths."""
    q, _ = _quarantine(tmp_path, ["bad"])
    _write_quarantine(tmp_path / "bucket" / "pool", "build-a", q)
    real = pool_update.filesystem

    def store(uri):
        uri = str(uri)
        if uri.startswith("store://"):
            return pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem()), uri[len("store://"):]
        return real(uri)

    monkeypatch.setattr(pool_update, "filesystem", store)
    read = read_quarantine(Pool("store://bucket/pool", {"build": "build-a"}))
    assert read["utt_id"].tolist() == ["bad"] and read["source_size"].tolist() == [9]
