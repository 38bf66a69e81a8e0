"""One contract for every metadata backend: SQLite and Redis must be interchangeable."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from codeapi.errors import SessionBusy
from codeapi.sessions.ids import new_id
from codeapi.storage.metadata.base import FileRecord, MetadataStore, SessionRecord

HOUR = timedelta(hours=1)


def now() -> datetime:
    return datetime.now(UTC)


def session(
    *,
    created: datetime | None = None,
    ttl: timedelta = HOUR,
    entity_id: str | None = None,
    user_id: str | None = "user-1",
) -> SessionRecord:
    created = created or now()
    return SessionRecord(new_id(), created, created + ttl, user_id=user_id, entity_id=entity_id)


def file(
    session_id: str,
    *,
    created: datetime | None = None,
    ttl: timedelta = HOUR,
    blob_key: str | None = None,
    name: str = "data/report.csv",
) -> FileRecord:
    created = created or now()
    file_id = new_id()
    return FileRecord(
        session_id=session_id,
        file_id=file_id,
        name=name,
        size_bytes=1234,
        content_type="text/csv",
        created_at=created,
        expires_at=created + ttl,
        blob_key=blob_key or f"sessions/{session_id}/{file_id}",
    )


async def test_ping(metadata: MetadataStore) -> None:
    await metadata.ping()
    assert metadata.name in ("sqlite", "redis")


async def test_session_round_trip_is_exact_and_utc(metadata: MetadataStore) -> None:
    record = session(entity_id="asst_1")
    await metadata.put_session(record)

    loaded = await metadata.get_session(record.session_id)

    assert loaded == record
    assert loaded is not None
    assert loaded.created_at.utcoffset() == timedelta(0)
    assert loaded.created_at.microsecond == record.created_at.microsecond


async def test_session_without_optional_fields(metadata: MetadataStore) -> None:
    record = SessionRecord(new_id(), now(), now() + HOUR)
    await metadata.put_session(record)
    assert await metadata.get_session(record.session_id) == record


async def test_unknown_session_is_none(metadata: MetadataStore) -> None:
    assert await metadata.get_session(new_id()) is None


async def test_expired_session_is_hidden(metadata: MetadataStore) -> None:
    record = session(created=now() - 2 * HOUR)
    await metadata.put_session(record)
    assert await metadata.get_session(record.session_id) is None


async def test_put_session_replaces_the_record(metadata: MetadataStore) -> None:
    record = session()
    await metadata.put_session(record)
    renewed = SessionRecord(record.session_id, record.created_at, record.expires_at + HOUR, record.user_id)

    await metadata.put_session(renewed)

    assert await metadata.get_session(record.session_id) == renewed


async def test_touching_an_expired_session_revives_it(metadata: MetadataStore) -> None:
    record = session(created=now() - 2 * HOUR)
    await metadata.put_session(record)
    renewed = SessionRecord(record.session_id, record.created_at, now() + HOUR)

    await metadata.put_session(renewed)

    assert await metadata.get_session(record.session_id) == renewed
    assert record.session_id not in await metadata.expired_sessions(now(), 100)


async def test_delete_session_removes_its_files(metadata: MetadataStore) -> None:
    record = session(entity_id="asst_del")
    await metadata.put_session(record)
    stored = file(record.session_id)
    await metadata.put_file(stored)

    await metadata.delete_session(record.session_id)

    assert await metadata.get_session(record.session_id) is None
    assert await metadata.get_file(record.session_id, stored.file_id) is None
    assert await metadata.list_files(record.session_id) == []
    assert await metadata.count_files(record.session_id) == 0
    assert not await metadata.blob_in_use(stored.blob_key)
    assert await metadata.latest_session_for_entity("asst_del", "user-1") is None


async def test_delete_unknown_session_is_a_no_op(metadata: MetadataStore) -> None:
    await metadata.delete_session(new_id())


async def test_expired_sessions(metadata: MetadataStore) -> None:
    old = [session(created=now() - timedelta(hours=3 - i)) for i in range(3)]  # expired 2h, 1h, 0h ago
    live = session()
    for record in (*old, live):
        await metadata.put_session(record)

    found = await metadata.expired_sessions(now(), 100)

    assert set(found) == {record.session_id for record in old}
    assert live.session_id not in found
    limited = await metadata.expired_sessions(now(), 2)
    assert len(limited) == 2 and set(limited) <= set(found)
    assert await metadata.expired_sessions(now() - 4 * HOUR, 100) == []


async def test_deleted_session_is_no_longer_expired(metadata: MetadataStore) -> None:
    record = session(created=now() - 2 * HOUR)
    await metadata.put_session(record)
    await metadata.delete_session(record.session_id)
    assert record.session_id not in await metadata.expired_sessions(now(), 100)


async def test_latest_session_for_entity(metadata: MetadataStore) -> None:
    entity = f"asst_{new_id()}"
    older = session(created=now() - timedelta(minutes=10), entity_id=entity)
    newer = session(created=now() - timedelta(minutes=5), entity_id=entity)
    other = session(entity_id=f"asst_{new_id()}")
    for record in (newer, older, other):
        await metadata.put_session(record)

    assert await metadata.latest_session_for_entity(entity, "user-1") == newer
    # Touching the older session does not make it the latest one.
    await metadata.put_session(SessionRecord(older.session_id, older.created_at, now() + 2 * HOUR, "user-1", entity))
    assert await metadata.latest_session_for_entity(entity, "user-1") == newer
    assert await metadata.latest_session_for_entity("asst_unknown", "user-1") is None


async def test_an_entitys_latest_session_is_the_latest_of_that_user(metadata: MetadataStore) -> None:
    entity = f"asst_{new_id()}"
    mine = session(created=now() - timedelta(minutes=10), entity_id=entity)
    theirs = session(created=now() - timedelta(minutes=5), entity_id=entity, user_id="user-2")
    nobodys = session(created=now() - timedelta(minutes=1), entity_id=entity, user_id=None)
    for record in (mine, theirs, nobodys):
        await metadata.put_session(record)

    assert await metadata.latest_session_for_entity(entity, "user-1") == mine
    assert await metadata.latest_session_for_entity(entity, "user-2") == theirs
    assert await metadata.latest_session_for_entity(entity, None) == nobodys
    assert await metadata.latest_session_for_entity(entity, "user-3") is None


async def test_latest_session_for_entity_skips_expired(metadata: MetadataStore) -> None:
    entity = f"asst_{new_id()}"
    live = session(created=now() - 3 * HOUR, ttl=4 * HOUR, entity_id=entity)
    expired = session(created=now() - 2 * HOUR, entity_id=entity)
    await metadata.put_session(live)
    await metadata.put_session(expired)

    assert await metadata.latest_session_for_entity(entity, "user-1") == live


async def test_file_round_trip(metadata: MetadataStore) -> None:
    record = session()
    await metadata.put_session(record)
    stored = file(record.session_id, name="out/plot 1.png")

    await metadata.put_file(stored)

    assert await metadata.get_file(record.session_id, stored.file_id) == stored
    assert await metadata.get_file(record.session_id, new_id()) is None
    assert await metadata.get_file(new_id(), stored.file_id) is None


async def test_a_read_only_file_stays_read_only(metadata: MetadataStore) -> None:
    record = session()
    await metadata.put_session(record)
    skill = dataclasses.replace(file(record.session_id, name="skills/demo/SKILL.md"), read_only=True)
    await metadata.put_file(skill)
    assert await metadata.get_file(record.session_id, skill.file_id) == skill
    assert [item.read_only for item in await metadata.list_files(record.session_id)] == [True]


async def test_list_files_oldest_first_without_expired(metadata: MetadataStore) -> None:
    sid = session().session_id
    base = now() - timedelta(minutes=30)
    second = file(sid, created=base + timedelta(seconds=2))
    first = file(sid, created=base + timedelta(seconds=1))
    expired = file(sid, created=now() - 2 * HOUR)
    for record in (second, expired, first):
        await metadata.put_file(record)

    assert await metadata.list_files(sid) == [first, second]
    assert await metadata.count_files(sid) == 2
    assert await metadata.get_file(sid, expired.file_id) is None
    assert await metadata.list_files(new_id()) == []
    assert await metadata.count_files(new_id()) == 0


async def test_put_file_replaces_the_record(metadata: MetadataStore) -> None:
    stored = file(new_id())
    await metadata.put_file(stored)
    renamed = FileRecord(**{**stored.__dict__, "name": "renamed.txt", "size_bytes": 9})

    await metadata.put_file(renamed)

    assert await metadata.list_files(stored.session_id) == [renamed]


async def test_delete_file(metadata: MetadataStore) -> None:
    stored = file(new_id())
    await metadata.put_file(stored)

    assert await metadata.delete_file(stored.session_id, stored.file_id) is True
    assert await metadata.delete_file(stored.session_id, stored.file_id) is False
    assert await metadata.get_file(stored.session_id, stored.file_id) is None
    assert not await metadata.blob_in_use(stored.blob_key)


async def test_blob_in_use_follows_linked_references(metadata: MetadataStore) -> None:
    original = file(new_id())
    linked = file(new_id(), blob_key=original.blob_key)  # an input linked into another session
    await metadata.put_file(original)
    await metadata.put_file(linked)
    assert await metadata.blob_in_use(original.blob_key)

    await metadata.delete_file(original.session_id, original.file_id)
    assert await metadata.blob_in_use(original.blob_key)

    await metadata.delete_session(linked.session_id)
    assert not await metadata.blob_in_use(original.blob_key)
    assert not await metadata.blob_in_use("sessions/never/seen")


async def test_expired_reference_does_not_keep_a_blob(metadata: MetadataStore) -> None:
    expired = file(new_id(), created=now() - 2 * HOUR)
    await metadata.put_file(expired)
    assert not await metadata.blob_in_use(expired.blob_key)


async def test_repointed_file_releases_its_old_blob(metadata: MetadataStore) -> None:
    stored = file(new_id())
    await metadata.put_file(stored)
    moved = FileRecord(**{**stored.__dict__, "blob_key": f"sessions/{stored.session_id}/{new_id()}"})

    await metadata.put_file(moved)

    assert not await metadata.blob_in_use(stored.blob_key)
    assert await metadata.blob_in_use(moved.blob_key)


async def test_naive_datetimes_are_taken_as_utc(metadata: MetadataStore) -> None:
    aware = now()
    naive = SessionRecord(new_id(), aware.replace(tzinfo=None), (aware + HOUR).replace(tzinfo=None))
    await metadata.put_session(naive)

    loaded = await metadata.get_session(naive.session_id)

    assert loaded is not None and loaded.created_at == aware


async def test_lock_is_exclusive(metadata: MetadataStore) -> None:
    sid = new_id()
    async with metadata.lock(sid, timeout_s=10, wait_s=0):
        with pytest.raises(SessionBusy):
            async with metadata.lock(sid, timeout_s=10, wait_s=0.2):
                pytest.fail("second holder got the lock")
        async with metadata.lock(new_id(), timeout_s=10, wait_s=0):
            pass  # other sessions are not blocked
    async with metadata.lock(sid, timeout_s=10, wait_s=0):
        pass  # released on exit


async def test_waiter_gets_the_lock_when_it_is_released(metadata: MetadataStore) -> None:
    sid = new_id()
    order: list[str] = []

    async def second() -> None:
        async with metadata.lock(sid, timeout_s=10, wait_s=5):
            order.append("second")

    async with metadata.lock(sid, timeout_s=10, wait_s=0):
        waiter = asyncio.create_task(second())
        await asyncio.sleep(0.2)
        order.append("first")
    await asyncio.wait_for(waiter, 5)

    assert order == ["first", "second"]


async def test_lock_is_released_when_the_body_fails(metadata: MetadataStore) -> None:
    sid = new_id()
    with pytest.raises(RuntimeError):
        async with metadata.lock(sid, timeout_s=10, wait_s=0):
            raise RuntimeError("boom")
    async with metadata.lock(sid, timeout_s=10, wait_s=0):
        pass


async def test_lock_expires_when_its_holder_overruns(metadata: MetadataStore) -> None:
    sid = new_id()
    taken = asyncio.Event()
    release = asyncio.Event()

    # Held long enough that the next attempt surely finds it held, even on a busy machine.
    async def stuck_holder() -> None:
        async with metadata.lock(sid, timeout_s=2, wait_s=0):
            taken.set()
            await release.wait()

    holder = asyncio.create_task(stuck_holder())
    await taken.wait()
    with pytest.raises(SessionBusy):
        async with metadata.lock(sid, timeout_s=10, wait_s=0):
            pass
    async with metadata.lock(sid, timeout_s=10, wait_s=30):
        # The stale holder finishing now must not free the new holder's lock.
        release.set()
        await holder
        with pytest.raises(SessionBusy):
            async with metadata.lock(sid, timeout_s=10, wait_s=0):
                pass
