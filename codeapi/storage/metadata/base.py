"""Metadata records and the small protocols each backend implements (SQLite embedded, Redis shared)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol


@dataclass(frozen=True)
class SessionRecord:
    session_id: str
    created_at: datetime  # UTC
    expires_at: datetime  # UTC
    user_id: str | None = None
    entity_id: str | None = None


@dataclass(frozen=True)
class FileRecord:
    """A file of a session. ``blob_key`` may point at another session's blob (an input linked in)."""

    session_id: str
    file_id: str
    name: str  # path under /mnt/data, may contain sub-directories
    size_bytes: int
    content_type: str
    created_at: datetime  # UTC; LibreChat's lastModified
    expires_at: datetime  # UTC
    blob_key: str
    read_only: bool = False  # a skill file (batch upload with read_only=true): runs cannot change it


class SessionRecords(Protocol):
    async def put_session(self, record: SessionRecord) -> None: ...

    async def get_session(self, session_id: str) -> SessionRecord | None:
        """None when unknown or expired."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Deletes the session, all its file records and its state record."""
        ...

    async def expired_sessions(self, now: datetime, limit: int) -> list[str]: ...

    async def latest_session_for_entity(self, entity_id: str, user_id: str | None) -> SessionRecord | None:
        """The newest unexpired session of the entity owned by ``user_id`` (None: sessions without a user)."""
        ...


class FileRecords(Protocol):
    async def put_file(self, record: FileRecord) -> None: ...

    async def get_file(self, session_id: str, file_id: str) -> FileRecord | None:
        """None when unknown or expired."""
        ...

    async def list_files(self, session_id: str) -> list[FileRecord]:
        """Unexpired files of the session, oldest first."""
        ...

    async def delete_file(self, session_id: str, file_id: str) -> bool:
        """True when a record was removed."""
        ...

    async def count_files(self, session_id: str) -> int: ...

    async def blob_in_use(self, blob_key: str) -> bool:
        """True while any unexpired record references the blob (a linked input keeps it alive)."""
        ...


@dataclass(frozen=True)
class StateRecord:
    """Where a session's saved Python state is. The bytes are opaque to the API (compressed pickle
    made inside the sandbox): inline in this store when small, else in the blob store."""

    session_id: str
    revision: str  # changes with every save; a kept interpreter is reused only at its revision
    size_bytes: int
    saved_at: datetime  # UTC; the last activity, which archival measures inactivity from
    expires_at: datetime  # UTC
    blob_key: str | None = None  # None: the bytes are stored inline, next to this record
    archived: bool = False


class StateIndex(Protocol):
    async def put_state(self, record: StateRecord, inline: bytes | None) -> None:
        """Replace the session's state record; ``inline`` holds the bytes when ``blob_key`` is None."""
        ...

    async def get_state(self, session_id: str) -> StateRecord | None:
        """None when unknown or expired."""
        ...

    async def read_inline_state(self, session_id: str) -> bytes | None:
        """The inline bytes of an unexpired record, None when there are none."""
        ...

    async def delete_state(self, session_id: str) -> None: ...

    async def states_to_archive(self, saved_before: datetime, limit: int) -> list[StateRecord]:
        """Unexpired, unarchived records saved at or before ``saved_before``."""
        ...

    async def expired_states(self, now: datetime, limit: int) -> list[str]:
        """Session ids whose state expired at ``now`` and is still indexed (a blob may need deleting)."""
        ...


class SessionLocks(Protocol):
    def lock(self, session_id: str, timeout_s: float, wait_s: float) -> AbstractAsyncContextManager[None]:
        """Hold the session exclusively; raises SessionBusy after ``wait_s`` without the lock.

        The lock lapses by itself ``timeout_s`` after it was taken, so a crashed holder cannot
        block the session for longer than that.
        """
        ...


@dataclass(frozen=True)
class RateLimits:
    """Requests a managed key may make per window; None: no limit on that window."""

    per_second: int | None = None
    per_minute: int | None = None
    hourly: int | None = None
    daily: int | None = None
    monthly: int | None = None


@dataclass(frozen=True)
class ApiKeyRecord:
    """A managed API key. Only the key's SHA-256 is stored; the prefix is what a person recognises it by."""

    key_hash: str
    key_prefix: str
    name: str
    created_at: datetime  # UTC
    enabled: bool = True
    rate_limits: RateLimits = RateLimits()
    metadata: dict[str, Any] = field(default_factory=dict)
    last_used_at: datetime | None = None  # UTC
    usage_count: int = 0
    source: str = "managed"  # "environment" for API_KEY / API_KEYS, which are listed read-only


class KeyRecords(Protocol):
    async def put_key(self, record: ApiKeyRecord) -> None:
        """Create or replace the record's name, flag, limits and metadata (its use counters are kept)."""
        ...

    async def update_key(self, record: ApiKeyRecord) -> bool:
        """Like put_key, for a key that exists: False (and nothing written) once it has been revoked."""
        ...

    async def get_key(self, key_hash: str) -> ApiKeyRecord | None: ...

    async def list_keys(self) -> list[ApiKeyRecord]:
        """Every managed key, oldest first."""
        ...

    async def delete_key(self, key_hash: str) -> bool:
        """True when a record was removed."""
        ...

    async def touch_key(self, key_hash: str, used_at: datetime) -> None:
        """Count one authenticated request and remember when it came."""
        ...


@dataclass(frozen=True)
class UsageSample:
    """What one execution cost, attributed to a caller (a key hash, env key, JWT user or anonymous)."""

    caller: str
    language: str
    at: datetime  # UTC
    executions: int = 1
    errors: int = 0
    timeouts: int = 0
    wall_s: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0


@dataclass(frozen=True)
class UsageTotals:
    """The sum of the samples of one caller and language within one hour."""

    hour_at: datetime  # UTC, the start of the hour
    caller: str
    language: str
    executions: int
    errors: int
    timeouts: int
    wall_s: float
    bytes_in: int
    bytes_out: int
    last_used_at: datetime  # UTC


class UsageRecords(Protocol):
    async def add_usage(self, sample: UsageSample) -> None: ...

    async def usage_since(self, since: datetime) -> list[UsageTotals]:
        """Hourly totals from the hour containing ``since`` on, oldest first."""
        ...


class Continuations(Protocol):
    """Opaque, expiring, single-use records: what a paused programmatic run needs to go on anywhere."""

    async def put_continuation(self, key: str, payload: bytes, expires_at: datetime) -> None: ...

    async def take_continuation(self, key: str) -> bytes | None:
        """The payload, removed in the same step (single use); None when unknown, taken or expired."""
        ...


class RuntimeSessionRecords(Protocol):
    """Stateful runtime sessions (codeapi.workspaces): JSON documents by id, opaque to the store."""

    async def put_runtime_session(self, runtime_id: str, document: str) -> None: ...

    async def get_runtime_session(self, runtime_id: str) -> str | None: ...

    async def delete_runtime_session(self, runtime_id: str) -> None:
        """Idempotent."""
        ...

    async def list_runtime_sessions(self) -> list[str]:
        """Every document (a replica holds a few hundred live ones at most: idle ones expire)."""
        ...


class MetadataStore(
    SessionRecords,
    FileRecords,
    StateIndex,
    SessionLocks,
    KeyRecords,
    UsageRecords,
    Continuations,
    RuntimeSessionRecords,
    Protocol,
):
    name: str

    async def ping(self) -> None:
        """Raises BackendUnavailable when the store cannot answer."""
        ...

    async def close(self) -> None: ...
