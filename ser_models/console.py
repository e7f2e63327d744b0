"""A job's console holds the job's own lines: Ray's internal lines stay in Ray's log files unless asked for.

Three kinds of Ray line reached a job's console, each of them also in the session's log folder
(``/tmp/ray/session_*/logs``) or of no use to a user:

* the driver's Python log lines at start (the token-authentication banner, "Started a local Ray instance"):
  ``ray.init(logging_level=ERROR)`` keeps them out;
* the driver's native (C++) error lines, which Ray writes to the process's stderr as well as to
  ``python-core-driver-*.log`` (e.g. a warning about actor constructor arguments on every Ray Data actor
  pool): a pipe on file descriptor 2 drops lines in Ray's native log format and passes everything else;
* lines forwarded from workers' stderr (Ray's own library warnings there, such as Ray Data's "no available
  CPUs" while another task holds them, native worker logs, Python warnings): dropped; a worker's stdout, where
  the platform's own progress lines go (training epochs in Ray Train workers), is forwarded as before.

An error in a worker still ends the job with that error (Ray raises it in the driver). ``--verbose`` (or
``SER_RAY_CONSOLE=1``) keeps everything.

Libraries' own warnings in the driver (torch's ``TracerWarning`` while a graph is traced, ONNX Runtime's
quantisation advice through the root logger) are collected by :func:`library_warnings` for the job to write
into its log file, instead of reaching the console.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings
from contextlib import contextmanager

#: ``1``: Ray's own console lines too (set by a job's ``--verbose``).
RAY_CONSOLE_ENV = "SER_RAY_CONSOLE"
#: A line in Ray's native log format: ``[2026-11-27 03:38:32,180 E 26006 26006] core_worker.cc:2465: ...``.
NATIVE_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [DIWEF] \d+ \d+\] ")
#: What Ray prints on its own, for checks of a job's console (tests, ``bench.demo_console``): the driver's log
#: lines (banner, "Started a local Ray instance"), native lines and forwarded worker lines ("(MapWorker(...)
#: pid=123) ...").
RAY_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t(DEBUG|INFO|WARNING|ERROR)"
                      r"|^\[\d{4}-\d\d-\d\d .* [DIWEF] \d+ \d+\]|\(\S+ pid=\d+\)|Token authentication"
                      r"|Started a local Ray instance")

_installed = threading.Lock()
_state: dict = {}


@contextmanager
def library_warnings():
    """Collect the Python warnings and the root logger's records (where libraries such as ONNX Runtime log)
    raised in this process during the block, instead of printing them; ``--verbose`` (``SER_RAY_CONSOLE=1``)
    prints them as before.

    Yields:
        The list the lines are appended to (one string per warning or record, with its source), for the job to
        write into its log file.
    """
    lines: list[str] = []
    if ray_console_wanted():
        yield lines
        return

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")

    def show(message, category, filename, lineno, file=None, line=None):
        lines.append(warnings.formatwarning(message, category, filename, lineno, line).rstrip())

    root = logging.getLogger()
    saved = root.handlers[:]
    with warnings.catch_warnings():  # restores warnings.showwarning and the filters on the way out
        warnings.showwarning = show
        # With a handler of its own, the root logger never adds the stderr one that logging.warning() would.
        root.handlers = [_Collect()]
        try:
            yield lines
        finally:
            root.handlers = saved


def ray_console_wanted() -> bool:
    """Whether Ray's own lines should reach the console (``SER_RAY_CONSOLE=1``)."""
    return os.environ.get(RAY_CONSOLE_ENV, "").strip() == "1"


def init_logging_level() -> int:
    """The ``logging_level`` for ``ray.init``: ERROR unless Ray's lines are wanted."""
    return logging.INFO if ray_console_wanted() else logging.ERROR


def keep_forwarded(data: dict) -> bool:
    """Whether a batch of worker output that Ray forwards to the driver is the platform's (a worker's
    stdout), not Ray's or a library's (its stderr)."""
    return not data.get("is_err", False)


def quiet_ray_console() -> None:
    """Keep Ray's internal lines off this driver's console (once per process; call after ``ray.init``)."""
    if ray_console_wanted() or not _installed.acquire(blocking=False):
        return
    _filter_forwarded_lines()
    _filter_native_stderr()


