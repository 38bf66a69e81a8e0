"""Run one call ``n`` times at a given concurrency and time each call (client-side wall time)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.stats import CpuUsage, Measurement
from codeapi.sandbox import cgroups
from codeapi.units import MB

Call = Callable[[], Awaitable[None]]
# Per language: (sum of sandbox seconds, number of executions), as the server counts them.
SandboxTotals = dict[str, tuple[float, float]]
Snapshot = Callable[[], Awaitable[SandboxTotals]]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class CallFailed(Exception):
    """A call returned, but not what the scenario expects (wrong status, output or size)."""


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, reaped children's) user+system CPU seconds of a process, from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime, stime, cutime, cstime are fields 14-17.
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime) / CLOCK_TICKS, (cutime + cstime) / CLOCK_TICKS


MEMORY_CGROUPS = Path("/sys/fs/cgroup/memory/codeapi")


def resident_sandboxes(pid: int) -> dict[str, float]:
    """Job cgroups of the server ``pid`` that exist right now (kept REPL sandboxes, the zygote, runs
    still tearing down) and the memory charged to them; the server names them ``<pid>/<job id>``."""
    count, charged = 0, 0
    try:
        entries = list((MEMORY_CGROUPS / str(pid)).iterdir())
    except OSError:
        return {}
    for entry in entries:
        if entry.is_dir():
            count += 1
            try:
                charged += int((entry / "memory.usage_in_bytes").read_text())
            except (OSError, ValueError):
                pass
    return {"count": count, "memory_mib": round(charged / MB, 1)}


def kept_sandbox_pss(pid: int) -> dict[str, float]:
    """Proportional set size (shared pages split among their sharers) of the processes in each of the
    server's REPL sandboxes (job cgroups ``<pid>/repl-*``): what one more sandbox costs in memory."""
    totals: list[float] = []
    for entry in (cgroups.CGROUP_ROOT / "pids" / cgroups.PARENT).glob(f"{pid}/repl-*"):
        total_kib = 0
        for member in cgroups.members_below(entry):
            try:
                rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
            except OSError:
                continue
            total_kib += sum(int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:"))
        if total_kib:
            totals.append(total_kib / 1024)
    if not totals:
        return {"sandboxes": 0}
    return {
        "sandboxes": len(totals),
        "pss_mib_per_sandbox": round(sum(totals) / len(totals), 1),
        "pss_mib_max": round(max(totals), 1),
    }


def sandbox_delta(before: SandboxTotals | None, after: SandboxTotals | None) -> dict[str, dict[str, float]]:
    """Executions and mean sandbox wall time per language between two snapshots of the server's metrics."""
    if before is None or after is None:
        return {}
    found: dict[str, dict[str, float]] = {}
    for lang, (total_s, count) in after.items():
        old_total, old_count = before.get(lang, (0.0, 0.0))
        if count > old_count:
            found[lang] = {"count": count - old_count, "mean_ms": (total_s - old_total) * 1000 / (count - old_count)}
    return found


async def take(snapshot: Snapshot | None) -> SandboxTotals | None:
    if snapshot is None:
        return None
    try:
        return await snapshot()
    except Exception:
        return None


def describe(error: BaseException) -> str:
    text = str(error) or repr(error)
    return f"{type(error).__name__}: {text[:300]}"


async def measure(
    name: str,
    group: str,
    call: Call | list[Call],
    *,
    n: int,
    concurrency: int = 1,
    warmup: int = 1,
    cpu_pid: int | None = None,
    labels: dict[str, Any] | None = None,
    snapshot: Snapshot | None = None,
) -> Measurement:
    """``warmup`` untimed sequential calls, then ``n`` timed calls spread over ``concurrency`` workers.

    ``call`` is one call for every worker, or one per worker (each continuing its own session).
    A call that raises counts as an error and is left out of the latency samples.
    """
    per_worker = call if isinstance(call, list) else [call] * max(concurrency, 1)
    warmup_errors: list[str] = []
    for _ in range(warmup):
        for each in dict.fromkeys(per_worker):  # every distinct call once
            try:
                await each()
            except Exception as error:
                warmup_errors.append(describe(error))
    errors: list[str] = []
    samples: list[float] = []
    pending = iter(range(n))

    async def worker(call: Call) -> None:
        for _ in pending:  # one iterator shared by every worker: n calls in total
            started = time.perf_counter()
            try:
                await call()
            except Exception as error:
                errors.append(describe(error))
                continue
            samples.append(time.perf_counter() - started)

    totals_before = await take(snapshot)
    cpu_before = cpu_seconds(cpu_pid) if cpu_pid else None
    started = time.perf_counter()
    await asyncio.gather(*(worker(each) for each in per_worker))
    wall_s = time.perf_counter() - started
    totals_after = await take(snapshot)
    cpu = None
    if cpu_pid and cpu_before:
        own, children = cpu_seconds(cpu_pid)
        cpu = CpuUsage(server_s=own - cpu_before[0], children_s=children - cpu_before[1])
    measurement = Measurement(
        name=name,
        group=group,
        concurrency=concurrency,
        samples_s=samples,
        errors=errors,
        wall_s=wall_s,
        warmup=warmup,
        cpu=cpu,
        labels=dict(labels or {}),
    )
    if warmup_errors:
        measurement.labels["warmup_errors"] = warmup_errors[:3]
    if snapshot is not None:
        measurement.labels["server_sandbox"] = sandbox_delta(totals_before, totals_after)
    if cpu_pid:
        measurement.labels["sandboxes_after"] = resident_sandboxes(cpu_pid)
    return measurement


@dataclass
class Plan:
    """One sequential scenario of an interleaved measurement."""

    name: str
    group: str
    call: Call
    n: int
    cpu_pid: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)


