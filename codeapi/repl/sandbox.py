"""One REPL sandbox as the API sees it: an nsjail jail, plus a worker the zygote forked into it.

The runner starts the jail exactly as a one-shot run (``NsjailRunner.spawn``: own uid from the
pool, own job directories, own cgroup with MAX_MEMORY_MB, no network, the seccomp policy). Its
first process says it is up and becomes ``catatonit``, a minimal init that holds the jail's
namespaces and reaps orphans; then the zygote forks the worker into the jail (see zygote.py).
Between calls the jail is frozen (``SandboxProcess.freeze``), so what a call left behind gets no CPU.

The API is the worker's only peer and watches each call from outside the jail: it reads the
worker's stdout and stderr pipes itself (capped while they stream), enforces the deadline, and
when the code has returned it kills every other process in the jail's cgroup, so a kept sandbox
carries no background process of one call into the time after it. A call that overruns, floods
its output, crashes the worker or sends anything but its own report breaks the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import os
import secrets
import select
import shutil
import signal
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from codeapi.errors import SandboxFailure
from codeapi.languages.spec import LanguageSpec
from codeapi.repl import protocol
from codeapi.repl.output import SandboxOutput
from codeapi.repl.zygote_process import ZygoteProcess
from codeapi.sandbox.cgroups import JobCgroup
from codeapi.sandbox.policy import Bind, SandboxJob, SandboxLimits, SandboxResult, Termination
from codeapi.sandbox.processes import signal_pinned
from codeapi.sandbox.runner import NsjailRunner, SandboxProcess
from codeapi.sandbox.workspace import JobDirs, Workspaces

logger = structlog.get_logger(__name__)

INIT = "/usr/bin/catatonit"
# The jail sees, in place of INIT, a copy it may run but not read: a process started from a file its
# user cannot read is not dumpable, so user code can neither read nor write the init's memory
# (/proc/1/mem) nor ptrace it, and the init (which outlives every call) cannot be made to run its code.
EXECUTE_ONLY = 0o111
READY_LINE = b"ready\n"
# Once the other processes were sent SIGKILL, the call waits this long for them to be gone.
STRAYS_WAIT_S = 1.0
STRAYS_PAUSE_S = 0.002


# The jail's pid 1: say so on stdout (namespaces, mounts, uid and seccomp are all in place once a
# command runs), then become catatonit, which holds the jail open and reaps orphans, silently.
INIT_ARGV = ("/bin/sh", "-c", f"echo ready && exec {INIT} -P >/dev/null")


@dataclass(frozen=True)
class ReplLauncher:
    """Everything REPL sandboxes share; built once in app.py."""

    runner: NsjailRunner
    workspaces: Workspaces
    zygote: ZygoteProcess
    spec: LanguageSpec
    runtime_dir: Path
    limits: SandboxLimits  # time_s is the jail's whole lifetime
    seed_home: Callable[[JobDirs], None]
    warmup_timeout_s: float
    max_state_bytes: int

    def __post_init__(self) -> None:
        copy = self.init_copy
        shutil.copyfile(INIT, copy.with_suffix(".new"))
        copy.with_suffix(".new").chmod(EXECUTE_ONLY)
        copy.with_suffix(".new").replace(copy)

    @property
    def init_copy(self) -> Path:
        return self.workspaces.system_dir / "catatonit"

    def extra_binds(self) -> tuple[Bind, ...]:
        # The zygote imported the data stack from the host path: modules load data files
        # (fonts, tables) through it later, so the venv is visible there too, read-only.
        venv = self.runtime_dir / "python"
        return (Bind(self.init_copy, INIT), Bind(venv, str(venv)))

    @property
    def max_frame_bytes(self) -> int:
        return protocol.frame_cap(self.max_state_bytes)


@dataclass(frozen=True)
class CallResult:
    """What the API observed (output, time, how it ended) and, after a normal end, the worker's
    own word on the call (whether the code raised, its state): it cannot change the former."""

    result: SandboxResult
    report: protocol.Done | None
    worker_died: bool  # the sandbox cannot take another call

    @property
    def failed(self) -> bool:
        return self.report is not None and self.report.failed


@dataclass
class Jail:
    """The processes of one sandbox, by host pid, and the runner's handle on its nsjail."""

    sandbox: SandboxProcess
    init_pid: int
    init_pidfd: int  # readable once the init exited (user code may end it: the jail then dies)
    worker_pid: int

    @property
    def cgroup(self) -> JobCgroup | None:
        return self.sandbox.cgroup

    @property
    def running(self) -> bool:
        return self.sandbox.process.returncode is None and not readable(self.init_pidfd)

    def signal_others(self, keep_worker: bool, signum: int) -> int:
        """Signal the jail's processes but its init and nsjail (and, with ``keep_worker``, the worker);
        returns how many. Without cgroups the jail's processes are those in its pid namespace."""
        spared = {self.init_pid, self.sandbox.process.pid}
        spared |= {self.worker_pid} if keep_worker else set()
        if self.cgroup is not None:
            return self.cgroup.signal(frozenset(spared), signum)
        namespace = pid_namespace(self.init_pid)
        if namespace is None:
            return 0
        in_jail = pid_namespace_members(namespace)
        return signal_pinned(in_jail, frozenset(spared), lambda pid: pid_namespace(pid) == namespace, signum)

    async def kill_others(self, keep_worker: bool) -> None:
        """Until no other process is left to kill (pids.max bounds any fork race)."""
        give_up = time.monotonic() + STRAYS_WAIT_S
        while self.signal_others(keep_worker, signal.SIGKILL):
            if time.monotonic() > give_up:
                logger.warning("repl.strays_survived", init_pid=self.init_pid)
                return
            await asyncio.sleep(STRAYS_PAUSE_S)

    async def freeze_when_reaped(self) -> None:
        """Freeze the jail once the worker and the init have reaped the call's killed processes (a
        zombie would hold a slot of the pids limit until the next call); bounded by STRAYS_WAIT_S."""
        give_up = time.monotonic() + STRAYS_WAIT_S
        while (has_children(self.worker_pid) or has_children(self.init_pid)) and time.monotonic() < give_up:
            await asyncio.sleep(STRAYS_PAUSE_S)
        self.sandbox.freeze()


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


