"""Sessions and their files: the one place that pairs metadata records with blobs."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import structlog

from codeapi.errors import FileNotFound, FileTooLarge, SessionBusy
from codeapi.observability.metrics import STORED_BYTES, STORED_FILES
from codeapi.sessions.ids import new_id
from codeapi.sessions.names import content_type_for
from codeapi.sessions.owners import owner_tenant
from codeapi.storage import keys
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.metadata.base import FileRecord, MetadataStore, SessionRecord
from codeapi.units import MB

logger = structlog.get_logger(__name__)

SWEEP_LOCK_S = 300
RENEW_EVERY = timedelta(minutes=1)  # how stale a used session's expiry may be


def utcnow() -> datetime:
    return datetime.now(UTC)


async def capped(chunks: AsyncIterable[bytes], max_bytes: int, name: str) -> AsyncIterator[bytes]:
    """Pass chunks through, failing as soon as the running total exceeds ``max_bytes``."""
    total = 0
    async for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise FileTooLarge(f"File {name} exceeds the maximum size of {max_bytes // MB} MB", field="file")
        yield chunk


class SessionService:
    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        ttl: timedelta,
        max_file_bytes: int,
        max_files_per_session: int,
    ) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.ttl = ttl
        self.max_file_bytes = max_file_bytes
        self.max_files_per_session = max_files_per_session

    async def create(self, user_id: str | None = None, entity_id: str | None = None) -> SessionRecord:
        now = utcnow()
        record = SessionRecord(new_id(), now, now + self.ttl, user_id=user_id, entity_id=entity_id)
        await self.metadata.put_session(record)
        return record

    async def get(self, session_id: str) -> SessionRecord | None:
        return await self.metadata.get_session(session_id)

    async def touch(self, session: SessionRecord) -> SessionRecord:
        """A used session lives another full TTL: renewed at most once per RENEW_EVERY (or 1 % of the
        TTL, if shorter), so a conversation's turns do not each write it again."""
        now = utcnow()
        if session.expires_at >= now + self.ttl - min(self.ttl / 100, RENEW_EVERY):
            return session
        renewed = SessionRecord(
            session.session_id, session.created_at, now + self.ttl, session.user_id, session.entity_id
        )
        await self.metadata.put_session(renewed)
        return renewed

    async def keep_in_use(self, session: SessionRecord, records: Iterable[FileRecord]) -> None:
        """Files a run stages live another full TTL, and so do the sessions that hold them (an upload
        referenced from another session's run): a file in use does not expire a fixed time after
        it was stored. Renewed once half the TTL has passed, so most runs write nothing."""
        now = utcnow()
        renew_before = now + self.ttl / 2
        owners: set[str] = set()
        for record in records:
            if record.expires_at >= renew_before:
                continue
            await self.metadata.put_file(replace(record, expires_at=now + self.ttl))
            if record.session_id != session.session_id:
                owners.add(record.session_id)
        for owner_id in owners:
            owner = await self.get(owner_id)
            if owner is not None and owner.expires_at < renew_before:
                await self.touch(owner)

    async def latest_for_entity(self, entity_id: str, user_id: str | None) -> SessionRecord | None:
        return await self.metadata.latest_session_for_entity(entity_id, user_id)

    async def room_left(self, session_id: str) -> int:
        """How many more files the session may hold (MAX_FILES_PER_SESSION)."""
        return max(self.max_files_per_session - await self.metadata.count_files(session_id), 0)

    async def add_file(
        self,
        session_id: str,
        name: str,
        chunks: AsyncIterable[bytes],
        origin: str = "upload",
        read_only: bool = False,
    ) -> FileRecord:
        """Store a new file; the size cap is enforced while streaming, before anything is visible."""
        file_id = new_id()
        key = keys.file_key(session_id, file_id)
        size = await self.blobs.put(key, capped(chunks, self.max_file_bytes, name))
        now = utcnow()
        record = FileRecord(
            session_id, file_id, name, size, content_type_for(name), now, now + self.ttl, key, read_only=read_only
        )
        await self.metadata.put_file(record)
        STORED_FILES.labels(origin).inc()
        STORED_BYTES.labels(origin).inc(size)
        return record

    async def get_file(self, session_id: str, file_id: str) -> FileRecord:
        record = await self.metadata.get_file(session_id, file_id)
        if record is None:
            raise FileNotFound()
        return record

    async def find_file(self, session_id: str, file_id: str) -> FileRecord | None:
        return await self.metadata.get_file(session_id, file_id)

    async def list_files(self, session_id: str) -> list[FileRecord]:
        return await self.metadata.list_files(session_id)

    async def reachable_from(self, session_id: str, tenant_id: str | None) -> bool:
        """Whether a caller reaches the session's files by id: a token's caller (``tenant_id``) never
        reaches a session that a user of another tenant owns; other callers hold no tenant."""
        if tenant_id is None:
            return True
        session = await self.metadata.get_session(session_id)
        owner = owner_tenant(session.user_id) if session is not None else None
        return owner is None or owner == tenant_id

    def read(self, record: FileRecord) -> AsyncIterator[bytes]:
        return self.blobs.read(record.blob_key)

    async def delete_file(self, session_id: str, file_id: str) -> None:
        record = await self.get_file(session_id, file_id)
        await self.metadata.delete_file(session_id, file_id)
        if not await self.metadata.blob_in_use(record.blob_key):
            await self.blobs.delete(record.blob_key)

    async def expire(self, now: datetime, batch: int = 100) -> int:
        """Delete expired sessions with their blobs; returns how many sessions were removed.

        A session that an execution holds right now is skipped (its lock is taken without
        waiting) and comes up again in the next sweep, so a sweep never pulls files from
        under a running execution.
        """
        removed = 0
        skipped: set[str] = set()
        while session_ids := [sid for sid in await self.metadata.expired_sessions(now, batch) if sid not in skipped]:
            for session_id in session_ids:
                try:
                    async with self.metadata.lock(session_id, timeout_s=SWEEP_LOCK_S, wait_s=0):
                        await self.metadata.delete_session(session_id)
                        await self.blobs.delete_prefix(keys.session_prefix(session_id))
                except SessionBusy:
                    skipped.add(session_id)
                    continue
                removed += 1
            if len(session_ids) < batch:
                break
        return removed

    async def reap_orphans(self) -> int:
        """Delete blobs of sessions that have no metadata (a crash between the two deletes, or
        metadata lost with a non-persistent Redis). Sessions are created before their first blob
        is written, so a blob without a session is never one that is still being uploaded."""
        orphans: set[str] = set()
        checked: dict[str, bool] = {}
        async for key in self.blobs.list_keys(keys.SESSIONS_PREFIX):
            session_id = keys.session_of(key)
            if session_id is None or session_id in checked:
                continue
            checked[session_id] = await self.metadata.get_session(session_id) is not None
            if not checked[session_id]:
                orphans.add(session_id)
        for session_id in orphans:
            await self.blobs.delete_prefix(keys.session_prefix(session_id))
        return len(orphans)
