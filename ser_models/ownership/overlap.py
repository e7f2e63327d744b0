"""Where an output lies against a job's inputs: an output that is an input, lies inside one or contains one is
refused before anything is written (:func:`check_apart`; used by every claim in :mod:`ser_models.ownership`)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from ser_models import io
from ser_models.exceptions import OutputOverlapError


def _where(path: str | os.PathLike) -> tuple[str, str]:
    """``(store, path)`` to compare locations: a local path absolute with its links resolved (a link to a folder
    is that folder), a URI as its scheme and its bucket/key path."""
    text = str(path)
    if io.is_local(text):
        return "", os.path.realpath(os.path.expanduser(str(io.local_path(text))))
    _, p = io.filesystem(text)
    return text.split("://", 1)[0].lower(), p.rstrip("/")


def _relation(output: str, other: str) -> str | None:
    if output == other:
        return "is"
    if output.startswith(other.rstrip("/") + "/"):
        return "lies inside"
    if other.startswith(output.rstrip("/") + "/"):
        return "contains"
    return None


def check_apart(output: str | os.PathLike, inputs: Mapping[str, object], *, key: str = "output_dir") -> None:
    """Refuse an output that is one of the job's inputs, lies inside one, or contains one.

    Args:
        output: the output folder or file (local path or URI).
        inputs: ``{config key: path or URI}`` of what the job reads (empty values are skipped; a list of paths
            counts path by path).
        key: the output's config key, for the message.

    Raises:
        OutputOverlapError: naming both keys and paths; nothing is written.
    """
    where = _where(output)
    for name, value in inputs.items():
        for one in value if isinstance(value, (list, tuple)) else [value]:
            # A local input that does not exist is nothing to overwrite (and may be a name, such as an encoder
            # preset): the job fails on reading it instead.
            if not one or (io.is_local(str(one)) and not os.path.lexists(os.path.expanduser(io.local_path(str(one))))):
                continue
            other = _where(str(one))
            relation = _relation(where[1], other[1]) if other[0] == where[0] else None
            if relation:
                raise OutputOverlapError(
                    f"refusing to write {key}={output}: it {relation} the input {name}={one}, so the job would write "
                    f"into what it reads. Point {key} at a new folder outside every input")


__all__ = ["check_apart"]
