"""Conditional writes of a lease on S3: created only where none is, rewritten or deleted only as it was read.

S3 has no lock, but it honours ``If-None-Match: *`` and ``If-Match: <ETag>`` on PutObject and ``If-Match`` on
DeleteObject (AWS general purpose buckets; MinIO and Ceph too). A heartbeat that read its lease, was paused,
and resumes after a take-over then finds the lease's ETag changed and writes nothing, instead of writing its
old lease over the new holder's. pyarrow's filesystem sends neither header, so the lease's own requests go
through boto3, configured the way pyarrow configures itself: the environment (``AWS_ENDPOINT_URL``, the
credentials, the region) and a URI's ``endpoint_override``, ``scheme`` and ``region`` query keys. Every other
read and write of the platform stays on pyarrow.

A store that answers a conditional request it does not honour as if it were plain is found at the first lock
taken in each bucket (:func:`honours_conditions`); the lock then falls back to the read-back protocol and says
so once.
"""

from __future__ import annotations

import json
import threading
import time
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from ser_models.exceptions import SERError

#: Reads that return bytes that are not a JSON object (moto answers a read that meets an overwrite with torn
#: bytes) are tried this many times, with a doubling pause from 0.05 s.
READ_TRIES = 5
#: An ETag no object ever has (ETags are hex digests): a conditional write against it must fail.
_NO_ETAG = '"ser-models-no-such-etag"'
#: Error codes of a condition that did not hold: 412 (the ETag changed, or an object is there already), 409 (a
#: concurrent write won), 404 (the lease is gone).
_CONFLICT = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "412", "409"}

_HONOURS: dict[tuple, bool] = {}
_HONOURS_GUARD = threading.Lock()


class LeaseConflict(SERError):
    """The lease changed, appeared or vanished since it was read: the condition of a write or delete failed."""


def is_s3(uri: str) -> bool:
    """Whether ``uri`` names an S3 object (leases there take conditional writes)."""
    return str(uri).startswith("s3://")


def _where(uri: str) -> tuple[tuple[str | None, str | None], str, str]:
    """``((endpoint URL, region), bucket, key)`` of an ``s3://bucket/key[?query]`` URI."""
    parts = urlsplit(str(uri))
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    endpoint = query.get("endpoint_override")
    if endpoint and "://" not in endpoint:
        endpoint = f"{query.get('scheme', 'https')}://{endpoint}"
    return (endpoint, query.get("region")), parts.netloc, parts.path.lstrip("/")


@lru_cache(maxsize=16)
def _client(endpoint: str | None, region: str | None):
    import boto3  # only for leases on S3

    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region)


def _conflict(exc: Exception) -> bool:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = str(response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return code in _CONFLICT or status in {"412", "409", "404"}


def _call(what: str, uri: str, fn, **kwargs):
    """``fn(**kwargs)``; a failed condition raises :class:`LeaseConflict`, any other store error ``OSError``."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return fn(**kwargs)
    except ClientError as exc:
        if _conflict(exc):
            raise LeaseConflict(f"the lease {uri} changed before this {what}") from exc
        raise OSError(f"the store refused the {what} of the lease {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise OSError(f"the {what} of the lease {uri} failed: {exc}") from exc


def get(uri: str) -> tuple[bytes, str] | None:
    """``(bytes, ETag)`` of the lease at ``uri``, or None when there is none.

    Raises:
        OSError: the store failed the read.
    """
    (endpoint, region), bucket, key = _where(uri)
    client = _client(endpoint, region)
    raw = b""
    for attempt in range(READ_TRIES):
        try:
            out = _call("read", uri, client.get_object, Bucket=bucket, Key=key)
        except LeaseConflict:
            return None
        raw = out["Body"].read()
        try:
            if isinstance(json.loads(raw.decode()), dict):
                return raw, out["ETag"]
        except ValueError:  # UnicodeDecodeError included: an overwrite in flight (retried)
            pass
        time.sleep(0.05 * 2 ** attempt)
    return raw, out["ETag"]  # bytes that stay unreadable: an abandoned or foreign object (watched, taken over)


def put(uri: str, data: bytes, *, if_match: str | None = None, create: bool = False) -> str:
    """Write the lease at ``uri`` in one PUT: only where none is (``create``), or only over the version whose
    ETag is ``if_match``. Returns the new ETag.

    Raises:
        LeaseConflict: the condition failed (a lease is there already; the lease changed or is gone).
        OSError: the store failed the write.
    """
    (endpoint, region), bucket, key = _where(uri)
    cond = {"IfNoneMatch": "*"} if create else ({"IfMatch": if_match} if if_match else {})
    out = _call("write", uri, _client(endpoint, region).put_object, Bucket=bucket, Key=key, Body=data, **cond)
    return out["ETag"]


def delete(uri: str, if_match: str) -> None:
    """Delete the lease at ``uri`` if it is still the version whose ETag is ``if_match``.

    Raises:
        LeaseConflict: it changed or is gone.
        OSError: the store failed the delete.
    """
    (endpoint, region), bucket, key = _where(uri)
    _call("delete", uri, _client(endpoint, region).delete_object, Bucket=bucket, Key=key, IfMatch=if_match)


def honours_conditions(uri: str, data: bytes) -> bool:
    """Whether the store of ``uri`` honours conditional writes, found once per endpoint and bucket: ``data``
    (the lease just created there, read as it is) is written again against an ETag it cannot have. A store that
    honours the condition refuses; one that ignores it rewrites the same bytes, which changes nothing.

    Raises:
        OSError: the store failed the probe for another reason.
    """
    where, bucket, _ = _where(uri)
    with _HONOURS_GUARD:
        known = _HONOURS.get((where, bucket))
    if known is not None:
        return known
    try:
        put(uri, data, if_match=_NO_ETAG)
        honoured = False
    except LeaseConflict:
        honoured = True
    with _HONOURS_GUARD:
        _HONOURS[(where, bucket)] = honoured
    return honoured


__all__ = ["LeaseConflict", "delete", "get", "honours_conditions", "is_s3", "put"]
