"""CREMA-D into our manifest: six classes from the file names, speaker-disjoint splits drawn from the actor ids.

**Layout**, as the release holds it (``input`` is the folder holding ``AudioWAV``)::

    CREMA-D/
      AudioWAV/<ActorID>_<Sentence>_<Emotion>_<Level>.wav     1001_DFA_ANG_XX.wav, ...

**File names.** ``ActorID`` is four digits (1001-1091); ``Sentence`` one of the twelve sentence codes (``IEO``,
``TIE``, ``IOM``, ``IWW``, ``TAI``, ``MTI``, ``IWL``, ``ITH``, ``DFA``, ``ITS``, ``TSI``, ``WSI``);
``Emotion`` one of ``ANG`` angry, ``DIS`` disgusted, ``FEA`` fearful, ``HAP`` happy, ``NEU`` neutral, ``SAD``
sad; ``Level`` the intended intensity, ``LO`` low, ``MD`` medium, ``HI`` high, ``XX`` unspecified. A ``.wav``
file named otherwise is refused as ``bad_file_name``; other files are skipped and counted. The labels are the
emotions the actors were asked to portray (the file names), not the crowd's perceived ratings.

**Rows.** The id is the file name without ``.wav``; the speaker is the actor id; ``sentence``,
``intensity`` and ``source_label`` (the emotion code) are columns of their own.

**Splits.** Speaker-disjoint, drawn from the actor ids with ``seed``: ``test_fraction`` of the actors
(rounded) in ``test``, ``dev_fraction`` in ``dev``, the rest in ``train``
(:func:`~ser_models.formats.corpora.common.speaker_splits`); an actor never spans two splits. The draw uses
every actor with a well-formed file name, so a refused row never moves another actor.

The files come from the folder's listing, so they exist: no file is looked up a second time.
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
    LANGUAGE,
    counted_note,
    entries,
    is_dir,
    root_of,
    speaker_splits,
    split_note,
)
from ser_models.formats.rows import ImportReport, Row, finish

CORPUS = "crema_d"
AUDIO_DIR = "AudioWAV"
#: Emotion code -> our label.
LABELS = {"ANG": "angry", "DIS": "disgusted", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
_NAME = re.compile(r"^(?P<actor>\d{4})_(?P<sentence>[A-Z]{3})_(?P<emotion>[A-Z]{3})_(?P<level>[A-Z]{2})\.wav$")


def import_crema_d(root: str, output: str, *, seed: int = 0, dev_fraction: float = 0.1,
                   test_fraction: float = 0.2, labels: Sequence[str] = (),
                   log: Callable[[str], None] = print) -> tuple[pd.DataFrame, ImportReport]:
    """Import CREMA-D (module docstring) into our segments manifest at ``output``.

    Args:
        root: the folder holding ``AudioWAV/`` (local or a URI).
        output: our manifest to write (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``).
        seed: the draw of the speaker-disjoint splits.
        dev_fraction: the share of actors in ``dev``.
        test_fraction: the share of actors in ``test``.
        labels: allowed labels after mapping (empty = the six classes).
        log: where the report goes.

    Returns:
        ``(manifest, report)``.

    Raises:
        ManifestError: no ``AudioWAV`` folder, or no file that could be imported.
    """
    base = root_of(root)
    folder = io.join(base, AUDIO_DIR)
    if not is_dir(folder):
        raise ManifestError(f"{base}: no {AUDIO_DIR}/ folder: give the CREMA-D folder that holds it as input=...")
    rows: list[Row] = []
    skipped: Counter = Counter()
    for name, is_folder in entries(folder):
        if is_folder or name.startswith(".") or not name.lower().endswith(".wav"):
            skipped["folders" if is_folder else "hidden" if name.startswith(".") else "not .wav"] += 1
            continue
        rows.append(_row(len(rows), name, io.join(folder, name)))
    splits = speaker_splits((r.speaker for r in rows if r.speaker is not None), seed=seed,
                            dev_fraction=dev_fraction, test_fraction=test_fraction)
    for row in rows:
        if row.speaker is not None:
            row.extra["split"] = splits[row.speaker]
    notes = [split_note(splits, "actors"), *counted_note(skipped, f"skipped in {AUDIO_DIR}/")]
    return finish(rows, source=base, fmt=CORPUS, output=output, kind="segments",
                  labels=labels or sorted(LABELS.values()), check_files=False, notes=notes, log=log)


def _row(index: int, name: str, path: str) -> Row:
    row = Row(index=index, utt_id=name[:-4], path=path, language=LANGUAGE)
    match = _NAME.match(name)
    why = None
    if match is None:
        why = "not <ActorID>_<Sentence>_<Emotion>_<Level>.wav (e.g. 1001_DFA_ANG_XX.wav)"
    elif match["sentence"] not in SENTENCES:
        why = f"sentence {match['sentence']!r} is none of {', '.join(SENTENCES)}"
    elif match["emotion"] not in LABELS:
        why = f"emotion {match['emotion']!r} is none of {', '.join(LABELS)}"
    elif match["level"] not in LEVELS:
        why = f"level {match['level']!r} is none of {', '.join(LEVELS)}"
    if why is not None:
        row.refused = (BAD_FILE_NAME, f"{path}: {why}")
        return row
    row.speaker = match["actor"]
    row.label = LABELS[match["emotion"]]
    row.extra.update({"corpus": CORPUS, "sentence": match["sentence"], "intensity": LEVELS[match["level"]],
                      "source_label": match["emotion"]})
    return row


__all__ = ["CORPUS", "LABELS", "LEVELS", "SENTENCES", "import_crema_d"]
