"""MSP-Podcast into our manifest: the consensus (primary) categories, A/V/D and the official partitions.

**Layout**, as the release unpacks (``input`` is the folder holding ``Labels`` and ``Audios``)::

    MSP-Podcast/
      Labels/labels_consensus.csv
      Audios/<FileName>                        MSP-PODCAST_0001_0008.wav, ...

(An archive unpacked into a folder of its own name, ``Labels/Labels/labels_consensus.csv`` and
``Audios/Audios/``, is read too.)

**Label file.** ``labels_consensus.csv`` has a header and one row per segment with (at least) the columns
``FileName, EmoClass, EmoAct, EmoVal, EmoDom, SpkrID, Gender, Split_Set``; it is read row by row, never whole.

- ``EmoClass``, the consensus primary category: ``A`` angry, ``S`` sad, ``H`` happy, ``U`` surprised, ``F``
  fearful, ``D`` disgusted, ``C`` contempt, ``N`` neutral. ``O`` (other) and ``X`` (no agreement), or no class,
  are refused as ``excluded_label`` and counted; any other code is a ``malformed_line``. The code stays in
  ``source_label``.
- ``EmoAct``, ``EmoVal``, ``EmoDom`` become ``arousal``, ``valence`` and ``dominance``, on MSP-Podcast's 1-7 scale
  as they are (an empty cell stays empty; text that is not a number is a ``malformed_line``).
- ``SpkrID`` is the speaker as given (``Unknown`` included: the report counts those rows, which are not one
  person); ``Gender`` becomes ``gender`` (``female``, ``male``, empty when unknown).
- ``Split_Set``, the official partition: ``Train`` -> ``train``, ``Development`` (``Validation`` in some
  releases) -> ``dev``, ``Test1``, ``Test2``, ``Test3`` ... -> ``test``. The partition's own name stays in
  ``msp_split``, so one test set can be picked out. Any other value is a ``malformed_line``.

The id is the file name without its extension.
"""

from __future__ import annotations

import csv
import io as _text_io
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd

from ser_models import io
from ser_models.exceptions import ManifestError
from ser_models.formats.corpora.common import (
    EXCLUDED_LABEL,
    LANGUAGE,
    MALFORMED_LINE,
    counted_note,
    is_dir,
    is_file,
    root_of,
)
from ser_models.formats.rows import ImportReport, Row, finish

CORPUS = "msp_podcast"
LABEL_FILE = ("Labels", "labels_consensus.csv")
AUDIO_DIR = "Audios"
COLUMNS = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender", "Split_Set")
#: Consensus category code -> our label.
LABELS = {"A": "angry", "S": "sad", "H": "happy", "U": "surprised", "F": "fearful", "D": "disgusted",
          "C": "contempt", "N": "neutral"}
#: Codes left out, with what they mean.
EXCLUDED = {"O": "other", "X": "no agreement", "": "no class"}
_TEST_SET = re.compile(r"^Test\d*$")
_SPLITS = {"Train": "train", "Development": "dev", "Validation": "dev"}
_GENDER = {"female": "female", "male": "male"}
_DIMS = (("EmoAct", "arousal"), ("EmoVal", "valence"), ("EmoDom", "dominance"))


