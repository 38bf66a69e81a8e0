"""File bytes by key. Implementations stream: no method holds a whole file in memory."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from codeapi.errors import InvalidRequest


def validate_key(key: str) -> str:
    """Return ``key`` if it is a plain relative path; every backend refuses the same shapes.

    Rejecting instead of normalising keeps one key naming one object everywhere: a local store
    must never resolve outside its root, and S3 clients would silently rewrite such keys.
    """
    segments = key.split("/")
    if not key or "\0" in key or any(segment in ("", ".", "..") for segment in segments):
        raise InvalidRequest(f"Invalid blob key: {key!r}")
    return key


class BlobStore(Protocol):
    name: str

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the chunks under ``key`` (replacing any previous value); returns the size in bytes.

        Nothing is visible under ``key`` until the whole stream has been written.
        """
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """Stream the bytes; raises FileNotFound (from codeapi.errors) on first iteration if absent."""
        ...

    async def delete(self, key: str) -> None:
        """Idempotent."""
        ...

    async def delete_prefix(self, prefix: str) -> int:
        """Delete every key starting with ``prefix``; returns how many were deleted."""
        ...

    def list_keys(self, prefix: str) -> AsyncIterator[str]: ...

    async def ping(self) -> None:
        """Raises BackendUnavailable when the store cannot answer."""
        ...

    async def close(self) -> None: ...
