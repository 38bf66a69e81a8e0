"""Every 429 has the body LibreChat's client reads to tell the model when to retry (contract §9.3):
``{"error": "rate_limited", "retry_after_seconds": N}``, beside the envelope's other fields and the
Retry-After and RateLimit headers."""

from __future__ import annotations

import uuid

import httpx

from codeapi.auth.ratelimit import AUTH_FAILURES
from tests.admin.conftest import ADMIN, USER, Service, create_key


def assert_rate_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    body = response.json()
    seconds = int(response.headers["Retry-After"])
    assert seconds >= 1
    assert (body["error"], body["retry_after_seconds"]) == ("rate_limited", seconds)
    assert body["message"] == f"Too many requests. Please retry in {seconds} second{'s' * (seconds != 1)}."
    assert body["error_type"] == "rate_limited"
    assert {"details", "request_id", "timestamp"} <= set(body)


async def test_every_route_over_a_keys_limit_answers_the_clients_body(service: Service) -> None:
    async with service.client(headers=ADMIN) as admin:
        created = await create_key(admin, rate_limits={"per_minute": 1})
    async with service.client(headers={"x-api-key": created["api_key"]}) as client:
        assert (await client.get("/files/" + "A" * 21)).status_code == 200
        refused = [
            await client.post("/exec", json={"lang": "bash", "code": "echo hi"}),
            await client.post("/v1/exec", json={"lang": "bash", "code": "echo hi"}),
            await client.post("/exec/programmatic", json={"code": "print(1)", "tools": []}),
            await client.post("/exec/programmatic/cancel", json={"request_id": "r"}),
            await client.post("/upload", files={"file": ("a.txt", b"a")}),
            await client.get("/files/" + "A" * 21),
            await client.get(f"/download/{'A' * 21}/{'B' * 21}"),
        ]
    for response in refused:
        assert_rate_limited(response)
        assert response.headers["RateLimit-Remaining"] == "0" and response.headers["X-RateLimit-Limit"] == "1"


async def test_a_client_locked_out_after_bad_keys_gets_the_same_body(service: Service) -> None:
    address = f"10.91.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    async with service.client(address, headers={"x-api-key": "guessed-key-000000000"}) as guessing:
        for _ in range(AUTH_FAILURES.amount):
            assert (await guessing.post("/exec", json={"lang": "bash", "code": "true"})).status_code == 401
        assert_rate_limited(await guessing.post("/exec", json={"lang": "bash", "code": "true"}, headers=USER))
        assert_rate_limited(await guessing.get("/api/v1/admin/keys", headers=ADMIN))
