"""One REPL sandbox as the API sees it: an nsjail jail, plus a worker the zygote forked into it.

The runner starts the jail exactly as a one-shot run (``NsjailRunner.spawn``: own uid from the
pool, own job directories, own cgroup with MAX_MEMORY_MB, no network, the seccomp policy). Its
first process says it is up and becomes ``catatonit``, a minimal init that holds the jail's
namespaces and reaps orphans; then the zygote forks the worker into the jail (see zygote.py).

Each call runs in a new process, as LibreChat tells its model: after a call the session keeps, the
worker is replaced (``renew``, in the background, after the response) by a fresh one forked from
the zygote that restores the variables the call saved. So only the variables carry over: no open
figure, working directory, library setting, environment change, monkeypatch, signal handler,
thread or child process of one call reaches the next: the worker is killed as soon as it reported,
and everything the call started with it. Between calls the new worker is stopped (jail.py).

The API is the worker's only peer and watches each call from outside the jail: it reads the
worker's stdout and stderr pipes itself (capped while they stream), enforces the deadline, and
when the code has returned it kills every other process in the jail's cgroup. A call that overruns,
floods its output, crashes the worker or sends anything but its own report breaks the sandbox.
"""

from __future__ import annotations

import asyncio
import enum
import os
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from codeapi.after_response import after_response
from codeapi.errors import SandboxFailure
from codeapi.languages.spec import LanguageSpec, WarmRepl
from codeapi.repl import protocol
from codeapi.repl.jail import Jail, jailed_child
from codeapi.repl.output import SandboxOutput
from codeapi.repl.zygote_process import ZygoteProcess
from codeapi.sandbox.policy import Bind, SandboxJob, SandboxLimits, SandboxResult, Termination
from codeapi.sandbox.runner import NsjailRunner
from codeapi.sandbox.workspace import JobDirs, Workspaces

logger = structlog.get_logger(__name__)

INIT = "/usr/bin/catatonit"
# The jail sees, in place of INIT, a copy it may run but not read: a process started from a file its
# user cannot read is not dumpable, so user code can neither read nor write the init's memory
# (/proc/1/mem) nor ptrace it, and the init (which outlives every call) cannot be made to run its code.
EXECUTE_ONLY = 0o111
READY_LINE = b"ready\n"


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
    repl: WarmRepl  # the spec's warm_repl
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
        venv = self.runtime_dir / self.repl.environment
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


class Lifecycle(enum.Enum):
    FRESH = "fresh"  # started, no user code ran in it yet: /mnt/data may take a call's inputs
    USED = "used"  # user code ran in it; alive between calls (a kept or returned sandbox)
    BROKEN = "broken"  # cannot take another call: it is being or will be destroyed


@dataclass
class WorkerLink:
    """The API's side of one worker: its host pid, its link, and the pipes of its stdout and stderr."""

    pid: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    output: SandboxOutput

    def close(self) -> None:
        self.writer.close()
        self.output.close()


