"""Micro-batches of an inference pass that halve when the device runs out of memory (issue 51).

The scorer and the feature cache's encoder actor run their clips through the model a micro-batch at a time;
on a GPU its size comes from the memory free when the actor starts (:func:`ser_models.precision.
size_micro_batch`). :class:`MicroBatcher` keeps a job alive when that memory shrinks later.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence

import numpy as np
import torch

from ser_models.exceptions import DeviceMemoryError

#: 16 kHz samples per second: what audio lengths are counted in.
SAMPLE_RATE = 16000

#: Tests only: with this set to N, a micro-batch of more than N clips raises ``torch.OutOfMemoryError`` before
#: its forward (N = 0: every one), so the halving below can be tested on a CPU (issue 51). Unset, one lookup.
OOM_INJECT_ENV = "SER_INJECT_OOM_ABOVE_CLIPS"


def out_of_memory_errors() -> tuple[type[BaseException], ...]:
    """The exceptions a device raises when a forward does not fit: ``torch.OutOfMemoryError`` (torch >= 2.5;
    ``torch.cuda.OutOfMemoryError`` is the same class there) or the CUDA one of older releases."""
    return tuple(dict.fromkeys((getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError),
                                torch.cuda.OutOfMemoryError)))


class MicroBatcher:
    """Sorted-length micro-batches of at most :attr:`size` clips, halved when the device runs out of memory.

    A GPU actor sizes its micro-batch once, from the memory free when it starts; other processes on the GPU
    (a second actor, a training job) may take memory later. Rather than fail the job, a micro-batch that
    raises an out-of-memory error frees torch's cached blocks, halves :attr:`size` (one printed line each time)
    and is redone; the smaller size stays for the rest of the actor's life. Features do not depend on the
    batch (:meth:`~ser_models.encoders.encoder.Encoder.forward`), so this changes speed only.

    Args:
        size: clips per forward to start with (>= 1).
        stage: what runs, for messages (``"scorer"``, ``"feature cache"``).
        max_seconds: where clips are cut (s), for the message of a clip that does not fit alone; None = uncut.
        rate: lengths per second (16 kHz samples for audio, 50 for cached frames), for that message; None =
            lengths are no durations (pooled features).
    """

    def __init__(self, size: int, stage: str, max_seconds: float | None = None, rate: float | None = SAMPLE_RATE):
        self.size = max(int(size), 1)
        self.stage = stage
        self.max_seconds = max_seconds
        self.rate = rate

    def __repr__(self) -> str:
        return (f"MicroBatcher(size={self.size}, stage={self.stage!r}, max_seconds={self.max_seconds}, "
                f"rate={self.rate})")

    def run(self, lengths: np.ndarray, ids: Sequence[str], step) -> None:
        """Call ``step(index)`` for index arrays covering every clip once, shortest clips first (as
        :func:`~ser_models.training.batching.plan_batches` without ``rng``); ``step`` must (over)write everything
        it produces for ``index``.

        Args:
            lengths: ``[N]`` clip lengths (16 kHz samples in audio mode), for sorting and messages.
            ids: ``N`` clip ids, for messages.
            step: runs the forward of one micro-batch.

        Raises:
            DeviceMemoryError: a single clip does not fit, naming it and its length in seconds.
        """
        order = np.argsort(lengths, kind="stable")
        errors = out_of_memory_errors()
        start = 0
        while start < len(order):
            index = order[start:start + self.size]
            try:
                _inject_out_of_memory(len(index))
                step(index)
            except errors as exc:
                failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            else:
                start += len(index)
                continue
            # Outside the except block, so that the traceback (and the tensors its frames hold) is gone.
            _release_cached_memory()
            if len(index) == 1:
                self._fail(ids[int(index[0])], int(lengths[int(index[0])]), failed)
            self.size = max(len(index) // 2, 1)
            print(f"  {self.stage}: out of device memory with {len(index)} clips per forward; retrying with "
                  f"{self.size} ({failed})", flush=True)

    def _fail(self, clip_id: str, length: int, reason: str) -> None:

        if self.rate:
            seconds = length / self.rate
            cut = (f", encoded up to active.scorer.max_seconds={self.max_seconds:g} s"
                   if self.max_seconds is not None and seconds > self.max_seconds else "")
            what = f"clip {clip_id!r} ({seconds:.2f} s{cut})"
        else:
            what = f"clip {clip_id!r}"
        raise DeviceMemoryError(
            f"{self.stage}: {what} does not fit in device memory even alone "
            f"({reason}); lower active.scorer.max_seconds, give the actor a whole GPU (active.scorer.num_gpus=1) "
            "or free the GPU's memory")


def size_or_halve(stage: str, measure, probe_clips: int) -> int:
    """``measure()`` (a CUDA actor's micro-batch sizing, which runs a probe forward of ``probe_clips`` clips), or
    half the probe when that probe itself runs out of memory (printed; :class:`MicroBatcher` halves further).

    Args:
        stage: what runs, for the message.
        measure: returns the micro-batch size from a probe forward.
        probe_clips: clips in that probe.
    """
    try:
        _inject_out_of_memory(probe_clips)
        return measure()
    except out_of_memory_errors() as exc:
        failed = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    _release_cached_memory()
    size = max(probe_clips // 2, 1)
    print(f"  {stage}: out of device memory sizing the micro-batch with {probe_clips} clips; retrying with "
          f"{size} ({failed})", flush=True)
    return size


def _inject_out_of_memory(clips: int) -> None:

    limit = os.environ.get(OOM_INJECT_ENV)
    if limit is not None and clips > int(limit):
        raise out_of_memory_errors()[0](f"injected by ${OOM_INJECT_ENV}={limit}: {clips} clips")


def _release_cached_memory() -> None:
    """Hand torch's cached, unused CUDA blocks back (no-op without CUDA), so that a smaller retry can use them."""

    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
