"""Spawn nsjail, stream its output under a cap, enforce the deadline, and classify how the job ended.

A failure of user code is a ``SandboxResult``; only a sandbox that could not start raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from asyncio.subprocess import PIPE
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import structlog

from codeapi.egress.gateway import EgressGateway, network_env
from codeapi.errors import SandboxFailure
from codeapi.observability.metrics import SANDBOX_STARTS
from codeapi.observability.security import security_event
from codeapi.sandbox.cgroups import PLACEMENT_FAILED, Cgroups, JobCgroup, JobLimits
from codeapi.sandbox.nsjail import render
from codeapi.sandbox.policy import Isolation, SandboxJob, SandboxResult, Termination
from codeapi.units import MB

logger = structlog.get_logger(__name__)

READ_CHUNK = 65536
KILL_GRACE_S = 1.0
NSJAIL_SETUP_FAILED = 255


@dataclass
class CappedStream:
    """Keeps the first ``cap`` bytes of a stream; reports when more arrived."""

    cap: int
    data: bytearray
    truncated: bool = False

    def feed(self, chunk: bytes) -> bool:
        room = self.cap - len(self.data)
        if len(chunk) > room:
            self.data += chunk[: max(room, 0)]
            self.truncated = True
        else:
            self.data += chunk
        return self.truncated


@dataclass(frozen=True)
class JobOutput:
    """A job's stdout and stderr as they stream in: a caller that passes its own to ``run`` can read
    what the job printed so far while it runs (a paused programmatic program)."""

    stdout: CappedStream
    stderr: CappedStream

    @classmethod
    def capped(cls, cap: int) -> JobOutput:
        return cls(CappedStream(cap, bytearray()), CappedStream(cap, bytearray()))


@dataclass(eq=False)
class SandboxProcess:
    """A started nsjail: its process, its cgroup, and how to stop it. ``NsjailRunner.spawn`` makes
    one; ``close`` is the one teardown (kill, remove the cgroup, forget it), safe to call twice."""

    runner: NsjailRunner
    job: SandboxJob
    process: asyncio.subprocess.Process
    cgroup: JobCgroup | None
    resources: AsyncExitStack  # what lives exactly as long as the jail (its network namespace)
    started: float = field(default_factory=time.monotonic)

    async def close(self) -> None:
        # Shielded: a second cancellation (shutdown after a client disconnect) must not interrupt
        # the kill and leave the jail running until nsjail's own backstop.
        await asyncio.shield(self.stop_and_remove())

    async def stop_and_remove(self) -> None:
        try:
            await stop(self.process)
        finally:
            try:
                if self.cgroup is not None:
                    # In a thread: it may wait for a killed jail's processes to finish dying.
                    await asyncio.to_thread(self.cgroup.remove)
            finally:
                await self.resources.aclose()
                self.runner.live.discard(self)

    def kill_now(self) -> None:
        """Synchronous teardown at API shutdown (see NsjailRunner.close)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.cgroup is not None:
            self.cgroup.remove()


