"""Turning clip sets into model batches: random crops, length buckets, streamed windows of a large shard.

The clip set itself (:class:`~ser_models.data.clips.ClipSet`) is data: holding the shard once per fit lets
every epoch reshuffle, re-crop and re-bucket without going back to Ray Data -- that took epochs on small pools
from ~20-30 s to ~2 s on 2 cores.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ser_models.data.clips import ClipSet, collect_clips
from ser_models.data.inputs import AUDIO, ModelInputs
from ser_models.training.micro_batches import MicroBatcher

SAMPLE_RATE = 16000
#: Encoder frame hop (20 ms at 16 kHz): the CNN of wav2vec2 / HuBERT / WavLM and Whisper's conv stem alike.
FRAME_HOP_SAMPLES = 320
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
        inputs: what the rows carry: audio (the default), cached pooled ``[L, D]`` or cached frames.
        require_labels: as in :func:`collect_clips`.
        window: clips decoded at a time (rounded up to a whole number of length-bucketing windows).
        min_samples: drop clips shorter than this (TAPT's masking needs a minimum length).
        dimensions: as in :func:`collect_clips`.
    """

    def __init__(self, shard, labels: Sequence[str], rows: int, inputs: ModelInputs = AUDIO,
                 require_labels: bool = True, window: int = 256, min_samples: int = 0,
                 dimensions: Sequence[str] = ()):
        self.shard, self.labels, self.rows = shard, list(labels), int(rows)
        self.dimensions = list(dimensions)
        self.inputs, self.require_labels = inputs, require_labels
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
            clips = collect_clips([rows], self.labels, inputs=self.inputs,
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
