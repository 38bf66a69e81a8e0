"""Two tenants whose users have the same id (LibreChat's sub) share nothing: sessions, files, state and
usage belong to (tenant, sub), on both backends. And no API key's body can claim a token's user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.auth.signing import bearer, mint, public_pem
from tests.conftest import API_KEY, BACKENDS, ClientFactory, shared_backend

KEY = ed25519.Ed25519PrivateKey.generate()
MASTER_KEY = "master-key-0123456789abcdef"


def as_user_of(tenant_id: str) -> dict[str, str]:
    return bearer(mint(KEY, sub="alice", tenant_id=tenant_id))


@pytest.fixture(scope="module", params=BACKENDS)
async def tenants(request: pytest.FixtureRequest, make_client: ClientFactory) -> AsyncIterator[httpx.AsyncClient]:
    backend = shared_backend(request.getfixturevalue("api_seaweed")) if request.param == "shared" else {}
    settings = {"CODEAPI_JWT_PUBLIC_KEY": public_pem(KEY), "MASTER_API_KEY": MASTER_KEY, **backend}
    async with make_client(headers={}, **settings) as client:
        yield client


async def run(client: httpx.AsyncClient, headers: dict[str, str], code: str, **extra: Any) -> dict[str, Any]:
    response = await client.post("/exec", json={"lang": "bash", "code": code, **extra}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_session_id_of_another_tenant_starts_a_new_session(tenants: httpx.AsyncClient) -> None:
    acme = await run(tenants, as_user_of("acme"), "echo acme-only > secret.txt")
    globex = await run(
        tenants, as_user_of("globex"), "cat secret.txt 2>/dev/null || echo nothing", session_id=acme["session_id"]
    )
    assert globex["session_id"] != acme["session_id"]
    assert globex["stdout"] == "nothing\n"
    again = await run(tenants, as_user_of("acme"), "cat secret.txt", session_id=acme["session_id"])
    assert (again["session_id"], again["stdout"]) == (acme["session_id"], "acme-only\n")


async def test_an_entity_continues_only_its_own_tenants_session(tenants: httpx.AsyncClient) -> None:
    acme = await run(tenants, as_user_of("acme"), "echo acme > mine.txt", entity_id="asst_tenants")
    globex = await run(
        tenants, as_user_of("globex"), "cat mine.txt 2>/dev/null || echo nothing", entity_id="asst_tenants"
    )
    assert globex["session_id"] != acme["session_id"]
    assert globex["stdout"] == "nothing\n"


async def test_python_variables_stay_with_their_tenant(tenants: httpx.AsyncClient) -> None:
    started = await tenants.post("/exec", json={"lang": "py", "code": "secret = 41"}, headers=as_user_of("acme"))
    session_id = started.json()["session_id"]
    probe = {"lang": "py", "code": "print(globals().get('secret'))", "session_id": session_id}
    globex = (await tenants.post("/exec", json=probe, headers=as_user_of("globex"))).json()
    acme = (await tenants.post("/exec", json=probe, headers=as_user_of("acme"))).json()
    assert (globex["session_id"] != session_id, globex["stdout"]) == (True, "None\n")
    assert (acme["session_id"], acme["stdout"]) == (session_id, "41\n")


async def test_another_tenants_files_are_not_there_for_the_file_routes(tenants: httpx.AsyncClient) -> None:
    uploaded = await tenants.post("/upload", files={"file": ("plan.txt", b"acme plan")}, headers=as_user_of("acme"))
    session_id, file_id = uploaded.json()["storage_session_id"], uploaded.json()["files"][0]["fileId"]
    assert (await tenants.get(f"/files/{session_id}", headers=as_user_of("globex"))).json() == []
    for method, path in [
        ("GET", f"/download/{session_id}/{file_id}"),
        ("GET", f"/sessions/{session_id}/objects/{file_id}"),
        ("DELETE", f"/files/{session_id}/{file_id}"),
        ("DELETE", f"/sessions/{session_id}/objects/{file_id}"),
    ]:
        assert (await tenants.request(method, path, headers=as_user_of("globex"))).status_code == 404, (method, path)
    assert (await tenants.get(f"/download/{session_id}/{file_id}", headers=as_user_of("acme"))).content == b"acme plan"
    listing = (await tenants.get(f"/files/{session_id}?detail=summary", headers=as_user_of("acme"))).json()
    assert [entry["fileId"] for entry in listing] == [file_id]


async def test_another_tenants_file_is_not_mounted_by_reference(tenants: httpx.AsyncClient) -> None:
    uploaded = await tenants.post("/upload", files={"file": ("plan.txt", b"acme plan")}, headers=as_user_of("acme"))
    session_id, file_id = uploaded.json()["storage_session_id"], uploaded.json()["files"][0]["fileId"]
    ref = {"id": file_id, "storage_session_id": session_id, "name": "plan.txt"}
    probe = "cat plan.txt 2>/dev/null || echo nothing"
    globex = await run(tenants, as_user_of("globex"), probe, files=[ref])
    acme = await run(tenants, as_user_of("acme"), probe, files=[ref])
    assert (globex["stdout"], acme["stdout"]) == ("nothing\n", "acme plan")


async def test_usage_is_counted_per_tenant_and_user(tenants: httpx.AsyncClient) -> None:
    await run(tenants, as_user_of("acme"), "true")
    await run(tenants, as_user_of("globex"), "true")
    rows = (await tenants.get("/api/v1/admin/metrics/api-keys", headers={"x-api-key": MASTER_KEY})).json()
    names = {row["name"] for row in rows if row["source"] == "jwt"}
    assert {"acme/alice", "globex/alice"} <= names


async def test_an_api_keys_body_cannot_claim_a_tokens_user(tenants: httpx.AsyncClient) -> None:
    acme = await run(tenants, as_user_of("acme"), "echo acme > claimed.txt", entity_id="asst_claims")
    keyed = {"x-api-key": API_KEY}
    for claim in ("acme/alice", "acme%2Falice"):
        probe = await run(
            tenants, keyed, "cat claimed.txt 2>/dev/null || echo nothing", entity_id="asst_claims", user_id=claim
        )
        assert probe["session_id"] != acme["session_id"]
        assert probe["stdout"] == "nothing\n"
