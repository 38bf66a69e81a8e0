"""SKILL_DEPS_PATH: what a session installed (pip, npm) and downloaded, kept for its later runs.

Each session has its own directory under ``SKILL_DEPS_PATH/sessions``: its installed Python
packages and its pip and npm download caches. Nothing is shared between sessions, because nothing
in these trees is verified when it is read back: pip and npm trust their caches' index entries,
and an installed tree is code that the next ``import`` runs, so a shared writable copy would let
one user plant code in another user's programs.

The host directory is never mounted into a sandbox. Before a run the session's tree is copied into
the job's home (``~/.skill-deps``, on the job's size-limited tmpfs, owned by the job's uid); after
the run it is copied back when it changed and is within the cap. So a program can neither write
to the host's disk past its quota nor reach another session's tree, and a kept warm sandbox
copies in only once. The copy back reads a tree the program controls, as root: every entry is
opened relative to its parent's descriptor with O_NOFOLLOW and checked by type, links are copied
as links, and anything else (fifos, sockets, devices) is skipped, so no link or swap can make the
API read or write a host path.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import structlog

from codeapi.units import FILE_CHUNK_BYTES

logger = structlog.get_logger(__name__)

HOME_LINK = ".skill-deps"
SANDBOX_DIR = f"/home/sandbox/{HOME_LINK}"
PARTS = ("python", "pip-cache", "npm-cache")
OPEN_DIR = os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
MAX_DEPTH = 64
REMEMBERED_JOBS = 4096
Fingerprint = tuple[int, int, int]


def sandbox_env() -> dict[str, str]:
    """Where pip and npm install and cache inside the sandbox."""
    return {
        "PIP_TARGET": f"{SANDBOX_DIR}/python",
        "PYTHONPATH": f"{SANDBOX_DIR}/python",
        "PIP_CACHE_DIR": f"{SANDBOX_DIR}/pip-cache",
        "npm_config_cache": f"{SANDBOX_DIR}/npm-cache",
    }


@dataclass(frozen=True)
class ScopeUsage:
    scope: str
    size_bytes: int
    files: int
    modified_at: float


class OverCap(Exception):
    pass


def fingerprint_fd(directory_fd: int, depth: int = 0) -> Fingerprint:
    """(entries, bytes, newest mtime in ns) of the tree below an open directory, links not followed."""
    entries = size = newest = 0
    for name in os.listdir(directory_fd):
        try:
            info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        except OSError:
            continue
        entries += 1
        newest = max(newest, info.st_mtime_ns)
        if stat.S_ISREG(info.st_mode):
            size += info.st_size
        elif stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH:
            try:
                child = os.open(name, OPEN_DIR, dir_fd=directory_fd)
            except OSError:
                continue
            try:
                below = fingerprint_fd(child, depth + 1)
            finally:
                os.close(child)
            entries, size, newest = entries + below[0], size + below[1], max(newest, below[2])
    return entries, size, newest


def copy_out_fd(directory_fd: int, target: Path, budget: list[int], depth: int = 0) -> None:
    """Copy the tree below an open directory to a new host directory ``target``; budget[0] is the
    bytes still allowed (OverCap past it)."""
    target.mkdir(mode=0o700)
    for name in os.listdir(directory_fd):
        try:
            info = os.stat(name, dir_fd=directory_fd, follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISLNK(info.st_mode):
            os.symlink(os.readlink(name, dir_fd=directory_fd), target / name)
        elif stat.S_ISDIR(info.st_mode) and depth < MAX_DEPTH:
            child = os.open(name, OPEN_DIR, dir_fd=directory_fd)
            try:
                copy_out_fd(child, target / name, budget, depth + 1)
            finally:
                os.close(child)
        elif stat.S_ISREG(info.st_mode):
            copy_file_fd(directory_fd, name, target / name, budget)


def copy_file_fd(directory_fd: int, name: str, target: Path, budget: list[int]) -> None:
    source = os.open(name, OPEN_FILE, dir_fd=directory_fd)
    try:
        if not stat.S_ISREG(os.fstat(source).st_mode):
            return  # swapped for something else since it was listed
        with open(target, "xb") as sink:
            while chunk := os.read(source, FILE_CHUNK_BYTES):
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise OverCap
                sink.write(chunk)
        os.chmod(target, 0o755 if os.fstat(source).st_mode & stat.S_IXUSR else 0o644)
    finally:
        os.close(source)


def chown_tree(root: Path, uid: int) -> None:
    """Only used on trees the API itself just wrote (links are not followed either way)."""
    for directory, dirnames, filenames in os.walk(root):
        os.chown(directory, uid, uid, follow_symlinks=False)
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(directory, name), uid, uid, follow_symlinks=False)


class SkillDeps:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        # Each job's tree as attached or last kept: unchanged trees are not copied back. Kept in the
        # API, not in the job's home, where the program could change it.
        self.seen: OrderedDict[Path, Fingerprint] = OrderedDict()

    @property
    def sessions_dir(self) -> Path:
        return self.root / "sessions"

    def prepare(self) -> None:
        self.sessions_dir.mkdir(parents=True, exist_ok=True)
        for path in (self.root, self.sessions_dir):
            os.chmod(path, 0o700)

    def scope_of(self, session_id: str) -> Path:
        # Hashed: a session id is a wire value, never a path component as it stands.
        return self.sessions_dir / hashlib.sha256(session_id.encode()).hexdigest()[:32]

    def remember(self, home: Path, seen: Fingerprint) -> None:
        self.seen[home] = seen
        self.seen.move_to_end(home)
        while len(self.seen) > REMEMBERED_JOBS:
            self.seen.popitem(last=False)

    def attach(self, session_id: str, home: Path, uid: int) -> None:
        """Put the session's tree into a job's home, once per sandbox. Blocking: call in a thread."""
        target = home / HOME_LINK
        if os.path.lexists(target):
            return  # a kept warm sandbox of this session already has it
        stored = self.scope_of(session_id)
        if stored.is_dir():
            shutil.copytree(stored, target, symlinks=True)  # the API's own copy: plain files, dirs, links
        for part in PARTS:
            (target / part).mkdir(parents=True, exist_ok=True)
        chown_tree(target, uid)
        self.remember(home, self.tree_fingerprint(target))

    def tree_fingerprint(self, tree: Path) -> Fingerprint:
        fd = os.open(tree, OPEN_DIR)
        try:
            return fingerprint_fd(fd)
        finally:
            os.close(fd)

    def keep(self, session_id: str, home: Path) -> None:
        """Copy a job's tree back when it changed and fits the cap. Blocking: call in a thread."""
        try:
            tree = os.open(home / HOME_LINK, OPEN_DIR)  # a link put in its place is refused here
        except OSError:
            return
        try:
            now = fingerprint_fd(tree)
            if self.seen.get(home) == now:
                return
            if now[1] > self.max_bytes:
                logger.warning("skill_deps.over_cap", size_bytes=now[1], max_bytes=self.max_bytes)
                return
            staging = self.sessions_dir / f".incoming-{uuid.uuid4().hex}"
            try:
                copy_out_fd(tree, staging, [self.max_bytes])
            except OverCap:
                shutil.rmtree(staging, ignore_errors=True)
                logger.warning("skill_deps.over_cap", max_bytes=self.max_bytes)
                return
            self.replace(self.scope_of(session_id), staging)
            self.remember(home, now)
        finally:
            os.close(tree)

    def replace(self, stored: Path, staging: Path) -> None:
        retired = self.sessions_dir / f".retired-{uuid.uuid4().hex}"
        if stored.exists():
            stored.rename(retired)
        staging.rename(stored)
        shutil.rmtree(retired, ignore_errors=True)

    def usage(self) -> list[ScopeUsage]:
        found = []
        for scope in sorted(self.sessions_dir.iterdir()) if self.sessions_dir.is_dir() else []:
            if scope.name.startswith("."):
                continue
            files, size, _ = self.tree_fingerprint(scope)
            # The directory itself is renamed into place each time a run changed it.
            found.append(ScopeUsage(scope.name, size, files, scope.stat().st_mtime))
        return found

    def purge(self, older_than_s: float = 0) -> int:
        """Remove the trees not changed for ``older_than_s``; returns how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for item in self.usage():
            if item.modified_at <= cutoff:
                shutil.rmtree(self.sessions_dir / item.scope, ignore_errors=True)
                removed += 1
        return removed
