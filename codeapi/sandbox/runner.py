"""Spawn nsjail, stream its output under a cap, enforce the deadline, and classify how the job ended.

A failure of user code is a ``SandboxResult``; only a sandbox that could not start raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from codeapi.egress.gateway import EgressGateway, network_env
from codeapi.errors import SandboxFailure
from codeapi.observability.metrics import SANDBOX_STARTS
from codeapi.observability.security import security_event
from codeapi.sandbox import cgroups
from codeapi.sandbox.nsjail import render
from codeapi.sandbox.policy import Isolation, SandboxJob, SandboxResult, Termination

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


class NsjailRunner:
    def __init__(
        self,
        nsjail_binary: str,
        isolation: Isolation,
        use_cgroups: bool,
        seccomp_policy: Path | None = None,
        egress: EgressGateway | None = None,
    ) -> None:
        self.egress = egress
        self.nsjail_binary = nsjail_binary
        self.isolation = isolation
        self.use_cgroups = use_cgroups
        self.seccomp_policy = seccomp_policy
        self.live_cgroups: set[cgroups.JobCgroup] = set()
        self.live_processes: set[asyncio.subprocess.Process] = set()

    async def run(self, job: SandboxJob) -> SandboxResult:
        cgroup = cgroups.create_job_cgroup(job.job_id, job.limits.memory_mb * 1024 * 1024) if self.use_cgroups else None
        if cgroup is not None:
            self.live_cgroups.add(cgroup)
        try:
            return await self.run_in(job, cgroup)
        finally:
            if cgroup is not None:
                # In a thread: it may wait for a killed jail's processes to finish dying.
                await asyncio.to_thread(cgroups.remove_job_cgroup, cgroup)
                self.live_cgroups.discard(cgroup)

    def close(self) -> None:
        """Kill every running jail and remove its cgroup, synchronously, at API shutdown.

        uvicorn re-raises SIGTERM as soon as the app has stopped, so the cleanup in the
        cancelled runs' ``finally`` blocks would never get to run.
        """
        for process in self.live_processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        for cgroup in self.live_cgroups:
            cgroups.remove_job_cgroup(cgroup)

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

    async def run_in(self, job: SandboxJob, cgroup: cgroups.JobCgroup | None) -> SandboxResult:
        async with self.networked(job) as job:
            return await self.run_networked(job, cgroup)

    async def run_networked(self, job: SandboxJob, cgroup: cgroups.JobCgroup | None) -> SandboxResult:
        argv = render(self.nsjail_binary, job, self.isolation, cgroup, self.seccomp_policy)
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            pass_fds=job.pass_fds,
        )
        self.live_processes.add(process)
        SANDBOX_STARTS.inc()
        try:
            return await self.supervise(job, cgroup, process, started)
        finally:
            self.live_processes.discard(process)

    async def supervise(
        self, job: SandboxJob, cgroup: cgroups.JobCgroup | None, process: asyncio.subprocess.Process, started: float
    ) -> SandboxResult:
        stdout = CappedStream(job.limits.output_bytes, bytearray())
        stderr = CappedStream(job.limits.output_bytes, bytearray())
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
            # Shielded: a second cancellation (shutdown after a client disconnect) must not
            # interrupt the kill and leave the jail running until nsjail's own backstop.
            await asyncio.shield(stop(process))
            for reader in readers:
                reader.cancel()
            raise
        wall_ms = int((time.monotonic() - started) * 1000)
        exit_code = process.returncode if process.returncode is not None else -1
        if exit_code == NSJAIL_SETUP_FAILED and setup_failed(job.log_file):
            raise SandboxFailure(f"the sandbox could not start: {last_log_lines(job.log_file)}")
        termination = classify(exit_code, timed_out, over_limit.is_set(), cgroup, job.log_file)
        if cgroup is not None and cgroups.hit_process_limit(cgroup, job.limits.processes):
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
    exit_code: int, timed_out: bool, output_capped: bool, cgroup: cgroups.JobCgroup | None, log_file: Path
) -> Termination:
    if output_capped:
        return Termination.OUTPUT_LIMIT
    if timed_out or "run time >= time limit" in read_log(log_file):
        return Termination.TIMEOUT
    killed = exit_code in (128 + signal.SIGKILL, -signal.SIGKILL)
    if killed and cgroup is not None and cgroups.hit_memory_limit(cgroup):
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
