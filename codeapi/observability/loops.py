"""The one rule for background loops (session sweeper, state archiver, pool refill, pool sweep).

A loop is a pass and a pause between passes. A pass that raises is logged and counted, and the
loop goes on after a back-off that doubles with each failure in a row (up to MAX_BACKOFF_S); a
loop failing FAILING_AFTER times in a row shows as failing in /health/detailed. Shutdown cancels
every loop, which is the only way one ends.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from codeapi.errors import CodeapiError
from codeapi.observability.metrics import LOOP_FAILURES

logger = structlog.get_logger(__name__)

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
FAILING_AFTER = 3


@dataclass
class LoopRecord:
    name: str
    passes: int = 0
    failures: int = 0
    failures_in_a_row: int = 0
    last_error: str | None = None

    def health(self) -> dict[str, object]:
        return {
            "status": "failing" if self.failures_in_a_row >= FAILING_AFTER else "running",
            "passes": self.passes,
            "failures": self.failures,
            "failures_in_a_row": self.failures_in_a_row,
            "last_error": self.last_error,
        }


@dataclass
class Loops:
    first_backoff_s: float = FIRST_BACKOFF_S
    records: dict[str, LoopRecord] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, name: str, run_pass: Callable[[], Awaitable[object]], pause: Callable[[], Awaitable[None]]) -> None:
        record = LoopRecord(name)
        self.records[name] = record
        self.tasks.append(
            asyncio.create_task(supervise(record, run_pass, pause, self.first_backoff_s), name=f"loop:{name}")
        )

    def every(self, name: str, interval_s: float, run_pass: Callable[[], Awaitable[object]]) -> None:
        self.start(name, run_pass, lambda: asyncio.sleep(interval_s))

    @property
    def failing(self) -> list[str]:
        return [name for name, record in self.records.items() if record.failures_in_a_row >= FAILING_AFTER]

    def health(self) -> dict[str, object]:
        """For /health/detailed: degraded while a loop keeps failing (requests are still served)."""
        return {
            "status": "degraded" if self.failing else "healthy",
            **{name: record.health() for name, record in self.records.items()},
        }

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.tasks = []


async def supervise(
    record: LoopRecord,
    run_pass: Callable[[], Awaitable[object]],
    pause: Callable[[], Awaitable[None]],
    first_backoff_s: float,
) -> None:
    while True:
        try:
            await run_pass()
        except Exception as error:  # a background-loop iteration: log, count, back off, go on
            record.failures += 1
            record.failures_in_a_row += 1
            record.last_error = error.message if isinstance(error, CodeapiError) else f"{type(error).__name__}: {error}"
            LOOP_FAILURES.labels(record.name).inc()
            log = logger.warning if isinstance(error, CodeapiError) else logger.exception
            log("background.pass_failed", loop=record.name, error=record.last_error, in_a_row=record.failures_in_a_row)
            await asyncio.sleep(min(first_backoff_s * 2 ** (record.failures_in_a_row - 1), MAX_BACKOFF_S))
            continue
        record.passes += 1
        record.failures_in_a_row = 0
        await pause()