class Lifecycle(enum.Enum):
    FRESH = "fresh"  # started, no user code ran in it yet: /mnt/data may take a call's inputs
    USED = "used"  # user code ran in it; alive between calls (a kept or returned sandbox)
    BROKEN = "broken"  # cannot take another call: it is being or will be destroyed


@dataclass
class ReplSandbox:
    launcher: ReplLauncher
    job_id: str
    dirs: JobDirs
    jail: Jail
    stack: AsyncExitStack
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    output: SandboxOutput
    created_at: float = field(default_factory=time.monotonic)
    last_used_at: float = field(default_factory=time.monotonic)
    lifecycle: Lifecycle = Lifecycle.FRESH
    revision: str | None = None  # the saved state this sandbox's namespace corresponds to
    # /mnt/data as the last call left it: name -> (file id, fingerprint), kept by the execution layer
    manifest: dict[str, tuple[str, object]] = field(default_factory=dict)

    @property
    def alive(self) -> bool:
        return self.lifecycle is not Lifecycle.BROKEN and self.jail.running

    @property
    def cgroup(self) -> JobCgroup | None:
        return self.jail.cgroup

    async def call(
        self, code: str, args: tuple[str, ...], timeout_s: float, save: protocol.Save, restore: bytes | None
    ) -> CallResult:
        self.lifecycle = Lifecycle.USED
        request = protocol.Run(secrets.token_hex(16), code.encode(), args, save, restore)
        self.jail.sandbox.thaw()  # kept sandboxes sleep frozen between calls
        if self.cgroup is not None:
            self.cgroup.mark()
        self.output.begin(self.launcher.limits.output_bytes)
        started = time.monotonic()
        try:
            ending, report = await self.exchange(protocol.encode(request), request.call, timeout_s)
            # The call's other processes end with it; the worker survives only a normal end.
            await self.jail.kill_others(keep_worker=ending is Termination.EXITED)
        except BaseException:
            self.lifecycle = Lifecycle.BROKEN  # cancelled mid-call: the sandbox is in an unknown state
            raise
        stdout, stderr = self.output.finish()
        if ending is Termination.EXITED and (stdout.truncated or stderr.truncated):
            ending = Termination.OUTPUT_LIMIT  # printed over the cap just before it reported
            await self.jail.kill_others(keep_worker=False)
        wall_ms = int((time.monotonic() - started) * 1000)
        self.last_used_at = time.monotonic()
        exit_code = report.exit_code if report is not None else 0
        worker_died = ending is None
        if ending is not Termination.EXITED:
            self.lifecycle = Lifecycle.BROKEN
            report = None
            ending, exit_code = await self.abnormal_end(ending)
        else:
            await self.jail.freeze_when_reaped()  # leftover threads get no CPU until the next call
        output = (bytes(stdout.data), bytes(stderr.data), stdout.truncated, stderr.truncated)
        return CallResult(SandboxResult(exit_code, *output, wall_ms, ending), report, worker_died)

    async def exchange(
        self, request: bytes, call: str, timeout_s: float
    ) -> tuple[Termination | None, protocol.Done | None]:
        """Send the call and wait for its report, an output overflow or the deadline.

        Returns EXITED with the report, OUTPUT_LIMIT, TIMEOUT, or None when the worker died or
        broke the protocol: sent anything but the report naming this call (a thread left over from
        an earlier call cannot know the name). Only the report leaves the worker alive.
        """
        reading = asyncio.ensure_future(self.send_and_read(request))
        overflow = asyncio.ensure_future(self.output.overflowed.wait())
        try:
            done, _ = await asyncio.wait({reading, overflow}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, overflow):
                task.cancel()
        if reading in done:
            try:
                report = reading.result()
            except (asyncio.IncompleteReadError, protocol.ProtocolError, ConnectionError) as error:
                logger.debug("repl.worker_gone", job_id=self.job_id, error=type(error).__name__)
                return None, None
            if not isinstance(report, protocol.Done) or report.call != call:
                logger.warning("repl.unrequested_report", job_id=self.job_id)
                return None, None
            return Termination.EXITED, report
        return (Termination.OUTPUT_LIMIT if overflow in done else Termination.TIMEOUT), None

    async def send_and_read(self, request: bytes) -> protocol.Message:
        self.writer.write(request)
        await self.writer.drain()
        return await read_message(self.reader, self.launcher.max_frame_bytes)

    async def abnormal_end(self, ending: Termination | None) -> tuple[Termination, int]:
        """How a call that broke the sandbox ended (None: the worker died or broke the protocol)."""
        if ending is not None:
            return ending, -signal.SIGKILL
        status = await self.launcher.zygote.exit_status(self.jail.worker_pid)
        if self.cgroup is not None and self.cgroup.hit_memory_limit():
            return Termination.MEMORY, 128 + signal.SIGKILL
        if status is not None and status < 0:
            return Termination.SIGNALLED, 128 - status
        return Termination.EXITED, status if status is not None else 1

    async def destroy(self) -> None:
        self.lifecycle = Lifecycle.BROKEN
        self.writer.close()
        await self.stack.aclose()


