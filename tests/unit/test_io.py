"""ser_models.io: URI-safe paths, atomic writes that an exception or a SIGKILL cannot tear, Parquet files that
read back whole, and folder swaps, on a local disk and on a real S3 endpoint (moto's server, no Ray).

The second half follows the atomic writes, folder copies and folder swaps step by step: what sits on the disk or
the store after each step, after a kill between steps (failpoints, in a child process) and after the next writer
finishes an interrupted swap; the exact errors and progress lines; and the fsyncs that make a swap durable."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from _stores import PassThroughStore

from ser_models import io
from ser_models.exceptions import CheckpointError, ForeignFolderError
from ser_models.failpoints import FAILPOINT_ENV


def test_storage_paths_keep_uris_intact_and_make_local_paths_absolute(tmp_path, monkeypatch):
    run = io.storage_path("s3://bucket/runs/a/")
    assert run / "rounds" / "round=001" == "s3://bucket/runs/a/rounds/round=001"
    assert (run / "x.json").name == "x.json" and (run / "x.json").parent == "s3://bucket/runs/a"
    monkeypatch.chdir(tmp_path)
    assert io.storage_path("out/run") == str(tmp_path / "out" / "run")
    assert io.storage_path("file://" + str(tmp_path / "y")) == str(tmp_path / "y")


def test_a_file_uri_is_parsed_as_a_url_localhost_is_this_machine_and_another_host_is_refused(tmp_path):
    """``file://localhost/abs/path`` was read as the relative path ``localhost/abs/path``."""
    from ser_models.exceptions import ConfigError

    (tmp_path / "a b.txt").write_text("here")
    for uri in (f"file://{tmp_path}/a b.txt", f"file://localhost{tmp_path}/a%20b.txt",
                f"file://LOCALHOST{tmp_path}/a b.txt", f"file://{tmp_path}/a%20b.txt"):
        assert io.local_path(uri) == tmp_path / "a b.txt"
        assert io.storage_path(uri) == str(tmp_path / "a b.txt")
        assert io.read_bytes(uri) == b"here" and io.exists(uri)
    for uri in ("file://fileserver/share/a.wav", "file://10.0.0.5/data/a.wav"):
        assert io.is_local(uri)  # a file URI, of another machine
        with pytest.raises(ConfigError, match="another host|of the host") as err:
            io.storage_path(uri)
        assert uri in str(err.value) and "file://localhost/abs/path" in str(err.value)


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


# --- Step by step ------------------------------------------------------------------------------------------------

MARKER = "model.json"
OLD = {"model.safetensors": b"weights 1", MARKER: b'{"version": 1}'}
NEW = {"model.safetensors": b"weights 2", "tokenizer/vocab.txt": b"a b c", MARKER: b'{"version": 2}'}


@pytest.fixture(autouse=True)
def _no_failpoint_armed(monkeypatch):
    """``SER_FAILPOINT`` set to name no failpoint: a failpoint that fired with the variable unset would kill pytest
    itself rather than fail a test (test_an_unarmed_failpoint_never_fires runs that case in a child process)."""
    monkeypatch.setenv(FAILPOINT_ENV, "")


