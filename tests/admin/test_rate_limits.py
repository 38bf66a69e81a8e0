"""Per-key limits, the per-IP lockout after bad credentials, shared by two replicas on one Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from codeapi.auth.ratelimit import AUTH_FAILURES
from tests.admin.conftest import ADMIN, ADMIN_REDIS_DB, USER, Service, create_key, running_service
from tests.conftest import shared_backend
from tests.servers import SeaweedServer

FILES = "/files/" + "A" * 21


async def test_a_key_over_its_limit_gets_429_with_retry_after_and_rate_headers(
    admin: httpx.AsyncClient, service: Service
) -> None:
    created = await create_key(admin, rate_limits={"per_minute": 2, "daily": 100})
    async with service.client(headers={"x-api-key": created["api_key"]}) as client:
        first = await client.get(FILES)
        second = await client.get(FILES)
        refused = await client.get(FILES)
    assert (first.status_code, second.status_code) == (200, 200)
    assert first.headers["RateLimit-Limit"] == "2" and first.headers["RateLimit-Remaining"] == "1"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["RateLimit-Remaining"] == "0" and refused.headers["X-RateLimit-Limit"] == "2"
    body = refused.json()
    assert body["error"] == "rate_limited" and body["error_type"] == "rate_limited"
    assert body["retry_after_seconds"] == int(refused.headers["Retry-After"])


async def test_a_raised_limit_applies_at_once(admin: httpx.AsyncClient, service: Service) -> None:
    created = await create_key(admin, rate_limits={"per_minute": 1})
    async with service.client(headers={"x-api-key": created["api_key"]}) as client:
        assert (await client.get(FILES)).status_code == 200
        assert (await client.get(FILES)).status_code == 429
        raised = {"rate_limits": {"per_minute": 5}}
        assert (await admin.patch(f"/api/v1/admin/keys/{created['record']['key_hash']}", json=raised)).is_success
        assert (await client.get(FILES)).status_code == 200


async def test_environment_keys_have_no_limit_headers(service: Service) -> None:
    async with service.client(headers=USER) as client:
        response = await client.get(FILES)
    assert response.status_code == 200
    assert "RateLimit-Limit" not in response.headers


async def test_a_client_sending_bad_keys_is_locked_out_even_with_a_good_one(service: Service) -> None:
    attacker = f"10.66.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
    async with service.client(attacker, headers={"x-api-key": "guessed-key-000000000"}) as guessing:
        statuses = [(await guessing.get(FILES)).status_code for _ in range(AUTH_FAILURES.amount)]
        assert set(statuses) == {401}
        locked = await guessing.get(FILES, headers=USER)
    assert locked.status_code == 429
    assert int(locked.headers["Retry-After"]) >= 1
    async with service.client("10.77.0.1", headers=USER) as bystander:
        assert (await bystander.get(FILES)).status_code == 200


async def test_with_auth_disabled_no_limit_applies(test_root: Path) -> None:
    async with running_service(test_root / f"open-{uuid.uuid4().hex[:6]}", AUTH_ENABLED=False) as service:
        async with service.client("10.88.0.1", headers={"x-api-key": "anything-at-all-0000"}) as client:
            statuses = {(await client.get(FILES)).status_code for _ in range(AUTH_FAILURES.amount + 2)}
    assert statuses == {200}


async def test_guessing_the_master_key_locks_out_even_with_auth_disabled(test_root: Path) -> None:
    async with running_service(test_root / f"open-admin-{uuid.uuid4().hex[:6]}", AUTH_ENABLED=False) as service:
        async with service.client("10.89.0.1", headers={"x-api-key": "guessed-master-key-000"}) as guessing:
            statuses = [(await guessing.get("/api/v1/admin/keys")).status_code for _ in range(AUTH_FAILURES.amount)]
            assert set(statuses) == {401}
            assert (await guessing.get("/api/v1/admin/keys", headers=ADMIN)).status_code == 429
            assert (await guessing.get(FILES)).status_code == 200  # the open user endpoints stay open


@pytest.fixture(scope="module")
async def replicas(test_root: Path, api_seaweed: SeaweedServer) -> AsyncIterator[tuple[Service, Service]]:
    backend: dict[str, Any] = shared_backend(api_seaweed, redis_db=ADMIN_REDIS_DB)
    async with running_service(test_root / f"replica-a-{uuid.uuid4().hex[:6]}", **backend) as first:
        async with running_service(
            test_root / f"replica-b-{uuid.uuid4().hex[:6]}", SANDBOX_UID=1001 + 64, **backend
        ) as second:
            yield first, second


async def test_a_key_revoked_on_one_replica_is_refused_on_the_other(replicas: tuple[Service, Service]) -> None:
    first, second = replicas
    async with first.client(headers=ADMIN) as admin:
        created = await create_key(admin)
    async with second.client(headers={"x-api-key": created["api_key"]}) as user:
        assert (await user.get(FILES)).status_code == 200
        async with first.client(headers=ADMIN) as admin:
            assert (await admin.delete(f"/api/v1/admin/keys/{created['record']['key_hash']}")).is_success
        refused = await user.get(FILES)
    assert refused.status_code == 401


async def test_two_replicas_share_the_rate_counts(replicas: tuple[Service, Service]) -> None:
    first, second = replicas
    async with first.client(headers=ADMIN) as admin:
        created = await create_key(admin, rate_limits={"per_minute": 3})
    headers = {"x-api-key": created["api_key"]}
    async with first.client(headers=headers) as on_first, second.client(headers=headers) as on_second:
        assert (await on_first.get(FILES)).status_code == 200
        assert (await on_second.get(FILES)).status_code == 200
        assert (await on_first.get(FILES)).status_code == 200
        assert (await on_second.get(FILES)).status_code == 429