@dataclass
class ReplSandbox:
    launcher: ReplLauncher
    job_id: str
    dirs: JobDirs
    jail: Jail
    stack: AsyncExitStack
    worker: WorkerLink
    created_at: float = field(default_factory=time.monotonic)
    last_used_at: float = field(default_factory=time.monotonic)
    lifecycle: Lifecycle = Lifecycle.FRESH
    revision: str | None = None  # the saved state this sandbox's namespace corresponds to
    # /mnt/data as the last call left it: name -> (file id, fingerprint), kept by the execution layer
    manifest: dict[str, tuple[str, object]] = field(default_factory=dict)
    saved_state: bytes | None = None  # what the last call saved, for the worker that replaces it
    worker_spent: bool = False  # a call used the worker: it is replaced before the next call (set_aside)
    pending_scrub: Callable[[], None] | None = None  # the caller's cleanup before the next call (set_aside)
    # What restoring the variables printed (stdout, stderr): part of the next call's output, as it
    # would be in a new process that restores them first.
    carried_output: tuple[bytes, bytes] = (b"", b"")
    renewal: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self.lifecycle is not Lifecycle.BROKEN and self.jail.running

    async def call(
        self, code: str, args: tuple[str, ...], timeout_s: float, save: protocol.Save, restore: bytes | None
    ) -> CallResult:
        """Run Python code in the worker."""
        return await self.serve(protocol.Run(secrets.token_hex(16), code.encode(), args, save, restore), timeout_s)

    async def run_program(self, argv: tuple[str, ...], environment: dict[str, str], timeout_s: float) -> CallResult:
        """Run a program of another language beside the fresh worker (``protocol.Exec``): the worker
        starts it as a new process and reports its status; a new worker follows, as after any call."""
        variables = tuple(f"{name}={value}" for name, value in environment.items())
        return await self.serve(protocol.Exec(secrets.token_hex(16), argv, variables), timeout_s)

    async def serve(self, request: protocol.Run | protocol.Exec, timeout_s: float) -> CallResult:
        if not await self.ready():
            raise SandboxFailure("the sandbox's new worker did not start")
        self.lifecycle = Lifecycle.USED
        output = self.worker.output
        if self.jail.cgroup is not None:
            self.jail.cgroup.mark()
        output.begin(self.launcher.limits.output_bytes, self.carried_output)
        self.carried_output = (b"", b"")
        started = time.monotonic()
        try:
            # Kept sandboxes sleep stopped between calls: the request goes first, so that the worker
            # wakes once, to find it, rather than to SIGCONT and then again to the data.
            self.worker.writer.write(protocol.encode(request))
            self.jail.resume()
            ending, report = await self.exchange(request.call, timeout_s)
            exit_code = report.exit_code if report is not None else 0
            if isinstance(request, protocol.Exec) and exit_code < 0:  # the program's status: a signal ended it
                ending, exit_code = self.ended_by(exit_code)
            if report is not None:  # its part is over: a new worker serves the next call (renew)
                self.jail.signal([self.jail.worker_pid], signal.SIGKILL)
            # The call's other processes end with it; each fork of the worker's threads came before
            # its kill, so this listing finds it. Not waited for: the worker's teardown (renew).
            await self.jail.kill_others(keep_worker=report is not None)
        except BaseException:
            self.lifecycle = Lifecycle.BROKEN  # cancelled mid-call: the sandbox is in an unknown state
            raise
        stdout, stderr = output.finish()
        if ending is Termination.EXITED and (stdout.truncated or stderr.truncated):
            ending = Termination.OUTPUT_LIMIT  # printed over the cap just before it reported
            await self.jail.kill_others(keep_worker=False)
        wall_ms = int((time.monotonic() - started) * 1000)
        self.last_used_at = time.monotonic()
        worker_died = ending is None
        if ending is None or ending in (Termination.TIMEOUT, Termination.OUTPUT_LIMIT):
            self.lifecycle = Lifecycle.BROKEN
            report = None
            ending, exit_code = await self.abnormal_end(ending)
        else:
            self.saved_state = report.state if report is not None else None
            self.worker_spent = True
        result = (bytes(stdout.data), bytes(stderr.data), stdout.truncated, stderr.truncated)
        return CallResult(SandboxResult(exit_code, *result, wall_ms, ending), report, worker_died)

    async def exchange(self, call: str, timeout_s: float) -> tuple[Termination | None, protocol.Done | None]:
        """Wait for the report on the call written to the worker, an output overflow or the deadline.

        Returns EXITED with the report, OUTPUT_LIMIT, TIMEOUT, or None when the worker died or
        broke the protocol: sent anything but the report naming this call (a thread left over from
        an earlier call cannot know the name). Only the report leaves the worker alive (restore goes on
        with it; serve kills it then, its part being over).
        """
        reading = asyncio.ensure_future(self.read_answer())
        ending = await self.until(reading, timeout_s)
        if ending is not Termination.EXITED:
            return ending, None
        try:
            report = reading.result()
        except (asyncio.IncompleteReadError, protocol.ProtocolError, ConnectionError) as error:
            logger.debug("repl.worker_gone", job_id=self.job_id, error=type(error).__name__)
            return None, None
        if not isinstance(report, protocol.Done) or report.call != call:
            logger.warning("repl.unrequested_report", job_id=self.job_id)
            return None, None
        return Termination.EXITED, report

    async def until(self, waiting: asyncio.Future[Any], timeout_s: float) -> Termination:
        """Wait for ``waiting`` (EXITED: it is done), an output overflow or the deadline."""
        overflow = asyncio.ensure_future(self.worker.output.overflowed.wait())
        try:
            done, _ = await asyncio.wait({waiting, overflow}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiting, overflow):
                task.cancel()
        if waiting in done:
            return Termination.EXITED
        return Termination.OUTPUT_LIMIT if overflow in done else Termination.TIMEOUT

    async def read_answer(self) -> protocol.Message:
        await self.worker.writer.drain()  # what of the request did not fit the socket's buffer
        return await read_message(self.worker.reader, self.launcher.max_frame_bytes)

    async def abnormal_end(self, ending: Termination | None) -> tuple[Termination, int]:
        """How a call that broke the sandbox ended (None: the worker died or broke the protocol)."""
        if ending is not None:
            return ending, -signal.SIGKILL
        return self.ended_by(await self.launcher.zygote.exit_status(self.jail.worker_pid))

    def ended_by(self, status: int | None) -> tuple[Termination, int]:
        """How a process of the jail that exited with ``status`` (negative: the signal) ended."""
        if self.jail.cgroup is not None and self.jail.cgroup.hit_memory_limit():
            return Termination.MEMORY, 128 + signal.SIGKILL
        if status is not None and status < 0:
            return Termination.SIGNALLED, 128 - status
        return Termination.EXITED, status if status is not None else 1

    def set_aside(self, scrub: Callable[[], None] | None = None) -> None:
        """Kept for the session's next call (the pool keeps it, once the call's outputs are collected):
        the worker a call used is replaced once the response is sent (a renewal beside the response
        would slow it down, and one for a sandbox that is not kept would be wasted), or when the next
        call comes first. ``scrub`` runs (in a thread) before the next worker starts, once the call's
        processes are gone: the caller's cleanup of what a call leaves outside /mnt/data."""
        self.pending_scrub = scrub
        after_response(self.renew_if_spent)

    def renew_if_spent(self) -> None:
        """Start what is due before the next call (``ready`` waits for it); nothing if it started."""
        spent, scrub = self.worker_spent, self.pending_scrub
        self.worker_spent, self.pending_scrub = False, None
        if spent:
            self.renewal = asyncio.create_task(self.renew(scrub))
        elif scrub is not None:  # the call ran beside the worker: a one-shot jail on the same directories
            self.renewal = asyncio.create_task(self.scrub_for_next(scrub))
        else:
            return
        self.renewal.add_done_callback(self.note_renewal_failure)

    async def scrub_for_next(self, scrub: Callable[[], None]) -> None:
        try:
            await asyncio.to_thread(scrub)
        except BaseException:
            self.lifecycle = Lifecycle.BROKEN
            raise

    async def renew(self, scrub: Callable[[], None] | None) -> None:
        """Kill the worker and everything it left, fork a fresh one into the same jail, restore the
        variables the last call saved there, and stop it until the next call."""
        state, self.saved_state = self.saved_state, None
        try:
            await self.jail.kill_others(keep_worker=False)
            await self.jail.wait_reaped()
            if scrub is not None:
                await asyncio.to_thread(scrub)
            self.worker.close()
            deadline = time.monotonic() + self.launcher.warmup_timeout_s
            self.worker = await start_worker(self.launcher, self.jail, self.dirs.uid, deadline)
            self.jail.worker_pid = self.worker.pid
            if state is not None:
                await self.restore(state, deadline)
            if not await self.jail.pause():
                raise SandboxFailure("the renewed worker could not be stopped")
        except BaseException:
            self.lifecycle = Lifecycle.BROKEN
            raise

    async def restore(self, state: bytes, deadline: float) -> None:
        """Unpickle the variables in the new worker now, not in the next call: what that printed
        (a warning, a failure to restore) is shown with the next call's output."""
        request = protocol.Run(secrets.token_hex(16), b"", (), protocol.Save.NEVER, state)
        self.worker.output.begin(self.launcher.limits.output_bytes)
        self.worker.writer.write(protocol.encode(request))
        ending, _ = await self.exchange(request.call, max(deadline - time.monotonic(), 0.01))
        await self.jail.kill_others(keep_worker=ending is Termination.EXITED)
        stdout, stderr = self.worker.output.finish()
        if ending is not Termination.EXITED:
            raise SandboxFailure(f"restoring the variables in a new worker failed ({ending})")
        self.carried_output = (bytes(stdout.data), bytes(stderr.data))

    def note_renewal_failure(self, renewal: asyncio.Task[None]) -> None:
        if not renewal.cancelled() and renewal.exception() is not None:
            logger.warning("repl.renewal_failed", job_id=self.job_id, error=repr(renewal.exception()))

    async def ready(self) -> bool:
        """Whether the sandbox can take a call, once its worker's renewal (if any) has ended."""
        self.renew_if_spent()  # the last call's response may not be out yet
        if self.renewal is not None:
            await asyncio.wait({self.renewal})
        return self.alive

    async def destroy(self) -> None:
        self.lifecycle = Lifecycle.BROKEN
        # Nothing is due any more: a renewal still waiting for a response (set_aside) must not start
        # in the torn-down jail, whose init's pidfd is closed (and its number free for reuse).
        self.worker_spent, self.pending_scrub = False, None
        if self.renewal is not None:
            self.renewal.cancel()
            await asyncio.wait({self.renewal})
        await self.stack.aclose()


