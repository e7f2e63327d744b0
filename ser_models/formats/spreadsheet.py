"""Cells of files written for people (``to_label.csv``), safe to open in a spreadsheet, and read back exactly.

A spreadsheet runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and, in some, tab or CR) as a formula:
an ``utt_id`` of ``=cmd|' /C calc'!A0`` in ``to_label.csv`` would run on the annotator's machine. Following
OWASP's "CSV injection" rule, :func:`neutralise_cell` puts a ``'`` in front of every text cell that starts with
one of those characters, so spreadsheets show it as text.

To make the round trip exact, a text cell that already starts with ``'`` gets a ``'`` too, and
:func:`restore_cell` removes the first character only of cells that start with ``'`` followed by one of
:data:`NEUTRALISED` (the formula characters or ``'``). So ``restore_cell(neutralise_cell(x)) == x`` for every
text ``x``, and a cell nobody neutralised (no leading ``'``) is never changed.

Spreadsheets drop a leading ``'`` when they save a CSV (for them it marks text, it is not part of the value), so a
file that went through one comes back with the original values already. Readers of a returned file therefore use
:func:`match_ids`, which decides per file whether the prefixes are still there.

Numbers written as numbers (``float`` / ``int`` columns) are not text and are left alone: ``-0.5`` is a value,
not a formula.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import pandas as pd

__all__ = ["FORMULA_STARTS", "NEUTRALISED", "match_ids", "neutralise_cell", "neutralise_frame", "restore_cell"]

#: First characters that make a spreadsheet read a cell as a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
#: First characters after which an added ``'`` is removed on import: the formula characters and ``'`` itself.
NEUTRALISED = (*FORMULA_STARTS, "'")


def neutralise_cell(value):
    """``value`` with a ``'`` in front when it is text starting with one of :data:`NEUTRALISED`; other values
    (numbers, None, other text) unchanged."""
    if isinstance(value, str) and value.startswith(NEUTRALISED):
        return "'" + value
    return value


def restore_cell(value: str) -> str:
    """Undo :func:`neutralise_cell` on a cell read back as text: drop the first character of a cell that is ``'``
    followed by one of :data:`NEUTRALISED`; any other cell is returned as it is."""
    if len(value) >= 2 and value[0] == "'" and value[1] in NEUTRALISED:
        return value[1:]
    return value


def neutralise_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells (and column names) are neutralised, ready for ``to_csv``."""
    out = frame.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(neutralise_cell).astype(object)
    out.columns = [neutralise_cell(c) for c in out.columns]
    return out


def match_ids(cells: Sequence[str], wanted: Collection[str]) -> list[str]:
    """The ids that the ``utt_id`` cells of a returned file stand for.

    Per file, first as written by :func:`neutralise_frame` (prefixes removed by :func:`restore_cell`); if that
    does not give distinct requested ids but the cells as they are do, the file went through a spreadsheet that
    already dropped the prefixes, and the cells are taken as they are. A file that fits neither way (edited by
    hand in both ways) is read cell by cell: restored when that is a requested id, else as it is; the caller then
    reports what is unknown or repeated.

    Args:
        cells: the non-blank ``utt_id`` cells in file order.
        wanted: the ids requested.

    Returns:
        One id per cell.
    """
    restored = [restore_cell(c) for c in cells]

    def fits(ids: list[str]) -> bool:
        return len(set(ids)) == len(ids) and all(i in wanted for i in ids)

    if fits(restored):
        return restored
    if fits(list(cells)):
        return list(cells)
    return [r if r in wanted or c not in wanted else c for r, c in zip(restored, cells)]
