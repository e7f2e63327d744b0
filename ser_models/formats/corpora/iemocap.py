"""IEMOCAP (``IEMOCAP_full_release``) into our manifest: the usual four classes, leave-one-session-out splits.

**Layout**, as the release unpacks (``input`` is the folder holding ``Session1`` ... ``Session5``)::

    IEMOCAP_full_release/
      Session1/
        dialog/EmoEvaluation/<dialog>.txt      the labels of one dialog's turns
        sentences/wav/<dialog>/<turn>.wav      one file per turn
      ...
      Session5/

**Label files.** Each turn has one summary line, tab-separated::

    [6.2901 - 8.2357]	Ses01F_impro01_F000	neu	[2.5000, 2.5000, 2.5000]

its span in the dialog (seconds), its name, the evaluators' consensus category and the mean of their
[valence, activation, dominance] ratings, on IEMOCAP's 1-5 scale. The header (``% [START_TIME - END_TIME]
...``), the evaluators' own lines (``C-E1: ...``, ``A-E2: ...``) and blank lines are skipped; any other line
that starts with ``[`` or names a turn (``SesNN[FM]_``) is a summary line, and one that does not read as above
is refused as ``malformed_line`` naming the file and the line. Names starting with ``.`` (the ``._*`` files a
Mac leaves in an archive) are skipped and counted.

**Labels.** The usual four classes: ``neu`` neutral, ``hap`` and ``exc`` (excited) happy, ``sad`` sad, ``ang``
angry. The other categories (``fru`` frustration, ``sur`` surprise, ``fea`` fear, ``dis`` disgust, ``oth`` other,
``xxx`` no majority among the evaluators) are refused as ``excluded_label``, and the report counts them per
code. The raw code stays in ``source_label``; valence, activation (``arousal``) and dominance are kept as they
are (1-5).

**Speakers.** A turn name is ``SesNN<X>_<dialog>_<Y>NNN`` (``Ses01F_impro01_M003``,
``Ses01F_script01_1_F012``). Following the release's documentation, ``SesNN`` is the session, ``<X>`` tells which
of the session's two actors wore the motion-capture markers during that dialog, and ``<Y>`` which actor speaks
the turn. Each session has one female and one male actor, so the speaker is the session plus ``<Y>``:
``Ses01F_impro01_M003`` is spoken by ``Ses01M``.

**Splits.** Leave one session out: ``test_session`` (default 5) is ``test``, ``dev_session`` (default none)
``dev``, the others ``train``; ``test_session=0`` (and no ``dev_session``) leaves ``split`` empty. Turns stay
whole-file clips (the span is the turn's place in the dialog, not an offset in its own file).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import pandas as pd

from ser_models import io
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.formats.corpora.common import (
    EXCLUDED_LABEL,
    LANGUAGE,
    MALFORMED_LINE,
    counted_note,
    entries,
    root_of,
)
from ser_models.formats.rows import ImportReport, Row, finish, read_text

CORPUS = "iemocap"
#: The four-class set: raw category -> our label (``exc`` merged into happy).
LABELS = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
#: The categories the four-class set leaves out, with what they mean.
EXCLUDED = {"fru": "frustration", "sur": "surprise", "fea": "fear", "dis": "disgust", "oth": "other",
            "xxx": "no majority"}
SESSIONS = (1, 2, 3, 4, 5)
_SESSION_DIR = re.compile(r"^Session([1-9])$")
_SUMMARY = re.compile(r"^\[(?P<span>[^\]]*)\]\s+(?P<turn>\S+)\s+(?P<code>\S+)\s+\[(?P<dims>[^\]]*)\]$")
_SPAN = re.compile(r"^\s*(\S+)\s+-\s+(\S+)\s*$")
_TURN = re.compile(r"^Ses(?P<session>\d{2})(?P<marked>[FM])_(?P<rest>.+)_(?P<gender>[FM])\d{3}$")
_NAMES_A_TURN = re.compile(r"\bSes\d{2}[FM]_")
_GENDER = {"F": "female", "M": "male"}


def import_iemocap(root: str, output: str, *, test_session: int = 5, dev_session: int = 0,
                   labels: Sequence[str] = (), check_files: bool = True,
                   log: Callable[[str], None] = print) -> tuple[pd.DataFrame, ImportReport]:
    """Import an IEMOCAP release (module docstring) into our segments manifest at ``output``.

    Args:
        root: the ``IEMOCAP_full_release`` folder (local or a URI).
        output: our manifest to write (``.parquet``, ``.csv``, ``.tsv``, ``.jsonl``).
        test_session: the session (1-5) whose turns are split ``test``; 0 = none.
        dev_session: the session (1-5) whose turns are split ``dev``; 0 = none.
        labels: allowed labels after mapping (empty = the four classes).
        check_files: refuse turns whose audio file does not exist (one stat per file).
        log: where the report goes.

    Returns:
        ``(manifest, report)``.

    Raises:
        ManifestError: no ``SessionN`` folder, a session without ``dialog/EmoEvaluation`` label files, or no turn
            that could be imported.
        ConfigError: ``test_session`` or ``dev_session`` names a session the folder does not have, or both name
            the same one.
    """
    base = root_of(root)
    sessions = _sessions(base)
    for key, value in (("test_session", test_session), ("dev_session", dev_session)):
        if value and value not in sessions:
            raise ConfigError(f"{key}={value}: {base} holds sessions {sorted(sessions)}")
    if test_session and test_session == dev_session:
        raise ConfigError(f"test_session and dev_session are both {test_session}: name two sessions")
    rows: list[Row] = []
    excluded: Counter = Counter()
    hidden = 0
    for number, folder in sorted(sessions.items()):
        split = ("test" if number == test_session else "dev" if number == dev_session
                 else "train" if test_session or dev_session else None)
        label_dir = io.join(folder, "dialog", "EmoEvaluation")
        files = entries(label_dir)
        hidden += sum(1 for name, is_dir in files if name.startswith(".") and not is_dir)
        names = [name for name, is_dir in files if not is_dir and not name.startswith(".")
                 and name.lower().endswith(".txt")]
        if not names:
            raise ManifestError(f"{label_dir}: no label files (<dialog>.txt): is Session{number} complete?")
        for name in names:
            rows += _read_label_file(io.join(label_dir, name), folder, number, split, len(rows), excluded)
    notes = counted_note(excluded, "left out of the four classes (excluded_label)", EXCLUDED)
    if hidden:
        notes.append(f"skipped {hidden} hidden file(s) (names starting with '.') among the label files")
    if test_session or dev_session:
        train = [str(n) for n in sorted(sessions) if n not in (test_session, dev_session)]
        parts = [f"{split} session {n}" for split, n in (("test", test_session), ("dev", dev_session)) if n]
        parts.append(f"train session{'s' if len(train) > 1 else ''} {', '.join(train) or 'none'}")
        notes.append("leave one session out: " + ", ".join(parts))
    return finish(rows, source=base, fmt=CORPUS, output=output, kind="segments",
                  labels=labels or sorted(set(LABELS.values())), check_files=check_files, notes=notes, log=log)


def _sessions(base: str) -> dict[int, str]:
    """``{session number: folder}`` of the ``SessionN`` folders under the root."""
    found = {}
    for name, is_dir in entries(base):
        match = _SESSION_DIR.match(name)
        if match and is_dir:
            found[int(match[1])] = io.join(base, name)
    if not found:
        raise ManifestError(f"{base}: no Session1 ... Session5 folders: give the IEMOCAP_full_release folder as "
                            "input=...")
    return found


def _read_label_file(path: str, session_dir: str, session: int, split: str | None, start: int,
                     excluded: Counter) -> list[Row]:
    """The rows of one ``EmoEvaluation/<dialog>.txt`` file, refused ones included."""
    rows = []
    try:
        body = read_text(path)
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    for lineno, line in enumerate(body.splitlines(), 1):
        text = line.strip()
        if not text or not (text.startswith("[") or _NAMES_A_TURN.search(text)):
            continue
        row = Row(index=start + len(rows), language=LANGUAGE)
        rows.append(row)
        why = _fill(row, text, session_dir, session, split)
        if why is not None:
            row.refused = (MALFORMED_LINE, f"{path}: line {lineno}: {why}: {text[:100]!r}")
        elif row.refused is not None:
            excluded[row.extra["source_label"]] += 1
    return rows


def _fill(row: Row, text: str, session_dir: str, session: int, split: str | None) -> str | None:
    """Fill ``row`` from one summary line; returns why the line is malformed, or None."""
    match = _SUMMARY.match(text)
    if not match:
        return "not '[start - end] <turn> <category> [valence, activation, dominance]'"
    turn = _TURN.match(match["turn"])
    if turn is None:
        return f"turn name {match['turn']!r} is not SesNN<F|M>_<dialog>_<F|M>NNN"
    row.utt_id = match["turn"]
    if int(turn["session"]) != session:
        return f"turn {match['turn']!r} is not of Session{session}"
    span = _SPAN.match(match["span"])
    times = _numbers(span.groups()) if span else None
    if times is None or not 0 <= times[0] < times[1]:
        return f"span [{match['span']}] is not '<start> - <end>' with 0 <= start < end (seconds)"
    dims = _numbers(match["dims"].split(","))
    if dims is None or len(dims) != 3:
        return f"[{match['dims']}] is not three numbers [valence, activation, dominance]"
    code = match["code"]
    if code not in LABELS and code not in EXCLUDED:
        return f"category {code!r} is none of {', '.join([*LABELS, *EXCLUDED])}"
    dialog = match["turn"].rsplit("_", 1)[0]
    gender = turn["gender"]
    row.speaker = f"Ses{turn['session']}{gender}"
    row.path = io.join(session_dir, "sentences", "wav", dialog, f"{match['turn']}.wav")
    row.label = LABELS.get(code)
    row.extra.update({
        "split": split, "corpus": CORPUS, "valence": dims[0], "arousal": dims[1], "dominance": dims[2],
        "session": session, "dialog": dialog,
        "dialog_type": "improvised" if "_impro" in match["turn"] else "scripted",
        "gender": _GENDER[gender], "source_label": code,
    })
    if code in EXCLUDED:
        row.refused = (EXCLUDED_LABEL, f"{code!r} ({EXCLUDED[code]}) is outside the four classes "
                                       "(neu, hap + exc, sad, ang)")
    return None


def _numbers(cells) -> list[float] | None:
    """The cells as finite floats, or None when one is not."""
    out = []
    for cell in cells:
        try:
            value = float(str(cell).strip())
        except ValueError:
            return None
        if not math.isfinite(value):
            return None
        out.append(value)
    return out


__all__ = ["CORPUS", "EXCLUDED", "LABELS", "import_iemocap"]
