"""Per-job cgroups: the memory, process and CPU limits that nsjail alone cannot make observable.

Each job gets its own parent cgroup (``<root>/<api pid>.<job_id>``) in which nsjail creates its
child. The memory limit is written on that parent too, so ``memory.failcnt`` tells an
out-of-memory kill apart from any other SIGKILL after the run. The API's pid in the name lets a
restarted API reap what a crashed one left behind without touching another live instance's jobs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from codeapi.sandbox.processes import signal_pinned

logger = structlog.get_logger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Each controller with a file every non-root cgroup of its v1 flavour has (nsjail's flags need v1).
CONTROLLERS = {"memory": "memory.limit_in_bytes", "pids": "pids.max", "cpu": "cpu.cfs_quota_us"}
PARENT = "codeapi"
PEAK_MARGIN_BYTES = 1024 * 1024
KILL_ATTEMPTS = 100
KILL_PAUSE_S = 0.02


class CgroupUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class JobCgroup:
    name: str  # relative to each controller's mount, e.g. "codeapi/<pid>.<job_id>"

    def path(self, controller: str) -> Path:
        return CGROUP_ROOT / controller / self.name


def prepare_parents() -> None:
    """Create the codeapi parent in each v1 controller; refuse when one is missing or read-only."""
    for controller, marker in CONTROLLERS.items():
        mount = CGROUP_ROOT / controller
        if not mount.is_dir():
            raise CgroupUnavailable(
                f"the cgroup v1 '{controller}' controller is not mounted at {mount}; "
                "memory, process and CPU limits cannot be enforced"
            )
        try:
            (mount / PARENT).mkdir(exist_ok=True)
        except OSError as error:
            raise CgroupUnavailable(f"cannot create {mount / PARENT}: {error.strerror}") from error
        if not (mount / PARENT / marker).is_file():
            raise CgroupUnavailable(f"{mount} is not a cgroup v1 '{controller}' hierarchy (no {marker})")


def parents_ready() -> bool:
    return all((CGROUP_ROOT / controller / PARENT).is_dir() for controller in CONTROLLERS)


def create_job_cgroup(job_id: str, memory_bytes: int) -> JobCgroup:
    cgroup = JobCgroup(f"{PARENT}/{os.getpid()}.{job_id}")
    for controller in CONTROLLERS:
        cgroup.path(controller).mkdir(exist_ok=True)
    memory = cgroup.path("memory")
    (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
    # Swap must never extend the limit: memory+swap gets the same cap (the file exists only with
    # swap accounting), and swappiness 0 keeps the job's pages out of swap in the first place.
    for name in ("memory.memsw.limit_in_bytes", "memory.swappiness"):
        value = memory_bytes if name.startswith("memory.memsw") else 0
        with contextlib.suppress(OSError):
            (memory / name).write_text(str(value))
    return cgroup


def hit_memory_limit(cgroup: JobCgroup) -> bool:
    """Whether usage reached the limit. failcnt stays 0 on some kernels, the peak does not."""
    memory = cgroup.path("memory")
    try:
        peak = int((memory / "memory.max_usage_in_bytes").read_text())
        limit = int((memory / "memory.limit_in_bytes").read_text())
        failures = int((memory / "memory.failcnt").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return failures > 0 or peak >= limit - PEAK_MARGIN_BYTES


def hit_process_limit(cgroup: JobCgroup, processes: int) -> bool:
    """Whether the jail's task count reached its cap, so further forks failed (the parent's peak
    covers nsjail's child cgroup, which is gone by now)."""
    try:
        peak = int((cgroup.path("pids") / "pids.peak").read_text())
    except (FileNotFoundError, ValueError):
        return False
    return peak >= processes


def remove_job_cgroup(cgroup: JobCgroup) -> None:
    """Kill whatever is still inside (a SIGKILLed nsjail's jail dies asynchronously), then remove
    the job's cgroup and nsjail's child in every controller."""
    kill_members(cgroup.path("pids"))
    for controller in CONTROLLERS:
        remove_tree(cgroup.path(controller))


def members(path: Path) -> list[int]:
    """Processes in the cgroup tree at ``path``; none once it is gone (it may go while being read)."""
    found: list[int] = []
    try:
        listings = list(path.rglob("cgroup.procs"))
    except OSError:
        return found
    for procs in listings:
        with contextlib.suppress(OSError, ValueError):
            found += [int(line) for line in procs.read_text().split()]
    return found


def kill_members(path: Path, spared: frozenset[int] = frozenset()) -> None:
    """SIGKILL every process in the cgroup tree but ``spared`` until none is left (pids.max bounds
    any fork race)."""
    for _ in range(KILL_ATTEMPTS):
        if not signal_members(path, spared, signal.SIGKILL):
            return
        time.sleep(KILL_PAUSE_S)
    logger.warning("cgroup.kill_incomplete", path=str(path), remaining=len(members(path)))


def signal_members(path: Path, spared: frozenset[int], signum: int) -> int:
    """Send ``signum`` once to every process in the cgroup tree but ``spared``; returns how many."""
    relative = "/" + "/".join(path.relative_to(CGROUP_ROOT).parts[1:])  # without the controller
    return signal_pinned(members(path), spared, lambda pid: in_cgroup(pid, relative), signum)


def in_cgroup(pid: int, relative: str) -> bool:
    """Whether ``pid`` sits at or below ``relative`` (e.g. "/codeapi/<job>") in some v1 hierarchy."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        place = line.split(":", 2)[-1]
        if place == relative or place.startswith(relative + "/"):
            return True
    return False


def remove_tree(path: Path) -> None:
    if not path.is_dir():
        return
    for child in path.iterdir():
        if child.is_dir():
            remove_tree(child)
    try:
        os.rmdir(path)
    except OSError as error:
        logger.warning("cgroup.remove_failed", path=str(path), error=str(error))


def owner_alive(name: str) -> bool:
    """Whether the API process that created this job cgroup still runs (and is not this one)."""
    owner, _, _ = name.partition(".")
    if not owner.isdigit() or int(owner) == os.getpid():
        return False
    try:
        os.kill(int(owner), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_orphans() -> int:
    """Kill and remove the jobs of API processes that are gone; returns how many were removed.

    A job of this very process is an orphan too: the API only sweeps while starting up.
    """
    names: set[str] = set()
    for controller in CONTROLLERS:
        parent = CGROUP_ROOT / controller / PARENT
        if parent.is_dir():
            names.update(child.name for child in parent.iterdir() if child.is_dir())
    orphans = sorted(name for name in names if not owner_alive(name))
    for name in orphans:
        remove_job_cgroup(JobCgroup(f"{PARENT}/{name}"))
    return len(orphans)
