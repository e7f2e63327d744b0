"""Conditional writes of a lease on S3: created only where none is, rewritten or deleted only as it was read.

S3 has no lock, but AWS honours ``If-None-Match: *`` and ``If-Match: <ETag>`` on PutObject and ``If-Match`` on
DeleteObject (general purpose buckets). A heartbeat that read its lease, was paused, and resumes after a
take-over then finds the lease's ETag changed and writes nothing, instead of writing its old lease over the new
holder's. pyarrow's filesystem sends neither header, so the lease's own requests go through boto3, set up the
way pyarrow sets itself up from the environment (``AWS_ENDPOINT_URL``, with or without a scheme; the
credentials; the region; ``AWS_CA_BUNDLE``) and from a URI's ``user:secret@`` part.

Some S3-compatible stores honour only part of this (one ignores ``If-Match`` on a delete; older ones answer 501),
so before a lock first uses conditions in a bucket, :func:`honours_conditions` tries all three on a scratch
object; a store that fails any of them gets the lock's write-and-read-back protocol instead.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from urllib.parse import unquote, urlsplit

from ser_models.exceptions import SERError

#: An ETag no object has (a quoted 32-hex digest, the shape S3 gives): a conditional request against it must fail.
_NO_ETAG = '"00000000000000000000000000000000"'
#: Error codes of a condition that did not hold: the ETag changed or an object is there already (412), a
#: concurrent write won (409), the object is gone (404 NoSuchKey; never NoSuchBucket, which is an error).
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"}

_HONOURS: dict[tuple, bool] = {}
_HONOURS_GUARD = threading.Lock()


class LeaseConflict(SERError):
    """The lease changed, appeared or vanished since it was read: the condition of a write or delete failed."""


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object (leases there may take conditional writes)."""
    return str(uri).startswith("s3://")


def _where(uri: str) -> tuple[tuple[str | None, str | None], str, str]:
    """``((access key, secret key), bucket, key)`` of an ``s3://[key:secret@]bucket/key`` URI; the key
    percent-decoded, as pyarrow decodes it."""
    parts = urlsplit(str(uri))
    user, _, bucket = parts.netloc.rpartition("@")
    key_id, _, secret = user.partition(":")
    return ((unquote(key_id) or None, unquote(secret) or None), bucket, unquote(parts.path).lstrip("/"))


@lru_cache(maxsize=16)
def _client(key_id: str | None, secret: str | None):
    """A boto3 S3 client for these credentials (None: the environment's), built once per process."""
    import boto3
    from botocore.config import Config

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"  # pyarrow takes an endpoint without a scheme as https
    # Checksums only where the API requires them: several S3-compatible stores refuse boto3's newer default
    # integrity headers, which pyarrow does not send either.
    config = Config(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.session.Session(aws_access_key_id=key_id, aws_secret_access_key=secret).client(
        "s3", endpoint_url=endpoint, config=config)


os.register_at_fork(after_in_child=_client.cache_clear)  # a forked child never shares its parent's sockets


def _code(exc: Exception) -> str:
    return str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))


def _call(what: str, uri: str, method: str, **kwargs) -> dict:
    """``client.<method>(**kwargs)`` for the lease ``uri``; a failed condition raises :class:`LeaseConflict`,
    every other failure (the store, the network, the client's setup) ``OSError``, naming the lease."""
    try:
        (key_id, secret), _, _ = _where(uri)
        return getattr(_client(key_id, secret), method)(**kwargs)
    except Exception as exc:  # noqa: BLE001 - botocore's errors, and its setup's, are not OSErrors
        if _code(exc) in _CONFLICT:
            raise LeaseConflict(f"the lease {uri} changed before this {what}") from exc
        raise OSError(f"the {what} of the lease {uri} failed: {type(exc).__name__}: {exc}") from exc


