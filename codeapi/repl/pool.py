"""The warm set of Python REPL sandboxes, and the sessions' kept ("hot") ones.

* warm: started, never used, belonging to no session (SANDBOX_POOL_PY of them, refilled in the
  background in batches of SANDBOX_POOL_PARALLEL_BATCH every SANDBOX_POOL_REPLENISH_INTERVAL, or at
  once when a checkout empties the pool and SANDBOX_POOL_EXHAUSTION_TRIGGER is set).
* hot: the sandbox a session's last call ran in, kept for that session only: once the call's response
  is sent, its worker is replaced by a fresh one that already holds the saved variables, so the next
  call starts in a new process without waiting for a restore. It is handed back only to the same
  session at the same state revision; idle ones are destroyed after SANDBOX_TTL_MINUTES, and the least
  recently used once too many are kept.

A sandbox is never given to a second session: when a session lets go of it, it is destroyed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from codeapi.errors import SandboxFailure
from codeapi.repl.sandbox import ReplLauncher, ReplSandbox, start_sandbox

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class PoolPolicy:
    warm_target: int  # SANDBOX_POOL_PY when the pool is enabled, else 0 (sandboxes start on demand)
    warmup_on_startup: bool
    parallel_batch: int
    replenish_interval_s: float
    exhaustion_trigger: bool
    idle_ttl_s: float  # SANDBOX_TTL_MINUTES
    sweep_interval_s: float  # SANDBOX_CLEANUP_INTERVAL_MINUTES
    max_hot: int
    max_age_s: float  # a sandbox older than this is not handed out again (nsjail's time limit is beyond it)
    zygote_timeout_s: float


class ReplPool:
    def __init__(self, launcher: ReplLauncher, policy: PoolPolicy) -> None:
        self.launcher = launcher
        self.policy = policy
        self.warm: deque[ReplSandbox] = deque()
        self.hot: OrderedDict[str, ReplSandbox] = OrderedDict()
        self.starting = 0
        self.refill = asyncio.Event()
        self.teardowns: set[asyncio.Task[None]] = set()
        # Whether the zygote should be up: from start-up, or (SANDBOX_POOL_WARMUP_ON_STARTUP=false)
        # from the first Python call on.
        self.wanted = policy.warmup_on_startup
        self.zygote_failing = False  # the last attempt to start it failed
        self.zygote_attempted = asyncio.Event()  # set when the current start attempt ends

    @property
    def available(self) -> bool:
        return self.launcher.zygote.alive

    @property
    def ready(self) -> bool:
        """Whether a Python call is served without waiting: the zygote is up, or it is started on
        demand and nobody asked yet (a start-up without warm-up is ready at once)."""
        return self.available or not self.wanted

    async def stop(self) -> None:
        """Tear every sandbox and the zygote down; the loops were stopped before."""
        everything = [*self.warm, *self.hot.values()]
        self.warm.clear()
        self.hot.clear()
        await asyncio.gather(*(sandbox.destroy() for sandbox in everything), *self.teardowns)
        await self.launcher.zygote.stop()

    async def checkout(self, session_id: str, revision: str | None) -> ReplSandbox | None:
        """The session's kept sandbox if it is at ``revision``, else a fresh one; None when the
        zygote is not up within its start-up timeout."""
        kept = self.hot.pop(session_id, None)
        if kept is not None:
            if kept.revision == revision and not self.too_old(kept) and await kept.ready():
                logger.debug("repl.reused", job_id=kept.job_id)
                return kept
            self.discard(kept)
        return await self.fresh()

    async def fresh(self) -> ReplSandbox | None:
        while self.warm:
            sandbox = self.warm.popleft()
            self.refill.set()
            if sandbox.alive and not self.too_old(sandbox):
                logger.debug("repl.acquired", job_id=sandbox.job_id, warm_left=len(self.warm))
                return sandbox
            self.discard(sandbox)
        if self.policy.exhaustion_trigger:
            self.refill.set()
        if not await self.wait_until_available():
            return None
        return await start_sandbox(self.launcher)

    async def wait_until_available(self) -> bool:
        """Until the zygote's next start attempt ends (started now if it is started on demand), at
        most as long as a start may take; at once when the last attempt failed (the refill loop tries
        again after its back-off, and /health/detailed shows it failing meanwhile)."""
        if self.available or self.zygote_failing:
            return self.available
        self.wanted = True
        self.refill.set()
        attempt = self.zygote_attempted
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(attempt.wait(), self.policy.zygote_timeout_s)
        return self.available

    def release(
        self, sandbox: ReplSandbox, session_id: str, keep: bool, scrub: Callable[[], None] | None = None
    ) -> None:
        """``keep``: the session's next call may run here, in the new worker holding its variables
        (``scrub``: ReplSandbox.set_aside)."""
        if not (keep and sandbox.alive):
            self.discard(sandbox)
            return
        sandbox.set_aside(scrub)
        self.hot[session_id] = sandbox
        self.hot.move_to_end(session_id)
        while len(self.hot) > self.policy.max_hot:
            _, evicted = self.hot.popitem(last=False)
            self.discard(evicted)

    def discard(self, sandbox: ReplSandbox) -> None:
        """Destroy in the background: the caller's response does not wait for the teardown."""
        task = asyncio.create_task(sandbox.destroy())
        self.teardowns.add(task)
        task.add_done_callback(self.teardowns.discard)

    def health(self) -> dict[str, object]:
        """For /health/detailed: "starting" until the zygote is up (and /health/ready answers 503
        meanwhile, so that a load balancer sends calls elsewhere)."""
        if self.ready:
            mode = "warm REPL" if self.available else "zygote started on the first Python call"
        else:
            mode = "the Python zygote is starting"
        return {
            "status": "healthy" if self.ready else "starting",
            "mode": mode,
            "warm": len(self.warm),
            "kept": len(self.hot),
        }

    def too_old(self, sandbox: ReplSandbox) -> bool:
        return time.monotonic() - sandbox.created_at > self.policy.max_age_s

    async def replenish_once(self) -> None:
        """One pass of the refill loop: the zygote up and the warm set full, once Python is wanted."""
        if self.wanted:
            await self.ensure_zygote()
            await self.fill()

    async def wait_for_refill(self) -> None:
        """The refill loop's pause: a checkout that took a warm sandbox, or the interval."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.refill.wait(), self.policy.replenish_interval_s)
        self.refill.clear()

    async def ensure_zygote(self) -> None:
        if self.launcher.zygote.alive:
            return
        try:
            await self.launcher.zygote.stop()
            await self.launcher.zygote.start(self.policy.zygote_timeout_s)
        except BaseException:
            self.zygote_failing = True
            raise
        else:
            self.zygote_failing = False
        finally:
            attempt, self.zygote_attempted = self.zygote_attempted, asyncio.Event()
            attempt.set()  # wakes the calls waiting for this attempt

    async def fill(self) -> None:
        while (missing := self.policy.warm_target - len(self.warm) - self.starting) > 0:
            batch = min(missing, self.policy.parallel_batch)
            self.starting += batch
            try:
                started = await asyncio.gather(
                    *(start_sandbox(self.launcher) for _ in range(batch)), return_exceptions=True
                )
            finally:
                self.starting -= batch
            failures = [item for item in started if isinstance(item, BaseException)]
            self.warm.extend(item for item in started if isinstance(item, ReplSandbox))
            logger.debug("repl.pool_filled", started=batch - len(failures), warm=len(self.warm))
            if failures:
                raise SandboxFailure(f"{len(failures)} warm sandboxes failed to start: {failures[0]!r}")

    async def sweep_once(self) -> None:
        """One pass of the sweep loop: idle kept sandboxes and dead or old warm ones go."""
        cutoff = time.monotonic() - self.policy.idle_ttl_s
        for session_id, sandbox in list(self.hot.items()):
            if sandbox.last_used_at < cutoff or not sandbox.alive:
                del self.hot[session_id]
                self.discard(sandbox)
        for sandbox in [item for item in self.warm if not item.alive or self.too_old(item)]:
            self.warm.remove(sandbox)
            self.discard(sandbox)
