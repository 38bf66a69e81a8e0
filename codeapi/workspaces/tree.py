"""A workspace's files on the host: a walk that never follows a link, what changed between two walks,
and the tar layers a checkpoint is made of.

The API walks and archives a workspace only while no process of its sandbox runs (a one-shot run
has ended, a kept Python sandbox's processes are stopped or killed), so the tree holds still.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import structlog

logger = structlog.get_logger(__name__)

Kind = Literal["file", "dir", "link"]
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
# File times come from the kernel's coarse clock (linux/time.h; Python names it from 3.13 on): after
# one tick of it, a new change has a later time.
CLOCK_REALTIME_COARSE = 5
FILE_CLOCK_TICK_S = time.clock_getres(CLOCK_REALTIME_COARSE)
COMPRESS_LEVEL = 1  # checkpoints are written on every call that changed something: speed over size


@dataclass(frozen=True)
class Entry:
    kind: Kind
    size: int
    mode: int
    mtime_ns: int
    ctime_ns: int
    inode: int


Tree = dict[str, Entry]  # path relative to the workspace's root -> what is there


def walk(root: Path) -> Tree:
    """Every file, directory and symbolic link below ``root`` (other kinds are not kept)."""
    tree = walk_at_most(root, None)
    assert tree is not None
    return tree


def walk_at_most(root: Path, most: int | None) -> Tree | None:
    """``walk``, or None as soon as more than ``most`` entries were found (a directory is read entry by
    entry, so giving up costs at most ``most`` of them, whatever its size)."""
    found: Tree = {}
    pending = [""]
    while pending:
        relative = pending.pop()
        try:
            listing = os.scandir(root / relative if relative else root)
        except OSError as error:
            logger.warning("workspace.unreadable_dir", path=relative, error=error.strerror)
            continue
        with listing:
            for item in listing:
                if most is not None and len(found) >= most:
                    return None
                path = f"{relative}/{item.name}" if relative else item.name
                st = item.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    kind: Kind = "dir"
                    pending.append(path)
                elif stat.S_ISREG(st.st_mode):
                    kind = "file"
                elif stat.S_ISLNK(st.st_mode):
                    kind = "link"
                else:
                    continue
                found[path] = Entry(
                    kind, st.st_size, stat.S_IMODE(st.st_mode), st.st_mtime_ns, st.st_ctime_ns, st.st_ino
                )
    return found


def size_of(tree: Tree) -> int:
    return sum(entry.size for entry in tree.values() if entry.kind == "file")


def coarse_now_ns() -> int:
    """The clock file times are taken from: a change made after this moment has ctime >= it."""
    return time.clock_gettime_ns(CLOCK_REALTIME_COARSE)


@dataclass(frozen=True)
class Changes:
    changed: list[str]  # new or changed paths, parents before children
    deleted: list[str]  # paths gone, children before parents

    def __bool__(self) -> bool:
        return bool(self.changed or self.deleted)


def compare(before: Tree, after: Tree, walked_at_ns: int) -> Changes:
    """What a call changed. Times alone cannot show a change made in the clock tick of the first walk
    (file times are coarse), so anything whose inode changed since that walk began counts as changed."""
    changed = [
        path
        for path, entry in after.items()
        if before.get(path) != entry or (entry.kind != "dir" and entry.ctime_ns >= walked_at_ns)
    ]
    deleted = [path for path in before if path not in after]
    return Changes(sorted(changed), sorted(deleted, reverse=True))


def write_layer(root: Path, paths: list[str], tree: Tree, out: IO[bytes]) -> None:
    """A gzip'd tar of ``paths`` (parents first) as ``tree`` describes them."""
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=COMPRESS_LEVEL, format=tarfile.PAX_FORMAT) as tar:
        for path in paths:
            entry = tree[path]
            info = tarfile.TarInfo(path)
            info.mode = entry.mode
            info.mtime = entry.mtime_ns / 1e9
            if entry.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif entry.kind == "link":
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(root / path)
                tar.addfile(info)
            else:
                fd = os.open(root / path, OPEN_FILE)
                with os.fdopen(fd, "rb") as source:
                    info.size = os.fstat(fd).st_size
                    tar.addfile(info, source)


def apply_layer(root: Path, layer: IO[bytes], deleted: list[str], uid: int) -> None:
    """Remove ``deleted``, then unpack the layer into ``root`` as ``uid``'s files.

    Nothing is written through a link: each member's parent directory is resolved on disk and must be
    inside ``root``, and the member itself is created anew (what was there is removed first). Links
    are kept as the sandbox made them; only the sandbox ever follows them, inside its own view.
    Members of any other kind (devices, hard links) and names that are absolute or climb out are left
    out, as the walk never archives them."""
    top = Path(os.path.realpath(root))
    for path in deleted:
        target = beneath(top, path)
        if target is not None:
            remove(target)
    with tarfile.open(fileobj=layer, mode="r:gz") as tar:
        for member in tar:
            target = beneath(top, member.name)
            if target is None or not (member.isfile() or member.isdir() or member.issym()):
                logger.warning("workspace.member_refused", name=member.name)
                continue
            unpack(tar, member, target, uid)


def beneath(top: Path, name: str) -> Path | None:
    """Where ``name`` is on disk, its parent resolved; None when that is not inside ``top``."""
    parts = name.split("/")
    if not name or name.startswith("/") or any(part in ("", ".", "..") for part in parts):
        return None
    parent = Path(os.path.realpath(top.joinpath(*parts[:-1])))
    if parent != top and top not in parent.parents:
        return None
    return parent / parts[-1]


def unpack(tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, uid: int) -> None:
    mode = member.mode & 0o755 | 0o600
    if member.isdir():
        if not (target.is_dir() and not target.is_symlink()):
            remove(target)
            target.mkdir(mode=mode)
        os.chown(target, uid, uid)
        os.chmod(target, mode | 0o100)
        return
    remove(target)
    if member.issym():
        os.symlink(member.linkname, target)
        os.lchown(target, uid, uid)
        return
    source = tar.extractfile(member)
    assert source is not None  # a regular file's member has its data
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out)
        os.fchown(fd, uid, uid)
        os.utime(fd, ns=(int(member.mtime * 1e9),) * 2)


def make_way(root: Path, name: str) -> None:
    """Clear the way for the API to write ``name`` below ``root``: any link or file where a parent
    directory must be, and whatever is at ``name``, are removed (never followed)."""
    parts = name.split("/")
    for depth in range(1, len(parts) + 1):
        path = root.joinpath(*parts[:depth])
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return
        if depth == len(parts) or not stat.S_ISDIR(st.st_mode):
            remove(path)
            return


def empty(root: Path) -> None:
    """Remove everything in ``root`` (links as links), not ``root`` itself."""
    for entry in os.scandir(root):
        remove(Path(entry.path))


def remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError as error:
            if error.errno != errno.ENOENT:
                raise
