"""``python -m jobs.convert``: import a Lhotse, Hugging Face or NeMo manifest, or export ours to one of them.

Without ``to=`` the job imports: ``input`` is the foreign manifest (its format found from the file, or named by
``format=``) and ``output`` the manifest to write. With ``to=lhotse|nemo|hf`` it exports: ``input`` is a label
ledger (or its run folder), a timeline or a manifest (:mod:`ser_models.formats.sources`) and ``output`` a folder
(Lhotse, Hugging Face) or a file (NeMo).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os

import pyarrow.fs as pafs

from ser_models import io
from ser_models.config import LOCATION, PATH, RESULT, SPEED, field
from ser_models.exceptions import ConfigError, ManifestError
from ser_models.ownership import claim_file, claim_output, replace_files

FORMATS = ("lhotse", "hf", "nemo")
#: The label field each format names when ``label_field`` is empty.
DEFAULT_LABEL_FIELDS = {"lhotse": "emotion", "hf": "label", "nemo": "label"}


@dataclasses.dataclass
class ConvertConfig:
    """Inputs of ``python -m jobs.convert`` (docs/interoperability.md)."""

    input: str = field("", effect=LOCATION, path=PATH, help="import: the Lhotse / NeMo manifest file or the Hugging "
                       "Face dataset folder or Parquet file; export: a label ledger (or its run folder), a "
                       "timeline.parquet or one of our manifests")
    output: str = field("", effect=LOCATION, path=PATH, help="import: our manifest to write (.parquet, .csv, .tsv, "
                        ".jsonl); export: a folder (to=lhotse, to=hf) or a .jsonl file (to=nemo)")
    format: str = field("", effect=RESULT, help="import: the input's format, one of lhotse, hf, nemo; '' = found from "
                        "the file")
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

    def __post_init__(self):
        if not self.input or not self.output:
            raise ConfigError("input=... and output=... are both required")
        if self.format not in ("", *FORMATS):
            raise ConfigError(f"format={self.format!r}: use one of {list(FORMATS)} (or leave it empty)")
        if self.to not in ("", *FORMATS):
            raise ConfigError(f"to={self.to!r}: use one of {list(FORMATS)} (or leave it empty to import)")
        if self.kind not in ("segments", "recordings"):
            raise ConfigError(f"kind={self.kind!r}: use 'segments' or 'recordings'")


def detect_format(path: str) -> str:
    """``lhotse``, ``hf`` or ``nemo``: a foreign manifest's format, from the file itself.

    Raises:
        ManifestError: naming the file when it is none of them.
    """
    src = str(io.storage_path(path))
    if not io.exists(src):
        raise ManifestError(f"input not found: {src}")
    fs, p = io.filesystem(src)
    if fs.get_file_info(p).type == pafs.FileType.Directory:
        return "hf"  # a save_to_disk folder or a folder of Parquet files
    if src.endswith((".parquet", ".arrow")):
        import pyarrow.parquet as pq

        schema = pq.read_schema(p, filesystem=fs)
        if b"huggingface" in (schema.metadata or {}):
            return "hf"
        raise ManifestError(f"{src}: a Parquet file without Hugging Face features: if it is one of our manifests, "
                            "give it to the jobs as it is; else name its format with format=hf")
    from ser_models.formats.lhotse_manifest import is_yaml, item_kind

    if is_yaml(src):
        return "lhotse"  # of the three formats, only Lhotse writes YAML manifests
    first = _first_item(src)

    if item_kind(first) != "unknown":
        return "lhotse"
    if "audio_filepath" in first:
        return "nemo"
    raise ManifestError(f"{src}: its first object (keys {sorted(first)[:8]}) is neither a Lhotse recording, "
                        "supervision or cut nor a NeMo line (audio_filepath); name the format with format=...")


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
    claim_file(cfg.output, inputs={"input": cfg.input, "recordings": cfg.recordings})
    fmt = cfg.format or detect_format(cfg.input)
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
    # one does not write again (another split, a dropped file) are deleted: the marker lists them.
    with claim_output(cfg.output, "export", inputs=inputs, key="output", log=log):
        kind, rows = export_table(cfg.input, pool_dir=cfg.pool_dir, segments=cfg.segments)
        log(f"export {kind} {cfg.input}: {len(rows)} rows")
        if cfg.to == "lhotse":
            from ser_models.formats.lhotse_manifest import write_lhotse

            files = write_lhotse(rows, cfg.output, label_field=label_field, log=log)
        else:
            from ser_models.formats.hf_dataset import write_hf

            files = write_hf(rows, cfg.output, label_field=label_field, labels=cfg.labels, log=log)
        written = list(files.values()) if isinstance(files, dict) else list(files)
        for gone in replace_files(cfg.output, "export", written):
            log(f"removed {gone}: written by the previous export of {cfg.output}, not by this one")
        return files


def convert(cfg: ConvertConfig, log=print):
    """Import (``to`` empty) or export, as ``cfg`` says."""
    return run_export(cfg, log) if cfg.to else run_import(cfg, log)


__all__ = ["DEFAULT_LABEL_FIELDS", "FORMATS", "ConvertConfig", "convert", "detect_format", "run_export",
           "run_import"]
