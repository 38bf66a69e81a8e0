"""cgroup v1: one hierarchy per controller, each with a ``codeapi`` parent holding the job cgroups."""

from __future__ import annotations

import contextlib
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

# Each controller with a file every non-root cgroup of its v1 flavour has.
CONTROLLERS = {"memory": "memory.limit_in_bytes", "pids": "pids.max", "cpu": "cpu.cfs_quota_us"}
NS_PER_MS = 1_000_000


def cpu_accounting(root: Path) -> tuple[str, ...]:
    """cpuacct, which counts a job's CPU time, when it is a hierarchy of its own; mounted together with
    cpu ("cpu,cpuacct", where both names lead) its files are in the job's cpu cgroup already, and
    without it a run's CPU time is unknown."""
    cpuacct = root / "cpuacct"
    separate = cpuacct.is_dir() and cpuacct.resolve() != (root / "cpu").resolve()
    return ("cpuacct",) if separate else ()


@dataclass(eq=False)
class V1JobCgroup(JobCgroup):
    name: str
    root: Path
    controllers: tuple[str, ...]
    cpu_before_ns: int = 0  # cpuacct.usage at ``mark``

    def path(self, controller: str) -> Path:
        return self.root / controller / PARENT / self.name

    def worker_dirs(self) -> list[Path]:
        return [self.path(controller) for controller in self.controllers]

    def members(self) -> list[int]:
        return members_below(self.path("pids"))

    def pids_dir(self) -> Path:
        return self.path("pids")

    def contains(self, pid: int) -> bool:
        relative = f"/{PARENT}/{self.name}"
        return any(at_or_below(line.split(":", 2)[-1], relative) for line in cgroup_lines(pid))

    def hit_memory_limit(self) -> bool:
        """failcnt stays 0 on some kernels, the peak does not."""
        memory = self.path("memory")
        try:
            peak = int((memory / "memory.max_usage_in_bytes").read_text())
            limit = int((memory / "memory.limit_in_bytes").read_text())
            failures = int((memory / "memory.failcnt").read_text())
        except (OSError, ValueError):
            return False
        return failures > 0 or peak >= limit - PEAK_MARGIN_BYTES

    def cpu_usage_ns(self) -> int | None:
        return read_int(self.path("cpuacct") / "cpuacct.usage")

    def cpu_ms(self) -> int | None:
        used = self.cpu_usage_ns()
        return None if used is None else (used - self.cpu_before_ns) // NS_PER_MS

    def memory_peak_bytes(self) -> int | None:
        return read_int(self.path("memory") / "memory.max_usage_in_bytes")  # reset by ``mark``

    def mark(self) -> None:
        for name in ("memory.max_usage_in_bytes", "memory.failcnt"):
            with contextlib.suppress(OSError):
                (self.path("memory") / name).write_text("0")
        self.cpu_before_ns = self.cpu_usage_ns() or 0

    def kill(self) -> None:
        self.kill_by_signal()

    def remove_dirs(self) -> None:
        for controller in self.controllers:
            remove_tree(self.path(controller))


class CgroupsV1(Cgroups):
    version = "v1"

    def __init__(self, root: Path = CGROUP_ROOT) -> None:
        self.root = root
        # No freezer: a task frozen by the v1 freezer ignores SIGKILL until it is thawed, so a jail
        # frozen when its API died (SIGKILL, OOM kill, `docker kill`) could never be killed, nor its
        # container stopped. Kept sandboxes are stopped with SIGSTOP instead (repl/sandbox.py).
        self.controllers: tuple[str, ...] = (*CONTROLLERS, *cpu_accounting(root))

    def prepare(self) -> None:
        for controller in self.controllers:
            mount = self.root / controller
            if not mount.is_dir():
                raise CgroupUnavailable(
                    f"the cgroup v1 '{controller}' controller is not mounted at {mount}; "
                    "memory, process and CPU limits cannot be enforced"
                )
            try:
                (mount / PARENT).mkdir(exist_ok=True)
            except OSError as error:
                raise CgroupUnavailable(f"cannot create {mount / PARENT}: {error.strerror}") from error
            marker = CONTROLLERS.get(controller)
            if marker is not None and not (mount / PARENT / marker).is_file():
                raise CgroupUnavailable(f"{mount} is not a cgroup v1 '{controller}' hierarchy (no {marker})")

    def problem(self) -> str | None:
        for controller in self.controllers:
            mount = self.root / controller
            if not mount.is_dir():
                return f"the cgroup v1 '{controller}' controller is not mounted at {mount}"
            if not writable(mount):
                return f"{mount} is mounted read-only"
        return None

    def ready(self) -> bool:
        return all((self.root / controller / PARENT).is_dir() for controller in self.controllers)

    def job(self, name: str) -> V1JobCgroup:
        return V1JobCgroup(name, self.root, self.controllers)

    def parents(self) -> list[Path]:
        ordered = ("pids", *(controller for controller in self.controllers if controller != "pids"))
        return [self.root / controller / PARENT for controller in ordered]

    def enable_children(self, path: Path) -> None:
        """Nothing to do: a v1 hierarchy's controller applies to every cgroup in it."""

    def create_job(self, name: str, limits: JobLimits) -> V1JobCgroup:
        cgroup = V1JobCgroup(name, self.root, self.controllers)
        for controller in self.controllers:
            cgroup.path(controller).mkdir(exist_ok=True)
        memory = cgroup.path("memory")
        (memory / "memory.limit_in_bytes").write_text(str(limits.memory_bytes))
        # Swap must never extend the limit: memory+swap gets the same cap (the file exists only with
        # swap accounting), and swappiness 0 keeps the job's pages out of swap in the first place.
        for name_, value in (("memory.memsw.limit_in_bytes", limits.memory_bytes), ("memory.swappiness", 0)):
            with contextlib.suppress(OSError):
                (memory / name_).write_text(str(value))
        (cgroup.path("pids") / "pids.max").write_text(str(limits.processes + NSJAIL_PROCESSES))
        (cgroup.path("cpu") / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (cgroup.path("cpu") / "cpu.cfs_quota_us").write_text(str(CPU_PERIOD_US))  # one CPU
        return cgroup