async def read_message(reader: asyncio.StreamReader, max_frame_bytes: int) -> protocol.Message:
    header_len, body_len = protocol.PREFIX.unpack(await reader.readexactly(protocol.PREFIX.size))
    protocol.check_lengths(header_len, body_len, max_frame_bytes)
    header = protocol.parse_header(await reader.readexactly(header_len), body_len)
    return protocol.split_body(header, await reader.readexactly(body_len))


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
    sandbox_process = await launcher.runner.spawn(jail_job(launcher, job_id, dirs), stderr=asyncio.subprocess.DEVNULL)
    stack.push_async_callback(sandbox_process.close)
    process = sandbox_process.process
    await wait_ready(process, dirs, job_id, deadline)
    init_pid = jailed_child(process.pid)
    pidfd = os.pidfd_open(init_pid)
    stack.callback(os.close, pidfd)
    if jailed_child(process.pid) != init_pid:  # the pidfd must name the jail's init itself
        raise SandboxFailure("the jail's init changed while it was being joined")
    jail = Jail(sandbox_process, init_pid, pidfd, worker_pid=0)
    worker = await start_worker(launcher, jail, dirs.uid, deadline)
    jail.worker_pid = worker.pid
    sandbox = ReplSandbox(launcher, job_id, dirs, jail, stack, worker)
    stack.callback(lambda: sandbox.worker.close())  # whichever worker it holds by then
    if not await jail.pause():  # until its first call
        raise SandboxFailure("the new worker could not be stopped")
    return sandbox


