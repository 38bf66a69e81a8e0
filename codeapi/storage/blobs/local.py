"""Blobs as files under one directory, for a single replica.

Blocking file calls run in worker threads so the event loop keeps serving while large files
stream. A put writes to a hidden temp file beside the target and renames it into place, so a
reader sees either the old bytes or the complete new ones, never a partial write.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import structlog

from codeapi.errors import BackendUnavailable, FileNotFound, InvalidRequest
from codeapi.storage.blobs.base import validate_key
from codeapi.units import FILE_CHUNK_BYTES

logger = structlog.get_logger(__name__)

TEMP_PREFIX = ".codeapi-tmp-"
# Blobs are users' files: readable by the service account only.
DIR_MODE = 0o700
FILE_MODE = 0o600


@contextmanager
def _boundary(operation: str, key: str) -> Iterator[None]:
    """Disk errors (full, read-only, permissions) stop here as BackendUnavailable."""
    try:
        yield
    except OSError as exc:
        logger.error("local_blob_failed", operation=operation, key=key, error=str(exc))
        raise BackendUnavailable(f"local blob store unavailable: {exc}") from exc


def _write_all(handle: BinaryIO, data: bytes) -> None:
    handle.write(data)


def _finish(handle: BinaryIO, durable: bool) -> None:
    handle.flush()
    if durable:
        os.fsync(handle.fileno())
    handle.close()


def _discard(handle: BinaryIO, temp: Path) -> None:
    handle.close()
    temp.unlink(missing_ok=True)


def _make_dirs(path: Path) -> None:
    """mkdir -p with DIR_MODE on every directory it creates (Path.mkdir applies mode to the last only)."""
    missing: list[Path] = []
    while not path.is_dir():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            if not directory.is_dir():
                raise


def _open_private(path: Path) -> BinaryIO:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "wb")


class LocalBlobStore:
    name = "local"

    def __init__(self, root: Path, durable: bool = False) -> None:
        """``durable`` fsyncs each blob before publishing it: slower, but survives power loss."""
        self.root = root
        self.durable = durable
        with _boundary("open", ""):
            _make_dirs(root)
            root.chmod(DIR_MODE)  # a root created by an older version may still be world-readable

    def _path(self, key: str) -> Path:
        validate_key(key)
        # Temp names are reserved so that list_keys can tell half-written files apart.
        if any(segment.startswith(TEMP_PREFIX) for segment in key.split("/")):
            raise InvalidRequest(f"Invalid blob key: {key!r}")
        return self.root.joinpath(*key.split("/"))

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        target = self._path(key)
        temp = target.parent / f"{TEMP_PREFIX}{target.name}.{uuid.uuid4().hex}"
        with _boundary("put", key):
            await asyncio.to_thread(_make_dirs, target.parent)
            handle: BinaryIO = await asyncio.to_thread(_open_private, temp)
        published = False
        try:
            size = 0
            async for chunk in chunks:
                if chunk:
                    with _boundary("put", key):
                        await asyncio.to_thread(_write_all, handle, chunk)
                    size += len(chunk)
            with _boundary("put", key):
                await asyncio.to_thread(_finish, handle, self.durable)
                await asyncio.to_thread(os.replace, temp, target)
            published = True
            return size
        finally:
            if not published:
                # The source failed (too large, client gone) or the disk did: leave no trace.
                await asyncio.to_thread(_discard, handle, temp)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            handle: BinaryIO = await asyncio.to_thread(open, path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise FileNotFound() from exc
        except OSError as exc:
            raise BackendUnavailable(f"local blob store unavailable: {exc}") from exc
        try:
            while True:
                with _boundary("read", key):
                    chunk = await asyncio.to_thread(handle.read, FILE_CHUNK_BYTES)
                if not chunk:
                    return
                yield chunk
        finally:
            await asyncio.to_thread(handle.close)

    async def delete(self, key: str) -> None:
        path = self._path(key)
        with _boundary("delete", key):
            try:
                await asyncio.to_thread(path.unlink)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                pass  # no blob under this key: deleting is idempotent

    async def delete_prefix(self, prefix: str) -> int:
        with _boundary("delete_prefix", prefix):
            return await asyncio.to_thread(self._delete_prefix_sync, prefix)

    def _delete_prefix_sync(self, prefix: str) -> int:
        deleted = 0
        for keys in self._walk(prefix):
            for key in keys:
                try:
                    self._path(key).unlink()
                    deleted += 1
                except FileNotFoundError:
                    pass
        self._prune_dirs(prefix)
        return deleted

    def _prune_dirs(self, prefix: str) -> None:
        """Remove directories left empty under the prefix, so expired sessions leave nothing."""
        for dirpath, _, _ in os.walk(self._search_base(prefix), topdown=False):
            directory = Path(dirpath)
            if directory == self.root:
                continue
            if (directory.relative_to(self.root).as_posix() + "/").startswith(prefix):
                try:
                    directory.rmdir()
                except OSError:
                    pass  # not empty: a concurrent put is filling it

    def _search_base(self, prefix: str) -> Path:
        """The deepest directory that can hold every key starting with ``prefix``."""
        parent = prefix.rpartition("/")[0]
        return self._path(parent) if parent else self.root

    def _walk(self, prefix: str) -> Iterator[list[str]]:
        """Matching keys, one directory at a time (so callers can stream without a full scan)."""
        for dirpath, dirnames, filenames in os.walk(self._search_base(prefix)):
            dirnames.sort()
            relative = Path(dirpath).relative_to(self.root).as_posix()
            keys = (name if relative == "." else f"{relative}/{name}" for name in sorted(filenames))
            yield [key for key in keys if key.startswith(prefix) and not key.rpartition("/")[2].startswith(TEMP_PREFIX)]

    async def list_keys(self, prefix: str) -> AsyncIterator[str]:
        walker = self._walk(prefix)
        while True:
            with _boundary("list_keys", prefix):
                keys = await asyncio.to_thread(next, walker, None)
            if keys is None:
                return
            for key in keys:
                yield key

    async def ping(self) -> None:
        usable = await asyncio.to_thread(lambda: self.root.is_dir() and os.access(self.root, os.W_OK | os.X_OK))
        if not usable:
            raise BackendUnavailable(f"local blob store unavailable: {self.root} is not a writable directory")

    async def close(self) -> None:
        return None
