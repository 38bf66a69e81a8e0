"""Metadata records and the small protocols each backend implements (SQLite embedded, Redis shared)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


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

    async def latest_session_for_entity(self, entity_id: str) -> SessionRecord | None: ...


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


class Continuations(Protocol):
    """Opaque, expiring, single-use records: what a paused programmatic run needs to go on anywhere."""

    async def put_continuation(self, key: str, payload: bytes, expires_at: datetime) -> None: ...

    async def take_continuation(self, key: str) -> bytes | None:
        """The payload, removed in the same step (single use); None when unknown, taken or expired."""
        ...


class MetadataStore(SessionRecords, FileRecords, StateIndex, SessionLocks, Continuations, Protocol):
    name: str

    async def ping(self) -> None:
        """Raises BackendUnavailable when the store cannot answer."""
        ...

    async def close(self) -> None: ...
