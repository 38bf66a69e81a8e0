"""Usage per key and language, as the admin API and /metrics report it."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.admin.conftest import USER, Service, create_key, running_service


async def run(client: httpx.AsyncClient, code: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/exec", json={"lang": "bash", "code": code, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_executions_are_counted_per_key_and_language(admin: httpx.AsyncClient, service: Service) -> None:
    created = await create_key(admin, name="usage-tenant")
    before = (await admin.get("/api/v1/admin/metrics/summary")).json()
    async with service.client(headers={"x-api-key": created["api_key"]}) as tenant:
        await run(tenant, "echo hello")
        await run(tenant, "echo oops >&2; exit 3")
        timed_out = await run(tenant, "sleep 30", timeout=1000)
    assert "TimeoutError" in timed_out["stderr"]
    rows = (await admin.get("/api/v1/admin/metrics/api-keys")).json()
    mine = next(row for row in rows if row["key_hash"] == created["record"]["key_hash"])
    assert (mine["name"], mine["source"], mine["key_prefix"]) == ("usage-tenant", "managed", created["api_key"][:11])
    assert (mine["executions"], mine["errors"], mine["timeouts"]) == (3, 2, 1)
    assert mine["bytes_in"] == len("echo hello") + len("echo oops >&2; exit 3") + len("sleep 30")
    assert mine["bytes_out"] >= len("hello\noops\n")
    assert mine["wall_s"] > 0 and mine["last_used_at"] is not None
    after = (await admin.get("/api/v1/admin/metrics/summary")).json()
    assert after["executions"] - before["executions"] == 3
    languages = {row["language"]: row for row in (await admin.get("/api/v1/admin/metrics/languages")).json()}
    assert languages["bash"]["executions"] >= 3
    series = (await admin.get("/api/v1/admin/metrics/time-series", params={"hours": 6})).json()
    assert len(series) == 6
    assert series[-1]["executions"] >= 3
    stats = (await admin.get("/api/v1/admin/stats")).json()
    assert stats["usage"]["executions"] >= 3 and stats["keys"]["environment"] == 1


async def test_environment_key_use_is_reported_under_its_name(admin: httpx.AsyncClient, service: Service) -> None:
    async with service.client(headers=USER) as user:
        await run(user, "echo from-env")
    rows = (await admin.get("/api/v1/admin/metrics/api-keys")).json()
    environment = next(row for row in rows if row["source"] == "environment")
    assert environment["name"] == "API_KEY" and environment["executions"] >= 1


async def test_a_bad_request_is_not_counted(admin: httpx.AsyncClient, service: Service) -> None:
    created = await create_key(admin)
    async with service.client(headers={"x-api-key": created["api_key"]}) as tenant:
        assert (await tenant.post("/exec", json={"lang": "cobol", "code": "x"})).status_code == 400
    rows = (await admin.get("/api/v1/admin/metrics/api-keys")).json()
    assert created["record"]["key_hash"] not in {row["key_hash"] for row in rows}


async def test_usage_reaches_prometheus_by_key_prefix(admin: httpx.AsyncClient, service: Service) -> None:
    created = await create_key(admin)
    async with service.client(headers={"x-api-key": created["api_key"]}) as tenant:
        await run(tenant, "echo metered")
    async with service.client(headers=USER) as user:
        metrics = (await user.get("/metrics")).text
    prefix = created["api_key"][:11]
    assert f'codeapi_caller_executions_total{{caller="{prefix}",language="bash",result="ok"}} 1.0' in metrics
    assert created["api_key"] not in metrics


async def test_the_metric_windows_are_validated(admin: httpx.AsyncClient) -> None:
    for hours in ("0", "-1", "many", str(24 * 91)):
        response = await admin.get("/api/v1/admin/metrics/summary", params={"hours": hours})
        assert response.status_code == 422, hours


def sample(metrics: str, name: str) -> float:
    line = next(line for line in metrics.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


async def test_sandbox_starts_are_counted_on_metrics(service: Service) -> None:
    async with service.client(headers=USER) as user:
        before = sample((await user.get("/metrics")).text, "codeapi_sandbox_starts_total")
        await run(user, "echo counted")
        after = sample((await user.get("/metrics")).text, "codeapi_sandbox_starts_total")
    assert after >= before + 1


async def test_warm_and_kept_python_sandboxes_are_gauged(test_root: Path) -> None:
    overrides = {"REPL_ENABLED": True, "SANDBOX_POOL_PY": 1}
    async with running_service(test_root / f"pool-{uuid.uuid4().hex[:6]}", **overrides) as service:
        async with service.client(headers=USER) as user:
            for _ in range(600):  # the zygote and the first warm sandbox start in the background
                if sample((await user.get("/metrics")).text, "codeapi_warm_sandboxes") >= 1:
                    break
                await asyncio.sleep(0.1)
            assert sample((await user.get("/metrics")).text, "codeapi_warm_sandboxes") == 1
            response = await user.post("/exec", json={"lang": "py", "code": "x = 1"})
            assert response.status_code == 200
            assert sample((await user.get("/metrics")).text, "codeapi_kept_sandboxes") == 1
