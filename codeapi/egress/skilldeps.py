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
copies in only once.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import structlog

logger = structlog.get_logger(__name__)

HOME_LINK = ".skill-deps"
SANDBOX_DIR = f"/home/sandbox/{HOME_LINK}"
PARTS = ("python", "pip-cache", "npm-cache")
STAMP = ".fingerprint"


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


def fingerprint(root: Path) -> tuple[int, int, int]:
    """(files, bytes, newest mtime in ns) of a tree, without following links: cheap change detection."""
    files = size = newest = 0
    for directory, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            try:
                info = os.lstat(os.path.join(directory, name))
            except OSError:
                continue
            files += 1
            size += info.st_size if stat.S_ISREG(info.st_mode) else 0
            newest = max(newest, info.st_mtime_ns)
    return files, size, newest


def only_files_dirs_links(directory: str, names: list[str]) -> set[str]:
    """copytree's ignore: fifos, sockets and devices are never copied (reading a fifo blocks)."""
    skipped = set()
    for name in names:
        mode = os.lstat(os.path.join(directory, name)).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skipped.add(name)
    return skipped


def chown_tree(root: Path, uid: int) -> None:
    for directory, dirnames, filenames in os.walk(root):
        os.chown(directory, uid, uid, follow_symlinks=False)
        for name in (*dirnames, *filenames):
            os.chown(os.path.join(directory, name), uid, uid, follow_symlinks=False)


class SkillDeps:
    def __init__(self, root: Path, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes

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

    def attach(self, session_id: str, home: Path, uid: int) -> None:
        """Put the session's tree into a job's home, once per sandbox. Blocking: call in a thread."""
        target = home / HOME_LINK
        if target.exists():
            return  # a kept warm sandbox of this session already has it
        stored = self.scope_of(session_id)
        if stored.is_dir():
            shutil.copytree(stored, target, symlinks=True, ignore=only_files_dirs_links)
            (target / STAMP).unlink(missing_ok=True)
        for part in PARTS:
            (target / part).mkdir(parents=True, exist_ok=True)
        (target / STAMP).write_text(repr(fingerprint(target)))
        chown_tree(target, uid)

    def keep(self, session_id: str, home: Path) -> None:
        """Copy a job's tree back when it changed and fits the cap. Blocking: call in a thread."""
        source = home / HOME_LINK
        if not source.is_dir():
            return
        seen = source / STAMP
        now = fingerprint(source)
        try:
            if seen.read_text() == repr(now):
                return
        except OSError:
            pass  # the program removed it: compare by copying
        if now[1] > self.max_bytes:
            logger.warning("skill_deps.over_cap", size_bytes=now[1], max_bytes=self.max_bytes)
            return
        stored = self.scope_of(session_id)
        staging = self.sessions_dir / f".incoming-{uuid.uuid4().hex}"
        shutil.copytree(source, staging, symlinks=True, ignore=only_files_dirs_links)
        (staging / STAMP).unlink(missing_ok=True)
        chown_tree(staging, 0)
        retired = self.sessions_dir / f".retired-{uuid.uuid4().hex}"
        if stored.exists():
            stored.rename(retired)
        staging.rename(stored)
        shutil.rmtree(retired, ignore_errors=True)
        seen.write_text(repr(fingerprint(source)))

    def usage(self) -> list[ScopeUsage]:
        found = []
        for scope in sorted(self.sessions_dir.iterdir()) if self.sessions_dir.is_dir() else []:
            if scope.name.startswith("."):
                continue
            files, size, _ = fingerprint(scope)
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
