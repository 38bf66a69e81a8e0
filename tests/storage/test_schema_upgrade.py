"""Records stored by an earlier version (before FileRecord.read_only) are read as they were."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import redis.asyncio as aioredis

from codeapi.config.groups import RedisSettings
from codeapi.storage.metadata.common import to_row
from codeapi.storage.metadata.redis import RedisMetadata
from codeapi.storage.metadata.sqlite import SqliteMetadata
from tests.storage.test_metadata_contract import file, session

OLD_FILES_TABLE = """
CREATE TABLE files (
    session_id TEXT NOT NULL, file_id TEXT NOT NULL, name TEXT NOT NULL, size_bytes INTEGER NOT NULL,
    content_type TEXT NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL,
    blob_key TEXT NOT NULL, PRIMARY KEY (session_id, file_id)
);
"""


async def test_an_older_sqlite_database_gains_the_column_and_keeps_its_rows(tmp_path: Path) -> None:
    owner = session()
    old = file(owner.session_id)
    row = {name: value for name, value in to_row(old).items() if name != "read_only"}
    with sqlite3.connect(tmp_path / "codeapi.db") as db:
        db.executescript(OLD_FILES_TABLE)
        db.execute(f"INSERT INTO files ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})", tuple(row.values()))
    store = await SqliteMetadata.open(tmp_path / "codeapi.db")
    try:
        await store.put_session(owner)
        assert await store.get_file(owner.session_id, old.file_id) == old  # read_only defaults to False
        newer = file(owner.session_id)
        await store.put_file(newer)
        assert [item.file_id for item in await store.list_files(owner.session_id)] == [old.file_id, newer.file_id]
    finally:
        await store.close()


async def test_an_older_redis_record_reads_with_the_default(shared_redis: RedisSettings) -> None:
    prefix = f"codeapi-test-{uuid.uuid4().hex[:8]}"
    store = RedisMetadata(shared_redis, prefix=prefix)
    client = aioredis.Redis(host=shared_redis.host, port=shared_redis.port, db=shared_redis.db)
    try:
        owner = session()
        await store.put_session(owner)
        old = file(owner.session_id)
        await store.put_file(old)
        key = store._files_key(owner.session_id)
        stored = json.loads(await client.hget(key, old.file_id))
        del stored["read_only"]
        await client.hset(key, old.file_id, json.dumps(stored))
        assert await store.get_file(owner.session_id, old.file_id) == old
    finally:
        await store.delete_session(owner.session_id)
        await store.close()
        await client.aclose()