def import_msp_podcast(root: str, output: str, *, labels: Sequence[str] = (), check_files: bool = True,
                       log: Callable[[str], None] = print) -> tuple[pd.DataFrame, ImportReport]:
    """Import an MSP-Podcast release (module docstring) into our segments manifest at ``output``.

    Args:
        root: the release folder holding ``Labels/`` and ``Audios/`` (local or a URI).
        output: our manifest to write (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``).
        labels: allowed labels after mapping (empty = the eight categories).
        check_files: refuse rows whose audio file does not exist (one stat per file).
        log: where the report goes.

    Returns:
        ``(manifest, report)``.

    Raises:
        ManifestError: no ``labels_consensus.csv``, a header without the columns above, a file that is not
            UTF-8 CSV, or no row that could be imported.
    """
    base = root_of(root)
    label_file = _label_file(base)
    audio = io.join(base, AUDIO_DIR)
    if is_dir(io.join(audio, AUDIO_DIR)):
        audio = io.join(audio, AUDIO_DIR)
    rows: list[Row] = []
    excluded: Counter = Counter()
    unknown_speakers = 0
    with io.open_input_file(label_file) as raw:
        reader = csv.reader(_text_io.TextIOWrapper(raw, encoding="utf-8-sig", newline=""))
        try:
            header = [c.strip() for c in next(reader, [])]
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ManifestError(f"{label_file}: line 1: columns {missing} missing (found {header[:12]}): not "
                                    "MSP-Podcast's labels_consensus.csv")
            where = {c: header.index(c) for c in COLUMNS}
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                row = _row(len(rows), cells, where, len(header), audio, f"{label_file}: line {reader.line_num}")
                rows.append(row)
                if row.refused is not None and row.refused[0] == EXCLUDED_LABEL:
                    excluded[row.extra["source_label"]] += 1
                unknown_speakers += row.speaker is not None and row.speaker.lower() == "unknown"
        except (UnicodeDecodeError, csv.Error) as exc:
            raise ManifestError(f"{label_file}: line {reader.line_num}: cannot read it as UTF-8 CSV: {exc}") from None
    notes = counted_note(Counter({k or "(empty)": v for k, v in excluded.items()}),
                         "left out (excluded_label)", {"O": "other", "X": "no agreement", "(empty)": "no class"})
    if unknown_speakers:
        notes.append(f"{unknown_speakers} row(s) have SpkrID 'Unknown': kept as given (they are not one speaker)")
    return finish(rows, source=base, fmt=CORPUS, output=output, kind="segments",
                  labels=labels or sorted(LABELS.values()), check_files=check_files, notes=notes, log=log)


def _label_file(base: str) -> str:
    for parts in (LABEL_FILE, (LABEL_FILE[0], *LABEL_FILE)):
        path = io.join(base, *parts)
        if is_file(path):
            return path
    raise ManifestError(f"{base}: no {'/'.join(LABEL_FILE)}: give the MSP-Podcast folder that holds Labels/ and "
                        "Audios/ as input=...")


def _row(index: int, cells: list[str], where: dict[str, int], width: int, audio: str, line: str) -> Row:
    """One label-file row as a Row (refused with its reason when it is malformed or left out)."""
    row = Row(index=index, language=LANGUAGE)
    name = cells[where["FileName"]].strip() if len(cells) > where["FileName"] else ""
    row.utt_id = os.path.splitext(name)[0] or None
    if len(cells) != width:
        row.refused = (MALFORMED_LINE, f"{line}: {len(cells)} cells where the header has {width}")
        return row
    value = {c: cells[i].strip() for c, i in where.items()}
    if not name or "/" in name or "\\" in name or name.startswith("."):
        row.refused = (MALFORMED_LINE, f"{line}: FileName {name!r} is not a file name in {AUDIO_DIR}/")
        return row
    row.path = io.join(audio, name)
    row.speaker = value["SpkrID"] or None
    split = _SPLITS.get(value["Split_Set"]) or ("test" if _TEST_SET.match(value["Split_Set"]) else None)
    if split is None:
        row.refused = (MALFORMED_LINE, f"{line}: Split_Set {value['Split_Set']!r} is none of Train, Development, "
                                       "Test1, Test2, Test3")
        return row
    row.extra.update({"split": split, "corpus": CORPUS})
    for column, ours in _DIMS:
        cell = value[column]
        number = None
        if cell:
            try:
                number = float(cell)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                row.refused = (MALFORMED_LINE, f"{line}: {column} {cell!r} is not a number")
                return row
        row.extra[ours] = number
    code = value["EmoClass"]
    row.extra.update({"msp_split": value["Split_Set"], "gender": _GENDER.get(value["Gender"].lower()),
                      "source_label": code})
    if code in EXCLUDED:
        row.refused = (EXCLUDED_LABEL, f"EmoClass {code!r} ({EXCLUDED[code]}) is outside the eight categories")
    elif code in LABELS:
        row.label = LABELS[code]
    else:
        row.refused = (MALFORMED_LINE, f"{line}: EmoClass {code!r} is none of {', '.join([*LABELS, 'O', 'X'])}")
    return row


__all__ = ["COLUMNS", "CORPUS", "EXCLUDED", "LABELS", "import_msp_podcast"]
