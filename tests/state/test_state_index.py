"""The StateIndex contract: SQLite and Redis keep a session's saved-state record the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from codeapi.sessions.ids import new_id
from codeapi.storage.metadata.base import MetadataStore, SessionRecord, StateRecord

HOUR = timedelta(hours=1)


def now() -> datetime:
    return datetime.now(UTC)


def state(
    session_id: str, *, saved: datetime | None = None, ttl: timedelta = HOUR, blob_key: str | None = None
) -> StateRecord:
    saved = saved or now()
    return StateRecord(session_id, new_id(), 42, saved, saved + ttl, blob_key)


async def test_inline_state_round_trips_with_its_bytes(metadata: MetadataStore) -> None:
    record = state(new_id())
    await metadata.put_state(record, b"\x00opaque\xff")
    assert await metadata.get_state(record.session_id) == record
    assert await metadata.read_inline_state(record.session_id) == b"\x00opaque\xff"


async def test_blob_backed_state_has_no_inline_bytes(metadata: MetadataStore) -> None:
    sid = new_id()
    await metadata.put_state(state(sid), b"old inline bytes")
    await metadata.put_state(state(sid, blob_key=f"sessions/{sid}/state"), None)
    assert (await metadata.get_state(sid) or state(sid)).blob_key == f"sessions/{sid}/state"
    assert await metadata.read_inline_state(sid) is None


async def test_expired_state_is_invisible_but_listed_for_deletion(metadata: MetadataStore) -> None:
    record = state(new_id(), saved=now() - 2 * HOUR)
    await metadata.put_state(record, b"x")
    assert await metadata.get_state(record.session_id) is None
    assert await metadata.read_inline_state(record.session_id) is None
    assert record.session_id in await metadata.expired_states(now(), 100)
    await metadata.delete_state(record.session_id)
    assert record.session_id not in await metadata.expired_states(now(), 100)


async def test_states_to_archive_lists_only_inactive_unarchived_ones(metadata: MetadataStore) -> None:
    idle = state(new_id(), saved=now() - timedelta(minutes=30))
    busy = state(new_id())
    archived = StateRecord(new_id(), "r", 1, now() - timedelta(minutes=30), now() + HOUR, "k", archived=True)
    for record in (idle, busy, archived):
        await metadata.put_state(record, b"x" if record.blob_key is None else None)
    listed = {record.session_id for record in await metadata.states_to_archive(now() - timedelta(minutes=10), 100)}
    assert idle.session_id in listed
    assert busy.session_id not in listed
    assert archived.session_id not in listed


async def test_deleting_a_session_deletes_its_state(metadata: MetadataStore) -> None:
    created = now()
    session = SessionRecord(new_id(), created, created + HOUR)
    await metadata.put_session(session)
    await metadata.put_state(state(session.session_id), b"x")
    await metadata.delete_session(session.session_id)
    assert await metadata.get_state(session.session_id) is None
    assert await metadata.read_inline_state(session.session_id) is None
