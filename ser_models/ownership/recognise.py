"""How a folder an earlier version made (no marker) is recognised by its content before it is adopted.

A kind's ``recognise(folder, names)`` returns ``[]`` when the folder's entries read back as that kind's (the
claim then writes the marker), and None otherwise (the folder is refused as foreign). Names alone never suffice:
a ``run.json`` must be a run record of the job, a CSV must have the columns in its header, a JSON file must be an
object (:func:`~ser_models.ownership.claims.claim_output` takes the function). The run folder's recogniser,
which a claim of a run folder applies by default, stays with the claims
(:func:`~ser_models.ownership.claims.recognise_run`); these are the other layouts.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Mapping

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_models import io
from ser_models.ownership.claims import Recognise, read_marker, recognise_run


def recognise_csv(tables: Mapping[str, Iterable[str]], allowed: Iterable[str] = ()) -> Recognise:
    """A layout recognised by content: every CSV file of ``tables`` present with (at least) its columns in its
    header line, and no entry outside ``tables`` and ``allowed``."""
    tables = {name: set(columns) for name, columns in tables.items()}
    names_ok = set(tables) | set(allowed)

    def recognise(folder: str, names: list[str]) -> list[str] | None:
        if not set(tables) <= set(names) or not set(names) <= names_ok:
            return None
        for name, columns in tables.items():
            try:
                with io.open_input_file(io.join(folder, name)) as fh:
                    header = fh.read(1 << 16).split(b"\n", 1)[0].decode("utf-8").strip()
            except (OSError, UnicodeDecodeError):
                return None
            if not columns <= set(header.split(",")):
                return None
        return []

    return recognise


#: The kinds of :func:`recognise_files` that read a file's content (a folder needs one of them to be adopted).
_CONTENT_KINDS = ("json", "csv:", "run:", "png")
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def recognise_files(layout: Mapping[str, str]) -> Recognise:
    """A layout recognised by content, for a job that writes no ``run.json``: every entry is a name of
    ``layout`` and reads back as its kind there: ``"json"`` (a JSON object), ``"csv:<column>"`` (a CSV whose
    header names that column), ``"run:<job>"`` (a folder holding a run record of that job, or marked as
    that job's), ``"png"`` (a PNG image: its signature), ``"text"`` (UTF-8 text), ``"dir"`` (a folder). At least
    one entry must be of a kind read by content (``json``, ``csv``, ``run``, ``png``): a folder holding only a
    text file or a sub-folder of the right name is not adopted."""
    def reads(folder: str, name: str, kind: str) -> bool:
        path = io.join(folder, name)
        try:
            if kind == "json":
                return isinstance(io.read_json(path), dict)
            if kind.startswith("csv:"):
                with io.open_input_file(path) as fh:
                    header = fh.read(1 << 16).split(b"\n", 1)[0].decode("utf-8").strip()
                return kind[4:] in header.split(",")
            if kind.startswith("run:"):
                marker = read_marker(path) or {}
                if marker.get("kind") == "run" and marker.get("job") in (None, kind[4:]):
                    return True
                return recognise_run(kind[4:], ())(path, ["run.json"]) == [] if io.exists(
                    io.join(path, "run.json")) else False
            if kind in ("png", "text"):
                with io.open_input_file(path) as fh:
                    head = fh.read(1 << 16)
                if kind == "png":
                    return head.startswith(_PNG_MAGIC)
                codecs.getincrementaldecoder("utf-8")().decode(head)  # raises on bytes that are not text
                return True
            fs, p = io.filesystem(path)
            return fs.get_file_info(p).type == pafs.FileType.Directory
        except (OSError, ValueError, UnicodeDecodeError):
            return False

    unknown = sorted(k for k in layout.values() if k not in ("json", "png", "text", "dir")
                     and not k.startswith(("csv:", "run:")))
    if unknown:
        raise ValueError(f"recognise_files: unknown kinds {unknown} (json, csv:<column>, run:<job>, png, text, dir)")

    def recognise(folder: str, names: list[str]) -> list[str] | None:
        anchored = any(layout.get(n, "").startswith(_CONTENT_KINDS) for n in names)
        ok = anchored and all(n in layout and reads(folder, n, layout[n]) for n in names)
        return [] if ok else None

    return recognise


def parquet_with(uri: str, schema: pa.Schema | Iterable[str] = ()) -> bool:
    """Whether ``uri`` is a whole Parquet file (:func:`~ser_models.io.parquet_problem`) whose columns include
    ``schema``'s: by name, and for a :class:`pyarrow.Schema` by type family too (a string is a string whether
    large or not; an all-null column, typed ``null`` by a writer that saw no value, matches any type)."""
    if io.parquet_problem(uri) is not None:
        return False
    try:
        with io.open_input_file(uri) as fh:
            found = pq.ParquetFile(fh).schema_arrow
    except (OSError, ValueError, pa.ArrowException):
        return False
    fields = list(schema) if isinstance(schema, pa.Schema) else [pa.field(n, pa.null()) for n in schema]
    for want in fields:
        idx = found.get_field_index(want.name)
        if idx < 0:
            return False
        if want.type != pa.null() and not _same_family(want.type, found.field(idx).type):
            return False
    return True


def _same_family(a: pa.DataType, b: pa.DataType) -> bool:
    t = pa.types
    if a == b or pa.null() in (a, b):
        return True
    for test in ((lambda x: t.is_string(x) or t.is_large_string(x) or t.is_string_view(x)),
                 (lambda x: t.is_binary(x) or t.is_large_binary(x) or t.is_binary_view(x)),
                 t.is_integer, t.is_floating):
        if test(a) and test(b):
            return True
    return False


__all__ = ["parquet_with", "recognise_csv", "recognise_files"]
