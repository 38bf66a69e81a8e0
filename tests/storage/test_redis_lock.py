"""Redis session locks are leases the holder renews: a replica that dies mid-call (its renewal stops
with it) frees its sessions within the lease, while a live holder keeps its lock for the whole call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from codeapi.config.groups import RedisSettings
from codeapi.errors import SessionBusy
from codeapi.storage.metadata import redis as redis_metadata
from codeapi.storage.metadata.redis import RedisMetadata

LEASE_S = 0.5


@pytest_asyncio.fixture
async def store(shared_redis: RedisSettings, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RedisMetadata]:
    monkeypatch.setattr(redis_metadata, "LOCK_LEASE_S", LEASE_S)
    metadata = RedisMetadata(shared_redis, prefix=f"lease-{uuid.uuid4().hex[:8]}")
    yield metadata
    await metadata.close()


async def lock_ttl_ms(settings: RedisSettings, store: RedisMetadata, session_id: str) -> int:
    client = aioredis.Redis.from_url(settings.get_url())
    try:
        return int(await client.pttl(f"{store.prefix}:lock:{session_id}"))
    finally:
        await client.aclose()


async def test_a_live_holder_keeps_its_lock_past_the_lease(store: RedisMetadata, shared_redis: RedisSettings) -> None:
    """Held four leases long, still held; and the key never has more than a lease to live, so a holder
    that dies (nothing renews, nothing releases) frees it within one lease."""
    async with store.lock("held", timeout_s=60, wait_s=0):
        await asyncio.sleep(LEASE_S * 4)
        with pytest.raises(SessionBusy):
            async with store.lock("held", timeout_s=60, wait_s=0):
                pass
        assert 0 < await lock_ttl_ms(shared_redis, store, "held") <= LEASE_S * 1000
