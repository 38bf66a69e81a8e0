"""Moving files between storage and a job's /mnt/data, safely.

The sandbox owns /mnt/data while it runs, so everything read back is hostile: the walk opens
each entry relative to its parent's descriptor with O_NOFOLLOW and checks the type on the
opened descriptor, so symlinks, FIFOs, devices and swapped directories are never followed.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

from codeapi.sessions.names import is_hidden

READ_CHUNK = 1024 * 1024
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class Fingerprint:
    size_bytes: int
    mtime_ns: int
    inode: int


@dataclass(frozen=True)
class FoundFile:
    path: str  # relative to /mnt/data
    fingerprint: Fingerprint


@dataclass(frozen=True)
class Rejected:
    path: str
    reason: str


def fingerprint(st: os.stat_result) -> Fingerprint:
    return Fingerprint(st.st_size, st.st_mtime_ns, st.st_ino)


async def write_input(data_dir: Path, name: str, chunks: AsyncIterator[bytes], uid: int) -> Fingerprint:
    """Place one input at data_dir/name (the job has not started, so the tree is still ours)."""
    target = data_dir / name
    for parent in reversed(target.relative_to(data_dir).parents):
        directory = data_dir / parent
        if str(parent) != "." and not directory.is_dir():
            directory.mkdir(mode=0o755)
            os.chown(directory, uid, uid)
    if target.exists():
        target.unlink()  # an explicit reference replaces an auto-mounted file of the same name
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    try:
        async for chunk in chunks:
            await asyncio.to_thread(os.write, fd, chunk)
        os.fchown(fd, uid, uid)
        return fingerprint(os.fstat(fd))
    finally:
        os.close(fd)


def walk_outputs(data_dir: Path, max_file_bytes: int) -> tuple[list[FoundFile], list[Rejected]]:
    """Every visible regular file under data_dir, without following any link."""
    found: list[FoundFile] = []
    rejected: list[Rejected] = []
    root_fd = os.open(data_dir, OPEN_DIR)
    try:
        for relative, entry_fd in iterate_tree(root_fd, ""):
            try:
                st = os.fstat(entry_fd)
                if not stat.S_ISREG(st.st_mode):
                    rejected.append(Rejected(relative, "not a regular file"))
                elif st.st_nlink != 1:
                    rejected.append(Rejected(relative, "hard-linked files are not collected"))
                elif st.st_size > max_file_bytes or st.st_blocks * 512 > max_file_bytes:
                    rejected.append(Rejected(relative, f"larger than {max_file_bytes // (1024 * 1024)} MB"))
                else:
                    found.append(FoundFile(relative, fingerprint(st)))
            finally:
                os.close(entry_fd)
    finally:
        os.close(root_fd)
    return found, rejected


def iterate_tree(dir_fd: int, prefix: str) -> Iterator[tuple[str, int]]:
    """Yield (relative path, open fd) for every non-directory entry; skips hidden names."""
    with os.scandir(dir_fd) as entries:
        names = sorted(entry.name for entry in entries)
    for name in names:
        relative = f"{prefix}{name}"
        if is_hidden(name):
            continue
        try:
            fd = os.open(name, OPEN_FILE, dir_fd=dir_fd)
        except OSError:
            continue  # a symlink (ELOOP) or an entry that vanished: never followed
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            try:
                yield from iterate_tree(fd, f"{relative}/")
            finally:
                os.close(fd)
        else:
            yield relative, fd


async def read_output(data_dir: Path, relative: str, expected: Fingerprint) -> AsyncIterator[bytes]:
    """Stream a collected file, re-opened without following links and checked against its walk."""
    fd = await asyncio.to_thread(open_beneath, data_dir, relative)
    try:
        if fingerprint(os.fstat(fd)) != expected:
            raise OSError(f"{relative} changed after it was collected")
        while chunk := await asyncio.to_thread(os.read, fd, READ_CHUNK):
            yield chunk
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
