"""The one rule for background loops: a failing pass is counted, shown and retried; stop ends them."""

from __future__ import annotations

import asyncio

from codeapi.errors import BackendUnavailable
from codeapi.observability.loops import FAILING_AFTER, Loops


async def test_a_loop_that_keeps_failing_is_shown_failing_and_goes_on_until_it_works() -> None:
    loops = Loops(first_backoff_s=0.001)
    failures = [ValueError("unexpected"), BackendUnavailable("Redis is down"), *[KeyError("x")] * FAILING_AFTER]
    seen: list[object] = []
    recovered = asyncio.Event()

    async def run_pass() -> None:
        seen.append(loops.health()["flaky"])
        if failures:
            raise failures.pop(0)
        recovered.set()

    loops.start("flaky", run_pass, lambda: asyncio.sleep(0.001))
    async with asyncio.timeout(30):
        await recovered.wait()
    statuses = [entry["status"] for entry in seen]  # type: ignore[index]
    assert statuses[:FAILING_AFTER] == ["running"] * FAILING_AFTER
    assert statuses[FAILING_AFTER:] == ["failing"] * (len(statuses) - FAILING_AFTER)
    health = loops.health()
    assert health["status"] == "healthy"
    assert health["flaky"] == {
        "status": "running",
        "passes": health["flaky"]["passes"],  # type: ignore[index]
        "failures": FAILING_AFTER + 2,
        "failures_in_a_row": 0,
        "last_error": "KeyError: 'x'",
    }
    await loops.stop()
    assert loops.tasks == []


async def test_a_degraded_loop_makes_the_health_degraded() -> None:
    loops = Loops(first_backoff_s=0.001)
    passes = 0

    async def always_failing() -> None:
        nonlocal passes
        passes += 1
        raise RuntimeError("broken for good")

    loops.start("broken", always_failing, lambda: asyncio.sleep(0.001))
    async with asyncio.timeout(30):
        while passes <= FAILING_AFTER:
            await asyncio.sleep(0.001)
    assert loops.health()["status"] == "degraded"
    assert loops.failing == ["broken"]
    await loops.stop()
