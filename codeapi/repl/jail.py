"""The processes of one REPL sandbox, by host pid, as the API signals them from outside the jail.

A jail holds nsjail (outside it, on the host side), the jail's init (``catatonit``, its pid 1) and
the worker the zygote forked in; anything else was started by user code and ends with the call.
Between calls the jail's processes are stopped with SIGSTOP, not frozen with the cgroup freezer: a
task frozen by the v1 freezer ignores SIGKILL until it is thawed, so an API killed while its kept
sandboxes slept (SIGKILL, an OOM kill, ``docker kill``) left them, and its container, unkillable. A
stopped process dies on SIGKILL, and nothing inside runs to send it SIGCONT.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from codeapi.errors import SandboxFailure
from codeapi.sandbox.cgroups import JobCgroup
from codeapi.sandbox.processes import signal_pinned
from codeapi.sandbox.runner import SandboxProcess

logger = structlog.get_logger(__name__)

# Once the other processes were signalled, the jail waits this long for them to be gone (or stopped).
STRAYS_WAIT_S = 1.0
STRAYS_PAUSE_S = 0.002
STOPPED_STATES = ("T", "t")  # /proc/<pid>/stat: stopped by a signal, or by a tracer
# A signalled process stops within microseconds once it runs: the first check comes after a mere
# yield, later ones after STOP_CHECK_S (spinning on /proc would cost the API CPU on every call).
STOP_CHECK_S = 0.0005


@dataclass
class Jail:
    sandbox: SandboxProcess
    init_pid: int
    init_pidfd: int  # readable once the init exited (user code may end it: the jail then dies)
    worker_pid: int  # the current worker; a new one replaces it after each kept call

    @property
    def cgroup(self) -> JobCgroup | None:
        return self.sandbox.cgroup

    @property
    def running(self) -> bool:
        return self.sandbox.process.returncode is None and not readable(self.init_pidfd)

    def others(self, keep_worker: bool) -> list[int]:
        """The jail's processes but its init and nsjail (and, with ``keep_worker``, the worker).
        Without cgroups the jail's processes are those in its pid namespace."""
        spared = {self.init_pid, self.sandbox.process.pid}
        spared |= {self.worker_pid} if keep_worker else set()
        if self.cgroup is not None:
            members = self.cgroup.members()
        else:
            namespace = pid_namespace(self.init_pid)
            members = [] if namespace is None else pid_namespace_members(namespace)
        return [pid for pid in members if pid not in spared]

    def belongs(self, pid: int) -> bool:
        if self.cgroup is not None:
            return self.cgroup.contains(pid)
        namespace = pid_namespace(self.init_pid)
        return namespace is not None and pid_namespace(pid) == namespace

    def signal(self, pids: list[int], signum: int) -> int:
        return signal_pinned(pids, frozenset(), self.belongs, signum)

    async def kill_others(self, keep_worker: bool) -> None:
        """Until no other process is left to kill (pids.max bounds any fork race)."""
        give_up = time.monotonic() + STRAYS_WAIT_S
        while self.signal(self.others(keep_worker), signal.SIGKILL):
            if time.monotonic() > give_up:
                logger.warning("repl.strays_survived", init_pid=self.init_pid)
                return
            await asyncio.sleep(STRAYS_PAUSE_S)

    async def wait_reaped(self) -> None:
        """Until the worker and the init have reaped the killed processes (a zombie would hold a slot
        of the pids limit); bounded by STRAYS_WAIT_S."""
        give_up = time.monotonic() + STRAYS_WAIT_S
        while (has_children(self.worker_pid) or has_children(self.init_pid)) and time.monotonic() < give_up:
            await asyncio.sleep(STRAYS_PAUSE_S)

    async def pause(self) -> bool:
        """Stop every process but the init until all are stopped (one that forked while the others
        were being stopped is caught by the next pass), so nothing runs between calls; False when
        they could not all be stopped within STRAYS_WAIT_S."""
        give_up = time.monotonic() + STRAYS_WAIT_S
        pause_s = 0.0
        while running := [pid for pid in self.others(keep_worker=False) if not stopped(pid)]:
            self.signal(running, signal.SIGSTOP)
            if time.monotonic() > give_up:
                logger.warning("repl.pause_failed", init_pid=self.init_pid, running=len(running))
                return False
            await asyncio.sleep(pause_s)
            pause_s = STOP_CHECK_S
        return True

    def resume(self) -> None:
        self.signal(self.others(keep_worker=False), signal.SIGCONT)


def stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped (a process gone meanwhile counts as stopped: it cannot run)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in STOPPED_STATES


def has_children(pid: int) -> bool:
    """Whether any thread of ``pid`` has a child (zombies included)."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    for thread in threads:
        try:
            if Path(f"/proc/{pid}/task/{thread}/children").read_text().strip():
                return True
        except OSError:
            continue
    return False


def readable(fd: int) -> bool:
    """Whether ``fd`` polls readable now (poll, not select: a descriptor may be numbered >= 1024)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def pid_namespace(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/pid").st_ino
    except OSError:
        return None


def pid_namespace_members(namespace: int) -> list[int]:
    """Host processes in the pid namespace ``namespace`` (an inode number)."""
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and pid_namespace(int(name)) == namespace]


def jailed_child(nsjail_pid: int) -> int:
    """The jail's init, by host pid: nsjail's only child in ONCE mode."""
    children = Path(f"/proc/{nsjail_pid}/task/{nsjail_pid}/children").read_text().split()
    if len(children) != 1:
        raise SandboxFailure(f"nsjail has {len(children)} children, expected 1")
    return int(children[0])
