"""Backends that go away: callers see BackendUnavailable, and service resumes once they return.

Each test starts its own throwaway server so stopping it cannot disturb other tests.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench.backends import RedisServer, SeaweedServer, free_port, start_redis, start_seaweedfs
from codeapi.errors import BackendUnavailable
from codeapi.sessions.ids import new_id
from codeapi.storage.blobs.local import LocalBlobStore
from codeapi.storage.blobs.s3 import S3BlobStore
from codeapi.storage.metadata import redis as redis_metadata
from codeapi.storage.metadata.base import SessionRecord
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.storage.metadata.sqlite import SqliteMetadata
from tests.storage.conftest import redis_test_settings, s3_test_settings

THREAD_END_S = 30  # a bound on a poll, not a wait


def new_session() -> SessionRecord:
    now = datetime.now(UTC)
    return SessionRecord(new_id(), now, now + timedelta(hours=1), entity_id="asst_fault")


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def read_all(store: S3BlobStore | LocalBlobStore, key: str) -> bytes:
    return b"".join([chunk async for chunk in store.read(key)])


async def assert_unavailable(*operations: Callable[[], Awaitable[object]]) -> None:
    for operation in operations:
        with pytest.raises(BackendUnavailable):
            await operation()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = start_redis(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def seaweed_server(tmp_path: Path) -> Iterator[SeaweedServer]:
    server = start_seaweedfs(tmp_path / "seaweedfs")
    yield server
    server.stop()


async def test_redis_outage_and_recovery(redis_server: RedisServer) -> None:
    settings = redis_test_settings(redis_server.port, timeout_s=1)
    store = RedisMetadata(settings)
    before = new_session()
    await store.put_session(before)

    redis_server.stop()
    during = new_session()
    await assert_unavailable(
        store.ping,
        lambda: store.put_session(during),
        lambda: store.get_session(before.session_id),
        lambda: store.list_files(before.session_id),
        lambda: store.blob_in_use("sessions/x/y"),
        lambda: store.expired_sessions(datetime.now(UTC), 10),
        lambda: store.latest_session_for_entity("asst_fault", None),
        lambda: store.delete_session(before.session_id),
    )
    with pytest.raises(BackendUnavailable):
        async with store.lock(before.session_id, timeout_s=5, wait_s=0.2):
            pass

    redis_server.start()  # same store object: its pool must reconnect by itself
    await store.ping()
    after = new_session()
    await store.put_session(after)
    assert await store.get_session(after.session_id) == after
    async with store.lock(after.session_id, timeout_s=5, wait_s=0.2):
        pass
    await store.close()


async def test_a_lock_whose_release_failed_is_released_once_redis_is_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis restarts (its data kept) just as a call ends: the session's next call waits for Redis to
    be back, not for the rest of the lock's lease (which the restart kept)."""
    monkeypatch.setattr(redis_metadata, "LOCK_LEASE_S", 8.0)
    server = start_redis(tmp_path / "redis", persistent=True)
    store = RedisMetadata(redis_test_settings(server.port, timeout_s=1))
    try:
        async with store.lock("restarted", timeout_s=60, wait_s=0):
            server.stop()
        server.start()
        async with store.lock("restarted", timeout_s=60, wait_s=3):  # < the 8 s lease left
            pass
    finally:
        await store.close()
        server.stop()


async def test_unreachable_redis_fails_fast_without_a_server() -> None:
    store = RedisMetadata(redis_test_settings(free_port(), timeout_s=1))
    await assert_unavailable(store.ping, lambda: store.get_session(new_id()))
    await store.close()


async def test_s3_outage_and_recovery(seaweed_server: SeaweedServer) -> None:
    store = S3BlobStore(
        s3_test_settings(seaweed_server.endpoint, bucket="fault-bucket"),
        connect_timeout_s=1,
        read_timeout_s=2,
        max_retries=1,
        retry_timeout_s=2,
    )
    await store.ensure_bucket()
    await store.put("sessions/s1/kept", chunks(b"acknowledged before the outage"))

    seaweed_server.stop()
    await assert_unavailable(
        store.ping,
        store.ensure_bucket,
        lambda: store.put("sessions/s1/new", chunks(b"x")),
        lambda: read_all(store, "sessions/s1/kept"),
        lambda: store.delete("sessions/s1/kept"),
        lambda: store.delete_prefix("sessions/s1/"),
        lambda: anext(store.list_keys("sessions/")),
    )

    seaweed_server.start()
    await store.ping()
    assert await read_all(store, "sessions/s1/kept") == b"acknowledged before the outage"
    await store.put("sessions/s1/new", chunks(b"after"))
    assert await read_all(store, "sessions/s1/new") == b"after"


async def test_sqlite_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "codeapi.db"
    path.write_bytes(b"this is not a sqlite file" * 100)
    threads_before = non_daemon_threads()
    with pytest.raises(BackendUnavailable):
        await SqliteMetadata.open(path)
    # A connection left open keeps a non-daemon thread alive, and the process could never exit. A closed
    # connection's thread ends soon after: polled.
    deadline = asyncio.get_running_loop().time() + THREAD_END_S
    while (left := non_daemon_threads() - threads_before) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert left == set()


def non_daemon_threads() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if not thread.daemon and thread.is_alive()}


async def test_closed_sqlite_store_is_unavailable(tmp_path: Path) -> None:
    store = await SqliteMetadata.open(tmp_path / "codeapi.db")
    await store.close()
    await assert_unavailable(store.ping, lambda: store.get_session(new_id()))


async def test_local_blob_root_gone(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    store = LocalBlobStore(root)
    root.rmdir()
    root.write_bytes(b"a file where the directory was")

    await assert_unavailable(store.ping, lambda: store.put("sessions/s1/f", chunks(b"x")))
