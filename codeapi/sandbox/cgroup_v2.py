"""Unified cgroup v2: the job cgroups live in a ``codeapi`` child of the cgroup delegated to us.

The API's own cgroup is the base (a container's root with a private cgroup namespace, or a systemd
unit with ``Delegate=yes``). A cgroup with processes cannot hand controllers to its children (the
"no internal processes" rule), so the API first moves itself, and whatever shares its cgroup, into
the leaf ``<base>/api``; a restarted API that finds itself in that leaf uses its parent again.
"""

from __future__ import annotations

import contextlib
import errno
import signal
from dataclasses import dataclass
from pathlib import Path

from codeapi.sandbox.cgroups import (
    CGROUP_ROOT,
    CPU_PERIOD_US,
    NSJAIL_PROCESSES,
    PARENT,
    PEAK_MARGIN_BYTES,
    Cgroups,
    CgroupUnavailable,
    JobCgroup,
    JobLimits,
    at_or_below,
    cgroup_lines,
    members_below,
    read_int,
    remove_tree,
    writable,
)

CONTROLLERS = ("memory", "pids", "cpu")
LEAF = "api"
ENABLE = " ".join(f"+{controller}" for controller in CONTROLLERS)
DELEGATION_HELP = (
    "run codeapi in a systemd unit with Delegate=yes (deploy/codeapi.service), or in a container with a "
    "private cgroup namespace and a writable /sys/fs/cgroup (see docs/deployment.md)"
)


def own_cgroup(pid: str = "self") -> str:
    """This process's place in the unified hierarchy, as its cgroup namespace shows it ("/..." )."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise CgroupUnavailable("this process is in no cgroup v2 hierarchy")


def base_of(own: str) -> str:
    """The cgroup delegated to codeapi: our own, or its parent once we moved into the leaf."""
    place = Path(own)
    return str(place.parent) if place.name == LEAF else str(place)


def read_words(path: Path) -> set[str]:
    try:
        return set(path.read_text().split())
    except OSError:
        return set()


def stat_value(path: Path, key: str) -> int | None:
    """One entry of a flat-keyed file such as cpu.stat; None when the file or the entry is absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def event_count(path: Path, key: str) -> int:
    """One counter of a flat-keyed file such as memory.events (0 when absent)."""
    return stat_value(path, key) or 0


@dataclass(eq=False)
class V2JobCgroup(JobCgroup):
    name: str
    path: Path
    relative: str  # as /proc/<pid>/cgroup shows it
    oom_kills_before: int = 0
    cpu_before_us: int = 0  # cpu.stat's usage_usec at ``mark``
    marked: bool = False

    def worker_dirs(self) -> list[Path]:
        return [self.path]

    def members(self) -> list[int]:
        return members_below(self.path)

    def pids_dir(self) -> Path:
        return self.path

    def contains(self, pid: int) -> bool:
        return any(line.startswith("0::") and at_or_below(line[3:], self.relative) for line in cgroup_lines(pid))

    def hit_memory_limit(self) -> bool:
        """An oom_kill counted since ``mark`` (memory.events is hierarchical); on a fresh job also
        a peak at the limit (memory.peak, where the kernel has it)."""
        if event_count(self.path / "memory.events", "oom_kill") > self.oom_kills_before:
            return True
        if self.marked:
            return False
        try:
            peak = int((self.path / "memory.peak").read_text())
            limit = int((self.path / "memory.max").read_text())
        except (OSError, ValueError):
            return False
        return peak >= limit - PEAK_MARGIN_BYTES

    def cpu_ms(self) -> int | None:
        used = stat_value(self.path / "cpu.stat", "usage_usec")
        return None if used is None else (used - self.cpu_before_us) // 1000

    def memory_peak_bytes(self) -> int | None:
        """memory.peak counts from the job's start; after ``mark`` no file says the peak since then
        (a reset needs Linux 6.12 and an open descriptor kept for it), so it is unknown."""
        return None if self.marked else read_int(self.path / "memory.peak")

    def mark(self) -> None:
        self.oom_kills_before = event_count(self.path / "memory.events", "oom_kill")
        self.cpu_before_us = stat_value(self.path / "cpu.stat", "usage_usec") or 0
        self.marked = True

    def kill(self) -> None:
        """cgroup.kill (Linux 5.14) kills the whole tree at once; before it, the v2 freezer keeps the
        members from forking while they are signalled (unlike v1's, it lets a fatal signal through).
        Then wait for the end."""
        try:
            (self.path / "cgroup.kill").write_text("1")
        except FileNotFoundError:
            (self.path / "cgroup.freeze").write_text("1")
            self.signal(frozenset(), signal.SIGKILL)
            with contextlib.suppress(FileNotFoundError):
                (self.path / "cgroup.freeze").write_text("0")
        self.kill_by_signal()

    def remove_dirs(self) -> None:
        remove_tree(self.path)


