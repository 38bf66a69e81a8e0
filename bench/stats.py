"""Latency samples and their summary. Times are kept in seconds and reported in milliseconds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values.

    With 20 samples p99 lies between the two largest, so it is close to the maximum.
    """
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class Summary:
    """Milliseconds, over the successful samples only."""

    n: int
    p50: float
    p90: float
    p99: float
    mean: float
    min: float
    max: float

    @classmethod
    def of(cls, samples_s: Sequence[float]) -> Summary:
        ms = [sample * 1000 for sample in samples_s]
        if not ms:
            return cls(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
        return cls(
            n=len(ms),
            p50=percentile(ms, 50),
            p90=percentile(ms, 90),
            p99=percentile(ms, 99),
            mean=sum(ms) / len(ms),
            min=min(ms),
            max=max(ms),
        )


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds the server used during a measurement: its own, and its reaped children's (nsjail + sandboxes)."""

    server_s: float
    children_s: float


@dataclass
class Measurement:
    """One scenario: ``n`` timed calls at ``concurrency``, after ``warmup`` untimed ones."""

    name: str
    group: str
    concurrency: int
    samples_s: list[float]
    errors: list[str]
    wall_s: float
    warmup: int = 0
    cpu: CpuUsage | None = None
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> Summary:
        return Summary.of(self.samples_s)

    @property
    def attempts(self) -> int:
        return len(self.samples_s) + len(self.errors)

    @property
    def throughput(self) -> float:
        """Successful calls per second of wall time (the whole scenario, all workers)."""
        return len(self.samples_s) / self.wall_s if self.wall_s > 0 else math.nan

    def cpu_ms_per_call(self) -> tuple[float, float] | None:
        if self.cpu is None or not self.attempts:
            return None
        return self.cpu.server_s * 1000 / self.attempts, self.cpu.children_s * 1000 / self.attempts

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Measurement:
        cpu = body.get("cpu")
        return cls(
            name=body["name"],
            group=body["group"],
            concurrency=body["concurrency"],
            samples_s=[sample / 1000 for sample in body["samples_ms"]],
            errors=list(body["errors"]),
            wall_s=body["wall_s"],
            warmup=body.get("warmup", 0),
            cpu=CpuUsage(**cpu) if cpu else None,
            labels=dict(body.get("labels") or {}),
        )

    def server_sandbox_ms(self) -> float:
        """Mean sandbox wall time per execution as the server measured it (one language only), else NaN."""
        found = self.labels.get("server_sandbox") or {}
        if len(found) != 1:
            return math.nan
        return float(next(iter(found.values()))["mean_ms"])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group": self.group,
            "concurrency": self.concurrency,
            "warmup": self.warmup,
            "labels": self.labels,
            "summary_ms": asdict(self.summary),
            "throughput_per_s": self.throughput,
            "wall_s": self.wall_s,
            "error_count": len(self.errors),
            "errors": self.errors,
            "cpu": asdict(self.cpu) if self.cpu else None,
            "samples_ms": [round(sample * 1000, 3) for sample in self.samples_s],
        }
