"""Fixtures for the storage contract suites: every backend runs against the real thing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from bench.backends import TEST_REDIS_PORT, SeaweedServer, ensure_redis, start_seaweedfs
from codeapi.config.groups import RedisSettings, S3Settings
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.blobs.local import LocalBlobStore
from codeapi.storage.blobs.s3 import S3BlobStore
from codeapi.storage.metadata.base import MetadataStore
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.storage.metadata.sqlite import SqliteMetadata

REDIS_TEST_DB = 5
TEST_BUCKET = "test-bucket"


def redis_test_settings(port: int = TEST_REDIS_PORT, timeout_s: float = 5.0) -> RedisSettings:
    return RedisSettings(
        _env_file=None,
        host="127.0.0.1",
        port=port,
        db=REDIS_TEST_DB,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
    )


def s3_test_settings(endpoint: str, bucket: str = TEST_BUCKET) -> S3Settings:
    return S3Settings(
        _env_file=None,
        endpoint=endpoint,
        access_key="any",
        secret_key="any",
        bucket=bucket,
        region="us-east-1",
    )


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def shared_redis() -> RedisSettings:
    ensure_redis()
    return redis_test_settings()


async def _drop_prefix(settings: RedisSettings, prefix: str) -> None:
    """Delete only this test's keys: other suites may share db 5 at the same time."""
    client = aioredis.Redis(host=settings.host, port=settings.port, db=settings.db)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest_asyncio.fixture(params=["sqlite", "redis"])
async def metadata(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MetadataStore]:
    if request.param == "sqlite":
        sqlite_store = await SqliteMetadata.open(tmp_path / "codeapi.db")
        yield sqlite_store
        await sqlite_store.close()
        return
    settings: RedisSettings = request.getfixturevalue("shared_redis")
    prefix = f"codeapi-test-{uuid.uuid4().hex[:8]}"
    redis_store = RedisMetadata(settings, prefix=prefix)
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await _drop_prefix(settings, prefix)


@pytest_asyncio.fixture(params=["local", "s3"])
async def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BlobStore]:
    if request.param == "local":
        yield LocalBlobStore(tmp_path / "blobs")
        return
    # Only sync fixtures may be pulled in lazily from inside a running async fixture.
    server: SeaweedServer = request.getfixturevalue("seaweed")
    store = S3BlobStore(s3_test_settings(server.endpoint))
    await store.ensure_bucket()
    await store.delete_prefix("")
    yield store
    await store.delete_prefix("")
