"""Shared metadata store on Redis (>= 7.0, for EXPIRE's NX/GT flags), for several replicas.

Layout, under a configurable prefix (``codeapi`` by default):

    {p}:session:{sid}       string  JSON SessionRecord
    {p}:files:{sid}         hash    file_id -> JSON FileRecord
    {p}:entity:{eid}        zset    session ids of sessions without a user, score = created_at (µs)
    {p}:entity:{eid}:user:{uid}  zset  the same for one user's sessions of the entity
    {p}:sessions:expiry     zset    session ids, score = expires_at (µs); drives expired_sessions
    {p}:blob:{blob_key}     zset    "{sid}/{file_id}" references, score = expires_at (µs)
    {p}:lock:{sid}          string  redis-py Lock token
    {p}:state:{sid}         string  JSON StateRecord
    {p}:state_data:{sid}    string  the state bytes, when stored inline
    {p}:states:saved        zset    session ids of unarchived states, score = saved_at (µs)
    {p}:states:expiry       zset    session ids, score = expires_at (µs); drives expired_states
    {p}:runtime_sessions    hash    runtime session id -> JSON document (codeapi.workspaces)
    {p}:apikey*, {p}:usage*  managed keys and usage totals (see redis_keys.py)
    {p}:continuation:{key}  string  a paused programmatic run's state (single use: GETDEL)

State keys hold binary data, so they go through a second client that does not decode responses.

Every key carries a TTL at or beyond the latest expiry it holds, so Redis never grows without
bound even if the cleanup task never runs. Readers still filter by expires_at themselves: key TTLs
include a grace period so that small clock differences between replicas and Redis cannot hide a
record early.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import Pipeline
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from codeapi.config.groups import RedisSettings
from codeapi.errors import SessionBusy
from codeapi.storage.metadata.base import FileRecord, SessionRecord, StateRecord
from codeapi.storage.metadata.common import from_json, oldest_first, to_json, to_micros
from codeapi.storage.metadata.redis_errors import redis_boundary as _boundary
from codeapi.storage.metadata.redis_keys import RedisKeyRecords
from codeapi.storage.redis_pool import connection_pool

logger = structlog.get_logger(__name__)

RECORD_GRACE_MS = 60_000
LOCK_LEASE_S = 15.0  # a dead replica's session locks lapse within this (docs/deployment.md, faults)
RELEASE_RETRY_S = 0.2
# The expiry index must outlive its entries long enough for a cleanup pass to see them.
INDEX_GRACE_MS = 24 * 3600 * 1000
ENTITY_SCAN = 20


def _ms(moment: datetime) -> int:
    return to_micros(moment) // 1000


def _now_micros() -> int:
    return to_micros(datetime.now(UTC))


def _text(item: Any) -> str:
    return item.decode() if isinstance(item, bytes) else str(item)


async def keep_renewed(lock: Lock, lease_s: float, until: float, session_id: str) -> None:
    """Renew the lease every third of it, until the holder's bound (the lock's ``timeout_s``)."""
    while time.monotonic() + lease_s / 3 < until:
        await asyncio.sleep(lease_s / 3)
        try:
            await lock.reacquire()
        except LockError:
            logger.warning("session_lock_lost", session_id=session_id, backend="redis")
            return
        except RedisError as exc:  # Redis away for a moment: the next renewal may still be in time
            logger.warning("session_lock_renewal_failed", session_id=session_id, error=str(exc))


async def release_when_back(lock: Lock, lease_s: float, session_id: str) -> None:
    """Release a lock whose release failed (Redis away, restarting) once Redis answers again, so the
    session's next call waits for Redis, not for the rest of the lease; the lease bounds the tries."""
    give_up = time.monotonic() + lease_s
    while time.monotonic() < give_up:
        await asyncio.sleep(RELEASE_RETRY_S)
        try:
            await lock.release()
        except LockError:  # lapsed meanwhile (and maybe taken by another call): nothing to release
            return
        except RedisError:
            continue
        logger.info("session_lock_released_late", session_id=session_id)
        return


def _keep_until(pipe: Pipeline, key: str, deadline_ms: int) -> None:
    """Make ``key`` live at least until ``deadline_ms``: NX sets a first TTL, GT only extends it."""
    pipe.pexpireat(key, deadline_ms, nx=True)
    pipe.pexpireat(key, deadline_ms, gt=True)


