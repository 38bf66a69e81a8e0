"""Authentication variants of contract §3."""

from __future__ import annotations

import base64

import httpx
import pytest

from tests.conftest import API_KEY, ClientFactory

EXTRA_KEY = "second-key-abcdefgh"


def basic(raw: str) -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(raw.encode()).decode()}


@pytest.fixture(scope="module")
async def anonymous(make_client: ClientFactory) -> httpx.AsyncClient:
    async with make_client(headers={}, API_KEYS=f"{EXTRA_KEY}, third-key-zzzzzzzz") as client:
        yield client


async def files_status(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    return (await client.get("/files/" + "A" * 21, headers=headers)).status_code


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": API_KEY},
        {"X-API-Key": EXTRA_KEY},
        {"x-api-key": "third-key-zzzzzzzz"},
        basic(f"{API_KEY}:"),
        basic(API_KEY),
        basic(f":{API_KEY}"),
        {"x-api-key": API_KEY, **basic("wrong:")},
    ],
    ids=[
        "x-api-key",
        "api-keys-list",
        "api-keys-list-trimmed",
        "basic-colon",
        "basic-no-colon",
        "basic-password",
        "header-wins",
    ],
)
async def test_accepted_credentials(anonymous: httpx.AsyncClient, headers: dict[str, str]) -> None:
    assert await files_status(anonymous, headers) == 200


async def test_missing_key_is_401_with_envelope(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post("/exec", json={"lang": "py", "code": "print(1)"})
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "API key is required"
    assert isinstance(body["timestamp"], float)


@pytest.mark.parametrize(
    "headers",
    [
        {"x-api-key": "wrong"},
        basic("wrong:"),
        {"x-api-key": "wrong", **basic(f"{API_KEY}:")},
        {"authorization": f"Bearer {API_KEY}"},
        {"authorization": "Basic !!!notbase64"},
    ],
    ids=["wrong-header", "wrong-basic", "wrong-header-beats-right-basic", "bearer", "garbage-basic"],
)
async def test_rejected_credentials(anonymous: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await anonymous.get("/files/" + "A" * 21, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] in ("Invalid API key", "API key is required")


@pytest.mark.parametrize("path", ["/upload", "/download/AAAAAAAAAAAAAAAAAAAAA/BBBBBBBBBBBBBBBBBBBBB", "/v1/files/x"])
async def test_every_user_route_requires_a_key(anonymous: httpx.AsyncClient, path: str) -> None:
    method = anonymous.post if path == "/upload" else anonymous.get
    assert (await method(path)).status_code == 401


async def test_auth_disabled_skips_the_check(make_client: ClientFactory) -> None:
    async with make_client(headers={}, AUTH_ENABLED=False) as open_client:
        response = await open_client.post("/exec", json={"lang": "bash", "code": "echo open"})
        assert response.status_code == 200
        assert response.json()["stdout"] == "open\n"
