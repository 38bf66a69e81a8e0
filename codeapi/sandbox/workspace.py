"""Host-side job directories and sandbox identities.

A job directory holds the nsjail logs and ``files``, a size-limited tmpfs (mounts.py) with
``data`` (mounted at /mnt/data), ``code`` (/code) and ``home``: the quota is the whole job's
disk use. Job directories live in this API instance's own slot directory (instances.py). Each
concurrent execution borrows its own uid from the instance's pool (SANDBOX_UID + 64 * slot and up),
so two sandboxes never share an identity (signals, /proc, rlimits are per uid).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from codeapi.errors import SandboxFailure
from codeapi.sandbox import mounts
from codeapi.sandbox.instances import SLOT_PREFIX, UIDS_PER_INSTANCE, SlotClaim, claim_slot, dead_slots
from codeapi.sandbox.policy import SandboxJob, SandboxLimits

logger = structlog.get_logger(__name__)

SYSTEM_DIR_NAME = ".system"
DEFAULT_WORKDIR_SIZE_MB = 1024
# Names that resolve inside the sandbox without DNS; the hostname matches nsjail's --hostname.
HOSTS_FILE = "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@dataclass(frozen=True)
class JobDirs:
    root: Path
    uid: int

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def data(self) -> Path:
        return self.files / "data"

    @property
    def code(self) -> Path:
        return self.files / "code"

    @property
    def home(self) -> Path:
        return self.files / "home"

    def log_file(self, step: str) -> Path:
        # Outside the quota, so a program that fills its tmpfs cannot silence nsjail's log.
        return self.root / f"nsjail-{step}.log"

    def job(self, job_id: str, argv: tuple[str, ...], limits: SandboxLimits, **options: Any) -> SandboxJob:
        """A run in these directories as this identity; ``options`` are SandboxJob's other fields."""
        return SandboxJob(
            job_id=job_id,
            argv=argv,
            uid=self.uid,
            work_dir=self.data,
            code_dir=self.code,
            home_dir=self.home,
            log_file=self.log_file(job_id),
            limits=limits,
            **options,
        )


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
    def __init__(
        self, base_dir: Path, first_uid: int, uid_count: int, workdir_size_mb: int = DEFAULT_WORKDIR_SIZE_MB
    ) -> None:
        if uid_count > UIDS_PER_INSTANCE:
            raise ValueError(f"an instance has at most {UIDS_PER_INSTANCE} uids")
        self.base_dir = base_dir
        self.base_uid = first_uid
        self.uid_count = uid_count
        self.workdir_size_mb = workdir_size_mb
        self.slot = 0
        self.lock: SlotClaim | None = None
        self.uids = UidPool(first_uid, uid_count)  # replaced once prepare() claimed a slot
        self.active: dict[Path, JobDirs] = {}

    @property
    def root(self) -> Path:
        """This instance's own directory: its job directories and identity files."""
        return self.base_dir / f"{SLOT_PREFIX}{self.slot}"

    @property
    def first_uid(self) -> int:
        return self.base_uid + self.slot * UIDS_PER_INSTANCE

    @property
    def system_dir(self) -> Path:
        return self.root / SYSTEM_DIR_NAME

    @property
    def uid_range(self) -> range:
        return range(self.first_uid, self.first_uid + self.uid_count)

    def prepare(self) -> None:
        """Claim a slot, sweep what dead instances left, write the identity files every sandbox sees."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base_dir, 0o711)
        if self.lock is None:
            try:
                self.lock = claim_slot(self.base_dir, self.base_uid)
                self.slot = self.lock.slot
            except RuntimeError as error:
                raise SandboxFailure(f"refusing to start: {error}") from None
            self.uids = UidPool(self.first_uid, self.uid_count)
        self.remove_leftovers()
        self.system_dir.mkdir(exist_ok=True)
        passwd = ["root:x:0:0:root:/root:/usr/sbin/nologin"]
        passwd += [f"sandbox:x:{uid}:{uid}:sandbox:/home/sandbox:/bin/sh" for uid in self.uid_range]
        passwd.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
        group = ["root:x:0:", *(f"sandbox:x:{uid}:" for uid in self.uid_range), "nogroup:x:65534:"]
        files = {"passwd": "\n".join(passwd) + "\n", "group": "\n".join(group) + "\n", "hosts": HOSTS_FILE}
        for name, content in files.items():
            (self.system_dir / name).write_text(content)
            os.chmod(self.system_dir / name, 0o644)
        os.chmod(self.system_dir, 0o755)
        self.check_quota_mount()

    def remove_leftovers(self) -> None:
        """Everything in our own slot (a crashed predecessor's) and in slots nobody holds; never a
        live instance's. Unmount the job tmpfs first, or rmtree would only empty it."""
        with dead_slots(self.base_dir) as dead:
            removed = sum(empty(root) for root in (self.root, *dead))
        if removed:
            logger.info("workspace.orphans_removed", count=removed)

    def check_quota_mount(self) -> None:
        """Fail at start-up, not on the first request, when the per-job tmpfs cannot be mounted."""
        probe = self.root / ".probe"
        probe.mkdir(exist_ok=True)
        try:
            mounts.mount_quota(probe, 1)
            mounts.unmount(probe)
        finally:
            probe.rmdir()

    @asynccontextmanager
    async def job(self, job_id: str) -> AsyncIterator[JobDirs]:
        async with self.uids.borrow() as uid:
            dirs = JobDirs(self.root / job_id, uid)
            dirs.root.mkdir(mode=0o711)
            self.active[dirs.root] = dirs
            try:
                dirs.files.mkdir(mode=0o711)
                mounts.mount_quota(dirs.files, self.workdir_size_mb)
                for path in (dirs.data, dirs.code, dirs.home):
                    path.mkdir(mode=0o700)
                    os.chown(path, uid, uid)
                yield dirs
            finally:
                # In a thread: a detaching umount waits for an RCU grace period, milliseconds on a
                # busy host, which would stall every request on the event loop.
                await asyncio.to_thread(self.unmount, dirs)
                # rmtree never follows symlinks planted by the sandbox (fd-based on Linux).
                await asyncio.to_thread(shutil.rmtree, dirs.root, True)
                self.active.pop(dirs.root, None)

    def unmount(self, dirs: JobDirs) -> None:
        if dirs.files not in mounts.mounts_below(dirs.root):
            return
        try:
            mounts.unmount(dirs.files)
        except OSError as error:
            logger.warning("workspace.unmount_failed", path=str(dirs.files), error=str(error))

    def close(self) -> None:
        """Remove the directories of runs still in flight, synchronously, at API shutdown (see
        NsjailRunner.close: their own cleanup would not get to run)."""
        for dirs in list(self.active.values()):
            self.unmount(dirs)
            shutil.rmtree(dirs.root, ignore_errors=True)
        self.active.clear()
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def empty(root: Path) -> int:
    """Unmount and remove everything in ``root``; returns how many job directories were removed."""
    for point in mounts.mounts_below(root):
        mounts.unmount(point)
    removed = 0
    for entry in root.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed += entry.name != SYSTEM_DIR_NAME
        else:
            entry.unlink(missing_ok=True)
    return removed
