"""The folder guard: an exclusive ``flock`` of a lock's folder, under which its heartbeats, take-overs,
releases and fenced commits run (:mod:`ser_models.locks`). The kernel drops it when its holder dies, so unlike
a lock file it can never be left behind; the threads of one process share it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

#: The file locked where a folder itself cannot be (NFS, whose flock is a POSIX lock on a file open for writing).
GUARD_NAME = ".ser-lock.json.guard"


def _guard_fd(folder: Path, blocking: bool) -> int | None:
    """An fd of ``folder`` (or of its guard file) with an exclusive ``flock``; None when ``blocking`` is False
    and another holds it."""
    fd = os.open(folder, os.O_RDONLY)
    flags = fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB)
    try:
        fcntl.flock(fd, flags)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None
    except OSError as exc:  # e.g. NFS, whose flock is a POSIX lock that needs a file opened for writing
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return None
    fd = os.open(folder / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, flags)
        return fd
    except BlockingIOError:
        os.close(fd)
        return None


class _FolderGuard:
    """This process's hold of one folder's ``flock``: shared by its threads (``users``), taken from the kernel by
    the first and given back by the last. ``mutex`` orders this process's own heartbeats, take-overs and
    releases of the folder's locks; fenced commits need only the ``flock``."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.mutex = threading.RLock()
        self.fd: int | None = None
        self.users = 0
        self.taking = False


_FOLDER_GUARDS: dict[object, _FolderGuard] = {}
_FOLDER_GUARDS_LOCK = threading.Lock()


def forget_guards() -> None:
    """In a forked child: the parent's guards are the parent's (closing our copies leaves its ``flock`` held)."""
    global _FOLDER_GUARDS_LOCK
    for g in _FOLDER_GUARDS.values():
        if g.fd is not None:
            try:
                os.close(g.fd)
            except OSError:
                pass
    _FOLDER_GUARDS.clear()
    _FOLDER_GUARDS_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forget_guards)


def _share(g: _FolderGuard, folder: Path, stop: threading.Event | None, until: float | None) -> bool:
    """Join (or take) this process's hold of ``folder``'s ``flock``; False when ``stop`` was set meanwhile or the
    monotonic time ``until`` passed."""
    def give_up() -> bool:
        return (stop is not None and stop.is_set()) or (until is not None and time.monotonic() >= until)

    with g.cond:
        while True:
            if g.fd is not None:
                g.users += 1
                return True
            if not g.taking:
                g.taking = True
                break
            if give_up():
                return False
            g.cond.wait(0.05)
    fd = None
    try:
        while fd is None:
            fd = _guard_fd(folder, blocking=stop is None and until is None)
            if fd is None:
                if give_up():
                    return False
                time.sleep(0.01)
    finally:
        with g.cond:
            g.taking = False
            if fd is not None:
                g.fd, g.users = fd, g.users + 1
            g.cond.notify_all()
    return True


def _unshare(g: _FolderGuard) -> None:
    with g.cond:
        g.users -= 1
        if g.users <= 0 and g.fd is not None:
            fd, g.fd, g.users = g.fd, None, 0
            os.close(fd)  # releases the flock


@contextmanager
def folder_guard(folder: Path, stop: threading.Event | None = None, *, mutate: bool = True, timeout: float | None = None):
    """Serialise the heartbeats, take-overs, releases and fenced commits of ``folder``'s local locks between
    processes: an exclusive ``flock`` of the folder (of a guard file in it where folders cannot be locked). The
    kernel drops it when its holder dies, so unlike a lock file it can never be left behind.

    The threads of one process share the ``flock`` (a second ``flock`` on a new fd of the same folder would wait
    for ourselves): re-entrant, and a heartbeat goes on while another thread of its process commits under the
    guard. ``mutate`` (heartbeats, take-overs, releases) also takes the folder's in-process mutex, so two
    threads of this process never change its lock files at once. Yields True once held; with ``stop``, waits
    only while ``stop`` is unset and yields False when it is set (a heartbeat never blocks its release); with
    ``timeout``, yields False after that many seconds (another process holds it: committing, or paused)."""
    try:
        st = os.stat(folder)
        key: object = (st.st_dev, st.st_ino)  # one folder however it is spelled
    except OSError:
        key = os.path.realpath(folder)
    with _FOLDER_GUARDS_LOCK:
        g = _FOLDER_GUARDS.setdefault(key, _FolderGuard())
    until = None if timeout is None else time.monotonic() + timeout
    if not _share(g, folder, stop, until):
        yield False
        return
    try:
        if mutate:
            while not g.mutex.acquire(timeout=0.05):
                if (stop is not None and stop.is_set()) or (until is not None and time.monotonic() >= until):
                    yield False
                    return
            try:
                yield True
            finally:
                g.mutex.release()
        else:
            yield True
    finally:
        _unshare(g)


__all__ = ["GUARD_NAME", "folder_guard", "forget_guards"]