class CgroupsV2(Cgroups):
    version = "v2"

    def __init__(self, root: Path = CGROUP_ROOT, own: str | None = None) -> None:
        self.root = root
        self.own = own
        self.base_relative = ""

    @property
    def base(self) -> Path:
        return self.root / self.base_relative.lstrip("/")

    @property
    def parent(self) -> Path:
        return self.base / PARENT

    def prepare(self) -> None:
        self.base_relative = base_of(self.own if self.own is not None else own_cgroup())
        available = read_words(self.base / "cgroup.controllers")
        missing = [controller for controller in CONTROLLERS if controller not in available]
        if missing:
            raise CgroupUnavailable(
                f"the cgroup v2 controllers {', '.join(missing)} are not available in {self.base}; {DELEGATION_HELP}"
            )
        if not set(CONTROLLERS) <= read_words(self.base / "cgroup.subtree_control"):
            self.move_into_leaf()
            self.enable(self.base)
        try:
            self.parent.mkdir(exist_ok=True)
        except OSError as error:
            raise CgroupUnavailable(f"cannot create {self.parent}: {error.strerror}; {DELEGATION_HELP}") from error
        self.enable(self.parent)

    def problem(self) -> str | None:
        base = self.root / base_of(self.own if self.own is not None else own_cgroup()).lstrip("/")
        missing = [
            controller for controller in CONTROLLERS if controller not in read_words(base / "cgroup.controllers")
        ]
        if missing:
            return f"the cgroup v2 controllers {', '.join(missing)} are not available in {base}; {DELEGATION_HELP}"
        if not writable(base):
            return f"{self.root} is mounted read-only; {DELEGATION_HELP}"
        return None

    def move_into_leaf(self) -> None:
        """Every process of the base cgroup (this one included) into ``<base>/api``."""
        leaf = self.base / LEAF
        try:
            leaf.mkdir(exist_ok=True)
            for _ in range(3):  # processes forked meanwhile are moved on the next pass
                pids = (self.base / "cgroup.procs").read_text().split()
                if not pids:
                    return
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        (leaf / "cgroup.procs").write_text(pid)
        except OSError as error:
            raise CgroupUnavailable(
                f"cannot move the processes of {self.base} into {leaf}: {error.strerror}; {DELEGATION_HELP}"
            ) from error

    def enable(self, cgroup: Path) -> None:
        try:
            (cgroup / "cgroup.subtree_control").write_text(ENABLE)
        except OSError as error:
            reason = "it still holds processes" if error.errno == errno.EBUSY else error.strerror
            raise CgroupUnavailable(
                f"cannot enable {ENABLE} in {cgroup}/cgroup.subtree_control ({reason}); {DELEGATION_HELP}"
            ) from error

    def ready(self) -> bool:
        return bool(self.base_relative) and self.parent.is_dir()

    def job(self, name: str) -> V2JobCgroup:
        return V2JobCgroup(name, self.parent / name, f"{self.base_relative.rstrip('/')}/{PARENT}/{name}")

    def parents(self) -> list[Path]:
        return [self.parent]

    def enable_children(self, path: Path) -> None:
        self.enable(path)

    def create_job(self, name: str, limits: JobLimits) -> V2JobCgroup:
        cgroup = self.job(name)
        cgroup.path.mkdir(exist_ok=True)
        (cgroup.path / "memory.max").write_text(str(limits.memory_bytes))
        with contextlib.suppress(FileNotFoundError):  # absent without swap accounting: no swap anyway
            (cgroup.path / "memory.swap.max").write_text("0")
        (cgroup.path / "pids.max").write_text(str(limits.processes + NSJAIL_PROCESSES))
        (cgroup.path / "cpu.max").write_text(f"{CPU_PERIOD_US} {CPU_PERIOD_US}")  # one CPU
        return cgroup
