"""One progress line per stage: done / total, rate and time left, as every job prints them."""

from __future__ import annotations

import threading
import time

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_models.io import filesystem


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def progress_line(stage: str, done: int, total: int | None, seconds: float, unit: str) -> str:
    """``"feature cache: 1,024/2,880 clips (36%), 35.2 clips/s, 53s left"``.

    Args:
        stage: what is progressing.
        done: units finished.
        total: units in all (None or 0: unknown, no share or time left).
        seconds: wall seconds since the stage began.
        unit: what is counted ("clips", "runs").
    """
    rate = done / seconds if seconds > 0 else 0.0
    if not total:
        return f"{stage}: {done:,} {unit}, {rate:.1f} {unit}/s"
    left = (total - done) / rate if rate > 0 else float("nan")
    tail = "done" if done >= total else (f"{_duration(left)} left" if left == left else "")
    return f"{stage}: {done:,}/{total:,} {unit} ({100 * done / total:.0f}%), {rate:.1f} {unit}/s, {tail}".rstrip(", ")


class WrittenRows:
    """Counts the rows of the Parquet files written so far under a folder (local or any ``pyarrow.fs`` URI).

    A Ray Data ``write_parquet`` shows no progress of its own once its bars are off; the files it has finished
    are the progress. Each file's footer is read once; a file still being written (no footer yet) is counted
    on a later call.

    Args:
        path: the output folder (searched recursively, e.g. through ``split=`` partitions).
    """

    def __init__(self, path: str):

        self.fs, self.root = filesystem(path)
        self._rows: dict[str, int] = {}

    def __call__(self) -> int:

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        except OSError:
            return sum(self._rows.values())
        for info in infos:
            if info.type == pafs.FileType.File and info.path.endswith(".parquet") and info.path not in self._rows:
                try:
                    with self.fs.open_input_file(info.path) as f:
                        self._rows[info.path] = pq.ParquetFile(f).metadata.num_rows
                except Exception:  # noqa: BLE001 - still being written: counted next time
                    continue
        return sum(self._rows.values())


class StageProgress:
    """Prints ``progress_line`` for a stage every ``every`` seconds while it runs (from a background thread),
    and once more when it ends, from ``done()``: the units finished so far.

    Use as a context manager around a blocking call (a Ray Data write). Nothing is printed when
    ``verbose`` is false; the final line only when the stage ended without an error.
    """

    def __init__(self, stage: str, total: int | None, unit: str, done, every: float = 10.0, verbose: bool = True,
                 indent: str = "  "):

        self.stage, self.total, self.unit, self.done, self.every = stage, total, unit, done, every
        self.verbose, self.indent = verbose, indent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name=f"progress:{stage}")
        self._t0 = 0.0
        self._last = -1

    def _line(self) -> None:

        n = self.done()
        if n != self._last:
            self._last = n
            print(self.indent + progress_line(self.stage, n, self.total, time.perf_counter() - self._t0, self.unit),
                  flush=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            self._line()

    def __enter__(self) -> StageProgress:

        self._t0 = time.perf_counter()
        if self.verbose:
            self._thread.start()
        return self

    def __exit__(self, exc_type, *_) -> None:
        self._stop.set()
        if self.verbose:
            self._thread.join()
            if exc_type is None:
                self._line()
