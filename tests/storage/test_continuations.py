"""Continuation records (programmatic tool calling) behave the same on SQLite and Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from codeapi.sessions.ids import new_id
from codeapi.storage.metadata.base import MetadataStore


async def test_a_continuation_is_taken_once(metadata: MetadataStore) -> None:
    key = new_id()
    await metadata.put_continuation(key, b"\x00state", datetime.now(UTC) + timedelta(minutes=5))
    assert await metadata.take_continuation(key) == b"\x00state"
    assert await metadata.take_continuation(key) is None


async def test_concurrent_takes_get_it_once(metadata: MetadataStore) -> None:
    key = new_id()
    await metadata.put_continuation(key, b"state", datetime.now(UTC) + timedelta(minutes=5))
    taken = await asyncio.gather(*(metadata.take_continuation(key) for _ in range(8)))
    assert sorted(taken, key=lambda item: item is None) == [b"state"] + [None] * 7


async def test_an_expired_continuation_is_gone(metadata: MetadataStore) -> None:
    key = new_id()
    await metadata.put_continuation(key, b"state", datetime.now(UTC) + timedelta(milliseconds=50))
    await asyncio.sleep(0.2)
    assert await metadata.take_continuation(key) is None


async def test_an_unknown_continuation_is_none(metadata: MetadataStore) -> None:
    assert await metadata.take_continuation(new_id()) is None
