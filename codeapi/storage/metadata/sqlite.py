"""Embedded metadata store: one SQLite file in WAL mode, for a single replica.

Times are stored as integer microseconds since the epoch (UTC) so comparisons are exact and
indexable; records come back with tz-aware UTC datetimes.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import AbstractAsyncContextManager
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite
import structlog

from codeapi.errors import BackendUnavailable
from codeapi.storage.metadata.base import FileRecord, SessionRecord, StateRecord
from codeapi.storage.metadata.common import columns, from_row, oldest_first, to_micros, to_row
from codeapi.storage.metadata.locks import LocalSessionLocks
from codeapi.storage.metadata.sqlite_errors import sqlite_boundary as _boundary
from codeapi.storage.metadata.sqlite_keys import KEY_SCHEMA, SqliteKeyRecords

logger = structlog.get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_id TEXT,
    entity_id TEXT
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at);
CREATE INDEX IF NOT EXISTS sessions_entity ON sessions (entity_id, created_at);
CREATE TABLE IF NOT EXISTS files (
    session_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    name TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    blob_key TEXT NOT NULL,
    read_only INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (session_id, file_id)
);
CREATE INDEX IF NOT EXISTS files_blob ON files (blob_key, expires_at);
CREATE TABLE IF NOT EXISTS states (
    session_id TEXT PRIMARY KEY,
    revision TEXT NOT NULL,
    size_bytes INTEGER NOT NULL,
    saved_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    blob_key TEXT,
    archived INTEGER NOT NULL,
    data BLOB
);
CREATE INDEX IF NOT EXISTS states_saved ON states (archived, saved_at);
CREATE INDEX IF NOT EXISTS states_expiry ON states (expires_at);
CREATE TABLE IF NOT EXISTS continuations (
    key TEXT PRIMARY KEY,
    payload BLOB NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS runtime_sessions (
    runtime_id TEXT PRIMARY KEY,
    document TEXT NOT NULL
);
"""

# Columns added after the first release, as ALTER TABLE declares them for an older database.
ADDED_COLUMNS = {"files": {"read_only": "INTEGER NOT NULL DEFAULT 0"}}
SESSION_COLUMNS = columns(SessionRecord)
FILE_COLUMNS = columns(FileRecord)
STATE_COLUMNS = columns(StateRecord)


def _slots(kind: type[SessionRecord | FileRecord | StateRecord]) -> str:
    return ", ".join("?" for _ in fields(kind))


def _now() -> int:
    return to_micros(datetime.now(UTC))


