"""Objects above S3's 5 GiB server-side copy limit are published whole by a streamed copy, on the moto S3
server; the limit is lowered through :data:`ser_models.io.COPY_OBJECT_LIMIT` so that the test objects stay small."""

from __future__ import annotations

import io as pyio
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pa_fs
import pytest
from _stores import PassThroughStore

from ser_models import io

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_limit(monkeypatch):
    """A copy limit of 1,000 bytes and 4 KiB streaming steps."""
    monkeypatch.setattr(io, "COPY_OBJECT_LIMIT", 1000)
    monkeypatch.setattr(io, "STREAM_COPY_CHUNK", 4096)


def test_an_object_above_the_copy_limit_is_published_whole_by_a_streamed_copy(s3_bucket, small_limit):
    target = f"{s3_bucket}/run/scores.bin"
    io.write_bytes_atomic(target, b"old")  # below the limit: the server-side copy
    data = os.urandom(50_000)  # 13 streaming steps, the last one short
    io.write_bytes_atomic(target, data)
    assert io.read_bytes(target) == data
    assert io.list_dir(f"{s3_bucket}/run") == ["scores.bin"]  # the temporary key is gone
    fs, src = io.filesystem(target)
    assert io.copy_object(fs, src, src.replace("scores.bin", "copy.bin")) == "stream"
    assert io.copy_object(fs, src.replace("scores.bin", "copy.bin"), src.replace("scores.bin", "c2.bin")) == "stream"
    io.write_bytes_atomic(target, b"x" * 1000)
    assert io.copy_object(fs, src, src.replace("scores.bin", "small.bin")) == "copy"  # at the limit: one copy
    assert io.read_bytes(f"{s3_bucket}/run/c2.bin") == data


def test_a_folder_copy_within_the_store_streams_its_large_files(s3_bucket, small_limit):
    big, small = os.urandom(9_000), b'{"v": 2}'
    io.write_bytes_atomic(f"{s3_bucket}/new/model.safetensors", big)
    io.write_bytes_atomic(f"{s3_bucket}/new/model.json", small)
    io.replace_dir(f"{s3_bucket}/new", f"{s3_bucket}/ckpt", "model.json")
    assert io.read_bytes(f"{s3_bucket}/ckpt/model.safetensors") == big
    assert io.read_bytes(f"{s3_bucket}/ckpt/model.json") == small


KILLED = """
import os, sys
sys.path.insert(0, {root!r})
from ser_models import io
io.COPY_OBJECT_LIMIT, io.STREAM_COPY_CHUNK = 1000, 4096
io.write_bytes_atomic({target!r}, b"n" * 50_000)
"""


def test_a_sigkill_mid_streamed_copy_leaves_the_previous_version(s3_bucket):
    target = f"{s3_bucket}/run/ledger.parquet"
    io.write_bytes_atomic(target, b"previous version")
    env = {**os.environ, "SER_FAILPOINT": "stream_copy_mid"}
    proc = subprocess.run([sys.executable, "-c", KILLED.format(root=str(ROOT), target=target)], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr  # killed part-way through the streamed copy
    assert io.read_bytes(target) == b"previous version"


class _ReadFailsAfter(PassThroughStore):
    """The real S3 store, except that a read of ``src`` fails after ``good`` bytes (a connection that drops)."""

    def __init__(self, real: pa_fs.FileSystem, src: str, good: int):
        super().__init__(real)
        self.src, self.good = src, good

    def open_input_stream(self, path):
        if path != self.src:
            return self.real.open_input_stream(path)
        data, good = self.real.open_input_stream(path).read(), self.good

        class Dropping(pyio.RawIOBase):
            pos = 0

            def readable(self):
                return True

            def read(self, n=-1):
                if self.pos >= good:
                    raise ConnectionResetError("the store dropped the connection")
                out = data[self.pos:self.pos + (n if n >= 0 else len(data))]
                self.pos += len(out)
                return out

        return pa.PythonFile(Dropping(), mode="r")

    def get_type_name(self):
        return "read-fails-after"


def test_an_error_mid_streamed_copy_leaves_no_short_object_at_the_target(s3_bucket, small_limit):
    real, root = io.filesystem(f"{s3_bucket}/run")
    src, dst = f"{root}/.scores.bin.tmp", f"{root}/scores.bin"
    io.write_bytes_atomic(f"{s3_bucket}/run/scores.bin", b"previous version")
    with real.open_output_stream(src) as out:
        out.write(os.urandom(50_000))
    store = pa_fs.PyFileSystem(_ReadFailsAfter(real, src, good=3 * 4096))
    with pytest.raises(ConnectionResetError):
        io.copy_object(store, src, dst)
    assert not io.exists(f"{s3_bucket}/run/scores.bin")  # nothing, rather than the first 12 KiB of the object
