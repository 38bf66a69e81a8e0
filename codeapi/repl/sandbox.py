"""One REPL sandbox as the API sees it: an nsjail jail running the supervisor, plus a zygote-forked worker.

nsjail builds the jail exactly as for a one-shot run (``codeapi.sandbox.nsjail.render``: own uid
from the pool, own job directories, own cgroup with MAX_MEMORY_MB, no network, the seccomp policy)
and passes two sockets to the supervisor with ``--pass_fd``. Once the supervisor says hello, the
zygote forks a worker into the same jail (see zygote.py). The API talks to the supervisor only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from codeapi.errors import SandboxFailure
from codeapi.languages.spec import LanguageSpec
from codeapi.repl import protocol
from codeapi.repl.zygote_process import ZygoteProcess
from codeapi.sandbox import cgroups
from codeapi.sandbox.nsjail import render
from codeapi.sandbox.policy import Bind, SandboxJob, SandboxLimits, SandboxResult, Termination
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import JobDirs, Workspaces

logger = structlog.get_logger(__name__)

REPL_MOUNT = "/opt/repl"  # the supervisor imports codeapi.repl from here
SUPERVISOR_BOOT = (
    f"import sys; sys.path.insert(0, {REPL_MOUNT!r}); "
    "from codeapi.repl.supervisor import main; sys.exit(main(sys.argv))"
)
# The supervisor enforces the call's deadline itself; this backstop only catches a jail that hangs.
BACKSTOP_GRACE_S = 5.0
STOP_GRACE_S = 1.0


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

    def binds(self) -> tuple[Bind, ...]:
        venv = self.runtime_dir / "python"
        return (
            *(mount.bind(self.runtime_dir) for mount in self.spec.mounts),
            # The zygote imported the data stack from the host path: modules load data files
            # (fonts, tables) through it later, so the venv is visible there too, read-only.
            Bind(venv, str(venv)),
            Bind(self.zygote.supervisor_root, REPL_MOUNT),
        )

    @property
    def max_frame_bytes(self) -> int:
        return protocol.frame_cap(self.max_state_bytes, self.limits.output_bytes)


@dataclass(frozen=True)
class CallResult:
    result: SandboxResult
    state: bytes | None = None
    state_raw_bytes: int = 0
    state_skipped: tuple[str, ...] = ()
    state_too_large_bytes: int | None = None
    failed: bool = False  # the code raised
    worker_died: bool = False  # the sandbox cannot take another call


@dataclass
class ReplSandbox:
    launcher: ReplLauncher
    job_id: str
    dirs: JobDirs
    cgroup: cgroups.JobCgroup | None
    stack: AsyncExitStack
    process: asyncio.subprocess.Process
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    worker_pid: int = 0
    created_at: float = field(default_factory=time.monotonic)
    last_used_at: float = field(default_factory=time.monotonic)
    session_id: str | None = None
    revision: str | None = None  # the saved state this sandbox's namespace corresponds to
    # /mnt/data as the last call left it: name -> (file id, fingerprint), kept by the execution layer
    manifest: dict[str, tuple[str, object]] = field(default_factory=dict)
    used: bool = False
    broken: bool = False
    calls: int = 0

    @property
    def alive(self) -> bool:
        return not self.broken and self.process.returncode is None

    async def call(
        self, code: str, args: tuple[str, ...], timeout_s: float, save: str, restore: bytes | None
    ) -> CallResult:
        self.used = True
        self.calls += 1
        header: dict[str, Any] = {
            "type": protocol.RUN,
            "id": str(self.calls),
            "code": code,
            "args": list(args),
            "timeout_s": timeout_s,
            "output_bytes": self.launcher.limits.output_bytes,
            "save": save,
            "max_state_bytes": self.launcher.max_state_bytes,
        }
        reset_memory_peak(self.cgroup)
        started = time.monotonic()
        try:
            self.writer.write(protocol.encode(header, {"state": restore} if restore is not None else None))
            await self.writer.drain()
            frame = await asyncio.wait_for(
                read_frame(self.reader, self.launcher.max_frame_bytes), timeout_s + BACKSTOP_GRACE_S
            )
        except (TimeoutError, asyncio.IncompleteReadError, protocol.ProtocolError, ConnectionError) as error:
            self.broken = True
            logger.warning("repl.channel_failed", job_id=self.job_id, error=type(error).__name__)
            wall_ms = int((time.monotonic() - started) * 1000)
            termination = Termination.TIMEOUT if isinstance(error, TimeoutError) else Termination.SIGNALLED
            return CallResult(SandboxResult(-9, b"", b"", False, False, wall_ms, termination), worker_died=True)
        self.last_used_at = time.monotonic()
        return await self.interpret(frame)

    async def interpret(self, frame: protocol.Frame) -> CallResult:
        header = frame.header
        worker = header.get("worker") if isinstance(header.get("worker"), dict) else {}
        assert isinstance(worker, dict)
        ending = header.get("ending")
        exit_code = worker.get("exit_code") if isinstance(worker.get("exit_code"), int) else 0
        assert isinstance(exit_code, int)
        termination = Termination.EXITED
        if ending != protocol.ENDED_NORMALLY:
            self.broken = True
            termination, exit_code = await self.abnormal_end(str(ending))
        result = SandboxResult(
            exit_code=exit_code,
            stdout=frame.blobs.get("stdout", b""),
            stderr=frame.blobs.get("stderr", b""),
            stdout_truncated=header.get("stdout_truncated") is True,
            stderr_truncated=header.get("stderr_truncated") is True,
            wall_ms=int(header.get("duration_ms", 0)),
            termination=termination,
        )
        skipped = worker.get("state_skipped", [])
        too_large = worker.get("state_too_large")
        raw_bytes = worker.get("state_raw_bytes")
        return CallResult(
            result,
            state=frame.blobs.get("state"),
            state_raw_bytes=raw_bytes if isinstance(raw_bytes, int) else 0,
            state_skipped=tuple(str(item) for item in skipped) if isinstance(skipped, list) else (),
            state_too_large_bytes=too_large if isinstance(too_large, int) else None,
            failed=worker.get("failed") is True,
            worker_died=ending == protocol.ENDED_BY_WORKER_DEATH,
        )

    async def abnormal_end(self, ending: str) -> tuple[Termination, int]:
        if ending == protocol.ENDED_BY_TIMEOUT:
            return Termination.TIMEOUT, -signal.SIGKILL
        if ending == protocol.ENDED_BY_OUTPUT_LIMIT:
            return Termination.OUTPUT_LIMIT, -signal.SIGKILL
        status = await self.launcher.zygote.exit_status(self.worker_pid)
        if self.cgroup is not None and cgroups.hit_memory_limit(self.cgroup):
            return Termination.MEMORY, 128 + signal.SIGKILL
        if status is not None and status < 0:
            return Termination.SIGNALLED, 128 - status
        return Termination.EXITED, status if status is not None else 1

    async def destroy(self) -> None:
        self.broken = True
        self.writer.close()
        await self.stack.aclose()


def reset_memory_peak(cgroup: cgroups.JobCgroup | None) -> None:
    """A kept sandbox's peak and fail count are those of earlier calls: start each call from zero."""
    if cgroup is None:
        return
    for name in ("memory.max_usage_in_bytes", "memory.failcnt"):
        with contextlib.suppress(OSError):
            (cgroup.path("memory") / name).write_text("0")


