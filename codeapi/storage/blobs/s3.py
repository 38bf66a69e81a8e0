"""Blobs in an S3-compatible bucket (AWS S3, SeaweedFS, Garage, MinIO) through obstore.

Bucket creation: obstore (Rust ``object_store``) has no bucket API, and SeaweedFS only accepts an
unsigned ``PUT /<bucket>`` while it runs without identities. Rather than add boto3 for one call,
``ensure_bucket`` sends ``HEAD`` / ``PUT`` on the bucket root with URLs presigned by obstore
itself: the signature, credentials (including the default chain and session tokens) and
path-style addressing are exactly those of the object requests, and the standard library sends
the request from a worker thread. Presigned URLs sign no payload, so the ``LocationConstraint``
body that regions other than us-east-1 require can ride along.

Keys use S3 string-prefix semantics; obstore lists by path segment, so a prefix that does not end
at a ``/`` is listed from its parent and filtered here.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

import obstore
import structlog
from obstore.exceptions import BaseError as ObstoreError
from obstore.store import S3Store

from codeapi.config.groups import S3Settings
from codeapi.errors import BackendUnavailable, FileNotFound
from codeapi.storage.blobs.base import validate_key
from codeapi.units import FILE_CHUNK_BYTES, MB

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

logger = structlog.get_logger(__name__)

# S3's minimum multipart part size; a stream shorter than this goes up in one plain PUT.
PART_BYTES = 5 * MB
UPLOAD_CONCURRENCY = 4
DELETE_BATCH = 1000
PRESIGN_TTL = timedelta(minutes=5)
CREATE_BUCKET_BODY = (
    '<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
    "<LocationConstraint>{region}</LocationConstraint></CreateBucketConfiguration>"
)


@contextmanager
def _boundary(operation: str, key: str) -> Iterator[None]:
    """obstore's errors stop here: a missing object is FileNotFound, anything else is an outage."""
    try:
        yield
    except FileNotFoundError as exc:
        raise FileNotFound() from exc
    except (ObstoreError, ConnectionError, TimeoutError) as exc:
        message = str(exc).split("\n", 1)[0]
        logger.error("s3_failed", operation=operation, key=key, error=message)
        raise BackendUnavailable(f"s3 unavailable: {message}") from exc


async def _take(chunks: AsyncIterator[bytes], limit: int) -> tuple[list[bytes], bool]:
    """Read chunks until ``limit`` bytes are buffered; True when the stream has ended."""
    buffered: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = await anext(chunks)
        except StopAsyncIteration:
            return buffered, True
        if chunk:
            buffered.append(chunk)
            size += len(chunk)
    return buffered, False


def _bucket_http(method: str, url: str, body: bytes | None, timeout_s: float) -> int:
    request = urllib.request.Request(url, data=body, method=method)
    # Proxy variables are ignored, as obstore ignores them for every other request.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout_s) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError as exc:  # URLError, refused connections and socket timeouts
        raise BackendUnavailable(f"s3 unavailable: {exc}") from exc


