"""StateStore and the archiver against real backends: inline vs blob, archival, restore, expiry."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from codeapi.sessions.ids import new_id
from codeapi.state.archiver import archive_once
from codeapi.state.store import StatePolicy, StateStore, state_key
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.metadata.base import MetadataStore
from codeapi.units import MB

DEFAULT = StatePolicy(
    ttl=timedelta(hours=2),
    max_inline_raw_bytes=MB,
    archive_after=timedelta(hours=1),
    archive_ttl=timedelta(days=1),
    archive_enabled=True,
)


async def test_small_state_stays_inline_and_large_state_goes_to_the_blob_store(
    metadata: MetadataStore, blobs: BlobStore
) -> None:
    store = StateStore(metadata, blobs, DEFAULT)
    sid = new_id()
    first = await store.save(sid, b"small", 100, None)
    record = await metadata.get_state(sid)
    assert record is not None and record.blob_key is None and record.revision == first
    assert await metadata.read_inline_state(sid) == b"small"
    second = await store.save(sid, b"large" * 1000, 2 * MB, record)
    assert second != first
    record = await metadata.get_state(sid)
    assert record is not None and record.blob_key == state_key(sid)
    loaded = await store.load(record)
    assert loaded is not None and loaded.data == b"large" * 1000 and loaded.revision == second
    await store.save(sid, b"small again", 10, record)
    assert [key async for key in blobs.list_keys(state_key(sid))] == []


async def test_archiving_moves_inline_state_to_blobs_and_it_still_loads(
    metadata: MetadataStore, blobs: BlobStore
) -> None:
    store = StateStore(metadata, blobs, replace(DEFAULT, archive_after=timedelta(0)))
    sid = new_id()
    revision = await store.save(sid, b"pickled", 7, None)
    assert await archive_once(store, metadata) == (1, 0)
    record = await metadata.get_state(sid)
    assert record is not None and record.archived and record.blob_key == state_key(sid)
    assert await metadata.read_inline_state(sid) is None
    loaded = await store.load(record)
    assert loaded is not None and loaded.data == b"pickled" and loaded.revision == revision


async def test_expired_archive_is_deleted_with_its_blob(metadata: MetadataStore, blobs: BlobStore) -> None:
    store = StateStore(metadata, blobs, replace(DEFAULT, archive_after=timedelta(0), archive_ttl=timedelta(seconds=-1)))
    sid = new_id()
    await store.save(sid, b"pickled", 7, None)
    await archive_once(store, metadata)  # archived with an expiry already in the past
    assert await store.current(sid) is None
    await archive_once(store, metadata)
    assert [key async for key in blobs.list_keys(state_key(sid))] == []
    assert sid not in await metadata.expired_states(datetime.now(UTC), 100)


async def test_a_busy_session_is_not_archived_now(metadata: MetadataStore, blobs: BlobStore) -> None:
    store = StateStore(metadata, blobs, replace(DEFAULT, archive_after=timedelta(0)))
    sid = new_id()
    await store.save(sid, b"pickled", 7, None)
    async with metadata.lock(sid, timeout_s=10, wait_s=1):
        assert await archive_once(store, metadata) == (0, 0)
    assert await archive_once(store, metadata) == (1, 0)
