"""``python -m jobs.convert``: import a Lhotse, Hugging Face or NeMo manifest or a standard emotional-speech corpus
(IEMOCAP, MSP-Podcast, CREMA-D, RAVDESS), or export ours to Lhotse, Hugging Face or NeMo.

Without ``to=`` the job imports: ``input`` is the foreign manifest (its format found from the file, or named by
``format=``) or a corpus's root folder (``format=iemocap|msp_podcast|crema_d|ravdess``, or found by its layout:
:mod:`ser_models.formats.corpora`) and ``output`` the manifest to write. With ``to=lhotse|nemo|hf`` it exports:
``input`` is a label ledger (or its run folder), a timeline or a manifest (:mod:`ser_models.formats.sources`) and
``output`` a folder (Lhotse, Hugging Face) or a file (NeMo).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ser_models import io
from ser_models.config import LOCATION, PATH, RESULT, SPEED, field
from ser_models.exceptions import ConfigError, ForeignFolderError, ManifestError
from ser_models.formats.corpora import CORPORA, LAYOUTS
from ser_models.ownership import claim_file, claim_output, file_sha256, read_marker, replace_files

FORMATS = ("lhotse", "hf", "nemo")
#: The label field each format names when ``label_field`` is empty.
DEFAULT_LABEL_FIELDS = {"lhotse": "emotion", "hf": "label", "nemo": "label"}


@dataclasses.dataclass
class ConvertConfig:
    """Inputs of ``python -m jobs.convert`` (docs/interoperability.md; the corpora: docs/corpora.md)."""

    input: str = field("", effect=LOCATION, path=PATH, help="import: the Lhotse / NeMo manifest file, the Hugging "
                       "Face dataset folder or Parquet file, or a corpus's root folder (IEMOCAP_full_release, ...); "
                       "export: a label ledger (or its run folder), a timeline.parquet or one of our manifests")
    output: str = field("", effect=LOCATION, path=PATH, help="import: our manifest to write (.parquet, .csv, .tsv, "
                        ".jsonl); export: a folder (to=lhotse, to=hf) or a .jsonl file (to=nemo)")
    format: str = field("", effect=RESULT, help="import: the input's format, one of lhotse, hf, nemo, or the corpus, "
                        "one of iemocap, msp_podcast, crema_d, ravdess; '' = found from the file (a corpus folder by "
                        "its layout)")
    to: str = field("", effect=RESULT, help="export to lhotse, nemo or hf; '' = import")
    kind: str = field("segments", effect=RESULT, help="import: 'segments' (a manifest for jobs.prepare_pool) or "
                      "'recordings' (long files for jobs.segment; Lhotse only)")
    label_field: str = field("", effect=RESULT, help="the foreign field holding the label ('' = emotion for Lhotse's "
                             "custom fields, label for Hugging Face and NeMo)")
    labels: list[str] = field(effect=RESULT, default_factory=list, help="import: allowed labels; rows with another "
                              "are refused (empty = any); export to hf: the ClassLabel names in order")
    recordings: str | None = field(None, effect=LOCATION, path=PATH, help="Lhotse import of supervisions: their "
                                   "RecordingSet file (default: the name with supervisions -> recordings)")
    audio_root: str | None = field(None, effect=LOCATION, path=PATH, help="Lhotse / NeMo import: the folder "
                                   "relative audio paths start from (default: the manifest's folder)")
    audio_dir: str | None = field(None, effect=LOCATION, path=PATH, help="Hugging Face import: where audio bytes "
                                  "embedded in the dataset are written once, named by their content")
    id_field: str = field("", effect=RESULT, help="import: the field holding each clip's id ('' = the format's "
                          "usual one, else an id derived from the row)")
    audio_field: str = field("", effect=RESULT, help="Hugging Face import: the audio column ('' = the Audio "
                             "feature)")
    pool_dir: str | None = field(None, effect=LOCATION, path=PATH, help="export of a label ledger: the prepared "
                                 "pool it labels (files, recordings and times)")
    segments: str | None = field(None, effect=LOCATION, path=PATH, help="export of a timeline: its segments "
                                 "manifest (default: segments/segments.parquet beside it)")
    check_files: bool = field(True, effect=SPEED, help="import: refuse rows whose audio file does not exist (one "
                              "stat per distinct file)")
    test_session: int = field(5, effect=RESULT, help="IEMOCAP import: the session (1-5) whose turns are split "
                              "'test', the others 'train' (leave one session out); 0 = no split")
    dev_session: int = field(0, effect=RESULT, help="IEMOCAP import: a session (1-5) whose turns are split 'dev'; "
                             "0 = none")
    seed: int = field(0, effect=RESULT, help="CREMA-D / RAVDESS import: the draw of the speaker-disjoint splits "
                      "(which actors are dev and test)")
    dev_fraction: float = field(0.1, effect=RESULT, help="CREMA-D / RAVDESS import: the share of actors in split "
                                "'dev' (rounded to whole actors)")
    test_fraction: float = field(0.2, effect=RESULT, help="CREMA-D / RAVDESS import: the share of actors in split "
                                 "'test' (rounded to whole actors)")
    include_song: bool = field(False, effect=RESULT, help="RAVDESS import: take the song files (vocal channel 02) "
                               "too; default speech only")

    def __post_init__(self):
        if not self.input or not self.output:
            raise ConfigError("input=... and output=... are both required")
        if self.format not in ("", *FORMATS, *CORPORA):
            raise ConfigError(f"format={self.format!r}: use one of {[*FORMATS, *CORPORA]} (or leave it empty)")
        if self.to not in ("", *FORMATS):
            raise ConfigError(f"to={self.to!r}: use one of {list(FORMATS)} (or leave it empty to import)")
        if self.kind not in ("segments", "recordings"):
            raise ConfigError(f"kind={self.kind!r}: use 'segments' or 'recordings'")
        for key in ("test_session", "dev_session"):
            if not 0 <= getattr(self, key) <= 5:
                raise ConfigError(f"{key}={getattr(self, key)}: IEMOCAP has sessions 1 to 5 (0 = none)")
        fractions = (self.dev_fraction, self.test_fraction)
        if not all(0 <= f < 1 for f in fractions) or sum(fractions) >= 1:
            raise ConfigError(f"dev_fraction={self.dev_fraction}, test_fraction={self.test_fraction}: each in [0, 1) "
                              "and together below 1 (the rest of the actors train)")


def detect_format(path: str) -> str:
    """``lhotse``, ``hf`` or ``nemo``: a foreign manifest's format, from the file itself; for a folder, the corpus
    whose layout it has (:func:`ser_models.formats.corpora.detect_corpus`), else ``hf``.

    Raises:
        ManifestError: naming the file when it is none of them.
    """
    fmt, why = sniff_format(path)
    if fmt is None:
        raise ManifestError(why)
    return fmt


def sniff_format(path: str) -> tuple[str | None, str]:
    """:func:`detect_format` without its refusal: ``(format, "")``, or ``(None, why)`` for a file that is none of
    the foreign formats (one of our manifests, an EmoBox file, or neither). Reads a Parquet file's schema or a
    JSON file's first 64 KiB, never the whole file.

    Raises:
        ManifestError: ``path`` does not exist.
    """
    src = str(io.storage_path(path))
    if not io.exists(src):
        raise ManifestError(f"input not found: {src}")
    fs, p = io.filesystem(src)
    if fs.get_file_info(p).type == pafs.FileType.Directory:
        from ser_models.formats.corpora import detect_corpus

        # A corpus only by a layout no dataset folder has; else a save_to_disk folder or a folder of Parquet files.
        return detect_corpus(src) or "hf", ""
    if src.endswith((".parquet", ".arrow")):

        try:
            schema = pq.read_schema(p, filesystem=fs)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            return None, f"{src}: not a Parquet file ({exc})"
        if b"huggingface" in (schema.metadata or {}):
            return "hf", ""
        return None, (f"{src}: a Parquet file without Hugging Face features: if it is one of our manifests, give it "
                      "to the jobs as it is; else name its format with format=hf")
    from ser_models.formats.lhotse_manifest import is_yaml, item_kind

    if is_yaml(src):
        return "lhotse", ""  # of the three formats, only Lhotse writes YAML manifests
    try:
        first = _first_item(src)
    except ManifestError as exc:
        return None, str(exc)
    if {"utt_id", "path"} <= set(first) and "audio_filepath" not in first:  # our columns; no Lhotse item has both
        return None, f"{src}: one of our manifests (utt_id, path): give it to the jobs as it is"
    if item_kind(first) != "unknown":
        return "lhotse", ""
    if "audio_filepath" in first:
        return "nemo", ""
    return None, (f"{src}: its first object (keys {sorted(first)[:8]}) is neither a Lhotse recording, supervision "
                  "or cut nor a NeMo line (audio_filepath); name the format with format=...")


def _first_item(src: str) -> dict:
    with io.open_input_file(src) as raw:
        head_bytes = raw.read(1 << 16)
    if head_bytes[:2] == b"\x1f\x8b":  # gzip: its first 64 KiB of text
        head_bytes = gzip.GzipFile(fileobj=__import__("io").BytesIO(head_bytes)).read1(1 << 16)
    head = head_bytes.decode("utf-8", "replace").lstrip()
    if head.startswith("["):  # one JSON list (Lhotse .json): the first object is the text up to its match
        head = head[1:].lstrip()
    try:
        item, _ = json.JSONDecoder().raw_decode(head)
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{src}: not JSON lines ({exc.msg} at character {exc.pos})") from None
    if not isinstance(item, dict):
        raise ManifestError(f"{src}: the first line is not a JSON object")
    return item


def run_import(cfg: ConvertConfig, log=print):
    """Import ``cfg.input`` into ``cfg.output``; returns ``(manifest, report)``."""
    from ser_models.formats.rows import refused_path

    inputs = {"input": cfg.input, "recordings": cfg.recordings}
    claim_file(cfg.output, inputs=inputs)
    # The refused rows go beside the output (rows.finish): an output too, claimed like it before the first byte.
    claim_file(refused_path(cfg.output), inputs=inputs, key="the refused-rows list of output")
    fmt = cfg.format or detect_format(cfg.input)
    if fmt in CORPORA:
        from ser_models.formats.corpora import import_corpus

        if cfg.kind != "segments":
            raise ConfigError(f"kind={cfg.kind}: a corpus imports as kind=segments (one row per clip)")
        if not cfg.format:
            log(f"{cfg.input}: the {fmt} layout ({LAYOUTS[fmt]}): importing as format={fmt}")
        return import_corpus(fmt, cfg.input, cfg.output, labels=cfg.labels, check_files=cfg.check_files,
                             test_session=cfg.test_session, dev_session=cfg.dev_session, seed=cfg.seed,
                             dev_fraction=cfg.dev_fraction, test_fraction=cfg.test_fraction,
                             include_song=cfg.include_song, log=log)
    label_field = cfg.label_field or DEFAULT_LABEL_FIELDS[fmt]
    if fmt != "lhotse" and cfg.kind != "segments":
        raise ConfigError(f"kind={cfg.kind}: only Lhotse recordings import as a recordings manifest; import {fmt} "
                          "as kind=segments")
    common = {"labels": cfg.labels, "check_files": cfg.check_files, "log": log}
    if fmt == "lhotse":
        from ser_models.formats.lhotse_manifest import import_lhotse

        return import_lhotse(cfg.input, cfg.output, kind=cfg.kind, label_field=label_field,
                             recordings=cfg.recordings, audio_root=cfg.audio_root, **common)
    if fmt == "nemo":
        from ser_models.formats.nemo_manifest import import_nemo

        return import_nemo(cfg.input, cfg.output, label_field=label_field, id_field=cfg.id_field or "utt_id",
                           audio_root=cfg.audio_root, **common)
    from ser_models.formats.hf_dataset import import_hf

    return import_hf(cfg.input, cfg.output, label_field=label_field, id_field=cfg.id_field,
                     audio_field=cfg.audio_field, audio_dir=cfg.audio_dir or "", **common)


def run_export(cfg: ConvertConfig, log=print):
    """Export ``cfg.input`` (a ledger, timeline or manifest) to ``cfg.output`` in ``cfg.to``'s format; returns
    what the writer returns (the files)."""
    from ser_models.formats.sources import export_table

    label_field = cfg.label_field or DEFAULT_LABEL_FIELDS[cfg.to]
    inputs = {"input": cfg.input, "pool_dir": cfg.pool_dir, "segments": cfg.segments}
    if cfg.to == "nemo":
        from ser_models.formats.nemo_manifest import write_nemo

        if os.path.splitext(cfg.output)[1].lower() not in (".json", ".jsonl"):
            raise ConfigError(f"output={cfg.output}: a NeMo manifest is one file ending in .json or .jsonl")
        claim_file(cfg.output, inputs=inputs)
        kind, rows = export_table(cfg.input, pool_dir=cfg.pool_dir, segments=cfg.segments)
        log(f"export {kind} {cfg.input}: {len(rows)} rows")
        return write_nemo(rows, cfg.output, label_field=label_field, log=log)
    # An export folder is ours; what a person added to it stays. The files of the previous export that this
    # one does not write again (another split, a dropped file) are deleted: the marker lists them with their
    # content's hash, and one a person edited since is kept (replace_files warns).
    with claim_output(cfg.output, "export", inputs=inputs, key="output", log=log):
        kind, rows = export_table(cfg.input, pool_dir=cfg.pool_dir, segments=cfg.segments)
        log(f"export {kind} {cfg.input}: {len(rows)} rows")
        if cfg.to == "lhotse":
            from ser_models.formats.lhotse_manifest import LHOTSE_FILES, write_lhotse

            _refuse_overwrites(cfg.output, list(LHOTSE_FILES.values()))
            files = write_lhotse(rows, cfg.output, label_field=label_field, log=log)
        else:
            from ser_models.formats.hf_dataset import hf_files, write_hf

            _refuse_overwrites(cfg.output, hf_files(rows))
            files = write_hf(rows, cfg.output, label_field=label_field, labels=cfg.labels, log=log)
        written = list(files.values()) if isinstance(files, dict) else list(files)
        for gone in replace_files(cfg.output, "export", written, log=log):
            log(f"removed {gone}: written by the previous export of {cfg.output}, not by this one")
        return files


def _refuse_overwrites(folder: str, names: list[str]) -> None:
    """Before an export writes ``names`` (relative to its folder): each one already there must be a file the
    previous export wrote, with the content it wrote (the hash its marker records); a person's edit of it, or
    a person's own file of that name, is never written over.

    Raises:
        ForeignFolderError: naming the files; nothing is written.
    """
    known = (read_marker(folder) or {}).get("hashes") or {}
    changed = []
    for rel in names:
        target, parts = io.join(folder, rel), rel.split("/")
        # a link on the way (data/ leading to a person's folder) would be written through
        if any(io.is_link(io.join(folder, *parts[:i])) for i in range(1, len(parts) + 1)) or (
                io.exists(target) and known.get(rel) != file_sha256(target)):
            changed.append(rel)
    if changed:
        raise ForeignFolderError(
            f"refusing to export into {folder}: this export writes {', '.join(changed)}, and what is there now is "
            "not what the previous export wrote (edited since, a file or link of yours, or an export of a version "
            "that recorded no content hash). Move it elsewhere (or delete it, if nothing in it is needed) and "
            "rerun; nothing was written")


def convert(cfg: ConvertConfig, log=print):
    """Import (``to`` empty) or export, as ``cfg`` says."""
    return run_export(cfg, log) if cfg.to else run_import(cfg, log)


__all__ = ["CORPORA", "DEFAULT_LABEL_FIELDS", "FORMATS", "ConvertConfig", "convert", "detect_format", "run_export",
           "run_import", "sniff_format"]
