"""Saved Python state per session: hot in the metadata store when small, in the blob store when large
or archived. The bytes are opaque here (a compressed pickle made inside the sandbox); nothing on
the API side ever decompresses or unpickles them.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog

from codeapi.errors import FileNotFound
from codeapi.observability.metrics import STATE_BYTES
from codeapi.storage import keys
from codeapi.storage.blobs.base import BlobStore
from codeapi.storage.metadata.base import MetadataStore, StateRecord

logger = structlog.get_logger(__name__)


def state_key(session_id: str) -> str:
    """Beneath the session's prefix, so the session's expiry deletes it with the session's files."""
    return f"{keys.session_prefix(session_id)}state"


@dataclass(frozen=True)
class StatePolicy:
    ttl: timedelta  # STATE_TTL_SECONDS: how long a saved state stays hot
    max_inline_raw_bytes: int  # STATE_MAX_REDIS_SIZE_MB: larger (uncompressed) states go to the blob store
    archive_after: timedelta  # STATE_ARCHIVE_AFTER_SECONDS
    archive_ttl: timedelta  # STATE_ARCHIVE_TTL_DAYS
    archive_enabled: bool


@dataclass(frozen=True)
class SavedState:
    revision: str
    data: bytes


async def single_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


class StateStore:
    def __init__(self, metadata: MetadataStore, blobs: BlobStore, policy: StatePolicy) -> None:
        self.metadata = metadata
        self.blobs = blobs
        self.policy = policy

    async def current(self, session_id: str) -> StateRecord | None:
        return await self.metadata.get_state(session_id)

    async def load(self, record: StateRecord) -> SavedState | None:
        if record.blob_key is None:
            data = await self.metadata.read_inline_state(record.session_id)
        else:
            data = await self.read_blob(record.blob_key)
        if data is None:
            logger.warning("state.bytes_missing", session_id=record.session_id, archived=record.archived)
            return None
        logger.debug("state.loaded", size_bytes=len(data), archived=record.archived)
        return SavedState(record.revision, data)

    async def read_blob(self, key: str) -> bytes | None:
        try:
            return b"".join([chunk async for chunk in self.blobs.read(key)])
        except FileNotFound:
            return None

    async def save(self, session_id: str, data: bytes, raw_bytes: int, previous: StateRecord | None) -> str:
        """Store a new state in place of ``previous``; returns its revision. A state too large for the
        metadata store (by its uncompressed size, as the guide defines STATE_MAX_REDIS_SIZE_MB) goes
        to the blob store."""
        now = datetime.now(UTC)
        revision = secrets.token_urlsafe(12)
        blob_key = None
        if raw_bytes > self.policy.max_inline_raw_bytes:
            blob_key = state_key(session_id)
            await self.blobs.put(blob_key, single_chunk(data))
        record = StateRecord(session_id, revision, len(data), now, now + self.policy.ttl, blob_key)
        await self.metadata.put_state(record, data if blob_key is None else None)
        if previous is not None and previous.blob_key is not None and blob_key is None:
            await self.blobs.delete(previous.blob_key)
        STATE_BYTES.observe(len(data))
        logger.debug("state.saved", size_bytes=len(data), raw_bytes=raw_bytes, inline=blob_key is None)
        return revision

    async def forget(self, session_id: str) -> None:
        record = await self.metadata.get_state(session_id)
        await self.metadata.delete_state(session_id)
        if record is not None and record.blob_key is not None:
            await self.blobs.delete(record.blob_key)

    async def archive(self, record: StateRecord) -> None:
        """Move an inactive state to the blob store; it is restored from there transparently."""
        blob_key = record.blob_key
        if blob_key is None:
            data = await self.metadata.read_inline_state(record.session_id)
            if data is None:
                return
            blob_key = state_key(record.session_id)
            await self.blobs.put(blob_key, single_chunk(data))
        archived = StateRecord(
            record.session_id,
            record.revision,
            record.size_bytes,
            record.saved_at,
            datetime.now(UTC) + self.policy.archive_ttl,
            blob_key,
            archived=True,
        )
        await self.metadata.put_state(archived, None)
        logger.debug("state.archived", session_id=record.session_id, size_bytes=record.size_bytes)

    async def drop_expired(self, session_id: str) -> None:
        """An expired state's record and blob (after an archive's TTL, or a hot state's without archival)."""
        await self.metadata.delete_state(session_id)
        await self.blobs.delete(state_key(session_id))
