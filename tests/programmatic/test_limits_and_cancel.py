"""Bounded runs: time, rounds, batch size, pauses that are never continued, and cancel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ClientFactory
from tests.programmatic.conftest import answer, complete, start

PAUSE_S = 2
INVALID = {"status": "error", "error": "Invalid or expired continuation token"}


@pytest.fixture(scope="module")
async def short(make_client: ClientFactory, test_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose paused programs wait 2 s and whose rounds may run 3 s."""
    async with make_client(max_ptc_pause_seconds=PAUSE_S, max_execution_time=3, sandbox_uid=1001 + 320) as client:
        yield client


def live_runs(client: httpx.AsyncClient) -> list[Any]:
    """The programs the app behind the client holds (running or paused)."""
    app = client._transport.app  # type: ignore[attr-defined]
    return list(app.state.programmatic.runs.values())


def sandboxes(client: httpx.AsyncClient) -> list[Path]:
    """The one-shot job directories alive in the app behind the client (warm REPL ones aside)."""
    app = client._transport.app  # type: ignore[attr-defined]
    return [path for path in app.state.programmatic.workspaces.active if not path.name.startswith("repl-")]


async def test_a_round_that_runs_too_long_is_stopped(short: httpx.AsyncClient) -> None:
    final = await start(short, "while True:\n    pass")
    assert final["status"] == "error"
    assert final["error"] == "Time limit exceeded"
    assert "TimeoutError: Execution exceeded 3 seconds" in final["stderr"]
    assert sandboxes(short) == []


async def test_time_waiting_for_tools_does_not_count_as_running(short: httpx.AsyncClient) -> None:
    reply = await start(
        short, "import time\ntime.sleep(1.5)\nawait get_weather(city='A')\ntime.sleep(1.5)\nprint('ok')"
    )
    await asyncio.sleep(1.5)
    final = await answer(short, reply)
    assert final["stdout"] == "ok\n"


async def test_a_paused_program_never_continued_is_gone_with_its_token(short: httpx.AsyncClient) -> None:
    reply = await start(short, "await get_weather(city='A')")
    assert len(sandboxes(short)) == 1
    await asyncio.sleep(PAUSE_S + 1.5)
    assert sandboxes(short) == []
    assert await answer(short, reply) == INVALID


async def test_at_most_twenty_rounds(client: httpx.AsyncClient) -> None:
    final, batches = await complete(client, await start(client, "while True:\n    await get_weather(city='A')"))
    assert len(batches) == 20
    assert final["status"] == "error"
    assert "more than 20 rounds" in final["stderr"]


async def test_a_flood_of_calls_in_one_batch_is_refused(client: httpx.AsyncClient) -> None:
    final = await start(client, "await asyncio.gather(*(get_weather(city=str(i)) for i in range(1000)))")
    assert final["status"] == "error"
    assert "More than 64 tool calls at once" in final["stderr"]


async def test_cancel_stops_a_paused_program_and_frees_its_sandbox(client: httpx.AsyncClient) -> None:
    headers = {"x-librechat-code-request-id": "req-paused"}
    before = set(sandboxes(client))
    reply = await start(client, "await get_weather(city='A')", headers=headers)
    assert len(set(sandboxes(client)) - before) == 1
    response = await client.post("/exec/programmatic/cancel", json={"request_id": "req-paused"})
    assert response.json() == {"cancelled": True}
    assert set(sandboxes(client)) - before == set()
    assert await answer(client, reply) == INVALID


async def test_cancel_stops_a_running_program(client: httpx.AsyncClient) -> None:
    headers = {"x-librechat-code-request-id": "req-running"}
    before = set(sandboxes(client))
    running = asyncio.create_task(
        client.post("/exec/programmatic", json={"code": "while True:\n    pass", "tools": []}, headers=headers)
    )
    while not set(sandboxes(client)) - before:
        await asyncio.sleep(0.05)
    response = await client.post("/exec/programmatic/cancel", json={"request_id": "req-running"})
    assert response.json() == {"cancelled": True}
    assert set(sandboxes(client)) - before == set()
    finished = (await running).json()
    assert finished["status"] == "error"


async def test_cancel_of_an_unknown_id_is_a_no_op(client: httpx.AsyncClient) -> None:
    for body in ({"request_id": "never-started"}, {}):
        response = await client.post("/exec/programmatic/cancel", json=body)
        assert response.status_code == 200
        assert response.json() == {"cancelled": False}


async def test_a_caller_that_goes_away_leaves_no_sandbox_behind(client: httpx.AsyncClient) -> None:
    before = set(sandboxes(client))
    request = asyncio.create_task(start(client, "import time\ntime.sleep(5)\nawait get_weather(city='A')"))
    while not set(sandboxes(client)) - before:
        await asyncio.sleep(0.05)
    request.cancel()
    deadline = asyncio.get_running_loop().time() + 10
    while set(sandboxes(client)) - before and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
    assert set(sandboxes(client)) - before == set()


async def test_more_programs_in_flight_than_a_replica_holds_get_429(client: httpx.AsyncClient) -> None:
    service = client._transport.app.state.programmatic  # type: ignore[attr-defined]
    room = service.limits.max_live_runs - len(service.runs)
    paused = await asyncio.gather(*(start(client, f"await get_weather(city='{i}')") for i in range(room)))
    assert {reply["status"] for reply in paused} == {"tool_call_required"}
    refused = await client.post("/exec/programmatic", json={"code": "print(1)", "tools": []})
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "5"
    finished = await asyncio.gather(*(answer(client, reply) for reply in paused))
    assert {final["status"] for final in finished} == {"completed"}
    assert (await start(client, "print(1)"))["stdout"] == "1\n"


async def test_output_over_the_exec_limit_stops_the_program(client: httpx.AsyncClient) -> None:
    code = "await get_weather(city='A')\nprint('x' * 200_000)\nawait get_weather(city='B')"
    # The call after the print may still reach the client while the sandbox is being stopped.
    final, _ = await complete(client, await start(client, code))
    assert final["status"] == "error"
    assert final["error"] == "stdout length exceeded"
    assert len(final["stdout"]) == 64 * 1024


async def test_a_program_that_dies_while_paused_reports_its_end_on_the_continuation(client: httpx.AsyncClient) -> None:
    code = (
        "import os, threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), os._exit(3))).start()\n"
        "await get_weather(city='A')\n"
        "print('not reached')"
    )
    reply = await start(client, code)
    [run] = [run for run in live_runs(client) if run.state.session_id == reply["session_id"]]
    async with asyncio.timeout(20):
        while not run.reported:  # until the program has ended on its own
            await asyncio.sleep(0.1)
    final = await answer(client, reply)
    assert final == {**final, "status": "error", "error": "Sandbox exited with code 3", "stdout": ""}
