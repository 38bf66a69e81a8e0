"""Several API processes on one host: each claims an instance slot, held by a lock for its lifetime.

Slot ``n`` is the directory ``<SANDBOX_BASE_DIR>/instance-<n>``: it holds that instance's job
directories and identity files, and the instance sandboxes under uids ``SANDBOX_UID + n * 64`` and
up, so neither needs setting by hand. Ownership is an ``flock`` on a directory, taken when the
process starts and held (close-on-exec, so no sandbox or zygote inherits it) until it exits: the
kernel drops it when the process dies, however it dies. What sits under a directory nobody holds
is provably a dead instance's, and only that is ever cleaned up; a live instance's never is, even
when its processes are invisible (another container's pid namespace). Job cgroups use the same rule
(cgroups.py): each instance holds a lock on its own directory in the cgroup tree.

Uids are the host's, not the base directory's: two instances with different SANDBOX_BASE_DIRs would
otherwise sandbox under the same uids. So a slot is taken only together with a host-wide lock on
its first uid (UID_LOCKS, on the host's /run), and a slot whose uids another instance holds is
skipped. (Containers have a /run of their own: give each stack its own SANDBOX_UID.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAX_INSTANCES = 16
SLOT_PREFIX = "instance-"
UIDS_PER_INSTANCE = 64
UID_LOCKS = Path("/run/codeapi/uids")


@dataclass
class DirectoryLock:
    """An exclusive flock on a directory, held while ``fd`` is open."""

    path: Path
    fd: int

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def try_lock(path: Path) -> DirectoryLock | None:
    """The directory's lock if nobody holds it (None: a live process does)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return DirectoryLock(path, fd)


@dataclass
class SlotClaim:
    """A slot's directory lock and the host-wide lock on its uids, held together."""

    slot: int
    directory: DirectoryLock
    uids: DirectoryLock

    def release(self) -> None:
        self.uids.release()
        self.directory.release()


def claim_slot(base_dir: Path, base_uid: int) -> SlotClaim:
    """The lowest slot under ``base_dir`` that no live instance holds and whose uids
    (``base_uid + slot * UIDS_PER_INSTANCE`` on) no instance on this host uses."""
    UID_LOCKS.mkdir(mode=0o700, parents=True, exist_ok=True)
    for slot in range(MAX_INSTANCES):
        path = base_dir / f"{SLOT_PREFIX}{slot}"
        path.mkdir(mode=0o711, exist_ok=True)
        directory = try_lock(path)
        if directory is None:
            continue
        uid_path = UID_LOCKS / str(base_uid + slot * UIDS_PER_INSTANCE)
        uid_path.mkdir(mode=0o700, exist_ok=True)
        uids = try_lock(uid_path)
        if uids is not None:
            return SlotClaim(slot, directory, uids)
        directory.release()
    raise RuntimeError(
        f"{MAX_INSTANCES} API instances already use {base_dir} or the uids from SANDBOX_UID={base_uid} on"
    )


@contextlib.contextmanager
def dead_slots(base_dir: Path) -> Iterator[list[Path]]:
    """The slot directories under ``base_dir`` whose instance is gone, locked while the caller cleans."""
    held: list[DirectoryLock] = []
    try:
        for path in sorted(base_dir.glob(f"{SLOT_PREFIX}*")):
            lock = try_lock(path) if path.is_dir() and not path.is_symlink() else None
            if lock is not None:
                held.append(lock)
        yield [lock.path for lock in held]
    finally:
        for lock in held:
            lock.release()