async def read_message(reader: asyncio.StreamReader, max_frame_bytes: int) -> protocol.Message:
    header_len, body_len = protocol.PREFIX.unpack(await reader.readexactly(protocol.PREFIX.size))
    protocol.check_lengths(header_len, body_len, max_frame_bytes)
    header = protocol.parse_header(await reader.readexactly(header_len), body_len)
    return protocol.split_body(header, await reader.readexactly(body_len))


def jailed_child(nsjail_pid: int) -> int:
    """The jail's init, by host pid: nsjail's only child in ONCE mode."""
    children = Path(f"/proc/{nsjail_pid}/task/{nsjail_pid}/children").read_text().split()
    if len(children) != 1:
        raise SandboxFailure(f"nsjail has {len(children)} children, expected 1")
    return int(children[0])


async def start_sandbox(launcher: ReplLauncher) -> ReplSandbox:
    job_id = f"repl-{secrets.token_hex(8)}"
    stack = AsyncExitStack()
    try:
        dirs = await stack.enter_async_context(launcher.workspaces.job(job_id))
        launcher.seed_home(dirs)
        sandbox = await launch(launcher, job_id, dirs, stack)
    except BaseException:
        await stack.aclose()
        raise
    return sandbox


async def launch(launcher: ReplLauncher, job_id: str, dirs: JobDirs, stack: AsyncExitStack) -> ReplSandbox:
    deadline = time.monotonic() + launcher.warmup_timeout_s
    api_end, worker_end = socket.socketpair()
    stack.callback(api_end.close)
    stdout_read, stdout_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    output = SandboxOutput(stdout_read, stderr_read)
    stack.callback(output.close)
    with contextlib.ExitStack() as handed_over:  # the API's copies of what the worker keeps
        handed_over.callback(worker_end.close)
        for fd in (stdout_write, stderr_write):
            handed_over.callback(os.close, fd)
        sandbox_process = await launcher.runner.spawn(
            jail_job(launcher, job_id, dirs), stderr=asyncio.subprocess.DEVNULL, freezable=True
        )
        stack.push_async_callback(sandbox_process.close)
        process = sandbox_process.process
        await wait_ready(process, dirs, job_id, deadline)
        init_pid = jailed_child(process.pid)
        pidfd = os.pidfd_open(init_pid)
        stack.callback(os.close, pidfd)
        if jailed_child(process.pid) != init_pid:  # the pidfd must name the jail's init itself
            raise SandboxFailure("the jail's init changed while it was being joined")
        worker_pid = await launcher.zygote.spawn(
            init_pid,
            pidfd,
            (worker_end.fileno(), stdout_write, stderr_write),
            dirs.uid,
            [str(path) for path in cgroup.worker_dirs()] if (cgroup := sandbox_process.cgroup) else [],
            launcher.max_state_bytes,
        )
    reader, writer = await asyncio.open_unix_connection(sock=api_end)
    jail = Jail(sandbox_process, init_pid, pidfd, worker_pid)
    sandbox = ReplSandbox(launcher, job_id, dirs, jail, stack, reader, writer, output)
    try:
        ready = await asyncio.wait_for(
            read_message(reader, protocol.SMALL_FRAME_BYTES), max(deadline - time.monotonic(), 0.01)
        )
    except (TimeoutError, asyncio.IncompleteReadError, protocol.ProtocolError, ConnectionError) as error:
        raise SandboxFailure(f"the REPL worker did not become ready ({type(error).__name__})") from error
    if not isinstance(ready, protocol.Ready):
        raise SandboxFailure(f"the REPL worker sent {type(ready).__name__} instead of Ready")
    sandbox_process.freeze()  # until its first call
    return sandbox


async def wait_ready(process: asyncio.subprocess.Process, dirs: JobDirs, job_id: str, deadline: float) -> None:
    """Until the jail's first process reports (or nsjail gives up, which closes the pipe)."""
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), max(deadline - time.monotonic(), 0.01))
    except TimeoutError:
        line = b""
    if line != READY_LINE:
        log = dirs.log_file(job_id).read_text(errors="replace") if dirs.log_file(job_id).exists() else ""
        detail = [item for item in log.splitlines() if item.startswith(("[E]", "[F]"))][-1:]
        raise SandboxFailure(f"the REPL jail did not start{': ' + detail[0] if detail else ''}")


def jail_job(launcher: ReplLauncher, job_id: str, dirs: JobDirs) -> SandboxJob:
    """The jail a worker joins: Python's limits, mounts and env, with the init as its program."""
    return launcher.spec.sandbox_job(
        dirs, job_id, INIT_ARGV, launcher.limits, launcher.runtime_dir, extra_binds=launcher.extra_binds()
    )
