"""The segmentation job's body: VAD actors over the recordings (Ray Data), then rules, gate and labels.

Output, under ``output_dir`` (a local path or URI)::

    segments.parquet            one row per kept segment: a manifest ``jobs.prepare_pool`` reads
    rejected_segments.parquet   segments the quality gate refused, with ``reason``
    quarantine.parquet          recordings that gave nothing: recording, path, reason, detail
    frames/<vad key>/<recording>.parquet   each stream's frame probabilities, power and clipping
    summary.json, config.yaml
    imported/                   the import of a Lhotse ``recordings`` manifest (:mod:`ser_models.formats.ingest`)

**Resume.** The VAD pass writes one frames file per recording, atomically, when the recording is finished.
A rerun skips every recording whose frames file exists and reads back whole (a killed job redoes only the
recordings it was in the middle of; a truncated file is redone too) and rebuilds the segments from all frames
files, so segment ids are identical. Failed recordings leave no frames file and are tried again. The
folder's key changes with what changes the probabilities (``channels``, the model file), so changed rules
reuse the stored probabilities and run no model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pyarrow as pa

from ser_models.config import strip_user_info, to_dict, to_yaml
from ser_models.data.manifest import read_table
from ser_models.exceptions import AudioError
from ser_models.failpoints import pausepoint
from ser_models.formats.ingest import read_as_ours
from ser_models.io import (
    exists,
    join,
    list_dir,
    parquet_problem,
    read_json,
    read_parquet,
    storage_path,
    write_bytes_atomic,
    write_json_atomic,
    write_parquet_atomic,
)
from ser_models.locks import FolderLock, fenced_for
from ser_models.names import safe_child
from ser_models.ownership import check_output, claim_output
from ser_models.progress import StageProgress
from ser_models.segment.config import SegmentConfig
from ser_models.segment.overlap import labels_by_overlap
from ser_models.segment.recordings import read_recordings
from ser_models.segment.silero import VAD_SAMPLE_RATE, model_file
from ser_models.segment.streams import StreamFrames, segment_rows

#: Bumped when the frames files' content changes, so old ones are not reused.
FRAMES_FORMAT_VERSION = 1
QUARANTINE_COLUMNS = ("recording", "path", "reason", "detail")


@dataclasses.dataclass
class SegmentSummary:
    """What a segmentation run produced (also ``summary.json``)."""

    recordings: int
    segmented: int
    quarantined: int
    reasons: dict[str, int]
    segments: int
    rejected_segments: int
    audio_hours: float
    segment_hours: float
    vad_recordings: int
    vad_seconds: float
    seconds: float
    output_dir: str

    def table(self) -> str:
        """Human-readable summary (printed by the job)."""
        rt = self.audio_hours * 3600 / self.vad_seconds if self.vad_seconds > 0 and self.vad_recordings else 0.0
        lines = [f"segments {self.output_dir}",
                 f"  recordings     {self.recordings:>8}  ({self.audio_hours:.2f} h of audio)",
                 f"  segmented      {self.segmented:>8}",
                 f"  quarantined    {self.quarantined:>8}" + "".join(f"  {k}: {v}" for k, v in sorted(self.reasons.items())),
                 f"  segments       {self.segments:>8}  ({self.segment_hours:.2f} h)",
                 f"  gated out      {self.rejected_segments:>8}  (rejected_segments.parquet)",
                 f"  VAD pass       {self.vad_recordings:>8} recordings in {self.vad_seconds:.1f} s"
                 + (f" ({rt:.0f}x real time)" if rt else " (all reused)")]
        return "\n".join(lines)


def vad_key(cfg: SegmentConfig) -> str:
    """Key of the frames folder: what changes the frame probabilities (channels, model bytes, format)."""
    h = hashlib.sha256()
    h.update(f"frames-{FRAMES_FORMAT_VERSION}|channels={cfg.channels}|".encode())
    h.update(hashlib.sha256(model_file().read_bytes()).digest())
    return h.hexdigest()[:16]


def frames_path(frames_dir: str, recording: str) -> str:
    """The frames file of one recording."""

    return safe_child(frames_dir, f"{recording}.parquet")  # read_recordings checks ids; this checks the path


def write_frames(path: str, streams: list[StreamFrames], sample_rate: int, channels: int) -> None:
    """One row per stream; written atomically (the file's existence means the recording is done)."""
    table = pa.table({
        "channel": pa.array([s.channel for s in streams], pa.int32()),
        "samples": pa.array([s.samples for s in streams], pa.int64()),
        "probs": pa.array([s.probs for s in streams], pa.list_(pa.float32())),
        "power": pa.array([s.power for s in streams], pa.list_(pa.float32())),
        "clipped": pa.array([s.clipped for s in streams], pa.list_(pa.int32())),
        "sample_rate": pa.array([sample_rate] * len(streams), pa.int32()),
        "file_channels": pa.array([channels] * len(streams), pa.int32()),
    })
    write_parquet_atomic(path, table)


def done_recordings(frames_dir: str) -> set[str]:
    """Recordings whose frames file reads back whole (footer, row counts, data extents: see
    :func:`ser_models.io.parquet_problem`). A file cut short (a store that published half an object, a disk
    that filled) is not trusted: it is named in a log line and its recording is segmented again, which
    replaces it."""

    names = [n for n in (list_dir(frames_dir) if exists(frames_dir) else []) if n.endswith(".parquet")]
    # One footer read per file; on an object store each is a round trip, so they overlap.
    with ThreadPoolExecutor(max_workers=8) as pool:
        problems = list(pool.map(lambda n: parquet_problem(join(frames_dir, n)), names))
    done = set()
    for name, problem in zip(names, problems):
        if problem is None:
            done.add(name[:-len(".parquet")])
        else:
            print(f"segment: frames file {join(frames_dir, name)} is incomplete ({problem}); segmenting its "
                  "recording again")
    return done


def read_frames(path: str) -> tuple[list[StreamFrames], int, int]:
    """Inverse of :func:`write_frames`: ``(streams, sample_rate, channels in the file)``."""
    t = read_parquet(path)
    cols = {c: t.column(c).to_pylist() for c in ("channel", "samples", "sample_rate", "file_channels")}
    streams = [
        StreamFrames(int(cols["channel"][i]), int(cols["samples"][i]),
                     t.column("probs")[i].values.to_numpy().astype(np.float32),
                     t.column("power")[i].values.to_numpy().astype(np.float32),
                     t.column("clipped")[i].values.to_numpy().astype(np.int32))
        for i in range(t.num_rows)
    ]
    return streams, int(cols["sample_rate"][0]), int(cols["file_channels"][0])


class VADWorker:
    """Ray Data actor: loads the VAD once, then writes one frames file per recording of its batches."""

    def __init__(self, frames_dir: str, block_seconds: float, max_seconds: float):
        from ser_models.segment.silero import SileroVAD

        self.vad = SileroVAD.from_wheel()
        self.frames_dir, self.block_seconds, self.max_seconds = frames_dir, block_seconds, max_seconds

    def __call__(self, batch: dict) -> dict:
        from ser_models.segment.streams import vad_pass

        n = len(batch["recording"])
        status, detail, seconds = np.empty(n, object), np.empty(n, object), np.zeros(n)
        for i in range(n):
            rec, path, policy = str(batch["recording"][i]), str(batch["path"][i]), str(batch["channels"][i])
            try:
                result = vad_pass(path, self.vad, policy, self.block_seconds, self.max_seconds)
                write_frames(frames_path(self.frames_dir, rec), result.streams, result.sample_rate, result.channels)
                pausepoint("segment_after_recording")  # kill tests: one recording done, the next not begun
                status[i], seconds[i] = "ok", result.duration
            except AudioError as exc:
                status[i], detail[i] = exc.reason, exc.detail
            except Exception as exc:  # noqa: BLE001 - one strange file must never stop the archive
                status[i], detail[i] = "unreadable", f"{path}: {type(exc).__name__}: {exc}"
        return {"recording": np.asarray(batch["recording"], dtype=object), "status": status, "detail": detail,
                "seconds": seconds}


def _run_vad(todo: pd.DataFrame, cfg: SegmentConfig, frames_dir: str, verbose: bool) -> pd.DataFrame:
    import ray.data

    ds = ray.data.from_pandas([todo.iloc[[i]] for i in range(len(todo))])
    out = ds.map_batches(
        VADWorker,
        fn_constructor_kwargs={"frames_dir": frames_dir, "block_seconds": cfg.block_seconds,
                               "max_seconds": cfg.max_recording_hours * 3600.0},
        batch_size=1, batch_format="numpy", num_cpus=1,
        compute=ray.data.ActorPoolStrategy(size=min(cfg.num_workers, len(todo))),
    )
    before = len(list_dir(frames_dir)) if exists(frames_dir) else 0
    with StageProgress("VAD", len(todo), "recordings",
                       lambda: (len(list_dir(frames_dir)) if exists(frames_dir) else 0) - before, verbose=verbose):
        rows = out.to_pandas()
    return rows


def segment_archive(cfg: SegmentConfig, verbose: bool = True, source: str | None = None) -> SegmentSummary:
    """Segment every recording of ``cfg.recordings`` (resuming a previous run in ``cfg.output_dir``).

    A Lhotse recordings manifest (or supervisions, or cuts) is imported into ``output_dir/imported/`` first
    (:mod:`ser_models.formats.ingest`). Uses the current Ray instance (``ray.init()`` first to pick a cluster).

    Args:
        cfg: the run's configuration.
        verbose: print the progress of the VAD pass.
        source: the recordings manifest to read in place of ``cfg.recordings``: the import of a foreign one that
            ``jobs.segment`` made before Ray started.

    Returns:
        The run's :class:`SegmentSummary`.

    Raises:
        ManifestError: the recordings manifest or the annotations are malformed, or the recordings manifest is of
            no format the jobs read (naming those and jobs.convert).
        ConfigError: a bad key, or the silero-vad wheel is missing.
        ForeignFolderError: ``output_dir`` holds things this platform did not make (nothing is written there).
        LockHeldError: another process is segmenting into ``output_dir``.
    """

    t0 = time.perf_counter()
    out = storage_path(cfg.output_dir)
    with read_as_ours(source or cfg.recordings, out, "recordings", lambda: claim_segment_output(cfg),
                      key="recordings") as source:
        recordings = read_recordings(source)  # one of ours that is malformed fails before the folder is touched
        with claim_segment_output(cfg):
            return _segment_locked(cfg, out, recordings, t0, verbose)


def claim_segment_output(cfg: SegmentConfig) -> FolderLock:
    """``with claim_segment_output(cfg):`` the output folder's claim: refuses a folder that is not a segment
    output of ours, and a second writer (both would mix frames files)."""
    return claim_output(storage_path(cfg.output_dir), "segments", what="segment output", recognise=_legacy_segments,
                        inputs=_inputs(cfg))


def _inputs(cfg: SegmentConfig) -> dict:
    return {"recordings": cfg.recordings, "annotations": cfg.annotations}


def check_segment_output(cfg: SegmentConfig) -> None:
    """:func:`segment_archive`'s refusals of its ``output_dir``, writing nothing: a job calls it before Ray starts.

    Raises:
        ForeignFolderError: the folder is not a segment output of ours (or overlaps an input).
    """
    check_output(storage_path(cfg.output_dir), "segments", recognise=_legacy_segments, inputs=_inputs(cfg))


#: What a segment output holds: a folder of an earlier version with only these, its summary and its segments
#: table among them, is adopted when they read back (see :func:`_legacy_segments`).
SEGMENT_LAYOUT = ("segments.parquet", "rejected_segments.parquet", "quarantine.parquet", "frames", "summary.json",
                  "config.yaml")


def _legacy_segments(folder: str, names: list[str]) -> list[str] | None:
    """A segment output of an earlier version, recognised by content: only names of :data:`SEGMENT_LAYOUT`, a
    ``summary.json`` that reads as a segmentation summary (every field of :class:`SegmentSummary`), and a
    ``segments.parquet`` (with any other table there) that reads as whole Parquet. A run killed before its
    summary left frames, not an output: such a folder (``frames/`` and ``config.yaml``, say) is refused, and
    a person's folder of those names keeps its files."""
    if not set(names) <= set(SEGMENT_LAYOUT) or not {"summary.json", "segments.parquet"} <= set(names):
        return None
    try:
        summary = read_json(join(folder, "summary.json"))
    except (OSError, ValueError):
        return None
    fields = {f.name for f in dataclasses.fields(SegmentSummary)}
    if not isinstance(summary, dict) or not fields <= set(summary):
        return None
    if any(parquet_problem(join(folder, n)) for n in names if n.endswith(".parquet")):
        return None
    return []


def _segment_locked(cfg: SegmentConfig, out: str, recordings: pd.DataFrame, t0: float, verbose: bool) -> SegmentSummary:
    """:func:`segment_archive` holding the output folder's lock."""
    rules = cfg.rules.resolve(cfg.preset)
    annotations = _read_annotations(cfg.annotations) if cfg.annotations else None
    frames_dir = join(out, "frames", vad_key(cfg))
    recordings["channels"] = recordings["channel"].where(recordings["channel"].notna(), cfg.channels)
    done = done_recordings(frames_dir)
    todo = recordings[~recordings["recording"].isin(done)]
    print(f"segment: {len(recordings)} recordings, {len(recordings) - len(todo)} already done; preset "
          f"{cfg.preset}, channels {cfg.channels}")
    t_vad = time.perf_counter()
    failed = pd.DataFrame(columns=["recording", "status", "detail", "seconds"])
    if len(todo):
        results = _run_vad(todo[["recording", "path", "channels"]], cfg, frames_dir, verbose)
        failed = results[results["status"] != "ok"]
    vad_seconds = time.perf_counter() - t_vad

    kept_parts, rejected_parts, quarantine = [], [], []
    paths = dict(zip(recordings["recording"], recordings["path"]))
    for row in failed.itertuples():
        quarantine.append((row.recording, paths[row.recording], row.status, row.detail))
    meta_cols = [c for c in recordings.columns if c not in ("channel", "channels")]
    audio_seconds = 0.0
    failed_ids = set(failed["recording"])
    for meta in recordings[meta_cols].to_dict("records"):
        rec = meta["recording"]
        path = frames_path(frames_dir, rec)
        if rec in failed_ids or not exists(path):
            continue
        streams = read_frames(path)[0]
        audio_seconds += streams[0].samples / VAD_SAMPLE_RATE if streams else 0.0
        kept, rejected = segment_rows(meta, streams, rules, cfg.gate)
        if len(kept) + len(rejected) == 0:
            quarantine.append((rec, meta["path"], "no_speech", f"no speech found with preset {cfg.preset}"))
            continue
        kept_parts.append(kept)
        rejected_parts.append(rejected)
    segments = _concat(kept_parts)
    rejected = _concat(rejected_parts)
    if annotations is not None and len(segments):
        segments = pd.concat([segments, labels_by_overlap(segments, annotations, cfg.label_min_share)], axis=1)
        segments, unlabelled = _drop_unlabelled(segments, cfg.drop_unlabelled)
        rejected = _concat([rejected, unlabelled])
    if "reason" not in rejected.columns:  # nothing gated out: the file still says what its rows would hold
        rejected["reason"] = pd.Series(dtype=object)
    quarantined = pd.DataFrame(quarantine, columns=list(QUARANTINE_COLUMNS))
    write_parquet_atomic(join(out, "segments.parquet"), _to_arrow(segments))
    write_parquet_atomic(join(out, "rejected_segments.parquet"), _to_arrow(rejected))
    write_parquet_atomic(join(out, "quarantine.parquet"), _to_arrow(quarantined))
    summary = SegmentSummary(
        recordings=len(recordings), segmented=len(recordings) - len(quarantined), quarantined=len(quarantined),
        reasons=dict(Counter(quarantined["reason"])), segments=len(segments), rejected_segments=len(rejected),
        audio_hours=round(audio_seconds / 3600, 4),
        segment_hours=round(float(segments["duration"].sum()) / 3600, 4) if len(segments) else 0.0,
        vad_recordings=int(len(todo)), vad_seconds=round(vad_seconds, 3),
        seconds=round(time.perf_counter() - t0, 3), output_dir=str(out),
    )
    write_bytes_atomic(join(out, "config.yaml"), to_yaml(cfg).encode())
    with fenced_for(join(out, "summary.json")):  # the output's commit: only while its lock is still ours
        write_json_atomic(join(out, "summary.json"), {**dataclasses.asdict(summary), "config": strip_user_info(to_dict(cfg)),
                                                       "rules": dataclasses.asdict(rules)})
    print(summary.table())
    return summary


def _drop_unlabelled(segments: pd.DataFrame, which: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(kept, dropped)``: segments the annotations gave no label, of dev / test recordings (``eval``) or all,
    moved out with reason ``no_label``."""
    drop = segments["label"].isna()
    if which == "eval":
        drop &= segments["split"].isin(["dev", "test"]) if "split" in segments.columns else False
    elif which == "none":
        drop &= False
    return (segments[~drop].reset_index(drop=True),
            segments[drop].assign(reason="no_label").reset_index(drop=True))


def _read_annotations(path: str) -> pd.DataFrame:

    df, _ = read_table(path, "annotations file", allow_empty=True)
    for col in ("start", "end"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="raise")
    return df


def _concat(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"utt_id": pd.Series(dtype=object), "path": pd.Series(dtype=object), "recording": pd.Series(dtype=object)})


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    # Text columns with only missing values would be typed null; keep them strings for readers.
    table = pa.Table.from_pandas(df.reset_index(drop=True), preserve_index=False)
    fields = [pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def read_summary(output_dir: str) -> dict:
    """``summary.json`` of a finished run."""

    return read_json(join(output_dir, "summary.json"))


__all__ = ["FRAMES_FORMAT_VERSION", "QUARANTINE_COLUMNS", "SegmentSummary", "VADWorker", "done_recordings",
           "check_segment_output", "claim_segment_output", "frames_path", "read_frames", "read_summary", "segment_archive", "vad_key", "write_frames"]
