"""ser_models.io: URI-safe paths, atomic writes that an exception or a SIGKILL cannot tear, Parquet files that
read back whole, and folder swaps, on a local disk and on a real S3 endpoint (moto's server, no Ray)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pytest

from ser_models import io
from ser_models.exceptions import CheckpointError


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


# --- Interrupted writes: the previous version stays readable, on a local disk and on S3 ---------

V1 = pa.table({"utt_id": [f"u{i}" for i in range(500)], "label": ["neu"] * 500})
V2 = pa.table({"utt_id": [f"v{i}" for i in range(900)], "label": ["ang"] * 900})




def _parquet_bytes(table: pa.Table) -> bytes:
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@pytest.mark.parametrize("error", [KeyboardInterrupt, OSError])
def test_an_exception_mid_write_leaves_the_previous_version_and_no_temporary_object(store, error):
    """The reported bug: a KeyboardInterrupt half-way through a ledger write on S3 published a 104-byte
    ledger.parquet (the stream's close() completes the upload while the exception unwinds)."""
    target = f"{store}/labels/ledger.parquet"
    io.write_parquet_atomic(target, V1)
    new = _parquet_bytes(V2)

    def half_then_fail(fh):
        fh.write(new[: len(new) // 2])
        raise error("interrupted mid-write")

    with pytest.raises(error):
        io._write_atomic(target, half_then_fail)
    assert io.read_parquet(target).equals(V1)
    assert io.parquet_problem(target) is None
    assert io.list_files(store) == ["labels/ledger.parquet"]  # no temporary file or key left behind


def test_a_write_to_a_new_key_that_fails_leaves_nothing(store):
    def fail(fh):
        fh.write(b"PAR1 half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        io._write_atomic(f"{store}/d/new.parquet", fail)
    assert not io.exists(f"{store}/d/new.parquet") and io.list_files(store) == []


_SLOW_WRITER = """
import sys, time
from pathlib import Path
import pyarrow as pa
from ser_models import io

target, ready, mode = sys.argv[1:4]
data = io.read_bytes(sys.argv[4])
def slow(fh):
    fh.write(data[: len(data) // 2])
    Path(ready).touch()  # the parent kills us now, half-way through the object
    time.sleep(600)
    fh.write(data[len(data) // 2:])
io._write_atomic(target, slow if mode == "slow" else (lambda fh: fh.write(data)))
"""


@pytest.mark.parametrize("moment", ["mid_stream", "before_publish"])
def test_a_sigkill_mid_write_leaves_the_previous_version(store, tmp_path, moment):
    """A writer killed half-way through its stream, or with the new version complete but not yet published
    (the ``atomic_write_before_publish`` failpoint), leaves the previous version readable."""
    target = f"{store}/frames/rec.parquet"
    io.write_parquet_atomic(target, V1)
    io.write_parquet_atomic(tmp_path / "v2.parquet", V2)
    ready = tmp_path / "ready"
    env = {**os.environ, **({"SER_FAILPOINT": "atomic_write_before_publish"} if moment == "before_publish" else {})}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, target, str(ready),
                             "slow" if moment == "mid_stream" else "fast", str(tmp_path / "v2.parquet")], env=env)
    try:
        if moment == "mid_stream":
            deadline = time.monotonic() + 120  # start-up on a busy 2-core machine; never reached when healthy
            while not ready.exists():
                assert proc.poll() is None, f"the writer exited ({proc.returncode}) before writing"
                assert time.monotonic() < deadline, "the writer never reached the middle of its write"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert io.read_parquet(target).equals(V1)
    visible = [f for f in io.list_files(store) if not f.rsplit("/", 1)[-1].startswith(".")]
    assert visible == ["frames/rec.parquet"]  # at most a hidden temporary file beside it


def test_parquet_problem_finds_a_file_cut_at_any_byte(store):
    whole = _parquet_bytes(V2)
    io.write_bytes_atomic(f"{store}/whole.parquet", whole)
    assert io.parquet_problem(f"{store}/whole.parquet") is None
    assert io.parquet_problem(f"{store}/missing.parquet") == "missing"
    for cut in (0, 4, 104, len(whole) // 2, len(whole) - 9, len(whole) - 1):
        io.write_bytes_atomic(f"{store}/cut.parquet", whole[:cut])
        assert io.parquet_problem(f"{store}/cut.parquet") is not None, cut
    # Whole footer, data cut out of the middle: the footer's column extents no longer fit in the file.
    footer = int.from_bytes(whole[-8:-4], "little") + 8
    io.write_bytes_atomic(f"{store}/holed.parquet", whole[:4] + whole[-footer:])
    assert "runs past" in io.parquet_problem(f"{store}/holed.parquet")


# --- Folder swaps (checkpoints): a kill between the steps leaves one complete version ----------------------

_SWAPPER = """
import sys
from ser_models import io
io.replace_dir(sys.argv[1], sys.argv[2], "model.json")
"""


def _version(folder: str, v: int) -> None:
    io.write_bytes_atomic(f"{folder}/model.safetensors", f"weights {v}".encode())
    io.write_json_atomic(f"{folder}/model.json", {"version": v})  # the completion marker, last


def _read_version(folder: str) -> int:
    version = io.read_json(f"{folder}/model.json")["version"]
    assert io.read_bytes(f"{folder}/model.safetensors") == f"weights {version}".encode()  # a matching pair
    return version


@pytest.mark.parametrize(("failpoint", "survivor"), [("replace_dir_staged", 1), ("replace_dir_old_removed", 2)])
def test_a_kill_during_a_folder_swap_leaves_one_complete_version(store, failpoint, survivor):
    ckpt, new = f"{store}/run/checkpoint", f"{store}/new"
    _version(ckpt, 1)
    _version(new, 2)
    proc = subprocess.run([sys.executable, "-c", _SWAPPER, new, ckpt], timeout=120,
                          env={**os.environ, "SER_FAILPOINT": failpoint})
    assert proc.returncode == -signal.SIGKILL
    found = io.complete_dir(ckpt, "model.json")
    assert found is not None and _read_version(found) == survivor
    io.finish_dir_swap(ckpt, "model.json")  # what the next writer does first
    assert _read_version(ckpt) == survivor
    assert io.list_dir(f"{store}/run") == ["checkpoint"]  # the staging folder is gone
    io.replace_dir(new, ckpt, "model.json")  # and the next swap goes through
    assert _read_version(ckpt) == 2 and io.list_dir(f"{store}/run") == ["checkpoint"]


def test_replace_dir_never_publishes_an_incomplete_version(store):
    ckpt, half = f"{store}/checkpoint", f"{store}/half"
    _version(ckpt, 1)
    io.write_bytes_atomic(f"{half}/model.safetensors", b"weights 2")  # no model.json: not complete
    with pytest.raises(CheckpointError, match="model.json"):
        io.replace_dir(half, ckpt, "model.json")
    assert _read_version(ckpt) == 1


def test_an_atomic_write_gets_the_mode_a_plain_write_would(tmp_path):
    """mkstemp's 0600 would hide a clip or a pool's summary from a teammate or a Label Studio server."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"x")
    io.write_bytes_atomic(tmp_path / "atomic", b"x")
    assert (tmp_path / "atomic").stat().st_mode & 0o777 == plain.stat().st_mode & 0o777


def test_a_swap_never_replaces_a_folder_the_platform_did_not_write(store):
    """A ``checkpoint/`` of the user's own (files, but no marker) in an output folder is refused, never deleted."""
    from ser_models.exceptions import ForeignFolderError

    dst, src = f"{store}/run/checkpoint", f"{store}/staging"
    io.write_bytes_atomic(f"{dst}/thesis.txt", b"mine")
    io.write_bytes_atomic(f"{src}/weights.bin", b"new")
    io.write_bytes_atomic(f"{src}/model.json", b"{}")
    with pytest.raises(ForeignFolderError, match=r"checkpoint holds thesis.txt but no model.json"):
        io.replace_dir(src, dst, "model.json")
    assert io.read_bytes(f"{dst}/thesis.txt") == b"mine"
    io.fs_delete(f"{dst}/thesis.txt")
    io.replace_dir(src, dst, "model.json")  # an empty folder (or none) is fine
    assert io.read_bytes(f"{dst}/weights.bin") == b"new"


def test_a_swap_over_a_link_replaces_the_link_and_leaves_what_it_points_at(tmp_path):
    """A checkpoint folder that is a link to a shared model: the swap deleted model.json inside the link's
    target, and the shared model no longer loaded."""
    shared = tmp_path / "shared_model"
    shared.mkdir()
    (shared / "model.json").write_text('{"shared": true}')
    (shared / "weights.bin").write_bytes(b"w" * 64)
    ckpt = tmp_path / "run" / "checkpoint"
    ckpt.parent.mkdir()
    ckpt.symlink_to(shared, target_is_directory=True)
    new = tmp_path / "new"
    new.mkdir()
    (new / "model.json").write_text('{"new": true}')
    io.replace_dir(new, ckpt, "model.json")
    assert (shared / "model.json").read_text() == '{"shared": true}' and (shared / "weights.bin").exists()
    assert not ckpt.is_symlink() and (ckpt / "model.json").read_text() == '{"new": true}'


def test_delete_dir_removes_a_link_as_a_link(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    (tmp_path / "link").symlink_to(target, target_is_directory=True)
    io.delete_dir(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link") and (target / "keep.txt").read_text() == "keep"


def test_an_atomic_write_makes_its_new_folders_durable(tmp_path, monkeypatch):
    """Every folder an atomic write creates has its parent fsynced (a power cut keeps the path to the file)."""
    synced = []
    real = io.fsync_dir
    monkeypatch.setattr(io, "fsync_dir", lambda p: (synced.append(str(p)), real(p)))
    io.write_bytes_atomic(tmp_path / "a" / "b" / "f.json", b"{}")
    assert str(tmp_path) in synced and str(tmp_path / "a") in synced and str(tmp_path / "a" / "b") in synced
