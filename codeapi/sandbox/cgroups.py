"""Per-job cgroups: one interface, a cgroup v1 and a unified v2 implementation, chosen by the host.

Each job gets its own cgroup (``<jobs parent>/<owner>/<job_id>``) holding its memory, process and
CPU limits. Our code, not nsjail, places the jail there: nsjail starts inside the job's cgroup
(``placement_argv``), so the jail's cgroup namespace is created at that cgroup and the jail sees
none of the host's layout in ``/proc/self/cgroup``; nsjail's own cgroup flags are v1-only and would
put the jail one level below, under a name carrying its host pid. The warm path's worker joins the
same directories (``worker_dirs``). ``<owner>`` is the API instance's own directory, named after its
pid and locked by it for its lifetime (instances.py): a starting API reaps only the owner directories
nobody holds, never a live instance's, even one whose pid it cannot see.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import structlog

from codeapi.sandbox.instances import DirectoryLock, try_lock
from codeapi.sandbox.processes import signal_pinned
from codeapi.units import MB

logger = structlog.get_logger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PARENT = "codeapi"
PEAK_MARGIN_BYTES = MB
KILL_ATTEMPTS = 100
KILL_PAUSE_S = 0.02
# nsjail itself sits in the job's cgroup beside the jail: one more process than the job may start.
NSJAIL_PROCESSES = 1
CPU_PERIOD_US = 100_000
# Writes "0" (the writing shell) into each listed cgroup.procs, then execs the rest: the jail's
# namespaces are created with nsjail already inside its job's cgroup. 125: placement failed.
PLACEMENT_SCRIPT = 'while [ "$1" != -- ]; do echo 0 >"$1/cgroup.procs" || exit 125; shift; done; shift; exec "$@"'
PLACEMENT_FAILED = 125
OWNER_ATTEMPTS = 100


class CgroupUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class JobLimits:
    memory_bytes: int
    processes: int


class JobCgroup(ABC):
    """One job's cgroup in every hierarchy it needs."""

    name: str  # "<owner>/<job_id>", the same in every hierarchy

    @abstractmethod
    def worker_dirs(self) -> list[Path]:
        """The directories whose cgroup.procs a process joins to live under this job's limits."""

    @abstractmethod
    def members(self) -> list[int]:
        """Host pids in the job's cgroup tree (none once it is gone)."""

    @abstractmethod
    def contains(self, pid: int) -> bool:
        """Whether ``pid`` sits in this job's cgroup tree (read from /proc, for pinned signalling)."""

    @abstractmethod
    def hit_memory_limit(self) -> bool:
        """Whether the job reached its memory limit since the last ``mark``."""

    @abstractmethod
    def pids_dir(self) -> Path:
        """The directory with the job's pids.max and pids.peak."""

    @abstractmethod
    def cpu_ms(self) -> int | None:
        """CPU time the job's processes used since ``mark`` (or since the job began); None where the host
        does not count it."""

    @abstractmethod
    def memory_peak_bytes(self) -> int | None:
        """The job's highest memory use since ``mark`` (or since the job began); None where the host
        cannot say."""

    def hit_process_limit(self) -> bool:
        """Whether the job's task count reached its cap, so further forks failed (pids.peak, where
        the kernel has it)."""
        try:
            peak = int((self.pids_dir() / "pids.peak").read_text())
            cap = int((self.pids_dir() / "pids.max").read_text())
        except (OSError, ValueError):
            return False
        return peak >= cap

    @abstractmethod
    def mark(self) -> None:
        """Start counting memory peaks, out-of-memory kills and CPU time from here (a kept sandbox's next call)."""

    @abstractmethod
    def kill(self) -> None:
        """SIGKILL everything inside until nothing is left."""

    @abstractmethod
    def remove_dirs(self) -> None: ...

    def placement_argv(self) -> list[str]:
        return ["/bin/sh", "-c", PLACEMENT_SCRIPT, "sh", *map(str, self.worker_dirs()), "--"]

    def signal(self, spared: frozenset[int], signum: int) -> int:
        """Send ``signum`` once to every process inside but ``spared``; returns how many."""
        return signal_pinned(self.members(), spared, self.contains, signum)

    def kill_by_signal(self) -> None:
        """SIGKILL every member until none is left (pids.max bounds any fork race)."""
        for _ in range(KILL_ATTEMPTS):
            if not self.signal(frozenset(), signal.SIGKILL):
                return
            time.sleep(KILL_PAUSE_S)
        logger.warning("cgroup.kill_incomplete", name=self.name, remaining=len(self.members()))

    def remove(self) -> None:
        """Kill whatever is still inside (a SIGKILLed nsjail's jail dies asynchronously), then remove."""
        self.kill()
        self.remove_dirs()