class RedisMetadata(RedisKeyRecords):
    name = "redis"

    def __init__(self, settings: RedisSettings, prefix: str = "codeapi") -> None:
        self.prefix = prefix
        self._redis = aioredis.Redis(connection_pool=connection_pool(settings))
        self._binary = aioredis.Redis(connection_pool=connection_pool(settings, decode=False))
        self._late_releases: set[asyncio.Task[None]] = set()

    def _session_key(self, session_id: str) -> str:
        return f"{self.prefix}:session:{session_id}"

    def _files_key(self, session_id: str) -> str:
        return f"{self.prefix}:files:{session_id}"

    def _entity_key(self, entity_id: str, user_id: str | None) -> str:
        # entity ids are [A-Za-z0-9_-]+, so the user part cannot be confused with another entity's key
        owner = "" if user_id is None else f":user:{user_id}"
        return f"{self.prefix}:entity:{entity_id}{owner}"

    def _blob_key(self, blob_key: str) -> str:
        return f"{self.prefix}:blob:{blob_key}"

    @property
    def _expiry_key(self) -> str:
        return f"{self.prefix}:sessions:expiry"

    async def ping(self) -> None:
        with _boundary("ping"):
            await self._redis.ping()

    async def close(self) -> None:
        for retry in self._late_releases:
            retry.cancel()
        with _boundary("close"):
            await self._redis.aclose(close_connection_pool=True)
            await self._binary.aclose(close_connection_pool=True)

    def lock(self, session_id: str, timeout_s: float, wait_s: float) -> AbstractAsyncContextManager[None]:
        return self._lock(session_id, timeout_s, wait_s)

    @asynccontextmanager
    async def _lock(self, session_id: str, timeout_s: float, wait_s: float) -> AsyncIterator[None]:
        """Held at most ``timeout_s``, on a lease of LOCK_LEASE_S that the holder keeps renewing: the
        lock of a replica that dies mid-call lapses within the lease, not at the call's timeout."""
        lease_s = min(timeout_s, LOCK_LEASE_S)
        lock = self._redis.lock(
            f"{self.prefix}:lock:{session_id}",
            timeout=lease_s,
            blocking=True,
            blocking_timeout=wait_s,
            sleep=min(0.05, max(wait_s / 10, 0.005)),
            thread_local=False,
        )
        with _boundary("lock"):
            acquired = await lock.acquire()
        if not acquired:
            raise SessionBusy(f"Session {session_id} is busy")
        renewal = asyncio.create_task(keep_renewed(lock, lease_s, time.monotonic() + timeout_s, session_id))
        try:
            yield
        finally:
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            try:
                await lock.release()
            except LockError:
                logger.warning("session_lock_lost", session_id=session_id, backend="redis")
            except RedisError as exc:  # the work itself already finished
                logger.warning("session_lock_release_failed", session_id=session_id, error=str(exc))
                retry = asyncio.create_task(release_when_back(lock, lease_s, session_id))
                self._late_releases.add(retry)
                retry.add_done_callback(self._late_releases.discard)

    async def put_session(self, record: SessionRecord) -> None:
        expires_ms = _ms(record.expires_at)
        with _boundary("put_session"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(
                    self._session_key(record.session_id),
                    to_json(record),
                    pxat=expires_ms + RECORD_GRACE_MS,
                )
                pipe.zadd(self._expiry_key, {record.session_id: to_micros(record.expires_at)})
                _keep_until(pipe, self._expiry_key, expires_ms + INDEX_GRACE_MS)
                if record.entity_id is not None:
                    entity_key = self._entity_key(record.entity_id, record.user_id)
                    pipe.zadd(entity_key, {record.session_id: to_micros(record.created_at)})
                    _keep_until(pipe, entity_key, expires_ms + RECORD_GRACE_MS)
                await pipe.execute()

    async def _load_session(self, session_id: str) -> SessionRecord | None:
        """The stored record even if expired (delete_session still needs its entity id)."""
        raw = await self._redis.get(self._session_key(session_id))
        return from_json(SessionRecord, raw) if raw is not None else None

    async def get_session(self, session_id: str) -> SessionRecord | None:
        with _boundary("get_session"):
            record = await self._load_session(session_id)
        if record is None or to_micros(record.expires_at) <= _now_micros():
            return None
        return record

    async def delete_session(self, session_id: str) -> None:
        with _boundary("delete_session"):
            record = await self._load_session(session_id)
            files = [from_json(FileRecord, raw) for raw in await self._redis.hvals(self._files_key(session_id))]
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(self._session_key(session_id), self._files_key(session_id))
                pipe.zrem(self._expiry_key, session_id)
                self._drop_state(pipe, session_id)
                if record is not None and record.entity_id is not None:
                    pipe.zrem(self._entity_key(record.entity_id, record.user_id), session_id)
                for file in files:
                    pipe.zrem(self._blob_key(file.blob_key), f"{session_id}/{file.file_id}")
                await pipe.execute()

    async def expired_sessions(self, now: datetime, limit: int) -> list[str]:
        with _boundary("expired_sessions"):
            found = await self._redis.zrangebyscore(self._expiry_key, "-inf", to_micros(now), start=0, num=limit)
        return [str(session_id) for session_id in found]

    async def latest_session_for_entity(self, entity_id: str, user_id: str | None) -> SessionRecord | None:
        entity_key = self._entity_key(entity_id, user_id)
        with _boundary("latest_session_for_entity"):
            newest = await self._redis.zrevrange(entity_key, 0, ENTITY_SCAN - 1)
            session_ids = [str(session_id) for session_id in newest]
            if not session_ids:
                return None
            raws = await self._redis.mget([self._session_key(sid) for sid in session_ids])
            gone = [sid for sid, raw in zip(session_ids, raws, strict=True) if raw is None]
            if gone:
                await self._redis.zrem(entity_key, *gone)
        now = _now_micros()
        for raw in raws:
            if raw is None:
                continue
            record = from_json(SessionRecord, raw)
            if record.entity_id == entity_id and record.user_id == user_id and to_micros(record.expires_at) > now:
                return record
        return None

    async def put_file(self, record: FileRecord) -> None:
        files_key = self._files_key(record.session_id)
        reference = f"{record.session_id}/{record.file_id}"
        deadline_ms = _ms(record.expires_at) + RECORD_GRACE_MS
        with _boundary("put_file"):
            previous = await self._redis.hget(files_key, record.file_id)
            async with self._redis.pipeline(transaction=True) as pipe:
                if previous is not None:
                    pipe.zrem(self._blob_key(from_json(FileRecord, previous).blob_key), reference)
                pipe.hset(files_key, record.file_id, to_json(record))
                _keep_until(pipe, files_key, deadline_ms)
                blob_refs = self._blob_key(record.blob_key)
                pipe.zadd(blob_refs, {reference: to_micros(record.expires_at)})
                _keep_until(pipe, blob_refs, deadline_ms)
                await pipe.execute()

    async def get_file(self, session_id: str, file_id: str) -> FileRecord | None:
        with _boundary("get_file"):
            raw = await self._redis.hget(self._files_key(session_id), file_id)
        if raw is None:
            return None
        record = from_json(FileRecord, raw)
        return record if to_micros(record.expires_at) > _now_micros() else None

    async def _live_files(self, session_id: str) -> list[FileRecord]:
        raws = await self._redis.hvals(self._files_key(session_id))
        now = _now_micros()
        records = (from_json(FileRecord, raw) for raw in raws)
        return [record for record in records if to_micros(record.expires_at) > now]

    async def list_files(self, session_id: str) -> list[FileRecord]:
        with _boundary("list_files"):
            return oldest_first(await self._live_files(session_id))

    async def delete_file(self, session_id: str, file_id: str) -> bool:
        files_key = self._files_key(session_id)
        with _boundary("delete_file"):
            previous = await self._redis.hget(files_key, file_id)
            if previous is None:
                return False
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(files_key, file_id)
                pipe.zrem(self._blob_key(from_json(FileRecord, previous).blob_key), f"{session_id}/{file_id}")
                removed, _ = await pipe.execute()
        return bool(removed)

    async def count_files(self, session_id: str) -> int:
        with _boundary("count_files"):
            return len(await self._live_files(session_id))

    async def blob_in_use(self, blob_key: str) -> bool:
        with _boundary("blob_in_use"):
            live: int = await self._redis.zcount(self._blob_key(blob_key), f"({_now_micros()}", "+inf")
        return live > 0

    def _state_key(self, session_id: str) -> str:
        return f"{self.prefix}:state:{session_id}"

    def _state_data_key(self, session_id: str) -> str:
        return f"{self.prefix}:state_data:{session_id}"

    def _drop_state(self, pipe: Pipeline, session_id: str) -> None:
        pipe.delete(self._state_key(session_id), self._state_data_key(session_id))
        pipe.zrem(f"{self.prefix}:states:saved", session_id)
        pipe.zrem(f"{self.prefix}:states:expiry", session_id)

    async def put_state(self, record: StateRecord, inline: bytes | None) -> None:
        sid = record.session_id
        deadline_ms = _ms(record.expires_at) + RECORD_GRACE_MS
        saved_index, expiry_index = f"{self.prefix}:states:saved", f"{self.prefix}:states:expiry"
        with _boundary("put_state"):
            async with self._binary.pipeline(transaction=True) as pipe:
                pipe.set(self._state_key(sid), to_json(record), pxat=deadline_ms)
                if record.blob_key is None and inline is not None:
                    pipe.set(self._state_data_key(sid), inline, pxat=deadline_ms)
                else:
                    pipe.delete(self._state_data_key(sid))
                if record.archived:
                    pipe.zrem(saved_index, sid)
                else:
                    pipe.zadd(saved_index, {sid: to_micros(record.saved_at)})
                pipe.zadd(expiry_index, {sid: to_micros(record.expires_at)})
                for index in (saved_index, expiry_index):
                    _keep_until(pipe, index, _ms(record.expires_at) + INDEX_GRACE_MS)
                await pipe.execute()

    @staticmethod
    def _live_state(raw: bytes | str | None) -> StateRecord | None:
        if raw is None:
            return None
        record = from_json(StateRecord, raw)
        return record if to_micros(record.expires_at) > _now_micros() else None

    async def get_state(self, session_id: str) -> StateRecord | None:
        with _boundary("get_state"):
            raw = await self._binary.get(self._state_key(session_id))
        return self._live_state(raw)

    async def read_inline_state(self, session_id: str) -> bytes | None:
        with _boundary("read_inline_state"):
            raw, data = await self._binary.mget([self._state_key(session_id), self._state_data_key(session_id)])
        record = self._live_state(raw)
        if record is None or record.blob_key is not None or not isinstance(data, bytes):
            return None
        return data

    async def delete_state(self, session_id: str) -> None:
        with _boundary("delete_state"):
            async with self._binary.pipeline(transaction=True) as pipe:
                self._drop_state(pipe, session_id)
                await pipe.execute()

    async def states_to_archive(self, saved_before: datetime, limit: int) -> list[StateRecord]:
        saved_index = f"{self.prefix}:states:saved"
        with _boundary("states_to_archive"):
            found = await self._binary.zrangebyscore(saved_index, "-inf", to_micros(saved_before), start=0, num=limit)
            session_ids = [_text(item) for item in found]
            if not session_ids:
                return []
            raws = await self._binary.mget([self._state_key(sid) for sid in session_ids])
            gone = [sid for sid, raw in zip(session_ids, raws, strict=True) if raw is None]
            if gone:
                await self._binary.zrem(saved_index, *gone)
        records = [self._live_state(raw) for raw in raws]
        return [record for record in records if record is not None and not record.archived]

    async def expired_states(self, now: datetime, limit: int) -> list[str]:
        with _boundary("expired_states"):
            found = await self._binary.zrangebyscore(
                f"{self.prefix}:states:expiry", "-inf", to_micros(now), start=0, num=limit
            )
        return [_text(item) for item in found]

    def _continuation_key(self, key: str) -> str:
        return f"{self.prefix}:continuation:{key}"

    async def put_continuation(self, key: str, payload: bytes, expires_at: datetime) -> None:
        with _boundary("put_continuation"):
            await self._binary.set(self._continuation_key(key), payload, pxat=_ms(expires_at))

    async def take_continuation(self, key: str) -> bytes | None:
        with _boundary("take_continuation"):
            payload = await self._binary.getdel(self._continuation_key(key))
        return payload if isinstance(payload, bytes) else None

    @property
    def _runtime_sessions_key(self) -> str:
        return f"{self.prefix}:runtime_sessions"

    async def put_runtime_session(self, runtime_id: str, document: str) -> None:
        with _boundary("put_runtime_session"):
            await self._redis.hset(self._runtime_sessions_key, runtime_id, document)

    async def get_runtime_session(self, runtime_id: str) -> str | None:
        with _boundary("get_runtime_session"):
            document = await self._redis.hget(self._runtime_sessions_key, runtime_id)
        return None if document is None else _text(document)

    async def delete_runtime_session(self, runtime_id: str) -> None:
        with _boundary("delete_runtime_session"):
            await self._redis.hdel(self._runtime_sessions_key, runtime_id)

    async def list_runtime_sessions(self) -> list[str]:
        with _boundary("list_runtime_sessions"):
            documents = await self._redis.hvals(self._runtime_sessions_key)
        return [_text(document) for document in documents]
