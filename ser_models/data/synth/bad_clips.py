"""Files the pool builder must reject, one per failure mode (for pool tests)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf

from ser_models.data.synth.prosody import Speaker
from ser_models.data.synth.spec import EMOTIONS
from ser_models.data.synth.voice import ClipSpec, synthesize_clip


# ---------------------------------------------------------------------------------------------------------
# Bad files for pool tests
# ---------------------------------------------------------------------------------------------------------
def write_bad_clips(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write one file per failure mode the pool builder must handle; deterministic.

    Files (``name``: what it is, and what the pool should do):

    * ``corrupt``: ``corrupt.wav``, a RIFF/WAVE header cut off after 12 bytes plus random bytes -> quarantine.
    * ``empty``: ``empty.wav``, 0 bytes -> quarantine.
    * ``not_audio``: ``not_audio.wav``, a UTF-8 text file with a ``.wav`` name -> quarantine.
    * ``nan``: ``nan.wav``, float32 WAV, 1 s at 16 kHz: a 0.5 s valid tone then NaN samples -> quarantine.
    * ``stereo_48k``: ``stereo_48k.wav``, 2 s of synthetic speech, 48 kHz, 2 channels (PCM16), valid ->
      keep (downmix + resample).
    * ``long``: ``long.flac``, 65 s of synthetic speech at 16 kHz, valid -> crop or reject by policy.
    * ``silent``: ``silent.wav``, 2 s of digital zeros at 16 kHz -> quarantine (silent).
    * ``too_short``: ``too_short.wav``, 0.1 s of synthetic speech at 16 kHz -> quarantine (too short).
    * ``missing``: ``missing.wav``, a path that is NOT written -> quarantine (missing).

    Returns:
        name -> path (absolute).
    """
    out = Path(out_dir).absolute()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(12345)
    paths = {name: out / fname for name, fname in [
        ("corrupt", "corrupt.wav"), ("empty", "empty.wav"), ("not_audio", "not_audio.wav"), ("nan", "nan.wav"),
        ("stereo_48k", "stereo_48k.wav"), ("long", "long.flac"), ("silent", "silent.wav"),
        ("too_short", "too_short.wav"), ("missing", "missing.wav"),
    ]}
    paths["corrupt"].write_bytes(b"RIFF\x24\x80\x00\x00WAVE" + rng.integers(0, 256, 40, dtype=np.uint8).tobytes())
    paths["empty"].write_bytes(b"")
    paths["not_audio"].write_text("this is a transcript, not audio\n", encoding="utf-8")
    t = np.arange(16000) / 16000
    nan_wav = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    nan_wav[8000:] = np.nan
    sf.write(paths["nan"], nan_wav, 16000, subtype="FLOAT", format="WAV")
    speaker = Speaker("spk_bad", "f", 200.0, 1.15, 1.0, 1.0, "en", "train")
    stereo, _ = synthesize_clip(ClipSpec(0, "bad_stereo", speaker, "happy"), 7, sample_rate=48000)
    stereo = stereo[: 2 * 48000]
    sf.write(paths["stereo_48k"], np.stack([stereo, 0.8 * stereo], axis=1), 48000, subtype="PCM_16")
    pieces, total = [], 0
    k = 0
    while total < 65 * 16000:
        wav, _ = synthesize_clip(ClipSpec(k, f"bad_long{k}", speaker, EMOTIONS[k % 4]), 7, sample_rate=16000)
        pieces.append(wav)
        total += len(wav)
        k += 1
    sf.write(paths["long"], np.concatenate(pieces)[: 65 * 16000], 16000, subtype="PCM_16", format="FLAC")
    sf.write(paths["silent"], np.zeros(2 * 16000, dtype=np.float32), 16000, subtype="PCM_16")
    short, _ = synthesize_clip(ClipSpec(1, "bad_short", speaker, "neutral"), 7, sample_rate=16000)
    mid = len(short) // 2
    sf.write(paths["too_short"], short[mid: mid + 1600], 16000, subtype="PCM_16")
    paths["missing"].unlink(missing_ok=True)
    return paths
