"""``python -m bench.programmatic``: programmatic tool calling round trips beside plain /exec.

One real ``codeapi serve`` per backend; calls go one at a time and the tools answer at once, so
every millisecond measured is the API's own. Scenarios, each timed from the start request to
``completed``:

- ``exec``: plain /exec of a one-line Python program (the warm REPL path);
- ``ptc, 1 round`` and ``ptc, 3 rounds``: one awaited call per round;
- ``ptc, gather of 5``: five calls in one ``asyncio.gather``, one round.

The cost of an extra round is measured directly: from a continuation to the next
``tool_call_required`` (the rounds inside "3 rounds"). Must run as root from the repository root
(the server creates nsjail sandboxes).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from bench.server import BACKENDS, running_server
from bench.stats import Summary

TOOLS = [{"name": "lookup", "description": "answers at once", "parameters": {"type": "object"}}]
SCENARIOS: dict[str, tuple[str, int]] = {  # name: (program, rounds it makes)
    "ptc, 1 round": ("r = await lookup(k=1)\nprint(r['k'])", 1),
    "ptc, 3 rounds": ("for k in range(3):\n    r = await lookup(k=k)\nprint(r['k'])", 3),
    "ptc, gather of 5": ("rs = await asyncio.gather(*(lookup(k=k) for k in range(5)))\nprint(len(rs))", 1),
}
WARMUP = 3


Rounds = list[float]  # seconds from a continuation to the next tool_call_required
EXTRA_ROUND = "extra round (continuation → next batch)"


async def plain_exec(client: httpx.AsyncClient, rounds: Rounds) -> None:
    body = (await client.post("/exec", json={"lang": "py", "code": "print(1)"})).json()
    if body.get("stdout") != "1\n":
        raise RuntimeError(f"unexpected /exec answer: {body}")


def programmatic(code: str, expected: int) -> Callable[[httpx.AsyncClient, Rounds], Awaitable[None]]:
    async def call(client: httpx.AsyncClient, rounds: Rounds) -> None:
        reply: dict[str, Any] = (await client.post("/exec/programmatic", json={"code": code, "tools": TOOLS})).json()
        made = 0
        while reply.get("status") == "tool_call_required":
            made += 1
            results = [{"call_id": c["id"], "result": c["input"], "is_error": False} for c in reply["tool_calls"]]
            body = {"continuation_token": reply["continuation_token"], "tool_results": results}
            started = time.perf_counter()
            reply = (await client.post("/exec/programmatic", json=body)).json()
            if reply.get("status") == "tool_call_required":
                rounds.append(time.perf_counter() - started)
        if reply.get("status") != "completed" or made != expected:
            raise RuntimeError(f"unexpected answer after {made} rounds: {reply}")

    return call


async def measure(
    client: httpx.AsyncClient, call: Callable[[httpx.AsyncClient, Rounds], Awaitable[None]], n: int, rounds: Rounds
) -> Summary:
    for _ in range(WARMUP):
        await call(client, [])
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call(client, rounds)
        samples.append(time.perf_counter() - started)
    return Summary.of(samples)


async def measure_backend(base_url: str, api_key: str, n: int) -> dict[str, Summary]:
    async with httpx.AsyncClient(base_url=base_url, headers={"x-api-key": api_key}, timeout=120) as client:
        rounds: Rounds = []
        results = {"exec": await measure(client, plain_exec, n, [])}
        for name, (code, expected) in SCENARIOS.items():
            results[name] = await measure(client, programmatic(code, expected), n, rounds)
        results[EXTRA_ROUND] = Summary.of(rounds)
    return results


def render(backend: str, n: int, results: dict[str, Summary]) -> str:
    lines = [
        f"### {backend} (n={n} each, sequential)",
        "",
        "| scenario | n | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {name} | {s.n} | {s.p50:.1f} | {s.p99:.1f} |" for name, s in results.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50, help="samples per scenario")
    parser.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    args = parser.parse_args(argv)
    for backend in BACKENDS if args.backend == "all" else (args.backend,):
        with running_server(backend) as server:
            results = asyncio.run(measure_backend(server.base_url, server.api_key, args.n))
        sys.stdout.write(render(backend, args.n, results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