class S3BlobStore:
    name = "s3"

    def __init__(
        self,
        settings: S3Settings,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 30.0,
        request_timeout_s: float = 3600.0,
        max_retries: int = 3,
        retry_timeout_s: float = 30.0,
    ) -> None:
        """The overall request timeout is long because a download streams at the client's pace;
        a stalled connection is caught by the read timeout instead."""
        self.settings = settings
        self.connect_timeout_s = connect_timeout_s
        client: ClientConfig = {
            "allow_http": not settings.secure,
            "connect_timeout": timedelta(seconds=connect_timeout_s),
            "read_timeout": timedelta(seconds=read_timeout_s),
            "timeout": timedelta(seconds=request_timeout_s),
        }
        retry: RetryConfig = {
            "max_retries": max_retries,
            "retry_timeout": timedelta(seconds=retry_timeout_s),
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2)},
        }
        config: S3Config = {
            "endpoint": settings.endpoint_url,
            "region": settings.region,
            "virtual_hosted_style_request": False,
        }
        # Without explicit keys obstore falls back to AWS_* variables, web identity, ECS or IMDS.
        if settings.access_key is not None and settings.secret_key is not None:
            config["access_key_id"] = settings.access_key
            config["secret_access_key"] = settings.secret_key
        self._store = S3Store(settings.bucket, config=config, client_options=client, retry_config=retry)

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        validate_key(key)
        source = aiter(chunks)
        head, ended = await _take(source, PART_BYTES)
        with _boundary("put", key):
            if ended:
                data = b"".join(head)
                await obstore.put_async(self._store, key, data, use_multipart=False)
                return len(data)
            counted = _Counted(head, source)
            # obstore aborts the multipart upload if the source raises, and re-raises its error.
            await obstore.put_async(
                self._store,
                key,
                counted,
                use_multipart=True,
                chunk_size=PART_BYTES,
                max_concurrency=UPLOAD_CONCURRENCY,
            )
            return counted.size

    async def read(self, key: str) -> AsyncIterator[bytes]:
        validate_key(key)
        with _boundary("read", key):
            result = await obstore.get_async(self._store, key)
            async for chunk in result.stream(min_chunk_size=FILE_CHUNK_BYTES):
                yield bytes(chunk)

    async def delete(self, key: str) -> None:
        validate_key(key)
        with _boundary("delete", key):
            await obstore.delete_async(self._store, key)

    async def delete_prefix(self, prefix: str) -> int:
        deleted = 0
        batch: list[str] = []
        async for key in self.list_keys(prefix):
            batch.append(key)
            if len(batch) >= DELETE_BATCH:
                deleted += await self._delete_batch(prefix, batch)
                batch = []
        if batch:
            deleted += await self._delete_batch(prefix, batch)
        return deleted

    async def _delete_batch(self, prefix: str, keys: list[str]) -> int:
        with _boundary("delete_prefix", prefix):
            await obstore.delete_async(self._store, keys)
        return len(keys)

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        directory = prefix.rpartition("/")[0]
        if directory:
            validate_key(directory)
        with _boundary("list_keys", prefix):
            async for objects in obstore.list(self._store, directory or None, chunk_size=DELETE_BATCH):
                for meta in objects:
                    if meta["path"].startswith(prefix):
                        yield meta["path"]

    async def ping(self) -> None:
        """One ListObjects call: proves the endpoint, the credentials and the bucket at once."""
        with _boundary("ping", ""):
            await obstore.list_with_delimiter_async(self._store, "codeapi-ping")

    async def close(self) -> None:
        return None

    async def ensure_bucket(self) -> bool:
        """Create the bucket when it is missing; True when this call created it."""
        bucket = self.settings.bucket
        status = await self._bucket_request("HEAD")
        if status == 200:
            return False
        if status != 404:
            raise BackendUnavailable(f"s3 bucket {bucket} is not usable: HEAD returned HTTP {status}")
        region = self.settings.region
        body = b"" if region in ("", "us-east-1") else CREATE_BUCKET_BODY.format(region=region).encode()
        created = await self._bucket_request("PUT", body)
        # 409 means another replica won the race; the HEAD below tells whether we may use it.
        if created not in (200, 409) or await self._bucket_request("HEAD") != 200:
            raise BackendUnavailable(f"s3 bucket {bucket} could not be created: PUT returned HTTP {created}")
        if created == 200:
            logger.info("s3_bucket_created", bucket=bucket, endpoint=self.settings.endpoint)
        return created == 200

    async def _bucket_request(self, method: Literal["HEAD", "PUT"], body: bytes | None = None) -> int:
        with _boundary("ensure_bucket", ""):
            url = await obstore.sign_async(self._store, method, "", PRESIGN_TTL)
        timeout_s = self.connect_timeout_s + 30
        return await asyncio.to_thread(_bucket_http, method, url, body, timeout_s)


class _Counted:
    """The buffered head of a stream followed by its rest, counting the bytes handed out."""

    def __init__(self, head: list[bytes], rest: AsyncIterator[bytes]) -> None:
        self.size = 0
        self._head = head
        self._rest = rest

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._head:
            self.size += len(chunk)
            yield chunk
        self._head = []
        async for chunk in self._rest:
            if chunk:
                self.size += len(chunk)
                yield chunk
