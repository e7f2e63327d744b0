"""The clip set: one split's clips held in memory by one worker, built from Ray Data batches.

A worker materialises its shard once per fit (labelled sets in active learning are small) as int16 PCM, half
the memory of float32, so that every epoch can reshuffle, re-crop and re-bucket without going back to Ray Data.
Audio, cached encoder features (pooled ``[L, D]`` or frames ``[F, L, D]``), labels, dimensional targets, soft
labels, speakers, transcripts and eGeMAPS functionals travel together. Training (``ser_models.training.
batching``), scoring, pre-training and the functionals extractor all read clips through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ser_models.data.inputs import AUDIO, SOURCE_COLUMNS, ModelInputs
from ser_models.data.speakers import speaker_key
from ser_models.exceptions import TrainingError

#: Columns a model reads from audio pool rows (scoring, TAPT, distillation, anchoring's target clips).
AUDIO_INPUT_COLUMNS = list(SOURCE_COLUMNS["audio"])
AUDIO_COLUMNS = [*AUDIO_INPUT_COLUMNS, "label"]


@dataclass
class ClipSet:
    """Clips of one split held by one worker.

    Attributes:
        ids: [N] clip ids.
        labels: [N] class indices, -1 where unknown (unlabelled pool, or no categorical output).
        audio: N int16 arrays [T_i] at 16 kHz (audio mode), or None.
        features: [N, L, D] float32 pooled per-layer features (frozen-encoder cache mode), or None.
        frames: N float16 arrays [F_i, L, D] of per-layer frame features (frame cache mode), or None.
        targets: [N, K] float32 dimensional values (``model.dimensions`` order), NaN where unknown; [N, 0]
            without dimensional outputs.
        transcripts: N transcripts (None where a clip has none) when the feed carried them, else None.
        soft: [N, C] float32 class probabilities (several annotators' vote shares; one-hot rows for hard labels)
            when any clip of the feed has a soft label, else None: training then fits the shares.
        speakers: N speaker ids (None where a clip has none) when the feed carried a ``speaker`` column, else
            None (``model.feature_norm=speaker`` reads them).
        functionals: [N, 88] float32 raw eGeMAPS functionals when the feed carried the feature cache's
            ``functionals`` column, else None (``model.functionals`` reads them).
    """

    ids: list[str] = field(default_factory=list)
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    audio: list[np.ndarray] | None = None
    features: np.ndarray | None = None
    targets: np.ndarray | None = None
    transcripts: list[str | None] | None = None
    frames: list[np.ndarray] | None = None
    soft: np.ndarray | None = None
    speakers: list | None = None
    functionals: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.targets is None:
            self.targets = np.zeros((len(self.ids), 0), np.float32)

    def subset(self, index) -> ClipSet:
        """The clips at positions ``index``, in that order."""
        index = np.asarray(index, dtype=np.int64)
        return ClipSet(
            ids=[self.ids[i] for i in index],
            labels=self.labels[index],
            audio=None if self.audio is None else [self.audio[i] for i in index],
            features=None if self.features is None else self.features[index],
            targets=self.targets[index],
            transcripts=None if self.transcripts is None else [self.transcripts[i] for i in index],
            frames=None if self.frames is None else [self.frames[i] for i in index],
            soft=None if self.soft is None else self.soft[index],
            speakers=None if self.speakers is None else [self.speakers[i] for i in index],
            functionals=None if self.functionals is None else self.functionals[index],
        )

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def is_features(self) -> bool:
        """Cached encoder outputs (pooled or frames), not audio."""
        return self.features is not None or self.frames is not None

    def sorted_by_id(self) -> ClipSet:
        """The same clips ordered by id: Ray Data may hand rows over in any order, and a fit that should
        be reproducible (resume after a crash) must not depend on it."""
        return self.subset(sorted(range(len(self.ids)), key=self.ids.__getitem__))

    def lengths(self) -> np.ndarray:
        """[N] lengths in samples (audio mode), frames (frame mode) or ones (pooled feature mode)."""
        if self.frames is not None:
            return np.fromiter((len(f) for f in self.frames), np.int64, len(self.frames))
        if self.audio is None:
            return np.ones(len(self), np.int64)
        return np.fromiter((len(a) for a in self.audio), np.int64, len(self.audio))


def collect_clips(batches: Iterable[dict], labels: Sequence[str], inputs: ModelInputs = AUDIO,
                  require_labels: bool = True, dimensions: Sequence[str] = ()) -> ClipSet:
    """Materialise numpy batches (from ``DataIterator.iter_batches``) into a :class:`ClipSet`.

    Args:
        batches: dicts of numpy columns; audio mode needs ``utt_id, audio, audio_format``, feature mode
            ``utt_id, features`` (float32 bytes of a [L, D] array, or float16 bytes of [F, L, D] frames).
        labels: the label set; ``label`` values are mapped to their index ([] = no categorical targets).
        inputs: what the rows carry: audio (the default), cached pooled ``[L, D]`` or cached frames
            ``[F, L, D]`` (:class:`~ser_models.data.inputs.ModelInputs`).
        require_labels: raise if a clip lacks a target the model trains on (a label when ``labels`` is set,
            a value of each of ``dimensions``), or has a label outside ``labels``.
        dimensions: dimensional columns to read into ``ClipSet.targets`` (``model.dimensions``).

    Raises:
        TrainingError: a label outside the label set (naming clip and label), or a missing target when
            required (naming clip and column).
    """
    from ser_models.data.audio import decode_pool_audio

    index = {name: i for i, name in enumerate(labels)}
    dimensions = list(dimensions)
    ids: list[str] = []
    ys: list[int] = []
    audio: list[np.ndarray] = []
    feats: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    texts: list[str | None] | None = None
    speakers: list | None = None
    functionals: list[np.ndarray] = []
    soft_rows: list[np.ndarray | None] = []
    for batch in batches:
        batch_ids = [str(x) for x in batch["utt_id"]]
        if "transcript" in batch:
            texts = (texts or []) + [t if isinstance(t, str) else None for t in batch["transcript"]]
        if "speaker" in batch:
            speakers = (speakers or []) + [speaker_key(v) for v in batch["speaker"]]
        if "functionals" in batch:
            functionals.extend(np.frombuffer(v, np.float32) for v in batch["functionals"])
        batch_labels = batch.get("label") if index else None
        if dimensions:
            targets.append(_dimension_values(batch, batch_ids, dimensions, require_labels))
        for j, uid in enumerate(batch_ids):
            raw = None if batch_labels is None else batch_labels[j]
            if not index:
                ys.append(-1)
            elif raw is None or (isinstance(raw, float) and np.isnan(raw)):
                if require_labels:
                    raise TrainingError(f"clip {uid!r} has no label but the split is used for training/eval")
                ys.append(-1)
            elif raw not in index:
                raise TrainingError(f"clip {uid!r} has label {raw!r}, not in model.labels {list(labels)}")
            else:
                ys.append(index[raw])
            soft_rows.append(_soft_row(batch, j, uid, index) if index and "soft_label" in batch else None)
            if inputs.is_cached:
                feats.append(inputs.decode(batch["features"][j]))
            else:
                fmt = batch["audio_format"][j]
                data = batch["audio"][j]
                if fmt == "pcm16":
                    audio.append(np.frombuffer(data, dtype="<i2").copy())
                else:
                    wav = decode_pool_audio(data, fmt)
                    audio.append(np.round(np.clip(wav, -1, 1) * 32767).astype(np.int16))
        ids.extend(batch_ids)
    clips = ClipSet(ids=ids, labels=np.asarray(ys, np.int64),
                    targets=(np.concatenate(targets) if targets else np.zeros((0, len(dimensions)), np.float32))
                    if dimensions else None, transcripts=texts if texts is not None and len(texts) == len(ids) else None,
                    speakers=speakers if speakers is not None and len(speakers) == len(ids) else None,
                    functionals=np.stack(functionals) if functionals and len(functionals) == len(ids) else None)
    if any(row is not None for row in soft_rows):
        eye = np.eye(len(index), dtype=np.float32)
        clips.soft = np.stack([row if row is not None else eye[y] for row, y in zip(soft_rows, ys)])
    if inputs.is_frames:
        clips.frames = feats
    elif inputs.is_cached:
        clips.features = (np.stack(feats) if feats else np.zeros((0, *inputs.shape), np.float32))
    else:
        clips.audio = audio
    return clips


def _soft_row(batch: dict, j: int, uid: str, index: dict[str, int]) -> np.ndarray | None:
    """Clip ``j``'s soft label (JSON ``{class: share}`` from the ledger) as [C] probabilities, or None."""

    raw = batch["soft_label"][j]
    if raw is None or (isinstance(raw, float) and np.isnan(raw)):
        return None
    try:
        shares = json.loads(raw)
        row = np.zeros(len(index), np.float32)
        for name, share in shares.items():
            if name not in index:
                raise TrainingError(f"clip {uid!r} has a soft label over {name!r}, not in model.labels {list(index)}")
            row[index[name]] = float(share)
    except (ValueError, AttributeError, TypeError) as exc:
        raise TrainingError(f"clip {uid!r} has an unreadable soft_label {raw!r}: {exc}") from exc
    if not np.isclose(row.sum(), 1.0, atol=1e-3) or (row < 0).any():
        raise TrainingError(f"clip {uid!r}: soft_label {raw!r} is not a probability distribution")
    return row / row.sum()


def _dimension_values(batch: dict, ids: list[str], dimensions: list[str], required: bool) -> np.ndarray:
    """[B, K] float32 of the batch's dimensional columns; NaN where missing (refused when ``required``)."""
    missing_cols = [d for d in dimensions if d not in batch]
    if missing_cols and required:
        raise TrainingError(f"the clips have no {missing_cols} column(s) but model.dimensions={dimensions}")
    out = np.full((len(ids), len(dimensions)), np.nan, np.float32)
    for k, name in enumerate(dimensions):
        if name in batch:
            out[:, k] = np.asarray([np.nan if v is None else v for v in batch[name]], dtype=np.float64)
    if required:
        bad = ~np.isfinite(out)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise TrainingError(f"clip {ids[row]!r} has no {dimensions[col]} value ({int(bad.any(1).sum())} of "
                                f"{len(ids)} clips in this batch lack one) but the split is used for training/eval "
                                f"with model.dimensions={dimensions}")
    return out