async def start_worker(launcher: ReplLauncher, jail: Jail, uid: int, deadline: float) -> WorkerLink:
    """Have the zygote fork a worker into the jail, and wait until it says it is ready."""
    api_end, worker_end = socket.socketpair()
    stdout_read, stdout_write = os.pipe()
    stderr_read, stderr_write = os.pipe()
    output = SandboxOutput(stdout_read, stderr_read)
    writer: asyncio.StreamWriter | None = None
    try:
        try:
            pid = await launcher.zygote.spawn(
                jail.init_pid,
                jail.init_pidfd,
                (worker_end.fileno(), stdout_write, stderr_write),
                uid,
                [str(path) for path in jail.cgroup.worker_dirs()] if jail.cgroup is not None else [],
                launcher.max_state_bytes,
            )
        finally:  # the API's copies of what the worker keeps
            worker_end.close()
            os.close(stdout_write)
            os.close(stderr_write)
        reader, writer = await asyncio.open_unix_connection(sock=api_end)
        try:
            ready = await asyncio.wait_for(
                read_message(reader, protocol.SMALL_FRAME_BYTES), max(deadline - time.monotonic(), 0.01)
            )
        except (TimeoutError, asyncio.IncompleteReadError, protocol.ProtocolError, ConnectionError) as error:
            raise SandboxFailure(f"the REPL worker did not become ready ({type(error).__name__})") from error
        if not isinstance(ready, protocol.Ready):
            raise SandboxFailure(f"the REPL worker sent {type(ready).__name__} instead of Ready")
    except BaseException:
        if writer is not None:
            writer.close()
        api_end.close()
        output.close()
        raise
    return WorkerLink(pid, reader, writer, output)


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
