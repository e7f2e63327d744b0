"""Resumable training state on disk, loaded without unpickling code.

Per-epoch checkpoints live on shared storage that many people and jobs can write to. A full unpickling
``torch.load`` would run whatever a tampered file asks for, so state is stored as plain containers
(dicts, lists, numbers, strings, tensors) and read back with ``weights_only=True``; the dataclass holding the
progress counters is flattened to a dict on save and rebuilt on load. ``map_location="cpu"`` lets a run that
checkpointed on a GPU resume on a CPU machine (the training code moves tensors where it needs them).
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any, TypeVar

import torch

from ser_models.exceptions import CheckpointError
from ser_models.io import read_bytes, write_bytes_atomic

T = TypeVar("T")


def _plain(value: Any) -> Any:
    """Numbers as Python floats/ints (numpy scalars are not in the weights-only allowlist), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if hasattr(value, "item") and not isinstance(value, torch.Tensor) and getattr(value, "shape", None) == ():
        return value.item()
    return value


def save_state(path: str | Path, state: Any, **extra: Any) -> None:
    """Write ``{"state": fields of the dataclass state, **extra}`` with ``torch.save``, atomically, to a local
    path or ``pyarrow.fs`` URI."""
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    buf = io.BytesIO()
    # -inf / inf survive as floats; history rows may hold numpy scalars from metrics.
    torch.save({"state": _plain(fields), **extra}, buf)
    write_bytes_atomic(path, buf.getvalue())


def load_state(path: str | Path, state_cls: type[T]) -> tuple[T, dict]:
    """Read what :func:`save_state` wrote, weights-only, onto the CPU.

    Returns:
        ``(state_cls instance, the extra entries)``.

    Raises:
        CheckpointError: naming the file, when it is unreadable, holds anything but plain containers and
            tensors, or its state fields do not match ``state_cls``.
    """
    try:
        saved = torch.load(io.BytesIO(read_bytes(path)), weights_only=True, map_location="cpu")
    except Exception as exc:
        raise CheckpointError(f"training state {path} cannot be loaded safely ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''}); delete it to restart that "
                              "stage from scratch") from exc
    fields = saved.pop("state", None)
    names = {f.name for f in dataclasses.fields(state_cls)}
    if not isinstance(fields, dict) or set(fields) - names:
        raise CheckpointError(f"training state {path} does not hold a {state_cls.__name__} "
                              f"(fields {sorted(fields) if isinstance(fields, dict) else type(fields).__name__})")
    return state_cls(**fields), saved

