"""ser_models.io: URI-safe paths and atomic writes (the S3 side runs in tests/integration/test_s3_storage.py)."""

from __future__ import annotations

import pyarrow as pa

from ser_models import io


def test_storage_paths_keep_uris_intact_and_make_local_paths_absolute(tmp_path, monkeypatch):
    run = io.storage_path("s3://bucket/runs/a/")
    assert run / "rounds" / "round=001" == "s3://bucket/runs/a/rounds/round=001"
    assert (run / "x.json").name == "x.json" and (run / "x.json").parent == "s3://bucket/runs/a"
    monkeypatch.chdir(tmp_path)
    assert io.storage_path("out/run") == str(tmp_path / "out" / "run")
    assert io.storage_path("file://" + str(tmp_path / "y")) == str(tmp_path / "y")


def test_atomic_writes_leave_only_the_target(tmp_path):
    table = pa.table({"utt_id": ["a", "b"], "x": [1, 2]})
    io.write_parquet_atomic(tmp_path / "d" / "t.parquet", table)
    io.write_bytes_atomic(tmp_path / "d" / "b.bin", b"\x00\x01")
    assert io.read_parquet(tmp_path / "d" / "t.parquet").equals(table)
    assert io.read_bytes(tmp_path / "d" / "b.bin") == b"\x00\x01"
    assert io.list_dir(tmp_path / "d") == ["b.bin", "t.parquet"]  # no temporary files left
    io.copy_dir(tmp_path / "d", tmp_path / "copy", last=("b.bin",))
    assert io.list_dir(tmp_path / "copy") == ["b.bin", "t.parquet"]
    io.delete_dir(tmp_path / "copy")
    io.delete_dir(tmp_path / "never")  # missing is fine
    assert not io.exists(tmp_path / "copy")
