"""Playable clips of segments for people: an annotator asked about a 4-second turn hears that turn, not the
hour-long recording it came from.

A pool row that is a segment of a longer file (it has a ``recording`` or a ``start`` / ``end``) gets a 16 kHz
PCM16 WAV of exactly its own audio, written from the pool's stored bytes (what the model saw, already the
right channel). With ``context`` seconds of context the clip is cut from the source file instead, that much
wider on each side (never past the file), and ``clip_start`` / ``clip_end`` say where the clip lies in the
recording, so the annotator knows which part is the segment. Rows that are whole files keep their own path.

Clips are written once, atomically, under the round's folder, each named by its id's safe file name
(``clips/<slug>-<hash>.wav``, :func:`ser_models.names.safe_file_name`): an ``utt_id`` such as ``../../x`` or
``a/b`` can neither leave the folder nor share a file with another id (``Abc`` and ``abc`` included). A rerun
reuses a clip only where that name already holds one inside the clips folder (:func:`~ser_models.names.safe_child`
refuses a symbolic link that leads out of it), so a file found anywhere else is never taken as a clip.
"""

from __future__ import annotations

import io as _bytes_io
import math

import numpy as np
import pandas as pd
import soundfile as sf
import soxr

from ser_models.data.audio import decode_pool_audio
from ser_models.data.audio_stream import read_span
from ser_models.data.config import POOL_SAMPLE_RATE
from ser_models.io import exists, read_bytes, write_bytes_atomic
from ser_models.names import safe_child, safe_file_name

#: Columns a segment's clip adds to what an annotator sees (besides ``path``, the clip itself).
CLIP_COLUMNS = ("source_path", "recording", "channel", "start", "end", "clip_start", "clip_end")


def _wav_bytes(wav: np.ndarray) -> bytes:
    buf = _bytes_io.BytesIO()
    sf.write(buf, np.clip(wav, -1.0, 1.0), POOL_SAMPLE_RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def clip_path(folder: str, utt_id: str) -> str:
    """Where the clip of ``utt_id`` lives in ``folder``: its safe file name, checked to stay inside ``folder``.

    Raises:
        UnsafePathError: the clip would lie outside ``folder`` (a symbolic link in the clips folder).
    """
    return safe_child(folder, safe_file_name(str(utt_id), ".wav"))


def segment_clips(pool, ids: list[str], folder: str, context: float = 0.0) -> pd.DataFrame | None:
    """Write the clips of those ``ids`` that are segments; describe every clip written.

    Args:
        pool: the opened :class:`~ser_models.data.Pool`.
        ids: clips about to be labelled.
        folder: where the clips go (local path or URI), one ``<safe_file_name(utt_id)>.wav`` each.
        context: seconds of the source recording added on each side (0: exactly the pool's audio).

    Returns:
        index ``utt_id``: ``path`` (the clip) and :data:`CLIP_COLUMNS`; None when no id is a segment.
    """
    if not ids:
        return None
    meta = pool.metadata(columns=["utt_id", "path", "recording", "channel", "start", "end"],
                         where={"utt_id": [str(i) for i in ids]})
    seg = meta[meta["recording"].notna() | meta["start"].notna() | meta["end"].notna()].reset_index(drop=True)
    if seg.empty:
        return None
    audio = None
    if context <= 0:
        audio = pool.metadata(columns=["utt_id", "audio", "audio_format"],
                              where={"utt_id": seg["utt_id"].tolist()}).set_index("utt_id")
    rows = []
    for r in seg.itertuples():
        clip = clip_path(folder, r.utt_id)
        channel = None if int(r.channel) < 0 else int(r.channel)
        start = 0.0 if _missing(r.start) else float(r.start)
        clip_start = max(0.0, start - context) if context > 0 else start
        if not exists(clip):
            if context > 0:
                end = None if _missing(r.end) else float(r.end) + context
                wav, sr, _ = read_span(r.path, clip_start, end, channel)
                if sr != POOL_SAMPLE_RATE:
                    wav = soxr.resample(wav, sr, POOL_SAMPLE_RATE, quality="HQ")
            else:
                wav = decode_pool_audio(audio.at[r.utt_id, "audio"], audio.at[r.utt_id, "audio_format"])
            write_bytes_atomic(clip, _wav_bytes(wav))
        # The clip's own length says where it ends (the recording may end before the context does).
        seconds = sf.info(_bytes_io.BytesIO(read_bytes(clip))).duration
        rows.append({"utt_id": r.utt_id, "path": clip, "source_path": r.path, "recording": r.recording,
                     "channel": int(r.channel), "start": r.start, "end": r.end, "clip_start": clip_start,
                     "clip_end": round(clip_start + seconds, 6)})
    return pd.DataFrame(rows).set_index("utt_id")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


__all__ = ["CLIP_COLUMNS", "clip_path", "segment_clips"]
