"""64-bit keys of clip ids, computed from Arrow's string buffers (no Python string per clip).

A key depends on the id (and a seed) only, never on the other clips, so a set of keys built shard by shard is
the set built whole. Two uses:

* **Seeded ranks** (:func:`id_keys` with a seed): random selection and cold-start samples take the clips with
  the smallest keys, the same picks however the pool is sharded.
* **Membership at N clips** (:class:`KeySet`): the feature cache checks that a read's clips are cached against
  8 bytes per cached clip instead of every id string and a hash table over them. Two different ids share a
  key with probability 2^-64 per pair: at 10 M cached clips and 10 M asked for, about 5 in a million runs
  would let one uncached clip through the check (the read then lacks that row, as an unchecked read would).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

__all__ = ["KeySet", "arrow_ids", "id_keys", "key_uniforms"]

_FNV_OFFSET, _FNV_PRIME = np.uint64(0xCBF29CE484222325), np.uint64(0x100000001B3)
_MASK = 0xFFFFFFFFFFFFFFFF


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _strings(ids) -> list[pa.Array]:
    """``ids`` (a list, NumPy array, Arrow array or chunked array of str) as Arrow string arrays, chunk by chunk
    (never combined: a column of over 2 GiB of ids stays readable); dictionary-encoded and view strings are
    decoded, large strings kept."""
    chunks = ids.chunks if isinstance(ids, pa.ChunkedArray) else [ids]
    out = []
    for chunk in chunks:
        if not isinstance(chunk, pa.Array):
            chunk = pa.array(np.asarray(chunk, dtype=object) if isinstance(chunk, np.ndarray) else list(chunk),
                             pa.string())
        if pa.types.is_dictionary(chunk.type) or pa.types.is_string_view(chunk.type):
            chunk = chunk.cast(pa.string())
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            raise TypeError(f"clip ids must be strings, not {chunk.type}")
        if chunk.null_count:
            raise ValueError(f"{chunk.null_count} clip ids are null")
        out.append(chunk)
    return out


def arrow_ids(ids) -> pa.Array:
    """``ids`` (a list, NumPy array, Arrow array or chunked array) as one Arrow string array, without a Python
    string per clip for Arrow input (dictionary-encoded, large or view strings decoded).

    Raises:
        ValueError: an id is null.
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.cast(pa.string()).combine_chunks()
    elif isinstance(ids, pa.Array):
        ids = ids.cast(pa.string())
    else:
        ids = pa.array([str(i) for i in ids], pa.string())
    if ids.null_count:
        raise ValueError(f"{ids.null_count} clip ids are null")
    return ids


def id_keys(ids, seed: int = 0) -> np.ndarray:
    """[N] uint64: FNV-1a over each id's UTF-8 bytes (offset basis mixed with ``seed``), then splitmix64.

    Args:
        ids: N clip ids (list, NumPy or Arrow strings).
        seed: keys of one seed are independent of another's.

    Returns:
        [N] uint64 keys, in the order of ``ids``.
    """
    basis = _FNV_OFFSET ^ _mix(np.array([int(seed) & _MASK], np.uint64))[0]
    parts = [_keys_of(arr, basis) for arr in _strings(ids)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


_GOLDEN = 0x9E3779B97F4A7C15  # splitmix64's increment


def key_uniforms(keys: np.ndarray, step: int) -> np.ndarray:
    """[N] float64 uniforms in (0, 1], one per key for draw number ``step``: splitmix64 of ``key + (step + 1) *
    golden``, its top 53 bits. A clip's draw depends on its key and ``step`` only, so draws made shard by shard
    are the draws made over the whole pool.

    Args:
        keys: [N] uint64 keys (:func:`id_keys`, seeded).
        step: the draw's number (>= 0); each step's draws are independent of another's.
    """
    offset = np.uint64(((int(step) + 1) * _GOLDEN) & _MASK)
    with np.errstate(over="ignore"):
        bits = _mix(np.asarray(keys, np.uint64) + offset)
    return ((bits >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0 ** -53


def _keys_of(arr: pa.Array, basis) -> np.ndarray:
    """[len(arr)] keys of one Arrow (large) string array, a block of ids at a time."""
    n = len(arr)
    wide = pa.types.is_large_string(arr.type)
    width = 8 if wide else 4
    offsets = (np.frombuffer(arr.buffers()[1], np.int64 if wide else np.int32, count=n + 1, offset=arr.offset * width)
               if n else np.zeros(1, np.int64))
    data = np.frombuffer(arr.buffers()[2], np.uint8) if n and arr.buffers()[2] is not None else np.zeros(0, np.uint8)
    out = np.empty(n, np.uint64)
    for a in range(0, n, _BLOCK):  # blocks bound the temporaries, whatever N
        b = min(n, a + _BLOCK)
        out[a:b] = _fnv(data, offsets[a:b].astype(np.int64), offsets[a + 1:b + 1].astype(np.int64), basis)
    return out


_BLOCK = 1 << 20


def _fnv(data: np.ndarray, starts: np.ndarray, ends: np.ndarray, basis) -> np.ndarray:
    """FNV-1a of the byte ranges ``data[starts[i]:ends[i]]``, then mixed: a byte position at a time, over every
    id at once (ids shorter than the position drop out)."""
    lengths = ends - starts
    h = np.full(len(starts), basis, np.uint64)
    if not len(starts):
        return h
    shortest = int(lengths.min())
    with np.errstate(over="ignore"):
        for j in range(shortest):  # every id has byte j
            h = (h ^ data[starts + j].astype(np.uint64)) * _FNV_PRIME
        live = np.flatnonzero(lengths > shortest)
        for j in range(shortest, int(lengths.max())):
            live = live[lengths[live] > j]
            h[live] = (h[live] ^ data[starts[live] + j].astype(np.uint64)) * _FNV_PRIME
        return _mix(h)


class KeySet:
    """A set of clip ids held as their sorted 64-bit keys (8 bytes a clip), built from parts.

    Args:
        parts: iterables of ids (e.g. one Parquet file's ``utt_id`` column at a time).
    """

    def __init__(self, parts=()):
        keys = [id_keys(p) for p in parts]
        keys = np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.uint64)
        # sorted, then deduplicated by neighbours: np.unique took 50x as long on 10 M keys (numpy 2.4)
        self.keys = keys[np.concatenate(([True], keys[1:] != keys[:-1]))] if len(keys) else keys

    def __len__(self) -> int:
        return len(self.keys)

    def contains(self, ids) -> np.ndarray:
        """[N] bool: which of ``ids`` are in the set."""
        k = id_keys(ids)
        if not len(self.keys):
            return np.zeros(len(k), bool)
        order = np.argsort(k)  # sorted queries walk the keys in order: 20x faster than random probes at 10 M
        pos = np.minimum(np.searchsorted(self.keys, k[order]), len(self.keys) - 1)
        found = np.empty(len(k), bool)
        found[order] = self.keys[pos] == k[order]
        return found
