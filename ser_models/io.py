"""Atomic, crash-safe writes for local paths and ``pyarrow.fs`` URIs (``s3://...``).

A local write goes to a temporary file in the same folder, is fsynced, then renamed over the target and the
folder is fsynced, so a reader sees the old file or the new one, never half of one. Object stores have
atomic single-object PUTs, so there the data is written in one stream.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


def is_local(uri: str | os.PathLike) -> bool:
    """True for plain paths and ``file://`` URIs."""
    s = str(uri)
    return "://" not in s or s.startswith("file://")


def local_path(uri: str | os.PathLike) -> Path:
    """A local path from a path or a ``file://`` URI."""
    s = str(uri)
    return Path(s[len("file://"):] if s.startswith("file://") else s)


def filesystem(uri: str | os.PathLike) -> tuple[pafs.FileSystem, str]:
    """The ``pyarrow`` filesystem and in-filesystem path of a URI or local path."""
    if is_local(uri):
        return pafs.LocalFileSystem(), str(local_path(uri).absolute())
    return pafs.FileSystem.from_uri(str(uri))


class StoragePath(str):
    """A local path or ``pyarrow.fs`` URI that joins with ``/`` like ``pathlib.Path`` but never turns
    ``s3://bucket/run`` into ``s3:/bucket/run``. Read and write it through this module's functions."""

    def __truediv__(self, part: str | os.PathLike) -> StoragePath:
        return StoragePath(join(self, str(part)))

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> StoragePath:
        head = self.rstrip("/").rsplit("/", 1)[0]
        return StoragePath(head if head and not head.endswith(":/") else self)


def storage_path(uri: str | os.PathLike) -> StoragePath:
    """A :class:`StoragePath`: local paths made absolute (so Ray workers in other folders agree), URIs kept."""
    s = str(uri)
    if is_local(s):
        return StoragePath(str(local_path(s).expanduser().absolute()))
    return StoragePath(s.rstrip("/"))


def exists(uri: str | os.PathLike) -> bool:
    fs, p = filesystem(uri)
    return fs.get_file_info(p).type != pafs.FileType.NotFound


def read_bytes(uri: str | os.PathLike) -> bytes:
    fs, p = filesystem(uri)
    with fs.open_input_stream(p) as fh:
        return fh.read()


def open_input_file(uri: str | os.PathLike):
    """A seekable binary file object for a local path or URI (what soundfile and pandas read from)."""
    if is_local(uri):
        return open(local_path(uri), "rb")  # noqa: SIM115 - the caller closes it
    fs, p = filesystem(uri)
    return fs.open_input_file(p)


def list_dir(uri: str | os.PathLike) -> list[str]:
    """Names of the direct children of a folder (empty when it does not exist)."""
    fs, p = filesystem(uri)
    if fs.get_file_info(p).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(p, allow_not_found=True))
    return sorted(info.base_name for info in infos)


def delete_dir(uri: str | os.PathLike) -> None:
    """Remove a folder and everything under it; a missing folder is fine."""
    fs, p = filesystem(uri)
    if fs.get_file_info(p).type != pafs.FileType.NotFound:
        fs.delete_dir(p)


def join(uri: str | os.PathLike, *parts: str) -> str:
    """``join("s3://b/run", "rounds", "x")`` -> ``"s3://b/run/rounds/x"``; local paths stay paths."""
    base = str(uri).rstrip("/")
    return "/".join([base, *(str(p).strip("/") for p in parts)])


def write_bytes_atomic(uri: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` so that readers never see a partial file."""
    _write_atomic(uri, lambda fh: fh.write(data))


def _write_atomic(uri: str | os.PathLike, write: Callable[[Any], Any]) -> None:
    """Call ``write(file)`` on a stream that becomes ``uri`` only once complete: a temporary file in the same
    folder, fsynced, renamed over the target, folder fsynced (local); one object, published whole on close
    (object stores)."""
    if not is_local(uri):
        fs, p = filesystem(uri)
        with fs.open_output_stream(p) as out:
            write(out)
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    """Make a rename durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fs_delete(uri: str | os.PathLike) -> None:
    """Remove one file (local path or URI)."""
    fs, p = filesystem(uri)
    fs.delete_file(p)


def copy_dir(src: str | os.PathLike, dst: str | os.PathLike, last: tuple[str, ...] = ()) -> None:
    """Copy the files of folder ``src`` into ``dst`` (either may be a URI); files named in ``last`` are
    copied after all others, so a reader that finds them finds the rest."""
    src_fs, src_p = filesystem(src)
    infos = [i for i in src_fs.get_file_info(pafs.FileSelector(src_p, recursive=True))
             if i.type == pafs.FileType.File]
    infos.sort(key=lambda i: (i.base_name in last, i.path))
    for info in infos:
        rel = info.path[len(src_p):].lstrip("/")
        with src_fs.open_input_stream(info.path) as fh:
            write_bytes_atomic(join(dst, rel), fh.read())


def write_json_atomic(uri: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys, written atomically."""
    write_bytes_atomic(uri, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(uri: str | os.PathLike) -> Any:
    fs, p = filesystem(uri)
    with fs.open_input_stream(p) as fh:
        return json.loads(fh.read().decode())


def write_parquet_atomic(uri: str | os.PathLike, table: pa.Table) -> None:
    """One Parquet file, written atomically and streamed to its destination (no in-memory copy of the file)."""
    _write_atomic(uri, lambda fh: pq.write_table(table, fh))


def read_parquet(uri: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    fs, p = filesystem(uri)
    return pq.read_table(p, filesystem=fs, columns=columns)


def save_figure(fig, uri: str | os.PathLike, dpi: int = 100) -> None:
    """Render a matplotlib figure as PNG and write it atomically to a local path or URI."""
    import io as _io

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    write_bytes_atomic(uri, buf.getvalue())


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