async def read_frame(reader: asyncio.StreamReader, max_frame_bytes: int) -> protocol.Frame:
    header_len, body_len = protocol.PREFIX.unpack(await reader.readexactly(protocol.PREFIX.size))
    protocol.check_lengths(header_len, body_len, max_frame_bytes)
    header = protocol.parse_header(await reader.readexactly(header_len), body_len)
    return protocol.split_body(header, await reader.readexactly(body_len))


async def stop_process(process: asyncio.subprocess.Process) -> None:
    """SIGTERM lets nsjail kill the jail and remove its cgroup; SIGKILL if it lingers."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def jailed_child(nsjail_pid: int) -> int:
    """The supervisor's host pid: nsjail's only child in ONCE mode."""
    children = Path(f"/proc/{nsjail_pid}/task/{nsjail_pid}/children").read_text().split()
    if len(children) != 1:
        raise SandboxFailure(f"nsjail has {len(children)} children, expected 1")
    return int(children[0])


def worker_cgroups(cgroup: cgroups.JobCgroup | None, supervisor_pid: int) -> list[str]:
    """nsjail's own child cgroup of the supervisor: the worker shares its limits."""
    if cgroup is None:
        return []
    found = []
    for controller in cgroups.CONTROLLERS:
        own = cgroup.path(controller) / f"NSJAIL.{supervisor_pid}"
        found.append(str(own if own.is_dir() else cgroup.path(controller)))
    return found


