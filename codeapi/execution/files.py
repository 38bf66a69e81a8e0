"""Moving files between storage and a job's /mnt/data, safely.

The sandbox owns /mnt/data while it runs, so everything read back is hostile: the walk opens
each entry relative to its parent's descriptor with O_NOFOLLOW and checks the type on the
opened descriptor, so symlinks, FIFOs, devices and swapped directories are never followed.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

from codeapi.errors import RequestTooLarge
from codeapi.sessions.names import is_hidden
from codeapi.units import FILE_CHUNK_BYTES, MB

T = TypeVar("T")
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
# Directories nested deeper than this are not descended (each open level holds one descriptor).
MAX_DEPTH = 64
# The job's tmpfs quota is full: the inputs do not fit.
QUOTA_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


@dataclass(frozen=True)
class Fingerprint:
    """What tells a file apart from its earlier self without reading it. ctime is in it because no
    program can set it back: rewriting at the same size and restoring mtime still changes ctime."""

    size_bytes: int
    mtime_ns: int
    ctime_ns: int
    inode: int
    # SHA-256 of the bytes, for inputs a run must not change (read-only uploads): kept sandboxes
    # re-check them by content before serving them again. Not part of equality (walks don't hash).
    sha256: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class FoundFile:
    path: str  # relative to /mnt/data
    fingerprint: Fingerprint


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str


def one_tree(preferred: Iterable[tuple[str, T]]) -> dict[str, T]:
    """The first item of every path that fits beside the ones before it: a path is left out when it
    is taken, when one of its parents is a file, or when it is a directory of a path already kept."""
    kept: dict[str, T] = {}
    directories: set[str] = set()
    for path, item in preferred:
        parents = [str(parent) for parent in PurePosixPath(path).parents][:-1]
        if path in kept or path in directories or any(parent in kept for parent in parents):
            continue
        kept[path] = item
        directories.update(parents)
    return kept


def fingerprint(st: os.stat_result, sha256: str | None = None) -> Fingerprint:
    return Fingerprint(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sha256)


async def write_input(
    data_dir: Path, name: str, chunks: AsyncIterator[bytes], uid: int, hashed: bool = False
) -> Fingerprint:
    """Place one input at data_dir/name (the job has not started, so the tree is still ours);
    ``hashed``: the fingerprint carries the content's SHA-256.

    Raises RequestTooLarge when the inputs outgrow the job's disk quota.
    """
    try:
        return await _write_input(data_dir, name, chunks, uid, hashlib.sha256() if hashed else None)
    except OSError as exc:
        if exc.errno in QUOTA_ERRNOS:
            raise RequestTooLarge(f"The input files do not fit in the execution's disk quota ({name})") from exc
        raise


async def _write_input(
    data_dir: Path, name: str, chunks: AsyncIterator[bytes], uid: int, digest: hashlib._Hash | None
) -> Fingerprint:
    target = data_dir / name
    for parent in reversed(target.relative_to(data_dir).parents):
        directory = data_dir / parent
        if str(parent) != "." and not directory.is_dir():
            directory.mkdir(mode=0o755)
            os.chown(directory, uid, uid)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        async for chunk in chunks:
            await asyncio.to_thread(_write_all, fd, chunk)
            if digest is not None:
                digest.update(chunk)
        os.fchown(fd, uid, uid)
        return fingerprint(os.fstat(fd), digest.hexdigest() if digest is not None else None)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def walk_outputs(data_dir: Path, max_file_bytes: int) -> tuple[list[FoundFile], list[Rejected]]:
    """Every visible regular file under data_dir, without following any link.

    Blocking and possibly long (the tree is the user's): call it in a worker thread.
    """
    found: list[FoundFile] = []
    rejected: list[Rejected] = []
    root = _Level(os.open(data_dir, OPEN_DIR), "", 0)
    stack = [root]
    try:
        root.names = _listing(root.fd)
        while stack:
            level = stack[-1]
            if not level.names:
                os.close(stack.pop().fd)
                continue
            name = level.names.pop()
            if is_hidden(name):
                continue
            relative = f"{level.prefix}{name}"
            if not _is_utf8(name):
                rejected.append(Rejected(_printable(relative), "the file name is not valid UTF-8"))
                continue
            try:
                fd = os.open(name, OPEN_FILE, dir_fd=level.fd)
            except OSError:
                continue  # a symlink (ELOOP) or an entry that vanished: never followed
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    if level.depth + 1 >= MAX_DEPTH:
                        rejected.append(Rejected(relative, f"nested deeper than {MAX_DEPTH} directories"))
                        continue
                    try:
                        names = _listing(fd)
                    except OSError:
                        continue  # unreadable or vanished: skipped like any entry that cannot be opened
                    stack.append(_Level(fd, f"{relative}/", level.depth + 1, names))
                    fd = -1  # owned by the stack now
                elif not stat.S_ISREG(st.st_mode):
                    rejected.append(Rejected(relative, "not a regular file"))
                elif st.st_nlink != 1:
                    rejected.append(Rejected(relative, "hard-linked files are not collected"))
                elif st.st_size > max_file_bytes or st.st_blocks * 512 > max_file_bytes:
                    rejected.append(Rejected(relative, f"larger than {max_file_bytes // MB} MB"))
                else:
                    found.append(FoundFile(relative, fingerprint(st)))
            finally:
                if fd >= 0:
                    os.close(fd)
    finally:
        for level in stack:
            os.close(level.fd)
    return found, rejected


@dataclass
class _Level:
    """One open directory of the walk and the names still to visit in it (popped from the end)."""

    fd: int
    prefix: str
    depth: int
    names: list[str] = field(default_factory=list)


def _listing(dir_fd: int) -> list[str]:
    with os.scandir(dir_fd) as entries:
        return sorted((entry.name for entry in entries), reverse=True)


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # os.scandir decoded undecodable bytes as lone surrogates
    return True


def _printable(path: str) -> str:
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class OutputChanged(Exception):
    """A collected file was changed, replaced or removed while it was being stored: a program of the
    session (a thread left running in a kept sandbox) is still at work on it."""


async def read_output(data_dir: Path, relative: str, expected: Fingerprint) -> AsyncIterator[bytes]:
    """Stream a collected file, re-opened without following links and checked against its walk
    before and after: what is stored is what the walk saw, or nothing (OutputChanged)."""
    try:
        fd = await asyncio.to_thread(open_beneath, data_dir, relative)
    except OSError as exc:
        raise OutputChanged(relative) from exc
    try:
        if fingerprint(os.fstat(fd)) != expected:
            raise OutputChanged(relative)
        size_bytes = 0
        while chunk := await asyncio.to_thread(os.read, fd, FILE_CHUNK_BYTES):
            size_bytes += len(chunk)
            yield chunk
        if size_bytes != expected.size_bytes or fingerprint(os.fstat(fd)) != expected:
            raise OutputChanged(relative)
    finally:
        os.close(fd)


def content_sha256(data_dir: Path, relative: str) -> str | None:
    """The SHA-256 of a file under data_dir (links not followed); None when it cannot be read."""
    try:
        fd = open_beneath(data_dir, relative)
    except OSError:
        return None
    try:
        digest = hashlib.sha256()
        while chunk := os.read(fd, FILE_CHUNK_BYTES):
            digest.update(chunk)
        return digest.hexdigest()
    except OSError:
        return None
    finally:
        os.close(fd)


def open_beneath(data_dir: Path, relative: str) -> int:
    dir_fd = os.open(data_dir, OPEN_DIR)
    try:
        *parents, name = relative.split("/")
        for part in parents:
            next_fd = os.open(part, OPEN_DIR, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return os.open(name, OPEN_FILE, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
