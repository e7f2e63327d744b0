"""How an encoder's waveform input is prepared: as the model was trained, read from its own files.

A pretrained encoder expects the preprocessing its authors used. wav2vec2-style feature extractors standardise
each utterance (``do_normalize``), but not every checkpoint was trained that way (WavLM Base+ was not), and
Whisper's log-mel front end never normalises: standardising its waveform also erases loudness, an arousal cue.
One platform-wide default cost the Whisper-tiny encoder 7-8 UA points on held-out speech, so the default is
``auto``: the source's ``preprocessor_config.json`` decides, and only when it says nothing does the family's
convention.
"""

from __future__ import annotations

import json
from pathlib import Path

from ser_models.exceptions import EncoderError

#: ``do_normalize`` of each family's feature extractor when a checkpoint does not say:
#: ``Wav2Vec2FeatureExtractor`` defaults to True (wav2vec2, HuBERT and WavLM use it); Whisper's never normalises.
FAMILY_NORMALIZE: dict[str, bool] = {"wav2vec2": True, "hubert": True, "wavlm": True, "whisper": False}
PREPROCESSOR_FILE = "preprocessor_config.json"


def preprocessor_config(source: str, allow_download: bool = False) -> dict | None:
    """The source's ``preprocessor_config.json`` as a dict, or None when it has none.

    Args:
        source: a local model folder or a hub id (looked up in the local cache unless ``allow_download``).
        allow_download: let a hub id's file be fetched.

    Raises:
        EncoderError: the file exists but is not valid JSON (named).
    """
    folder = Path(source).expanduser()
    if folder.is_dir():
        path = folder / PREPROCESSOR_FILE
        found = str(path) if path.is_file() else None
    else:
        from transformers.utils import cached_file

        try:
            found = cached_file(source, PREPROCESSOR_FILE, local_files_only=not allow_download,
                                _raise_exceptions_for_missing_entries=False,
                                _raise_exceptions_for_connection_errors=False)
        except Exception:  # an unknown hub id: the weights' own loading reports it, with a fix
            found = None
    if not found:
        return None
    try:
        return json.loads(Path(found).read_text())
    except (OSError, ValueError) as exc:
        raise EncoderError(f"model.encoder.source={source!r}: cannot read {found} ({exc})") from exc


def resolve_normalize_waveform(setting: bool | str, family: str, source: str | None,
                               allow_download: bool = False) -> tuple[bool, str]:
    """Whether to standardise each waveform, and why.

    Args:
        setting: ``model.encoder.normalize_waveform`` (``auto``, true or false).
        family: the encoder family (a key of :data:`FAMILY_NORMALIZE`).
        source: the model folder or hub id whose ``preprocessor_config.json`` decides ``auto``; None for the
            tiny random presets, which follow their family.
        allow_download: passed to :func:`preprocessor_config`.

    Returns:
        ``(normalize, reason)``: reason names where the value came from (for logs and the encoder's repr).
    """
    if isinstance(setting, bool):
        return setting, "set in model.encoder.normalize_waveform"
    if family not in FAMILY_NORMALIZE:
        raise EncoderError(f"no preprocessing convention for encoder family {family!r}")
    conf = preprocessor_config(source, allow_download) if source else None
    if conf is not None and isinstance(conf.get("do_normalize"), bool):
        return conf["do_normalize"], f"do_normalize in {source}/{PREPROCESSOR_FILE}"
    return FAMILY_NORMALIZE[family], f"the {family} family's convention"
