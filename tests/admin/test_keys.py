"""Managed API keys through the admin API: created once, stored as a hash, disabled, revoked, refused."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from codeapi.app import create_app
from codeapi.config import ConfigError
from tests.admin.conftest import ADMIN, MASTER_KEY, USER, Service, create_key, running_service
from tests.conftest import API_KEY
from tests.conftest import test_settings as settings_for

FILES = "/files/" + "A" * 21  # any session id: a 200 with [] says the key was accepted


async def files_status(service: Service, key: str) -> int:
    async with service.client(headers={"x-api-key": key}) as client:
        return (await client.get(FILES)).status_code


async def test_a_created_key_is_returned_once_and_stored_only_as_its_hash(
    admin: httpx.AsyncClient, service: Service
) -> None:
    created = await create_key(admin, name="team-a", metadata={"owner": "alice"})
    key, record = created["api_key"], created["record"]
    assert len(key) >= 32
    assert record["key_hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert record["key_prefix"] == key[:11]
    assert record["name"] == "team-a" and record["metadata"] == {"owner": "alice"}
    assert record["enabled"] is True and record["source"] == "managed" and record["usage_count"] == 0
    assert record["rate_limits"] == dict.fromkeys(("per_second", "per_minute", "hourly", "daily", "monthly"))
    listing = await admin.get("/api/v1/admin/keys")
    assert key not in listing.text
    assert record["key_hash"] in listing.text
    assert await files_status(service, key) == 200


async def test_using_a_key_counts_it_and_remembers_when(admin: httpx.AsyncClient, service: Service) -> None:
    created = await create_key(admin)
    for _ in range(2):
        assert await files_status(service, created["api_key"]) == 200
    listed = {item["key_hash"]: item for item in (await admin.get("/api/v1/admin/keys")).json()}
    used = listed[created["record"]["key_hash"]]
    assert used["usage_count"] == 2
    assert used["last_used_at"] is not None


async def test_environment_keys_are_listed_read_only(admin: httpx.AsyncClient) -> None:
    listing = (await admin.get("/api/v1/admin/keys")).json()
    environment = [item for item in listing if item["source"] == "environment"]
    assert [item["name"] for item in environment] == ["API_KEY"]
    assert environment[0]["key_hash"] == hashlib.sha256(API_KEY.encode()).hexdigest()
    assert API_KEY not in str(listing)
    key_hash = environment[0]["key_hash"]
    assert (await admin.patch(f"/api/v1/admin/keys/{key_hash}", json={"enabled": False})).status_code == 400
    assert (await admin.delete(f"/api/v1/admin/keys/{key_hash}")).status_code == 400


async def test_a_disabled_key_is_refused_until_enabled_again(admin: httpx.AsyncClient, service: Service) -> None:
    created = await create_key(admin)
    key, key_hash = created["api_key"], created["record"]["key_hash"]
    disabled = await admin.patch(f"/api/v1/admin/keys/{key_hash}", json={"enabled": False})
    assert disabled.status_code == 200 and disabled.json()["enabled"] is False
    async with service.client(headers={"x-api-key": key}) as client:
        refused = await client.get(FILES)
    assert refused.status_code == 401
    assert refused.json()["error"] == "API key is disabled"
    await admin.patch(f"/api/v1/admin/keys/{key_hash}", json={"enabled": True})
    assert await files_status(service, key) == 200


async def test_patch_renames_and_changes_limits_keeping_the_rest(admin: httpx.AsyncClient) -> None:
    created = await create_key(admin, name="before", metadata={"tier": "gold"})
    key_hash = created["record"]["key_hash"]
    patched = await admin.patch(
        f"/api/v1/admin/keys/{key_hash}", json={"name": "after", "rate_limits": {"per_minute": 30}}
    )
    assert patched.status_code == 200, patched.text
    body = patched.json()
    assert body["name"] == "after" and body["enabled"] is True and body["metadata"] == {"tier": "gold"}
    assert body["rate_limits"]["per_minute"] == 30


async def test_a_revoked_key_is_refused_and_gone_from_the_list(admin: httpx.AsyncClient, service: Service) -> None:
    created = await create_key(admin)
    key, key_hash = created["api_key"], created["record"]["key_hash"]
    assert await files_status(service, key) == 200
    revoked = await admin.delete(f"/api/v1/admin/keys/{key_hash}")
    assert revoked.status_code == 200
    assert await files_status(service, key) == 401
    assert key_hash not in (await admin.get("/api/v1/admin/keys")).text
    assert (await admin.delete(f"/api/v1/admin/keys/{key_hash}")).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/v1/admin/keys/" + "0" * 64, {"enabled": False}),
        ("DELETE", "/api/v1/admin/keys/" + "0" * 64, None),
        ("DELETE", "/api/v1/admin/keys/not-a-hash", None),
    ],
    ids=["patch-unknown", "delete-unknown", "delete-garbage"],
)
async def test_an_unknown_key_hash_is_404_with_envelope(
    admin: httpx.AsyncClient, method: str, path: str, body: dict[str, bool] | None
) -> None:
    response = await admin.request(method, path, json=body)
    assert response.status_code == 404
    assert response.json()["error"] == "API key not found"


@pytest.mark.parametrize(
    "body",
    [
        {"name": ""},
        {},
        {"name": "x", "rate_limits": {"per_minute": 0}},
        {"name": "x", "rate_limits": {"per_minute": "many"}},
        {"name": "x", "rate_limits": {"weekly": 5}},
        {"name": "x", "colour": "red"},
        {"name": "x", "metadata": ["not", "an", "object"]},
        {"name": "x", "metadata": {"notes": "x" * 5000}},
        {"name": "x" * 201},
    ],
    ids=[
        "empty-name",
        "no-name",
        "zero-limit",
        "text-limit",
        "unknown-window",
        "unknown-field",
        "list-metadata",
        "huge-metadata",
        "long-name",
    ],
)
async def test_bad_key_requests_are_422_with_envelope(admin: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await admin.post("/api/v1/admin/keys", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "Request validation failed"


async def test_malformed_json_is_422(admin: httpx.AsyncClient) -> None:
    response = await admin.post(
        "/api/v1/admin/keys", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong-master-key-000000"}, USER],
    ids=["missing", "wrong", "user-api-key"],
)
async def test_the_admin_api_needs_the_master_key(service: Service, headers: dict[str, str]) -> None:
    async with service.client(headers=headers) as client:
        for path in ("/api/v1/admin/keys", "/api/v1/admin/stats", "/api/v1/admin/metrics/summary"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert response.json()["error_type"] == "authentication"


async def test_the_master_key_is_not_an_api_key(service: Service) -> None:
    assert await files_status(service, MASTER_KEY) == 401


async def test_without_a_master_key_the_admin_api_does_not_exist(test_root: Path) -> None:
    async with running_service(test_root / "no-master", MASTER_API_KEY=None) as service:
        async with service.client(headers=ADMIN) as client:
            response = await client.get("/api/v1/admin/keys")
            dashboard = await client.get("/admin-dashboard")
    assert response.status_code == 404
    assert response.json()["error_type"] == "resource_not_found"
    assert dashboard.status_code == 404


async def test_the_dashboard_page_is_served_open_under_a_strict_policy(service: Service) -> None:
    async with service.client() as browser:
        page = await browser.get("/admin-dashboard")
        script = await browser.get("/admin-dashboard/static/dashboard.js")
        other = await browser.get("/admin-dashboard/static/index.html")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "sessionStorage" in script.text
    assert other.status_code == 404


async def test_with_auth_disabled_the_admin_api_still_needs_the_master_key(test_root: Path) -> None:
    async with running_service(test_root / "auth-off", AUTH_ENABLED=False) as service:
        async with service.client() as anonymous:
            assert (await anonymous.get(FILES)).status_code == 200
            assert (await anonymous.get("/api/v1/admin/keys")).status_code == 401
        async with service.client(headers=ADMIN) as admin:
            assert (await admin.get("/api/v1/admin/keys")).status_code == 200


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MASTER_API_KEY", "short-master"), ("API_KEY", "short-key"), ("API_KEYS", f"{API_KEY},tiny")],
)
def test_keys_shorter_than_16_characters_refuse_to_start(tmp_path: Path, variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        create_app(settings_for(tmp_path, **{variable: value}))
