"""Expiry and orphan sweeps on both backend pairs, against the real stores."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bench.backends import TEST_REDIS_PORT, SeaweedServer, ensure_redis
from codeapi.config.groups import RedisSettings, S3Settings
from codeapi.sessions.service import SessionService, utcnow
from codeapi.sessions.sweeper import SWEEPER_LOCK, sweep_once
from codeapi.storage import keys
from codeapi.storage.blobs.local import LocalBlobStore
from codeapi.storage.blobs.s3 import S3BlobStore
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.storage.metadata.sqlite import SqliteMetadata
from tests.conftest import BACKENDS

TTL = timedelta(hours=1)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture(params=BACKENDS)
async def sessions(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionService]:
    if request.param == "embedded":
        metadata: SqliteMetadata | RedisMetadata = await SqliteMetadata.open(tmp_path / "codeapi.db")
        blobs: LocalBlobStore | S3BlobStore = LocalBlobStore(tmp_path / "blobs")
    else:
        seaweed: SeaweedServer = request.getfixturevalue("api_seaweed")
        ensure_redis()
        redis_settings = RedisSettings(_env_file=None, host="127.0.0.1", port=TEST_REDIS_PORT, db=11)
        metadata = RedisMetadata(redis_settings, prefix=f"sweep-{uuid.uuid4().hex[:8]}")
        s3 = S3Settings(
            _env_file=None,
            endpoint=seaweed.endpoint,
            access_key="k",
            secret_key="s",
            bucket=f"sweep-{uuid.uuid4().hex[:8]}",
            region="us-east-1",
        )
        blobs = S3BlobStore(s3)
        await blobs.ensure_bucket()
    yield SessionService(metadata, blobs, TTL, max_file_bytes=1024 * 1024, max_files_per_session=10)
    await metadata.close()
    await blobs.close()


async def blob_keys(service: SessionService) -> list[str]:
    return [key async for key in service.blobs.list_keys(keys.SESSIONS_PREFIX)]


async def test_expired_sessions_lose_records_and_blobs(sessions: SessionService) -> None:
    old = await sessions.create()
    await sessions.add_file(old.session_id, "a.txt", chunks(b"a"))
    later = utcnow() + TTL + timedelta(minutes=1)
    assert await sessions.expire(later) == 1
    assert await sessions.get(old.session_id) is None
    assert await blob_keys(sessions) == []


async def test_live_sessions_are_kept(sessions: SessionService) -> None:
    live = await sessions.create()
    record = await sessions.add_file(live.session_id, "keep.txt", chunks(b"k"))
    assert await sessions.expire(utcnow()) == 0
    assert (await sessions.get_file(live.session_id, record.file_id)).name == "keep.txt"


async def test_a_session_in_use_is_not_swept(sessions: SessionService) -> None:
    busy = await sessions.create()
    await sessions.add_file(busy.session_id, "in-use.txt", chunks(b"x"))
    later = utcnow() + TTL + timedelta(minutes=1)
    async with sessions.metadata.lock(busy.session_id, timeout_s=30, wait_s=1):
        assert await sessions.expire(later) == 0
        assert len(await blob_keys(sessions)) == 1
    assert await sessions.expire(later) == 1


async def test_orphaned_blobs_are_reaped_and_owned_ones_kept(sessions: SessionService) -> None:
    owned = await sessions.create()
    await sessions.add_file(owned.session_id, "mine.txt", chunks(b"m"))
    await sessions.blobs.put(keys.file_key("O" * 21, "F" * 21), chunks(b"orphan"))
    assert await sessions.reap_orphans() == 1
    remaining = await blob_keys(sessions)
    assert len(remaining) == 1 and keys.session_of(remaining[0]) == owned.session_id


async def test_only_one_replica_sweeps_at_a_time(sessions: SessionService) -> None:
    await sessions.blobs.put(keys.file_key("Q" * 21, "F" * 21), chunks(b"orphan"))
    async with sessions.metadata.lock(SWEEPER_LOCK, timeout_s=30, wait_s=1):
        assert await sweep_once(sessions, reap_orphans=True, lock_s=30) == (0, 0)
    assert await sweep_once(sessions, reap_orphans=True, lock_s=30) == (0, 1)