def _make_private(path: Path) -> None:
    """The database holds every user's file names: owner-only (SQLite gives -wal/-shm the same mode)."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600))
    path.chmod(0o600)


class SqliteMetadata(SqliteKeyRecords):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None
        self._locks = LocalSessionLocks()
        # One connection is shared by all tasks: a write and its commit must not interleave with
        # another task's, or one task would commit the other's half-done transaction.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteMetadata:
        store = cls(path)
        await store.connect()
        return store

    async def connect(self) -> None:
        if self._db is not None:
            return
        with _boundary("connect"):
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            _make_private(self.path)
            db = await aiosqlite.connect(self.path)
            try:
                await self._prepare(db)
            except sqlite3.Error:
                # aiosqlite runs a non-daemon thread per connection: left open, it blocks exit.
                await db.close()
                raise
            self._db = db

    @staticmethod
    async def _prepare(db: aiosqlite.Connection) -> None:
        db.row_factory = sqlite3.Row
        await db.execute("PRAGMA journal_mode=WAL")
        # WAL makes NORMAL durable across application crashes; only a power loss can drop
        # the last transactions, which for expiring session metadata is acceptable.
        await db.execute("PRAGMA synchronous=NORMAL")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA + KEY_SCHEMA)
        await SqliteMetadata._add_missing_columns(db)
        await db.commit()

    @staticmethod
    async def _add_missing_columns(db: aiosqlite.Connection) -> None:
        """A database made by an earlier version gets the columns added since (with their defaults)."""
        async with db.execute("PRAGMA table_info(files)") as cursor:
            present = {row["name"] for row in await cursor.fetchall()}
        for name, declaration in ADDED_COLUMNS["files"].items():
            if name not in present:
                await db.execute(f"ALTER TABLE files ADD COLUMN {name} {declaration}")

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise BackendUnavailable("sqlite unavailable: store is not connected")
        return self._db

    async def _write(self, *statements: tuple[str, tuple[Any, ...]]) -> int:
        """Run the statements as one transaction; returns the last statement's row count."""
        async with self._write_lock:
            try:
                rowcount = 0
                for sql, params in statements:
                    cursor = await self.db.execute(sql, params)
                    rowcount = cursor.rowcount
                await self.db.commit()
            except sqlite3.Error:
                await self.db.rollback()
                raise
        return rowcount

    def lock(self, session_id: str, timeout_s: float, wait_s: float) -> AbstractAsyncContextManager[None]:
        return self._locks.lock(session_id, timeout_s, wait_s)

    async def ping(self) -> None:
        with _boundary("ping"):
            await self.db.execute("SELECT 1")

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            with _boundary("close"):
                await db.close()

    async def put_session(self, record: SessionRecord) -> None:
        with _boundary("put_session"):
            await self._write(
                (
                    f"INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES ({_slots(SessionRecord)})",
                    tuple(to_row(record).values()),
                )
            )

    async def get_session(self, session_id: str) -> SessionRecord | None:
        with _boundary("get_session"):
            async with self.db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ? AND expires_at > ?",
                (session_id, _now()),
            ) as cursor:
                row = await cursor.fetchone()
        return from_row(SessionRecord, row) if row is not None else None

    async def delete_session(self, session_id: str) -> None:
        with _boundary("delete_session"):
            await self._write(
                ("DELETE FROM files WHERE session_id = ?", (session_id,)),
                ("DELETE FROM states WHERE session_id = ?", (session_id,)),
                ("DELETE FROM sessions WHERE session_id = ?", (session_id,)),
            )

    async def expired_sessions(self, now: datetime, limit: int) -> list[str]:
        with _boundary("expired_sessions"):
            async with self.db.execute(
                "SELECT session_id FROM sessions WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
                (to_micros(now), limit),
            ) as cursor:
                rows = await cursor.fetchall()
        return [row["session_id"] for row in rows]

    async def latest_session_for_entity(self, entity_id: str, user_id: str | None) -> SessionRecord | None:
        with _boundary("latest_session_for_entity"):
            async with self.db.execute(
                f"SELECT {SESSION_COLUMNS} FROM sessions WHERE entity_id = ? AND user_id IS ? AND expires_at > ?"
                " ORDER BY created_at DESC, session_id DESC LIMIT 1",
                (entity_id, user_id, _now()),
            ) as cursor:
                row = await cursor.fetchone()
        return from_row(SessionRecord, row) if row is not None else None

    async def put_file(self, record: FileRecord) -> None:
        with _boundary("put_file"):
            await self._write(
                (
                    f"INSERT OR REPLACE INTO files ({FILE_COLUMNS}) VALUES ({_slots(FileRecord)})",
                    tuple(to_row(record).values()),
                )
            )

    async def get_file(self, session_id: str, file_id: str) -> FileRecord | None:
        with _boundary("get_file"):
            async with self.db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE session_id = ? AND file_id = ? AND expires_at > ?",
                (session_id, file_id, _now()),
            ) as cursor:
                row = await cursor.fetchone()
        return from_row(FileRecord, row) if row is not None else None

    async def list_files(self, session_id: str) -> list[FileRecord]:
        with _boundary("list_files"):
            async with self.db.execute(
                f"SELECT {FILE_COLUMNS} FROM files WHERE session_id = ? AND expires_at > ?",
                (session_id, _now()),
            ) as cursor:
                rows = await cursor.fetchall()
        return oldest_first([from_row(FileRecord, row) for row in rows])

    async def delete_file(self, session_id: str, file_id: str) -> bool:
        with _boundary("delete_file"):
            removed = await self._write(
                ("DELETE FROM files WHERE session_id = ? AND file_id = ?", (session_id, file_id))
            )
        return removed > 0

    async def count_files(self, session_id: str) -> int:
        with _boundary("count_files"):
            async with self.db.execute(
                "SELECT COUNT(*) FROM files WHERE session_id = ? AND expires_at > ?", (session_id, _now())
            ) as cursor:
                row = await cursor.fetchone()
        return int(row[0]) if row is not None else 0

    async def blob_in_use(self, blob_key: str) -> bool:
        with _boundary("blob_in_use"):
            async with self.db.execute(
                "SELECT 1 FROM files WHERE blob_key = ? AND expires_at > ? LIMIT 1", (blob_key, _now())
            ) as cursor:
                row = await cursor.fetchone()
        return row is not None

    async def put_state(self, record: StateRecord, inline: bytes | None) -> None:
        with _boundary("put_state"):
            await self._write(
                (
                    f"INSERT OR REPLACE INTO states ({STATE_COLUMNS}, data) VALUES ({_slots(StateRecord)}, ?)",
                    (*to_row(record).values(), inline if record.blob_key is None else None),
                )
            )

    async def get_state(self, session_id: str) -> StateRecord | None:
        with _boundary("get_state"):
            async with self.db.execute(
                f"SELECT {STATE_COLUMNS} FROM states WHERE session_id = ? AND expires_at > ?", (session_id, _now())
            ) as cursor:
                row = await cursor.fetchone()
        return from_row(StateRecord, row) if row is not None else None

    async def read_inline_state(self, session_id: str) -> bytes | None:
        with _boundary("read_inline_state"):
            async with self.db.execute(
                "SELECT data FROM states WHERE session_id = ? AND expires_at > ?", (session_id, _now())
            ) as cursor:
                row = await cursor.fetchone()
        return bytes(row["data"]) if row is not None and row["data"] is not None else None

    async def delete_state(self, session_id: str) -> None:
        with _boundary("delete_state"):
            await self._write(("DELETE FROM states WHERE session_id = ?", (session_id,)))

    async def states_to_archive(self, saved_before: datetime, limit: int) -> list[StateRecord]:
        with _boundary("states_to_archive"):
            async with self.db.execute(
                f"SELECT {STATE_COLUMNS} FROM states WHERE archived = 0 AND saved_at <= ? AND expires_at > ?"
                " ORDER BY saved_at LIMIT ?",
                (to_micros(saved_before), _now(), limit),
            ) as cursor:
                rows = await cursor.fetchall()
        return [from_row(StateRecord, row) for row in rows]

    async def expired_states(self, now: datetime, limit: int) -> list[str]:
        with _boundary("expired_states"):
            async with self.db.execute(
                "SELECT session_id FROM states WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
                (to_micros(now), limit),
            ) as cursor:
                rows = await cursor.fetchall()
        return [row["session_id"] for row in rows]

    async def put_continuation(self, key: str, payload: bytes, expires_at: datetime) -> None:
        with _boundary("put_continuation"):
            await self._write(
                ("DELETE FROM continuations WHERE expires_at <= ?", (_now(),)),
                ("INSERT OR REPLACE INTO continuations VALUES (?, ?, ?)", (key, payload, to_micros(expires_at))),
            )

    async def take_continuation(self, key: str) -> bytes | None:
        with _boundary("take_continuation"):
            async with self._write_lock:
                try:
                    cursor = await self.db.execute(
                        "DELETE FROM continuations WHERE key = ? RETURNING payload, expires_at", (key,)
                    )
                    row = await cursor.fetchone()
                    await cursor.close()
                    await self.db.commit()
                except sqlite3.Error:
                    await self.db.rollback()
                    raise
        if row is None or row["expires_at"] <= _now():
            return None
        payload: bytes = row["payload"]
        return payload

    async def put_runtime_session(self, runtime_id: str, document: str) -> None:
        with _boundary("put_runtime_session"):
            await self._write(("INSERT OR REPLACE INTO runtime_sessions VALUES (?, ?)", (runtime_id, document)))

    async def get_runtime_session(self, runtime_id: str) -> str | None:
        with _boundary("get_runtime_session"):
            async with self.db.execute(
                "SELECT document FROM runtime_sessions WHERE runtime_id = ?", (runtime_id,)
            ) as cursor:
                row = await cursor.fetchone()
        return None if row is None else str(row["document"])

    async def delete_runtime_session(self, runtime_id: str) -> None:
        with _boundary("delete_runtime_session"):
            await self._write(("DELETE FROM runtime_sessions WHERE runtime_id = ?", (runtime_id,)))

    async def list_runtime_sessions(self) -> list[str]:
        with _boundary("list_runtime_sessions"):
            async with self.db.execute("SELECT document FROM runtime_sessions") as cursor:
                rows = await cursor.fetchall()
        return [str(row["document"]) for row in rows]
