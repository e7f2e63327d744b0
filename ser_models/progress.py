"""One progress line per stage: done / total, rate and time left, as every job prints them."""

from __future__ import annotations


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
