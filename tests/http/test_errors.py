"""Error shapes and status codes: bad input is a 4xx envelope, never a 500."""

from __future__ import annotations

import httpx
import pytest


async def test_unsupported_language_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/exec", json={"lang": "cobol", "code": "x"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "Unsupported programming language: cobol"
    assert body["error_type"] == "validation"
    assert body["details"][0]["code"] == "unsupported_language"
    assert body["details"][0]["field"] == "lang"


@pytest.mark.parametrize("alias", ["python", "sh", "node"])
async def test_language_aliases_are_not_accepted(client: httpx.AsyncClient, alias: str) -> None:
    assert (await client.post("/exec", json={"lang": alias, "code": "x"})).status_code == 400


async def test_missing_code_is_422_with_field_details(client: httpx.AsyncClient) -> None:
    response = await client.post("/exec", json={"lang": "py"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "Request validation failed"
    assert body["details"][0]["field"] == "body -> code"
    assert body["details"][0]["code"] == "missing"


async def test_blank_code_is_400(client: httpx.AsyncClient) -> None:
    assert (await client.post("/exec", json={"lang": "py", "code": "   \n"})).status_code == 400


@pytest.mark.parametrize(
    "payload",
    [
        {"lang": "py", "code": "1", "entity_id": "bad id!"},
        {"lang": "py", "code": "1", "entity_id": "x" * 41},
        {"lang": "py", "code": "1", "timeout": 999},
        {"lang": "py", "code": "1", "timeout": 300001},
        {"lang": "py", "code": "1", "files": [{"id": "a", "name": "b"}]},
        {"lang": "py", "code": "1", "files": [{"name": "b", "session_id": "s"}]},
        {"lang": 3, "code": "1"},
    ],
    ids=[
        "entity-pattern",
        "entity-length",
        "timeout-low",
        "timeout-high",
        "ref-no-session",
        "ref-no-id",
        "lang-type",
    ],
)
async def test_invalid_fields_are_422(client: httpx.AsyncClient, payload: dict[str, object]) -> None:
    response = await client.post("/exec", json=payload)
    assert response.status_code == 422
    assert response.json()["error_type"] == "validation"


async def test_malformed_json_is_422(client: httpx.AsyncClient) -> None:
    response = await client.post("/exec", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


async def test_unknown_route_is_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error_type"] == "resource_not_found"
