"""Usage per caller and language: recorded once per execution (codeapi.execution.accounting), kept as
hourly totals in the metadata store (so every replica's work adds up), summed here for the admin API,
and exported to Prometheus."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from codeapi.observability.metrics import CALLER_BYTES, CALLER_EXECUTIONS, CALLER_WALL_SECONDS
from codeapi.storage.metadata.base import UsageRecords, UsageSample, UsageTotals


@dataclass
class Counters:
    executions: int = 0
    errors: int = 0
    timeouts: int = 0
    wall_s: float = 0.0
    bytes_in: int = 0
    bytes_out: int = 0
    last_used_at: datetime | None = None

    def add(self, totals: UsageTotals) -> None:
        for item in fields(self):
            if item.name != "last_used_at":
                setattr(self, item.name, getattr(self, item.name) + getattr(totals, item.name))
        if self.last_used_at is None or totals.last_used_at > self.last_used_at:
            self.last_used_at = totals.last_used_at

    def as_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["wall_s"] = round(self.wall_s, 3)
        body["last_used_at"] = self.last_used_at.isoformat() if self.last_used_at else None
        return body


def summed(totals: Iterable[UsageTotals]) -> Counters:
    counters = Counters()
    for item in totals:
        counters.add(item)
    return counters


def grouped(totals: Iterable[UsageTotals], by: str) -> dict[str, Counters]:
    groups: dict[str, Counters] = defaultdict(Counters)
    for item in totals:
        groups[str(getattr(item, by))].add(item)
    return dict(groups)


logger = structlog.get_logger(__name__)


class UsageLedger:
    """Counts are written after the response is on its way (a round trip to the store per run is
    not the caller's wait); ``since`` and shutdown wait for the writes still in flight."""

    def __init__(self, store: UsageRecords) -> None:
        self.store = store
        self.writing: set[asyncio.Task[None]] = set()

    def record(
        self,
        usage_id: str,
        label: str,
        language: str,
        wall_s: float,
        bytes_in: int,
        bytes_out: int,
        error: bool,
        timeout: bool = False,
    ) -> None:
        CALLER_EXECUTIONS.labels(label, language, "error" if error else "ok").inc()
        CALLER_WALL_SECONDS.labels(label, language).inc(wall_s)
        CALLER_BYTES.labels(label, "in").inc(bytes_in)
        CALLER_BYTES.labels(label, "out").inc(bytes_out)
        sample = UsageSample(
            caller=usage_id,
            language=language,
            at=datetime.now(UTC),
            errors=int(error),
            timeouts=int(timeout),
            wall_s=wall_s,
            bytes_in=bytes_in,
            bytes_out=bytes_out,
        )
        task = asyncio.create_task(self.write(sample))
        self.writing.add(task)
        task.add_done_callback(self.writing.discard)

    async def write(self, sample: UsageSample) -> None:
        try:
            await self.store.add_usage(sample)
        except Exception as error:  # noqa: BLE001 - a lost count must not fail anything else
            logger.warning("usage.write_failed", caller=sample.caller, error=str(error))

    async def flush(self) -> None:
        """Until every count recorded so far is in the store."""
        if self.writing:
            await asyncio.gather(*self.writing)

    async def since(self, period: timedelta) -> list[UsageTotals]:
        await self.flush()
        return await self.store.usage_since(datetime.now(UTC) - period)
