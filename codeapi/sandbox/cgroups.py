"""Per-job cgroups: the memory, process and CPU limits that nsjail alone cannot make observable.

Each job gets its own parent cgroup (``<root>/<job_id>``) in which nsjail creates its child.
The memory limit is written on that parent too, so ``memory.failcnt`` tells an out-of-memory
kill apart from any other SIGKILL after the run, and leftovers are swept by job id.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

logger = structlog.get_logger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("memory", "pids", "cpu")
PARENT = "codeapi"
PEAK_MARGIN_BYTES = 1024 * 1024


class CgroupUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class JobCgroup:
    name: str  # relative to each controller's mount, e.g. "codeapi/<job_id>"

    def path(self, controller: str) -> Path:
        return CGROUP_ROOT / controller / self.name


def prepare_parents() -> None:
    """Create the codeapi parent in each v1 controller; refuse when a controller is missing."""
    for controller in CONTROLLERS:
        mount = CGROUP_ROOT / controller
        if not mount.is_dir():
            raise CgroupUnavailable(
                f"cgroup v1 controller '{controller}' is not mounted at {mount}; "
                "memory and process limits cannot be enforced"
            )
        (mount / PARENT).mkdir(exist_ok=True)


def create_job_cgroup(job_id: str, memory_bytes: int) -> JobCgroup:
    cgroup = JobCgroup(f"{PARENT}/{job_id}")
    for controller in CONTROLLERS:
        cgroup.path(controller).mkdir(exist_ok=True)
    memory = cgroup.path("memory")
    (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
    # Without swap accounting the file is absent; with it, swap must not extend the limit.
    with contextlib.suppress(FileNotFoundError, PermissionError, OSError):
        (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
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


def remove_job_cgroup(cgroup: JobCgroup) -> None:
    """Remove the job's cgroup and any child nsjail left behind (a SIGKILLed nsjail leaves one)."""
    for controller in CONTROLLERS:
        remove_tree(cgroup.path(controller))


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


def sweep_orphans() -> int:
    """Remove job cgroups left by a crashed API process; returns how many were removed."""
    removed = 0
    for controller in CONTROLLERS:
        parent = CGROUP_ROOT / controller / PARENT
        if not parent.is_dir():
            continue
        for child in parent.iterdir():
            if child.is_dir():
                remove_tree(child)
                removed += 1
    return removed
