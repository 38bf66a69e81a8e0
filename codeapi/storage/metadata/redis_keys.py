"""Managed API keys and hourly usage totals in the shared Redis store (mixed into RedisMetadata).

    {p}:apikeys                 set     key hashes of every managed key
    {p}:apikey:{hash}           hash    record (JSON), usage_count, last_used_at (µs)
    {p}:usage:index             zset    JSON [hour µs, caller, language], score = hour µs
    {p}:usage:{member}          hash    the counters of that hour, caller and language

Usage totals expire USAGE_RETENTION after their hour, so Redis holds a bounded history.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Protocol

import redis.asyncio as aioredis

from codeapi.storage.metadata.base import ApiKeyRecord, UsageSample, UsageTotals
from codeapi.storage.metadata.common import to_micros
from codeapi.storage.metadata.keyrows import hour_of, key_from_json, key_to_json, sample_counters, totals_from
from codeapi.storage.metadata.redis_errors import redis_boundary

USAGE_RETENTION = timedelta(days=90)
UPDATE_IF_PRESENT = """
if redis.call('HEXISTS', KEYS[1], 'record') == 0 then return 0 end
redis.call('HSET', KEYS[1], 'record', ARGV[1])
return 1
"""
# One round trip; a key revoked meanwhile is not brought back as a record-less hash.
TOUCH_IF_PRESENT = """
if redis.call('HEXISTS', KEYS[1], 'record') == 1 then
    redis.call('HINCRBY', KEYS[1], 'usage_count', 1)
    redis.call('HSET', KEYS[1], 'last_used_at', ARGV[1])
end
"""


class RedisStore(Protocol):
    prefix: str
    _redis: aioredis.Redis


class RedisKeyRecords:
    """Needs the host class's ``prefix`` and decoding ``_redis`` client; errors stop at its boundary."""

    async def put_key(self: RedisStore, record: ApiKeyRecord) -> None:
        with redis_boundary("put_key"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(f"{self.prefix}:apikey:{record.key_hash}", "record", key_to_json(record))
                pipe.sadd(f"{self.prefix}:apikeys", record.key_hash)
                await pipe.execute()

    async def update_key(self: RedisStore, record: ApiKeyRecord) -> bool:
        with redis_boundary("update_key"):
            update = self._redis.register_script(UPDATE_IF_PRESENT)
            return bool(await update(keys=[f"{self.prefix}:apikey:{record.key_hash}"], args=[key_to_json(record)]))

    async def get_key(self: RedisStore, key_hash: str) -> ApiKeyRecord | None:
        with redis_boundary("get_key"):
            return stored_key(await self._redis.hgetall(f"{self.prefix}:apikey:{key_hash}"))

    async def list_keys(self: RedisStore) -> list[ApiKeyRecord]:
        with redis_boundary("list_keys"):
            hashes = sorted(str(item) for item in await self._redis.smembers(f"{self.prefix}:apikeys"))
            async with self._redis.pipeline(transaction=False) as pipe:
                for key_hash in hashes:
                    pipe.hgetall(f"{self.prefix}:apikey:{key_hash}")
                found = await pipe.execute()
            records = [record for record in map(stored_key, found) if record is not None]
            return sorted(records, key=lambda record: (record.created_at, record.key_hash))

    async def delete_key(self: RedisStore, key_hash: str) -> bool:
        with redis_boundary("delete_key"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(f"{self.prefix}:apikey:{key_hash}")
                pipe.srem(f"{self.prefix}:apikeys", key_hash)
                removed, _ = await pipe.execute()
            return bool(removed)

    async def touch_key(self: RedisStore, key_hash: str, used_at: datetime) -> None:
        with redis_boundary("touch_key"):
            touch = self._redis.register_script(TOUCH_IF_PRESENT)
            await touch(keys=[f"{self.prefix}:apikey:{key_hash}"], args=[to_micros(used_at)])

    async def add_usage(self: RedisStore, sample: UsageSample) -> None:
        with redis_boundary("add_usage"):
            hour = hour_of(sample.at)
            member = json.dumps([hour, sample.caller, sample.language])
            name, index = f"{self.prefix}:usage:{member}", f"{self.prefix}:usage:index"
            expires_ms = (hour + to_micros_delta(USAGE_RETENTION)) // 1000
            async with self._redis.pipeline(transaction=True) as pipe:
                for counter, value in sample_counters(sample).items():
                    if isinstance(value, float):
                        pipe.hincrbyfloat(name, counter, value)
                    else:
                        pipe.hincrby(name, counter, value)
                pipe.hset(name, "last_used_at", to_micros(sample.at))  # samples arrive in order, near enough
                pipe.pexpireat(name, expires_ms)
                pipe.zadd(index, {member: hour})
                pipe.zremrangebyscore(index, "-inf", f"({hour - to_micros_delta(USAGE_RETENTION)}")
                await pipe.execute()

    async def usage_since(self: RedisStore, since: datetime) -> list[UsageTotals]:
        with redis_boundary("usage_since"):
            found_members = await self._redis.zrangebyscore(f"{self.prefix}:usage:index", hour_of(since), "+inf")
            members = [str(member) for member in found_members]
            async with self._redis.pipeline(transaction=False) as pipe:
                for member in members:
                    pipe.hgetall(f"{self.prefix}:usage:{member}")
                found = await pipe.execute()
            totals = []
            for member, values in zip(members, found, strict=True):
                if values:
                    hour, caller, language = json.loads(member)
                    totals.append(totals_from(hour, caller, language, values))
            return sorted(totals, key=lambda item: (item.hour_at, item.caller, item.language))


def stored_key(values: Mapping[Any, Any]) -> ApiKeyRecord | None:
    if "record" not in values:
        return None
    last_used = values.get("last_used_at")
    return key_from_json(values["record"], int(values.get("usage_count", 0)), int(last_used) if last_used else None)


def to_micros_delta(delta: timedelta) -> int:
    return delta // timedelta(microseconds=1)
