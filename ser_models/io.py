"""Atomic, crash-safe writes for local paths and ``pyarrow.fs`` URIs (``s3://...``).

A local write goes to a temporary file in the same folder, is fsynced, then renamed over the target and the
folder is fsynced, so a reader sees the old file or the new one, never half of one. On an object store the
object is written to a temporary key beside the target, then published by one server-side copy: a stream's
``close()`` completes its upload even while an exception unwinds (pyarrow offers no abort), so streaming
straight to the target could publish half an object. An interrupted write leaves the previous version.
S3's server-side copy takes objects up to 5 GiB (:data:`COPY_OBJECT_LIMIT`); a larger one is published by
streaming the temporary object to the target (:func:`copy_object`), which is not atomic against an exception
(see there).

A folder of several files (a model checkpoint) is replaced by :func:`replace_dir`, which keeps one complete
version, old or new, at every moment; :func:`complete_dir` finds it after a crash.
"""

from __future__ import annotations

import errno
import io as _io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_models.exceptions import CheckpointError, ConfigError, ForeignFolderError
from ser_models.failpoints import failpoint, pausepoint


def _process_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: The process's umask, read once: an atomic write gets the mode a plain ``open(path, "w")`` would give.
_UMASK = _process_umask()


def is_local(uri: str | os.PathLike) -> bool:
    """True for plain paths and ``file://`` URIs."""
    s = str(uri)
    return "://" not in s or s.startswith("file://")


def local_path(uri: str | os.PathLike) -> Path:
    """A local path from a path or a ``file://`` URI (:func:`file_uri_path`).

    Raises:
        ConfigError: a ``file://`` URI of another host.
    """
    s = str(uri)
    return Path(file_uri_path(s) if s.startswith("file://") else s)


def file_uri_path(uri: str) -> str:
    """The local path a ``file://`` URI names, parsed as a URL (RFC 8089): ``file:///abs/path`` and
    ``file://localhost/abs/path`` are ``/abs/path``, with percent escapes decoded (``%20`` is a space), as
    ``pyarrow.fs`` reads them.

    Raises:
        ConfigError: the URI names another host (``file://server/share/x``): this machine cannot read that host's
            disk through a local path, and reading ``server/share/x`` here instead would read the wrong file.
    """
    host, _, path = str(uri)[len("file://"):].partition("/")
    if host.lower() not in ("", "localhost"):
        raise ConfigError(f"{uri}: a file:// URI of the host {host!r}; only this machine's files are read through "
                          "file:// (file:///abs/path or file://localhost/abs/path). Mount that host's folder and "
                          "give its local path, or give the data's s3:// / gs:// URI")
    return "/" + unquote(path)


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


def list_files(uri: str | os.PathLike) -> list[str]:
    """Every file under a folder, recursively, as paths relative to it (hidden files and temporary objects
    included: what a bucket listing shows); empty when the folder does not exist."""
    fs, p = filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(p, recursive=True, allow_not_found=True))
    return sorted(i.path[len(p):].lstrip("/") for i in infos if i.type == pafs.FileType.File)


def is_link(uri: str | os.PathLike) -> bool:
    """A local symbolic link (``lstat``; object stores have none)."""
    return is_local(uri) and os.path.islink(local_path(uri))


def delete_dir(uri: str | os.PathLike) -> None:
    """Remove a folder and everything under it; a missing folder is fine. A symbolic link is removed as a link:
    what it points at is never touched. Called by :mod:`ser_models.ownership` only (its checks come first)."""
    if is_link(uri):
        local_path(uri).unlink()
        return
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


