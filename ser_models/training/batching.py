"""Turning Ray Data shards into model batches: in-memory clip sets, random crops, length buckets.

A worker materialises its shard once per fit (labelled sets in active learning are small) as int16 PCM,
half the memory of float32, so that every epoch can reshuffle, re-crop and re-bucket without going back to
Ray Data -- that took epochs on small pools from ~20-30 s to ~2 s on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ser_models.encoders.speaker_norm import speaker_key
from ser_models.exceptions import TrainingError
from ser_models.training.micro_batches import MicroBatcher

SAMPLE_RATE = 16000
#: Encoder frame hop (20 ms at 16 kHz): the CNN of wav2vec2 / HuBERT / WavLM and Whisper's conv stem alike.
FRAME_HOP_SAMPLES = 320
#: Columns a model reads from audio pool rows (scoring, TAPT, distillation, anchoring's target clips).
AUDIO_INPUT_COLUMNS = ["utt_id", "audio", "audio_format", "num_samples"]
AUDIO_COLUMNS = [*AUDIO_INPUT_COLUMNS, "label"]
FEATURE_COLUMNS = ["utt_id", "features", "label"]


def is_frame_shape(feature_shape) -> bool:
    """True for the frame cache's ``(-1, L, D)`` (float16 frames ``[F, L, D]`` per clip), False for the pooled
    cache's ``(L, D)`` (float32 per-layer means)."""
    return feature_shape is not None and len(feature_shape) == 3


def decode_features(raw: bytes, feature_shape) -> np.ndarray:
    """One clip's cached features: ``[L, D]`` float32 (pooled) or ``[F, L, D]`` float16 (frames)."""
    if is_frame_shape(feature_shape):
        return np.frombuffer(raw, dtype=np.float16).reshape(-1, *feature_shape[1:])
    return np.frombuffer(raw, dtype=np.float32).reshape(feature_shape)


def training_columns(feature_mode: bool, dimensions: Sequence[str] = (), text: bool = False,
                     soft: bool = False, speakers: bool = False, functionals: bool = False) -> list[str]:
    """Columns a training or evaluation feed reads: inputs, ``label``, the model's dimensions, with a text branch
    ``transcript``, for a training feed with soft labels ``soft_label``, with ``model.feature_norm=speaker``
    ``speaker``, and with ``model.functionals`` the cache's ``functionals``."""
    return [*(FEATURE_COLUMNS if feature_mode else AUDIO_COLUMNS), *dimensions, *(["transcript"] if text else []),
            *(["soft_label"] if soft else []), *(["speaker"] if speakers else []),
            *(["functionals"] if functionals else [])]


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


def collect_clips(batches: Iterable[dict], labels: Sequence[str], feature_shape: tuple[int, int] | None = None,
                  require_labels: bool = True, dimensions: Sequence[str] = ()) -> ClipSet:
    """Materialise numpy batches (from ``DataIterator.iter_batches``) into a :class:`ClipSet`.

    Args:
        batches: dicts of numpy columns; audio mode needs ``utt_id, audio, audio_format``, feature mode
            ``utt_id, features`` (float32 bytes of a [L, D] array, or float16 bytes of [F, L, D] frames).
        labels: the label set; ``label`` values are mapped to their index ([] = no categorical targets).
        feature_shape: (L, D) in pooled feature mode, (-1, L, D) in frame mode, None in audio mode.
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
            if feature_shape is not None:
                feats.append(decode_features(batch["features"][j], feature_shape))
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
    if is_frame_shape(feature_shape):
        clips.frames = feats
    elif feature_shape is not None:
        clips.features = (np.stack(feats) if feats else np.zeros((0, *feature_shape), np.float32))
    else:
        clips.audio = audio
    return clips


def _soft_row(batch: dict, j: int, uid: str, index: dict[str, int]) -> np.ndarray | None:
    """Clip ``j``'s soft label (JSON ``{class: share}`` from the ledger) as [C] probabilities, or None."""
    import json

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


