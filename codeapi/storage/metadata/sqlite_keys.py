"""Managed API keys and hourly usage totals in the embedded SQLite store (mixed into SqliteMetadata)."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import datetime
from typing import Any, Protocol

import aiosqlite

from codeapi.storage.metadata.base import ApiKeyRecord, UsageSample, UsageTotals
from codeapi.storage.metadata.common import to_micros
from codeapi.storage.metadata.keyrows import (
    USAGE_COUNTERS,
    hour_of,
    key_from_json,
    key_to_json,
    sample_counters,
    totals_from,
)
from codeapi.storage.metadata.sqlite_errors import sqlite_boundary

KEY_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS api_keys (
    key_hash TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    usage_count INTEGER NOT NULL DEFAULT 0,
    last_used_at INTEGER
);
CREATE TABLE IF NOT EXISTS usage (
    hour_at INTEGER NOT NULL,
    caller TEXT NOT NULL,
    language TEXT NOT NULL,
    {", ".join(f"{name} {'REAL' if name == 'wall_s' else 'INTEGER'} NOT NULL DEFAULT 0" for name in USAGE_COUNTERS)},
    last_used_at INTEGER NOT NULL,
    PRIMARY KEY (hour_at, caller, language)
);
"""

ADD_USAGE = (
    f"INSERT INTO usage (hour_at, caller, language, {', '.join(USAGE_COUNTERS)}, last_used_at)"
    f" VALUES (?, ?, ?, {', '.join('?' for _ in USAGE_COUNTERS)}, ?)"
    " ON CONFLICT (hour_at, caller, language) DO UPDATE SET "
    + ", ".join(f"{name} = {name} + excluded.{name}" for name in USAGE_COUNTERS)
    + ", last_used_at = MAX(last_used_at, excluded.last_used_at)"
)


class SqliteStore(Protocol):
    @property
    def db(self) -> aiosqlite.Connection: ...

    def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> Awaitable[int]: ...


class SqliteKeyRecords:
    """Needs the host class's ``db`` connection and its serialised ``_write``; errors stop at its boundary."""

    async def put_key(self: SqliteStore, record: ApiKeyRecord) -> None:
        with sqlite_boundary("put_key"):
            await self._write(
                (
                    "INSERT INTO api_keys (key_hash, record, created_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (key_hash) DO UPDATE SET record = excluded.record",
                    (record.key_hash, key_to_json(record), to_micros(record.created_at)),
                )
            )

    async def update_key(self: SqliteStore, record: ApiKeyRecord) -> bool:
        with sqlite_boundary("update_key"):
            changed = await self._write(
                ("UPDATE api_keys SET record = ? WHERE key_hash = ?", (key_to_json(record), record.key_hash))
            )
            return changed > 0

    async def get_key(self: SqliteStore, key_hash: str) -> ApiKeyRecord | None:
        with sqlite_boundary("get_key"):
            async with self.db.execute(
                "SELECT record, usage_count, last_used_at FROM api_keys WHERE key_hash = ?", (key_hash,)
            ) as cursor:
                row = await cursor.fetchone()
            return key_from_json(row["record"], row["usage_count"], row["last_used_at"]) if row is not None else None

    async def list_keys(self: SqliteStore) -> list[ApiKeyRecord]:
        with sqlite_boundary("list_keys"):
            async with self.db.execute(
                "SELECT record, usage_count, last_used_at FROM api_keys ORDER BY created_at, key_hash"
            ) as cursor:
                rows = await cursor.fetchall()
            return [key_from_json(row["record"], row["usage_count"], row["last_used_at"]) for row in rows]

    async def delete_key(self: SqliteStore, key_hash: str) -> bool:
        with sqlite_boundary("delete_key"):
            return await self._write(("DELETE FROM api_keys WHERE key_hash = ?", (key_hash,))) > 0

    async def touch_key(self: SqliteStore, key_hash: str, used_at: datetime) -> None:
        with sqlite_boundary("touch_key"):
            await self._write(
                (
                    "UPDATE api_keys SET usage_count = usage_count + 1,"
                    " last_used_at = MAX(COALESCE(last_used_at, 0), ?) WHERE key_hash = ?",
                    (to_micros(used_at), key_hash),
                )
            )

    async def add_usage(self: SqliteStore, sample: UsageSample) -> None:
        with sqlite_boundary("add_usage"):
            counters = tuple(sample_counters(sample).values())
            params = (hour_of(sample.at), sample.caller, sample.language, *counters, to_micros(sample.at))
            await self._write((ADD_USAGE, params))

    async def usage_since(self: SqliteStore, since: datetime) -> list[UsageTotals]:
        with sqlite_boundary("usage_since"):
            async with self.db.execute(
                f"SELECT hour_at, caller, language, {', '.join(USAGE_COUNTERS)}, last_used_at FROM usage"
                " WHERE hour_at >= ? ORDER BY hour_at, caller, language",
                (hour_of(since),),
            ) as cursor:
                rows = await cursor.fetchall()
            return [totals_from(row["hour_at"], row["caller"], row["language"], dict(row)) for row in rows]