def _filter_forwarded_lines() -> None:
    # Ray prints forwarded worker output through one handler of its stream dispatcher ("ray_print_logs");
    # wrap it so stderr batches are dropped. A Ray that names it differently keeps printing everything.
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    with dispatcher._lock:
        handlers = list(dispatcher.handlers)
    for name, handler in handlers:
        if name != "ray_print_logs":
            continue

        def only_ours(data, _print=handler):
            if keep_forwarded(data):
                _print(data)

        dispatcher.remove_handler(name)
        dispatcher.add_handler(name, only_ours)


#: Written to the pipe by a Python write to ``sys.stderr``, never shown: when the pump has passed it on, every
#: native byte written before it is on the terminal, so the Python line that follows keeps its place.
_SYNC = b"\x00ser-stderr-sync\n"
#: Longest wait for the pump before a Python line is written anyway (s): a stuck pump never blocks a job.
_SYNC_WAIT_S = 1.0


def _filter_native_stderr() -> None:
    """Route file descriptor 2 through a pipe that drops Ray's native log lines.

    Python's own ``sys.stderr`` is re-pointed at the real terminal first, so the platform's error lines and
    any traceback never pass through the pipe. Only native writes to fd 2 (Ray's C++ core worker, other
    extension modules) do; before each Python write the pump is asked to pass on what came before it
    (:data:`_SYNC`), so native and Python lines reach the terminal in the order they were written. At exit fd 2
    is restored and the pipe drained. A process whose ``sys.stderr`` is not its own (pytest's capture, a
    notebook) is left as it is.
    """
    if sys.stderr is not sys.__stderr__:  # a test's capture or a caller's own stream: leave it alone
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, ValueError):  # no usable stderr (a closed or captured stream): nothing to filter
        return
    stream = os.fdopen(os.dup(real), "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                       errors="backslashreplace")
    order = _Order()
    sys.stderr = _InOrderStderr(stream, order)
    os.dup2(write_end, 2)
    os.close(write_end)

    def pump() -> None:
        with os.fdopen(read_end, "rb") as lines:
            for line in lines:
                synced = line.endswith(_SYNC)
                line = line[: -len(_SYNC)] if synced else line
                if line and not NATIVE_LINE.match(line):
                    os.write(real, line)
                if synced:
                    order.passed()

    thread = threading.Thread(target=pump, name="ser-native-stderr", daemon=True)
    thread.start()
    _state.update(real=real, thread=thread, order=order)
    atexit.register(_restore_stderr)


class _Order:
    """How many sync marks were sent into the pipe and how many the pump has passed on."""

    def __init__(self) -> None:
        # One mark in flight at a time, none once fd 2 is restored; re-entrant for a signal handler that writes.
        self.lock = threading.RLock()
        self.done = threading.Condition()
        self.sent = self.seen = 0
        self.open = True
        self.pid = os.getpid()  # a forked child shares the pipe but not the pump: it never waits

    def passed(self) -> None:
        with self.done:
            self.seen += 1
            self.done.notify_all()

    def wait(self) -> None:
        """Block until every native byte written to fd 2 so far is on the terminal (at most _SYNC_WAIT_S)."""
        with self.lock:
            if not self.open or os.getpid() != self.pid:
                return
            self.sent += 1
            target = self.sent
            try:
                os.write(2, _SYNC)
            except OSError:
                return
            with self.done:
                self.done.wait_for(lambda: self.seen >= target, timeout=_SYNC_WAIT_S)

    def close(self) -> None:
        with self.lock:
            self.open = False


class _InOrderStderr:
    """``sys.stderr`` while fd 2 is filtered: the real terminal's stream, each write after the native lines
    written before it."""

    def __init__(self, stream, order: _Order):
        self._stream = stream
        self._order = order

    def write(self, text: str) -> int:
        self._order.wait()
        return self._stream.write(text)

    def writelines(self, lines) -> None:
        self._order.wait()
        self._stream.writelines(lines)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _restore_stderr() -> None:
    real, thread, order = _state.pop("real", None), _state.pop("thread", None), _state.pop("order", None)
    if real is None:
        return
    order.close()  # no mark may reach the terminal once fd 2 is the terminal again
    os.dup2(real, 2)  # the pipe's last write end closes here, so the pump reads to its end and stops
    thread.join(timeout=2.0)