@dataclass
class Batch:
    """One model batch. ``wavs`` [B, T] float32 in [-1, 1] and ``lengths`` [B] samples in audio mode;
    ``features`` [B, L, D] in pooled feature mode; ``features`` [B, F, L, D] float32 (zero-padded) and
    ``lengths`` [B] valid frames in frame mode; ``labels`` [B] (-1 unknown); ``targets`` [B, K] dimensional
    values (NaN unknown; K = 0 without dimensions); ``ids`` [B]; ``transcripts`` [B] or None; ``soft`` [B, C]
    class probabilities or None; ``speakers`` [B] or None; ``functionals`` [B, 88] or None (see
    :class:`ClipSet`)."""

    ids: list[str]
    labels: torch.Tensor
    wavs: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    features: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    transcripts: list[str | None] | None = None
    soft: torch.Tensor | None = None
    speakers: list | None = None
    functionals: torch.Tensor | None = None

    def to(self, device: torch.device) -> Batch:
        """This batch on ``device``. To CUDA, host tensors are pinned first (a no-op for those
        :func:`make_batch` built pinned) and copied with ``non_blocking``: the host goes on to the next step
        while the copy is in flight, instead of waiting for the GPU to drain as a pageable copy does."""
        if torch.device(device).type == "cuda":
            def move(t):
                if t is None or t.device.type != "cpu":
                    return None if t is None else t.to(device)
                return (t if t.is_pinned() else t.pin_memory()).to(device, non_blocking=True)
        else:
            move = (lambda t: None if t is None else t.to(device))  # noqa: E731
        return Batch(self.ids, move(self.labels), move(self.wavs), move(self.lengths), move(self.features),
                     move(self.targets), self.transcripts, move(self.soft), self.speakers, move(self.functionals))

    @property
    def class_targets(self) -> torch.Tensor:
        """What the classification loss fits: ``soft`` probabilities [B, C] when present, else ``labels`` [B]."""
        return self.soft if self.soft is not None else self.labels


