"""Who a clip's speaker is: the key per-speaker statistics and ``model.feature_norm=speaker`` group clips under
(the clip's ``speaker``, else the stream of its recording), and the pool readers' column fill that applies it.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["fill_speaker_keys", "speaker_key", "speaker_sources", "stream_mask"]


def speaker_key(speaker, recording=None, channel=None) -> str | None:
    """The speaker a clip is grouped under (per-speaker statistics, ``model.feature_norm=speaker``), or None.

    The clip's ``speaker`` (text, stripped) when it has one; else, for a segment of a recording,
    ``"<recording>#ch<channel>"``: one stream is one speaker, the usual case for the channels of a split call
    (``channel`` -1 or missing = the channels averaged, itself one stream). None when it has neither (the
    statistics then fall back to the pool's). This is the only definition: the pool's readers apply it, and
    the feature statistics key on it.

    Args:
        speaker: the pool's ``speaker`` value (None, NaN or blank = none).
        recording: the pool's ``recording`` value (None, NaN or blank = a plain clip).
        channel: the pool's ``channel`` (0-based; -1, None or NaN = averaged).
    """
    key = _text(speaker)
    if key is not None or recording is None:
        return key
    rec = _text(recording)
    if rec is None:
        return None
    try:
        ch = -1 if channel is None or channel != channel else int(channel)  # NaN != NaN
    except (TypeError, ValueError):
        ch = -1
    return f"{rec}#ch{ch}"


def _text(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value).strip()
    return text or None


def speaker_sources(columns: list[str]) -> list[str]:
    """Columns a reader needs besides ``columns`` to give each clip's :func:`speaker_key` as ``speaker``."""
    return ["recording", "channel"] if "speaker" in columns else []


def stream_mask(speaker: pa.ChunkedArray, recording: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a clip has no speaker but a recording (its stream is its speaker)."""
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(speaker), ""), True)
    has_recording = pc.fill_null(pc.not_equal(pc.utf8_trim_whitespace(recording), ""), False)
    return pc.and_(blank, has_recording)


def fill_speaker_keys(table: pa.Table) -> pa.Table:
    """``table`` with its ``speaker`` column replaced by each row's :func:`speaker_key` (a no-op without the
    ``speaker`` / ``recording`` / ``channel`` columns). Only rows that take their stream as speaker change."""
    names = table.column_names
    if not {"speaker", "recording", "channel"}.issubset(names) or table.num_rows == 0:
        return table
    speaker = table.column("speaker")
    mask = stream_mask(speaker, table.column("recording"))
    if not pc.any(mask).as_py():
        return table
    values = speaker.to_pylist()
    recordings, channels = table.column("recording").to_pylist(), table.column("channel").to_pylist()
    for i in pc.indices_nonzero(mask).to_pylist():
        values[i] = speaker_key(values[i], recordings[i], channels[i])
    return table.set_column(names.index("speaker"), "speaker", pa.array(values, pa.string()))