def get(uri: str) -> tuple[bytes, str | None] | None:
    """``(bytes, ETag)`` of the lease at ``uri``, or None when there is none.

    Raises:
        OSError: the store failed the read.
    """
    _, bucket, key = _where(uri)
    try:
        out = _call("read", uri, "get_object", Bucket=bucket, Key=key)
    except LeaseConflict:
        return None
    try:
        return out["Body"].read(), out.get("ETag")
    except Exception as exc:  # noqa: BLE001 - a body cut short: botocore's streaming errors
        raise OSError(f"the read of the lease {uri} failed: {type(exc).__name__}: {exc}") from exc


def put(uri: str, data: bytes, *, if_match: str | None = None, create: bool = False) -> str | None:
    """Write the lease at ``uri`` in one PUT: only where none is (``create``), or only over the version whose
    ETag is ``if_match``. Returns the new ETag.

    Raises:
        LeaseConflict: the condition failed (a lease is there already; the lease changed or is gone).
        OSError: the store failed the write.
    """
    _, bucket, key = _where(uri)
    cond = {"IfNoneMatch": "*"} if create else ({"IfMatch": if_match} if if_match else {})
    return _call("write", uri, "put_object", Bucket=bucket, Key=key, Body=data, **cond).get("ETag")


def delete(uri: str, if_match: str | None) -> None:
    """Delete the lease at ``uri`` if it is still the version whose ETag is ``if_match`` (None: whatever is there).

    Raises:
        LeaseConflict: it changed or is gone.
        OSError: the store failed the delete.
    """
    _, bucket, key = _where(uri)
    _call("delete", uri, "delete_object", Bucket=bucket, Key=key, **({"IfMatch": if_match} if if_match else {}))


def _probe(scratch: str) -> bool:
    """Whether the store refuses each of the three conditional requests a lease relies on when its condition
    fails, tried on the object ``scratch`` (removed afterwards)."""
    put(scratch, b"{}", create=True)
    try:
        for attempt in (lambda: put(scratch, b"{}", create=True), lambda: put(scratch, b"{}", if_match=_NO_ETAG),
                        lambda: delete(scratch, if_match=_NO_ETAG)):
            try:
                attempt()
            except LeaseConflict:
                continue
            return False  # the store ignored the condition
        return get(scratch) is not None  # the refused delete left the object
    finally:
        try:
            delete(scratch, None)
        except (LeaseConflict, OSError):
            pass  # a scratch object left by a failing store: litter the folder's next owner removes


def honours_conditions(scratch: str) -> bool:
    """Whether the store of the lease-to-be ``scratch``'s bucket honours conditional creates, rewrites and
    deletes; found once per process and bucket by trying each on ``scratch`` (a platform-only litter name in the
    lock's folder). A store that answers a condition with an error (501 Not Implemented, 400) does not.

    Raises:
        OSError: the store failed the scratch object's first write (an unreachable store, a missing bucket).
    """
    where = _where(scratch)
    bucket = (where[0], where[1])
    with _HONOURS_GUARD:
        known = _HONOURS.get(bucket)
    if known is not None:
        return known
    try:
        honoured = _probe(scratch)
    except LeaseConflict:
        honoured = False
    except OSError:
        if get(scratch) is None and _reachable(scratch):
            honoured = False  # it refused a conditional request outright (501, 400): not honoured
        else:
            raise
    with _HONOURS_GUARD:
        _HONOURS[bucket] = honoured
    return honoured


def _reachable(scratch: str) -> bool:
    """Whether the store answers a plain read in the scratch object's folder (a missing bucket does not)."""
    _, bucket, key = _where(scratch)
    try:
        _call("list", scratch, "list_objects_v2", Bucket=bucket, Prefix=key.rsplit("/", 1)[0] + "/", MaxKeys=1)
    except (LeaseConflict, OSError):
        return False
    return True


__all__ = ["LeaseConflict", "delete", "get", "honours_conditions", "is_s3", "put"]