async def start_sandbox(launcher: ReplLauncher) -> ReplSandbox:
    job_id = f"repl-{secrets.token_hex(8)}"
    stack = AsyncExitStack()
    try:
        dirs = await stack.enter_async_context(launcher.workspaces.job(job_id))
        launcher.seed_home(dirs)
        cgroup = None
        if launcher.runner.use_cgroups:
            cgroup = cgroups.create_job_cgroup(job_id, launcher.limits.memory_mb * 1024 * 1024)
            stack.push_async_callback(asyncio.to_thread, cgroups.remove_job_cgroup, cgroup)
        sandbox = await launch(launcher, job_id, dirs, cgroup, stack)
    except BaseException:
        await stack.aclose()
        raise
    return sandbox


async def launch(
    launcher: ReplLauncher, job_id: str, dirs: JobDirs, cgroup: cgroups.JobCgroup | None, stack: AsyncExitStack
) -> ReplSandbox:
    api_end, supervisor_end = socket.socketpair()
    link_supervisor, link_worker = socket.socketpair()
    with contextlib.ExitStack() as fds:
        for sock in (supervisor_end, link_supervisor, link_worker):
            fds.callback(sock.close)
        process = await spawn_jail(launcher, job_id, dirs, cgroup, supervisor_end.fileno(), link_supervisor.fileno())
        stack.push_async_callback(stop_process, process)
        supervisor_end.close()
        link_supervisor.close()
        reader, writer = await asyncio.open_unix_connection(sock=api_end)
        deadline = time.monotonic() + launcher.warmup_timeout_s
        sandbox = ReplSandbox(launcher, job_id, dirs, cgroup, stack, process, reader, writer)
        await expect(sandbox, protocol.HELLO, deadline)
        supervisor_pid = jailed_child(process.pid)
        pidfd = os.pidfd_open(supervisor_pid)
        fds.callback(os.close, pidfd)
        if jailed_child(process.pid) != supervisor_pid:  # the pidfd must name the supervisor itself
            raise SandboxFailure("the jail's supervisor changed while it was being joined")
        sandbox.worker_pid = await launcher.zygote.spawn(
            supervisor_pid, pidfd, link_worker.fileno(), dirs.uid, worker_cgroups(cgroup, supervisor_pid)
        )
    await expect(sandbox, protocol.READY, deadline)
    return sandbox


async def spawn_jail(
    launcher: ReplLauncher,
    job_id: str,
    dirs: JobDirs,
    cgroup: cgroups.JobCgroup | None,
    channel_fd: int,
    link_fd: int,
) -> asyncio.subprocess.Process:
    runner = launcher.runner
    argv = (
        "/opt/python/bin/python3", "-I", "-S", "-B", "-c", SUPERVISOR_BOOT,
        protocol.CHANNEL_FLAG, str(channel_fd), protocol.WORKER_FLAG, str(link_fd),
        "--max-frame-bytes", str(launcher.max_frame_bytes),
    )  # fmt: skip
    job = SandboxJob(
        job_id=job_id,
        argv=argv,
        uid=dirs.uid,
        work_dir=dirs.data,
        code_dir=dirs.code,
        home_dir=dirs.home,
        log_file=dirs.log_file(job_id),
        limits=replace(launcher.limits, processes=launcher.spec.processes or launcher.limits.processes),
        binds=launcher.binds(),
        env=launcher.spec.render_env(launcher.limits.memory_mb),
        pass_fds=(channel_fd, link_fd),
    )
    command = render(runner.nsjail_binary, job, runner.isolation, cgroup, runner.seccomp_policy)
    # The supervisor's own stderr (a traceback, if it ever fails) lands next to nsjail's log.
    with open(dirs.log_file("supervisor"), "wb") as supervisor_log:
        return await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=supervisor_log,
            start_new_session=True,
            pass_fds=job.pass_fds,
        )


async def expect(sandbox: ReplSandbox, kind: str, deadline: float) -> None:
    try:
        frame = await asyncio.wait_for(
            read_frame(sandbox.reader, protocol.SMALL_FRAME_BYTES), max(deadline - time.monotonic(), 0.01)
        )
    except (TimeoutError, asyncio.IncompleteReadError, protocol.ProtocolError, ConnectionError) as error:
        detail = sandbox.dirs.log_file("supervisor").read_text(errors="replace").strip().splitlines()[-1:]
        raise SandboxFailure(
            f"the REPL sandbox did not become ready ({type(error).__name__}{': ' + detail[0] if detail else ''})"
        ) from error
    if frame.kind != kind:
        raise SandboxFailure(f"the REPL sandbox sent {frame.kind!r} instead of {kind!r}")
