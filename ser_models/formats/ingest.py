"""Foreign manifests given straight to a job: ``jobs.prepare_pool manifest=...`` and ``jobs.segment recordings=...``
take every format ``jobs.convert`` imports, in one step.

The key may name one of our manifests (CSV / TSV, Parquet, JSON lines or JSON, EmoBox's JSON lines included),
read as it is, or a foreign one: a Lhotse manifest (cuts, or supervisions with their recordings file beside them;
JSON lines, JSON or YAML, gzipped or not), a NeMo manifest, a Hugging Face dataset (a ``save_to_disk`` folder, a
folder of its Parquet files or one of them) or a corpus's root folder (IEMOCAP, MSP-Podcast, CREMA-D, RAVDESS).
Its format is found as ``jobs.convert`` finds it (:func:`~ser_models.formats.convert.sniff_format`), and
``jobs.convert``'s own importer (:func:`~ser_models.formats.convert.run_import`, with its defaults) writes our
manifest into the job's output folder while the job holds that folder's claim. The job then reads that file as it
reads any manifest of ours::

    imported/manifest.parquet       jobs.prepare_pool: our segments manifest, the one the pool is built from
    imported/recordings.parquet     jobs.segment: our recordings manifest
    imported/<name>.refused.csv     the rows refused, each with its reason (the first ten are printed too)
    imported/recordings.annotations.parquet   jobs.segment from labelled Lhotse supervisions: for annotations=
    imported/audio/                 audio embedded in a Hugging Face dataset, written once, named by its content

Every run imports again (one pass over the foreign manifest, one stat per audio file): an edited foreign manifest
is then seen as an edited manifest of ours is (a pool grows or changes in place; an unchanged one is up to date).
An option of ``jobs.convert`` beyond its defaults (``label_field``, ``recordings``, ``audio_root``, a corpus's
splits) needs ``jobs.convert`` first; the job takes the manifest it writes as it is.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pyarrow.fs as pafs

from ser_models import io
from ser_models.data.manifest import TABLE_EXTENSIONS
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.formats.convert import ConvertConfig, run_import, sniff_format
from ser_models.ownership import assert_claimed

#: The folder inside the job's output that holds the import.
IMPORT_FOLDER = "imported"
#: The manifest each kind of import writes there.
IMPORTED_FILES = {"segments": "manifest.parquet", "recordings": "recordings.parquet"}
#: Extensions whose files are ours as they are: never looked into.
_OURS_ONLY = (".csv", ".tsv", ".pq")
#: Extensions a foreign manifest file may have (Lhotse's gzipped and YAML ones too); others are refused up front.
_FOREIGN = (".parquet", ".json", ".jsonl", ".gz", ".yaml", ".yml")
_WHAT = {"lhotse": "a Lhotse manifest", "hf": "a Hugging Face dataset", "nemo": "a NeMo manifest"}
ACCEPTED = ("jobs.prepare_pool and jobs.segment read our manifests ({ours}; EmoBox JSON lines too) and, directly, "
            "Lhotse manifests (cuts, or supervisions with their recordings beside them: .jsonl, .jsonl.gz, .json, "
            ".json.gz, .yaml), NeMo manifests (.json, .jsonl), Hugging Face datasets (a save_to_disk folder, a "
            "folder of its Parquet files or one .parquet) and the root folders of IEMOCAP, MSP-Podcast, CREMA-D "
            "and RAVDESS; python -m jobs.convert writes one of our manifests from any of them, with more options "
            "(docs/interoperability.md)")


def accepted() -> str:
    """The formats the jobs take, and ``jobs.convert``, for errors."""
    return ACCEPTED.format(ours=", ".join(TABLE_EXTENSIONS))


def foreign_format(path: str, key: str = "manifest") -> str | None:
    """The format of a foreign manifest at ``path`` (``lhotse``, ``hf``, ``nemo`` or a corpus), or None for one
    of ours (and for a missing path: the job's own reader names it).

    Raises:
        ManifestError: an extension neither we nor the foreign formats use, or a file with a foreign format's
            extension only (``.gz``, ``.yaml``) that is none of them; naming the formats accepted and
            ``jobs.convert``.
    """
    src = str(io.storage_path(path))
    if not io.exists(src):
        return None
    fs, p = io.filesystem(src)
    folder = fs.get_file_info(p).type == pafs.FileType.Directory
    ext = os.path.splitext(src)[1].lower()
    if not folder and ext in _OURS_ONLY:
        return None
    if not folder and ext not in _FOREIGN:
        raise ManifestError(f"{key}={src}: unknown manifest extension {ext!r}. {accepted()}")
    fmt, why = sniff_format(src)
    if fmt is None and ext not in TABLE_EXTENSIONS:
        raise ManifestError(f"{key}={src}: {why}. {accepted()}")
    return fmt


def as_ours(path: str, output_dir: str, kind: str, *, key: str = "manifest", log: Callable[[str], None] = print,
            ) -> str:
    """The manifest file a job reads: ``path`` itself when it is one of ours, else its import into
    ``output_dir/imported/`` (module docstring), for which the caller holds the claim of ``output_dir``.

    Args:
        path: what the job's ``key`` names.
        output_dir: the job's output folder (local or a URI), claimed by the caller.
        kind: ``segments`` (``jobs.prepare_pool``) or ``recordings`` (``jobs.segment``).
        key: the job's config key, for messages.
        log: where the import's report goes.

    Raises:
        ManifestError: an unknown format (:func:`foreign_format`), or every row refused.
        ConfigError: the import needs an option of ``jobs.convert`` (naming it).
        ForeignFolderError: the caller has not claimed ``output_dir``.
    """
    fmt = foreign_format(path, key)
    return str(path) if fmt is None else _import(path, fmt, output_dir, kind, key, log)


def _import(path: str, fmt: str, output_dir: str, kind: str, key: str, log: Callable[[str], None]) -> str:
    assert_claimed(output_dir)  # the import is the first thing the job writes into its folder
    folder = io.join(str(io.storage_path(output_dir)), IMPORT_FOLDER)
    target = io.join(folder, IMPORTED_FILES[kind])
    log(f"{key}={path}: {_WHAT.get(fmt, f'the {fmt} corpus folder')}; importing it as jobs.convert does, into "
        f"{target}")
    cfg = ConvertConfig(input=str(path), output=target, format=fmt, kind=kind, audio_dir=io.join(folder, "audio"))
    try:
        run_import(cfg, log=log)
    except ConfigError as exc:
        raise ConfigError(f"{key}={path}: {exc}. The job imports it with jobs.convert's defaults; for another "
                          f"option run python -m jobs.convert input={path} output=<our manifest> ... first and "
                          f"give the job that manifest") from exc
    return target


@contextmanager
def read_as_ours(path: str, output_dir: str, kind: str, claim: Callable[[], AbstractContextManager], *,
                 key: str = "manifest", log: Callable[[str], None] = print) -> Iterator[str]:
    """``with read_as_ours(cfg.manifest, cfg.output_dir, "segments", claim) as manifest:``: the file to read
    (:func:`as_ours`). One of ours is read before anything is claimed; a foreign one is imported under
    ``claim()`` (the job's claim of ``output_dir``), held until the block ends.
    """
    fmt = foreign_format(path, key)
    if fmt is None:
        yield str(path)
        return
    with claim():
        yield _import(path, fmt, output_dir, kind, key, log)


__all__ = ["ACCEPTED", "IMPORTED_FILES", "IMPORT_FOLDER", "accepted", "as_ours", "foreign_format", "read_as_ours"]