def plan_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None,
                 bucket_window: int = 16) -> list[np.ndarray]:
    """Group clip indices into length-bucketed batches.

    With ``rng`` (training) the order is shuffled, then each window of ``batch_size * bucket_window`` clips is
    sorted by length so that a batch holds similar lengths (little padding), and the batch order is
    shuffled again. Without ``rng`` (evaluation) clips are sorted by length globally.

    Returns:
        A list of index arrays, each of at most ``batch_size`` clips; every clip appears exactly once.
    """
    n = len(lengths)
    if n == 0:
        return []
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        return [order[i:i + batch_size] for i in range(0, n, batch_size)]
    order = rng.permutation(n)
    window = batch_size * max(bucket_window, 1)
    batches = []
    for start in range(0, n, window):
        chunk = order[start:start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def make_batch(clips: ClipSet, index: np.ndarray, max_samples: int | None,
               rng: np.random.Generator | None, pin: bool = False) -> Batch:
    """Build a padded batch; clips longer than ``max_samples`` are cropped (random offset with ``rng``,
    centred without). ``pin``: build the padded audio / frames in pinned memory (batches bound for CUDA,
    :func:`ser_models.precision.pin_for`), saving :meth:`Batch.to` a host copy."""
    labels = torch.as_tensor(clips.labels[index], dtype=torch.long)
    targets = torch.from_numpy(np.ascontiguousarray(clips.targets[index], dtype=np.float32))
    ids = [clips.ids[i] for i in index]
    texts = None if clips.transcripts is None else [clips.transcripts[i] for i in index]
    soft = None if clips.soft is None else torch.from_numpy(np.ascontiguousarray(clips.soft[index]))
    speakers = None if clips.speakers is None else [clips.speakers[i] for i in index]
    functionals = None if clips.functionals is None else torch.from_numpy(np.ascontiguousarray(clips.functionals[index]))
    if clips.features is not None:
        return Batch(ids, labels, features=torch.from_numpy(np.ascontiguousarray(clips.features[index])),
                     targets=targets, transcripts=texts, soft=soft, speakers=speakers, functionals=functionals)
    if clips.frames is not None:
        max_frames = None if max_samples is None else max(max_samples // FRAME_HOP_SAMPLES, 1)
        out, lengths = _crop_and_pad([clips.frames[i] for i in index], max_frames, rng, 1.0, pin)
        return Batch(ids, labels, features=out, lengths=lengths, targets=targets, transcripts=texts, soft=soft,
                     speakers=speakers, functionals=functionals)
    assert clips.audio is not None
    out, lengths = _crop_and_pad([clips.audio[i] for i in index], max_samples, rng, 1.0 / 32768.0, pin)
    return Batch(ids, labels, wavs=out, lengths=lengths, targets=targets, transcripts=texts, soft=soft,
                 speakers=speakers, functionals=functionals)


def _crop_and_pad(pieces: list[np.ndarray], max_len: int | None, rng: np.random.Generator | None,
                  scale: float, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop each array along its first axis to ``max_len`` (random offset with ``rng``, centred without), scale
    it to float32 and zero-pad to the longest: ``([B, T, ...], lengths [B])``, the first in pinned memory with
    ``pin``."""
    cropped = []
    for piece in pieces:
        if max_len is not None and len(piece) > max_len:
            extra = len(piece) - max_len
            off = int(rng.integers(0, extra + 1)) if rng is not None else extra // 2
            piece = piece[off:off + max_len]
        cropped.append(piece)
    lengths = np.fromiter((len(p) for p in cropped), np.int64, len(cropped))
    shape = (len(cropped), max(int(lengths.max()), 1), *cropped[0].shape[1:])
    padded = torch.zeros(shape, dtype=torch.float32, pin_memory=pin)
    out = padded.numpy()  # shares the tensor's (pinned or not) memory
    for row, piece in enumerate(cropped):
        out[row, :len(piece)] = piece.astype(np.float32) * np.float32(scale) if scale != 1.0 else piece
    return padded, torch.from_numpy(lengths)


def iterate_batches(clips: ClipSet, batch_size: int, max_seconds: float | None,
                    rng: np.random.Generator | None = None, bucket_window: int = 16,
                    pin: bool = False) -> Iterator[Batch]:
    """Yield batches over ``clips``: shuffled, randomly cropped and bucketed with ``rng``, else sorted
    (``pin``: as in :func:`make_batch`)."""
    max_samples = None if max_seconds is None else int(max_seconds * SAMPLE_RATE)
    for index in plan_batches(clips.lengths(), batch_size, rng, bucket_window):
        yield make_batch(clips, index, max_samples, rng, pin)


def probe_batch(clips: ClipSet, count: int, max_samples: int, device: torch.device) -> tuple[Batch, int]:
    """The ``count`` longest clips of ``clips`` (cut to ``max_samples``) as one batch on ``device``, and their
    longest length in samples: what a CUDA actor measures its memory per clip on
    (:func:`ser_models.precision.size_micro_batch`)."""
    lengths = np.minimum(clips.lengths(), max_samples)
    index = np.argsort(lengths, kind="stable")[-count:]
    batch = make_batch(clips, index, max_samples, None, device.type == "cuda").to(device)
    return batch, int(lengths[index].max())


def _batcher(micro_batch: int | MicroBatcher, max_seconds: float) -> MicroBatcher:
    if isinstance(micro_batch, MicroBatcher):
        return micro_batch
    return MicroBatcher(micro_batch, "encoder", max_seconds)


def pooled_layer_features(model, clips: ClipSet, micro_batch: int | MicroBatcher, max_seconds: float = 20.0,
                          device: torch.device | None = None) -> np.ndarray:
    """Per-layer utterance means of every clip under ``model``'s encoder, no gradients, in sorted-length
    micro-batches (``EmotionModel.encode_pooled``).

    Args:
        model: an ``EmotionModel`` already on ``device`` and in eval mode.
        clips: the clips, in the row order of the result.
        micro_batch: clips encoded per forward pass, or a :class:`MicroBatcher` (which halves its size on
            out-of-memory errors and keeps it for the next call).
        max_seconds: longer clips are cut to their first ``max_seconds`` (no random crop).
        device: where the batches go (default CPU).

    Returns:
        ``[N, L, D]`` float32.
    """
    out = np.zeros((len(clips), model.encoder.num_layers, model.encoder.hidden_size), np.float32)
    pin = device is not None and device.type == "cuda"

    def step(index: np.ndarray) -> None:
        batch = make_batch(clips, index, int(max_seconds * SAMPLE_RATE), None, pin)
        if device is not None:
            batch = batch.to(device)
        out[index] = model.encode_pooled(batch.wavs, batch.lengths).float().cpu().numpy()

    with torch.no_grad():
        _batcher(micro_batch, max_seconds).run(clips.lengths(), clips.ids, step)
    return out


def frame_features(model, clips: ClipSet, micro_batch: int | MicroBatcher, max_seconds: float = 20.0,
                   device: torch.device | None = None) -> list[np.ndarray]:
    """Every hidden state's frames of every clip under ``model``'s encoder (``EmotionModel.encode_frames``), no
    gradients, in sorted-length micro-batches (``micro_batch`` as in :func:`pooled_layer_features`); clips are
    cut to their first ``max_seconds``.

    Returns:
        N float16 arrays ``[F_i, L, D]`` (F_i: the clip's valid frames), in ``clips`` order.
    """
    out: list[np.ndarray | None] = [None] * len(clips)
    pin = device is not None and device.type == "cuda"

    def step(index: np.ndarray) -> None:
        batch = make_batch(clips, index, int(max_seconds * SAMPLE_RATE), None, pin)
        if device is not None:
            batch = batch.to(device)
        frames, lengths = model.encode_frames(batch.wavs, batch.lengths)
        frames = frames.to(torch.float16).cpu().numpy()
        for row, i in enumerate(index):
            out[i] = frames[row, :int(lengths[row])]

    with torch.no_grad():
        _batcher(micro_batch, max_seconds).run(clips.lengths(), clips.ids, step)
    return out


class StreamingClips:
    """A worker's training clips read from its Ray Data shard anew every epoch, one window at a time.

    For shards too large to hold (a 1,000 h pool is ~115 GB of int16 audio): each epoch iterates the shard
    with a local shuffle buffer, decodes ``window`` clips at a time, and yields length-bucketed, randomly
    cropped batches from that window, so a worker holds one window of audio (plus the shuffle buffer's
    encoded rows) whatever the pool size. Small labelled sets keep the in-memory :class:`ClipSet` (chosen by
    size: ``scaling.stream_above_clips``).

    Args:
        shard: a ``ray.data.DataIterator`` (``ray.train.get_dataset_shard`` or ``Dataset.iterator()``).
        labels: the label set (``[]`` for TAPT).
        rows: rows this worker reads per epoch (before any ``min_samples`` filtering): the epoch's step
            count comes from it.
        feature_shape: (L, D) or (-1, L, D) in feature mode, None in audio mode.
        require_labels: as in :func:`collect_clips`.
        window: clips decoded at a time (rounded up to a whole number of length-bucketing windows).
        min_samples: drop clips shorter than this (TAPT's masking needs a minimum length).
        dimensions: as in :func:`collect_clips`.
    """

    def __init__(self, shard, labels: Sequence[str], rows: int, feature_shape: tuple[int, int] | None = None,
                 require_labels: bool = True, window: int = 256, min_samples: int = 0,
                 dimensions: Sequence[str] = ()):
        self.shard, self.labels, self.rows = shard, list(labels), int(rows)
        self.dimensions = list(dimensions)
        self.feature_shape, self.require_labels = feature_shape, require_labels
        self.window, self.min_samples = max(int(window), 1), int(min_samples)
        self.dropped = 0  # short clips skipped, summed over the epochs read
        self.epochs_read = 0  # epochs started by iterate()

    def __len__(self) -> int:
        return self.rows

    def num_batches(self, batch_size: int) -> int:
        """Batches per epoch: ``ceil(rows / batch_size)`` (windows are whole bucketing windows)."""
        return -(-self.rows // batch_size)

    def iterate(self, batch_size: int, max_seconds: float | None, rng: np.random.Generator,
                bucket_window: int = 16, pin: bool = False) -> Iterator[Batch]:
        """One epoch of shuffled, bucketed, cropped batches (``rng`` seeds the shuffle buffer too; ``pin``: as
        in :func:`make_batch`)."""
        chunk = batch_size * max(bucket_window, 1)
        window = -(-self.window // chunk) * chunk
        self.epochs_read += 1  # started (a fit stops after its planned steps, before the iterator ends)
        for clips in self.windows(window, seed=int(rng.integers(0, 2**31 - 1))):
            yield from iterate_batches(clips, batch_size, max_seconds, rng, bucket_window, pin)

    def windows(self, window: int | None = None, seed: int | None = None) -> Iterator[ClipSet]:
        """The shard as decoded :class:`ClipSet` windows of ``window`` clips (shuffled with ``seed``; None =
        in the shard's order, for evaluation)."""
        window = window or self.window
        shuffle = {} if seed is None else {"local_shuffle_buffer_size": window, "local_shuffle_seed": seed}
        for rows in self.shard.iter_batches(batch_size=window, batch_format="numpy", **shuffle):
            clips = collect_clips([rows], self.labels, feature_shape=self.feature_shape,
                                  require_labels=self.require_labels, dimensions=self.dimensions)
            if self.min_samples and clips.audio is not None:
                keep = np.flatnonzero(clips.lengths() >= self.min_samples)
                self.dropped += len(clips) - len(keep)
                clips = clips.subset(keep)
            yield clips


def epoch_batches(clips: ClipSet | StreamingClips, batch_size: int, max_seconds: float | None,
                  rng: np.random.Generator, pin: bool = False) -> tuple[int, Iterator[Batch]]:
    """``(planned batches, batch iterator)`` of one training epoch over either kind of clip source (``pin``:
    build the batches in pinned memory, for a CUDA device)."""
    if isinstance(clips, StreamingClips):
        return clips.num_batches(batch_size), clips.iterate(batch_size, max_seconds, rng, pin=pin)
    return len(plan_batches(clips.lengths(), batch_size, np.random.default_rng(0))), \
        iterate_batches(clips, batch_size, max_seconds, rng, pin=pin)
