"""What keeps a feature cache shared by several runs safe: one writer, no deleted shards of others, no silent misses.

* **One writer.** :meth:`~ser_models.scoring.feature_cache.FeatureCache.build_with` takes the cache folder's
  lock (:mod:`ser_models.locks`) only when it has clips to write; a second writer waits for it (up to
  :data:`CACHE_LOCK_WAIT_S`) and then finds the clips encoded. Readers never lock.
* **Only our abandoned shards are deleted.** Before creating a shard folder the writer records it in the
  cache's ownership marker (:mod:`ser_models.ownership`); ``meta.json`` lists it once committed, and the
  record is dropped. Under the lock, a shard folder that ``meta.json`` does not list and the marker records
  was abandoned by a writer that died (we hold the lock: no one else writes), so it goes; any other unlisted
  folder is left alone with a line.
* **No silent misses.** A read of clips the cache does not hold raises
  :class:`~ser_models.exceptions.FeatureCacheMissError` naming them, instead of filtering them out.
"""

from __future__ import annotations

import pyarrow as pa

from ser_models import ownership
from ser_models.data.id_keys import KeySet, arrow_ids
from ser_models.exceptions import FeatureCacheMissError, LockHeldError
from ser_models.io import join, list_dir, list_files, read_json
from ser_models.ownership import parquet_with
from ser_models.scoring.cache_rows import shard_names

#: Seconds a writer waits for another process that is writing the same cache (two runs sharing a cache that
#: both start on a grown pool): the second then finds the clips encoded. A dead writer's lock is taken over
#: (dead pid, or a heartbeat older than $SER_LOCK_STALE_S), so waiting never outlives a crash by long.
CACHE_LOCK_WAIT_S = 3600.0
KIND = "feature_cache"
SHARDS_PREFIX = "features-"


def legacy_cache(folder: str, names: list[str]) -> list[str] | None:
    """A cache folder written before ownership markers, recognised by content: ``meta.json`` reads as a cache's
    (``num_layers``, ``hidden_size``, ``clips``, ``fingerprint`` and the shard folders it lists), every listed
    shard folder is there and its files read as feature shards (whole Parquet with ``utt_id`` and
    ``features``), and nothing but ``features-*`` folders besides (the unlisted ones are left alone, not
    recorded: nothing tells whose they are). A folder of ``features-*`` folders alone is not adopted."""
    if "meta.json" not in names or not all(n == "meta.json" or n.startswith(SHARDS_PREFIX) for n in names):
        return None
    try:
        meta = read_json(join(folder, "meta.json"))
        if not isinstance(meta, dict) or not {"num_layers", "hidden_size", "clips", "fingerprint"} <= set(meta):
            return None
        listed = shard_names(meta)
        if not listed or not set(listed) <= set(names):
            return None
        files = [join(folder, shard, f) for shard in listed for f in list_files(join(folder, shard))
                 if not f.split("/")[-1].startswith((".", "_"))]
    except (OSError, ValueError, TypeError):
        return None
    if int(meta["clips"]) > 0 and not files:
        return None
    if not all(parquet_with(f, ("utt_id", "features")) for f in files):
        return None
    return []


def drop_abandoned(cache_dir: str, prefix: str, listed: set[str], verbose: bool) -> None:
    """Under the cache's lock: remove the shard folders that ``meta.json`` does not list (``listed``) and the
    marker records as being written (their writer died); leave any other unlisted one alone."""
    pending = ownership.recorded(cache_dir, KIND)
    for name in list_dir(cache_dir):
        if not name.startswith(prefix) or name in listed:
            continue
        if name in pending:
            ownership.remove(cache_dir, KIND, name, recorded_only=True)
        elif verbose:
            print(f"  feature cache: leaving {cache_dir}/{name} alone (not listed, and not recorded as one of this "
                  "platform's unfinished shard folders)")
    ownership.record(cache_dir, KIND, pending, add=False)


def settle_shards(cache_dir: str, shards: str, committed: bool) -> None:
    """After a build: a committed shard folder is listed in ``meta.json`` and kept for good (no longer
    pending); a failed one is ours and never listed, so it goes. A writer that lost the lock leaves both to
    the next holder (the folder is recorded as pending: it removes it)."""
    try:
        if not committed:
            ownership.remove(cache_dir, KIND, shards, recorded_only=True)
        ownership.record(cache_dir, KIND, [shards], add=False)
    except LockHeldError:
        pass


def sorted_ids(ids) -> pa.Array:
    """``ids`` (a list, NumPy array, Arrow array or chunked array of str) as one sorted Arrow string array,
    without a Python string per clip for Arrow input."""
    import pyarrow.compute as pc

    ids = arrow_ids(ids)
    return pc.take(ids, pc.array_sort_indices(ids)) if len(ids) else ids


def check_holds(cache_dir: str, keep: pa.Array, have: pa.Array | KeySet) -> None:
    """Refuse a read of clips (``keep``) the cache does not hold (``have``: its ids, or their
    :class:`~ser_models.data.id_keys.KeySet`): the filter would drop them silently.

    Raises:
        FeatureCacheMissError: naming the cache, how many clips are missing and the first of them.
    """
    import pyarrow.compute as pc

    held = pa.array(have.contains(keep)) if isinstance(have, KeySet) else pc.is_in(keep, value_set=have)
    missing = keep.filter(pc.invert(held))
    if len(missing):
        shown = ", ".join(repr(i) for i in missing[:10].to_pylist()) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise FeatureCacheMissError(
            f"feature cache {cache_dir} does not hold {len(missing)} of the {len(keep)} clips asked for: {shown}. "
            "Extend it first (FeatureCache.ensure(pool, ...), which the loop runs at each round's start for a pool "
            "that grew), or check that these ids are clips of the pool the cache was built from")


__all__ = ["CACHE_LOCK_WAIT_S", "check_holds", "drop_abandoned", "legacy_cache", "settle_shards", "sorted_ids"]
