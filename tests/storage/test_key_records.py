"""The KeyRecords and UsageRecords contract, run on SQLite and on a real Redis."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from codeapi.storage.metadata.base import ApiKeyRecord, MetadataStore, RateLimits, UsageSample

NOW = datetime(2026, 5, 4, 10, 30, tzinfo=UTC)


def record(key_hash: str, created_at: datetime = NOW) -> ApiKeyRecord:
    return ApiKeyRecord(
        key_hash=key_hash,
        key_prefix="sk-" + key_hash[:8],
        name=f"key {key_hash}",
        created_at=created_at,
        rate_limits=RateLimits(per_minute=5, monthly=1000),
        metadata={"team": "a", "seats": 3},
    )


async def test_a_key_record_comes_back_as_it_was_put(metadata: MetadataStore) -> None:
    await metadata.put_key(record("a" * 64))
    assert await metadata.get_key("a" * 64) == record("a" * 64)
    assert await metadata.get_key("b" * 64) is None


async def test_keys_are_listed_oldest_first(metadata: MetadataStore) -> None:
    await metadata.put_key(record("b" * 64, NOW))
    await metadata.put_key(record("a" * 64, NOW + timedelta(seconds=1)))
    assert [item.key_hash for item in await metadata.list_keys()] == ["b" * 64, "a" * 64]


async def test_touching_counts_uses_and_an_edit_keeps_the_counts(metadata: MetadataStore) -> None:
    await metadata.put_key(record("a" * 64))
    await metadata.touch_key("a" * 64, NOW + timedelta(minutes=1))
    await metadata.touch_key("a" * 64, NOW + timedelta(minutes=2))
    await metadata.put_key(replace(record("a" * 64), enabled=False, name="renamed"))
    found = await metadata.get_key("a" * 64)
    assert found is not None
    assert (found.usage_count, found.last_used_at) == (2, NOW + timedelta(minutes=2))
    assert (found.enabled, found.name) == (False, "renamed")


async def test_a_deleted_key_is_gone_and_touching_or_updating_it_brings_nothing_back(metadata: MetadataStore) -> None:
    await metadata.put_key(record("a" * 64))
    assert await metadata.update_key(replace(record("a" * 64), name="renamed")) is True
    assert await metadata.delete_key("a" * 64) is True
    assert await metadata.delete_key("a" * 64) is False
    await metadata.touch_key("a" * 64, NOW)
    assert await metadata.update_key(replace(record("a" * 64), enabled=True)) is False
    assert await metadata.get_key("a" * 64) is None
    assert await metadata.list_keys() == []


async def test_usage_adds_up_per_hour_caller_and_language(metadata: MetadataStore) -> None:
    now = datetime.now(UTC)
    hour = now.replace(minute=0, second=0, microsecond=0)
    earlier = hour - timedelta(hours=2)
    for at, caller, language in [(now, "k1", "py"), (now, "k1", "py"), (now, "k1", "js"), (earlier, "k2", "py")]:
        sample = UsageSample(caller, language, at, errors=1, timeouts=0, wall_s=0.5, bytes_in=10, bytes_out=7)
        await metadata.add_usage(sample)
    totals = await metadata.usage_since(earlier)
    assert [(item.hour_at, item.caller, item.language, item.executions) for item in totals] == [
        (earlier, "k2", "py", 1),
        (hour, "k1", "js", 1),
        (hour, "k1", "py", 2),
    ]
    python = totals[-1]
    assert (python.errors, python.wall_s, python.bytes_in, python.bytes_out) == (2, 1.0, 20, 14)
    assert python.last_used_at == now.replace(microsecond=now.microsecond)
    assert [item.caller for item in await metadata.usage_since(hour)] == ["k1", "k1"]