def create_local_file(path: str | os.PathLike, data: bytes) -> None:
    """Write a new local file whole, never over an existing one (a file a person may have edited).

    Raises:
        FileExistsError: something is at ``path`` already (nothing is written there).
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.link(tmp, path)  # a link, unlike a rename, fails when the name is taken: whole and exclusive
    finally:
        Path(tmp).unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_file_atomic(uri: str | os.PathLike, source: str | os.PathLike) -> None:
    """Copy the local file ``source`` to ``uri`` (a local path or a URI) so that readers never see a partial
    file, streamed in :data:`STREAM_COPY_CHUNK` pieces (a model file never sits in memory whole). ``source`` may
    be on another file system than ``uri``."""
    with open(source, "rb") as src:
        _write_atomic(uri, lambda fh: shutil.copyfileobj(src, fh, STREAM_COPY_CHUNK))


#: The prefix of every temporary name this platform writes (an atomic write in progress, a lock being replaced):
#: a name only the platform uses, so what a kill leaves behind is told from a person's hidden file by its name.
TEMP_PREFIX = ".ser-tmp-"


def _temp_name(name: str) -> str:
    """A hidden sibling name for a write in progress (:data:`TEMP_PREFIX`): never ends in the target's extension,
    so folder listings that look for ``*.parquet`` / ``*.json`` never pick it up (and Arrow's dataset readers
    skip ``.`` files)."""
    return f"{TEMP_PREFIX}{name}.{uuid.uuid4().hex}.tmp"


STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  #: a full storage: no space, a quota, a file-size limit


def _write_atomic(uri: str | os.PathLike, write: Callable[[Any], Any]) -> None:
    """:func:`_write_whole`; a full storage (:data:`STORAGE_FULL`) is raised naming ``uri`` (pyarrow names none)."""
    try:
        _write_whole(uri, write)
    except OSError as exc:
        if exc.errno in STORAGE_FULL and not exc.filename:
            raise OSError(exc.errno, os.strerror(exc.errno), str(uri)) from exc
        raise


def _write_whole(uri: str | os.PathLike, write: Callable[[Any], Any]) -> None:
    """Call ``write(file)`` on a stream that becomes ``uri`` only once complete.

    Local: a temporary file in the same folder, fsynced, renamed over the target, folder fsynced. Object
    store: a temporary key in the same folder, then one server-side copy over the target (atomic: readers see
    the old object or the new one), then the temporary key is deleted. On any exception (KeyboardInterrupt
    included) while writing, the temporary file or key is removed and the target is never touched; a SIGKILL
    leaves at most a hidden temporary file or key (or an unfinished multipart upload, which S3 never shows as
    an object). An object above 5 GiB is published by a streamed copy instead (:func:`copy_object`): an
    exception during that copy leaves no object at the target.
    """
    if not is_local(uri):
        fs, p = filesystem(uri)
        parent, _, name = p.rpartition("/")
        tmp = f"{parent}/{_temp_name(name)}"
        try:
            # close() publishes the temporary object even when write() raised: it is deleted below, never
            # copied, so the target only ever receives a whole object.
            with fs.open_output_stream(tmp) as out:
                write(out)
            failpoint("atomic_write_before_publish")
            copy_object(fs, tmp, p)
        finally:
            _delete_quietly(fs, tmp)
        return
    path = local_path(uri)
    make_dirs(path.parent)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide the file from teammates and other services
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        failpoint("atomic_write_before_publish")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


#: The largest source object (bytes) that S3's single server-side copy (CopyObject) accepts: 5 GiB. pyarrow.fs
#: offers no multipart copy (UploadPartCopy), so :func:`copy_object` streams larger objects.
COPY_OBJECT_LIMIT = 5 * 1024**3
#: Bytes per read and write when :func:`copy_object` streams an object (64 MiB: memory stays bounded).
STREAM_COPY_CHUNK = 64 * 1024**2


def copy_object(fs: pafs.FileSystem, src: str, dst: str) -> str:
    """Copy one object to another key of the same store, as a whole object at ``dst``.

    Up to :data:`COPY_OBJECT_LIMIT` bytes: one server-side copy (atomic: readers see the old object or the new
    one). Above it: streamed through this process in :data:`STREAM_COPY_CHUNK` pieces, which is atomic against
    a SIGKILL (S3 shows an unfinished multipart upload as no object: the previous version stays) but not against
    an exception: pyarrow's stream cannot abort, so its ``close()`` publishes the part copied so far. That short
    object is deleted at once, so after an exception ``dst`` holds *nothing* (its previous version is gone too),
    and a reader in the moment between may see the short object; the exception is re-raised.

    Args:
        fs: the store of both keys.
        src: the complete source object (in-filesystem path).
        dst: the target key (in-filesystem path).

    Returns:
        ``"copy"`` (server-side) or ``"stream"`` (through this process).

    Raises:
        OSError: the copy failed, or the streamed object's size differs from the source's (``dst`` deleted).
    """
    size = fs.get_file_info(src).size
    if size is None or size <= COPY_OBJECT_LIMIT:
        fs.copy_file(src, dst)
        return "copy"
    copied = 0
    with fs.open_input_stream(src) as fin:
        out = fs.open_output_stream(dst)  # nothing reaches dst before this stream closes
        try:
            with out:
                while chunk := fin.read(STREAM_COPY_CHUNK):
                    out.write(chunk)
                    copied += len(chunk)
                    failpoint("stream_copy_mid")  # kill tests: part of a large object copied
                if copied != size:
                    raise OSError(f"copying {src} ({size} bytes) to {dst}: the source ended after {copied} bytes")
            published = fs.get_file_info(dst).size
            if published != size:
                raise OSError(f"copying {src} ({size} bytes) to {dst}: the store holds {published} bytes")
        except BaseException:
            _delete_quietly(fs, dst)  # what close() published may be short: never leave it at the target
            raise
    return "stream"


def _delete_quietly(fs: pafs.FileSystem, path: str) -> None:
    """Remove a temporary object; one that never came to exist is fine (the failure that stopped the write
    is what the caller needs to see, not a second one from the clean-up)."""
    try:
        fs.delete_file(path)
    except OSError:  # FileNotFoundError included
        pass


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


def make_dirs(path: Path) -> None:
    """``mkdir -p`` that makes each new folder durable: the parent of every folder it creates is fsynced, so a
    power cut after an atomic write never loses the folder that holds the file."""
    missing = []
    p = Path(path)
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    Path(path).mkdir(parents=True, exist_ok=True)
    for folder in reversed(missing):
        fsync_dir(folder.parent)


def fs_delete(uri: str | os.PathLike) -> None:  # a link is a file to pyarrow's delete_file: never followed
    """Remove one file (local path or URI)."""
    fs, p = filesystem(uri)
    fs.delete_file(p)


def copy_dir(src: str | os.PathLike, dst: str | os.PathLike, last: tuple[str, ...] = ()) -> None:
    """Copy the files of folder ``src`` into ``dst`` (either may be a URI); files named in ``last`` are
    copied after all others, so a reader that finds them finds the rest. Each file is written atomically;
    within one object store the bytes never leave it (server-side copy)."""
    src_fs, src_p = filesystem(src)
    dst_fs, dst_p = filesystem(dst)
    same_store = not is_local(src) and not is_local(dst) and src_fs.equals(dst_fs)
    infos = [i for i in src_fs.get_file_info(pafs.FileSelector(src_p, recursive=True))
             if i.type == pafs.FileType.File]
    infos.sort(key=lambda i: (i.base_name in last, i.path))
    for info in infos:
        rel = info.path[len(src_p):].lstrip("/")
        if same_store:
            copy_object(dst_fs, info.path, f"{dst_p}/{rel}")  # one CopyObject up to 5 GiB: the target appears whole
            continue
        with src_fs.open_input_stream(info.path) as fh:
            write_bytes_atomic(join(dst, rel), fh.read())


#: Suffix of the hidden sibling folder that :func:`replace_dir` stages a folder's next version in.
SWAP_SUFFIX = ".incoming"


def _incoming(dst: str | os.PathLike) -> str:
    """``<parent>/.<name>.incoming``: a sibling, so paths relative to the folder (``../encoder``) still hold."""
    d = storage_path(dst)
    return join(d.parent, f".{d.name}{SWAP_SUFFIX}")


def complete_dir(dst: str | os.PathLike, marker: str) -> StoragePath | None:
    """The complete version of a folder that :func:`replace_dir` writes: ``dst`` when its ``marker`` file is
    there, else the staged next version when a swap was interrupted after staging it, else None.

    Args:
        dst: the folder (local path or URI).
        marker: the file written last into each version (``model.json`` of a checkpoint).
    """
    for folder in (storage_path(dst), storage_path(_incoming(dst))):
        if exists(join(folder, marker)):
            return folder
    return None


def finish_dir_swap(dst: str | os.PathLike, marker: str) -> None:
    """Complete or undo a :func:`replace_dir` that a crash interrupted, so that ``dst`` is the one complete
    version again: a complete staged version replaces an incomplete ``dst``; any other staged folder (half
    written, or already published) is removed."""
    incoming = _incoming(dst)
    if not exists(incoming):
        return
    if exists(join(incoming, marker)) and not exists(join(dst, marker)):
        print(f"{dst}: finishing a replacement that was interrupted (the new version in {incoming} is complete)")
        _retire(dst, marker)
        _publish(incoming, dst, marker)
    _retire(incoming, marker)


def begin_dir_swap(dst: str | os.PathLike, marker: str) -> StoragePath:
    """Start replacing folder ``dst``: returns the empty hidden sibling (``.<name>.incoming``) to write the new
    version into, ``marker`` last; :func:`commit_dir_swap` then puts it in place. The sibling sits beside
    ``dst``, so paths the new version records relative to its folder (``../encoder``) stay right.

    Raises:
        ForeignFolderError: ``dst`` holds files but no ``marker``: not a version the platform wrote (an
            interrupted swap of ours was finished just before), so it is never deleted.
    """
    finish_dir_swap(dst, marker)
    names = list_dir(dst)
    if names and marker not in names:
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise ForeignFolderError(f"{dst} holds {shown} but no {marker}: it is not a version this platform wrote, "
                                 "so it is not replaced. Move it away, or choose another output folder")
    return storage_path(_incoming(dst))


def commit_dir_swap(dst: str | os.PathLike, marker: str) -> None:
    """Finish what :func:`begin_dir_swap` started: the old version loses its ``marker`` first (incomplete from
    then on), then the rest; the staged version is published at ``dst`` (a rename locally; a copy,
    ``marker`` last, on object stores); the staging folder is removed, its ``marker`` first. A crash at any
    point leaves one complete version, old or new, that :func:`complete_dir` finds.

    Raises:
        CheckpointError: the staged version has no ``marker`` (an incomplete version is never published).
    """
    incoming = _incoming(dst)
    if not exists(join(incoming, marker)):
        raise CheckpointError(f"{incoming} has no {marker}: refusing to replace {dst} with an incomplete version")
    failpoint("replace_dir_staged")
    _retire(dst, marker)
    failpoint("replace_dir_old_removed")
    _publish(incoming, dst, marker)
    pausepoint("replace_dir_published")  # tests: a take-over between the publish and the clean-up after it
    _retire(incoming, marker)


def abort_dir_swap(dst: str | os.PathLike, marker: str) -> None:
    """Undo a :func:`begin_dir_swap` whose writer failed: its staged folder is removed, ``dst`` stays."""
    _retire(_incoming(dst), marker)


def replace_dir(src: str | os.PathLike, dst: str | os.PathLike, marker: str) -> None:
    """Replace folder ``dst`` by a copy of folder ``src`` so that a crash at any point leaves one complete
    version, the old or the new, that :func:`complete_dir` finds (see :func:`commit_dir_swap`).

    Args:
        src: folder holding the complete new version, its ``marker`` file included (local path or URI).
        dst: the folder readers know (local path or URI).
        marker: the file whose presence makes a version complete (``model.json`` of a checkpoint).

    Raises:
        CheckpointError: ``src`` has no ``marker`` file.
    """
    if not exists(join(src, marker)):
        raise CheckpointError(f"{src} has no {marker}: refusing to replace {dst} with an incomplete version")
    copy_dir(src, begin_dir_swap(dst, marker), last=(marker,))
    commit_dir_swap(dst, marker)


#: ``fence(path)``: the context every delete of a swap runs in. :mod:`ser_models.locks` sets it to its
#: ``fenced_for`` when imported (a process that holds a lock has imported it): a writer whose lock was taken
#: over deletes nothing. Until then nothing is locked and nothing needs fencing.
_DELETE_FENCE: Callable[[str], AbstractContextManager] = lambda path: nullcontext()  # noqa: E731


def set_delete_fence(fence: Callable[[str], AbstractContextManager]) -> None:
    """Run the swaps' deletes (:func:`_retire`) and publishes inside ``fence(path)`` (set by :mod:`ser_models.locks`)."""
    global _DELETE_FENCE
    _DELETE_FENCE = fence


