"""Bounded runs: time, rounds, batch size, pauses that are never continued, and cancel."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ClientFactory
from tests.programmatic.conftest import answer, complete, start

PAUSE_S = 2
REQUEST_ID = "x-librechat-code-request-id"
INVALID = {"status": "error", "error": "Invalid or expired continuation token"}


@pytest.fixture(scope="module")
async def short(make_client: ClientFactory, test_root: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An app whose paused programs wait 2 s and whose rounds may run 3 s."""
    async with make_client(max_ptc_pause_seconds=PAUSE_S, max_execution_time=3, sandbox_uid=1001 + 320) as client:
        yield client


async def in_flight(client: httpx.AsyncClient, request_id: str, count: int = 1) -> None:
    """Until ``count`` requests carrying ``request_id`` wait on their programs."""
    app = client._transport.app  # type: ignore[attr-defined]
    async with asyncio.timeout(30):
        while len([served for served in app.state.programmatic.requests.waiting.values()
                   if served.request_id == request_id]) < count:  # fmt: skip
            await asyncio.sleep(0.02)


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
    assert final["stderr"].startswith("Time limit exceeded (TimeoutError: Execution exceeded 3 seconds)")
    assert final["run"] == {**final["run"], "status": "TO", "code": None, "message": "Time limit exceeded"}
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


async def test_cancel_after_a_pause_was_answered_says_so_and_stops_the_paused_program(
    client: httpx.AsyncClient,
) -> None:
    """The client cancels only while its request is in flight: a pause it then never saw is never
    continued, so its program is stopped at once rather than when the pause expires."""
    request_id = f"req-paused-{uuid.uuid4().hex[:8]}"
    before = set(sandboxes(client))
    reply = await start(client, "await get_weather(city='A')", headers={REQUEST_ID: request_id})
    assert len(set(sandboxes(client)) - before) == 1
    response = await client.post("/exec/programmatic/cancel", json={"request_id": request_id})
    assert (response.status_code, response.json()) == (200, {"status": "already_completed"})
    assert set(sandboxes(client)) - before == set()
    assert await answer(client, reply) == INVALID


async def test_cancel_stops_a_running_program(client: httpx.AsyncClient) -> None:
    request_id = f"req-running-{uuid.uuid4().hex[:8]}"
    before = set(sandboxes(client))
    running = asyncio.create_task(
        client.post(
            "/exec/programmatic",
            json={"code": "while True:\n    pass", "tools": []},
            headers={REQUEST_ID: request_id},
        )
    )
    await in_flight(client, request_id)
    response = await client.post("/exec/programmatic/cancel", json={"request_id": request_id})
    assert (response.status_code, response.json()) == (202, {"status": "cancellation_requested"})
    assert set(sandboxes(client)) - before == set()
    finished = (await running).json()
    assert finished == {**finished, "status": "error", "error": "Execution failed or timed out"}
    assert finished["run"] == {**finished["run"], "status": "XX", "message": "Execution failed or timed out"}
    again = await client.post("/exec/programmatic/cancel", json={"request_id": request_id})
    assert (again.status_code, again.json()) == (200, {"status": "already_completed"})


async def test_cancel_names_the_continuation_in_flight_too(client: httpx.AsyncClient) -> None:
    """LibreChat gives every request of a round trip an id of its own."""
    reply = await start(client, "await get_weather(city='A')\nwhile True:\n    pass")
    request_id = f"req-continued-{uuid.uuid4().hex[:8]}"
    continuing = asyncio.create_task(answer(client, reply, headers={REQUEST_ID: request_id}))
    await in_flight(client, request_id)
    response = await client.post("/exec/programmatic/cancel", json={"request_id": request_id})
    assert response.status_code == 202
    assert (await continuing)["error"] == "Execution failed or timed out"


async def test_cancel_of_an_unknown_id_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/exec/programmatic/cancel", json={"request_id": "never-started"})
    assert response.status_code == 404
    assert response.json()["error_type"] == "resource_not_found"
    assert (await client.post("/exec/programmatic/cancel", json={})).status_code == 422


async def test_an_id_two_requests_in_flight_carry_cancels_neither(client: httpx.AsyncClient) -> None:
    request_id = f"req-twice-{uuid.uuid4().hex[:8]}"
    body = {"code": "while True:\n    pass", "tools": [], "timeout": 5000}
    both = [
        asyncio.create_task(client.post("/exec/programmatic", json=body, headers={REQUEST_ID: request_id}))
        for _ in range(2)
    ]
    await in_flight(client, request_id, count=2)
    response = await client.post("/exec/programmatic/cancel", json={"request_id": request_id})
    assert response.status_code == 409
    assert response.json()["error_type"] == "conflict"
    assert {(await task).json()["error"] for task in both} == {"Time limit exceeded"}


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
    assert (refused.json()["error"], refused.json()["retry_after_seconds"]) == ("rate_limited", 5)
    finished = await asyncio.gather(*(answer(client, reply) for reply in paused))
    assert {final["status"] for final in finished} == {"completed"}, [
        (final.get("error"), final.get("stderr")) for final in finished if final["status"] != "completed"
    ]
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