class NsjailRunner:
    """The one place a jail starts: ``run`` for one-shot jobs, ``spawn`` for the warm path."""

    def __init__(
        self,
        nsjail_binary: str,
        isolation: Isolation,
        cgroups: Cgroups | None,
        seccomp_policy: Path | None = None,
        egress: EgressGateway | None = None,
    ) -> None:
        self.egress = egress
        self.nsjail_binary = nsjail_binary
        self.isolation = isolation
        self.cgroups = cgroups
        self.seccomp_policy = seccomp_policy
        self.live: set[SandboxProcess] = set()

    async def spawn(self, job: SandboxJob, stdout: int = PIPE, stderr: int = PIPE) -> SandboxProcess:
        """Create the job's cgroup and start nsjail inside it; the caller must ``close`` the jail."""
        resources = AsyncExitStack()
        cgroup = None
        try:
            job = await resources.enter_async_context(self.networked(job))
            if self.cgroups is not None:
                limits = JobLimits(job.limits.memory_mb * MB, job.limits.processes)
                cgroup = self.cgroups.create(job.job_id, limits)
            placement = cgroup.placement_argv() if cgroup is not None else []
            argv = [*placement, *render(self.nsjail_binary, job, self.isolation, self.seccomp_policy)]
            process = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
                pass_fds=job.pass_fds,
            )
        except BaseException:
            if cgroup is not None:
                await asyncio.to_thread(cgroup.remove)
            await resources.aclose()
            raise
        sandbox = SandboxProcess(self, job, process, cgroup, resources)
        self.live.add(sandbox)
        SANDBOX_STARTS.inc()
        return sandbox

    @asynccontextmanager
    async def networked(self, job: SandboxJob) -> AsyncIterator[SandboxJob]:
        """The job as it runs: with ENABLE_SANDBOX_NETWORK, in a network of its own whose only
        service is the egress proxy, for as long as the context lasts."""
        env = {**job.env, **network_env(self.egress)}
        if self.egress is None:
            yield replace(job, env=env)
            return
        async with self.egress.network(job.job_id) as network:
            fd = network.namespace_fd
            yield replace(job, network_fd=fd, pass_fds=(*job.pass_fds, fd), env=env)

    async def run(self, job: SandboxJob, output: JobOutput | None = None) -> SandboxResult:
        jail = await self.spawn(job)
        try:
            return await self.supervise(jail, output or JobOutput.capped(job.limits.output_bytes))
        finally:
            await jail.close()

    def close(self) -> None:
        """Kill every running jail and remove its cgroup, synchronously, at API shutdown.

        uvicorn re-raises SIGTERM as soon as the app has stopped, so the cleanup in the
        cancelled runs' ``finally`` blocks would never get to run.
        """
        for jail in list(self.live):
            jail.kill_now()
        self.live.clear()
        if self.cgroups is not None:
            self.cgroups.release()

    async def supervise(self, jail: SandboxProcess, output: JobOutput) -> SandboxResult:
        job, process = jail.job, jail.process
        stdout, stderr = output.stdout, output.stderr
        over_limit = asyncio.Event()
        assert process.stdout is not None and process.stderr is not None
        readers = [
            asyncio.create_task(pump(process.stdout, stdout, over_limit.set)),
            asyncio.create_task(pump(process.stderr, stderr, over_limit.set)),
        ]
        timed_out = False
        try:
            waiter = asyncio.create_task(process.wait())
            limiter = asyncio.create_task(over_limit.wait())
            done, _ = await asyncio.wait({waiter, limiter}, timeout=job.limits.time_s, return_when="FIRST_COMPLETED")
            limiter.cancel()
            if waiter not in done:
                timed_out = not over_limit.is_set()
                await stop(process)
            await waiter
            await asyncio.gather(*readers)
        except BaseException:
            for reader in readers:
                reader.cancel()
            raise
        wall_ms = int((time.monotonic() - jail.started) * 1000)
        exit_code = process.returncode if process.returncode is not None else -1
        if exit_code == PLACEMENT_FAILED and not job.log_file.exists():
            raise SandboxFailure(
                f"the sandbox could not join its cgroup: {bytes(stderr.data).decode(errors='replace')}"
            )
        if exit_code == NSJAIL_SETUP_FAILED and setup_failed(job.log_file):
            raise SandboxFailure(f"the sandbox could not start: {last_log_lines(job.log_file)}")
        termination = classify(exit_code, timed_out, over_limit.is_set(), jail.cgroup, job.log_file)
        if jail.cgroup is not None and jail.cgroup.hit_process_limit():
            security_event("sandbox.process_capped", job_id=job.job_id, processes=job.limits.processes)
        logger.debug("sandbox.finished", job_id=job.job_id, termination=termination.value, wall_ms=wall_ms)
        return SandboxResult(
            exit_code=exit_code,
            stdout=bytes(stdout.data),
            stderr=bytes(stderr.data),
            stdout_truncated=stdout.truncated,
            stderr_truncated=stderr.truncated,
            wall_ms=wall_ms,
            termination=termination,
            cpu_ms=jail.cgroup.cpu_ms() if jail.cgroup is not None else None,
            memory_peak_bytes=jail.cgroup.memory_peak_bytes() if jail.cgroup is not None else None,
        )


async def pump(stream: asyncio.StreamReader, sink: CappedStream, on_overflow: Callable[[], None]) -> None:
    """Read to EOF even past the cap: asyncio only reports the process as finished once every
    pipe is drained, so bytes over the cap are discarded rather than left unread."""
    while chunk := await stream.read(READ_CHUNK):
        if not sink.truncated and sink.feed(chunk):
            on_overflow()


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM lets nsjail kill the jail and remove its cgroup; SIGKILL if it does not exit promptly."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), KILL_GRACE_S)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()


def classify(
    exit_code: int, timed_out: bool, output_capped: bool, cgroup: JobCgroup | None, log_file: Path
) -> Termination:
    if output_capped:
        return Termination.OUTPUT_LIMIT
    if timed_out or "run time >= time limit" in read_log(log_file):
        return Termination.TIMEOUT
    killed = exit_code in (128 + signal.SIGKILL, -signal.SIGKILL)
    if killed and cgroup is not None and cgroup.hit_memory_limit():
        return Termination.MEMORY
    if exit_code > 128 or exit_code < 0:
        return Termination.SIGNALLED
    return Termination.EXITED


def read_log(log_file: Path) -> str:
    try:
        return log_file.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def setup_failed(log_file: Path) -> bool:
    return any(line.startswith(("[E]", "[F]")) for line in read_log(log_file).splitlines())


def last_log_lines(log_file: Path, count: int = 3) -> str:
    lines = [line for line in read_log(log_file).splitlines() if line.startswith(("[E]", "[F]", "[W]"))]
    return " | ".join(lines[-count:])
