"""Host-side job directories and sandbox identities.

A job directory holds ``data`` (mounted at /mnt/data), ``code`` (/code), ``home`` and the nsjail
log. Each concurrent execution borrows its own uid from a pool starting at SANDBOX_UID, so two
sandboxes never share an identity (signals, /proc, rlimits are per uid).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

logger = structlog.get_logger(__name__)

SYSTEM_DIR_NAME = ".system"


@dataclass(frozen=True)
class JobDirs:
    root: Path
    uid: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def code(self) -> Path:
        return self.root / "code"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def log_file(self, step: str) -> Path:
        return self.root / f"nsjail-{step}.log"


class UidPool:
    """Hands out distinct uids; waits when every uid is in use (this also bounds concurrency)."""

    def __init__(self, first_uid: int, count: int) -> None:
        self.free: asyncio.Queue[int] = asyncio.Queue()
        for uid in range(first_uid, first_uid + count):
            self.free.put_nowait(uid)

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[int]:
        uid = await self.free.get()
        try:
            yield uid
        finally:
            self.free.put_nowait(uid)


class Workspaces:
    def __init__(self, base_dir: Path, first_uid: int, uid_count: int) -> None:
        self.base_dir = base_dir
        self.first_uid = first_uid
        self.uid_count = uid_count
        self.uids = UidPool(first_uid, uid_count)

    @property
    def system_dir(self) -> Path:
        return self.base_dir / SYSTEM_DIR_NAME

    def prepare(self) -> None:
        """Create the base directory and the passwd/group files every sandbox sees; sweep leftovers."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o711)
        self.system_dir.mkdir(exist_ok=True)
        uids = range(self.first_uid, self.first_uid + self.uid_count)
        passwd = ["root:x:0:0:root:/root:/usr/sbin/nologin"]
        passwd += [f"sandbox:x:{uid}:{uid}:sandbox:/home/sandbox:/bin/sh" for uid in uids]
        passwd.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
        group = ["root:x:0:", *(f"sandbox:x:{uid}:" for uid in uids), "nogroup:x:65534:"]
        (self.system_dir / "passwd").write_text("\n".join(passwd) + "\n")
        (self.system_dir / "group").write_text("\n".join(group) + "\n")
        for path in (self.system_dir, self.system_dir / "passwd", self.system_dir / "group"):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        removed = 0
        for entry in self.base_dir.iterdir():
            if entry.name != SYSTEM_DIR_NAME and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        if removed:
            logger.info("workspace.orphans_removed", count=removed)

    @asynccontextmanager
    async def job(self, job_id: str) -> AsyncIterator[JobDirs]:
        async with self.uids.borrow() as uid:
            dirs = JobDirs(self.base_dir / job_id, uid)
            dirs.root.mkdir(mode=0o711)
            try:
                for path in (dirs.data, dirs.code, dirs.home):
                    path.mkdir(mode=0o700)
                    os.chown(path, uid, uid)
                yield dirs
            finally:
                # rmtree never follows symlinks planted by the sandbox (fd-based on Linux).
                await asyncio.to_thread(shutil.rmtree, dirs.root, True)
