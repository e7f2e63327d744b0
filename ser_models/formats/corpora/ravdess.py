"""RAVDESS (``Audio_Speech_Actors_01-24``) into our manifest: eight classes from the file names, speech only by
default, speaker-disjoint splits drawn from the actors.

**Layout**, as the audio-only archives unpack (``input`` is the folder holding ``Actor_01`` ... ``Actor_24``;
the speech and the song archives may be unpacked into the same folder)::

    Audio_Speech_Actors_01-24/
      Actor_01/03-01-01-01-01-01-01.wav
      ...
      Actor_24/...

**File names** are seven two-digit codes, ``MM-VV-EE-II-SS-RR-AA.wav``, as the RAVDESS documentation (Livingstone
and Russo, 2018) defines them:

- ``MM`` modality: ``03`` audio-only (``01`` full audio-video and ``02`` video-only are video files, refused as
  ``bad_file_name`` if one has a ``.wav`` name);
- ``VV`` vocal channel: ``01`` speech, ``02`` song (refused as ``excluded_song`` unless ``include_song``);
- ``EE`` emotion: ``01`` neutral, ``02`` calm, ``03`` happy, ``04`` sad, ``05`` angry, ``06`` fearful, ``07``
  disgust (our ``disgusted``), ``08`` surprised;
- ``II`` intensity: ``01`` normal, ``02`` strong (neutral has no strong take);
- ``SS`` statement: ``01`` "Kids are talking by the door", ``02`` "Dogs are sitting by the door";
- ``RR`` repetition: ``01`` or ``02``;
- ``AA`` actor: ``01`` to ``24``, odd numbers male, even numbers female; it must match the ``Actor_NN`` folder.

A ``.wav`` file named otherwise is refused as ``bad_file_name``; other files and folders are skipped and
counted.

**Rows.** The id is the file name without ``.wav``; the speaker is the actor folder's name (``Actor_01``);
``gender``, ``intensity``, ``statement``, ``repetition``, ``vocal_channel`` and ``source_label`` (the emotion
code) are columns of their own.

**Splits.** Speaker-disjoint as for CREMA-D (:func:`~ser_models.formats.corpora.common.speaker_splits`): with the
defaults, 5 of the 24 actors in ``test``, 2 in ``dev``, 17 in ``train``. The files come from the folder
listings, so no file is looked up a second time.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd

from ser_models import io
from ser_models.exceptions import ManifestError
from ser_models.formats.corpora.common import (
    BAD_FILE_NAME,
    EXCLUDED_SONG,
    LANGUAGE,
    counted_note,
    entries,
    root_of,
    speaker_splits,
    split_note,
)
from ser_models.formats.rows import ImportReport, Row, finish

CORPUS = "ravdess"
#: Emotion code -> our label.
LABELS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
          "07": "disgusted", "08": "surprised"}
INTENSITIES = {"01": "normal", "02": "strong"}
VOCAL_CHANNELS = {"01": "speech", "02": "song"}
AUDIO_ONLY = "03"
_ACTOR_DIR = re.compile(r"^Actor_(\d{2})$")
_NAME = re.compile(r"^(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})-(\d{2})\.wav$")


def import_ravdess(root: str, output: str, *, seed: int = 0, dev_fraction: float = 0.1,
                   test_fraction: float = 0.2, include_song: bool = False, labels: Sequence[str] = (),
                   log: Callable[[str], None] = print) -> tuple[pd.DataFrame, ImportReport]:
    """Import RAVDESS audio (module docstring) into our segments manifest at ``output``.

    Args:
        root: the folder holding the ``Actor_NN`` folders (local or a URI).
        output: our manifest to write (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``).
        seed: the draw of the speaker-disjoint splits.
        dev_fraction: the share of actors in ``dev``.
        test_fraction: the share of actors in ``test``.
        include_song: take song files (vocal channel ``02``) too.
        labels: allowed labels after mapping (empty = the eight classes).
        log: where the report goes.

    Returns:
        ``(manifest, report)``.

    Raises:
        ManifestError: no ``Actor_NN`` folder, or no file that could be imported.
    """
    base = root_of(root)
    actors = [(name, io.join(base, name)) for name, is_dir in entries(base) if is_dir and _ACTOR_DIR.match(name)]
    if not actors:
        raise ManifestError(f"{base}: no Actor_01 ... Actor_24 folders: give the folder the RAVDESS audio archive "
                            "unpacked into (Audio_Speech_Actors_01-24) as input=...")
    rows: list[Row] = []
    skipped: Counter = Counter()
    for actor, folder in actors:
        for name, is_folder in entries(folder):
            if is_folder or name.startswith(".") or not name.lower().endswith(".wav"):
                skipped["folders" if is_folder else "hidden" if name.startswith(".") else "not .wav"] += 1
                continue
            rows.append(_row(len(rows), name, io.join(folder, name), actor, include_song))
    splits = speaker_splits((r.speaker for r in rows if r.speaker is not None), seed=seed,
                            dev_fraction=dev_fraction, test_fraction=test_fraction)
    for row in rows:
        if row.speaker is not None:
            row.extra["split"] = splits[row.speaker]
    notes = [split_note(splits, "actors"), *counted_note(skipped, "skipped in the Actor_NN folders")]
    return finish(rows, source=base, fmt=CORPUS, output=output, kind="segments",
                  labels=labels or sorted(LABELS.values()), check_files=False, notes=notes, log=log)


def _row(index: int, name: str, path: str, actor: str, include_song: bool) -> Row:
    row = Row(index=index, utt_id=name[:-4], path=path, language=LANGUAGE)
    match = _NAME.match(name)
    if match is None:
        row.refused = (BAD_FILE_NAME, f"{path}: not MM-VV-EE-II-SS-RR-AA.wav (seven two-digit codes, e.g. "
                                      "03-01-06-01-02-01-12.wav)")
        return row
    modality, channel, emotion, intensity, statement, repetition, number = match.groups()
    why = None
    if modality != AUDIO_ONLY:
        why = f"modality {modality} is not audio-only ({AUDIO_ONLY})"
    elif channel not in VOCAL_CHANNELS:
        why = f"vocal channel {channel} is neither 01 (speech) nor 02 (song)"
    elif emotion not in LABELS:
        why = f"emotion {emotion} is none of 01-08"
    elif intensity not in INTENSITIES:
        why = f"intensity {intensity} is neither 01 (normal) nor 02 (strong)"
    elif emotion == "01" and intensity != "01":
        why = f"intensity {intensity} (strong) with emotion 01 (neutral): RAVDESS has no strong neutral take"
    elif statement not in ("01", "02") or repetition not in ("01", "02"):
        why = f"statement {statement} or repetition {repetition} is not 01 or 02"
    elif f"Actor_{number}" != actor:
        why = f"actor {number} is not the actor of its folder {actor}"
    if why is not None:
        row.refused = (BAD_FILE_NAME, f"{path}: {why}")
        return row
    row.speaker = actor
    row.label = LABELS[emotion]
    row.extra.update({"corpus": CORPUS, "gender": "male" if int(number) % 2 else "female",
                      "intensity": INTENSITIES[intensity], "statement": statement, "repetition": repetition,
                      "vocal_channel": VOCAL_CHANNELS[channel], "source_label": emotion})
    if channel == "02" and not include_song:
        row.refused = (EXCLUDED_SONG, "a song file (vocal channel 02): set include_song=true to take songs")
    return row


__all__ = ["CORPUS", "INTENSITIES", "LABELS", "VOCAL_CHANNELS", "import_ravdess"]
