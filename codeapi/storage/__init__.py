"""Picks the storage backends: shared ones (Redis, S3) when configured, embedded ones otherwise."""

from __future__ import annotations

import asyncio

import structlog

from codeapi.config.groups import RedisSettings, S3Settings, StorageSettings
from codeapi.errors import BackendUnavailable
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.blobs.local import LocalBlobStore
from codeapi.storage.blobs.s3 import S3BlobStore
from codeapi.storage.metadata.base import MetadataStore
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.storage.metadata.sqlite import SqliteMetadata

logger = structlog.get_logger(__name__)

S3_STARTUP_WAIT_S = 30.0
S3_RETRY_FIRST_PAUSE_S = 0.5
S3_RETRY_MAX_PAUSE_S = 5.0

__all__ = ["open_metadata", "open_stores"]


async def open_stores(
    storage: StorageSettings, redis: RedisSettings, s3: S3Settings, s3_wait_s: float = S3_STARTUP_WAIT_S
) -> tuple[MetadataStore, BlobStore]:
    """Open both stores; raises BackendUnavailable when a configured backend cannot be reached.

    Creates the S3 bucket when it is missing, so a fresh deployment needs no manual step, and
    waits up to ``s3_wait_s`` for an S3 that is still starting (services started together).
    """
    if not (redis.configured and s3.configured):
        try:
            # Owner-only when created here: it holds every session's files and the metadata.
            storage.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendUnavailable(f"data directory {storage.data_dir} is not usable: {exc}") from exc
    metadata = await open_metadata(storage, redis)
    blobs: BlobStore
    try:
        if s3.configured:
            s3_store = S3BlobStore(s3)
            await ensure_bucket_once_up(s3_store, s3_wait_s)
            blobs = s3_store
        else:
            blobs = LocalBlobStore(storage.data_dir / "blobs")
    except BackendUnavailable:
        await metadata.close()
        raise
    logger.info("storage_opened", metadata=metadata.name, blobs=blobs.name)
    return metadata, blobs


async def open_metadata(storage: StorageSettings, redis: RedisSettings) -> MetadataStore:
    """The metadata store alone (what ``codeapi keys`` needs): Redis when configured, else the SQLite file."""
    if redis.configured:
        return RedisMetadata(redis)
    return await SqliteMetadata.open(storage.data_dir / "codeapi.db")


async def ensure_bucket_once_up(store: S3BlobStore, wait_s: float) -> None:
    loop = asyncio.get_running_loop()
    give_up = loop.time() + wait_s
    pause_s = S3_RETRY_FIRST_PAUSE_S
    while True:
        try:
            await store.ensure_bucket()
            return
        except BackendUnavailable as error:
            if loop.time() + pause_s > give_up:
                raise
            logger.warning("s3_not_ready", error=error.message, retry_in_s=pause_s)
        await asyncio.sleep(pause_s)
        pause_s = min(pause_s * 2, S3_RETRY_MAX_PAUSE_S)
