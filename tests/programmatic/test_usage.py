"""A programmatic program is an execution: counted once, at its end, in the admin API's usage, in
/metrics and in the security log, as an /exec run is (codeapi.execution.accounting)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.admin.conftest import Service, create_key
from tests.programmatic.conftest import complete, start

WEATHER = "r = await get_weather(city='Oslo')\nprint(r['temp'])"


@pytest.fixture
async def tenant(service: Service, admin: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    """A client on a managed key of its own, so its usage row holds only this test's executions."""
    created = await create_key(admin, name="programmatic")
    async with service.client(headers={"x-api-key": created["api_key"]}) as client:
        yield client


def executions(metrics: str, language: str, termination: str) -> float:
    series = f'codeapi_executions_total{{language="{language}",termination="{termination}"}} '
    return next((float(line[len(series) :]) for line in metrics.splitlines() if line.startswith(series)), 0.0)


async def scrape(client: httpx.AsyncClient) -> str:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return response.text


async def usage_of(admin: httpx.AsyncClient, tenant: httpx.AsyncClient) -> dict[str, Any]:
    """The tenant's row of /api/v1/admin/metrics/api-keys (zeros before its first execution)."""
    prefix = tenant.headers["x-api-key"][:11]
    rows = (await admin.get("/api/v1/admin/metrics/api-keys")).json()
    mine: dict[str, Any] = next((row for row in rows if row["key_prefix"] == prefix), {"executions": 0})
    return mine


async def total_executions(admin: httpx.AsyncClient) -> int:
    count: int = (await admin.get("/api/v1/admin/stats")).json()["usage"]["executions"]
    return count


async def test_a_program_with_tool_rounds_is_counted_once_at_its_end(
    admin: httpx.AsyncClient, tenant: httpx.AsyncClient
) -> None:
    before, metrics_before = await total_executions(admin), await scrape(tenant)
    reply = await start(tenant, WEATHER)
    assert reply["status"] == "tool_call_required"
    assert await total_executions(admin) == before  # a pause is not the end of the program
    final, batches = await complete(tenant, reply)
    assert final == {**final, "status": "completed", "stdout": "20\n"} and len(batches) == 1
    assert await total_executions(admin) == before + 1
    mine = await usage_of(admin, tenant)
    assert (mine["executions"], mine["errors"], mine["timeouts"]) == (1, 0, 0)
    assert (mine["bytes_in"], mine["bytes_out"]) == (len(WEATHER), len("20\n"))
    assert mine["wall_s"] > 0
    languages = {row["language"]: row for row in (await admin.get("/api/v1/admin/metrics/languages")).json()}
    assert languages["py"]["executions"] >= 1
    metrics = await scrape(tenant)
    assert executions(metrics, "py", "exited") == executions(metrics_before, "py", "exited") + 1
    prefix = tenant.headers["x-api-key"][:11]
    assert f'codeapi_caller_executions_total{{caller="{prefix}",language="py",result="ok"}} 1.0' in metrics


async def test_a_bash_program_that_fails_after_a_round_is_counted_as_an_error(
    admin: httpx.AsyncClient, tenant: httpx.AsyncClient
) -> None:
    metrics_before = await scrape(tenant)
    code = 'get_weather \'{"city": "Oslo"}\'\nexit 3'
    final, batches = await complete(tenant, await start(tenant, code, lang="bash"))
    assert len(batches) == 1
    assert final == {**final, "status": "error", "error": "Sandbox exited with code 3"}
    mine = await usage_of(admin, tenant)
    assert (mine["executions"], mine["errors"], mine["timeouts"]) == (1, 1, 0)
    metrics = await scrape(tenant)
    assert executions(metrics, "bash", "exited") == executions(metrics_before, "bash", "exited") + 1


async def test_a_round_over_its_time_is_a_contained_timeout(
    admin: httpx.AsyncClient, tenant: httpx.AsyncClient
) -> None:
    metrics_before = await scrape(tenant)
    with capture_logs() as logs:
        final = await start(tenant, "while True:\n    pass", timeout=1000)
    assert final == {**final, "status": "error", "error": "Time limit exceeded"}
    assert final["stderr"] == "Time limit exceeded (TimeoutError: Execution exceeded 1 seconds)\n"
    [event] = [entry for entry in logs if entry["event"] == "sandbox.timed_out"]
    prefix = tenant.headers["x-api-key"][:11]
    assert (event["caller"], event["language"], event["client_ip"]) == (prefix, "py", "127.0.0.1")
    mine = await usage_of(admin, tenant)
    assert (mine["executions"], mine["errors"], mine["timeouts"]) == (1, 1, 1)
    metrics = await scrape(tenant)
    assert executions(metrics, "py", "timeout") == executions(metrics_before, "py", "timeout") + 1


async def test_a_cancelled_program_is_counted_as_stopped(admin: httpx.AsyncClient, tenant: httpx.AsyncClient) -> None:
    metrics_before = await scrape(tenant)
    request_id = f"usage-{uuid.uuid4().hex[:8]}"
    headers = {"x-librechat-code-request-id": request_id}
    running = asyncio.create_task(start(tenant, "while True:\n    pass", tools=[], headers=headers))
    async with asyncio.timeout(30):
        while (await tenant.post("/exec/programmatic/cancel", json={"request_id": request_id})).status_code != 202:
            await asyncio.sleep(0.05)  # the program is not in flight yet
    final = await running
    assert final == {**final, "status": "error", "error": "Execution failed or timed out"}
    mine = await usage_of(admin, tenant)
    assert (mine["executions"], mine["errors"]) == (1, 1)
    metrics = await scrape(tenant)
    assert executions(metrics, "py", "stopped") == executions(metrics_before, "py", "stopped") + 1


async def test_a_refused_continuation_is_not_an_execution(admin: httpx.AsyncClient, tenant: httpx.AsyncClient) -> None:
    before = await total_executions(admin)
    response = await tenant.post("/exec/programmatic", json={"continuation_token": "forged", "tool_results": []})
    assert response.json() == {"status": "error", "error": "Invalid or expired continuation token"}
    assert await total_executions(admin) == before
    assert (await usage_of(admin, tenant))["executions"] == 0
