"""``python -m bench.workspaces``: stateful runtime sessions (issue 21), through HTTP, beside their floors.

On two replicas sharing Redis and S3 (replica B is started with A's backend settings):
* floors of the same run: ``GET /health`` (empty HTTP; also at a chat's pace, where the machine's idle
  CPUs wake up for it) and a default-profile one-shot ``bash true``;
* a reused runtime session's ``bash true`` and Python ``print(1)``, back to back and at a chat's pace
  (a pause before each call, as a model writing its next call makes);
* the first call of a new runtime session (a new hint each time: LibreChat's prewarm call);
* restore on the other replica: a workspace of 1 MB and 100 MB made on A, its next call on B (each
  sample first touches the workspace on A, so B's kept copy is stale and B restores);
* memory: PSS of the sandboxes a replica keeps for idle runtime sessions, per session.
Must run as root from the repository root; prints markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.load import kept_sandbox_pss
from bench.server import RunningServer, running_server
from bench.stats import Summary

STATEFUL = {"X-CodeAPI-Expected-Profile": "stateful"}
THINK_S = 0.5  # far below a model's seconds between calls, and enough for the sandbox's next process
SIZES_MB = (1, 100)
IDLE_SESSIONS = 8
SHARED = ("REDIS_URL", "S3_ENDPOINT", "S3_ACCESS_KEY", "S3_SECRET_KEY", "S3_BUCKET", "S3_REGION")
SERVER_SETTINGS = {"MAX_EXECUTION_TIME": "120", "SANDBOX_POOL_PY": "4"}


def hint() -> str:
    return f"v2:user:{secrets.token_hex(16)}"


async def exec_ok(
    client: httpx.AsyncClient, body: dict[str, Any], headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.post("/exec", json=body, headers=headers)
    answer: dict[str, Any] = response.json()
    if response.status_code != 200 or answer.get("stderr"):
        raise RuntimeError(f"call failed: {response.status_code} {str(answer)[:300]}")
    return answer


async def timed(call: Callable[[], Awaitable[object]], n: int, think_s: float = 0.0) -> Summary:
    await call()  # warm-up
    samples = []
    for _ in range(n):
        await asyncio.sleep(think_s)
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return Summary.of(samples)


def row(name: str, summary: Summary, floor: Summary | None = None) -> str:
    ratio = f"{summary.p50 / floor.p50:.1f}x" if floor is not None else ""
    return f"| {name} | {summary.p50:.1f} | {summary.p90:.1f} | {summary.p99:.1f} | {ratio} |"


async def latencies(a: httpx.AsyncClient, n: int) -> list[str]:
    async def health() -> None:
        (await a.get("/health")).raise_for_status()

    http_floor = await timed(health, n)
    one_shot = await timed(lambda: exec_ok(a, {"lang": "bash", "code": "true"}), n)
    reused = hint()

    def stateful(lang: str, code: str, which: str = reused) -> Callable[[], Awaitable[object]]:
        return lambda: exec_ok(a, {"lang": lang, "code": code, "runtime_session_hint": which}, STATEFUL)

    async def new_runtime() -> None:
        await exec_ok(a, {"lang": "bash", "code": "true", "runtime_session_hint": hint()}, STATEFUL)

    rows = [
        "| call | p50 ms | p90 | p99 | / empty HTTP |",
        "|---|---|---|---|---|",
        row("floor: GET /health (empty HTTP)", http_floor),
        row("floor: GET /health at chat pace", await timed(health, n, THINK_S), http_floor),
        row("floor: default profile, one-shot `bash true`", one_shot, http_floor),
        row("reused runtime session, `bash true`, back to back", await timed(stateful("bash", "true"), n), http_floor),
        row("reused, `bash true`, chat pace", await timed(stateful("bash", "true"), n, THINK_S), http_floor),
        row("reused, Python `print(1)`, back to back", await timed(stateful("py", "print(1)"), n), http_floor),
        row("reused, Python `print(1)`, chat pace", await timed(stateful("py", "print(1)"), n, THINK_S), http_floor),
        row("first call of a new runtime session (`bash true`)", await timed(new_runtime, n, THINK_S), http_floor),
    ]
    return rows


async def restores(a: httpx.AsyncClient, b: httpx.AsyncClient, n: int) -> list[str]:
    rows = ["| workspace | next call on the other replica p50 ms | p90 | same replica p50 ms |", "|---|---|---|---|"]
    for size in SIZES_MB:
        which = hint()
        make = f"head -c {size * 1024 * 1024} /dev/urandom > data.bin; mkdir -p src; for i in $(seq 100); do echo $i > src/$i.txt; done"
        body = {"lang": "bash", "runtime_session_hint": which}
        await exec_ok(a, {**body, "code": make}, STATEFUL)
        samples = []
        for _ in range(n):
            await exec_ok(a, {**body, "code": "date > touched.txt"}, STATEFUL)  # B's copy is now stale
            started = time.perf_counter()
            await exec_ok(b, {**body, "code": "test -s data.bin"}, STATEFUL)
            samples.append(time.perf_counter() - started)
        moved = Summary.of(samples)

        async def on_b(body: dict[str, Any] = body) -> None:
            await exec_ok(b, {**body, "code": "test -s data.bin"}, STATEFUL)

        same = await timed(on_b, n)
        rows.append(f"| {size} MB + 100 small files | {moved.p50:.0f} | {moved.p90:.0f} | {same.p50:.1f} |")
    return rows


async def idle_memory(server: RunningServer, client: httpx.AsyncClient) -> list[str]:
    before = kept_sandbox_pss(server.pid)
    for _ in range(IDLE_SESSIONS):
        await exec_ok(client, {"lang": "py", "code": "print(1)", "runtime_session_hint": hint()}, STATEFUL)
    after = kept_sandbox_pss(server.pid)
    return [
        f"| idle runtime sessions kept | PSS per kept sandbox MiB (before: {before}) |",
        "|---|---|",
        f"| {IDLE_SESSIONS} | {after} |",
    ]


async def measure(a: RunningServer, b: RunningServer, n: int) -> list[str]:
    headers = {"x-api-key": a.api_key}
    async with (
        httpx.AsyncClient(base_url=a.base_url, headers=headers, timeout=300) as on_a,
        httpx.AsyncClient(base_url=b.base_url, headers=headers, timeout=300) as on_b,  # B runs with A's key
    ):
        return [
            *await latencies(on_a, n),
            "",
            *await restores(on_a, on_b, max(n // 4, 5)),
            "",
            *await idle_memory(b, on_b),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=40, help="samples per latency (default 40)")
    args = parser.parse_args()
    with running_server("redis-s3", extra=SERVER_SETTINGS) as a:
        shared = {name: a.settings[name] for name in SHARED}
        with running_server("embedded", extra={**SERVER_SETTINGS, **shared, "API_KEY": a.api_key}) as b:
            rows = asyncio.run(measure(a, b, args.n))
    sys.stdout.write("\n".join(rows) + "\n")


if __name__ == "__main__":
    main()