def schedule(plans: list[Plan]) -> list[int]:
    """Plan indices in run order: each plan's calls spread evenly over the rounds of the largest one."""
    rounds = max((plan.n for plan in plans), default=0)
    order: list[int] = []
    for index in range(rounds):
        for position, plan in enumerate(plans):
            if (index + 1) * plan.n // rounds > index * plan.n // rounds:
                order.append(position)
    return order


async def measure_interleaved(
    plans: list[Plan], warmup: int = 1, snapshot: Snapshot | None = None
) -> list[Measurement]:
    """Sequential scenarios run alternately (A B A B ...), so a noisy phase of the machine hits all alike.

    Each plan's wall time is the sum of its own calls; CPU is read around each of its calls. The
    server's metrics (``snapshot``) are read around the whole run and given to the plans that have a
    ``cpu_pid``, the ones that call the server.
    """
    warmup_errors: list[list[str]] = [[] for _ in plans]
    for position, plan in enumerate(plans):
        for _ in range(warmup):
            try:
                await plan.call()
            except Exception as error:
                warmup_errors[position].append(describe(error))
    samples: list[list[float]] = [[] for _ in plans]
    errors: list[list[str]] = [[] for _ in plans]
    walls = [0.0 for _ in plans]
    cpus = [[0.0, 0.0] for _ in plans]
    totals_before = await take(snapshot)
    for position in schedule(plans):
        plan = plans[position]
        cpu_before = cpu_seconds(plan.cpu_pid) if plan.cpu_pid else None
        started = time.perf_counter()
        try:
            await plan.call()
        except Exception as error:
            errors[position].append(describe(error))
        else:
            samples[position].append(time.perf_counter() - started)
        walls[position] += time.perf_counter() - started
        if plan.cpu_pid and cpu_before:
            own, children = cpu_seconds(plan.cpu_pid)
            cpus[position][0] += own - cpu_before[0]
            cpus[position][1] += children - cpu_before[1]
    totals_after = await take(snapshot)
    found: list[Measurement] = []
    for position, plan in enumerate(plans):
        measurement = Measurement(
            name=plan.name,
            group=plan.group,
            concurrency=1,
            samples_s=samples[position],
            errors=errors[position],
            wall_s=walls[position],
            warmup=warmup,
            cpu=CpuUsage(*cpus[position]) if plan.cpu_pid else None,
            labels={**plan.labels, "interleaved_with": [other.name for other in plans if other is not plan]},
        )
        if warmup_errors[position]:
            measurement.labels["warmup_errors"] = warmup_errors[position][:3]
        if snapshot is not None and plan.cpu_pid:
            measurement.labels["server_sandbox"] = sandbox_delta(totals_before, totals_after)
        if plan.cpu_pid:
            measurement.labels["sandboxes_after"] = resident_sandboxes(plan.cpu_pid)
        found.append(measurement)
    return found