def _python(code: str, *args: str, failpoint: str | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter, with ``failpoint`` armed (or none)."""
    env = {k: v for k, v in os.environ.items() if k != FAILPOINT_ENV}
    if failpoint:
        env[FAILPOINT_ENV] = failpoint
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)


def _write(folder: str | os.PathLike, files: dict[str, bytes]) -> None:
    """Write a version's files, the marker last (as the platform does)."""
    for rel in sorted(files, key=lambda rel: rel == MARKER):
        io.write_bytes_atomic(io.join(folder, rel), files[rel])


def _files(folder: str | os.PathLike) -> dict[str, bytes]:
    return {rel: io.read_bytes(io.join(folder, rel)) for rel in io.list_files(folder)}


def _swap_paths(store: str) -> tuple[str, str, str]:
    """The run folder, the checkpoint folder in it, and the checkpoint's staging sibling."""
    run = f"{store}/run"
    return run, f"{run}/checkpoint", f"{run}/.checkpoint.incoming"


# --- Atomic writes ---------------------------------------------------------------------------------------------


def test_write_file_atomic_streams_a_local_file_to_the_target(store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a path taken from the wrong argument would land here, never at the target
    monkeypatch.setattr(io, "STREAM_COPY_CHUNK", 4096)  # several pieces
    source = tmp_path / "upload.bin"
    data = os.urandom(10_000)
    source.write_bytes(data)
    target = f"{store}/run/model.safetensors"
    io.write_bytes_atomic(target, b"previous version")
    io.write_file_atomic(target, source)
    assert io.read_bytes(target) == data
    assert io.list_files(f"{store}/run") == ["model.safetensors"]  # no temporary file or key left
    assert source.read_bytes() == data
    assert sorted(os.listdir(tmp_path)) == (["store", "upload.bin"] if io.is_local(store) else ["upload.bin"])


def test_write_json_atomic_writes_sorted_keys_indented_by_two_with_numpy_values_as_numbers(tmp_path):
    obj = {"b": np.int64(3), "a": {"y": np.float32(0.5), "x": Path("/models/enc")}, "c": np.arange(2)}
    io.write_json_atomic(tmp_path / "meta.json", obj)
    assert (tmp_path / "meta.json").read_text() == (
        '{\n  "a": {\n    "x": "/models/enc",\n    "y": 0.5\n  },\n  "b": 3,\n  "c": [\n    0,\n    1\n  ]\n}\n')
    assert os.listdir(tmp_path) == ["meta.json"]


_WRITE = "import sys; from ser_models import io; io.write_bytes_atomic(sys.argv[1], b'new version')"


def test_a_kill_before_publish_leaves_the_old_bytes_and_one_hidden_temporary_file_beside_the_target(store):
    """The new version is written whole to a hidden ``.ser-tmp-<name>.<random>.tmp`` in the target's own folder (never
    ending in the target's extension) before it is published."""
    target = f"{store}/labels/ledger.parquet"
    io.write_bytes_atomic(target, b"old version")
    proc = _python(_WRITE, target, failpoint="atomic_write_before_publish")
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert io.read_bytes(target) == b"old version"
    files = io.list_files(f"{store}/labels")
    assert len(files) == 2 and files[1] == "ledger.parquet", files
    assert re.fullmatch(r"\.ser-tmp-ledger\.parquet\.\w+\.tmp", files[0]), files
    assert io.read_bytes(f"{store}/labels/{files[0]}") == b"new version"


def test_a_failed_write_whose_temporary_file_is_already_gone_raises_the_writers_own_error(tmp_path):
    def write_then_fail(fh):
        fh.write(b"half")
        for name in os.listdir(tmp_path):  # a clean-up of stale temporary files ran meanwhile
            (tmp_path / name).unlink()
        raise OSError("No space left on device")

    with pytest.raises(OSError, match=r"^No space left on device$"):
        io._write_atomic(tmp_path / "ledger.parquet", write_then_fail)
    assert os.listdir(tmp_path) == []


_EVERY_FAILPOINT = """
import sys
from ser_models import io
io.COPY_OBJECT_LIMIT, io.STREAM_COPY_CHUNK = 1000, 4096  # the weights are published by a streamed copy on S3
for root in sys.argv[1:]:
    io.write_bytes_atomic(f"{root}/new/model.safetensors", b"w" * 5000)
    io.write_bytes_atomic(f"{root}/new/model.json", b"{}")
    io.replace_dir(f"{root}/new", f"{root}/checkpoint", "model.json")
print("done")
"""


def test_an_unarmed_failpoint_never_fires(s3_bucket, tmp_path):
    """With ``SER_FAILPOINT`` unset, every failpoint of a write, a streamed copy and a swap lets the process live."""
    proc = _python(_EVERY_FAILPOINT, str(tmp_path), s3_bucket)
    assert (proc.returncode, proc.stdout) == (0, "done\n"), proc.stderr
    for root in (str(tmp_path), s3_bucket):
        assert _files(f"{root}/checkpoint") == {"model.safetensors": b"w" * 5000, MARKER: b"{}"}


# --- Streamed copies of large objects ---------------------------------------------------------------------------

_STREAM_COPY = """
import sys
import pyarrow.fs as pafs
from ser_models import io
io.COPY_OBJECT_LIMIT, io.STREAM_COPY_CHUNK = 1000, 4096
io.copy_object(pafs.LocalFileSystem(), sys.argv[1], sys.argv[2])
"""


def test_a_streamed_copy_moves_one_chunk_at_a_time(tmp_path):
    """Killed after its first piece, the copy has written exactly one ``STREAM_COPY_CHUNK`` (a local store shows
    the bytes at once): the object is never read whole into memory."""
    data = os.urandom(50_000)
    (tmp_path / "big.bin").write_bytes(data)
    proc = _python(_STREAM_COPY, str(tmp_path / "big.bin"), str(tmp_path / "copy.bin"), failpoint="stream_copy_mid")
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert (tmp_path / "copy.bin").read_bytes() == data[:4096]


class _FirstPieceOnly:
    """An output stream that keeps its first write and loses the rest (a store that drops bytes)."""

    closed = False

    def __init__(self, out):
        self.out, self.wrote = out, False

    def write(self, data):
        if not self.wrote:
            self.out.write(data)
            self.wrote = True
        return len(data)

    def flush(self):
        pass

    def close(self):
        self.out.close()
        self.closed = True


class _FaultyStore(PassThroughStore):
    """The local disk, except that reads end early (``short_read``: after 3 pieces) or written objects lose all
    but their first piece (``lost_bytes``)."""

    def __init__(self, fault: str):
        super().__init__(pafs.LocalFileSystem())
        self.fault = fault

    def open_input_stream(self, path):
        with self.real.open_input_stream(path) as fh:
            data = fh.read()
        return pa.BufferReader(data[: 3 * 4096] if self.fault == "short_read" else data)

    def open_output_stream(self, path, metadata):
        out = self.real.open_output_stream(path)
        return pa.PythonFile(_FirstPieceOnly(out), mode="w") if self.fault == "lost_bytes" else out

    def get_type_name(self):
        return f"faulty-{self.fault}"


@pytest.mark.parametrize(("fault", "problem"), [("short_read", "the source ended after 12288 bytes"),
                                                ("lost_bytes", "the store holds 4096 bytes")])
def test_a_streamed_copy_that_comes_out_short_is_refused_and_leaves_nothing(tmp_path, monkeypatch, fault, problem):
    monkeypatch.setattr(io, "COPY_OBJECT_LIMIT", 1000)
    monkeypatch.setattr(io, "STREAM_COPY_CHUNK", 4096)
    src, dst = str(tmp_path / "scores.bin"), str(tmp_path / "copy.bin")
    Path(src).write_bytes(os.urandom(50_000))
    with pytest.raises(OSError) as err:
        io.copy_object(pafs.PyFileSystem(_FaultyStore(fault)), src, dst)
    assert str(err.value) == f"copying {src} (50000 bytes) to {dst}: {problem}"
    assert sorted(os.listdir(tmp_path)) == ["scores.bin"]  # the short object was deleted


# --- Folder copies ---------------------------------------------------------------------------------------------

TREE = {MARKER: b"{}", "Xlsr.bin": b"x" * 10, "tokenizer/vocab.txt": b"a b", "tokenizer/deep/merges.txt": b"m"}


def test_copy_dir_copies_every_file_of_a_tree_from_a_disk_to_a_store_and_back(s3_bucket, tmp_path):
    for rel, data in TREE.items():
        (tmp_path / "src" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / rel).write_bytes(data)
    io.copy_dir(tmp_path / "src", f"{s3_bucket}/ckpt", last=(MARKER,))
    assert _files(f"{s3_bucket}/ckpt") == TREE
    io.copy_dir(f"{s3_bucket}/ckpt", tmp_path / "back", last=(MARKER,))
    assert _files(tmp_path / "back") == TREE


_COPY_DIR = "import sys; from ser_models import io; io.copy_dir(sys.argv[1], sys.argv[2], last=('model.json',))"


def test_copy_dir_within_one_store_copies_server_side(s3_bucket):
    """Within one store the bytes never pass through this process: no atomic write (nor its failpoint) runs."""
    _write(f"{s3_bucket}/a", TREE)
    proc = _python(_COPY_DIR, f"{s3_bucket}/a", f"{s3_bucket}/b", failpoint="atomic_write_before_publish")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert _files(f"{s3_bucket}/b") == TREE


def test_copy_dir_copies_the_files_named_last_after_all_others(tmp_path):
    """A copy that stops part-way (here the weights cannot be written over a folder) never wrote the marker."""
    _write(tmp_path / "src", OLD)
    (tmp_path / "dst" / "model.safetensors").mkdir(parents=True)
    with pytest.raises(IsADirectoryError):
        io.copy_dir(tmp_path / "src", tmp_path / "dst", last=(MARKER,))
    assert os.listdir(tmp_path / "dst") == ["model.safetensors"]  # no marker, no temporary file


# --- Folder swaps ----------------------------------------------------------------------------------------------


def test_a_staged_version_is_published_by_commit_or_discarded_by_abort(store):
    run, dst, incoming = _swap_paths(store)
    _write(dst, OLD)
    staged = io.begin_dir_swap(dst, MARKER)
    assert staged == incoming and not io.exists(staged)
    _write(staged, NEW)
    io.commit_dir_swap(dst, MARKER)
    assert _files(dst) == NEW and io.list_dir(run) == ["checkpoint"]

    staged = io.begin_dir_swap(dst, MARKER)
    io.write_bytes_atomic(f"{staged}/model.safetensors", b"weights 3")  # the writer fails before its marker
    io.abort_dir_swap(dst, MARKER)
    assert _files(dst) == NEW and io.list_dir(run) == ["checkpoint"]


def test_commit_dir_swap_refuses_a_staged_version_without_its_marker(store):
    run, dst, incoming = _swap_paths(store)
    _write(dst, OLD)
    io.write_bytes_atomic(f"{io.begin_dir_swap(dst, MARKER)}/model.safetensors", b"weights 2")
    with pytest.raises(CheckpointError) as err:
        io.commit_dir_swap(dst, MARKER)
    assert str(err.value) == f"{incoming} has no model.json: refusing to replace {dst} with an incomplete version"
    assert _files(dst) == OLD
    io.abort_dir_swap(dst, MARKER)
    assert io.list_dir(run) == ["checkpoint"]


@pytest.fixture
def deletions(monkeypatch):
    """Every folder deletion, with what the folder held as it began: (folder, marker there, the other files)."""
    seen = []
    real = io.delete_dir

    def recording(uri):
        files = io.list_files(uri)
        seen.append((str(uri), MARKER in files, [f for f in files if f != MARKER]))
        real(uri)

    monkeypatch.setattr(io, "delete_dir", recording)
    return seen


def test_a_version_loses_its_marker_before_any_other_file(store, deletions):
    """Old versions and staged ones are deleted marker first, so a deletion cut short never leaves a folder that
    looks complete: when the rest of a folder starts to go, its marker is gone already."""
    run, dst, incoming = _swap_paths(store)
    _write(dst, OLD)
    _write(io.begin_dir_swap(dst, MARKER), NEW)  # killed at replace_dir_staged: two complete versions
    io.finish_dir_swap(dst, MARKER)  # keeps the old one
    assert deletions == [(incoming, False, ["model.safetensors", "tokenizer/vocab.txt"])]
    assert _files(dst) == OLD

    deletions.clear()
    io.write_bytes_atomic(f"{io.begin_dir_swap(dst, MARKER)}/model.safetensors", b"weights 3")
    io.write_bytes_atomic(f"{incoming}/{MARKER}", b"{}")  # the writer fails after its marker
    io.abort_dir_swap(dst, MARKER)
    assert deletions == [(incoming, False, ["model.safetensors"])]

    deletions.clear()
    _write(io.begin_dir_swap(dst, MARKER), NEW)
    io.commit_dir_swap(dst, MARKER)
    staged_left = [] if io.is_local(store) else ["model.safetensors", "tokenizer/vocab.txt"]  # a rename vs a copy
    assert deletions == [(dst, False, ["model.safetensors"]), (incoming, False, staged_left)]
    assert _files(dst) == NEW and io.list_dir(run) == ["checkpoint"]


def test_a_local_publish_syncs_every_staged_file_and_the_folder_that_holds_the_new_version(tmp_path, monkeypatch):
    run, dst, _ = _swap_paths(str(tmp_path))
    _write(dst, OLD)
    _write(io.begin_dir_swap(dst, MARKER), NEW)
    synced, synced_dirs = set(), []
    real_fsync, real_fsync_dir = os.fsync, io.fsync_dir

    def fsync(fd):
        st = os.fstat(fd)
        synced.add((st.st_dev, st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(io, "fsync_dir", lambda path: (synced_dirs.append(str(path)), real_fsync_dir(path)))
    io.commit_dir_swap(dst, MARKER)
    published = {(st.st_dev, st.st_ino) for f in Path(dst).rglob("*") if f.is_file() for st in [f.stat()]}
    assert len(published) == len(NEW) and published <= synced  # a rename keeps each file's inode
    assert synced_dirs == [run]


def test_complete_dir_finds_only_a_folder_that_holds_its_marker(store):
    _, dst, incoming = _swap_paths(store)
    io.write_bytes_atomic(f"{dst}/model.safetensors", b"weights 1")
    io.write_bytes_atomic(f"{incoming}/model.safetensors", b"weights 2")
    assert io.complete_dir(dst, MARKER) is None
    io.write_bytes_atomic(f"{incoming}/{MARKER}", b"{}")
    assert io.complete_dir(dst, MARKER) == incoming
    io.write_bytes_atomic(f"{dst}/{MARKER}", b"{}")
    assert io.complete_dir(dst, MARKER) == dst


def test_finish_dir_swap_puts_a_complete_staged_version_in_place_of_a_half_deleted_one(store, capsys):
    run, dst, incoming = _swap_paths(store)
    _write(dst, {"model.safetensors": b"weights 1", "optimizer.bin": b"only in 1"})  # its marker went first
    _write(incoming, NEW)
    io.finish_dir_swap(dst, MARKER)
    assert capsys.readouterr().out == (
        f"{dst}: finishing a replacement that was interrupted (the new version in {incoming} is complete)\n")
    assert _files(dst) == NEW and io.list_dir(run) == ["checkpoint"]


def test_finish_dir_swap_discards_a_half_staged_version(store, capsys):
    run, dst, incoming = _swap_paths(store)
    io.write_bytes_atomic(f"{incoming}/model.safetensors", b"weights 1")  # a first save, killed before its marker
    io.finish_dir_swap(dst, MARKER)
    assert io.list_files(run) == [] and not io.exists(dst)
    assert capsys.readouterr().out == ""


def test_begin_dir_swap_first_finishes_a_swap_that_was_interrupted(store):
    run, dst, incoming = _swap_paths(store)
    io.write_bytes_atomic(f"{dst}/model.safetensors", b"weights 1")  # killed after the old marker went
    _write(incoming, NEW)
    staged = io.begin_dir_swap(dst, MARKER)
    assert staged == incoming and not io.exists(staged)
    assert _files(dst) == NEW and io.list_dir(run) == ["checkpoint"]


@pytest.mark.parametrize(("count", "shown"), [
    (2, "f0.txt, f1.txt"),
    (5, "f0.txt, f1.txt, f2.txt, f3.txt, f4.txt"),
    (6, "f0.txt, f1.txt, f2.txt, f3.txt, f4.txt and 1 more"),
    (7, "f0.txt, f1.txt, f2.txt, f3.txt, f4.txt and 2 more"),
])
def test_a_folder_without_the_marker_is_refused_and_its_first_five_names_shown(tmp_path, count, shown):
    dst = tmp_path / "checkpoint"
    for i in range(count):
        io.write_bytes_atomic(dst / f"f{i}.txt", b"mine")
    with pytest.raises(ForeignFolderError) as err:
        io.begin_dir_swap(dst, MARKER)
    assert str(err.value) == (f"{dst} holds {shown} but no model.json: it is not a version this platform wrote, so it "
                              "is not replaced. Move it away, or choose another output folder")
    assert sorted(os.listdir(dst)) == [f"f{i}.txt" for i in range(count)]


def test_replace_dir_refuses_a_source_without_its_marker_before_staging_anything(store):
    run, dst, _ = _swap_paths(store)
    src = f"{store}/new"
    _write(dst, OLD)
    io.write_bytes_atomic(f"{src}/model.safetensors", b"weights 2")
    with pytest.raises(CheckpointError) as err:
        io.replace_dir(src, dst, MARKER)
    assert str(err.value) == f"{src} has no model.json: refusing to replace {dst} with an incomplete version"
    assert _files(dst) == OLD and io.list_dir(run) == ["checkpoint"]
    io.write_bytes_atomic(f"{src}/{MARKER}", b'{"version": 2}')
    io.replace_dir(src, dst, MARKER)
    assert _files(dst) == {"model.safetensors": b"weights 2", MARKER: b'{"version": 2}'}
    assert io.list_dir(run) == ["checkpoint"]


_KILLED_MID_COPY = """
import sys
from ser_models import io
io.COPY_OBJECT_LIMIT, io.STREAM_COPY_CHUNK = 1000, 4096  # the weights are streamed, the marker copied whole
getattr(io, sys.argv[1])(*sys.argv[2:])
"""


@pytest.mark.parametrize("step", ["replace_dir", "commit_dir_swap", "finish_dir_swap"])
def test_a_kill_mid_copy_on_s3_never_leaves_a_marker_without_its_weights(s3_bucket, step):
    """On S3 a version is copied file by file, its marker last: killed while the weights stream, the folder being
    written has no marker, so :func:`complete_dir` never picks it, and the next writer puts things right."""
    run, dst, incoming = _swap_paths(s3_bucket)
    new = {"model.safetensors": os.urandom(9000), MARKER: b'{"version": 2}'}
    if step == "replace_dir":  # a first save: no old version, killed while staging
        _write(f"{s3_bucket}/new", new)
        args = (f"{s3_bucket}/new", dst, MARKER)
    else:  # killed while publishing the staged version
        _write(dst, OLD)
        _write(io.begin_dir_swap(dst, MARKER), new)
        if step == "finish_dir_swap":
            io.fs_delete(f"{dst}/{MARKER}")  # an earlier commit was killed after the old marker went
        args = (dst, MARKER)
    proc = _python(_KILLED_MID_COPY, step, *args, failpoint="stream_copy_mid")
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    if step == "replace_dir":
        assert io.list_files(run) == [] and io.complete_dir(dst, MARKER) is None
        io.finish_dir_swap(dst, MARKER)
        assert io.list_files(run) == []
        return
    assert io.list_files(run) == [".checkpoint.incoming/model.json", ".checkpoint.incoming/model.safetensors"]
    assert io.complete_dir(dst, MARKER) == incoming
    io.finish_dir_swap(dst, MARKER)
    assert _files(dst) == new and io.list_dir(run) == ["checkpoint"]
    assert json.loads(io.read_bytes(f"{dst}/{MARKER}")) == {"version": 2}


# --- Folders and links ------------------------------------------------------------------------------------------


def test_make_dirs_syncs_the_parent_of_each_folder_it_creates_and_no_other(tmp_path, monkeypatch):
    synced = []
    real = io.fsync_dir
    monkeypatch.setattr(io, "fsync_dir", lambda path: (synced.append(str(path)), real(path)))
    io.make_dirs(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir() and synced == [str(tmp_path), str(tmp_path / "a")]
    synced.clear()
    io.make_dirs(tmp_path / "a")
    assert synced == []


def test_delete_dir_removes_a_link_whose_target_is_gone(tmp_path):
    (tmp_path / "checkpoint").symlink_to(tmp_path / "removed_model", target_is_directory=True)
    io.delete_dir(tmp_path / "checkpoint")
    assert os.listdir(tmp_path) == []


def test_a_swap_on_an_object_store_copies_the_new_versions_marker_last(s3_bucket, monkeypatch):
    """On a store a swap publishes by copying: the marker is the last object copied to the target, so a copy that
    stops part-way leaves no version that claims to be complete."""
    run, dst, _ = _swap_paths(s3_bucket)
    _write(dst, OLD)
    _write(io.begin_dir_swap(dst, MARKER), NEW)
    copied, real = [], io.copy_object
    monkeypatch.setattr(io, "copy_object", lambda fs, src, target: (copied.append(target), real(fs, src, target)))
    io.commit_dir_swap(dst, MARKER)
    published = [p.rsplit("/checkpoint/", 1)[1] for p in copied if "/checkpoint/" in p]
    assert sorted(published) == sorted(NEW) and published[-1] == MARKER
    assert _files(dst) == NEW
