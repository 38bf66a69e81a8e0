"""Backend selection: shared backends when configured, embedded ones otherwise."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from bench.backends import SeaweedServer, free_port
from codeapi.config.groups import RedisSettings, S3Settings, StorageSettings
from codeapi.errors import BackendUnavailable
from codeapi.storage import open_stores
from codeapi.storage.blobs.local import LocalBlobStore
from codeapi.storage.blobs.s3 import S3BlobStore
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.storage.metadata.sqlite import SqliteMetadata
from tests.storage.conftest import s3_test_settings


def storage_at(path: Path) -> StorageSettings:
    return StorageSettings(_env_file=None, data_dir=path)


async def test_embedded_backends_when_nothing_is_configured(tmp_path: Path) -> None:
    data_dir = tmp_path / "not-yet-there"
    metadata, blobs = await open_stores(
        storage_at(data_dir),
        RedisSettings(_env_file=None),
        S3Settings(_env_file=None),
    )
    try:
        assert isinstance(metadata, SqliteMetadata)
        assert isinstance(blobs, LocalBlobStore)
        assert (data_dir / "codeapi.db").is_file()
        assert data_dir.stat().st_mode & 0o777 == 0o700  # every session's files: owner-only
        assert blobs.root == data_dir / "blobs"
        await metadata.ping()
        await blobs.ping()
    finally:
        await metadata.close()


async def test_shared_backends_when_configured(
    tmp_path: Path, shared_redis: RedisSettings, seaweed: SeaweedServer
) -> None:
    bucket = f"open-{uuid.uuid4().hex[:12]}"
    metadata, blobs = await open_stores(
        storage_at(tmp_path / "data"), shared_redis, s3_test_settings(seaweed.endpoint, bucket=bucket)
    )
    try:
        assert isinstance(metadata, RedisMetadata)
        assert isinstance(blobs, S3BlobStore)
        await metadata.ping()
        await blobs.ping()  # the bucket was created on open
    finally:
        await metadata.close()


async def test_an_s3_still_starting_is_waited_for(tmp_path: Path, shared_redis: RedisSettings) -> None:
    """Services started together (compose): the API waits for S3 instead of refusing to start."""
    late = SeaweedServer(tmp_path / "late-seaweed")
    opening = asyncio.create_task(
        open_stores(storage_at(tmp_path / "data"), shared_redis, s3_test_settings(late.endpoint, bucket="late"))
    )
    await asyncio.sleep(1.0)
    assert not opening.done()
    await asyncio.to_thread(late.start)
    try:
        metadata, blobs = await asyncio.wait_for(opening, 60)
        await blobs.ping()
        await metadata.close()
    finally:
        await asyncio.to_thread(late.stop)


async def test_an_s3_that_never_comes_is_an_error(tmp_path: Path, shared_redis: RedisSettings) -> None:
    absent = s3_test_settings(f"127.0.0.1:{free_port()}", bucket="absent")
    with pytest.raises(BackendUnavailable):
        await open_stores(storage_at(tmp_path / "data"), shared_redis, absent, s3_wait_s=1.0)