class Cgroups(ABC):
    """The host's cgroup hierarchy as codeapi uses it; ``claim`` makes this instance's owner directory."""

    version: str
    owner = ""
    owner_lock: DirectoryLock | None = None

    @abstractmethod
    def prepare(self) -> None:
        """Create the jobs' parent and enable what it needs; raise CgroupUnavailable saying why not."""

    @abstractmethod
    def problem(self) -> str | None:
        """What stops ``prepare`` from succeeding, found without changing anything (None: nothing)."""

    @abstractmethod
    def ready(self) -> bool: ...

    @abstractmethod
    def create_job(self, name: str, limits: JobLimits) -> JobCgroup: ...

    @abstractmethod
    def job(self, name: str) -> JobCgroup:
        """A job's (or a whole owner directory's) cgroup by name."""

    @abstractmethod
    def parents(self) -> list[Path]:
        """The jobs' parent in each hierarchy; the first one holds the owners' locks."""

    @abstractmethod
    def enable_children(self, path: Path) -> None:
        """Make the controllers available to the children of ``path``."""

    def create(self, job_id: str, limits: JobLimits) -> JobCgroup:
        if not self.owner:
            raise CgroupUnavailable("no owner directory: claim() comes before the first job")
        return self.create_job(f"{self.owner}/{job_id}", limits)

    def claim(self) -> None:
        """Create and lock this instance's owner directory: its pid, or the pid with a suffix when
        an instance in another pid namespace holds that name."""
        for attempt in range(OWNER_ATTEMPTS):
            name = str(os.getpid()) if attempt == 0 else f"{os.getpid()}.{attempt}"
            places = [parent / name for parent in self.parents()]
            for place in places:
                place.mkdir(exist_ok=True)
                self.enable_children(place)
            lock = try_lock(places[0])
            if lock is not None and places[0].is_dir():  # not swept away between mkdir and lock
                self.owner, self.owner_lock = name, lock
                return
            if lock is not None:
                lock.release()
        raise CgroupUnavailable(f"no free owner directory under {self.parents()[0]}")

    def release(self) -> None:
        """Remove this instance's owner directory (its jobs are gone by now) and let go of it."""
        if self.owner_lock is not None:
            self.job(self.owner).remove()
            self.owner_lock.release()
            self.owner_lock = None

    def owners(self) -> set[str]:
        names: set[str] = set()
        for parent in self.parents():
            if parent.is_dir():
                names.update(child.name for child in parent.iterdir() if child.is_dir())
        return names

    def job_names(self) -> set[str]:
        """Every job as "<owner>/<job_id>"."""
        names: set[str] = set()
        for parent in self.parents():
            for owner in parent.iterdir() if parent.is_dir() else ():
                if owner.is_dir():
                    names.update(f"{owner.name}/{job.name}" for job in owner.iterdir() if job.is_dir())
        return names

    def sweep(self) -> int:
        """Kill and remove every owner directory nobody holds (a dead instance's); returns how many.

        The lock alone decides, not whether a process of the directory's pid is alive: pids are
        reused, and a dead instance's jobs were spared while an unrelated process had its pid.
        """
        removed = 0
        for owner in sorted(self.owners() - {self.owner}):
            lock = try_lock(self.parents()[0] / owner)
            if lock is None and (self.parents()[0] / owner).is_dir():
                continue  # a live instance's
            try:  # unlocked, or half removed already (gone from the first hierarchy only)
                self.job(owner).remove()
                removed += 1
            finally:
                if lock is not None:
                    lock.release()
        return removed


def members_below(path: Path) -> list[int]:
    """Processes in the cgroup tree at ``path``; none once it is gone (it may go while being read)."""
    found: list[int] = []
    try:
        listings = list(path.rglob("cgroup.procs"))
    except OSError:
        return found
    for procs in listings:
        try:
            found += [int(line) for line in procs.read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def read_int(path: Path) -> int | None:
    """A cgroup file holding one number; None when the host has no such file (or the job is gone)."""
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return None


def writable(path: Path) -> bool:
    """Whether root can write below ``path``: it exists on a file system mounted read-write."""
    try:
        return not os.statvfs(path).f_flag & os.ST_RDONLY
    except OSError:
        return False


def cgroup_lines(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return []


def at_or_below(place: str, relative: str) -> bool:
    return place == relative or place.startswith(relative + "/")


def remove_tree(path: Path) -> None:
    """rmdir deepest first; a cgroup directory is removable once it holds no process. A killed
    process leaves cgroup.procs when it starts exiting but keeps its cgroup busy until it is gone,
    so EBUSY is retried for a while."""
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            remove_tree(child)
    for attempt in range(KILL_ATTEMPTS):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY or attempt == KILL_ATTEMPTS - 1:
                logger.warning("cgroup.remove_failed", path=str(path), error=str(error))
                return
            time.sleep(KILL_PAUSE_S)