def _retire(folder: str | os.PathLike, marker: str) -> None:
    """Delete a version of a folder, its ``marker`` first, so a half-deleted version never looks complete, inside
    the fence (:func:`set_delete_fence`): a writer whose lock was taken over deletes nothing. A symbolic link in
    the folder's place is removed as a link (``lstat``): the folder it points at, perhaps a model other runs
    share, is left whole."""
    with _DELETE_FENCE(str(folder)):
        if is_link(folder):
            local_path(folder).unlink()
            return
        if exists(join(folder, marker)):
            fs_delete(join(folder, marker))
        delete_dir(folder)


def _publish(incoming: str, dst: str | os.PathLike, marker: str) -> None:
    """Make the complete staged version ``dst`` (which no longer exists), inside the fence."""
    with _DELETE_FENCE(str(dst)):
        _publish_unfenced(incoming, dst, marker)


def _publish_unfenced(incoming: str, dst: str | os.PathLike, marker: str) -> None:
    if is_local(dst):
        staged = local_path(incoming)
        for file in (f for f in staged.rglob("*") if f.is_file()):  # durable before the rename makes it live
            with open(file, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(staged, local_path(dst))  # one rename; the staged folder is gone after it
        fsync_dir(local_path(dst).parent)
        return
    copy_dir(incoming, dst, last=(marker,))


def parquet_problem(uri: str | os.PathLike) -> str | None:
    """Why the Parquet file at ``uri`` is not whole, or None when it is.

    Reads only the footer (one ranged read): the magic bytes, a footer that parses, row groups whose rows add
    up to the rows the footer declares, and column chunks that end before the footer. A file cut short at any
    byte fails (its footer sits at the end), so "the file exists" can be trusted as "the work is done".
    """
    fs, p = filesystem(uri)
    try:
        info = fs.get_file_info(p)
        if info.type != pafs.FileType.File:
            return "missing"
        with fs.open_input_file(p) as fh:
            meta = pq.ParquetFile(fh).metadata
    except (OSError, ValueError, pa.ArrowException) as exc:
        return f"unreadable footer ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    rows = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    if rows != meta.num_rows:
        return f"row groups hold {rows} rows, the footer declares {meta.num_rows}"
    data_end = info.size - meta.serialized_size - 8  # footer, its 4-byte length, "PAR1"
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        for j in range(group.num_columns):
            col = group.column(j)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            if start + col.total_compressed_size > data_end:
                return f"column {col.path_in_schema!r} of row group {i} runs past the data ({info.size} bytes)"
    return None


def write_json_atomic(uri: str | os.PathLike, obj: Any) -> None:
    """JSON with sorted keys, written atomically."""
    write_bytes_atomic(uri, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(uri: str | os.PathLike) -> Any:
    fs, p = filesystem(uri)
    with fs.open_input_stream(p) as fh:
        return json.loads(fh.read().decode())


def write_parquet_atomic(uri: str | os.PathLike, table: pa.Table, row_group_size: int | None = None, *,
                         dictionary: bool = True, compression: str = "snappy") -> None:
    """One Parquet file, written atomically and streamed to its destination (no in-memory copy of the file);
    ``row_group_size``: rows per row group (None = pyarrow's default), so readers can take a few rows' groups;
    ``dictionary=False`` for unique values (ids, float vectors), whose dictionary is built only to be dropped;
    ``compression="lz4"`` for float vectors (a score shard: Snappy's size, half its read time)."""
    _write_atomic(uri, lambda fh: pq.write_table(table, fh, row_group_size=row_group_size,
                                                 use_dictionary=dictionary, compression=compression))


def read_parquet(uri: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    fs, p = filesystem(uri)
    return pq.read_table(p, filesystem=fs, columns=columns)


def save_figure(fig, uri: str | os.PathLike, dpi: int = 100) -> None:
    """Render a matplotlib figure as PNG and write it atomically to a local path or URI."""
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
